"""Unit tests for results: compact summaries, merge units, thresholds, the results table.

Real k6 v1.1.0 summary exports live in tests/unit/data/ next to the scripts that produced them.
Distributions are built as k6 builds them: `k6_percentile` is k6's TrendSink.P, checked bit for
bit against the real binary (docs/results.md).
"""

from __future__ import annotations

import json
import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import results

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def split_compacts() -> dict[str, dict]:
    """The three units of one real run split with --execution-segment (iterations 4, 3, 3)."""
    return {unit: results.compact(export) for unit, export in load_split().items()}


def load_split() -> dict[str, dict]:
    return load("summary_split_3_units.json")


def load_grid() -> dict[str, dict]:
    """Two units of one real run with `results.trend_stats()`: cart_time is 1..200 over both."""
    return load("summary_grid_split_2_units.json")


def grid_compacts() -> dict[str, dict]:
    return {unit: results.compact(export) for unit, export in load_grid().items()}


def unit_summary(
    *,
    iterations: int = 0,
    requests: int = 0,
    failed: int = 0,
    duration: dict | None = None,
    duration_s: float | None = None,
) -> dict:
    """A compact summary as compact() returns it, built by hand."""
    summary: dict = {
        "duration_s": duration_s,
        "counters": {"iterations": iterations, "http_reqs": requests},
        "rates": {"http_req_failed": {"passes": failed, "fails": requests - failed}},
        "trends": {},
        "gauges": {},
        "dropped": 0,
    }
    if duration is not None:
        summary["trends"]["http_req_duration"] = duration
    return summary


def k6_percentile(ordered: Sequence[float], fraction: float) -> float:
    """k6's TrendSink.P: interpolate the sorted samples at position fraction * (n - 1)."""
    if len(ordered) == 1:
        return ordered[0]
    position = fraction * (len(ordered) - 1.0)
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    return low + (high - low) * (position - math.floor(position))


def k6_trend(samples: Sequence[float]) -> dict:
    """The trend k6 writes to --summary-export when run with `results.trend_stats()`."""
    ordered = sorted(samples)
    entry = {
        "avg": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "count": len(ordered),
    }
    for percent, fraction in zip(results.GRID_PERCENTS, results.GRID, strict=True):
        entry[f"p({percent})"] = k6_percentile(ordered, fraction)
    return entry


def trend_summary(samples: Sequence[float], name: str = "t") -> dict:
    """A unit's compact summary holding one trend of these samples, through compact()."""
    return results.compact({"metrics": {name: k6_trend(samples)}})


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


# --- compact ----------------------------------------------------------------------------------


def test_compact_keeps_counters_rates_trends_gauges_of_real_export():
    # Arrange: 10 iterations x (GET /ok -> 200, GET /fail -> 500), Counter +3, Rate, Gauge.
    export = load("summary_custom_metrics.json")

    # Act
    summary = results.compact(export)

    # Assert
    assert summary["counters"] == {
        "data_received": 4450,
        "data_sent": 1480,
        "http_reqs": 20,
        "iterations": 10,
        "my_counter": 30,
    }
    assert summary["rates"] == {
        "checks": {"passes": 10, "fails": 10},
        "http_req_failed": {"passes": 10, "fails": 10},
        "my_rate": {"passes": 6, "fails": 4},
    }
    assert summary["gauges"] == {"my_gauge": 4}
    assert summary["trends"]["my_trend"] == {
        "min": 0,
        "max": 40,
        "avg": 20,
        "med": 20,
        "p(90)": 40,
        "p(95)": 40,
    }
    assert summary["dropped"] == 0


def test_compact_http_req_failed_passes_count_failed_requests():
    # Arrange: unit 0 ran 4 iterations of GET /ok, GET /ok, GET /fail (500): 4 of 12 failed.
    export = load_split()["k6/0"]

    # Act
    summary = results.compact(export)

    # Assert: k6's Rate adds `true` for a failed request, so "passes" are the failures.
    assert summary["counters"]["http_reqs"] == 12
    assert summary["rates"]["http_req_failed"] == {"passes": 4, "fails": 8}
    # Checks: "status 200" and "fail is 500" pass, "fail is 200" fails, in each iteration.
    assert summary["rates"]["checks"] == {"passes": 8, "fails": 4}


def test_compact_derives_trend_counts_from_requests_and_iterations():
    export = load("summary_custom_metrics.json")

    summary = results.compact(export)

    trends = summary["trends"]
    assert trends["http_req_duration"]["count"] == 20  # http_reqs count
    assert trends["http_req_waiting"]["count"] == 20
    assert trends["iteration_duration"]["count"] == 10  # iterations count
    assert "count" not in trends["my_trend"]  # a script's trend: count unknown
    assert "count" not in trends["http_req_duration{expected_response:true}"]  # a subset


def test_compact_uses_exported_trend_count_stat():
    # Arrange: run with --summary-trend-stats "...,count"; unused_trend only has a threshold.
    export = load("summary_trend_count_thresholds.json")

    summary = results.compact(export)

    assert summary["trends"]["http_req_duration"]["count"] == 3
    assert summary["trends"]["unused_trend"]["count"] == 0
    assert "p(99)" not in summary["trends"]["http_req_duration"]
    assert summary["counters"]["zero_counter"] == 0


def test_compact_rounds_trend_stats_to_six_significant_digits():
    export = load_split()["k6/0"]  # http_req_duration p(95) = 2.5057782499999983

    summary = results.compact(export)

    assert summary["trends"]["http_req_duration"]["p(95)"] == 2.50578
    assert summary["trends"]["http_req_duration"]["max"] == 3.77036  # 3.770363


def test_compact_duration_is_iterations_count_over_rate():
    export = load_split()["k6/0"]  # iterations: count 4, rate 3.2780395909755295

    summary = results.compact(export)

    # 4 / 3.2780395909755295 = 1.220242... s
    assert summary["duration_s"] == 1.22024


def test_compact_duration_falls_back_to_any_counter():
    export = {"metrics": {"data_sent": {"count": 100, "rate": 50.0}}}

    assert results.compact(export)["duration_s"] == 2.0


def test_compact_duration_unknown_without_nonzero_counter():
    export = {"metrics": {"iterations": {"count": 0, "rate": 0}}}

    assert results.compact(export)["duration_s"] is None


def test_compact_real_export_is_json_round_trippable_and_small():
    summary = results.compact(load("summary_custom_metrics.json"))

    encoded = json.dumps(summary)

    assert json.loads(encoded) == summary
    assert len(encoded) < results.MAX_COMPACT_BYTES


