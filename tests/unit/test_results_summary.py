"""Unit tests for results.summary: what k6 reports of a trend, and each unit's compact summary."""

from __future__ import annotations

import json

import pytest

import results
from tests.support.k6_results import (
    DATA,
    k6_trend,
    load,
    load_grid,
    load_split,
    trend_summary,
)


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
    assert set(trend) == results.FullTrend.__required_keys__  # the typed shape says the same
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


def test_compact_keeps_the_metrics_thresholds_name_first_with_their_grid():
    # Arrange: eight script trends with grids (11 KiB): only the first ones' grids would fit.
    metrics = {
        f"trend_{i}": k6_trend([float(v * (i + 1)) for v in range(1, 500)]) for i in range(8)
    }

    # Act: the run's thresholds name the last one
    summary = results.compact({"metrics": metrics}, keep={"trend_7"})

    # Assert: it gets its grid first; one that would have had a grid goes without
    trends = summary["trends"]
    assert results.GRID_KEY in trends["trend_7"]
    gridded = sorted(n for n in trends if results.GRID_KEY in trends[n])
    assert gridded[-1] == "trend_7" and "trend_6" not in gridded
    assert summary["dropped"] == 0


def test_compact_never_drops_a_metric_a_threshold_names_while_others_are_kept():
    # Arrange: the budget fills with script metrics ordered before it by name
    export = load("summary_custom_metrics.json")
    for i in range(300):
        export["metrics"][f"custom_counter_{i:03d}_{'y' * 40}"] = {"count": i, "rate": 1.0}
    export["metrics"]["zzz{scenario:checkout}"] = {"count": 7, "rate": 1.0}

    without = results.compact(export)
    summary = results.compact(export, keep={"zzz{scenario:checkout}"})

    assert "zzz{scenario:checkout}" not in without["counters"]
    assert summary["counters"]["zzz{scenario:checkout}"] == 7
    assert summary["dropped"] > 0  # others still left out


@pytest.mark.parametrize("document", [{}, {"metrics": []}, [], "text"])
def test_compact_rejects_a_document_that_is_not_a_summary_export(document):
    with pytest.raises(ValueError, match="no 'metrics' object"):
        results.compact(document)


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
