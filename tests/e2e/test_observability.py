"""COS outputs end to end: real k6 on 3 emulated units writes to a real Prometheus and to Loki.

Prometheus is Debian's `prometheus` binary with the remote-write receiver; Loki is a recording
stand-in for its push endpoint (tests/support/loki_receiver.py).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

import dashboard
from tests.e2e import scripts
from tests.support import loki_receiver
from tests.support import prometheus as prom
from tests.support.emulated_runs import configure, run_to_end

pytestmark = pytest.mark.timeout(150)

UNITS = 3
ALL_UNITS = {f"k6/{i}" for i in range(UNITS)}
# Explicit ids: ops.testing numbers relations from a process-wide counter, which can hand out
# the emulator's peer relation id (1) and make the State inconsistent.
REMOTE_WRITE_ID, LOGGING_ID = 101, 102


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[prom.Prometheus]:
    """A real Prometheus receiving remote write on loopback, killed after the test."""
    if prom.binary() is None:
        pytest.skip(f"the prometheus binary is missing: {prom.INSTALL_HINT}")
    with prom.running(tmp_path / "prometheus") as server:
        yield server


@pytest.fixture
def loki() -> Iterator[loki_receiver.LokiReceiver]:
    """A Loki push endpoint that records what it receives."""
    with loki_receiver.running() as receiver:
        yield receiver


def test_prometheus_starts_on_another_port_when_its_port_was_taken(tmp_path, monkeypatch):
    if prom.binary() is None:
        pytest.skip(f"the prometheus binary is missing: {prom.INSTALL_HINT}")
    with socket.socket() as taker:  # someone takes the free port before Prometheus binds it
        taker.bind(("127.0.0.1", 0))
        taker.listen()
        taken = taker.getsockname()[1]
        ports = iter([taken])
        free = prom._free_port
        monkeypatch.setattr(prom, "_free_port", lambda: next(ports, None) or free())

        with prom.running(tmp_path / "prometheus") as server:
            assert server.port != taken
            assert server.scalar("vector(1)") == 1.0
        assert "address already in use" in (tmp_path / "prometheus" / "prometheus.log").read_text()


def remote_write_relation(url: str) -> testing.Relation:
    """The k6 app related to a Prometheus unit that publishes its remote-write URL."""
    return testing.Relation(
        "send-remote-write",
        id=REMOTE_WRITE_ID,
        remote_app_name="prometheus",
        remote_units_data={0: {"remote_write": json.dumps({"url": url})}},
    )


def logging_relation(url: str) -> testing.Relation:
    """The k6 app related to a Loki unit that publishes its push endpoint."""
    return testing.Relation(
        "logging",
        id=LOGGING_ID,
        remote_app_name="loki",
        remote_units_data={0: {"endpoint": json.dumps({"url": url})}},
    )


def value(result: list[dict]) -> float | None:
    """The value of a one-series instant result (None when empty)."""
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


# ---------------------------------------------------------------- Prometheus


def test_request_count_in_prometheus_equals_what_the_target_received(
    make_model, target, prometheus
):
    relation = remote_write_relation(prometheus.remote_write_url)
    model = make_model(
        UNITS, configure(target, scripts.shared_iterations(60, vus=3)), relations=[relation]
    )

    last = run_to_end(model)
    run_id = last["run_id"]
    expected = target.stats()["count"]
    total = f'sum(k6_http_reqs_total{{run_id="{run_id}"}})'
    result, waited = prometheus.wait_for(total, lambda r: value(r) == expected, timeout=30)
    print(f"prometheus had all {expected} requests {waited:.2f} s after the run ended")

    assert last["outcome"] == "passed", last["reason"]
    assert expected == 60
    assert value(result) == expected, prometheus.log_tail()
    by_unit = prometheus.query(
        "sum by (juju_unit, juju_application, juju_model) "
        f'(k6_http_reqs_total{{run_id="{run_id}"}})'
    )
    assert {
        (s["metric"]["juju_unit"], s["metric"]["juju_application"], s["metric"]["juju_model"])
        for s in by_unit
    } == {(u, "k6", "emu") for u in ALL_UNITS}
    # Each unit's own count is what the target saw with that unit's header.
    assert {
        s["metric"]["juju_unit"]: int(float(s["value"][1])) for s in by_unit
    } == target.stats()["by_unit"]
    # Trends arrive as native histograms: one observation per request.
    durations = f'histogram_count(sum(k6_http_req_duration_seconds{{run_id="{run_id}"}}))'
    assert value(prometheus.query(durations)) == expected


def test_series_carry_the_juju_topology_on_every_k6_metric(make_model, target, prometheus):
    relation = remote_write_relation(prometheus.remote_write_url)
    model = make_model(
        UNITS, configure(target, scripts.shared_iterations(30, vus=3)), relations=[relation]
    )

    run_id = run_to_end(model)["run_id"]
    prometheus.wait_for(
        f'count(k6_iterations_total{{run_id="{run_id}"}})',
        lambda r: value(r) == UNITS,
        timeout=30,
    )
    series = prometheus.query(f'{{__name__=~"k6_.+", run_id="{run_id}"}}')

    assert series
    assert {s["metric"]["juju_model"] for s in series} == {"emu"}
    assert {s["metric"]["juju_application"] for s in series} == {"k6"}
    assert {s["metric"]["juju_model_uuid"] for s in series} == {model.juju_model.uuid}
    assert {s["metric"]["juju_unit"] for s in series} == ALL_UNITS
    names = {s["metric"]["__name__"] for s in series}
    assert {"k6_http_reqs_total", "k6_iterations_total", "k6_http_req_duration_seconds"} <= names


def dashboard_queries() -> dict[str, list[str]]:
    """Every PromQL expression of the bundled dashboard, by panel title."""
    board = json.loads((dashboard.DASHBOARDS_DIR / "k6.json").read_text())
    return {
        p["title"]: [t["expr"] for t in p["targets"]]
        for p in board["panels"]
        if p["type"] != "row" and p["datasource"]["uid"] == "${prometheusds}"
    }


def grafana_render(expr: str, run_id: str) -> str:
    """Substitute the dashboard's variables as Grafana would for one run and all units."""
    values = {
        "$juju_model": "emu",
        "$juju_application": "k6",
        "$run_id": run_id,
        "$juju_unit": ".*",
        "$__rate_interval": "1m",
        "$__range": "5m",
    }
    pattern = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.sub(pattern, lambda m: values[m.group(0)], expr)