def test_compact_stays_bounded_with_many_custom_metrics():
    # Arrange: the real export plus 600 custom trends and counters with long names.
    export = load("summary_custom_metrics.json")
    trend = {"avg": 1.23456789, "min": 0.1, "med": 1.1, "max": 9.87654321, "p(90)": 5, "p(95)": 6}
    for i in range(300):
        export["metrics"][f"custom_trend_{i:03d}_{'x' * 40}"] = dict(trend)
        export["metrics"][f"custom_counter_{i:03d}_{'y' * 40}"] = {"count": i, "rate": 1.0}
    total = len(export["metrics"])

    # Act
    summary = results.compact(export)

    # Assert: under the bound, core metrics kept, every metric either kept or counted dropped.
    assert len(json.dumps(summary)) < results.MAX_COMPACT_BYTES
    assert {"http_reqs", "iterations", "data_sent", "data_received"} <= set(summary["counters"])
    assert {"checks", "http_req_failed"} <= set(summary["rates"])
    assert {"http_req_duration", "iteration_duration"} <= set(summary["trends"])
    kept = sum(len(summary[section]) for section in ("counters", "rates", "trends", "gauges"))
    assert summary["dropped"] > 0
    assert kept + summary["dropped"] == total


def test_compact_drops_a_metric_whose_name_alone_exceeds_the_bound():
    export = load("summary_custom_metrics.json")
    export["metrics"]["n" * 10_000] = {"count": 1, "rate": 1.0}

    summary = results.compact(export)

    assert "n" * 10_000 not in summary["counters"]
    assert summary["dropped"] == 1
    assert len(json.dumps(summary)) < results.MAX_COMPACT_BYTES


def test_compact_keeps_script_metrics_before_k6_breakdowns():
    # Arrange: enough script trends to fill the budget on their own (~95 bytes each).
    export = load("summary_custom_metrics.json")
    trend = {"avg": 1.5, "min": 0.5, "med": 1.5, "max": 2.5, "p(90)": 2.25, "p(95)": 2.375}
    for i in range(100):
        export["metrics"][f"zz_{i:02d}"] = dict(trend)

    summary = results.compact(export)

    assert "zz_00" in summary["trends"]
    assert "my_trend" in summary["trends"]
    assert "http_req_waiting" not in summary["trends"]  # k6's breakdown goes first
    assert "http_req_duration{expected_response:true}" not in summary["trends"]


def test_compact_ignores_values_that_are_not_finite_numbers():
    export = {
        "metrics": {
            "http_reqs": {"count": 5, "rate": 2.5},
            "bad_counter": {"count": "5", "rate": 1},
            "bad_rate": {"passes": True, "fails": 1, "value": 0},
            "nan_trend": {"avg": float("nan"), "max": float("inf")},
            "half_trend": {"avg": float("nan"), "max": 3.0},
            "unknown_shape": {"foo": 1},
            "not_a_dict": [1, 2],
        }
    }

    summary = results.compact(export)

    assert summary["counters"] == {"http_reqs": 5}
    assert summary["rates"] == {}
    assert summary["trends"] == {"half_trend": {"max": 3.0}}
    assert summary["dropped"] == 5
    assert summary["duration_s"] == 2.0


def test_trend_stats_asks_k6_for_count_min_max_avg_and_every_grid_percentile():
    stats = results.trend_stats().split(",")

    assert stats[:4] == ["avg", "min", "max", "count"]
    assert stats[4:7] == ["p(2.5)", "p(5)", "p(7.5)"]
    assert stats[-3:] == ["p(99.99)", "p(99.995)", "p(99.999)"]
    assert len(stats) == 4 + 174


def test_grid_rises_strictly_and_holds_the_reported_percentiles():
    assert len(results.GRID) == len(results.GRID_PERCENTS) == 174
    assert all(a < b for a, b in zip(results.GRID, results.GRID[1:], strict=False))
    assert 0 < results.GRID[0] and results.GRID[-1] < 1
    for percent in ("50", "90", "95", "99", "99.9"):
        assert percent in results.GRID_PERCENTS
    # 0.1 % steps on both sides of p95, 0.05 % around p99, 0.01 % around p99.9.
    index = results.GRID_PERCENTS.index
    assert results.GRID_PERCENTS[index("95") - 1 : index("95") + 2] == ("94.9", "95", "95.1")
    assert results.GRID_PERCENTS[index("99") - 1 : index("99") + 2] == ("98.95", "99", "99.05")
    assert results.GRID_PERCENTS[index("99.9") - 1 : index("99.9") + 2] == (
        "99.89",
        "99.9",
        "99.91",
    )


def test_compact_keeps_the_grid_of_a_real_export():
    # Arrange: unit 0 of a real run holds cart_time = the odd numbers 1, 3, ..., 199.
    export = load_grid()["k6/0"]

    # Act
    trend = results.compact(export)["trends"]["cart_time"]

    # Assert: k6's own p(95) = s[94] + 0.05 * (s[95] - s[94]) = 189 + 0.1 (position 0.95 * 99).
    grid = trend[results.GRID_KEY]
    assert set(trend) == {"min", "max", "avg", "count", results.GRID_KEY}
    assert (trend["min"], trend["max"], trend["avg"], trend["count"]) == (1, 199, 100, 100)
    assert len(grid) == len(results.GRID)
    assert grid[results.GRID_PERCENTS.index("95")] == 189.1
    assert grid[results.GRID_PERCENTS.index("50")] == 100  # (99 + 101) / 2, an int in JSON
    assert grid == sorted(grid)


def test_compact_with_four_gridded_trends_stays_within_8_kib():
    # Arrange: a real HTTP run, sub-millisecond latencies (the longest numbers), 11 trends.
    exports = load_grid()

    for export in exports.values():
        # Act
        summary = results.compact(export)

        # Assert: the four trends that matter most carry their grid, everything is kept.
        encoded = json.dumps(summary)
        assert len(encoded) <= results.MAX_COMPACT_BYTES == 8192
        gridded = {n for n, t in summary["trends"].items() if results.GRID_KEY in t}
        assert {"http_req_duration", "iteration_duration", "cart_time", "queue_depth"} <= gridded
        assert summary["dropped"] == 0
        assert json.loads(encoded) == summary


