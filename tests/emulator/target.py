"""The local load-test target: an HTTP server that records every request (unit, path, time).

Run as its own process (`python -m tests.emulator.target FD`, serving the listening socket its
parent bound and passed down as FD) so the emulator's work never delays its timestamps;
`GET /__stats` returns what it recorded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

UNIT_HEADER = "X-K6-Unit"
TOKEN_HEADER = "X-Token"  # a value the script got from setup(): counted per value
ROOT = Path(__file__).resolve().parents[2]


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.by_unit: dict[str, int] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.paths: dict[str, dict] = {}  # path (no query) -> count, first, last, by_unit
        self.tokens: dict[str, int] = {}

    def record(self, unit: str, when: float, path: str = "/", token: str | None = None) -> None:
        with self.lock:
            self.count += 1
            self.by_unit[unit] = self.by_unit.get(unit, 0) + 1
            self.first.setdefault(unit, when)
            self.last[unit] = when
            seen = self.paths.setdefault(
                path,
                {
                    "count": 0,
                    "first": when,
                    "last": when,
                    "by_unit": {},
                    "first_by_unit": {},
                    "last_by_unit": {},
                },
            )
            seen["count"] += 1
            seen["last"] = when
            seen["by_unit"][unit] = seen["by_unit"].get(unit, 0) + 1
            seen["first_by_unit"].setdefault(unit, when)
            seen["last_by_unit"][unit] = when
            if token is not None:
                self.tokens[token] = self.tokens.get(token, 0) + 1

    def stats(self) -> dict:
        with self.lock:
            return {
                "count": self.count,
                "by_unit": dict(self.by_unit),
                "first": dict(self.first),
                "last": dict(self.last),
                "paths": {
                    p: {
                        **v,
                        "by_unit": dict(v["by_unit"]),
                        "first_by_unit": dict(v["first_by_unit"]),
                    }
                    for p, v in self.paths.items()
                },
                "tokens": dict(self.tokens),
            }

    def reset(self) -> None:
        with self.lock:
            self.__init__()


class _Server(ThreadingHTTPServer):
    request_queue_size = 4096  # the stdlib default of 5 drops SYNs under a burst
    daemon_threads = True
    allow_reuse_address = True


def _handler(recorder: _Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            when = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path == "/__stats":
                self._answer(200, json.dumps(recorder.stats()).encode())
                return
            if self.path == "/__reset":
                recorder.reset()
                self._answer(200, b"{}")
                return
            path = self.path.split("?", 1)[0]
            unit = self.headers.get(UNIT_HEADER, "unknown")
            recorder.record(unit, when, path, self.headers.get(TOKEN_HEADER))
            code = 200
            if self.path.startswith("/status/"):
                with contextlib.suppress(ValueError):
                    code = int(self.path.rsplit("/", 1)[1])
            if self.path.startswith("/delay/"):  # answer after this many ms (at most 2 s)
                with contextlib.suppress(ValueError):
                    time.sleep(min(max(float(self.path.rsplit("/", 1)[1]), 0.0), 2000.0) / 1000)
            self._answer(code, b'{"ok":true}')

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815

    return Handler


def serve(fd: int) -> None:
    """Serve on the listening socket `fd` (bound by the parent: no port race) until killed."""
    server = _Server(("", 0), _handler(_Recorder()), bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=fd)
    server.server_address = server.socket.getsockname()
    server.serve_forever(poll_interval=0.1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Target:
    """The target as a child process, with a client for its stats."""

    def __init__(self, host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as listener:
            listener.bind((host, 0))  # bound here, kept by the child: nobody can take the port
            listener.listen(_Server.request_queue_size)
            port = listener.getsockname()[1]
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.emulator.target", str(listener.fileno())],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                pass_fds=[listener.fileno()],
            )
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.url = f"http://{self.address}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.url}/__stats", timeout=0.5)
                return
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"target did not come up at {self.address}")

    def stats(self) -> dict:
        """What the target recorded so far."""
        return httpx.get(f"{self.url}/__stats", timeout=5).json()

    def reset(self) -> None:
        """Forget every recorded request."""
        httpx.get(f"{self.url}/__reset", timeout=5)

    def close(self) -> None:
        """Stop the target process."""
        self.process.kill()
        self.process.wait(timeout=10)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
