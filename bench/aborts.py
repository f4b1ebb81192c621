"""Aborts on the whole run: how soon every unit stops once the whole run crosses abortOnFail.

Real k6 on the emulator (3 units): a 20 s constant-vus test whose requests fail on one unit
only (a third of the whole run's), with `http_req_failed: rate<0.1, abortOnFail, delayAbortEval
1s`. The watcher reads every unit's live metrics each second; when it trips, the leader stops
every unit. Measured per repetition: when the watcher tripped (after the release, minus the
delay: detection) and how long after the trip each unit's last request left (stop).
"""

from __future__ import annotations

import os
import re
import statistics
import sys

from tests.e2e import scripts
from tests.emulator.model import Model
from tests.emulator.target import Target

REPETITIONS = int(os.environ.get("BENCH_ABORTS_REPETITIONS", "5"))
UNITS = 3
DELAY_S = 1.0
RUN_S = 20.0
BOUND_S = 1.0 + 2.0 + 2.0  # one watcher interval + one read (timeout) + the leader's hook
_AT = re.compile(r"crossed on the whole run ([0-9.]+) s after the start")


def script() -> str:
    """The abort scenario (tests/e2e/test_one_test.py's, with this section's numbers)."""
    return scripts.one_test(
        thresholds=(
            "http_req_failed: [{ threshold: 'rate<0.1', abortOnFail: true, "
            f"delayAbortEval: '{DELAY_S:g}s' }}]"
        ),
        executor=f"{{ executor: 'constant-vus', vus: {UNITS}, duration: '{RUN_S:g}s' }}",
        load=(
            "if (__ENV.K6_K8S_UNIT === 'k6/1') "
            f"http.get(`${{__ENV.TARGET}}/status/500`, {{ {scripts.HEADER} }}); sleep(0.1);"
        ),
    )


def once() -> dict[str, float]:
    """One run to its abort: detection (s after delayAbortEval) and each unit's stop (s)."""
    target = Target()
    model = Model(UNITS, {"load-test": script(), "environment": f"TARGET={target.url}"})
    try:
        model.settle(timeout=30)
        run_id = model.action(0, "start").results["run-id"]
        model.settle(lambda: model.finished(run_id), timeout=120)
        last = model.app["last_run"]
        found = _AT.search(last["reason"])
        if found is None:
            raise RuntimeError(f"the run did not abort on the threshold: {last['reason']}")
        tripped = last["started"] + float(found[1])
        loads = target.stats()["paths"]
        ends = {
            unit: when - tripped
            for path in ("/load", "/status/500")
            for unit, when in loads.get(path, {}).get("last_by_unit", {}).items()
        }
        return {"detect": float(found[1]) - DELAY_S, "stop": max(ends.values())}
    finally:
        model.close()
        target.close()


def run() -> str:
    """The table: detection and stop, per repetition, against the stated bound."""
    rows = []
    for i in range(REPETITIONS):
        print(f"[aborts] repetition {i + 1}/{REPETITIONS}", file=sys.stderr, flush=True)
        rows.append(once())
    lines = [
        "| repetition | detected (s after delayAbortEval) | all stopped (s after the trip) |",
        "|---|---|---|",
    ]
    lines += [f"| {i + 1} | {r['detect']:.2f} | {r['stop']:.2f} |" for i, r in enumerate(rows)]
    detect = [r["detect"] for r in rows]
    stop = [r["stop"] for r in rows]
    met = max(d + s for d, s in zip(detect, stop, strict=True)) <= BOUND_S
    lines += [
        f"| p50 | {statistics.median(detect):.2f} | {statistics.median(stop):.2f} |",
        f"| max | {max(detect):.2f} | {max(stop):.2f} |",
        "",
        f"Bound stated in docs/k6-semantics.md: the whole run crosses → every unit stopped within "
        f"{BOUND_S:g} s (one watcher interval, one read of every unit, the leader's hook); "
        f"{'met' if met else 'NOT met'} in every repetition. {UNITS} units, real k6, "
        f"a {RUN_S:g} s test; without the abort it would have run to its end. The trip's time "
        "is the watcher's own (logged to 0.1 s); a unit's stop is when its last request reached "
        "the target (every unit sends one about every 0.1 s).",
    ]
    return "\n".join(lines)


SECTIONS = {"aborts": run}
