"""Unit tests for k6_watch: the watcher script on the real k6, against fake units' /v1/metrics.

Each fake unit answers `GET /v1/metrics` as k6 v1.1.0 does (JSON:API list of metrics with their
live samples); the watcher is the real templates/k6-watch.js run by the real k6.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import k6_watch
from k6_script import ScriptThreshold
from tests.support.processes import real_k6

EXIT_ABORTED = 108
EXIT_OK = 0


def metric(name: str, kind: str, **sample: float) -> dict:
    """One entry of k6's `GET /v1/metrics` answer."""
    return {
        "type": "metrics",
        "id": name,
        "attributes": {"type": kind, "contains": "default", "tainted": None, "sample": sample},
    }


def unit_metrics(requests: int, failed_rate: float, p95: float = 10.0, med: float = 5.0) -> list:
    """What one unit's k6 says mid-run: requests, their failure rate, latency percentiles."""
    return [
        metric("http_reqs", "counter", count=requests, rate=requests / 10),
        metric("iterations", "counter", count=requests, rate=requests / 10),
        metric("http_req_failed", "rate", rate=failed_rate),
        metric("vus", "gauge", value=2),
        metric(
            "http_req_duration",
            "trend",
            avg=med,
            min=1.0,
            med=med,
            max=p95 * 2,
            **{"p(90)": p95 * 0.9, "p(95)": p95},
        ),
    ]


