"""The synchronized-task library's release fan-out, `fan_out`, on real sockets (127.0.0.1, ::1).

Servers listen on ports the kernel picks (port 0); nothing binds a fixed port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from charms.k6_k8s.v0 import synchronized_task as lib
from charms.k6_k8s.v0.synchronized_task import Outcome, fan_out

from tests.emulator.target import free_port
from tests.support.raw_server import (
    OK_ANSWER,
    Recorder,
    Silent,
    read_request,
    release_request,
    requests_for,
)

# ============================================================ fan_out on real sockets


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@dataclass
class ConnectLog:
    """Every connect attempt the process starts: (address, monotonic time), in order."""

    attempts: list[tuple[tuple, float]] = field(default_factory=list)
    after: Callable[[tuple], None] | None = None  # called after each attempt

    def times(self, endpoint: str) -> list[float]:
        host, port = endpoint.rsplit(":", 1)
        return [t for (a, t) in self.attempts if a[:2] == (host.strip("[]"), int(port))]


@pytest.fixture
def connect_log(monkeypatch: pytest.MonkeyPatch) -> ConnectLog:
    """Count connect attempts (fan_out connects without blocking, with `connect_ex`)."""
    log = ConnectLog()
    connect_ex = socket.socket.connect_ex

    def counting(sock: socket.socket, address) -> int:
        log.attempts.append((address, time.monotonic()))
        code = connect_ex(sock, address)
        if log.after is not None:
            log.after(address)
        return code

    monkeypatch.setattr(socket.socket, "connect_ex", counting)
    return log


def test_fan_out_sends_exactly_one_request_to_every_endpoint(raw_server):
    recorders = [Recorder() for _ in range(3)]
    servers = [raw_server(r) for r in recorders]
    endpoints = [s.endpoint for s in servers]

    results = fan_out(requests_for(endpoints), timeout=3.0)

    assert [r.endpoint for r in results] == endpoints
    for recorder, endpoint, result in zip(recorders, endpoints, results, strict=True):
        assert result.ok, result
        assert (result.error, result.skipped) == (None, False)
        assert result.connected is not None and result.sent is not None
        assert result.acked is not None
        assert result.connected <= result.sent <= result.acked
        assert recorder.requests == [release_request(endpoint)]
        assert result.outcome() == Outcome(result.sent, result.acked, None, False)


def test_fan_out_connects_every_endpoint_before_it_writes_any_request(raw_server):
    servers = [raw_server(Recorder()) for _ in range(4)]

    results = fan_out(requests_for([s.endpoint for s in servers]))

    assert all(r.ok for r in results), results
    assert max(r.connected for r in results) <= min(r.sent for r in results)


def test_fan_out_of_nothing_sends_nothing():
    assert fan_out([]) == []


@pytest.mark.parametrize("bad", ["no-port-here", ":6565", "[::1]:70000", "127.0.0.1:0"])
def test_fan_out_rejects_a_malformed_endpoint_before_connecting_anywhere(
    raw_server, connect_log: ConnectLog, bad: str
):
    recorder = Recorder()
    server = raw_server(recorder)

    with pytest.raises(ValueError):
        fan_out(requests_for([server.endpoint, bad]))

    assert connect_log.attempts == []
    assert recorder.requests == []


def test_fan_out_looks_up_a_host_name_and_tries_each_of_its_addresses(raw_server):
    recorder = Recorder()
    server = raw_server(recorder)  # on 127.0.0.1 only: "localhost" may resolve to ::1 first
    endpoint = f"localhost:{server.port}"

    (result,) = fan_out(requests_for([endpoint]), connect_retries=0)

    assert result.ok, result
    assert recorder.requests == [release_request(endpoint)]


def test_fan_out_sends_nobody_anything_when_one_endpoint_stays_unreachable_after_its_retries(
    raw_server, dead_endpoint: str, connect_log: ConnectLog
):
    recorders = [Recorder() for _ in range(4)]
    endpoints = [raw_server(r).endpoint for r in recorders]
    endpoints.insert(2, dead_endpoint)

    results = fan_out(requests_for(endpoints), connect_retries=2)

    by_endpoint = {r.endpoint: r for r in results}
    dead = by_endpoint.pop(dead_endpoint)
    assert dead.error is not None and dead.error.startswith("connect failed after 3 attempts: ")
    assert "Connection refused" in dead.error
    assert (dead.sent, dead.acked, dead.ok, dead.skipped) == (None, None, False, False)
    dead_attempts = connect_log.times(dead_endpoint)
    assert len(dead_attempts) == 3  # one try and two retries, then it gives up
    assert dead_attempts[1] - dead_attempts[0] >= lib.FIRST_BACKOFF  # with a backoff
    assert len(connect_log.attempts) == 3 + len(recorders)  # the reachable ones once each
    for endpoint, reachable in by_endpoint.items():
        # all or nobody: the reachable ones are connected, then not sent to either
        assert (reachable.skipped, reachable.sent, reachable.error, reachable.ok) == (
            True,
            None,
            None,
            False,
        )
        assert reachable.connected is not None
        # the dead one's retries did not hold their connects up
        (attempt,) = connect_log.times(endpoint)
        assert attempt < dead_attempts[1]
    assert [r.requests for r in recorders] == [[], [], [], []]


def test_fan_out_retries_a_refused_connect_until_the_endpoint_listens(connect_log: ConnectLog):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not yet listening: connects are refused
    endpoint = f"127.0.0.1:{sock.getsockname()[1]}"
    listening = threading.Event()

    def listen(_: tuple) -> None:  # listening from the first refusal on
        if not listening.is_set():
            sock.listen(1)
            listening.set()

    connect_log.after = listen
    requests: list[bytes] = []

    def serve() -> None:
        listening.wait(timeout=10)
        sock.settimeout(10)
        conn, _ = sock.accept()
        with conn:
            requests.append(read_request(conn))
            conn.sendall(OK_ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        (result,) = fan_out(requests_for([endpoint]), timeout=3.0, connect_retries=5)
    finally:
        thread.join(timeout=10)
        sock.close()

    assert result.ok, result
    assert len(connect_log.times(endpoint)) == 2  # refused once, then connected
    assert requests == [release_request(endpoint)]


def test_fan_out_reports_an_unexpected_answer(raw_server):
    failing = Recorder(answer=b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    fine = Recorder()
    endpoints = [raw_server(failing).endpoint, raw_server(fine).endpoint]

    failed, ok = fan_out(requests_for(endpoints))

    assert failed.error == "unexpected answer: 'HTTP/1.1 500 Internal Server Error'"
    assert failed.sent is not None and failed.acked is None and not failed.ok
    assert ok.ok
    assert failing.requests == [release_request(endpoints[0])]


def test_fan_out_reports_no_answer_within_the_timeout(raw_server):
    silent, fine = Silent(), Recorder()
    endpoints = [raw_server(silent).endpoint, raw_server(fine).endpoint]
    try:
        hung, ok = fan_out(requests_for(endpoints), timeout=0.3)
    finally:
        silent.release.set()

    assert hung.error == "no answer within 0.3s"
    assert hung.sent is not None and hung.acked is None and not hung.ok
    assert ok.ok
    assert silent.requests == [release_request(endpoints[0])]


def test_fan_out_reports_a_connection_closed_without_an_answer(raw_server):
    server = raw_server(read_request)

    (result,) = fan_out(requests_for([server.endpoint]), timeout=2.0)

    assert result.error == "unexpected answer: ''"
    assert result.sent is not None and not result.ok


def test_fan_out_reports_a_connection_reset_while_waiting_for_the_answer(raw_server):
    def read_then_reset(conn: socket.socket) -> None:
        read_request(conn)
        _reset(conn)

    server = raw_server(read_then_reset)

    (result,) = fan_out(requests_for([server.endpoint]), timeout=2.0)

    assert result.error is not None and result.error.startswith("receive failed: ")
    assert result.sent is not None and not result.ok


def test_fan_out_reports_a_send_to_a_connection_already_reset(
    raw_server, monkeypatch: pytest.MonkeyPatch
):
    connected = threading.Event()

    def reset_once_connected(conn: socket.socket) -> None:
        connected.wait(timeout=10)
        _reset(conn)

    server = raw_server(reset_once_connected)
    connect_all = lib._connect_all

    def connect_then_wait_for_the_reset(*args):
        dials = connect_all(*args)
        connected.set()
        assert server.handled.wait(timeout=10)  # the server has reset the connection
        return dials

    monkeypatch.setattr(lib, "_connect_all", connect_then_wait_for_the_reset)

    (reset,) = fan_out(requests_for([server.endpoint]))

    assert reset.error is not None and reset.error.startswith("send failed: ")
    assert (reset.sent, reset.acked, reset.skipped) == (None, None, False)


def ipv6_loopback() -> str:
    """::1, or skip when this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"IPv6 loopback ::1 is not configured here ({e})")
    return "::1"


