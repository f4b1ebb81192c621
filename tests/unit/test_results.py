"""Unit tests for results: compact summaries, merge units, thresholds, the results table.

Real k6 v1.1.0 summary exports live in tests/unit/data/ next to the scripts that produced them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import results

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def split_compacts() -> dict[str, dict]:
    """The three units of one real run split with --execution-segment (iterations 4, 3, 3)."""
    return {unit: results.compact(export) for unit, export in load_split().items()}


def load_split() -> dict[str, dict]:
    return load("summary_split_3_units.json")


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
    # Arrange: enough script trends to fill the budget on their own.
    export = load("summary_custom_metrics.json")
    trend = {"avg": 1.5, "min": 0.5, "med": 1.5, "max": 2.5, "p(90)": 2.25, "p(95)": 2.375}
    for i in range(40):
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
    assert merged["units_reporting"] == ["k6/0", "k6/1", "k6/2"]
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
    assert duration["per_unit"]["k6/1"]["p(95)"] == 0.849749
    assert duration["p(95)_unit_range"] == [0.849749, 2.50578]
    assert "p(95)" not in duration


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
    assert {u: s["p(95)"] for u, s in duration["per_unit"].items()} == {
        "k6/0": 25,
        "k6/1": 35,
        "k6/2": 80,
    }
    assert duration["p(90)_unit_range"] == [20, 70]


def test_aggregate_unit_without_summary_is_missing_not_zero():
    per_unit = {
        "k6/0": unit_summary(iterations=4, requests=8),
        "k6/1": None,
        "k6/2": unit_summary(iterations=2, requests=4),
    }

    merged = results.aggregate(per_unit, duration_s=1.0)

    assert merged["units_reporting"] == ["k6/0", "k6/2"]
    assert merged["units_missing"] == ["k6/1"]
    assert merged["counters"]["iterations"]["count"] == 6
    assert "missing_from" not in merged["counters"]["iterations"]


def test_aggregate_of_no_summaries_is_empty():
    merged = results.aggregate({"k6/0": None}, duration_s=None)

    assert merged == {
        "units_reporting": [],
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
    assert duration["p(95)_unit_range"] == [7, 7]
    assert duration["per_unit"]["k6/0"] == zeros


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

    assert merged["units_reporting"] == ["k6/1", "k6/10"]
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


def test_aggregate_is_json_serializable():
    per_unit = {**split_compacts(), "k6/3": None}

    merged = results.aggregate(per_unit, duration_s=None)

    assert json.loads(json.dumps(merged)) == merged


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
    ],
)
def test_parse_thresholds_accepts_each_form(text, expected):
    assert results.parse_thresholds(text) == [expected]


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
        ("http_req_duration p(95)<500", "'http_req_duration p(95)<500': percentiles cannot"),
        ("http_req_duration med<500", "'http_req_duration med<500': percentiles cannot"),
        ("http_reqs total>5", "'http_reqs total>5': unknown stat 'total'"),
        ("http_reqs count>many", "'http_reqs count>many': 'many' is not a number"),
        ("http_reqs count>nan", "'http_reqs count>nan': 'nan' is not a number"),
        ("checks rate>0.9; http_reqs count>inf", "'http_reqs count>inf': 'inf' is not a number"),
    ],
)
def test_parse_thresholds_names_the_bad_entry(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        results.parse_thresholds(text)


def test_threshold_prints_as_written():
    threshold = results.parse_thresholds("http_reqs count>1000000")[0]

    assert str(threshold) == "http_reqs count>1000000"


def real_aggregate() -> dict:
    return results.aggregate(split_compacts(), duration_s=2.0)


def test_evaluate_passes_when_every_threshold_holds():
    thresholds = results.parse_thresholds(
        "http_reqs count==30; http_reqs rate>=15; http_req_failed rate<0.34; checks value>0.6;"
        "http_req_duration max<4; http_req_duration min>0.3; http_req_duration avg<0.71;"
        "http_req_duration count>=30"
    )

    assert results.evaluate(real_aggregate(), thresholds) == []


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
    reasons = results.evaluate(real_aggregate(), results.parse_thresholds("cart_time avg<100"))

    assert reasons == [
        "cart_time avg<100: avg of cart_time is unknown: no sample count from k6/0, k6/1, k6/2"
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
        "k6/10": {"exit_code": 99, "summary": summaries["k6/10"]},
        "k6/0": {"exit_code": 0, "summary": summaries["k6/0"]},
        "k6/2": {"exit_code": 0, "summary": summaries["k6/2"]},
        "k6/3": {"exit_code": None, "summary": None, "lost": True},
    }
    merged = results.aggregate(summaries, duration_s=2.0)

    # Act
    table = results.format_table(units, merged)

    # Assert: 20 requests / 2 s = 10 req/s; 3 of 20 failed = 15%.
    assert table.splitlines() == [
        "UNIT   EXIT  REQUESTS  ITERATIONS  FAILED        P95 MS",
        "-----  ----  --------  ----------  ------  ------------",
        "k6/0      0         8           4   0.00%         25.00",
        "k6/2      0         4           2  25.00%         80.46",
        "k6/3   lost         -           -       -             -",
        "k6/10    99         8           4  25.00%         50.00",
        "-----  ----  --------  ----------  ------  ------------",
        "TOTAL              20          10  15.00%  25.00..80.46",
        "req/s: 10.00 (over 2 s)",
        "error rate: 15.00% (3 of 20 requests failed)",
        "no summary from: k6/3",
    ]


def test_format_table_of_real_run():
    per_unit = split_compacts()
    units = {u: {"exit_code": 0, "summary": s} for u, s in per_unit.items()}

    table = results.format_table(units, results.aggregate(per_unit, duration_s=None))

    lines = table.splitlines()
    assert lines[2].split() == ["k6/0", "0", "12", "4", "33.33%", "2.51"]
    assert lines[-3].split() == ["TOTAL", "30", "10", "33.33%", "0.85..2.51"]
    assert lines[-2] == "req/s: 24.59 (over 1.22024 s)"
    assert lines[-1] == "error rate: 33.33% (10 of 30 requests failed)"


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


def test_unit_sort_key_orders_numbers_numerically():
    units = ["k6/10", "other", "k6/2", "k6/1"]

    assert sorted(units, key=results.unit_sort_key) == ["k6/1", "k6/2", "k6/10", "other"]
