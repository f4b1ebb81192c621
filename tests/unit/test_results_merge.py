"""Unit tests for results.merge: the units' summaries merged into one run result."""

from __future__ import annotations

import json

import pytest

import results
from tests.support.k6_results import (
    grid_compacts,
    split_compacts,
    unit_summary,
)

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


def test_an_integer_too_large_for_a_float_in_a_databag_is_ignored_not_a_crash():
    # A unit's databag is JSON: nothing stops it holding 10**400 (k6 never writes one).
    huge = 10**400
    summaries = {
        "k6/0": {"trends": {"t": {"min": 1, "max": huge, "avg": 2.0, "count": huge}}},
        "k6/1": {"trends": {"t": {"min": 1, "max": 3, "avg": 2.0, "count": 3}}},
        "k6/2": {"counters": {"http_reqs": huge}},
    }

    merged = results.aggregate(summaries, duration_s=1.0)

    assert merged["trends"]["t"]["max"] == 3  # the unreadable max is left out, not raised on
    assert merged["trends"]["t"]["count"] is None  # k6/0's count is unknown
    assert "http_reqs" not in merged["counters"]