def test_compact_rounds_grid_values_to_five_significant_digits():
    entry = k6_trend([1.0, 2.0, 3.0])
    entry["p(95)"] = 2.987654321  # k6 would say 2.9; any value between its neighbours will do

    trend = results.compact({"metrics": {"t": entry}})["trends"]["t"]

    assert trend[results.GRID_KEY][results.GRID_PERCENTS.index("95")] == 2.9877
    assert trend[results.GRID_KEY][results.GRID_PERCENTS.index("50")] == 2  # int, not 2.0


def test_compact_grid_never_decreases_nor_leaves_min_max():
    # Arrange: a last-bit wobble of k6's float interpolation, and values outside [min, max].
    entry = k6_trend([10.0, 20.0, 30.0, 40.0])
    entry["p(50)"] = 24.0  # below p(49) = 20 + 10 * 0.47 = 24.7
    entry["p(2.5)"] = 9.0  # below min
    entry["p(99.999)"] = 41.0  # above max

    grid = results.compact({"metrics": {"t": entry}})["trends"]["t"][results.GRID_KEY]

    index = results.GRID_PERCENTS.index
    assert grid[index("2.5")] == 10
    assert grid[index("49")] == grid[index("50")] == 24.7
    assert grid[index("99.999")] == 40
    assert grid == sorted(grid)


@pytest.mark.parametrize("samples", [[5.0], [5.0, 9.0], [7.0, 7.0, 7.0, 7.0]])
def test_compact_keeps_no_grid_when_min_and_max_fix_the_distribution(samples):
    # One or two samples, or one value: k6's interpolation is already fixed by min and max.
    trend = trend_summary(samples)["trends"]["t"]

    assert results.GRID_KEY not in trend
    assert (trend["min"], trend["max"], trend["count"]) == (
        min(samples),
        max(samples),
        len(samples),
    )


def test_compact_keeps_a_trend_small_when_its_grid_does_not_fit():
    # Arrange: eight script trends with grids: about 1.4 KiB each, 11 KiB in all.
    metrics = {
        f"trend_{i}": k6_trend([float(v * (i + 1)) for v in range(1, 500)]) for i in range(8)
    }

    # Act
    summary = results.compact({"metrics": metrics})

    # Assert: the first ones (by name) keep the grid, the others their small form; none dropped.
    trends = summary["trends"]
    assert len(json.dumps(summary)) <= results.MAX_COMPACT_BYTES
    assert summary["dropped"] == 0
    gridded = [n for n in sorted(trends) if results.GRID_KEY in trends[n]]
    assert gridded == [f"trend_{i}" for i in range(len(gridded))]
    assert 4 <= len(gridded) < 8
    assert trends["trend_7"] == {
        "min": 8.0,
        "max": 3992.0,
        "avg": 2000.0,
        "med": 2000.0,
        "p(90)": 3593.6,
        "p(95)": 3792.8,
        "count": 499,
    }


@pytest.mark.parametrize("document", [{}, {"metrics": []}, [], "text"])
def test_compact_rejects_a_document_that_is_not_a_summary_export(document):
    with pytest.raises(ValueError, match="no 'metrics' object"):
        results.compact(document)


# --- aggregate --------------------------------------------------------------------------------


def test_aggregate_sums_real_split_run_exactly():
    # Arrange: one 10-iteration run split over 3 units: iterations 4 + 3 + 3.
    per_unit = split_compacts()

    # Act
    merged = results.aggregate(per_unit, duration_s=2.0)

    # Assert
    assert merged["units_reporting"] == 3
    assert merged["units_missing"] == []
    assert merged["counters"]["iterations"] == {"count": 10, "rate": 5.0}
    assert merged["counters"]["http_reqs"] == {"count": 30, "rate": 15.0}  # 12 + 9 + 9
    assert merged["counters"]["orders"]["count"] == 20  # 8 + 6 + 6
    assert merged["counters"]["data_sent"]["count"] == 884 + 663 + 663
    # 1 of 3 requests per iteration fails: 4 + 3 + 3 failed, 8 + 6 + 6 succeeded.
    assert merged["rates"]["http_req_failed"] == {"passes": 10, "fails": 20, "rate": 10 / 30}
    assert merged["rates"]["checks"] == {"passes": 20, "fails": 10, "rate": 20 / 30}


def test_aggregate_merges_real_http_req_duration():
    merged = results.aggregate(split_compacts(), duration_s=2.0)

    duration = merged["trends"]["http_req_duration"]
    assert duration["min"] == 0.302238  # k6/1's min
    assert duration["max"] == 3.77036  # k6/0's max
    assert duration["count"] == 30
    # (12 * 0.972924 + 9 * 0.532035 + 9 * 0.532999) / 30 = 21.260394 / 30 = 0.7086798
    assert duration["avg"] == pytest.approx(0.70868, abs=1e-6)
    # Exported before grids: min, med, p(90), p(95), max per unit still merge, coarsely. Target
    # position 0.95 * 29 + 1/2 = 28.05: k6/1 and k6/2 lie below 0.91 (18 samples), so k6/0 needs
    # 1/2 + 11 F = 10.05, F = 0.868182, between its med (0.5) and p(90) (0.9):
    # x = 0.707252 + (0.368182 / 0.4) * (1.4198 - 0.707252) = 1.36312.
    assert duration["p(95)"] == 1.36312
    assert 0.849749 <= duration["p(95)"] <= 2.50578  # a mixture's p95: within the units' own
    # Certified from k6/0's cell [med, p(90)]: >= 6 + 18 samples <= x: 0.95 - 24/30 = 0.15.
    assert duration["rank_error"]["p(95)"] == 0.15
    assert "per_unit" not in duration
    assert "p(95)_unit_range" not in duration


def test_aggregate_without_run_duration_uses_longest_unit():
    # Unit durations: 4 / 3.27804 = 1.22024, 3 / 3.29325 = 0.910954, 3 / 3.29626 = 0.910124.
    merged = results.aggregate(split_compacts(), duration_s=None)

    assert merged["duration_s"] == 1.22024
    assert merged["duration_source"] == "units"
    assert merged["counters"]["http_reqs"]["rate"] == 24.5853  # 30 / 1.22024


def test_aggregate_with_run_duration_says_so():
    merged = results.aggregate(split_compacts(), duration_s=3.0)

    assert merged["duration_s"] == 3.0
    assert merged["duration_source"] == "run"