def test_fan_out_reaches_an_ipv6_endpoint_in_brackets_next_to_an_ipv4_one(raw_server):
    v6, v4 = Recorder(), Recorder()
    endpoints = [raw_server(v6, host=ipv6_loopback()).endpoint, raw_server(v4).endpoint]
    assert endpoints[0].startswith("[::1]:")

    results = fan_out(requests_for(endpoints), timeout=3.0)

    assert [r.ok for r in results] == [True, True], results
    assert v6.requests == [release_request(endpoints[0])]
    assert v4.requests == [release_request(endpoints[1])]


def test_fan_out_names_an_unreachable_ipv6_endpoint_and_sends_nobody_anything(raw_server):
    recorder = Recorder()
    server = raw_server(recorder)
    dead = f"[{ipv6_loopback()}]:{free_port('::1')}"

    live, unreachable = fan_out(requests_for([server.endpoint, dead]), connect_retries=1)

    assert unreachable.error is not None
    assert unreachable.error.startswith("connect failed after 2 attempts: ")
    assert live.skipped and not live.ok
    assert recorder.requests == []  # connected at most, never sent a byte


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
        columns = line.split()
        if columns[3] == "02" and int(columns[2].rsplit(":", 1)[1], 16) in ports:
            count += 1
    return count


def test_fan_out_has_every_connect_in_flight_at_once(backlogged):
    count = 20
    listeners = backlogged(count)
    ports = {listener.port for listener in listeners}
    outcome: dict[str, list[lib.Delivery]] = {}
    requests = requests_for([x.endpoint for x in listeners])
    thread = threading.Thread(
        target=lambda: outcome.setdefault("results", fan_out(requests, timeout=10.0)),
        daemon=True,
    )
    thread.start()

    in_flight = 0  # most connects seen waiting for their handshake at the same time
    deadline = time.monotonic() + 10
    while in_flight < count and time.monotonic() < deadline:
        in_flight = max(in_flight, syn_sent_to(ports))
        time.sleep(0.01)
    for listener in listeners:
        listener.release()
    thread.join(timeout=60)

    assert in_flight == count  # one connect after another would show at most one
    results = outcome["results"]
    assert all(r.ok for r in results), results
    assert [x.requests for x in listeners] == [[release_request(x.endpoint)] for x in listeners]
    assert max(r.connected for r in results) <= min(r.sent for r in results)


def test_fan_out_retries_each_endpoint_independently_of_the_others(
    backlogged, raw_server, connect_log: ConnectLog
):
    unreachable = backlogged(10)  # never released: every SYN is dropped, every connect times out
    recorder = Recorder()
    reachable = raw_server(recorder)
    endpoints = [reachable.endpoint] + [x.endpoint for x in unreachable]
    timeout, retries = 0.3, 2
    started = time.monotonic()

    results = fan_out(requests_for(endpoints), timeout=timeout, connect_retries=retries)

    elapsed = time.monotonic() - started
    for result in results[1:]:
        assert result.error == "connect failed after 3 attempts: timed out after 0.3s"
    assert results[0].skipped and recorder.requests == []
    attempts = {x.endpoint: connect_log.times(x.endpoint) for x in unreachable}
    assert [len(a) for a in attempts.values()] == [3] * len(unreachable)
    # every endpoint's first attempt started before any endpoint's second one: concurrently
    assert max(a[0] for a in attempts.values()) < min(a[1] for a in attempts.values())
    # each waited its own timeouts and backoffs: 3 × 0.3 s + 0.05 s + 0.1 s at least
    assert elapsed >= timeout * (retries + 1) + lib.FIRST_BACKOFF * 3