def test_dashboard_queries_run_on_prometheus_and_totals_match_the_run(
    make_model, target, prometheus
):
    relation = remote_write_relation(prometheus.remote_write_url)
    # 20 iterations per unit, 0.4 s apart: long enough for two remote-write pushes (every 5 s),
    # so rate() has two samples per series. Every iteration: one request OK, one answered 500.
    script = scripts.paced_iterations(60, vus=3, sleep=0.4, failing=True)
    model = make_model(UNITS, configure(target, script), relations=[relation])

    last = run_to_end(model)
    run_id = last["run_id"]
    prometheus.wait_for(
        f'sum(k6_http_reqs_total{{run_id="{run_id}"}})', lambda r: value(r) == 120, timeout=30
    )
    results = {
        title: [prometheus.query(grafana_render(expr, run_id)) for expr in exprs]
        for title, exprs in dashboard_queries().items()
    }

    assert target.stats()["count"] == 120
    assert [t for t, rs in results.items() if any(not r for r in rs)] == []
    assert value(results["Requests"][0]) == 120
    assert value(results["Iterations"][0]) == 60
    assert value(results["Units"][0]) == UNITS
    assert value(results["Failed requests (%)"][0]) == 0.5
    # a rate() ratio: a push between an iteration's two requests skews it a little (the exact
    # share is the line above); what matters is the panel shows the failing half, not 0 or 1
    assert 0.35 < value(results["Failed request ratio"][0]) < 0.65
    assert value(results["Peak VUs"][0]) == UNITS  # one VU per unit
    p95 = value(results["p95 request duration"][0])
    assert p95 is not None and 0 < p95 < 1
    for title in ("Request rate", "Iteration rate", "Failed requests/s", "Virtual users"):
        units = {s["metric"].get("juju_unit") for s in results[title][0]}
        assert units == ALL_UNITS, title
    assert len(results["http_req_duration quantiles"]) == 4


# ---------------------------------------------------------------- Loki

LOG_SCRIPT = """
import http from 'k6/http';
export const options = {
  scenarios: { s: { executor: 'shared-iterations', vus: 3, iterations: 6, maxDuration: '30s' } },
};
export default function () {
  console.log("hello from k6");
  http.get(`${__ENV.TARGET}/`, { headers: { 'X-K6-Unit': __ENV.K6_K8S_UNIT } });
}
"""


def test_console_logs_reach_loki_labelled_with_unit_and_run(make_model, target, loki):
    model = make_model(
        UNITS, configure(target, LOG_SCRIPT), relations=[logging_relation(loki.url)]
    )

    last = run_to_end(model)
    run_id = last["run_id"]

    def every_unit_said_hello(entries: list[loki_receiver.Entry]) -> bool:
        units = {e.labels.get("juju_unit") for e in entries if e.line == "hello from k6"}
        return units == ALL_UNITS

    arrived = loki.wait_for(every_unit_said_hello, timeout=15)
    hello = [e for e in loki.entries if e.line == "hello from k6"]

    assert last["outcome"] == "passed", last["reason"]
    assert arrived, loki.streams()
    assert loki.rejected == []
    assert {e.labels["run_id"] for e in hello} == {run_id}
    assert {e.labels["juju_unit"] for e in hello} == ALL_UNITS
    assert {e.labels["juju_application"] for e in hello} == {"k6"}
    assert {e.labels["juju_model"] for e in hello} == {"emu"}
    assert {e.labels["source"] for e in hello} == {"console"}
    # One line per iteration: as many on each unit as iterations it ran.
    per_unit = {u: sum(e.labels["juju_unit"] == u for e in hello) for u in ALL_UNITS}
    iterations = {u: r["line"]["iterations"] for u, r in last["units"].items()}
    assert per_unit == iterations
    assert sum(per_unit.values()) == 6


def test_no_logging_relation_means_no_pushes(make_model, target, loki):
    model = make_model(UNITS, configure(target, LOG_SCRIPT))

    last = run_to_end(model)

    assert last["outcome"] == "passed", last["reason"]
    assert loki.pushes == 0