def test_aggregate_weighted_avg_and_exact_min_max():
    # Arrange: counts 4, 4, 2 iterations, 2 requests each.
    per_unit = {
        "k6/0": unit_summary(
            iterations=4,
            requests=8,
            failed=0,
            duration={"min": 2, "max": 30, "avg": 10, "p(90)": 20, "p(95)": 25, "count": 8},
        ),
        "k6/1": unit_summary(
            iterations=4,
            requests=8,
            failed=2,
            duration={"min": 5, "max": 40, "avg": 20, "p(90)": 30, "p(95)": 35, "count": 8},
        ),
        "k6/2": unit_summary(
            iterations=2,
            requests=4,
            failed=1,
            duration={"min": 1, "max": 90, "avg": 40, "p(90)": 70, "p(95)": 80, "count": 4},
        ),
    }

    # Act
    merged = results.aggregate(per_unit, duration_s=2.0)

    # Assert
    assert merged["counters"]["iterations"] == {"count": 10, "rate": 5.0}  # 4 + 4 + 2, / 2 s
    assert merged["counters"]["http_reqs"] == {"count": 20, "rate": 10.0}
    assert merged["rates"]["http_req_failed"] == {"passes": 3, "fails": 17, "rate": 0.15}
    duration = merged["trends"]["http_req_duration"]
    assert duration["min"] == 1
    assert duration["max"] == 90
    # (8 * 10 + 8 * 20 + 4 * 40) / 20 = 400 / 20 = 20; a plain mean of avgs would say 23.33.
    assert duration["avg"] == 20
    assert duration["count"] == 20
    # Merged p95: target position 0.95 * 19 + 1/2 = 18.55 samples. k6/0 and k6/1 are wholly
    # below 40 (16 samples); k6/2 adds 1/2 + 3 * F(x) with F = 0.9 * (x - 1) / 69 on [1, 70]:
    # 16.5 + 2.7 * (x - 1) / 69 = 18.55 gives x = 1 + 2.05 * 69 / 2.7 = 53.3889.
    assert duration["p(95)"] == 53.3889
    # Certified: >= 8 + 8 + 1 samples <= x, <= 8 + 8 + 3 below it: max(0.95 - 17/20, 19/20 - 0.95).
    assert duration["rank_error"]["p(95)"] == 0.1


def test_aggregate_unit_without_summary_is_missing_not_zero():
    per_unit = {
        "k6/0": unit_summary(iterations=4, requests=8),
        "k6/1": None,
        "k6/2": unit_summary(iterations=2, requests=4),
    }

    merged = results.aggregate(per_unit, duration_s=1.0)

    assert merged["units_reporting"] == 2
    assert merged["units_missing"] == ["k6/1"]
    assert merged["counters"]["iterations"]["count"] == 6
    assert "missing_from" not in merged["counters"]["iterations"]


def test_aggregate_of_no_summaries_is_empty():
    merged = results.aggregate({"k6/0": None}, duration_s=None)

    assert merged == {
        "units_reporting": 0,
        "units_missing": ["k6/0"],
        "duration_s": None,
        "duration_source": None,
        "counters": {},
        "rates": {},
        "trends": {},
        "gauges": {},
        "dropped": {},
    }


def test_aggregate_zero_duration_gives_no_rates():
    per_unit = {"k6/0": unit_summary(iterations=4, requests=8, duration_s=1.5)}

    merged = results.aggregate(per_unit, duration_s=0)

    assert merged["counters"]["http_reqs"] == {"count": 8, "rate": None}
    assert merged["duration_source"] == "run"


def test_aggregate_unknown_duration_gives_no_rates():
    per_unit = {"k6/0": unit_summary(iterations=4, requests=8, duration_s=None)}

    merged = results.aggregate(per_unit, duration_s=None)

    assert merged["duration_s"] is None
    assert merged["duration_source"] is None
    assert merged["counters"]["iterations"]["rate"] is None


def test_aggregate_avg_is_none_when_a_unit_count_is_unknown():
    # Arrange: a script's trend: k6 does not export its sample count by default.
    per_unit = {
        "k6/0": unit_summary(duration={"min": 1, "max": 9, "avg": 5, "p(95)": 8}),
        "k6/1": unit_summary(duration={"min": 2, "max": 4, "avg": 3, "p(95)": 4, "count": 6}),
    }

    merged = results.aggregate(per_unit, duration_s=1.0)

    duration = merged["trends"]["http_req_duration"]
    assert duration["avg"] is None
    assert duration["count"] is None
    assert duration["p(95)"] is None  # units cannot be weighted without their counts
    assert "rank_error" not in duration
    assert duration["count_unknown_units"] == ["k6/0"]
    assert (duration["min"], duration["max"]) == (1, 9)  # still exact


def test_aggregate_single_unit_avg_needs_no_count():
    per_unit = {"k6/0": unit_summary(duration={"min": 1, "max": 9, "avg": 5})}

    merged = results.aggregate(per_unit, duration_s=1.0)

    assert merged["trends"]["http_req_duration"]["avg"] == 5
    assert merged["trends"]["http_req_duration"]["count_unknown_units"] == ["k6/0"]


def test_aggregate_ignores_trend_placeholders_without_samples():
    # Arrange: k6 writes zeros for a trend that only a threshold names (count 0).
    zeros = {"min": 0, "max": 0, "avg": 0, "p(90)": 0, "p(95)": 0, "count": 0}
    per_unit = {
        "k6/0": unit_summary(duration=zeros),
        "k6/1": unit_summary(duration={"min": 5, "max": 7, "avg": 6, "p(95)": 7, "count": 3}),
    }

    merged = results.aggregate(per_unit, duration_s=1.0)

    duration = merged["trends"]["http_req_duration"]
    assert (duration["min"], duration["max"], duration["avg"], duration["count"]) == (5, 7, 6, 3)
    assert duration["p(95)"] == 7  # k6/1's own: the placeholder adds no samples


def test_aggregate_trend_with_no_samples_anywhere_has_no_stats():
    zeros = {"min": 0, "max": 0, "avg": 0, "count": 0}
    merged = results.aggregate({"k6/0": unit_summary(duration=zeros)}, duration_s=1.0)

    duration = merged["trends"]["http_req_duration"]
    assert (duration["min"], duration["max"], duration["avg"], duration["count"]) == (
        None,
        None,
        None,
        0,
    )


