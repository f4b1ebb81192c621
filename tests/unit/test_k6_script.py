"""Unit tests for k6_script: the options `k6 inspect` prints, as the whole run acts on them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import k6_script
from k6_script import ScriptOptions, ScriptThreshold
from tests.support.processes import real_k6

SCRIPT = """export const options = {
  vus: 2, iterations: 4,
  setupTimeout: '1m30s', teardownTimeout: '2500ms', noTeardown: true,
  thresholds: {
    http_reqs: ['count>=50', 'rate>1'],
    'http_req_duration{status:200}': ['p(95) < 1000'],
    http_req_failed: [{ threshold: 'rate<0.1', abortOnFail: true, delayAbortEval: '10s' }],
  },
};
export default function () {}
"""


def inspect(tmp_path: Path, script: str) -> str:
    """What the real `k6 inspect` prints for `script`."""
    (tmp_path / "s.js").write_text(script)
    done = subprocess.run(
        [real_k6(), "inspect", "--execution-requirements", "s.js"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_options_of_a_real_k6_inspect_give_every_threshold_and_the_timeouts(tmp_path):
    options = k6_script.parse_options(inspect(tmp_path, SCRIPT))

    assert set(options.thresholds) == {
        ScriptThreshold("http_reqs", "count>=50"),
        ScriptThreshold("http_reqs", "rate>1"),
        ScriptThreshold("http_req_duration{status:200}", "p(95) < 1000"),
        ScriptThreshold("http_req_failed", "rate<0.1", abort_on_fail=True, delay_abort_eval_s=10),
    }
    assert options.aborts == (
        ScriptThreshold("http_req_failed", "rate<0.1", abort_on_fail=True, delay_abort_eval_s=10),
    )
    assert (options.setup_timeout_s, options.teardown_timeout_s) == (90.0, 2.5)
    assert (options.no_setup, options.no_teardown) == (False, True)
    assert (options.total_duration_s, options.max_vus) == (630.0, 2)  # 10m + gracefulStop 30 s


def test_the_execution_requirements_give_the_longest_the_test_may_last(tmp_path):
    script = "export const options = { vus: 3, duration: '30s' };\nexport default function () {}\n"

    options = k6_script.parse_options(inspect(tmp_path, script))

    assert (options.total_duration_s, options.max_vus) == (60.0, 3)  # 30 s + gracefulStop 30 s


def test_a_script_without_options_gets_k6s_defaults(tmp_path):
    options = k6_script.parse_options(inspect(tmp_path, "export default function () {}\n"))

    assert options == ScriptOptions(
        thresholds=(),
        setup_timeout_s=60.0,
        teardown_timeout_s=60.0,
        total_duration_s=630.0,  # 1 iteration: maxDuration 10m + gracefulStop 30 s
        max_vus=1,
    )


def test_a_real_k6_inspect_of_a_syntax_error_exits_107(tmp_path):
    (tmp_path / "s.js").write_text("export default function ({\n")

    done = subprocess.run([real_k6(), "inspect", "s.js"], cwd=tmp_path, capture_output=True)

    assert done.returncode == 107


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("250", 0.25),
        (1500, 1.5),
        ("", 7.0),
        (None, 7.0),
        ("1h2m3s", 3723.0),
    ],
)
def test_durations_are_read_as_k6_reads_them(text, seconds):
    assert k6_script.duration_seconds(text, default=7.0) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "10 s", "5x", "-1s", "1s2", True, "nan"])
def test_a_duration_k6_would_refuse_raises_value_error(text):
    with pytest.raises(ValueError, match="not a duration"):
        k6_script.duration_seconds(text)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "k6 inspect printed no JSON"),
        ("[1, 2]", "no options object"),
        ('{"thresholds": [1]}', "options.thresholds is not an object"),
        ('{"thresholds": {"x": [1]}}', "neither a string nor a threshold object"),
        (
            '{"thresholds": {"x": [{"threshold": "rate<1", "delayAbortEval": "later"}]}}',
            "delayAbortEval: not a duration",
        ),
        ('{"setupTimeout": "forever"}', "setupTimeout/teardownTimeout: not a duration"),
    ],
)
def test_options_that_k6_would_not_print_are_refused_with_the_reason(raw, message):
    with pytest.raises(ValueError, match=message):
        k6_script.parse_options(raw)


def test_a_threshold_given_as_one_string_is_one_threshold():
    options = k6_script.parse_options(json.dumps({"thresholds": {"checks": "rate>0.9"}}))

    assert options.thresholds == (ScriptThreshold("checks", "rate>0.9"),)
    assert str(options.thresholds[0]) == "checks: rate>0.9"


@pytest.mark.parametrize(
    ("script", "may"),
    [
        ("export function teardown(d) {}", True),
        ("export { teardown } from './lib.js';", True),
        ("export * from './lib.js';", True),
        ("export default function () {}", False),
    ],
)
def test_may_have_teardown_only_misses_scripts_that_cannot_export_one(script, may):
    assert k6_script.may_have_teardown(script) is may
