"""Unit tests for results.quantiles: merged percentiles within their rank error, fast and exact.

Distributions are built as k6 builds them (tests/support/k6_results.py). The merge is checked
number for number against the algorithm it replaced, kept below as the reference.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from itertools import accumulate
from unittest import mock

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import results
from results import quantiles
from tests.support.k6_results import (
    grid_compacts,
    k6_trend,
    load_grid,
    tiny,
    trend_summary,
)


def raw_distribution(samples: Sequence[float]) -> results.Distribution:
    """A unit's distribution from k6's exact (unrounded) grid values."""
    entry = k6_trend(samples)
    grid = [entry[f"p({p})"] for p in results.GRID_PERCENTS]
    distribution = results.Distribution.from_compact({**entry, results.GRID_KEY: grid})
    assert distribution is not None
    return distribution


def shares(union: Sequence[float], x: float, tolerance: float) -> tuple[float, float]:
    """(share of samples <= x + tolerance, share of samples < x - tolerance) of sorted `union`."""
    return (
        bisect_right(union, x + tolerance) / len(union),
        bisect_left(union, x - tolerance) / len(union),
    )


def merged_trend(trends: dict[str, dict], **kwargs) -> dict:
    per_unit = {unit: {"trends": {"t": trend}} for unit, trend in trends.items()}
    return results.aggregate(per_unit, 1.0, **kwargs)["trends"]["t"]


def test_merge_two_tiny_units_by_hand():
    # Arrange: {0, 10} and {5}; the union {0, 5, 10} has k6 p50 5 and p90 5 + 0.8 * 5 = 9.
    trends = {"k6/0": tiny([0, 10]), "k6/1": tiny([5])}

    # Act
    merged = merged_trend(trends)

    # Assert: c0(x) = x / 10 + 1/2 on [0, 10), c1 = 1 from 5 on; N = 3.
    # p50: target 0.5 * 2 + 1/2 = 1.5; C jumps from 1.0 to 2.0 at 5: x = 5, an exact median.
    assert merged["p(50)"] == 5
    assert merged["rank_error"]["p(50)"] == 0
    # p90: target 2.3 = x / 10 + 1.5, x = 8. Only 2 of 3 samples are <= 8 and 2 are below it:
    # error max(0.9 - 2/3, 2/3 - 0.9) = 0.2333, rounded up.
    assert merged["p(90)"] == 8
    assert merged["rank_error"]["p(90)"] == 0.234
    # p99: target 2.48, x = 9.8; 0.99 - 2/3 = 0.3233.
    assert merged["p(99)"] == 9.8
    assert merged["rank_error"]["p(99)"] == 0.324


def test_merge_small_forms_by_hand_is_exact_where_the_points_allow():
    # Arrange: 0..100 and 100..200 (101 samples each) as exported before grids.
    trends = {
        "k6/0": {
            "min": 0,
            "max": 100,
            "avg": 50,
            "med": 50,
            "p(90)": 90,
            "p(95)": 95,
            "count": 101,
        },
        "k6/1": {
            "min": 100,
            "max": 200,
            "avg": 150,
            "med": 150,
            "p(90)": 190,
            "p(95)": 195,
            "count": 101,
        },
    }

    # Act
    merged = merged_trend(trends)

    # Assert: the union 0..100, 100..200 (N = 202) has k6 p50 100 and p95 189 + 0.95 = 189.95.
    # p50: target 0.5 * 201 + 1/2 = 101 = C(100) - 1/2: x = 100, exactly a median.
    assert (merged["p(50)"], merged["rank_error"]["p(50)"]) == (100, 0)
    # p95: target 191.45 = 101 + (x - 99.5): x = 189.95, right; but k6/1's cell [med, p(90)]
    # only proves >= 101 + 51 samples <= x: 0.95 - 152/202 = 0.1975.
    assert (merged["p(95)"], merged["rank_error"]["p(95)"]) == (189.95, 0.198)


def test_merge_with_grids_certifies_a_small_error():
    # The same union as above, but each unit exported with the grid (0.1 % cells around p95).
    trends = {
        "k6/0": trend_summary(range(0, 101))["trends"]["t"],
        "k6/1": trend_summary(range(100, 201))["trends"]["t"],
    }

    merged = merged_trend(trends)

    assert merged["p(95)"] == 189.95
    assert merged["rank_error"]["p(95)"] == 0.00446  # was 0.198 from the small forms
    assert merged["p(50)"] == 100
    assert merged["rank_error"]["p(50)"] == 0


def test_merged_percentile_of_one_unit_is_its_own_k6_value():
    # Arrange: unit 0 of a real run alone: cart_time = 1, 3, ..., 199 (k6: p95 189.1, p50 100).
    summary = grid_compacts()["k6/0"]

    # Act
    merged = results.aggregate({"k6/0": summary}, 1.0)["trends"]["cart_time"]

    # Assert: 95 of its 100 samples are <= 189.1 and 95 below 190: an exact 95th percentile.
    assert (merged["p(95)"], merged["rank_error"]["p(95)"]) == (189.1, 0)
    assert (merged["p(50)"], merged["rank_error"]["p(50)"]) == (100, 0)


def test_merge_of_a_real_run_matches_the_union():
    # Arrange: the real run's two units hold cart_time 1..200 between them (odd / even).
    union = list(range(1, 201))

    # Act
    merged = results.aggregate(grid_compacts(), 1.0)["trends"]["cart_time"]

    # Assert: k6 on the union would say p50 100.5, p95 1 + 0.95 * 199 = 190.05, p99 198.01.
    assert (merged["p(50)"], merged["p(95)"], merged["p(99)"]) == (100.5, 190.05, 198.01)
    assert merged["count"] == 200
    for key in ("p(50)", "p(90)", "p(95)", "p(99)"):
        assert merged["rank_error"][key] <= 0.00501  # about 1/N: a sample either side
    # p99.9 (k6 199.801) is where the two units' tops interleave: 199.598, still certified.
    at_or_below, below = shares(union, merged["p(99.9)"], 0)
    error = merged["rank_error"]["p(99.9)"]
    assert merged["p(99.9)"] == 199.598
    assert at_or_below >= 0.999 - error and below <= 0.999 + error


@pytest.mark.parametrize(
    "trend",
    [
        {"min": 5, "max": 1, "avg": 3, "count": 4},  # min above max
        {"max": 9, "avg": 3, "count": 4},  # no min
        {"min": 1, "max": 9, "avg": 3, "count": 0},  # no samples
        {"min": 1, "max": 9, "avg": 3, "count": 2.5},  # not a count
    ],
)
def test_distribution_of_a_damaged_trend_is_none(trend):
    assert results.Distribution.from_compact(trend) is None


def test_distribution_ignores_a_grid_of_another_length_and_repairs_order():
    trend = {
        "min": 0,
        "max": 10,
        "count": 11,
        results.GRID_KEY: [1, 2, 3],
        "p(50)": 20,
        "p(90)": 4,
    }

    distribution = results.Distribution.from_compact(trend)

    # The 3-value grid is ignored; p(50) is clamped to max, p(90) raised to stay non-decreasing.
    assert distribution == results.Distribution(11, (0.0, 0.5, 0.9, 1.0), (0, 10, 10, 10))


@st.composite
def unit_samples(draw: st.DrawFn) -> list[float]:
    """One unit's samples: lognormal, bimodal, constant, or a tiny sample of 1-3 values."""
    kind = draw(st.sampled_from(["lognormal", "bimodal", "constant", "tiny"]))
    if kind == "tiny":
        values = st.sampled_from([0.0, 1.0, 1.5, 7.0, 250.0])
        return draw(st.lists(values, min_size=1, max_size=3))
    count = draw(st.integers(1, 400))
    if kind == "constant":
        return [draw(st.sampled_from([0.0, 3.0, 41.2]))] * count
    rng = random.Random(draw(st.integers(0, 2**32)))
    if kind == "lognormal":
        mu, sigma = draw(st.floats(-1, 6)), draw(st.floats(0.05, 2))
        return [rng.lognormvariate(mu, sigma) for _ in range(count)]
    share = draw(st.floats(0.5, 0.99))
    return [rng.gauss(20, 2) if rng.random() < share else rng.gauss(300, 30) for _ in range(count)]