def test_aggregate_names_units_lacking_a_metric():
    # Arrange: vus_max is a gauge k6 samples once a second: a short unit may not have it.
    first = unit_summary(iterations=1)
    first["gauges"] = {"vus_max": 3}
    second = unit_summary(iterations=1)
    second["gauges"] = {"vus_max": 2}
    per_unit = {"k6/0": first, "k6/1": second, "k6/2": unit_summary(iterations=1)}

    merged = results.aggregate(per_unit, duration_s=1.0)

    assert merged["gauges"]["vus_max"] == {
        "max": 3,
        "sum_of_unit_max": 5,
        "missing_from": ["k6/2"],
    }


def test_aggregate_orders_units_by_number():
    per_unit = {
        "k6/10": unit_summary(iterations=1),
        "k6/2": None,
        "k6/1": unit_summary(iterations=1),
    }

    merged = results.aggregate(per_unit, duration_s=1.0)

    assert merged["units_reporting"] == 2
    assert merged["units_missing"] == ["k6/2"]


def test_aggregate_sums_float_counters_without_drift():
    per_unit = {f"k6/{i}": {"counters": {"money": 0.1}} for i in range(10)}

    merged = results.aggregate(per_unit, duration_s=1.0)

    assert merged["counters"]["money"]["count"] == 1.0  # sum() would give 0.9999999999999999


def test_aggregate_reports_units_that_dropped_metrics():
    dropping = unit_summary(iterations=1)
    dropping["dropped"] = 7

    merged = results.aggregate({"k6/0": dropping, "k6/1": unit_summary()}, duration_s=1.0)

    assert merged["dropped"] == {"k6/0": 7}


def test_aggregate_record_does_not_grow_with_the_units():
    # Arrange: the same two real units, as a run of 2 and as a run of 30.
    compacts = list(grid_compacts().values())
    two = {f"k6/{i}": compacts[i % 2] for i in range(2)}
    thirty = {f"k6/{i}": compacts[i % 2] for i in range(30)}

    # Act
    small, large = results.aggregate(two, 1.0), results.aggregate(thirty, 1.0)

    # Assert: the same keys everywhere, nothing listed per unit, only wider sums.
    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        return "list" if isinstance(value, list) else "value"

    assert shape(large) == shape(small)
    assert (small["units_reporting"], large["units_reporting"]) == (2, 30)
    assert abs(len(json.dumps(large)) - len(json.dumps(small))) < 200
    assert all("per_unit" not in t for t in large["trends"].values())


def test_aggregate_is_json_serializable():
    per_unit = {**split_compacts(), "k6/3": None}

    merged = results.aggregate(per_unit, duration_s=None)

    assert json.loads(json.dumps(merged)) == merged


# --- merged percentiles ----------------------------------------------------------------------


def tiny(samples: Sequence[float]) -> dict:
    """A hand-built compact trend of 1 or 2 samples (all k6 needs: min, max, avg, count)."""
    return {
        "min": min(samples),
        "max": max(samples),
        "avg": sum(samples) / len(samples),
        "count": len(samples),
    }


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


# --- thresholds -------------------------------------------------------------------------------


def test_parse_thresholds_reads_semicolons_and_newlines():
    text = "http_req_failed rate<0.01; http_reqs count>1000\n http_req_duration max<500 ;\n"

    thresholds = results.parse_thresholds(text)

    assert thresholds == [
        results.Threshold("http_req_failed", "rate", "<", 0.01),
        results.Threshold("http_reqs", "count", ">", 1000),
        results.Threshold("http_req_duration", "max", "<", 500),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks rate>0.99", results.Threshold("checks", "rate", ">", 0.99)),
        ("checks value >= 0.99", results.Threshold("checks", "value", ">=", 0.99)),
        ("iterations count==10", results.Threshold("iterations", "count", "==", 10)),
        ("vus_max max<=8", results.Threshold("vus_max", "max", "<=", 8)),
        ("my_trend avg<1e3", results.Threshold("my_trend", "avg", "<", 1000)),
        ("my_trend min>-5", results.Threshold("my_trend", "min", ">", -5)),
        (
            "http_req_duration{name:home page} max<5",
            results.Threshold("http_req_duration{name:home page}", "max", "<", 5),
        ),
        ("http_req_duration p(95)<200", results.Threshold("http_req_duration", "p(95)", "<", 200)),
        ("my_trend p(99.9)<=1.5", results.Threshold("my_trend", "p(99.9)", "<=", 1.5)),
        ("my_trend p( 95.0 )<1", results.Threshold("my_trend", "p(95)", "<", 1)),
        ("my_trend p(0)>=0", results.Threshold("my_trend", "p(0)", ">=", 0)),
        ("my_trend p(100)<9", results.Threshold("my_trend", "p(100)", "<", 9)),
        ("my_trend med<100", results.Threshold("my_trend", "med", "<", 100)),
        ("http_req_duration: avg<80", results.Threshold("http_req_duration", "avg", "<", 80)),
        (
            "http_req_duration{expected_response:true}: p(95)<200",
            results.Threshold("http_req_duration{expected_response:true}", "p(95)", "<", 200),
        ),
    ],
)
def test_parse_thresholds_accepts_each_form(text, expected):
    assert results.parse_thresholds(text) == [expected]


def test_parse_thresholds_reads_several_conditions_per_metric():
    text = (
        "http_req_duration: p(95)<200, p(99)<500, avg<100, max<1000, min>0, med<50, count>10\n"
        "http_req_failed rate<0.01; http_reqs count>1000"
    )

    thresholds = results.parse_thresholds(text)

    assert [str(t) for t in thresholds] == [
        "http_req_duration p(95)<200",
        "http_req_duration p(99)<500",
        "http_req_duration avg<100",
        "http_req_duration max<1000",
        "http_req_duration min>0",
        "http_req_duration med<50",
        "http_req_duration count>10",
        "http_req_failed rate<0.01",
        "http_reqs count>1000",
    ]