class FakeUnit:
    """One unit's k6 REST API: answers its current metrics until it `end()`s."""

    def __init__(self, metrics: list) -> None:
        self.metrics = metrics
        self.requests = 0
        unit = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                unit.requests += 1
                body = json.dumps({"data": unit.metrics}).encode()
                self.send_response(200 if self.path == "/v1/metrics" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.endpoint = f"{host}:{port}"

    def end(self) -> None:
        """The unit's k6 has exited: its API is gone."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def units() -> Iterator[Callable[[list], FakeUnit]]:
    made: list[FakeUnit] = []

    def make(metrics: list) -> FakeUnit:
        made.append(FakeUnit(metrics))
        return made[-1]

    yield make
    for unit in made:
        if unit.server.socket.fileno() != -1:
            unit.end()


def watch(
    tmp_path: Path,
    fakes: list[FakeUnit],
    thresholds: list[ScriptThreshold],
    *,
    started: float | None = None,
    total_s: float | None = 5.0,
    during: Callable[[], None] | None = None,
) -> tuple[int, k6_watch.Trip | None]:
    """Run the real watcher against the fake units; its exit code and the trip it logged."""
    shutil.copy(k6_watch.SOURCE, tmp_path / k6_watch.SCRIPT_FILE)
    endpoints = {f"k6/{i}": u.endpoint for i, u in enumerate(fakes)}
    plan = k6_watch.plan(thresholds, endpoints, started or time.time(), total_s)
    plan["interval_s"] = 0.2
    plan["until_s"] = 20.0  # bounded well under the wait below, whatever happens
    env = {**os.environ, k6_watch.PLAN_ENV: json.dumps(plan), "K6_NO_USAGE_REPORT": "true"}
    argv = [real_k6(), *k6_watch.k6_argv()[1:]]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        if during is not None:
            during()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = tmp_path / k6_watch.LOG_FILE
    trip = k6_watch.read_trip(log.read_text()) if log.exists() else None
    return proc.returncode, trip


def end_when_polled(fakes: list[FakeUnit], times: int = 3) -> Callable[[], None]:
    """End these units once the watcher has read each of them `times` times (it judged them)."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while any(u.requests < times for u in fakes) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(u.requests >= times for u in fakes), [u.requests for u in fakes]
        for unit in fakes:
            unit.end()

    return run


FAILED_UNDER_10 = ScriptThreshold("http_req_failed", "rate<0.1", abort_on_fail=True)


def test_one_unit_failing_all_its_requests_trips_a_whole_run_rate(tmp_path, units):
    fakes = [
        units(unit_metrics(100, 1.0)),
        units(unit_metrics(100, 0.0)),
        units(unit_metrics(100, 0.0)),
    ]

    code, trip = watch(tmp_path, fakes, [FAILED_UNDER_10])

    assert code == EXIT_ABORTED
    assert trip is not None and trip.threshold == "http_req_failed: rate<0.1"
    assert trip.value == pytest.approx(1 / 3)
    assert trip.units == 3


def test_a_rate_is_weighted_by_each_units_requests(tmp_path, units):
    # one unit: 10 requests all failed; another: 990 that passed: 1 % for the whole run
    fakes = [units(unit_metrics(10, 1.0)), units(unit_metrics(990, 0.0))]

    code, trip = watch(tmp_path, fakes, [FAILED_UNDER_10], during=end_when_polled(fakes))

    assert (code, trip) == (EXIT_OK, None)  # the mean of the units' rates would be 50 %


def test_one_unit_over_while_the_whole_run_is_under_does_not_trip(tmp_path, units):
    fakes = [
        units(unit_metrics(100, 0.25)),
        units(unit_metrics(100, 0.0)),
        units(unit_metrics(100, 0.0)),
    ]

    code, trip = watch(tmp_path, fakes, [FAILED_UNDER_10], during=end_when_polled(fakes))

    assert (code, trip) == (EXIT_OK, None)


def test_a_counter_is_summed_over_the_units(tmp_path, units):
    fakes = [units(unit_metrics(40, 0.0)) for _ in range(3)]
    at_most_100 = ScriptThreshold("http_reqs", "count<=100", abort_on_fail=True)

    code, trip = watch(tmp_path, fakes, [at_most_100])

    assert code == EXIT_ABORTED
    assert trip is not None and trip.value == 120


def test_a_percentile_trips_only_when_every_units_own_is_over(tmp_path, units):
    slow = [units(unit_metrics(50, 0.0, p95=p95)) for p95 in (100.0, 300.0, 500.0)]
    p95_under_50 = ScriptThreshold("http_req_duration", "p(95)<50", abort_on_fail=True)

    code, trip = watch(tmp_path, slow, [p95_under_50])

    assert code == EXIT_ABORTED
    assert trip is not None and trip.value == (100.0, 500.0)


def test_a_percentile_between_the_units_own_does_not_trip(tmp_path, units):
    fakes = [units(unit_metrics(50, 0.0, p95=p95)) for p95 in (100.0, 300.0, 500.0)]
    p95_under_200 = ScriptThreshold("http_req_duration", "p(95)<200", abort_on_fail=True)

    code, trip = watch(tmp_path, fakes, [p95_under_200], during=end_when_polled(fakes))

    assert (code, trip) == (EXIT_OK, None)  # the whole run's p95 may be under 200


def test_a_percentile_without_a_live_value_is_bounded_by_its_neighbours(tmp_path, units):
    fakes = [units(unit_metrics(50, 0.0, p95=p95)) for p95 in (100.0, 300.0)]
    p99_under_90 = ScriptThreshold("http_req_duration", "p(99)<90", abort_on_fail=True)

    code, trip = watch(tmp_path, fakes, [p99_under_90])

    assert code == EXIT_ABORTED  # p99 >= p95 >= 100 on every unit
    assert trip is not None and trip.value == (100.0, 600.0)  # up to the largest max


def test_nothing_trips_before_delay_abort_eval(tmp_path, units):
    fakes = [units(unit_metrics(100, 1.0))]
    delayed = ScriptThreshold("http_req_failed", "rate<0.1", True, delay_abort_eval_s=2.0)
    started = time.time()

    code, trip = watch(tmp_path, fakes, [delayed], started=started)

    assert code == EXIT_ABORTED
    assert trip is not None and trip.at_s is not None and trip.at_s >= 2.0


def test_a_unit_that_ended_keeps_its_last_values_in_the_whole_run(tmp_path, units):
    done = units(unit_metrics(80, 0.0))
    running = units(unit_metrics(10, 0.0))
    at_most_85 = ScriptThreshold(
        "http_reqs", "count<=85", abort_on_fail=True, delay_abort_eval_s=1
    )

    code, trip = watch(
        tmp_path, [done, running], [at_most_85], during=end_when_polled([done], times=1)
    )

    assert code == EXIT_ABORTED
    assert trip is not None and trip.value == 90


def test_the_watcher_ends_on_its_own_once_every_unit_has_ended(tmp_path, units):
    fakes = [units(unit_metrics(100, 0.0)) for _ in range(2)]

    code, trip = watch(tmp_path, fakes, [FAILED_UNDER_10], during=end_when_polled(fakes))

    assert (code, trip) == (EXIT_OK, None)
    assert all(unit.requests >= 2 for unit in fakes)


def test_a_trip_reads_as_the_runs_reason():
    line = json.dumps(
        {
            "level": "info",
            "msg": json.dumps(
                {
                    "k6k8s_trip": {
                        "threshold": "http_req_failed: rate<0.1",
                        "value": 0.3333,
                        "at_s": 5.25,
                        "units": 3,
                    }
                }
            ),
        }
    )
    log = "\n".join(['{"level":"info","msg":"hello"}', "not json", line])

    trip = k6_watch.read_trip(log)

    assert trip == k6_watch.Trip("http_req_failed: rate<0.1", 0.3333, 5.25, 3)
    assert trip.reason() == (
        "abortOnFail threshold 'http_req_failed: rate<0.1' crossed on the whole run 5.2 s after "
        "the start: live value 0.3333, from 3 unit(s)"
    )


def test_a_bounded_trip_reads_with_its_bounds():
    trip = k6_watch.Trip("http_req_duration: p(95)<50", (100.0, 500.0), None, None)

    assert trip.reason() == (
        "abortOnFail threshold 'http_req_duration: p(95)<50' crossed on the whole run: "
        "live value between 100 and 500"
    )


def test_a_log_without_a_trip_reads_as_none():
    assert k6_watch.read_trip('{"msg": "{\\"other\\": 1}"}\n{"msg": 3}\n') is None


def test_the_watchers_plan_carries_every_threshold_as_the_script_wrote_it():
    thresholds = [
        ScriptThreshold("http_req_duration{status:200}", "p(99.9) < 300", True, 10.0),
        FAILED_UNDER_10,
    ]

    plan = k6_watch.plan(thresholds, {"k6/0": "10.1.0.5:6565"}, 1000.0, 60.0)

    assert plan["thresholds"] == [
        {
            "text": "http_req_duration{status:200}: p(99.9) < 300",
            "metric": "http_req_duration{status:200}",
            "stat": "p",
            "percent": 99.9,
            "op": "<",
            "value": 300.0,
            "delay_s": 10.0,
        },
        {
            "text": "http_req_failed: rate<0.1",
            "metric": "http_req_failed",
            "stat": "rate",
            "op": "<",
            "value": 0.1,
            "delay_s": 0.0,
        },
    ]
    assert (plan["until_s"], plan["started"]) == (60.0 + k6_watch.GRACE_S, 1000.0)