PERCENTS = st.one_of(
    st.sampled_from([0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]),
    st.floats(0, 100).map(lambda percent: round(percent, 4)),
)


def a_priori_slack(distribution: results.Distribution, x: float) -> float:
    """(n - 1) * (width of the grid cell holding x) + 1/2, for a unit whose range holds x."""
    points = list(zip(distribution.fractions, distribution.values, strict=True))
    if not points[0][1] <= x <= points[-1][1] or points[0][1] == points[-1][1]:
        return 0.0
    below = max(f for f, v in points if v <= x)
    above = min(f for f, v in points if v >= x)
    return (distribution.count - 1) * max(0.0, above - below) + 0.5


@settings(max_examples=300, deadline=None)
@given(units=st.lists(unit_samples(), min_size=1, max_size=5), percent=PERCENTS)
def test_merged_percentile_is_within_its_certified_rank_error(units, percent):
    # Arrange: every unit's grid exactly as k6 computes it (unrounded).
    distributions = [raw_distribution(samples) for samples in units]
    union = sorted(x for samples in units for x in samples)
    fraction = percent / 100

    # Act
    x = results.merged_quantile(distributions, fraction)
    error = results.rank_error(distributions, x, fraction)

    # Assert (Theorem 1): share <= x is >= p - e and share < x is <= p + e in the raw union;
    # the tolerance covers the last bit of k6's float interpolation.
    at_or_below, below = shares(union, x, 1e-9 * max(1.0, abs(x)))
    assert at_or_below >= fraction - error - 1e-12
    assert below <= fraction + error + 1e-12
    # Theorem 2: e <= (sum of the units' slack at x + |p - 1/2|) / N.
    slack = math.fsum(a_priori_slack(d, x) for d in distributions)
    assert error <= (slack + abs(fraction - 0.5)) / len(union) + 1e-9