@pytest.mark.parametrize("text", ["", "  ", ";\n;"])
def test_parse_thresholds_of_empty_text_is_empty(text):
    assert results.parse_thresholds(text) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http_req_failed", "bad threshold 'http_req_failed': expected"),
        ("rate<0.01", "bad threshold 'rate<0.01': expected"),
        ("http_reqs count=>5", "bad threshold 'http_reqs count=>5': expected"),
        ("http_reqs count>", "bad threshold 'http_reqs count>': expected"),
        ("p(95)<200", "bad threshold 'p(95)<200': expected '<metric> <stat><op><number>' or"),
        ("http_req_duration p(101)<500", "'http_req_duration p(101)<500': 'p(101)' is not a"),
        ("t p(abc)<5", "'t p(abc)<5': 'p(abc)' is not a percentile; use p(N) with N a number"),
        ("t p95<5", "'t p95<5': unknown stat 'p95'; use one of count, rate, value, min, max"),
        ("http_reqs total>5", "'http_reqs total>5': unknown stat 'total'"),
        ("t: p(95)<200, p(99)", "'t: p(95)<200, p(99)': condition 'p(99)' is not '<stat><op>"),
        ("t: p(95)<200,", "'t: p(95)<200,': condition '' is not '<stat><op><number>'"),
        ("t:", "bad threshold 't:': condition '' is not"),
        (": p(95)<200", "bad threshold ': p(95)<200': '' is not a metric name"),
        ("t p(95)<200, p(99)<500", "'t p(95)<200, p(99)<500': 't p(95)<200,' is not a metric"),
        ("t: p(95)<fast", "'t: p(95)<fast': 'fast' is not a number"),
        ("http_reqs count>many", "'http_reqs count>many': 'many' is not a number"),
        ("http_reqs count>nan", "'http_reqs count>nan': 'nan' is not a number"),
        ("checks rate>0.9; http_reqs count>inf", "'http_reqs count>inf': 'inf' is not a number"),
    ],
)
def test_parse_thresholds_names_the_bad_entry(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        results.parse_thresholds(text)


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("http_reqs count>1000000", "http_reqs count>1000000"),
        ("t: p(95)<43.400", "t p(95)<43.400"),  # a failure message quotes the user's number
        ("t avg<1e3", "t avg<1e3"),
        ("t p( 95.0 )<1", "t p(95)<1"),  # the stat is named the way the results name it
    ],
)
def test_threshold_prints_as_written(text, printed):
    threshold = results.parse_thresholds(text)[0]

    assert str(threshold) == printed


def test_a_threshold_built_in_code_prints_its_value():
    assert str(results.Threshold("t", "max", "<", 0.5)) == "t max<0.5"


def real_aggregate() -> dict:
    return results.aggregate(split_compacts(), duration_s=2.0)


def test_evaluate_passes_when_every_threshold_holds():
    thresholds = results.parse_thresholds(
        "http_reqs count==30; http_reqs rate>=15; http_req_failed rate<0.34; checks value>0.6;"
        "http_req_duration max<4; http_req_duration min>0.3; http_req_duration avg<0.71;"
        "http_req_duration count>=30; http_req_duration: p(95)<1.4, med<0.6"
    )

    assert results.evaluate(real_aggregate(), thresholds) == []


def test_evaluate_percentile_failure_names_the_merged_value_and_its_error():
    # Arrange: the real run; cart_time is 1..200 over both units.
    thresholds = results.parse_thresholds("cart_time: p(95)<190, p(99)<199, med<100")
    merged = results.aggregate(grid_compacts(), 1.0, thresholds)

    # Act
    reasons = results.evaluate(merged, thresholds)

    # Assert: p(95) 190.05 and med 100.5, each with its certified rank error (0.501 %).
    assert reasons == [
        "cart_time p(95)<190: p(95) is 190.05 (±0.51 % rank)",
        "cart_time med<100: med is 100.5 (±0.51 % rank)",
    ]


def test_evaluate_judges_a_percentile_on_the_estimate_even_within_its_error():
    # 190.05 ± 0.5 % rank: a threshold at 190.1 is inside the band; the estimate passes it.
    thresholds = results.parse_thresholds("cart_time p(95)<190.1")
    merged = results.aggregate(grid_compacts(), 1.0, thresholds)

    assert results.evaluate(merged, thresholds) == []


def test_evaluate_percentile_the_aggregate_was_not_asked_for():
    thresholds = results.parse_thresholds("cart_time p(97.5)<190")

    reasons = results.evaluate(results.aggregate(grid_compacts(), 1.0), thresholds)

    assert reasons == [
        "cart_time p(97.5)<190: p(97.5) of cart_time was not merged "
        "(aggregate() was not given this threshold)"
    ]


def test_evaluate_global_p95_fails_although_every_unit_passes_alone():
    # Arrange: two units of {0, 100}: k6 gives each p95 = 0 + 0.95 * 100 = 95, but the union
    # {0, 0, 100, 100} has p95 at position 0.95 * 3 = 2.85, between two 100s: 100.
    units = {"k6/0": {"trends": {"t": tiny([0, 100])}}, "k6/1": {"trends": {"t": tiny([0, 100])}}}
    thresholds = results.parse_thresholds("t p(95)<99")

    # Act
    alone = [
        results.evaluate(results.aggregate({u: s}, 1.0, thresholds), thresholds)
        for u, s in units.items()
    ]
    together = results.evaluate(results.aggregate(units, 1.0, thresholds), thresholds)

    # Assert
    assert alone == [[], []]
    assert together == ["t p(95)<99: p(95) is 100 (±0 % rank)"]


def test_evaluate_global_p5_passes_although_every_unit_fails_alone():
    # The reverse: each unit's p5 is 5; the union's is 0 (position 0.15, between two 0s).
    units = {"k6/0": {"trends": {"t": tiny([0, 100])}}, "k6/1": {"trends": {"t": tiny([0, 100])}}}
    thresholds = results.parse_thresholds("t p(5)<3")

    alone = [
        results.evaluate(results.aggregate({u: s}, 1.0, thresholds), thresholds)
        for u, s in units.items()
    ]
    together = results.evaluate(results.aggregate(units, 1.0, thresholds), thresholds)

    # Alone, one of 2 samples is below 5: 1/2 - 0.05 = 45 % rank from an exact p5.
    assert alone == [["t p(5)<3: p(5) is 5 (±45 % rank)"]] * 2
    assert together == []


def test_evaluate_global_p95_passes_when_only_one_slow_unit_fails_alone():
    # Arrange: three units take 1..1000 ms; a fourth takes 1..900 ms and 100 requests of 5 s.
    fast = list(range(1, 1001))
    slow = [*range(1, 901), *[5000] * 100]
    units = {f"k6/{i}": trend_summary(fast, "http_req_duration") for i in range(3)}
    units["k6/3"] = trend_summary(slow, "http_req_duration")
    thresholds = results.parse_thresholds("http_req_duration p(95)<1500")

    # Act
    alone = results.evaluate(
        results.aggregate({"k6/3": units["k6/3"]}, 1.0, thresholds), thresholds
    )
    together = results.aggregate(units, 1.0, thresholds)

    # Assert: the slow unit's p95 is 5 s; 100 of 4000 requests above 1.5 s is 2.5 %: p95 passes.
    assert alone == ["http_req_duration p(95)<1500: p(95) is 5000 (±0 % rank)"]
    assert results.evaluate(together, thresholds) == []
    assert together["trends"]["http_req_duration"]["p(95)"] < 1000


