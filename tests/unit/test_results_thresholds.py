"""Unit tests for results.thresholds: k6's threshold syntax, judged on the merged result."""

from __future__ import annotations

import pytest

import results
from tests.support.k6_results import (
    grid_compacts,
    split_compacts,
    tiny,
    trend_summary,
    unit_summary,
)


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


def judged_alone_and_together(
    units: dict[str, dict], thresholds: list[results.Threshold]
) -> tuple[list[list[str]], list[str]]:
    """Each unit's failures judged on its summary alone, and the run's on the merge."""
    alone = [
        results.evaluate(results.aggregate({u: s}, 1.0, thresholds), thresholds)
        for u, s in units.items()
    ]
    return alone, results.evaluate(results.aggregate(units, 1.0, thresholds), thresholds)


def test_evaluate_global_p95_fails_although_every_unit_passes_alone():
    # Arrange: two units of {0, 100}: k6 gives each p95 = 0 + 0.95 * 100 = 95, but the union
    # {0, 0, 100, 100} has p95 at position 0.95 * 3 = 2.85, between two 100s: 100.
    units = {"k6/0": {"trends": {"t": tiny([0, 100])}}, "k6/1": {"trends": {"t": tiny([0, 100])}}}
    thresholds = results.parse_thresholds("t p(95)<99")

    # Act
    alone, together = judged_alone_and_together(units, thresholds)

    # Assert
    assert alone == [[], []]
    assert together == ["t p(95)<99: p(95) is 100 (±0 % rank)"]


def test_evaluate_global_p5_passes_although_every_unit_fails_alone():
    # The reverse: each unit's p5 is 5; the union's is 0 (position 0.15, between two 0s).
    units = {"k6/0": {"trends": {"t": tiny([0, 100])}}, "k6/1": {"trends": {"t": tiny([0, 100])}}}
    thresholds = results.parse_thresholds("t p(5)<3")

    alone, together = judged_alone_and_together(units, thresholds)

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
        ("vus_max rate<5", "vus_max rate<5: a gauge metric has no rate (use max, value)"),
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


@pytest.mark.parametrize(
    ("op", "holds"), [("===", [False, True, False]), ("!=", [True, False, True])]
)
def test_evaluate_applies_k6s_strict_equal_and_not_equal(op, holds):
    merged = real_aggregate()  # http_reqs count 30
    thresholds = results.parse_thresholds(
        "; ".join(f"http_reqs count{op}{v}" for v in (31, 30, 29))
    )

    reasons = results.evaluate(merged, thresholds)

    assert [t.op for t in thresholds] == [op] * 3
    assert [f"{t}: count is 30" not in reasons for t in thresholds] == holds


def test_evaluate_a_gauge_value_on_the_largest_units():
    merged = results.aggregate(
        {"k6/0": {"gauges": {"queue": 3}}, "k6/1": {"gauges": {"queue": 4}}}, duration_s=1.0
    )

    reasons = results.evaluate(merged, results.parse_thresholds("queue: value<4, value<5"))

    assert reasons == ["queue value<4: value is 4"]


@pytest.mark.parametrize(
    ("text", "fails"),
    [
        ("never_counted count>10", "never_counted count>10: count is 0 (no samples)"),
        ("never_counted count<10", None),
        ("never_timed p(95)>100", "never_timed p(95)>100: p(95) is 0 (no samples)"),
        ("never_gauged value>1", "never_gauged value>1: value is 0 (no samples)"),
        ("never_rated rate>0.5", None),  # a Rate without samples is not judged by k6
        ("iterations{x:y} count>3", "iterations{x:y} count>3: count is 0 (no samples)"),
        ("http_reqs{x:y} rate>1", "http_reqs{x:y} rate>1: rate is 0 (no samples)"),
    ],
)
def test_a_script_threshold_on_a_metric_nobody_sampled_gets_k6s_verdict(text, fails):
    # The verdicts of one real `k6 run` (k6 v1.1.0) of a script with these thresholds and no
    # samples of those metrics: counters, trends and gauges are judged on 0, Rates not at all.
    merged = real_aggregate()

    reasons = results.evaluate(merged, results.parse_thresholds(text), like_k6=True)

    assert reasons == ([] if fails is None else [fails])


def test_a_config_threshold_on_a_metric_nobody_sampled_still_fails():
    reasons = results.evaluate(real_aggregate(), results.parse_thresholds("never_rated rate>0.5"))

    assert reasons == ["never_rated rate>0.5: metric never_rated not reported"]


def test_a_metric_absent_while_a_unit_dropped_metrics_fails_even_like_k6():
    merged = real_aggregate()
    merged["dropped"] = {"k6/1": 3}

    reasons = results.evaluate(
        merged, results.parse_thresholds("my_metric count<10"), like_k6=True
    )

    assert reasons == ["my_metric count<10: metric my_metric not reported"]


def test_a_rate_with_no_samples_merged_holds_like_k6():
    merged = results.aggregate(
        {"k6/0": {"rates": {"checks": {"passes": 0, "fails": 0}}}}, duration_s=1.0
    )

    strict = results.evaluate(merged, results.parse_thresholds("checks rate>0.9"))
    like_k6 = results.evaluate(merged, results.parse_thresholds("checks rate>0.9"), like_k6=True)

    assert strict == ["checks rate>0.9: rate of checks is unknown: no samples"]
    assert like_k6 == []
