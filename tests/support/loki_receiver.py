"""A stand-in for Loki's push endpoint: accepts `POST /loki/api/v1/push` and records the streams.

k6 v1.1.0's `--log-output=loki=URL,...` was measured pushing JSON (`Content-Type:
application/json`, `{"streams": [{"stream": {labels}, "values": [["<ns>", "line"], ...]}]}`),
so that is what this decodes (gzip-compressed bodies too); anything else answers 415.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PUSH_PATH = "/loki/api/v1/push"


@dataclass(frozen=True)
class Entry:
    """One log line as Loki would store it: its stream's labels, timestamp and text."""

    labels: dict[str, str]
    timestamp_ns: int
    line: str


@dataclass
class _Record:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: list[Entry] = field(default_factory=list)
    pushes: int = 0
    rejected: list[str] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def decode_push(body: bytes, content_type: str, content_encoding: str = "") -> list[Entry]:
    """The entries of one Loki JSON push body.

    Raises:
        ValueError: not a JSON push (e.g. snappy-compressed protobuf) or not Loki's shape.
    """
    if content_encoding == "gzip":
        body = gzip.decompress(body)
    elif content_encoding:
        raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")
    if not content_type.startswith("application/json"):
        raise ValueError(f"unsupported Content-Type {content_type!r} (only JSON is decoded)")
    document = json.loads(body)
    entries = []
    for stream in document["streams"]:
        labels = {str(k): str(v) for k, v in stream["stream"].items()}
        for value in stream["values"]:
            entries.append(Entry(labels, int(value[0]), str(value[1])))
    return entries


def _handler(record: _Record) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _answer(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path != PUSH_PATH:
                self._answer(404, b"not found")
                return
            try:
                entries = decode_push(
                    body,
                    self.headers.get("Content-Type", ""),
                    self.headers.get("Content-Encoding", ""),
                )
            except (ValueError, KeyError, TypeError, IndexError, OSError) as e:
                with record.lock:
                    record.rejected.append(f"{type(e).__name__}: {e}")
                self._answer(415 if "unsupported" in str(e) else 400, str(e).encode())
                return
            with record.lock:
                record.pushes += 1
                record.entries.extend(entries)
            self._answer(204)  # what Loki answers to a successful push

    return Handler


class LokiReceiver:
    """The receiver on a loopback port, served from a background thread."""

    def __init__(self, host: str = "127.0.0.1"):
        self._record = _Record()
        self._server = _Server((host, 0), _handler(self._record))
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}{PUSH_PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def entries(self) -> list[Entry]:
        """Every entry received so far."""
        with self._record.lock:
            return list(self._record.entries)

    @property
    def pushes(self) -> int:
        """How many pushes were accepted."""
        with self._record.lock:
            return self._record.pushes

    @property
    def rejected(self) -> list[str]:
        """Why each rejected push was rejected."""
        with self._record.lock:
            return list(self._record.rejected)

    def streams(self) -> list[dict[str, str]]:
        """The distinct label sets seen, in first-seen order."""
        seen: list[dict[str, str]] = []
        for entry in self.entries:
            if entry.labels not in seen:
                seen.append(entry.labels)
        return seen

    def wait_for(self, predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> bool:
        """Wait until `predicate(entries)` holds or `timeout` passes; whether it held."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.entries):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def running(host: str = "127.0.0.1") -> Iterator[LokiReceiver]:
    """A receiver that is always closed."""
    receiver = LokiReceiver(host)
    try:
        yield receiver
    finally:
        receiver.close()