def test_evaluate_gives_one_reason_per_failed_threshold():
    thresholds = results.parse_thresholds(
        "http_req_failed rate<0.01; http_reqs count>1000; iterations count>=10"
    )

    reasons = results.evaluate(real_aggregate(), thresholds)

    assert reasons == [
        "http_req_failed rate<0.01: rate is 0.333333",
        "http_reqs count>1000: count is 30",
    ]


@pytest.mark.parametrize(
    ("op", "holds"),
    [("<", [True, False, False]), ("<=", [True, True, False]), ("==", [False, True, False])]
    + [(">=", [False, True, True]), (">", [False, False, True])],
)
def test_evaluate_applies_each_operator(op, holds):
    merged = real_aggregate()  # http_reqs count 30
    thresholds = [results.Threshold("http_reqs", "count", op, v) for v in (31, 30, 29)]

    reasons = results.evaluate(merged, thresholds)

    assert [f"{t}: count is 30" not in reasons for t in thresholds] == holds


def test_evaluate_fails_a_metric_not_reported():
    thresholds = results.parse_thresholds("grpc_req_duration max<100")

    reasons = results.evaluate(real_aggregate(), thresholds)

    assert reasons == ["grpc_req_duration max<100: metric grpc_req_duration not reported"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http_reqs max<5", "http_reqs max<5: a counter metric has no max (use count, rate)"),
        ("checks count>5", "checks count>5: a rate metric has no count (use rate, value)"),
        ("orders avg<5", "orders avg<5: a counter metric has no avg (use count, rate)"),
        ("vus_max rate<5", "vus_max rate<5: a gauge metric has no rate (use max)"),
        ("cart_time rate<5", "cart_time rate<5: a trend metric has no rate (use min, max, avg"),
        (
            "http_reqs p(95)<5",
            "http_reqs p(95)<5: a counter metric has no p(95) (use count, rate)",
        ),
        ("checks med<5", "checks med<5: a rate metric has no med (use rate, value)"),
    ],
)
def test_evaluate_fails_a_stat_the_metric_does_not_have(text, reason):
    merged = real_aggregate()
    merged["gauges"] = {"vus_max": {"max": 3, "sum_of_unit_max": 3}}

    reasons = results.evaluate(merged, results.parse_thresholds(text))

    assert len(reasons) == 1
    assert reasons[0].startswith(reason)


def test_evaluate_gauge_max():
    merged = results.aggregate(
        {"k6/0": {"gauges": {"vus_max": 3}}, "k6/1": {"gauges": {"vus_max": 4}}}, duration_s=1.0
    )

    reasons = results.evaluate(merged, results.parse_thresholds("vus_max max<4; vus_max max<5"))

    assert reasons == ["vus_max max<4: max is 4"]


def test_evaluate_fails_a_rate_when_the_duration_is_unknown():
    merged = results.aggregate({"k6/0": unit_summary(requests=5)}, duration_s=None)

    reasons = results.evaluate(merged, results.parse_thresholds("http_reqs rate>1"))

    assert reasons == ["http_reqs rate>1: rate of http_reqs is unknown: run duration unknown"]


def test_evaluate_fails_an_avg_whose_counts_are_unknown():
    # cart_time is a script Trend: k6 exports no sample count for it by default.
    thresholds = results.parse_thresholds("cart_time avg<100; cart_time p(95)<100")

    reasons = results.evaluate(results.aggregate(split_compacts(), 2.0, thresholds), thresholds)

    assert reasons == [
        "cart_time avg<100: avg of cart_time is unknown: no sample count from k6/0, k6/1, k6/2",
        "cart_time p(95)<100: p(95) of cart_time is unknown: no sample count from k6/0, k6/1, "
        "k6/2",
    ]


def test_evaluate_fails_metrics_without_samples():
    merged = results.aggregate(
        {
            "k6/0": {
                "rates": {"my_rate": {"passes": 0, "fails": 0}},
                "trends": {"my_trend": {"min": 0, "max": 0, "avg": 0, "count": 0}},
            }
        },
        duration_s=1.0,
    )

    reasons = results.evaluate(merged, results.parse_thresholds("my_rate rate<1; my_trend max<1"))

    assert reasons == [
        "my_rate rate<1: rate of my_rate is unknown: no samples",
        "my_trend max<1: max of my_trend is unknown: no samples",
    ]


def test_evaluate_unknown_value_without_a_known_cause():
    merged = {"trends": {"t": {"min": None, "max": None, "avg": None, "count": 2}}}

    reasons = results.evaluate(merged, results.parse_thresholds("t max<1"))

    assert reasons == ["t max<1: max of t is unknown"]


# --- table ------------------------------------------------------------------------------------


def test_format_table_rows_in_unit_order_with_total_and_rates():
    # Arrange: k6/10 must come after k6/2; k6/3 was lost.
    duration_0 = {"min": 1, "max": 30, "avg": 10, "p(95)": 25.0, "count": 8}
    duration_2 = {"min": 1, "max": 90, "avg": 40, "p(95)": 80.456, "count": 4}
    duration_10 = {"min": 2, "max": 60, "avg": 20, "p(95)": 50.0, "count": 8}
    summaries = {
        "k6/0": unit_summary(iterations=4, requests=8, failed=0, duration=duration_0),
        "k6/10": unit_summary(iterations=4, requests=8, failed=2, duration=duration_10),
        "k6/2": unit_summary(iterations=2, requests=4, failed=1, duration=duration_2),
        "k6/3": None,
    }
    units = {
        "k6/10": {"exit_code": 99, "line": results.unit_line(summaries["k6/10"])},
        "k6/0": {"exit_code": 0, "line": results.unit_line(summaries["k6/0"])},
        "k6/2": {"exit_code": 0, "line": results.unit_line(summaries["k6/2"])},
        "k6/3": {"exit_code": None, "line": None, "lost": True},
    }
    merged = results.aggregate(summaries, duration_s=2.0)

    # Act
    table = results.format_table(units, merged)

    # Assert: 20 requests / 2 s = 10 req/s; 3 of 20 failed = 15%. Merged p95: the target
    # position 0.95 * 19 + 1/2 = 18.55 is crossed where k6/10 reaches its max, 60.
    assert table.splitlines() == [
        "UNIT   EXIT  REQUESTS  ITERATIONS  FAILED  P95 MS",
        "-----  ----  --------  ----------  ------  ------",
        "k6/0      0         8           4   0.00%   25.00",
        "k6/2      0         4           2  25.00%   80.46",
        "k6/3   lost         -           -       -       -",
        "k6/10    99         8           4  25.00%   50.00",
        "-----  ----  --------  ----------  ------  ------",
        "TOTAL              20          10  15.00%   60.00",
        "req/s: 10.00 (over 2 s)",
        "error rate: 15.00% (3 of 20 requests failed)",
        "no summary from: k6/3",
        "http_req_duration  p50 20.1  p90 52.7  p95 60.0  p99 79.3  p99.9 88.8  max 90.0 ms"
        "  (±35 % rank)",
    ]


