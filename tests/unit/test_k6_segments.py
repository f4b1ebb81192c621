"""How k6's execution segments split each executor: N units' totals against one `k6 run`.

Real k6 runs the same script once whole and once per segment (the charm's own
`segment_flags`, 3 units); the totals that k6 schedules are compared. docs/k6-semantics.md
cites these tests for its executor rows.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from charms.k6_k8s.v0.synchronized_task import Share

from k6_workload import segment_flags
from tests.support.processes import real_k6

UNITS = 3


def _counts(tmp_path: Path, name: str, script: str, flags: list[str]) -> dict[str, float]:
    """One real `k6 run`: its iterations, dropped iterations and largest VU count."""
    (tmp_path / "s.js").write_text(script)
    export = tmp_path / f"{name}.json"
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    console = ["--log-format", "json", "--console-output", str(tmp_path / f"{name}.log")]
    done = subprocess.run(
        [real_k6(), "run", "--quiet", *flags, *console, "--summary-export", str(export), "s.js"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(export.read_text())["metrics"]
    return {
        "iterations": metrics.get("iterations", {}).get("count", 0),
        "dropped": metrics.get("dropped_iterations", {}).get("count", 0),
        "vus_max": metrics.get("vus_max", {}).get(
            "max", metrics.get("vus_max", {}).get("value", 0)
        ),
    }


def one_and_split(tmp_path: Path, script: str) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The whole test in one k6, and its UNITS segments, each in its own k6 at the same time."""
    whole = _counts(tmp_path, "whole", script, [])
    with ThreadPoolExecutor(UNITS) as pool:
        parts = list(
            pool.map(
                lambda i: _counts(tmp_path, f"part{i}", script, segment_flags(Share(i, UNITS))),
                range(UNITS),
            )
        )
    return whole, parts


def total(parts: list[dict[str, float]], key: str) -> float:
    return sum(p[key] for p in parts)


@pytest.mark.parametrize(
    ("executor", "options"),
    [
        ("shared-iterations", "vus: 6, iterations: 30"),
        ("per-vu-iterations", "vus: 6, iterations: 5"),
        (
            "ramping-arrival-rate",
            "startRate: 0, timeUnit: '1s', preAllocatedVUs: 6, "
            "stages: [{ duration: '1s', target: 30 }, { duration: '1s', target: 30 }]",
        ),
    ],
)
def test_an_executor_with_a_fixed_count_schedules_the_same_total_split(
    tmp_path, executor, options
):
    script = (
        f"export const options = {{ scenarios: {{ s: {{ executor: '{executor}', {options} }} }} "
        "};\n"
        "export default function () {}\n"
    )

    whole, parts = one_and_split(tmp_path, script)

    scheduled = whole["iterations"] + whole["dropped"]
    assert total(parts, "iterations") + total(parts, "dropped") == scheduled


def test_constant_arrival_rate_across_segments_schedules_rate_times_duration(tmp_path):
    # k6 starts an iteration at t = 0 and every 1/rate after; whether the one due exactly at
    # t = duration starts is a race (in one k6 as across units): 60 or 61 for 30/s x 2 s.
    script = (
        "export const options = { scenarios: { s: { executor: 'constant-arrival-rate', "
        "rate: 30, timeUnit: '1s', duration: '2s', preAllocatedVUs: 6 } } };\n"
        "export default function () {}\n"
    )

    whole, parts = one_and_split(tmp_path, script)

    assert whole["iterations"] + whole["dropped"] in (60, 61)
    assert total(parts, "iterations") + total(parts, "dropped") in (60, 61)
    assert all(p["iterations"] + p["dropped"] in (20, 21) for p in parts)  # rate / 3 each


@pytest.mark.parametrize(
    ("executor", "options"),
    [
        ("constant-vus", "vus: 6, duration: '1s'"),
        ("ramping-vus", "startVUs: 0, stages: [{ duration: '1s', target: 6 }]"),
        ("externally-controlled", "vus: 6, maxVUs: 6, duration: '1s'"),
    ],
)
def test_an_executor_of_vus_splits_its_vus(tmp_path, executor, options):
    script = (
        "import { sleep } from 'k6';\n"
        f"export const options = {{ scenarios: {{ s: {{ executor: '{executor}', {options} }} }} "
        "};\n"
        "export default function () { sleep(0.05); }\n"
    )

    whole, parts = one_and_split(tmp_path, script)

    assert whole["vus_max"] == 6
    assert [p["vus_max"] for p in parts] == [2, 2, 2]


def _logged(tmp_path: Path, name: str) -> list[dict]:
    """What the script's console.log wrote (JSON objects), one per line."""
    lines = (tmp_path / f"{name}.log").read_text().splitlines()
    return [json.loads(json.loads(line)["msg"]) for line in lines if '"msg":"{' in line]


def test_iteration_and_vu_ids_in_test_are_unique_across_units_but_vu_restarts_on_each(tmp_path):
    script = (
        "import exec from 'k6/execution';\n"
        "import { sleep } from 'k6';\n"
        "export const options = { scenarios: { s: { executor: 'per-vu-iterations', vus: 6, "
        "iterations: 2 } } };\n"
        "export default function () { console.log(JSON.stringify({ it: "
        "exec.scenario.iterationInTest, vu: exec.vu.idInTest, env: __VU })); sleep(0.01); }\n"
    )

    whole, _ = one_and_split(tmp_path, script)

    seen = [_logged(tmp_path, f"part{i}") for i in range(UNITS)]
    assert whole["iterations"] == 12
    # k6 stripes these over the segments: each iteration and each VU id once in the whole run
    assert sorted(line["it"] for lines in seen for line in lines) == list(range(12))
    assert sorted({line["vu"] for lines in seen for line in lines}) == [1, 2, 3, 4, 5, 6]
    # __VU (exec.vu.idInInstance) counts the unit's own VUs: 1 and 2 on every unit
    assert [sorted({line["env"] for line in lines}) for lines in seen] == [[1, 2]] * UNITS


def test_a_scenarios_start_time_holds_on_every_unit(tmp_path):
    # startTime is a minimum delay from the start of the run: no unit's share of the scenario
    # begins earlier (each k6 keeps the whole timeline; segments only split the load).
    script = (
        "import exec from 'k6/execution';\n"
        "export const options = { scenarios: { later: { executor: 'per-vu-iterations', vus: 3, "
        "iterations: 1, startTime: '1s' } } };\n"
        "export default function () { console.log(JSON.stringify({ t: "
        "exec.instance.currentTestRunDuration })); }\n"
    )

    one_and_split(tmp_path, script)

    elapsed = [line["t"] for i in range(UNITS) for line in _logged(tmp_path, f"part{i}")]
    assert len(elapsed) == 3
    assert all(ms >= 1000 for ms in elapsed), elapsed
