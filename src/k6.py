"""Everything that talks to k6: the service command line, the REST API client, summaries.

The command is built as one shell-quoted string; the REST calls are bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import os
import selectors
import shlex
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import httpx

logger = logging.getLogger(__name__)

PORT = 6565
SERVICE = "k6"
NOTICE_KEY = "k6.com/done"
PEBBLE = "/charm/bin/pebble"
WORKDIR = "/var/lib/k6-k8s"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
SCRIPT_DIR = "tests"
TREND_STATS = "avg,min,med,max,p(90),p(95),count"  # count: trend averages merge exactly

STATUS_PAUSED_BEFORE_RUN = 4
STATUS_ENDED = 9
EXIT_OK = 0
EXIT_THRESHOLDS = 99
EXIT_STOPPED_API = 103
EXIT_SIGTERM = 105
EXIT_SCRIPT_ERROR = 107
EXIT_ABORTED = 108


def endpoint_of(address: str, port: int = PORT) -> str:
    """host:port, with IPv6 addresses in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def segment_flags(index: int, count: int) -> list[str]:
    """Execution-segment flags for participant `index` of `count` (none for a single unit)."""
    if count <= 1:
        return []
    if not 0 <= index < count:
        raise ValueError(f"participant index {index} outside 0..{count - 1}")
    bounds = [Fraction(i, count) for i in range(count + 1)]
    sequence = ",".join(str(b) for b in bounds)
    return [
        "--execution-segment",
        f"{bounds[index]}:{bounds[index + 1]}",
        "--execution-segment-sequence",
        sequence,
    ]


@dataclass(frozen=True)
class RunCommand:
    """What one participant runs: inputs to `k6 run --paused`."""

    script: str  # path relative to the service working directory
    run_id: str
    address: str  # host the REST API binds to
    index: int = 0
    count: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    outputs: Sequence[str] = ()
    extra_args: Sequence[str] = ()

    def k6_argv(self) -> list[str]:
        """The k6 argv, one list element per argument."""
        argv = ["k6", "run", "--paused", "--address", endpoint_of(self.address)]
        argv += segment_flags(self.index, self.count)
        for key, value in sorted(self.tags.items()):
            argv += ["--tag", f"{key}={value}"]
        for key, value in self.environment.items():
            argv += ["-e", f"{key}={value}"]
        for output in self.outputs:
            argv += ["-o", output]
        argv += ["--summary-export", SUMMARY_FILE, "--summary-trend-stats", TREND_STATS]
        argv += ["--no-usage-report"]  # no phoning home from a load-test pod
        argv += [*self.extra_args, self.script]
        return argv

    def shell_line(self) -> str:
        """The /bin/sh line: run k6, then notify Pebble with the run id and exit code.

        TERM is trapped by a handler (not ignored) while k6 runs, so that a Pebble stop still
        sends the notice; then ignored (and so by `pebble notify` too), so that a stop racing
        the notice cannot kill it. The shell exits with k6's code, so Pebble's "exited quickly
        with code N" carries it too.
        """
        notify = shlex.join([PEBBLE, "notify", NOTICE_KEY, f"run_id={self.run_id}"])
        k6_run = shlex.join(self.k6_argv())
        return (
            f"trap 'true' TERM; {k6_run}; code=$?; trap '' TERM; "
            f"{notify} exit_code=$code; exit $code"
        )

    def service_command(self) -> str:
        """The Pebble service command: Pebble splits it shell-like, so it is quoted once more."""
        return shlex.join(["/bin/sh", "-c", self.shell_line()])


# Settings for the k6 in the workload image (1.7 there, 1.1 in the tests; docs/juju-k8s.md):
# older k6 ignores unknown variables, so one environment serves both.
VERSION_ENV = {
    # since 1.2, a script importing a missing k6/x extension makes k6 download a custom binary
    # from Grafana's build service: never from a load-test pod (no egress is assumed)
    "K6_AUTO_EXTENSION_RESOLUTION": "false",
    # 1.5 added a new --summary-export format, announced as v2's default: keep the one parsed
    "K6_NEW_MACHINE_READABLE_SUMMARY": "false",
}


def layer(command: str, environment: Mapping[str, str] | None = None) -> dict:
    """The Pebble layer for a one-shot k6 service (never restarted when it exits)."""
    service: dict = {
        "override": "replace",
        "summary": "k6 load test (one run)",
        "command": command,
        "startup": "disabled",
        "working-dir": WORKDIR,
        "on-success": "ignore",
        "on-failure": "ignore",
        "kill-delay": "5s",
    }
    service["environment"] = {**VERSION_ENV, **(environment or {})}
    return {"summary": "k6 load test", "services": {SERVICE: service}}