def test_format_table_of_real_run_recorded_with_whole_summaries():
    # A last-run record written before unit lines existed holds each unit's whole summary.
    per_unit = split_compacts()
    units = {u: {"exit_code": 0, "summary": s} for u, s in per_unit.items()}

    table = results.format_table(units, results.aggregate(per_unit, duration_s=None))

    lines = table.splitlines()
    assert lines[2].split() == ["k6/0", "0", "12", "4", "33.33%", "2.51"]
    assert lines[6].split() == ["TOTAL", "30", "10", "33.33%", "1.36"]
    assert lines[7] == "req/s: 24.59 (over 1.22024 s)"
    assert lines[8] == "error rate: 33.33% (10 of 30 requests failed)"
    assert lines[9] == (
        "http_req_duration                          p50 0.58  p90 1.13  p95 1.36  p99 3.1"
        "  p99.9 3.7  max 3.77 ms  (±24 % rank)"
    )
    assert lines[11] == (
        "cart_time                                  p50 -  p90 -  p95 -  p99 -  p99.9 -  max 8"
        "  (no sample count from k6/0, k6/1, k6/2)"
    )


def test_format_table_of_real_run_with_grids():
    compacts = grid_compacts()
    units = {u: {"exit_code": 0, "line": results.unit_line(s)} for u, s in compacts.items()}

    table = results.format_table(units, results.aggregate(compacts, duration_s=None))

    lines = table.splitlines()
    assert lines[2].split() == ["k6/0", "0", "200", "100", "50.00%", "8.08"]
    assert lines[3].split() == ["k6/1", "0", "200", "100", "50.00%", "1.95"]
    assert lines[5].split() == ["TOTAL", "400", "200", "50.00%", "7.67"]
    assert lines[10].split() == [
        *("cart_time", "p50", "100.5", "p90", "180.1", "p95", "190.1", "p99", "198.0"),
        *("p99.9", "199.6", "max", "200.0", "(±0.51", "%", "rank)"),
    ]


def test_unit_line_is_a_units_row_in_a_few_numbers():
    summary = grid_compacts()["k6/0"]

    line = results.unit_line(summary)

    # p95 of its own http_req_duration, read from its grid (5 significant digits).
    assert line == {"requests": 200, "iterations": 100, "failed": 100, "p95": 8.0813}  # 8.0812917
    assert len(json.dumps(line)) < 80


def test_unit_line_of_no_summary_is_empty():
    assert results.unit_line(None) == {
        "requests": None,
        "iterations": None,
        "failed": None,
        "p95": None,
    }


def test_format_table_without_http_or_duration():
    units = {"k6/0": {"exit_code": None, "summary": {"counters": {"iterations": 3}}}}
    merged = results.aggregate({"k6/0": units["k6/0"]["summary"]}, duration_s=None)

    table = results.format_table(units, merged)

    assert table.splitlines() == [
        "UNIT   EXIT  REQUESTS  ITERATIONS  FAILED  P95 MS",
        "-----  ----  --------  ----------  ------  ------",
        "k6/0      -         -           3       -       -",
        "-----  ----  --------  ----------  ------  ------",
        "TOTAL               -           3       -       -",
        "req/s: - (duration unknown)",
        "error rate: - (- of - requests failed)",
    ]


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (0.00501, "±0.51 % rank"),
        (0.0041, "±0.41 % rank"),
        (0.234, "±24 % rank"),
        (0.0000123, "±0.0013 % rank"),
        (0, "±0 % rank"),
        (None, "rank error unknown"),
    ],
)
def test_rank_text_rounds_the_error_up(error, text):
    assert results.rank_text(error) == text


def test_format_table_leaves_out_coarse_trends_but_names_them():
    # Arrange: the same small-form trend under two names: only http_req_duration is always shown
    duration = {"min": 1, "max": 30, "avg": 10, "p(95)": 25.0, "count": 8}
    summary = unit_summary(iterations=4, requests=8, failed=0, duration=duration)
    summary["trends"]["http_req_waiting"] = dict(duration)
    merged = results.aggregate({"k6/0": summary, "k6/1": summary}, duration_s=2.0)
    units = {u: {"exit_code": 0, "line": results.unit_line(summary)} for u in ("k6/0", "k6/1")}

    table = results.format_table(units, merged).splitlines()

    assert table[-2].startswith("http_req_duration  p50 ")
    assert table[-1] == (
        "not shown, merged coarser than 5% rank (no grid from every unit): http_req_waiting"
    )


def test_headline_is_the_merged_p95_with_its_bound():
    duration = {"min": 1, "max": 30, "avg": 10, "p(95)": 25.0, "count": 8}
    summary = unit_summary(iterations=4, requests=8, failed=0, duration=duration)
    merged = results.aggregate({"k6/0": summary}, duration_s=2.0)
    trend = merged["trends"]["http_req_duration"]

    text = results.headline(merged)

    assert trend["p(95)"] == 25.0
    assert text == f"p95 25.0 ms ({results.rank_text(trend['rank_error']['p(95)'])})"
    assert results.headline({"trends": {}}) == ""


def test_compact_keeps_k6s_http_timings_ahead_of_its_other_trends():
    export = json.loads((DATA / "summary_grid_split_2_units.json").read_text())["k6/0"]

    order = list(results.compact(export)["trends"])

    assert order[:4] == ["http_req_duration", "iteration_duration", "cart_time", "queue_depth"]
    assert order[4:8] == [
        "http_req_waiting",
        "http_req_receiving",
        "http_req_sending",
        "http_req_blocked",
    ]