@settings(max_examples=150, deadline=None)
@given(units=st.lists(unit_samples(), min_size=1, max_size=5), percent=PERCENTS)
def test_merged_percentile_from_compact_summaries_is_within_its_rank_error(units, percent):
    # Arrange: the whole path: k6's export -> compact() (5-digit grid) -> aggregate().
    per_unit = {f"k6/{i}": trend_summary(samples) for i, samples in enumerate(units)}
    union = sorted(x for samples in units for x in samples)
    key = results.percentile_key(percent)

    # Act
    merged = results.aggregate(per_unit, 1.0, results.parse_thresholds(f"t {key}<1"))
    x, error = merged["trends"]["t"][key], merged["trends"]["t"]["rank_error"][key]

    # Assert: the same, with the value tolerance the 5-digit grid costs (docs/results.md).
    at_or_below, below = shares(union, x, results.VALUE_TOLERANCE * abs(x) + 1e-9)
    assert at_or_below >= percent / 100 - error - 1e-12
    assert below <= percent / 100 + error + 1e-12


def test_value_tolerance_covers_the_grid_rounding():
    # Arrange: a stored value moves by at most rho of the exact one, rho of GRID_DIGITS digits.
    rho = 0.5 * 10.0 ** (1 - results.GRID_DIGITS)

    # Act / Assert: relative to the stored value that is rho / (1 - rho), inside the tolerance.
    assert rho / (1 - rho) < results.VALUE_TOLERANCE < 1.0001 * rho / (1 - rho)


