"""Unit tests for results.report: the units' lines, the results table and the headline."""

from __future__ import annotations

import json

import pytest
from charms.k6_k8s.v0.synchronized_task import RUNNING, Run, UnitReport

import results
from tests.support.k6_results import (
    grid_compacts,
    split_compacts,
    unit_summary,
)

# The table's header and rule: 5 cells, each as wide as its widest value or title.
TABLE_RULE = "-----  ----  --------  ----------  ------  ------"
TABLE_HEAD = ("UNIT   EXIT  REQUESTS  ITERATIONS  FAILED  P95 MS", TABLE_RULE)


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
        *TABLE_HEAD,
        "k6/0      0         8           4   0.00%   25.00",
        "k6/2      0         4           2  25.00%   80.46",
        "k6/3   lost         -           -       -       -",
        "k6/10    99         8           4  25.00%   50.00",
        TABLE_RULE,
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
        *TABLE_HEAD,
        "k6/0      -         -           3       -       -",
        TABLE_RULE,
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


def test_aggregate_run_merges_the_reports_and_judges_the_runs_thresholds():
    # Arrange: the three units of a real split run (30 requests), released at t = 100 s.
    summaries = split_compacts()
    units = tuple(summaries)
    run = Run(
        run_id="r1",
        phase=RUNNING,
        participants=units,
        created=90.0,
        deadline=120.0,
        info={"thresholds": "http_reqs count>100; http_reqs count>=30"},
        released={u: [100.0, 100.0] for u in units},
    )
    reports = {
        u: UnitReport(run_id="r1", exit_code=0, result={"summary": s, "report": "/k6/r.html"})
        for u, s in summaries.items()
    }
    reports[units[0]] = UnitReport(
        run_id="r1", exit_code=0, result={"summary": summaries[units[0]]}
    )

    # Act
    outcome = results.aggregate_run(run, reports, ended=102.0)

    # Assert: the merge over the run's 2 s, one failure for the threshold that fails.
    thresholds = results.parse_thresholds("http_reqs count>100; http_reqs count>=30")
    assert outcome.data == results.aggregate(summaries, 2.0, thresholds)
    assert outcome.data["duration_source"] == "run"
    assert outcome.failures == ["thresholds failed: http_reqs count>100: count is 30"]
    assert outcome.lines[units[0]] == {**results.unit_line(summaries[units[0]]), "report": False}
    assert outcome.lines[units[1]] == {**results.unit_line(summaries[units[1]]), "report": True}
    assert outcome.headline == results.headline(outcome.data)