# ---------------------------------------------------------------- REST API

STATUS_PATH = "/v1/status"
_RESUME_BODY = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
_STOP_BODY = {"data": {"type": "status", "id": "default", "attributes": {"stopped": True}}}


@dataclass(frozen=True)
class ApiStatus:
    """The parts of `GET /v1/status` the protocol uses."""

    status: int
    paused: bool
    stopped: bool = False

    @property
    def ready(self) -> bool:
        """Paused before the run, after init: safe to resume."""
        return self.paused and self.status == STATUS_PAUSED_BEFORE_RUN


def parse_status(body: bytes | str) -> ApiStatus:
    """Parse a k6 status document."""
    try:
        attributes = json.loads(body)["data"]["attributes"]
        if not isinstance(attributes, dict) or attributes.get("status") is None:
            raise TypeError("no status attributes")
    except (TypeError, KeyError, IndexError) as e:
        raise ValueError(f"not a k6 status document: {e}") from None
    return ApiStatus(
        status=int(attributes["status"]),
        paused=bool(attributes["paused"]),
        stopped=bool(attributes.get("stopped", False)),
    )


# The k6 API is plain HTTP on the unit's own network: no TLS context to build (loading CA
# certificates costs ~100 ms per client) and no proxy from the environment.
_CLIENT_OPTIONS: dict = {"verify": False, "trust_env": False}


def get_status(endpoint: str, timeout: float = 1.0) -> ApiStatus | None:
    """One status probe; None when the API is not (or no longer) answering."""
    try:
        with httpx.Client(timeout=timeout, **_CLIENT_OPTIONS) as client:
            response = client.get(f"http://{endpoint}{STATUS_PATH}")
        response.raise_for_status()
        return parse_status(response.content)
    except (httpx.HTTPError, ValueError, KeyError) as e:
        logger.debug("k6 API at %s not answering: %s", endpoint, e)
        return None