def test_without_the_value_tolerance_one_sample_can_be_on_the_wrong_side():
    # Arrange: 5 units x 60 requests, unit i at about 3(i+1)..7(i+1) ms in ns steps (the e2e
    # test's shape); seed 11 is one where unit 4's p(99) grid value is stored rounded down.
    rng = random.Random(11)
    units = [
        [round(3 * k + (i % 5) * k + rng.random() * 0.8 + 0.3, 6) for i in range(60)]
        for k in range(1, 6)
    ]
    per_unit = {f"k6/{i}": trend_summary(samples) for i, samples in enumerate(units)}
    union = sorted(x for samples in units for x in samples)

    # Act
    merged = results.aggregate(per_unit, 1.0, [])["trends"]["t"]
    x, error = merged["p(99)"], merged["rank_error"]["p(99)"]

    # Assert: "±0 % rank", yet strictly at x only 296 of 300 samples are <= x (p99 needs 297):
    # the 297th lies within the tolerance above x; with it, the certificate holds.
    assert (x, error) == (35.933, 0)
    assert shares(union, x, 0) == (296 / 300, 296 / 300)
    assert 0 < union[296] - x <= results.VALUE_TOLERANCE * x
    at_or_below, below = shares(union, x, results.VALUE_TOLERANCE * x)
    assert at_or_below >= 0.99 - error and below <= 0.99 + error


@settings(max_examples=100, deadline=None)
@given(units=st.lists(unit_samples(), min_size=2, max_size=5), seed=st.integers(0, 1000))
def test_merging_is_independent_of_unit_order_and_names(units, seed):
    # Arrange: the same summaries under other names, inserted in another order.
    summaries = [trend_summary(samples) for samples in units]
    order = list(range(len(units)))
    random.Random(seed).shuffle(order)
    first = {f"k6/{i}": summaries[i] for i in range(len(units))}
    second = {f"other/{9 - j}": summaries[i] for j, i in enumerate(order)}

    # Act
    merged_first = results.aggregate(first, 1.0)["trends"]["t"]
    merged_second = results.aggregate(second, 1.0)["trends"]["t"]

    # Assert: bit for bit the same numbers.
    assert merged_first == merged_second


def test_merging_is_independent_of_order_for_real_units():
    compacts = grid_compacts()

    forward = results.aggregate(compacts, 1.0)
    backward = results.aggregate(dict(reversed(list(compacts.items()))), 1.0)

    assert forward["trends"] == backward["trends"]


# --- the merge gives the numbers of the algorithm it replaced ---------------------------------
#
# The reference below is the merge as it was before it was made fast (a binary search over the
# sorted points of every unit, each step summing every unit's mid-rank), kept here verbatim as
# the definition the fast merge must match number for number, int or float alike.

REFERENCE_PERCENTILE = re.compile(r"^p\(\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*\)$")


def reference_number(value: object) -> int | float | None:
    # as the old code, but an integer beyond float range is no number (the old code raised
    # OverflowError on it in the merge's float maths: a hook error)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and type(value) is int:
        return value if abs(value) <= sys.float_info.max else None  # type: ignore[arg-type]
    return value if number and math.isfinite(value) else None  # type: ignore


def reference_count(value: object) -> int | None:
    n = reference_number(value)
    return int(n) if n is not None and n >= 0 and float(n).is_integer() else None


def reference_fraction(stat: str) -> float | None:
    match = REFERENCE_PERCENTILE.match(stat)
    percent = 50.0 if stat == "med" else float(match[1]) if match else None
    return percent / 100 if percent is not None and 0 <= percent <= 100 else None


def reference_distribution(stats: dict) -> results.Distribution | None:
    count = reference_count(stats.get("count"))
    low, high = reference_number(stats.get("min")), reference_number(stats.get("max"))
    if not count or low is None or high is None or low > high:
        return None
    points = {0.0: low, 1.0: high}
    grid = stats.get(results.GRID_KEY)
    if isinstance(grid, list) and len(grid) == len(results.GRID):
        gridded = zip(results.GRID, map(reference_number, grid), strict=True)
        points |= {f: v for f, v in gridded if v is not None}
    named = ((reference_fraction(str(k)), reference_number(v)) for k, v in stats.items())
    points |= {f: v for f, v in named if f is not None and 0 < f < 1 and v is not None}
    fractions = tuple(sorted(points))
    values = accumulate(
        (points[f] for f in fractions), lambda floor, v: min(max(v, floor), high)
    )  # each raised to the one before it, none above max
    return results.Distribution(count, fractions, tuple(values))


