"""Resume delivery skew: how far apart N paused units receive the resume, per resume method.

Every unit sits behind bench/proxy.py (5 ms each way, kernel receive timestamps): the skew of one
round is the last minus the first arrival of the resume PATCH over the round's units. A second,
smaller measurement delays every TCP handshake (which the proxy cannot) to show that the charm
opens its N connections concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from charms.k6_k8s.v0.synchronized_task import Delivery, fan_out

import k6_client
from bench import ROOT, Figure, SectionResult
from tests.support import k6_standin

SIZES = (1, 4, 16, 64, 256)  # BENCH_SKEW_SIZES="1,4,16,64" overrides (a 256 run is long)
REPETITIONS = 7  # per size and method; BENCH_SKEW_REPETITIONS overrides
DELAY_MS = 5.0  # one-way latency the proxy adds
PROXY_BASE = "127.77.1.1"  # unit i's proxy listens on PROXY_BASE + i
UNIT_BASE = "127.77.2.1"  # unit i's k6 API listens on UNIT_BASE + i
PORT = k6_client.PORT
MEMORY_SHARE = 0.25  # real k6 while N x (its measured RSS) fits in this share of free memory
APPARATUS_UNITS = 4
APPARATUS_ROUNDS = 50
PIN_ROUNDS = 30  # per setting, for the pinning check
TARGET_P50_MS = 1.0  # for (a) at the largest N
TARGET_RATIO = 200.0
ARM_TIMEOUT = 60.0
SETTLE_TIMEOUT = 15.0
METHOD_TIMEOUT = 120.0
REQUEST_TIMEOUT = 3.0
CONTROL_TIMEOUT = 10.0
QUIET_TIMEOUT = 3.0  # longest a round waits for a moment with no more runnable tasks than CPUs
SCRIPT = "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"
STANDIN_RUN_SECONDS = "0.05"  # about what the real no-op iteration takes
STANDIN_MAX_SECONDS = "600"  # a stand-in this bench lost track of exits by itself after this
PROBE_CHUNK = 64  # endpoints per k6_client.probe_all call (its httpx pool holds 100 connections)
FDS_PER_UNIT = 8  # open files per unit, this process and the proxy's, with room to spare
FDS_BASE = 256
HANDSHAKE_ROUNDS = 3  # per size, for the delayed-handshake connect check
HANDSHAKE_TIMEOUT = 5.0  # per connect attempt there: the SYN retransmissions come at 1 s, 3 s
SEQUENTIAL_SIZE = 4  # the one-after-another reference of that check is measured at this N
FLOOR_ROUNDS = 9  # per variant, for the bare send() cost
FLOOR_FRESH = "fresh connections"
FLOOR_NO_QUICKACK = "receiver's quick ACK off"
RESUME_BODY = k6_client.RESUME_BODY
# What k6-operator's starter sends (Go's json.Marshal of its request struct, field order kept).
OPERATOR_BODY = '{"data":{"attributes":{"paused":false},"id":"default","type":"status"}}'

KIND_K6 = "k6"
KIND_STANDIN = "stand-in"
ALL_CPUS = frozenset(os.sched_getaffinity(0))  # before the bench pins itself


def _log(message: str) -> None:
    print(f"[skew] {message}", file=sys.stderr, flush=True)


def _address(base: str, index: int) -> str:
    address = ipaddress.IPv4Address(base) + index
    if not address.is_loopback:
        raise ValueError(f"{address} is outside 127.0.0.0/8")
    return str(address)


def proxy_endpoints(size: int) -> list[str]:
    """Where the resume methods send: unit i's proxy."""
    return [f"{_address(PROXY_BASE, i)}:{PORT}" for i in range(size)]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment minus any HTTP proxy settings (everything here is loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def _kill_group(process: subprocess.Popen | Forked) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _log(f"process {process.pid} did not die")


def _unpin() -> None:
    os.sched_setaffinity(0, ALL_CPUS)


@contextlib.contextmanager
def pinned(proxy: ProxyProcess, enabled: bool = True) -> Iterator[bool]:
    """Run this process on one CPU and the proxy on another (when there are two CPUs).

    The proxy wakes up as each request arrives; sharing the sender's CPU it can preempt the
    sender in the middle of its fan-out, an artefact of the apparatus. Yields whether pinned.
    """
    cpus = sorted(ALL_CPUS)
    active = enabled and len(cpus) >= 2
    if active:
        os.sched_setaffinity(proxy.process.pid, {cpus[1]})
        os.sched_setaffinity(0, {cpus[0]})
    try:
        yield active
    finally:
        os.sched_setaffinity(0, ALL_CPUS)
        if proxy.process.poll() is None:
            os.sched_setaffinity(proxy.process.pid, ALL_CPUS)


def k6_binary() -> str | None:
    """The k6 the PyPI package installed next to this interpreter, else k6 on PATH."""
    beside = Path(sys.executable).parent / "k6"
    return str(beside) if beside.exists() else shutil.which("k6")


# ---------------------------------------------------------------- units


class Forked:
    """A stand-in forked from this process: the parts of subprocess.Popen the fleet uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"stand-in {self.pid}", timeout or 0.0)
            time.sleep(0.002)
        return code


def fork_standin(argv: list[str], env: dict[str, str], cwd: Path) -> Forked:
    """Start a stand-in by forking this process (it has the stand-in module imported).

    A fresh interpreter per stand-in costs ~100 ms of CPU: 256 of them took 25 s to start on
    this 2-core machine, per round. The child gets its own session (so a group kill reaches
    it), every CPU, /dev/null for stdio and none of this process's other open files.
    """
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = 70  # EX_SOFTWARE: the child failed before the stand-in ran
    try:
        os.setsid()
        os.sched_setaffinity(0, ALL_CPUS)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        code = k6_standin.main(argv)
    finally:
        os._exit(code)


class Fleet:
    """N paused units (real k6 or the stand-in), re-armed for every resume round.

    Stand-ins are forked from this process while it runs no other thread (`fork_standin`);
    `fork=False` starts them as new interpreters, like real k6.
    """

    def __init__(self, kind: str, size: int, workdir: Path, fork: bool = True, **env: str):
        self.kind, self.size, self.workdir = kind, size, workdir
        self.fork = fork
        self.env = env
        self.processes: list[subprocess.Popen | Forked] = []
        self.direct = [f"{_address(UNIT_BASE, i)}:{PORT}" for i in range(size)]
        self.script = workdir / "noop.js"
        self.script.write_text(SCRIPT)

    def _argv(self, endpoint: str) -> list[str]:
        if self.kind == KIND_K6:
            binary = k6_binary()
            assert binary, "k6 binary not found"
            flags = ["--quiet", "--no-summary", "--no-usage-report"]
            return [binary, "run", "--paused", *flags, "--address", endpoint, str(self.script)]
        return [
            *(sys.executable, "-m", "tests.support.k6_standin", "run", "--paused"),
            *("--address", endpoint, str(self.script)),
        ]

    def _start(self, endpoint: str, env: dict[str, str], fork: bool) -> subprocess.Popen | Forked:
        argv = self._argv(endpoint)
        if fork:
            return fork_standin(argv[3:], env, self.workdir)  # after `python -m module`
        return subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_unpin,  # units may use every CPU, whatever the bench is pinned to
        )

    def arm(self) -> None:
        """(Re)start every unit paused and wait until all report status 4 (bounded)."""
        self.kill()
        env = _clean_env(K6_NO_USAGE_REPORT="true", PYTHONPATH=str(ROOT), **self.env)
        env.setdefault("K6_STANDIN_RUN_SECONDS", STANDIN_RUN_SECONDS)
        env.setdefault("K6_STANDIN_MAX_SECONDS", STANDIN_MAX_SECONDS)
        fork = self.kind == KIND_STANDIN and self.fork and threading.active_count() == 1
        try:
            for endpoint in self.direct:
                self.processes.append(self._start(endpoint, env, fork))
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + ARM_TIMEOUT
        waiting = list(self.direct)
        while True:
            for start in range(0, len(waiting), PROBE_CHUNK):
                statuses = k6_client.probe_all(waiting[start : start + PROBE_CHUNK], timeout=1.0)
                ready = {e for e, s in statuses.items() if s is not None and s.ready}
                waiting = [e for e in waiting if e not in ready]
            if not waiting:
                return
            for i, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise RuntimeError(f"{self.kind} unit {i} exited {process.returncode} arming")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(waiting)} {self.kind} units not ready after {ARM_TIMEOUT}s"
                )
            time.sleep(0.02)

    def settle(self) -> list[int | None]:
        """Wait for every unit to finish its run; exit codes (None: killed after the timeout)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=max(0.01, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                codes.append(None)
        self.processes = []
        return codes

    def kill(self) -> None:
        for process in self.processes:
            _kill_group(process)
        self.processes = []

    def rss_mb(self) -> float:
        """Mean resident set size of the running units, MB."""
        sizes = []
        for process in self.processes:
            status = Path(f"/proc/{process.pid}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
            sizes.append(int(line.split()[1]) / 1024)
        return statistics.mean(sizes)


def unit_rss(kind: str, workdir: Path) -> float:
    """RSS of one paused unit of `kind`, MB."""
    probe = Fleet(kind, 1, workdir, fork=False)  # a process of its own, not a fork of this one
    try:
        probe.arm()
        return probe.rss_mb()
    finally:
        probe.kill()


def available_memory_mb() -> float:
    """MemAvailable, or the cgroup v2 headroom when that is smaller."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    available = next(int(x.split()[1]) for x in meminfo if x.startswith("MemAvailable:")) / 1024
    limit, current = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.exists() and current.exists() and limit.read_text().strip() != "max":
        headroom = (int(limit.read_text()) - int(current.read_text())) / 2**20
        available = min(available, headroom)
    return available


def runnable_tasks() -> int:
    """Tasks running or waiting for a CPU right now, this process included (/proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("procs_running"):
            return int(line.split()[1])
    return 0


def wait_quiet(timeout: float = QUIET_TIMEOUT) -> bool:
    """Wait (bounded) until no more tasks are runnable than there are CPUs; False on timeout.

    The machine may be shared: starting a round in a quiet moment measures the resume code
    rather than whoever else is using the CPUs at that instant.
    """
    deadline = time.monotonic() + timeout
    while runnable_tasks() > len(ALL_CPUS):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ---------------------------------------------------------------- the proxy process


class ProxyProcess:
    """bench/proxy.py in its own process (so it costs the measuring process nothing)."""

    def __init__(self, units: int) -> None:
        argv = [sys.executable, "-m", "bench.proxy", "--units", str(units)]
        argv += ["--listen", PROXY_BASE, "--upstream", UNIT_BASE, "--port", str(PORT)]
        argv += ["--delay-ms", str(DELAY_MS)]
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_clean_env(PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._buffer = b""
        try:
            ready = self._read_line()
            if ready.get("ready") != units:
                raise RuntimeError(f"proxy did not start: {ready}")
        except BaseException:
            _kill_group(self.process)
            raise

    def _read_line(self) -> dict:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + CONTROL_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise RuntimeError("proxy did not answer")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"proxy exited ({self.process.poll()})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def drain(self) -> dict:
        """PATCH arrivals (and proxy errors) since the previous drain."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"drain\n")
        self.process.stdin.flush()
        return self._read_line()

    def collect(self, size: int, timeout: float = 2.0) -> tuple[dict[int, dict], list[str]]:
        """The first PATCH arrival per unit, polling until all `size` units have one."""
        first: dict[int, dict] = {}
        errors: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            answer = self.drain()
            errors += answer["errors"]
            for patch in answer["patches"]:
                unit = patch["unit"]
                if unit not in first or patch["kernel_ns"] < first[unit]["kernel_ns"]:
                    first[unit] = patch
            if len(first) >= size or time.monotonic() > deadline:
                return first, errors
            time.sleep(0.01)

    def close(self) -> None:
        try:
            if self.process.stdin is not None and self.process.poll() is None:
                self.process.stdin.write(b"quit\n")
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _kill_group(self.process)


# ---------------------------------------------------------------- resume methods


@dataclass
class Outcome:
    """What a resume method reports about itself."""

    errors: list[str] = field(default_factory=list)
    send_span_ns: int | None = None  # the sender's own first-to-last send, where it knows
    connect_ns: int | None = None  # from the call to its last connection open, where it knows


def charm_fan_out(
    endpoints: Sequence[str], timeout: float = REQUEST_TIMEOUT, connect_retries: int = 2
) -> tuple[float, list[Delivery]]:
    """What the leader's release does: the library's `fan_out` with k6_client's resume bytes.

    As in `SynchronizedTask._release`, every request is encoded before `fan_out` is called
    (`K6Workload.release_request` is `k6_client.resume_request`). Returns (epoch seconds when
    `fan_out` was called, its deliveries).
    """
    requests = [(endpoint, k6_client.resume_request(endpoint)) for endpoint in endpoints]
    called = time.time()
    return called, fan_out(requests, timeout, connect_retries)


def resume_charm(endpoints: Sequence[str]) -> Outcome:
    """(a) The charm's own code: fan_out (connect all at once, then pre-encoded writes)."""
    called, results = charm_fan_out(endpoints)
    sent = [r.sent for r in results if r.sent is not None]
    span = int((max(sent) - min(sent)) * 1e9) if sent else None
    connected = [r.connected for r in results if r.connected is not None]
    connect = int((max(connected) - called) * 1e9) if connected else None
    return Outcome([f"{r.endpoint}: {r.error}" for r in results if not r.ok], span, connect)


def resume_sequential(endpoints: Sequence[str]) -> Outcome:
    """(b) One httpx.Client, one PATCH after another, each waiting for its answer."""
    errors = []
    with httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False) as client:
        for endpoint in endpoints:
            try:
                client.patch(f"http://{endpoint}{k6_client.STATUS_PATH}", json=RESUME_BODY)
            except httpx.HTTPError as e:
                errors.append(f"{endpoint}: {e!r}")
    return Outcome(errors)


def operator_line(endpoints: Sequence[str]) -> str:
    """grafana/k6-operator's starter: one sh line of sequential curl processes."""
    return "; ".join(
        f"curl --retry 3 -X PATCH -H 'Content-Type: application/json' "
        f"http://{endpoint}{k6_client.STATUS_PATH} -d {shlex.quote(OPERATOR_BODY)}"
        for endpoint in endpoints
    )


def resume_curl_chain(endpoints: Sequence[str]) -> Outcome:
    """(c) The k6-operator starter's shell line, run by sh."""
    try:
        done = subprocess.run(
            ["sh", "-c", operator_line(endpoints)],
            env=_clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=METHOD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome([f"curl chain took over {METHOD_TIMEOUT}s"])
    return Outcome([] if done.returncode == 0 else [f"last curl exited {done.returncode}"])


def resume_gather(endpoints: Sequence[str]) -> Outcome:
    """(d) httpx.AsyncClient, connections warmed by a GET, then all PATCHes in asyncio.gather."""

    async def main() -> list[str]:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False) as client:
            urls = [f"http://{endpoint}{k6_client.STATUS_PATH}" for endpoint in endpoints]
            await asyncio.gather(*(client.get(url) for url in urls))
            answers = await asyncio.gather(
                *(client.patch(url, json=RESUME_BODY) for url in urls), return_exceptions=True
            )
        return [f"{url}: {a!r}" for url, a in zip(urls, answers, strict=True) if _failed(a)]

    try:
        return Outcome(asyncio.run(asyncio.wait_for(main(), METHOD_TIMEOUT)))
    except (httpx.HTTPError, TimeoutError) as e:
        return Outcome([repr(e)])


def _failed(answer: object) -> bool:
    return not isinstance(answer, httpx.Response) or answer.status_code != 200


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    resume: Callable[[Sequence[str]], Outcome]


METHODS = (
    Method("a", "(a) charm fan_out", resume_charm),
    Method("b", "(b) sequential httpx.Client", resume_sequential),
    Method("c", "(c) k6-operator curl chain", resume_curl_chain),
    Method("d", "(d) httpx.AsyncClient gather", resume_gather),
)


# ---------------------------------------------------------------- measuring


@dataclass
class Cell:
    """All rounds of one method at one size."""

    skews_ns: list[int] = field(default_factory=list)
    send_spans_ns: list[int] = field(default_factory=list)
    span_gaps_ns: list[int] = field(default_factory=list)  # skew − send span, same round
    connect_ns: list[int] = field(default_factory=list)  # call → last connection open
    problems: list[str] = field(default_factory=list)
    rounds: int = 0
    busy_starts: int = 0  # rounds that started without a quiet moment

    def p50_ms(self) -> float | None:
        return statistics.median(self.skews_ns) / 1e6 if self.skews_ns else None

    def max_ms(self) -> float | None:
        return max(self.skews_ns) / 1e6 if self.skews_ns else None


def one_round(proxy: ProxyProcess, fleet: Fleet, method: Method, cell: Cell) -> None:
    """Arm, resume with `method`, and record the delivery skew the proxy saw."""
    cell.rounds += 1
    fleet.arm()
    proxy.drain()  # nothing from before this round
    if not wait_quiet():
        cell.busy_starts += 1
    outcome = method.resume(proxy_endpoints(fleet.size))
    first, proxy_errors = proxy.collect(fleet.size)
    codes = fleet.settle()
    problems = outcome.errors + proxy_errors
    problems += [f"unit {i} exited {code}" for i, code in enumerate(codes) if code != 0]
    if len(first) < fleet.size:
        problems.append(f"resume reached {len(first)}/{fleet.size} units")
    if problems:
        cell.problems += problems
        _log(f"N={fleet.size} {method.key}: {problems[:3]}")
        return
    arrivals = [patch["kernel_ns"] for patch in first.values()]
    cell.skews_ns.append(max(arrivals) - min(arrivals))
    if outcome.send_span_ns is not None:
        cell.send_spans_ns.append(outcome.send_span_ns)
        cell.span_gaps_ns.append(cell.skews_ns[-1] - outcome.send_span_ns)
    if outcome.connect_ns is not None:
        cell.connect_ns.append(outcome.connect_ns)


def measure_size(proxy: ProxyProcess, fleet: Fleet, repetitions: int) -> dict[str, Cell]:
    """Every method `repetitions` times, interleaved (the order rotates every repetition)."""
    cells = {m.key: Cell() for m in METHODS}
    for repetition in range(repetitions):
        shift = repetition % len(METHODS)
        for method in METHODS[shift:] + METHODS[:shift]:
            one_round(proxy, fleet, method, cells[method.key])
        summary = ", ".join(
            f"{k}={c.skews_ns[-1] / 1e6:.3f}" for k, c in cells.items() if c.skews_ns
        )
        _log(f"N={fleet.size} {fleet.kind} repetition {repetition + 1}/{repetitions}: {summary}")
    return cells


def _raw_patch(endpoint: str) -> bytes:
    return k6_client.resume_request(endpoint)


@dataclass
class Apparatus:
    """What the proxy itself adds, from requests whose send time the bench knows exactly."""

    skew_error_us: list[float] = field(default_factory=list)  # measured − true skew
    user_skew_error_us: list[float] = field(default_factory=list)  # same, proxy read times
    arrival_us: list[float] = field(default_factory=list)  # kernel stamp − send start
    read_lag_us: list[float] = field(default_factory=list)  # proxy read − kernel stamp
    forward_ms: list[float] = field(default_factory=list)  # forwarded − kernel stamp
    problems: list[str] = field(default_factory=list)


def measure_apparatus(proxy: ProxyProcess, workdir: Path) -> Apparatus:
    """Send timestamped PATCHes to N=4 proxies back to back; compare with what the proxy saw.

    The upstream units are stand-ins that stay running (a resume after the first answers 500,
    which does not matter here: only the arrival at the proxy is measured).
    """
    result = Apparatus()
    fleet = Fleet(KIND_STANDIN, APPARATUS_UNITS, workdir, K6_STANDIN_RUN_SECONDS="600")
    endpoints = proxy_endpoints(APPARATUS_UNITS)
    payloads = [_raw_patch(e) for e in endpoints]
    try:
        fleet.arm()
        for _ in range(APPARATUS_ROUNDS):
            proxy.drain()
            socks = []
            try:
                for endpoint in endpoints:
                    host, _, port = endpoint.rpartition(":")
                    sock = socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    socks.append(sock)
                sent = []
                for sock, payload in zip(socks, payloads, strict=True):
                    sent.append(time.time_ns())
                    sock.sendall(payload)
                for sock in socks:  # the answer: the request went through both ways
                    sock.recv(4096)
            finally:
                for sock in socks:
                    sock.close()
            first, errors = proxy.collect(APPARATUS_UNITS)
            if errors or len(first) < APPARATUS_UNITS:
                result.problems += errors or [f"{len(first)}/{APPARATUS_UNITS} arrivals"]
                continue
            kernel = [first[i]["kernel_ns"] for i in range(APPARATUS_UNITS)]
            read = [first[i]["read_ns"] for i in range(APPARATUS_UNITS)]
            true_skew = max(sent) - min(sent)
            result.skew_error_us.append((max(kernel) - min(kernel) - true_skew) / 1e3)
            result.user_skew_error_us.append((max(read) - min(read) - true_skew) / 1e3)
            for i in range(APPARATUS_UNITS):
                result.arrival_us.append((kernel[i] - sent[i]) / 1e3)
                result.read_lag_us.append((read[i] - kernel[i]) / 1e3)
                forwarded = first[i]["forwarded_ns"]
                if forwarded is not None:
                    result.forward_ms.append((forwarded - kernel[i]) / 1e6)
    finally:
        fleet.kill()
    return result


def measure_pinning(proxy: ProxyProcess, size: int) -> dict[bool, list[float]]:
    """The charm's own send span (µs) at `size`, proxy unpinned vs pinned, rounds alternating.

    No units are armed: the proxy stamps the requests and fails to reach a unit, which is
    all this needs (only the sender's loop is looked at).
    """
    spans: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(PIN_ROUNDS):
        for enabled in (False, True):
            with pinned(proxy, enabled) as active:
                proxy.drain()
                wait_quiet()
                _, results = charm_fan_out(proxy_endpoints(size), timeout=0.5, connect_retries=0)
            sent = [r.sent for r in results if r.sent is not None]
            if len(sent) == size and (active or not enabled):
                spans[enabled].append((max(sent) - min(sent)) * 1e6)
    proxy.drain()
    return spans


# ---------------------------------------------------------------- delayed handshakes

_OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _request_complete(data: bytes) -> bool:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


class HeldListeners:
    """Listeners on 127.0.0.1 that drop each client's first SYN, then answer any request 200.

    The proxy delays data, not the TCP handshake, which on loopback completes inside connect().
    Here each listener's accept queue is kept full (listen(0) plus one connection of ours), so
    the kernel drops incoming SYNs; a thread reading /proc/net/tcp frees a listener's queue
    once a client's connect to it is waiting (SYN_SENT), and that handshake completes at the
    client's first SYN retransmission, about 1 s later (the kernel's initial RTO). Every
    connect thus takes about one 1-second round trip; the thread records how many connects
    were waiting at the same time.
    """

    def __init__(self, size: int) -> None:
        self.listeners: list[socket.socket] = []
        self.fillers: list[socket.socket] = []
        try:
            for _ in range(size):
                listener = socket.socket()
                self.listeners.append(listener)
                listener.bind(("127.0.0.1", 0))
                listener.listen(0)  # room for one queued connection: the filler's
                address = listener.getsockname()
                self.fillers.append(socket.create_connection(address, timeout=CONTROL_TIMEOUT))
        except BaseException:
            self._close_sockets()
            raise
        self.ports = {x.getsockname()[1]: i for i, x in enumerate(self.listeners)}
        self.held = set(range(size))
        self.answered = 0
        self.peak_waiting = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def _waiting(self) -> set[int]:
        """Our ports with a connect in SYN_SENT."""
        ports = set()
        with open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                fields = line.split(None, 4)
                if fields[3] == "02" and (port := int(fields[2][-4:], 16)) in self.ports:
                    ports.add(port)
        return ports

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        buffers: dict[socket.socket, bytes] = {}
        try:
            while not self.stop.is_set():
                waiting = self._waiting()
                self.peak_waiting = max(self.peak_waiting, len(waiting))
                for port in waiting:
                    index = self.ports[port]
                    if index in self.held:
                        self.held.discard(index)
                        listener = self.listeners[index]
                        listener.accept()[0].close()  # the filler's: frees the queue
                        listener.setblocking(False)
                        selector.register(listener, selectors.EVENT_READ, None)
                for key, _ in selector.select(0.005):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if key.data is None:  # a listener
                        with contextlib.suppress(BlockingIOError):
                            conn = sock.accept()[0]
                            conn.setblocking(False)
                            buffers[conn] = b""
                            selector.register(conn, selectors.EVENT_READ, "conn")
                        continue
                    try:
                        chunk = sock.recv(4096)
                    except OSError:
                        chunk = b""
                    buffers[sock] += chunk
                    if chunk and not _request_complete(buffers[sock]):
                        continue
                    if chunk:
                        with contextlib.suppress(OSError):
                            sock.send(_OK_ANSWER)
                            self.answered += 1
                    selector.unregister(sock)
                    del buffers[sock]
                    sock.close()
        finally:
            for conn in buffers:
                conn.close()
            selector.close()

    def _close_sockets(self) -> None:
        for sock in self.fillers + self.listeners:
            sock.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=CONTROL_TIMEOUT)
        self._close_sockets()


@dataclass
class Handshakes:
    """The delayed-handshake check: (a)'s connect phase when every handshake takes ~1 s."""

    connect_s: dict[int, list[float]] = field(default_factory=dict)  # N → per round
    peak_waiting: dict[int, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    sequential_s: float | None = None  # one connect after another, at N = SEQUENTIAL_SIZE


def measure_handshakes(sizes: Sequence[int]) -> Handshakes:
    """(a) against HeldListeners at every N; a sequential connect loop once, for reference."""
    result = Handshakes()
    for size in sizes:
        result.connect_s[size], result.peak_waiting[size] = [], []
        for _ in range(HANDSHAKE_ROUNDS):
            held = HeldListeners(size)
            try:
                called, results = charm_fan_out(held.endpoints(), timeout=HANDSHAKE_TIMEOUT)
            finally:
                held.close()
            failed = [f"{r.endpoint}: {r.error}" for r in results if not r.ok]
            if failed:
                result.problems += [f"N={size}: {len(failed)} failed, {failed[:2]}"]
                continue
            connected = [r.connected for r in results if r.connected is not None]
            result.connect_s[size].append(max(connected) - called)
            result.peak_waiting[size].append(held.peak_waiting)
        _log(f"handshakes N={size}: {result.connect_s[size]}, waiting {result.peak_waiting[size]}")
    held = HeldListeners(SEQUENTIAL_SIZE)
    socks: list[socket.socket] = []
    try:
        started = time.monotonic()
        for endpoint in held.endpoints():  # what the charm did before: one after another
            host, _, port = endpoint.rpartition(":")
            socks.append(socket.create_connection((host, int(port)), HANDSHAKE_TIMEOUT))
        result.sequential_s = time.monotonic() - started
    except OSError as e:
        result.problems.append(f"sequential reference: {e!r}")
    finally:
        for sock in socks:
            sock.close()
        held.close()
    return result


def _handshake_lines(check: Handshakes) -> list[str]:
    sequential = check.sequential_s
    per_connect = sequential / SEQUENTIAL_SIZE if sequential else None
    lines = [
        "Connect phase with every TCP handshake delayed to about 1 s (each listener's accept "
        "queue kept full, so the kernel drops the client's first SYN and the handshake "
        "completes at its retransmission; a unit test checks the same with 20 endpoints). "
        f"{HANDSHAKE_ROUNDS} rounds per N; (a) from the call to its last "
        "connection open:",
        "",
        "| N | connects waiting for their handshake at once (max) | (a) connect phase p50 / max "
        "| one connect after another (the previous code) |",
        "|---|---|---|---|",
    ]
    for size, values in check.connect_s.items():
        waiting = check.peak_waiting[size]
        if size == SEQUENTIAL_SIZE and sequential is not None:
            reference = f"{sequential:.2f} s measured"
        elif per_connect is not None:
            reference = f"≈ {size * per_connect:.0f} s (N × {per_connect:.2f} s)"
        else:
            reference = "—"
        phase = f"{statistics.median(values):.2f} / {max(values):.2f} s" if values else "—"
        lines.append(
            f"| {size} | {max(waiting) if waiting else '—'} of {size} | {phase} | {reference} |"
        )
    if check.problems:
        lines.append(f"\nHandshake check problems: {check.problems[:5]}")
    return lines


def measure_send_floor(size: int) -> dict[str, list[float]]:
    """Per-request cost (µs) of a bare send() loop over `size` fresh loopback connections.

    No proxy, no reader, no time stamps: what the kernel charges the sending call for one
    small request. FLOOR_NO_QUICKACK first sets TCP_QUICKACK 0 on the receiving sockets, so
    they delay their ACK of the first data instead of sending it at once.
    """
    payload = _raw_patch(f"127.0.0.1:{PORT}")
    costs: dict[str, list[float]] = {FLOOR_FRESH: [], FLOOR_NO_QUICKACK: []}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(size)
        for _ in range(FLOOR_ROUNDS):
            for variant, values in costs.items():
                pairs: list[socket.socket] = []
                try:
                    for _ in range(size):
                        client = socket.create_connection(listener.getsockname(), 1.0)
                        pairs.append(client)
                        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        client.setblocking(False)
                        server = listener.accept()[0]
                        pairs.append(server)
                        if variant == FLOOR_NO_QUICKACK:
                            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
                    sends = [sock.send for sock in pairs[::2]]
                    wait_quiet()
                    start = time.perf_counter_ns()
                    for send in sends:
                        send(payload)
                    values.append((time.perf_counter_ns() - start) / size / 1e3)
                finally:
                    for sock in pairs:
                        sock.close()
    return costs


# ---------------------------------------------------------------- report


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "—"
    ratio = numerator / denominator
    return f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _p50_max(values: list[float], unit: str, digits: int = 1) -> str:
    if not values:
        return "—"
    p50 = statistics.median(values)
    worst = max(values, key=abs)
    return f"{p50:.{digits}f} / {worst:.{digits}f} {unit}"


@dataclass
class Row:
    size: int
    kind: str
    cells: dict[str, Cell]
    label: str = ""


def _table(rows: list[Row]) -> list[str]:
    head = "| N | units | " + " | ".join(f"{m.label} p50 / max" for m in METHODS)
    head += " | (b)/(a) p50 | (c)/(a) p50 | (a) send span p50 / max"
    head += " | (a) connect phase p50 / max |"
    lines = [head, "|" + "---|" * (len(METHODS) + 6)]
    for row in rows:
        cells = row.cells
        values = [f"{_ms(c.p50_ms())} / {_ms(c.max_ms())}" for c in cells.values()]
        a = cells["a"].p50_ms()
        span = cells["a"].send_spans_ns
        span_text = (
            f"{_ms(statistics.median(span) / 1e6)} / {_ms(max(span) / 1e6)}" if span else "—"
        )
        connect = cells["a"].connect_ns
        connect_text = (
            f"{_ms(statistics.median(connect) / 1e6)} / {_ms(max(connect) / 1e6)}"
            if connect
            else "—"
        )
        lines.append(
            f"| {row.label or row.size} | {row.kind} | " + " | ".join(values)
            + f" | {_ratio(cells['b'].p50_ms(), a)} | {_ratio(cells['c'].p50_ms(), a)}"
            + f" | {span_text} | {connect_text} |"
        )  # fmt: skip
    return lines


def _verdict(row: Row, floor: dict[str, list[float]]) -> list[str]:
    a, c = row.cells["a"].p50_ms(), row.cells["c"].p50_ms()
    if a is None or c is None:
        return [f"- Target at N={row.size}: not measurable (failed rounds, see below)."]
    ratio = c / a if a else math.inf
    met_p50, met_ratio = a <= TARGET_P50_MS, ratio >= TARGET_RATIO
    lines = [
        (
            f"- Target at N={row.size}: (a) p50 = {a:.3f} ms (≤ {TARGET_P50_MS:g} ms: "
            f"**{'met' if met_p50 else 'NOT met'}**); (c)/(a) = {ratio:,.0f}× "
            f"(≥ {TARGET_RATIO:g}×: **{'met' if met_ratio else 'NOT met'}**), same run."
        )
    ]
    spans = row.cells["a"].send_spans_ns
    if spans and row.size > 1:
        per_request = statistics.median(spans) / (row.size - 1) / 1e3
        budget = TARGET_P50_MS * 1e3 / (row.size - 1)
        lines.append(
            f"- (a) at N={row.size} costs {per_request:.1f} µs per request in its sending loop "
            f"(send span p50 / (N − 1)); {TARGET_P50_MS:g} ms for {row.size} units leaves "
            f"{budget:.1f} µs. "
            + (
                f"Missed by {a - TARGET_P50_MS:.3f} ms ({a / TARGET_P50_MS:.1f}×)."
                if not met_p50
                else ""
            )
        )
    fresh, quiet = floor.get(FLOOR_FRESH), floor.get(FLOOR_NO_QUICKACK)
    if fresh and quiet:
        lines.append(
            f"- Where the time goes: a bare send() loop over {row.size} fresh loopback "
            "connections on the same CPU (no proxy, nobody reading, no time stamps) costs "
            f"{statistics.median(fresh):.1f} µs per request (p50 of {len(fresh)}), "
            f"{statistics.median(quiet):.1f} µs when the receiving sockets delay their ACK "
            "(TCP_QUICKACK 0). On loopback the sending call itself runs the receiver's TCP "
            "input and, for a connection's first data, the receiver's immediate ACK and its "
            "processing; between machines that work is the receiver's. The charm's loop adds "
            "a time stamp per request and nothing else."
        )
    return lines


def _apparatus_lines(app: Apparatus) -> list[str]:
    rows = [
        ("skew error, kernel stamps (what the table uses)", _p50_max(app.skew_error_us, "µs")),
        ("skew error if stamped when the proxy reads", _p50_max(app.user_skew_error_us, "µs")),
        ("send → kernel stamp at the proxy", _p50_max(app.arrival_us, "µs")),
        ("kernel stamp → proxy reads it", _p50_max(app.read_lag_us, "µs")),
        (f"one-way delay applied (set {DELAY_MS:g} ms)", _p50_max(app.forward_ms, "ms", 3)),
    ]
    intro = (
        f"Apparatus check (N={APPARATUS_UNITS}, {len(app.skew_error_us)} rounds of raw "
        "PATCHes whose send times the bench stamps itself; p50 / worst):"
    )
    return [intro, "", "| what | p50 / worst |", "|---|---|"] + [
        f"| {what} | {value} |" for what, value in rows
    ]


def _measure(
    proxy: ProxyProcess, workdir: Path, sizes: Sequence[int], repetitions: int
) -> tuple[list[Row], Apparatus, tuple[float | None, float, float, int]]:
    """The apparatus check, the unit choice (by measured RSS), then every row."""
    apparatus = measure_apparatus(proxy, workdir)
    _log(f"apparatus: skew error {_p50_max(apparatus.skew_error_us, 'µs')}")
    real_rss = unit_rss(KIND_K6, workdir) if k6_binary() else None
    standin_rss = unit_rss(KIND_STANDIN, workdir)
    available = available_memory_mb()
    real_max = int(MEMORY_SHARE * available // real_rss) if real_rss else 0

    plan = [Row(n, KIND_K6 if n <= real_max else KIND_STANDIN, {}) for n in sizes]
    real_sizes = [n for n in sizes if 1 < n <= real_max]
    if real_sizes:  # check the stand-in against real k6, at the largest N both can run
        check = max(real_sizes)
        at = next(i for i, row in enumerate(plan) if row.size == check) + 1
        plan.insert(at, Row(check, KIND_STANDIN, {}, f"{check} (cross-check)"))
    for row in plan:
        fleet = Fleet(row.kind, row.size, workdir)
        try:
            row.cells = measure_size(proxy, fleet, repetitions)
        finally:
            fleet.kill()
    return plan, apparatus, (real_rss, standin_rss, available, real_max)


def raise_fd_limit(size: int) -> tuple[int, int]:
    """Raise the soft open-files limit, within the hard one, to what N units need here.

    The proxy inherits it. Returns (soft, hard); raises when the hard limit is too low.
    """
    need = FDS_PER_UNIT * size + FDS_BASE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < need:
        raise RuntimeError(f"N={size} needs about {need} open files; the hard limit is {hard}")
    return soft, hard


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
    """A SIGTERM unwinds like Ctrl-C, so every fleet and the proxy are killed on the way out."""

    def exit_on_term(*_: object) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, exit_on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sizes_from_env() -> tuple[int, ...]:
    """BENCH_SKEW_SIZES ("1,4,16,64"), else SIZES."""
    text = os.environ.get("BENCH_SKEW_SIZES", "")
    sizes = tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    if any(n < 1 for n in sizes):
        raise ValueError(f"BENCH_SKEW_SIZES must list sizes >= 1, not {text!r}")
    return sizes or SIZES


def run(sizes: Sequence[int] | None = None, repetitions: int | None = None) -> SectionResult:
    """Measure every method at every size; markdown tables plus the skew figure."""
    sizes = sizes or sizes_from_env()
    repetitions = repetitions or int(os.environ.get("BENCH_SKEW_REPETITIONS", REPETITIONS))
    if shutil.which("curl") is None:
        raise RuntimeError("curl is needed for method (c): apt-get install curl")
    fd_limit = raise_fd_limit(max(sizes))
    started, load_before = time.monotonic(), os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-skew-"))
    with terminated_cleanly():
        handshakes = measure_handshakes([n for n in sizes if n > 1])
        proxy = ProxyProcess(max(max(sizes), APPARATUS_UNITS))
        try:
            pin_check = measure_pinning(proxy, max(sizes))
            unpinned = _p50_max(pin_check[False], "µs")
            _log(f"pinning check: unpinned {unpinned}, pinned {_p50_max(pin_check[True], 'µs')}")
            with pinned(proxy) as is_pinned:
                floor = measure_send_floor(max(sizes))
                _log(f"send floor: { {k: _p50_max(v, 'µs') for k, v in floor.items()} }")
                plan, apparatus, memory = _measure(proxy, workdir, sizes, repetitions)
        finally:
            proxy.close()
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed, load_after = time.monotonic() - started, os.getloadavg()[0]
    real_rss, standin_rss, available, real_max = memory
    biggest = max(sizes)

    main_rows = [r for r in plan if not r.label]
    all_cells = [cell for row in plan for cell in row.cells.values()]
    busy = sum(cell.busy_starts for cell in all_cells)
    rounds = sum(cell.rounds for cell in all_cells)
    intro = (
        "Resume delivery skew (last − first arrival of the resume PATCH over N paused units), "
        f"ms; {repetitions} rounds per cell, methods interleaved, units re-armed every round. "
        f"Each unit sits behind a proxy process adding {DELAY_MS:g} ms each way that stamps "
        "the arrival with the kernel's receive time (SO_TIMESTAMPNS). Each round starts in a "
        "quiet moment: no more runnable tasks than CPUs (/proc/stat procs_running), waited for "
        f"up to {QUIET_TIMEOUT:g} s ({busy} of {rounds} rounds found none and started anyway)."
    )
    cpus = sorted(ALL_CPUS)
    check = "; ".join(
        f"{name} {_p50_max(pin_check[key], 'µs', 0)} "
        f"({sum(v > 1000 for v in pin_check[key])}/{len(pin_check[key])})"
        for name, key in (("unpinned", False), ("pinned", True))
    )
    pin_note = (
        (
            f"- Pinning: this process on CPU {cpus[0]}, the proxy on CPU {cpus[1]}, units on "
            "any CPU, so that the proxy, which wakes as each request arrives, cannot preempt "
            "the sender mid-fan-out. "
            if is_pinned
            else "- Pinning: off (one CPU). "
        )
        + f"Check at N={biggest} without units, {PIN_ROUNDS} alternating rounds each, the "
        f"charm's send span p50 / worst (rounds over 1 ms): {check}."
    )
    methods_note = (
        "- (a) sends from this process through the charm's own path: the synchronized-task "
        "library's `fan_out` (lib/charms/k6_k8s/v0/synchronized_task.py) with the request "
        "bytes of `k6_client.resume_request`, encoded before the call as the leader's release "
        "does; (b) and (d) from this process; "
        "(c) is `sh -c 'curl --retry 3 -X PATCH … ; curl …'` as k6-operator's starter; "
        "(d) warms its connections with a GET first (its best case; httpx's default pool "
        "holds 100 connections, so above N = 100 some of its requests wait for one). "
        "(a) send span: the spread of the charm's own send times (Delivery.sent)."
    )
    gaps = [g / 1e3 for row in plan for g in row.cells["a"].span_gaps_ns]
    gap_note = (
        f"- (a) delivery skew minus the charm's own send span, round by round: "
        f"{_p50_max(gaps, 'µs')} (p50 / worst)"
    )
    if gaps and max(abs(g) for g in gaps) < 100:
        gap_note += ": the skew, outliers included, is made in the sending loop, not on the way."
    else:
        gap_note += (
            " (Delivery.sent is stamped just after each send, so a preemption between the "
            "two widens this)."
        )
    lines = [
        intro,
        "",
        *_table(plan),
        "",
        *_verdict(main_rows[-1], floor),
        f"- Units: real k6 measured at {real_rss or 0:.0f} MB RSS paused "
        f"(stand-in {standin_rss:.0f} MB); {available / 1024:.1f} GB available, real k6 used "
        f"while N × RSS ≤ {MEMORY_SHARE:.0%} of it (up to N = {real_max}). "
        "Rows marked stand-in use tests/support/k6_standin.py (a test double), forked from "
        "this process (a new interpreter each took 25 s to start 256 of them here, per round)"
        + "".join(
            f"; the `{r.label}` row repeats N = {r.size} with it, to check it against real k6"
            for r in plan
            if r.label
        )
        + ".",
        methods_note,
        pin_note,
        gap_note,
        "- (b), (c) and (d) are still sending when the first units get their resume and start "
        "running, so they also pay for the units' CPU and any other load on the machine; (a) "
        f"has sent everything before the first request has crossed the {DELAY_MS:g} ms link.",
        "- (a) connect phase: from the call to the last of its N connections open (all "
        "connects started at once, non-blocking; the fan-out starts after the last). The proxy "
        "delays data, not the TCP handshake, which on loopback completes inside connect(): "
        "this column is the CPU cost of opening N connections. Handshake latency: the table "
        "below.",
    ]
    failed = {
        f"N={row.label or row.size} {key}": cell.problems
        for row in plan
        for key, cell in row.cells.items()
        if cell.problems
    }
    if failed:
        lines.append("- Failed rounds (left out of the table):")
        lines += [f"  - {where}: {problems[:3]}" for where, problems in failed.items()]
    lines += ["", *_apparatus_lines(apparatus)]
    if apparatus.problems:
        lines.append(f"\nApparatus problems: {apparatus.problems[:5]}")
    lines += [
        "",
        *_handshake_lines(handshakes),
        "",
        f"Section wall time: {elapsed:.0f} s; 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after (the units themselves add to it); open files limit "
        f"{fd_limit[0]} (hard {fd_limit[1]}).",
    ]
    if tuple(sizes) != SIZES:
        lines.append(
            f"Sizes run: {', '.join(map(str, sizes))} (BENCH_SKEW_SIZES; the full section runs "
            f"{', '.join(map(str, SIZES))})."
        )

    plotted = [r for r in main_rows if r.size > 1]
    figure = Figure(
        filename="benchmarks-skew.png",
        title=f"Resume delivery skew, p50 ({DELAY_MS:g} ms one-way proxy)",
        xlabel="paused units N",
        ylabel="skew p50 (ms, log)",
        x=[r.size for r in plotted],
        series={m.label: [r.cells[m.key].p50_ms() for r in plotted] for m in METHODS},
        logx=True,
        logy=True,
        references={f"target for (a): {TARGET_P50_MS:g} ms": TARGET_P50_MS},
    )
    return SectionResult("\n".join(lines), [figure])
