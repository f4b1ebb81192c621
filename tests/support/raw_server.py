"""A raw TCP server on loopback for the release fan-out's tests, and the requests it receives.

`RawServer` listens on a port the kernel picks and treats each connection with a behaviour
(`Recorder`: answer 200; `Silent`: never answer).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from charms.k6_k8s.v0.synchronized_task import endpoint_of


def release_request(endpoint: str, body: bytes = b'{"go":true}') -> bytes:
    """A generic HTTP/1.1 request, as a workload's `release_request` would encode it."""
    return (
        b"POST /release HTTP/1.1\r\nHost: "
        + endpoint.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def requests_for(endpoints: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(e, release_request(e)) for e in endpoints]


OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


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


@dataclass
class RawServer:
    """A TCP listener on a loopback address that treats each connection with `behaviour`."""

    behaviour: Callable[[socket.socket], None]
    host: str = "127.0.0.1"
    stop: threading.Event = field(default_factory=threading.Event)
    handled: threading.Event = field(default_factory=threading.Event)  # a connection closed

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.sock.bind((self.host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.host, self.port)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    self.behaviour(conn)
                except OSError:
                    pass
            self.handled.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@dataclass
class Recorder:
    """A RawServer behaviour: record the request, answer with `answer` (200 by default)."""

    answer: bytes = OK_ANSWER
    requests: list[bytes] = field(default_factory=list)

    def __call__(self, conn: socket.socket) -> None:
        request = read_request(conn)
        if request:  # a connection closed without a byte is no request
            self.requests.append(request)
            conn.sendall(self.answer)


@dataclass
class Silent:
    """A RawServer behaviour: read the request, then answer nothing until the test ends."""

    requests: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, conn: socket.socket) -> None:
        self.requests.append(read_request(conn))
        self.release.wait(timeout=10)