def reference_mid_rank(d: results.Distribution, x: float, left: bool = False) -> float:
    values, fractions = d.values, d.fractions
    if (x <= values[0]) if left else (x < values[0]):
        return 0.0
    if (x > values[-1]) if left else (x >= values[-1]):
        return float(d.count)
    j = bisect_left(values, x) if left else bisect_right(values, x)
    low, high = values[j - 1], values[j]
    fraction = fractions[j - 1] + (fractions[j] - fractions[j - 1]) * (x - low) / (high - low)
    return (d.count - 1) * fraction + 0.5


def reference_count_bounds(d: results.Distribution, x: float) -> tuple[int, int]:
    n1 = float(d.count) - 1.0
    at_or_below = bisect_right(d.values, x)
    low = 0 if at_or_below == 0 else math.floor(d.fractions[at_or_below - 1] * n1) + 1
    above = bisect_left(d.values, x)
    high = d.count if above == len(d.values) else math.ceil(d.fractions[above] * n1)
    return low, high


def reference_rank_error(distributions: list, x: float, fraction: float) -> float:
    total = sum(d.count for d in distributions)
    bounds = [reference_count_bounds(d, x) for d in distributions]
    at_or_below = sum(low for low, _ in bounds)
    below = sum(high for _, high in bounds)
    return max(fraction - at_or_below / total, below / total - fraction, 0.0)


def reference_merged_quantile(distributions: list, fraction: float) -> float:
    total = sum(d.count for d in distributions)
    target = fraction * (total - 1) + 0.5

    def mid_rank(x: float, *, left: bool = False) -> float:
        return math.fsum(reference_mid_rank(d, x, left) for d in distributions)

    points = sorted({v for d in distributions for v in d.values})
    low, high = 0, len(points) - 1
    while low < high:
        middle = (low + high) // 2
        if mid_rank(points[middle]) >= target:
            high = middle
        else:
            low = middle + 1
    if low == 0:
        return points[0]
    start, end = points[low - 1], points[low]
    at_start, before_end = mid_rank(start), mid_rank(end, left=True)
    if before_end < target or before_end <= at_start:
        return end
    x = start + (end - start) * (target - at_start) / (before_end - at_start)
    return min(max(x, start), end)


def reference_merge(distributions: list, percents) -> tuple[dict, dict]:
    values, errors = {}, {}
    for percent in sorted(set(percents)):
        fraction = percent / 100
        merged = reference_merged_quantile(distributions, fraction)
        value = merged if isinstance(merged, int) else float(f"{merged:.6g}")
        key = results.percentile_key(percent)
        values[key] = value
        errors[key] = reference_round_up(reference_rank_error(distributions, value, fraction))
    return values, errors


def reference_round_up(value: float) -> float:
    if value <= 0:
        return 0.0
    exact = Decimal(repr(float(value)))
    step = Decimal(1).scaleb(exact.adjusted() - 2)
    return float(exact.quantize(step, rounding=ROUND_CEILING))


def as_json(value: object) -> str:
    """Numbers as JSON writes them: 7 and 7.0 differ, as they do in the record."""
    return json.dumps(value, sort_keys=True)


def scaled_export(export: dict, rng: random.Random) -> dict:
    """Another unit of the run, as bench/databag.py makes them: its own latency and counts."""
    slower, more = math.exp(rng.gauss(0, 0.2)), rng.uniform(0.9, 1.1)
    data = copy.deepcopy(export)
    for entry in data["metrics"].values():
        if "passes" in entry and "fails" in entry:
            entry["passes"], entry["fails"] = round(entry["passes"] * more), entry["fails"]
        elif "count" in entry and "rate" in entry:
            entry["count"] = round(entry["count"] * more)
        elif "value" not in entry:  # a Trend
            for key, value in entry.items():
                if key == "count":
                    entry[key] = round(value * more)
                elif isinstance(value, int | float):
                    entry[key] = value * slower
    return data


