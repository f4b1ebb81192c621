"""Latency-injecting TCP proxy for the resume benchmark: one process, one listener per unit.

Each chunk is forwarded after a fixed delay in each direction, and the kernel receive time of
every chunk that starts a PATCH request is recorded and handed to the bench over stdin/stdout.

Run as ``python -m bench.proxy --units N --listen 127.77.1.1 --upstream 127.77.2.1 --port 6565
--delay-ms 5``: unit i listens on (listen + i):port and forwards to (upstream + i):port. Only
loopback addresses are accepted. Control, one line each way:

- the proxy prints ``{"ready": N}`` once every listener is bound;
- ``drain`` → ``{"patches": [{"unit", "kernel_ns", "read_ns", "forwarded_ns"}], "errors": [..],
  "links": open connections}`` (everything recorded since the previous drain);
- ``quit`` or end of stdin → the proxy closes everything and exits.

Timestamps are CLOCK_REALTIME nanoseconds (`time.time_ns()` in any process). `kernel_ns` comes
from SO_TIMESTAMPNS: the moment the segment reached the proxy's socket, independent of when this
process got round to reading it, so a busy proxy does not distort the measured skew. `read_ns`
is when the proxy read it, `forwarded_ns` when it wrote it to the unit (kernel_ns + delay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
BUFSIZE = 65536
BACKLOG = 1024
CONNECT_TIMEOUT = 3.0
ACCEPTS_PER_WAKEUP = 256
PATCH_PREFIX = b"PATCH "
# asyncio timers fire up to ~1 ms late (epoll counts milliseconds): wake this much early and
# sleep the rest, so the delay holds to a few tens of microseconds.
TIMER_LEAD = 0.0015


def _kernel_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanoseconds
    return None


@dataclass
class Route:
    """One unit: where the bench connects, and where its k6 listens."""

    unit: int
    listen: tuple[str, int]
    upstream: tuple[str, int]


class Proxy:
    """All listeners, the links between them and the units, and the PATCH arrival records."""

    def __init__(self, loop: asyncio.AbstractEventLoop, routes: list[Route], delay: float):
        self.loop = loop
        self.routes = routes
        self.delay = delay
        self.records: list[dict] = []
        self.errors: list[str] = []
        self.listeners: list[socket.socket] = []
        self.links: set[_Link] = set()

    def start(self) -> None:
        """Bind every listener (SO_TIMESTAMPNS is inherited by the accepted sockets)."""
        for route in self.routes:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            listener.bind(route.listen)
            listener.listen(BACKLOG)
            listener.setblocking(False)
            self.listeners.append(listener)
            self.loop.add_reader(listener, self._accept, listener, route)

    def close(self) -> None:
        """Close every link and listener."""
        for link in list(self.links):
            link.abort()
        for listener in self.listeners:
            self.loop.remove_reader(listener)
            listener.close()

    def record(self, unit: int, kernel_ns: int | None, read_ns: int) -> dict:
        """Remember the arrival of one PATCH request's first bytes."""
        entry = {
            "unit": unit,
            "kernel_ns": kernel_ns if kernel_ns is not None else read_ns,
            "read_ns": read_ns,
            "forwarded_ns": None,
        }
        if kernel_ns is None:
            self.errors.append(f"unit {unit}: no kernel timestamp, used the read time")
        self.records.append(entry)
        return entry

    def drain(self) -> dict:
        """Everything recorded since the last drain."""
        answer = {"patches": self.records, "errors": self.errors, "links": len(self.links)}
        self.records, self.errors = [], []
        return answer

    def _accept(self, listener: socket.socket, route: Route) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.errors.append(f"unit {route.unit}: accept failed: {e}")
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, route)
            self.links.add(link)
            link.start()


class _Link:
    """One proxied connection: two delayed directions; closed when both have ended.

    The unit is connected to only when the client's first bytes arrive (well within the
    delay), so a client that opens all its connections first does not wake every unit while
    it is still sending.
    """

    def __init__(self, proxy: Proxy, client: socket.socket, route: Route):
        self.proxy = proxy
        self.client = client
        self.route = route
        self.upstream: socket.socket | None = None
        self.request = _Direction(self, client, route.unit)  # PATCHes are recorded here
        self.response: _Direction | None = None
        self.closed = False

    def start(self) -> None:
        self.request.start()

    def ensure_upstream(self) -> None:
        """Start connecting to the unit (once)."""
        if self.upstream is None and not self.closed:
            self.upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.upstream.setblocking(False)
            self.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.proxy.loop.create_task(self._connect(self.upstream))

    async def _connect(self, upstream: socket.socket) -> None:
        route = self.route
        try:
            connecting = self.proxy.loop.sock_connect(upstream, route.upstream)
            await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            if not self.closed:
                self.proxy.errors.append(f"unit {route.unit}: {route.upstream} failed: {e!r}")
                self.abort()
            return
        if self.closed:
            return
        self.response = _Direction(self, upstream, None, dst=self.client)
        self.response.start()
        self.request.connected(upstream)

    def direction_done(self) -> None:
        if self.request.done and (self.response is None or self.response.done):
            self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for direction in (self.request, self.response):
            if direction is not None:
                direction.stop()
        self.client.close()
        if self.upstream is not None:
            self.upstream.close()
        self.proxy.links.discard(self)