def wait_ready(
    endpoint: str,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> ApiStatus | None:
    """Poll the local k6 API until it is paused before the run, k6 has exited, or time is up.

    `alive` (when given) says whether the k6 process still runs: a dead one never answers.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = get_status(endpoint, timeout=min(1.0, max(0.05, timeout)))
        if last is not None and (last.ready or last.status >= STATUS_ENDED):
            return last
        if time.monotonic() >= deadline or (last is None and alive is not None and not alive()):
            return last
        time.sleep(interval)


def probe_all(endpoints: Sequence[str], timeout: float = 1.0) -> dict[str, ApiStatus | None]:
    """Status of every endpoint, probed concurrently."""

    async def one(client: httpx.AsyncClient, endpoint: str) -> ApiStatus | None:
        try:
            response = await client.get(f"http://{endpoint}{STATUS_PATH}")
            response.raise_for_status()
            return parse_status(response.content)
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    async def main() -> list[ApiStatus | None]:
        async with httpx.AsyncClient(timeout=timeout, **_CLIENT_OPTIONS) as client:
            return await asyncio.gather(*(one(client, e) for e in endpoints))

    return dict(zip(endpoints, asyncio.run(main()), strict=True))


def stop_all(endpoints: Sequence[str], timeout: float = 2.0) -> dict[str, str | None]:
    """PATCH `stopped: true` to every endpoint concurrently; endpoint → error (None if ok)."""

    async def one(client: httpx.AsyncClient, endpoint: str) -> str | None:
        try:
            response = await client.patch(f"http://{endpoint}{STATUS_PATH}", json=_STOP_BODY)
            response.raise_for_status()
            return None
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"

    async def main() -> list[str | None]:
        async with httpx.AsyncClient(timeout=timeout, **_CLIENT_OPTIONS) as client:
            return await asyncio.gather(*(one(client, e) for e in endpoints))

    return dict(zip(endpoints, asyncio.run(main()), strict=True))


@dataclass
class ResumeResult:
    """One endpoint's resume: when the PATCH left and when k6 acknowledged it (epoch seconds)."""

    endpoint: str
    sent: float | None = None
    acked: float | None = None
    error: str | None = None
    skipped: bool = False  # not sent: another endpoint could not be reached (all or nobody)
    connected: float | None = None  # when its TCP connect completed

    @property
    def ok(self) -> bool:
        """Acknowledged with HTTP 200."""
        return self.error is None and self.acked is not None


def request_bytes(method: str, endpoint: str, body: dict) -> bytes:
    """One pre-encoded HTTP/1.1 request to the k6 status endpoint."""
    payload = json.dumps(body).encode()
    head = (
        f"{method} {STATUS_PATH} HTTP/1.1\r\nHost: {endpoint}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _addresses(host: str, port: int) -> list[tuple]:
    """Addresses to connect to, as getaddrinfo gives them; an IP address skips the lookup."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


FIRST_BACKOFF = 0.05  # seconds before an endpoint's first connect retry; doubles for each next


@dataclass(eq=False)
class _Dial:
    """One endpoint's connect, attempt by attempt (driven by `_Dialer`)."""

    index: int
    host: str
    port: int
    attempts: int = 0  # attempts started
    addresses: list[tuple] = field(default_factory=list)  # getaddrinfo's, not yet tried
    sock: socket.socket | None = None  # the connect in flight, then the connected socket
    deadline: float = math.inf  # monotonic: the connect in flight gives up
    retry_at: float = math.inf  # monotonic: the next attempt starts
    connected: float | None = None  # epoch seconds
    error: OSError | None = None  # why the last attempt failed, once no attempt is left


class _Dialer:
    """Non-blocking connects to every endpoint at once on one selector, each with its retries.

    An attempt resolves the endpoint (an IP address is taken as is; a host name is looked up,
    blocking) and tries its addresses in turn, each for up to `timeout`. A failed attempt is
    retried after FIRST_BACKOFF, doubling, while attempts are left: one endpoint's retries
    never hold up another's connects.
    """

    def __init__(self, timeout: float, retries: int) -> None:
        self.timeout, self.retries = timeout, retries
        self.selector = selectors.DefaultSelector()
        self.connecting: set[_Dial] = set()
        self.waiting: set[_Dial] = set()  # backing off before the next attempt

    def run(self, dials: Sequence[_Dial]) -> None:
        """Until every dial is connected or out of attempts; sockets of failures are closed."""
        for dial in dials:
            self._attempt(dial)
        while self.connecting or self.waiting:
            wake = min(
                min((d.deadline for d in self.connecting), default=math.inf),
                min((d.retry_at for d in self.waiting), default=math.inf),
            )
            for key, _ in self.selector.select(max(0.0, wake - time.monotonic())):
                self._settle(key.data)
            now = time.monotonic()
            for dial in [d for d in self.connecting if d.deadline <= now]:
                self._drop(dial)
                self._next_address(dial, TimeoutError(f"timed out after {self.timeout:g}s"))
            for dial in [d for d in self.waiting if d.retry_at <= now]:
                self._attempt(dial)

    def close(self) -> None:
        """Close the selector and every connect still in flight."""
        for dial in list(self.connecting):
            self._drop(dial)
        self.selector.close()

    def _attempt(self, dial: _Dial) -> None:
        self.waiting.discard(dial)
        dial.attempts += 1
        dial.retry_at = math.inf
        try:
            dial.addresses = _addresses(dial.host, dial.port)
        except OSError as e:
            self._attempt_failed(dial, e)
            return
        self._next_address(dial, OSError(f"no address for {dial.host}"))

    def _next_address(self, dial: _Dial, error: OSError) -> None:
        """Start connecting to the attempt's next address; the attempt fails when none is left."""
        while dial.addresses:
            family, kind, proto, _, address = dial.addresses.pop(0)
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                code = sock.connect_ex(address)
            except OSError as e:
                sock.close()
                error = e
                continue
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                error = OSError(code, os.strerror(code))
                continue
            dial.sock = sock
            if code == 0:
                dial.connected = time.time()
                return
            dial.deadline = time.monotonic() + self.timeout
            self.selector.register(sock, selectors.EVENT_WRITE, dial)
            self.connecting.add(dial)
            return
        self._attempt_failed(dial, error)

    def _settle(self, dial: _Dial) -> None:
        """The connect in flight has finished: connected, or on to the next address."""
        assert dial.sock is not None
        code = dial.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            self.selector.unregister(dial.sock)
            self.connecting.discard(dial)
            dial.connected = time.time()
        else:
            self._drop(dial)
            self._next_address(dial, OSError(code, os.strerror(code)))

    def _drop(self, dial: _Dial) -> None:
        """Abandon the connect in flight."""
        assert dial.sock is not None
        self.selector.unregister(dial.sock)
        self.connecting.discard(dial)
        dial.sock.close()
        dial.sock = None

    def _attempt_failed(self, dial: _Dial, error: OSError) -> None:
        if dial.attempts > self.retries:
            dial.error = error
        else:
            dial.retry_at = time.monotonic() + FIRST_BACKOFF * 2 ** (dial.attempts - 1)
            self.waiting.add(dial)


def _connect_all(endpoints: Sequence[str], timeout: float, retries: int) -> list[_Dial]:
    """Connect to every endpoint concurrently, each with 1 + `retries` attempts (`_Dialer`).

    Takes about one round trip when every endpoint answers, whatever their number; at most
    about timeout × (1 + retries) plus the backoffs when one does not. A malformed endpoint
    raises ValueError before anything is opened.
    """
    dials = [_Dial(i, *_split(endpoint)) for i, endpoint in enumerate(endpoints)]
    dialer = _Dialer(timeout, retries)
    try:
        dialer.run(dials)
    except BaseException:
        for dial in dials:
            if dial.sock is not None and dial not in dialer.connecting:
                dial.sock.close()
        raise
    finally:
        dialer.close()
    return dials


def resume_all(
    endpoints: Sequence[str], timeout: float = 3.0, connect_retries: int = 2
) -> list[ResumeResult]:
    """Resume every paused k6 at once: connect all first, then write every PATCH back to back.

    The connects run concurrently (non-blocking, one selector), so the fan-out starts about one
    round trip after the call whatever the number of endpoints; each endpoint gets
    1 + `connect_retries` attempts of up to `timeout` with a short backoff, independently of the
    others, so the connect phase lasts at most about timeout × (1 + connect_retries) plus
    0.05 s × (2^connect_retries − 1). If any endpoint cannot be connected, nobody is resumed
    (a partial start is not a synchronized one): the unreachable ones get the error, the
    others are marked skipped. The requests are pre-encoded and the connections open when the
    fan-out starts, so the last request leaves microseconds after the first (an HTTP client
    library costs a few hundred microseconds per request, which at 64 units is the whole skew
    budget). Every socket is closed before returning.
    """
    results = [ResumeResult(e) for e in endpoints]
    dials = _connect_all(endpoints, timeout, connect_retries)
    for dial in dials:
        results[dial.index].connected = dial.connected
    if any(dial.error is not None for dial in dials):
        for dial in dials:
            result = results[dial.index]
            if dial.error is not None:
                result.error = f"connect failed after {dial.attempts} attempts: {dial.error}"
            else:
                assert dial.sock is not None
                dial.sock.close()
                result.skipped = True
        return results
    socks = {dial.index: dial.sock for dial in dials if dial.sock is not None}
    try:
        sent_ok = _fan_out(socks, endpoints, results, timeout)
        _collect_acks(sent_ok, results, timeout)
    finally:
        for sock in socks.values():
            sock.close()
    return results


def _fan_out(
    socks: Mapping[int, socket.socket],
    endpoints: Sequence[str],
    results: Sequence[ResumeResult],
    timeout: float,
) -> dict[int, socket.socket]:
    """Write every pre-encoded PATCH back to back; the sockets that took their whole request.

    The sockets are non-blocking: a fresh connection takes a small request at once. Anything a
    socket did not take is finished after the loop, with a blocking write bounded by `timeout`.
    """
    plan = [
        (i, sock.send, request_bytes("PATCH", endpoints[i], _RESUME_BODY))
        for i, sock in socks.items()
    ]
    now = time.time
    written: list[tuple[int, int | OSError, float]] = []
    for index, send, payload in plan:  # the fan-out: nothing else in this loop
        try:
            count: int | OSError = send(payload)
        except OSError as e:  # BlockingIOError too: nothing taken
            count = e
        written.append((index, count, now()))
    sent_ok: dict[int, socket.socket] = {}
    for (index, count, stamp), (_, _, payload) in zip(written, plan, strict=True):
        sock = socks[index]
        if isinstance(count, BlockingIOError):
            count = 0
        if isinstance(count, int) and count < len(payload):
            try:
                sock.settimeout(timeout)
                sock.sendall(payload[count:])
                count, stamp = len(payload), time.time()
            except OSError as e:
                count = e
        if isinstance(count, OSError):
            results[index].error = f"send failed: {count}"
        else:
            results[index].sent = stamp
            sent_ok[index] = sock
    return sent_ok


def _collect_acks(
    socks: Mapping[int, socket.socket], results: Sequence[ResumeResult], timeout: float
) -> None:
    """Read each response's status line; stamp the ack time or record the error."""
    selector = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    for index, sock in socks.items():
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        buffers[index] = b""
    deadline = time.monotonic() + timeout
    pending = set(socks)
    while pending and (remaining := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(remaining):
            index = key.data
            try:
                chunk = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except OSError as e:
                chunk, results[index].error = b"", f"receive failed: {e}"
            buffers[index] += chunk
            if b"\r\n" in buffers[index] or not chunk:
                selector.unregister(key.fileobj)
                pending.discard(index)
                line = buffers[index].split(b"\r\n", 1)[0].decode(errors="replace")
                parts = line.split()
                if len(parts) >= 2 and parts[1] == "200":
                    results[index].acked = time.time()
                elif results[index].error is None:
                    results[index].error = f"unexpected answer: {line!r}"
    for index in pending:
        results[index].error = f"no answer within {timeout}s"
    selector.close()