REPORTED_AND_75 = (*results.REPORTED_PERCENTILES, 75.0)


def test_merge_gives_the_reference_numbers_on_the_bench_like_run():
    # Arrange: 300 units made from a real unit's export (11 trends, 5 with the grid) as the
    # databag bench makes them: each its own latency factor and sample counts.
    rng = random.Random(20261202)
    export = load_grid()["k6/0"]
    per_unit = {f"k6/{i}": results.compact(scaled_export(export, rng)) for i in range(300)}
    thresholds = results.parse_thresholds("http_req_duration: p(95)<500; cart_time p(75)<120")

    # Act
    merged = results.aggregate(per_unit, 10.0, thresholds)

    # Assert: every trend's percentiles and rank errors are the reference's, int or float.
    for name, trend in merged["trends"].items():
        distributions = [reference_distribution(s["trends"][name]) for s in per_unit.values()]
        percents = REPORTED_AND_75 if name == "cart_time" else results.REPORTED_PERCENTILES
        values, errors = reference_merge(distributions, percents)
        assert as_json({k: trend[k] for k in values}) == as_json(values), name
        assert as_json(trend["rank_error"]) == as_json(errors), name
    assert sum(results.GRID_KEY in t for t in per_unit["k6/7"]["trends"].values()) >= 4


@st.composite
def damaged_trend(draw: st.DrawFn) -> dict:
    """A unit's compact trend, maybe damaged as a databag could hold it (any JSON value)."""
    trend = dict(trend_summary(draw(unit_samples()))["trends"]["t"])
    junk = st.sampled_from([True, False, "7", None, math.nan, math.inf, [1.0], {"v": 1}, 10**400])
    grid = trend.get(results.GRID_KEY)
    damage = draw(st.sampled_from(["none", "none", "junk", "swap", "named", "small", "short"]))
    if damage == "junk" and grid:
        trend[results.GRID_KEY] = [draw(junk) if draw(st.booleans()) else v for v in grid]
        trend[results.GRID_KEY][draw(st.integers(0, len(grid) - 1))] = draw(junk)
    elif damage == "swap" and grid:
        i, j = draw(st.integers(0, len(grid) - 1)), draw(st.integers(0, len(grid) - 1))
        trend[results.GRID_KEY] = list(grid)
        trend[results.GRID_KEY][i], trend[results.GRID_KEY][j] = grid[j], grid[i]
    elif damage == "named":
        trend[draw(st.sampled_from(["med", "p(50)", "p(90)", "p(99.9)"]))] = draw(
            st.one_of(st.floats(0, 500), junk)
        )
    elif damage == "small":
        trend.pop(results.GRID_KEY, None)
        trend.update({"med": trend["avg"], "p(90)": trend["max"], "p(95)": trend["max"]})
    elif damage == "short" and grid:
        trend[results.GRID_KEY] = grid[:-1]
    return trend


def as_points(distribution: results.Distribution | None) -> object:
    """A distribution with its values' types: 7 and 7.0 differ."""
    if distribution is None:
        return None
    values = [(type(v).__name__, v) for v in distribution.values]
    return distribution.count, distribution.fractions, values


@settings(max_examples=300, deadline=None)
@given(trend=damaged_trend())
def test_distribution_of_any_trend_is_the_references(trend):
    assert as_points(results.Distribution.from_compact(trend)) == as_points(
        reference_distribution(trend)
    )