class _Direction:
    """Bytes from `src` to `dst`, each chunk held back until its kernel arrival + delay.

    `dst` is None until the unit is connected: chunks wait in the queue meanwhile.
    """

    def __init__(
        self, link: _Link, src: socket.socket, unit: int | None, dst: socket.socket | None = None
    ):
        self.link = link
        self.loop = link.proxy.loop
        self.src, self.dst, self.unit = src, dst, unit
        self.queue: deque[tuple[float, bytes | None, dict | None]] = deque()
        self.out = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.reading = self.writing = False
        self.eof = self.done = False

    def start(self) -> None:
        self.loop.add_reader(self.src, self._on_readable)
        self.reading = True

    def connected(self, dst: socket.socket) -> None:
        """The unit answered the connect: forward whatever is due, keep the rest queued."""
        self.dst = dst
        self._flush()

    def stop(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.src)
            self.reading = False
        if self.writing:
            self.loop.remove_writer(self.dst)
            self.writing = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_readable(self) -> None:
        try:
            data, ancillary, _, _ = self.src.recvmsg(BUFSIZE, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.link.abort()
            return
        read_ns = time.time_ns()
        kernel_ns = _kernel_ns(ancillary)
        age = (read_ns - kernel_ns) / 1e9 if kernel_ns is not None else 0.0
        due = self.loop.time() + max(0.0, self.link.proxy.delay - age)
        entry = None
        if not data and self.dst is None and not self.queue:
            self.link.abort()  # closed without a byte: nothing to forward, no unit to wake
            return
        if self.dst is None:
            self.link.ensure_upstream()
        if not data:
            self.loop.remove_reader(self.src)
            self.reading = False
            self.queue.append((due, None, None))
        else:
            if self.unit is not None and data.startswith(PATCH_PREFIX):
                entry = self.link.proxy.record(self.unit, kernel_ns, read_ns)
            self.queue.append((due, data, entry))
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self.timer is None and self.queue and self.dst is not None and not self.link.closed:
            self.timer = self.loop.call_at(self.queue[0][0] - TIMER_LEAD, self._flush)

    def _flush(self) -> None:
        self.timer = None
        if self.dst is None or self.link.closed:
            return
        early = self.queue[0][0] - self.loop.time() if self.queue else 0.0
        if 0 < early <= TIMER_LEAD:
            time.sleep(early)
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data, entry = self.queue.popleft()
            if data is None:
                self.eof = True
            else:
                self.out += data
                if entry is not None:
                    entry["forwarded_ns"] = time.time_ns()
        self._write()
        self._arm_timer()

    def _write(self) -> None:
        if self.link.closed or self.dst is None:
            return
        if self.out:
            try:
                sent = self.dst.send(self.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.link.abort()
                return
            del self.out[:sent]
        if self.out and not self.writing:
            self.loop.add_writer(self.dst, self._write)
            self.writing = True
        elif not self.out and self.writing:
            self.loop.remove_writer(self.dst)
            self.writing = False
        if self.eof and not self.out and not self.done:
            self.done = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.link.direction_done()


def _loopback(address: str) -> ipaddress.IPv4Address:
    ip = ipaddress.IPv4Address(address)
    if not ip.is_loopback:
        raise argparse.ArgumentTypeError(f"{address} is not a loopback address (127.0.0.0/8)")
    return ip


def routes(units: int, listen: str, upstream: str, port: int) -> list[Route]:
    """Unit i: (listen + i):port → (upstream + i):port, all inside 127.0.0.0/8."""
    first_listen, first_upstream = _loopback(listen), _loopback(upstream)
    table = []
    for unit in range(units):
        a, b = _loopback(str(first_listen + unit)), _loopback(str(first_upstream + unit))
        table.append(Route(unit, (str(a), port), (str(b), port)))
    return table


async def serve(table: list[Route], delay: float) -> None:
    """Proxy until `quit` or end of stdin."""
    loop = asyncio.get_running_loop()
    proxy = Proxy(loop, table, delay)
    finished = loop.create_future()
    pending = bytearray()

    def reply(document: dict) -> None:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()

    def on_command() -> None:
        chunk = os.read(sys.stdin.fileno(), 4096)
        pending.extend(chunk)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            command = line.decode().strip()
            if command == "drain":
                reply(proxy.drain())
            elif command == "quit" and not finished.done():
                finished.set_result(None)
            elif command:
                reply({"error": f"unknown command {command!r}"})
        if not chunk and not finished.done():
            finished.set_result(None)

    proxy.start()
    loop.add_reader(sys.stdin.fileno(), on_command)
    reply({"ready": len(table)})
    try:
        await finished
    finally:
        loop.remove_reader(sys.stdin.fileno())
        proxy.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--units", type=int, required=True)
    parser.add_argument("--listen", default="127.77.1.1", help="first listen address")
    parser.add_argument("--upstream", default="127.77.2.1", help="first unit address")
    parser.add_argument("--port", type=int, default=6565)
    parser.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay")
    args = parser.parse_args(argv)
    table = routes(args.units, args.listen, args.upstream, args.port)
    asyncio.run(serve(table, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
