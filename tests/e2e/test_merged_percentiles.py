"""Ground truth for merged percentiles: real k6 on 1, 3 and 5 units, unit-dependent latencies.

Every unit also writes each raw sample with k6's own `--out csv` (K6_OUT in the process
environment); the merged p50/p90/p95/p99 in the last-run record must hold the rank bound the
record states against the union of those samples, within results.VALUE_TOLERANCE (docs/results.md,
"What the certificate says").
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import results
from tests.emulator.model import Model
from tests.support.emulated_runs import configure, run_to_end

pytestmark = pytest.mark.timeout(120)

SAMPLES = "samples.csv"
TRENDS = ("http_req_duration", "iteration_duration", "cart_time")
PERCENTS = (50, 90, 95, 99)


def script(iterations: int, vus: int) -> str:
    """Unit i answers in about 3(i+1)..7(i+1) ms; its cart_time is uniform on 10(i+1)..20(i+1)."""
    return f"""
import http from 'k6/http';
import {{ Trend }} from 'k6/metrics';
const cart = new Trend('cart_time', true);
const unit = parseInt((__ENV.K6_K8S_UNIT || 'k6/0').split('/')[1]);
export const options = {{
  scenarios: {{ s: {{ executor: 'shared-iterations', vus: {vus}, iterations: {iterations},
                     maxDuration: '60s' }} }},
}};
export default function () {{
  const k = unit + 1;
  http.get(`${{__ENV.TARGET}}/delay/${{3 * k + (__ITER % 5) * k}}`,
           {{ headers: {{ 'X-K6-Unit': __ENV.K6_K8S_UNIT }} }});
  cart.add(10 * k + Math.random() * 10 * k);
}}
"""


def raw_samples(model: Model) -> dict[str, list[float]]:
    """Every unit's raw samples of each trend, from k6's own CSV output."""
    union: dict[str, list[float]] = {name: [] for name in TRENDS}
    for unit in model.units.values():
        with Path(unit.workdir / SAMPLES).open(newline="") as f:
            for row in csv.DictReader(f):
                if row["metric_name"] in union:
                    union[row["metric_name"]].append(float(row["metric_value"]))
    return union


def rank_check(values: list[float], x: float, percent: float, bound: float) -> str | None:
    """At least p − e of the samples are ≤ x and at most p + e are < x (docs/results.md).

    Within the value tolerance the 5-digit grid costs, plus k6's CSV rounding to 6 decimals.
    """
    slack = results.VALUE_TOLERANCE * abs(x) + 1e-6
    n = len(values)
    at_most = sum(v <= x + slack for v in values) / n
    below = sum(v < x - slack for v in values) / n
    p = percent / 100
    if at_most >= p - bound and below <= p + bound:
        return None
    return f"p({percent}) = {x}: {at_most:.4f} ≤ x, {below:.4f} < x, bound ±{bound:.4f}"


@pytest.mark.parametrize("units", [1, 3, 5])
def test_merged_percentiles_hold_their_bound_against_the_union_of_raw_samples(
    make_model, target, units
):
    config = configure(target, script(iterations=60 * units, vus=2 * units))
    model = make_model(units, config, extra_env={"K6_OUT": f"csv={SAMPLES}"})

    last = run_to_end(model)

    assert last["outcome"] == "passed", last["reason"]
    union = raw_samples(model)
    failures = []
    for name in TRENDS:
        merged = last["aggregate"]["trends"][name]
        assert merged["count"] == len(union[name]), name
        for percent in PERCENTS:
            key = f"p({percent})"
            bound = merged["rank_error"][key]
            print(f"{units} unit(s) {name} {key} = {merged[key]} ±{bound:.4%} rank")
            if (why := rank_check(union[name], merged[key], percent, bound)) is not None:
                failures.append(f"{name} {why}")
    assert failures == []
    # the units really differ: the slowest unit's own p50 is above the merged p50
    if units > 1:
        own = [model.unit_view(i)["result"]["summary"]["trends"]["cart_time"]["max"]
               for i in range(units)]  # fmt: skip
        assert max(own) > last["aggregate"]["trends"]["cart_time"]["p(50)"]


def test_a_global_p95_threshold_is_judged_on_the_merge_not_on_any_unit(make_model, target):
    # cart_time: unit 0 in 10..20, unit 1 in 20..40, unit 2 in 30..60; the union's p95 lies
    # below unit 2's own p95, above unit 0's
    config = configure(target, script(iterations=180, vus=6))
    model = make_model(3, config)

    passing = run_to_end(model, thresholds="cart_time: p(95)<75")
    merged_p95 = passing["aggregate"]["trends"]["cart_time"]["p(95)"]
    limit = f"{merged_p95 * 0.8:.2f}0"  # written with a trailing zero: the reason quotes it so
    failing = run_to_end(model, thresholds=f"cart_time: p(95)<{limit}")

    assert passing["outcome"] == "passed", passing["reason"]
    assert failing["outcome"] == "failed"
    assert failing["reason"].startswith(f"thresholds failed: cart_time p(95)<{limit}: p(95) is ")
    assert "% rank)" in failing["reason"]  # the merged value is named with its bound