@pytest.mark.parametrize("decisions", ["from the lines", "every one exact"])
@settings(max_examples=200, deadline=None)
@given(
    trends=st.lists(damaged_trend(), min_size=1, max_size=6),
    percents=st.lists(PERCENTS, min_size=1, max_size=4),
)
def test_merge_gives_the_reference_numbers(decisions, trends, percents):
    # Arrange: compact trends of 1 to 6 units (some damaged), with a usable distribution.
    distributions = [d for t in trends if (d := results.Distribution.from_compact(t))]
    assume(distributions)
    tolerance = quantiles._LINE_TOLERANCE if decisions == "from the lines" else math.inf
    reference = reference_merge(distributions, percents)

    # Act
    with mock.patch.object(quantiles, "_LINE_TOLERANCE", tolerance):
        values, errors = results.merge_percentiles(distributions, percents)
        unrounded = [results.merged_quantile(distributions, p / 100) for p in percents]

    # Assert: the same numbers (7 and 7.0 differ), the unrounded quantiles too.
    assert (as_json(values), as_json(errors)) == (as_json(reference[0]), as_json(reference[1]))
    expected = [reference_merged_quantile(distributions, p / 100) for p in percents]
    assert as_json(unrounded) == as_json(expected)
    for d in distributions:  # anywhere: at a unit's points, between them, beyond them
        low, middle, high = d.values[0], d.values[len(d.values) // 2], d.values[-1]
        for x in {low, middle, (low + high) / 2, high + 1}:
            assert results.rank_error(distributions, x, 0.5) == reference_rank_error(
                distributions, x, 0.5
            )
            for left in (False, True):
                assert d.mid_rank(x, left=left) == reference_mid_rank(d, x, left)
            assert d.count_bounds(x) == reference_count_bounds(d, x)


@settings(max_examples=100, deadline=None)
@given(units=st.lists(unit_samples(), min_size=1, max_size=5), percent=PERCENTS)
def test_merge_of_raw_distributions_gives_the_reference_numbers(units, percent):
    # k6's exact (unrounded) grid values: points closer together than 5 digits allow.
    distributions = [raw_distribution(samples) for samples in units]

    x = results.merged_quantile(distributions, percent / 100)

    assert as_json(x) == as_json(reference_merged_quantile(distributions, percent / 100))


D = results.Distribution


@pytest.mark.parametrize(
    "distributions",
    [
        # Pieces narrower than their slope can be a float (one above 0, one below).
        [
            D(3, (0.0, 0.5, 1.0), (5e-324, 1e-323, 1.0)),
            D(3, (0.0, 0.5, 1.0), (-5e-324, 1e-323, 1)),
        ],
        # Points one float apart, the merged value between them.
        [D(3, (0.0, 0.5, 1.0), (1.0, 1.0000000000000002, 2.0)), D(2, (0.0, 1.0), (1.0, 2.0))],
        # Values near the largest float: the counts times them overflow, either way.
        [D(4, (0.0, 0.5, 1.0), (1e307, 1e308, 1.7e308)), D(2, (0.0, 1.0), (1e308, 1.7e308))],
        [
            D(3, (0.0, 0.5, 1.0), (-8e307, -8e307, 8e307)),
            D(3, (0.0, 0.5, 1.0), (-8e307, 8e307, 8e307)),
        ],
        # Ties, and the same number as an int and as a float in one unit and across units.
        [
            D(3, (0.0, 0.5, 1.0), (0, 0.0, 7)),
            D(2, (0.0, 1.0), (0.0, 7.0)),
            D(1, (0.0, 1.0), (7, 7)),
        ],
    ],
    ids=[
        "narrow pieces",
        "one float apart",
        "near the largest float",
        "near both largest floats",
        "ties of int and float",
    ],
)
def test_merge_of_float_edge_cases_gives_the_reference_numbers(distributions):
    percents = [0.0, 1.0, 25.0, 50.0, 75.0, 99.0, 99.9, 100.0]

    values, errors = results.merge_percentiles(distributions, percents)
    unrounded = [results.merged_quantile(distributions, p / 100) for p in percents]

    assert (as_json(values), as_json(errors)) == tuple(
        as_json(r) for r in reference_merge(distributions, percents)
    )
    expected = [reference_merged_quantile(distributions, p / 100) for p in percents]
    assert as_json(unrounded) == as_json(expected)
