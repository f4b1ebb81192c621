"""The `results` action after real runs: the table, the totals and the reports match the load."""

from __future__ import annotations

import pytest

import cos
import k6_workload
from tests.e2e import scripts
from tests.support.emulated_runs import configure, run_to_end

pytestmark = pytest.mark.timeout(120)

UNITS = 3
ITERATIONS = 90
REPORT_PATH = f"{k6_workload.WORKDIR}/{cos.REPORT_FILE}"


def table_rows(table: str) -> dict[str, list[str]]:
    """The results table's rows by their first cell (units and TOTAL), cells split on spaces."""
    rows = {}
    for line in table.splitlines():
        cells = line.split()
        if cells and (cells[0] == "TOTAL" or cells[0].startswith("k6/")):
            rows[cells[0]] = cells[1:]
    return rows


def test_results_table_and_totals_equal_the_requests_the_target_received(make_model, target):
    model = make_model(
        UNITS, configure(target, scripts.paced_iterations(ITERATIONS, 3, sleep=0.05))
    )
    last = run_to_end(model)

    result = model.action(model.leader, "results")

    stats = target.stats()
    assert stats["count"] == ITERATIONS
    assert result.ok, result.failure
    out = result.results
    assert out["run-id"] == last["run_id"]
    assert out["outcome"] == "passed"
    assert out["reason"] == "-"
    spread_ms = float(out["spread-ms"])
    assert 0 <= spread_ms < 1000
    assert last["aggregate"]["counters"]["http_reqs"]["count"] == stats["count"]
    assert last["aggregate"]["counters"]["iterations"]["count"] == ITERATIONS
    rows = table_rows(out["table"])
    # TOTAL has no exit cell: REQUESTS ITERATIONS FAILED P95
    assert rows["TOTAL"][:3] == [str(ITERATIONS), str(ITERATIONS), "0.00%"]
    units = {f"k6/{i}" for i in range(UNITS)}
    assert set(rows) == {"TOTAL", *units}
    # Each unit's row: EXIT REQUESTS ITERATIONS FAILED P95, and its requests are the ones the
    # target saw carrying that unit's header.
    assert {u: (rows[u][0], int(rows[u][1])) for u in units} == {
        u: ("0", stats["by_unit"][u]) for u in units
    }
    assert f"req/s: {last['aggregate']['counters']['http_reqs']['rate']:.2f}" in out["table"]
    assert out["units"] == {
        u.replace("/", "-"): {"exit-code": "0", "report": REPORT_PATH} for u in units
    }


def test_each_unit_exported_a_real_html_report(make_model, target):
    model = make_model(UNITS, configure(target, scripts.paced_iterations(30, 3, sleep=0.15)))
    run_to_end(model)

    result = model.action(model.leader, "results")

    reports = {u: r["report"] for u, r in result.results["units"].items()}
    assert reports == {f"k6-{i}": REPORT_PATH for i in range(UNITS)}
    for unit in model.units.values():
        html = (unit.workdir / cos.REPORT_FILE).read_text(errors="replace")
        # k6's web-dashboard report: one self-contained page (it opens with an SPDX comment).
        assert "<html" in html[:2000].lower(), html[:200]
        assert html.rstrip().endswith("</html>")
        assert len(html) > 10_000


def test_global_threshold_fails_the_run_although_every_unit_exited_0(make_model, target):
    model = make_model(UNITS, configure(target, scripts.shared_iterations(ITERATIONS, vus=3)))

    last = run_to_end(model, thresholds="http_reqs count>100000")
    result = model.action(model.leader, "results")

    assert {u: r["exit_code"] for u, r in last["units"].items()} == {
        f"k6/{i}": 0 for i in range(UNITS)
    }
    assert target.stats()["count"] == ITERATIONS
    assert last["outcome"] == "failed"
    failure = f"thresholds failed: http_reqs count>100000: count is {ITERATIONS}"
    assert last["failures"] == [failure]
    assert result.ok, result.failure
    assert result.results["outcome"] == "failed"
    assert "http_reqs count>100000" in result.results["reason"]
    assert result.results["reason"].startswith("thresholds failed:")
    assert {r["exit-code"] for r in result.results["units"].values()} == {"0"}
    assert table_rows(result.results["table"])["TOTAL"][0] == str(ITERATIONS)
