"""TEST DOUBLE for the k6 CLI: `k6 run --paused` with k6's REST status API, and nothing else.

It starts in milliseconds and runs no load, so benchmarks can arm more units than real k6 fits
in memory, and property-based tests can arm and resume thousands of times. It is NOT k6: it
executes no script. Usage, as with k6 (other k6 flags are accepted and ignored, the script is
the last argument and is never read)::

    python -m tests.support.k6_standin run --paused --address HOST:PORT \
        [--summary-export PATH] [k6 flags ...] SCRIPT

What it reproduces (each measured against real k6 v1.1.0):

- `GET /v1/status`: k6's status document; status 1 (init VUs) while initialising, then
  4 (paused before run) with `paused: true`; 7 (running) after the resume.
- `PATCH /v1/status` `{"data": {"attributes": {"paused": false}}}`: 200 with the document
  (status still 4, paused false), then running; a resume during init is accepted and takes
  effect when init ends; a resume (or pause) once running answers 500 "Pause error".
- `PATCH /v1/status` `{"data": {"attributes": {"stopped": true}}}`: 200, then exit 103.
  A body without the `data` wrapper is accepted and ignored (200, nothing happens), like k6.
- Malformed JSON: 400. `POST /v1/status`: 405. Any request to `/status`: 200 "ok" (k6's
  health endpoint, which does nothing). SIGTERM: exit 105.
- `POST /v1/setup`: 200 with no data (a script without setup()), or K6_STANDIN_SETUP_DATA's
  JSON as the data; `PUT /v1/setup`: 200, the body becomes the data; `POST /v1/teardown`: 200.
  Each is logged (`setup`, `put_setup`, `teardown`) like the resume, and so is the exit.
- `k6 inspect [flags] SCRIPT`: prints options with no thresholds (real k6's JSON shape, the
  fields the charm reads) and exits 0; 107 with K6_STANDIN_DIE_BEFORE_ARM, like a syntax
  error.

Behaviour knobs (environment):

- `K6_STANDIN_EXIT`: exit code after a completed run (default 0; 99 mimics failed thresholds).
- `K6_STANDIN_RUN_SECONDS`: how long the run lasts after the resume (default 0.2).
- `K6_STANDIN_INIT_SECONDS`: how long status 1 lasts before status 4 (default 0).
- `K6_STANDIN_DIE_BEFORE_ARM`: when set (non-empty, not "0"), exit 107 at the end of init,
  never showing status 4 (a script error).
- `K6_STANDIN_ITERATIONS`: iterations reported in the summary of a completed run (default 1).
- `K6_STANDIN_LOG`: file to append one JSON line to when the resume PATCH arrives
  (`{"event": "resume", "address", "run_id", "epoch_ns", "monotonic_ns"}`; `run_id` is the
  value of `--tag run_id=...`, "" without one).
- `K6_STANDIN_ARMED_LOG`: file to append one JSON line to when init ends and the test is
  paused before the run, ready to be resumed (`{"event": "armed", ...}`, the same fields),
  written before any client can see status 4.
- `K6_STANDIN_MAX_SECONDS`: safety net; a stand-in still alive after this long exits 105 as if
  terminated (default 900), so a forgotten one cannot outlive its test for long.

`--summary-export PATH` gets a minimal valid summary (`iterations` and `http_reqs` counters,
empty `root_group`) at every exit except the script error.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUS_INIT_VUS = 1
STATUS_PAUSED_BEFORE_RUN = 4
STATUS_RUNNING = 7
STATUS_ENDED = 9

EXIT_STOPPED_API = 103
EXIT_SIGTERM = 105
EXIT_SCRIPT_ERROR = 107
EXIT_USAGE = 2

STATUS_PATH = "/v1/status"
SETUP_PATH = "/v1/setup"
TEARDOWN_PATH = "/v1/teardown"
HEALTH_PATH = "/status"
DEFAULT_ADDRESS = "localhost:6565"
LISTEN_BACKLOG = 1024
WAKE = 0.1  # longest the main loop sleeps without news (bounds SIGTERM latency), seconds
TICK = 0.005  # poll period while an exit waits for in-flight responses, seconds
RESPONSE_GRACE = 1.0  # how long an exit waits for in-flight responses, seconds

# k6 run flags that take a separate value (so the value is never mistaken for the script).
_VALUE_FLAGS = frozenset(
    (
        *("-a", "--address", "-c", "--config", "-e", "--env", "-o", "--out", "-u", "--vus"),
        *("-d", "--duration", "-i", "--iterations", "-s", "--stage", "--execution-segment"),
        *("--execution-segment-sequence", "--tag", "--system-tags", "--summary-export"),
        *("--summary-trend-stats", "--summary-time-unit", "--log-output", "--log-format"),
        *("--console-output", "--user-agent", "--local-ips", "--dns", "--blacklist-ip"),
        *("--block-hostnames", "--batch", "--batch-per-host", "--max-redirects"),
        *("--min-iteration-duration", "--rps", "--compatibility-mode", "--traces-output"),
        *("--secret-source", "--tls-version", "--tls-cipher-suites"),
    )
)


@dataclass(frozen=True)
class Options:
    """The parts of the k6 command line the stand-in acts on."""

    paused: bool
    host: str
    port: int
    summary_export: str | None
    script: str | None
    tags: dict[str, str] = field(default_factory=dict)  # --tag NAME=VALUE


INSPECTED = {  # what `k6 inspect --execution-requirements` prints for a script with no options
    "paused": None,
    "thresholds": None,
    "setupTimeout": None,
    "teardownTimeout": None,
    "noSetup": None,
    "noTeardown": None,
    "totalDuration": "10m30s",
    "maxVUs": 1,
}


def parse_args(argv: list[str]) -> Options:
    """Parse `run [flags] SCRIPT`; unknown flags are ignored, as documented above."""
    if not argv or argv[0] != "run":
        raise ValueError("usage: k6_standin run --paused --address HOST:PORT [...] SCRIPT")
    paused, address, summary, script = False, DEFAULT_ADDRESS, None, None
    tags: dict[str, str] = {}
    args = iter(argv[1:])
    for arg in args:
        name, eq, inline = arg.partition("=")
        if name == "--paused" or name == "-p":
            paused = inline.lower() not in ("false", "0") if eq else True
        elif name in ("--address", "-a"):
            address = inline if eq else next(args, address)
        elif name == "--summary-export":
            summary = inline if eq else next(args, None)
        elif name == "--tag":
            tag, _, value = (inline if eq else next(args, "")).partition("=")
            tags[tag] = value
        elif name in _VALUE_FLAGS and not eq:
            next(args, None)
        elif not arg.startswith("-"):
            script = arg
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "localhost"
    return Options(
        paused, "127.0.0.1" if host == "localhost" else host, int(port), summary, script, tags
    )


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class Execution:
    """The test's state as the REST API shows it; every field is guarded by `lock`.

    `lock` is a condition: the handlers notify it on every change, so the main loop sleeps
    until something happens instead of polling.
    """

    def __init__(
        self,
        address: str,
        log_path: str | None,
        armed_log_path: str | None = None,
        run_id: str = "",
    ) -> None:
        self.lock = threading.Condition()
        self.address = address
        self.log_path = log_path
        self.armed_log_path = armed_log_path
        self.run_id = run_id
        self.status = STATUS_INIT_VUS
        self.paused = True
        self.stopped = False
        self.resumed_at: float | None = None  # monotonic
        self.setup_data: str | None = None  # JSON text set by POST or PUT /v1/setup
        self.responding = 0  # PATCH responses not yet written: an exit waits for them

    def document(self) -> dict:
        """k6's `GET /v1/status` document (call with the lock held)."""
        running = self.status == STATUS_RUNNING
        attributes = {
            "status": self.status,
            "paused": self.paused,
            "vus": 1 if running else 0,
            "vus-max": 0 if self.status < STATUS_PAUSED_BEFORE_RUN else 1,
            "stopped": self.stopped,
            "running": running,
            "tainted": False,
        }
        return {"data": {"type": "status", "id": "default", "attributes": attributes}}

    def patch(self, attributes: dict) -> tuple[int, dict]:
        """Apply a PATCH's attributes the way k6 does; (HTTP status, response document)."""
        with self.lock:
            if attributes.get("stopped") is True:
                self.stopped = True
            elif "paused" in attributes:
                if self.status >= STATUS_RUNNING:
                    return 500, _error(
                        "500",
                        "Pause error",
                        "shared-iterations executor 'default' doesn't support pause and "
                        "resume operations after its start",
                    )
                was_paused, self.paused = self.paused, bool(attributes["paused"])
                if was_paused and not self.paused:
                    self.log(self.log_path, "resume")
            self.lock.notify_all()
            return 200, self.document()

    def log(self, path: str | None, event: str) -> None:
        """Append one event line to `path` (nothing without a path)."""
        if not path:
            return
        line = {
            "event": event,
            "address": self.address,
            "run_id": self.run_id,
            "epoch_ns": time.time_ns(),
            "monotonic_ns": time.monotonic_ns(),
        }
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")


def _setup_document(data: str | None) -> bytes:
    """k6's setupData document: `attributes` holds `data` only when there is some."""
    attributes = "{}" if data is None else '{"data":' + data + "}"
    head = '{"data":{"type":"setupData","id":"default","attributes":'
    return (head + attributes + "}}").encode()


def _encode(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _error(status: str, title: str, detail: str) -> dict:
    return {"errors": [{"status": status, "title": title, "detail": detail}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like k6's Go server
    timeout = 10  # an idle keep-alive connection is dropped after this many seconds
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: k6 does not log API requests."""

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        """Status document, or k6's health answer."""
        execution = self.server.execution
        if self.path == STATUS_PATH:
            with execution.lock:
                body = _encode(execution.document())
            self._send(200, body)
        elif self.path == HEALTH_PATH:
            self._send(200, b"ok", "text/plain; charset=utf-8")
        else:
            self._send(404, b"404 page not found", "text/plain; charset=utf-8")

    def do_PATCH(self) -> None:
        """Resume, pause or stop, like k6's `PATCH /v1/status`."""
        execution = self.server.execution
        with execution.lock:
            execution.responding += 1
        try:
            body = self._read_body()
            if self.path == HEALTH_PATH:
                self._send(200, b"ok", "text/plain; charset=utf-8")
                return
            if self.path != STATUS_PATH:
                self._send(404, b"404 page not found", "text/plain; charset=utf-8")
                return
            try:
                document = json.loads(body)
                data = document.get("data") if isinstance(document, dict) else None
                attributes = (data or {}).get("attributes") or {}
            except (ValueError, AttributeError) as e:
                self._send(400, _encode(_error("400", "Invalid data", str(e))))
                return
            code, answer = execution.patch(attributes if isinstance(attributes, dict) else {})
            self._send(code, _encode(answer))
        finally:
            with execution.lock:
                execution.responding -= 1

    def do_POST(self) -> None:
        """setup() or teardown() now; k6 answers 405 to POST on the status resource."""
        self._read_body()
        execution = self.server.execution
        if self.path == HEALTH_PATH:
            self._send(200, b"ok", "text/plain; charset=utf-8")
        elif self.path == SETUP_PATH:
            execution.log(execution.log_path, "setup")
            data = os.environ.get("K6_STANDIN_SETUP_DATA")
            with execution.lock:
                execution.setup_data = data
            self._send(200, _setup_document(data))
        elif self.path == TEARDOWN_PATH:
            execution.log(execution.log_path, "teardown")
            self._send(200, b"")
        else:
            self._send(405 if self.path == STATUS_PATH else 404, b"")

    def do_PUT(self) -> None:
        """Set the data every VU receives, like k6's `PUT /v1/setup`."""
        body = self._read_body()
        execution = self.server.execution
        if self.path != SETUP_PATH:
            self._send(404, b"404 page not found", "text/plain; charset=utf-8")
            return
        execution.log(execution.log_path, "put_setup")
        data = body.decode() if body else None
        with execution.lock:
            execution.setup_data = data
        self._send(200, _setup_document(data))


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    allow_reuse_address = True
    execution: Execution


def _write_summary(path: str | None, iterations: int, seconds: float) -> None:
    if not path:
        return
    rate = iterations / seconds if seconds > 0 else 0
    summary = {
        "metrics": {
            "iterations": {"count": iterations, "rate": rate},
            "http_reqs": {"count": 0, "rate": 0},
        },
        "root_group": {},
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(summary, out, indent=4)


def inspect(argv: list[str]) -> int:
    """`k6 inspect`: the options of a script without any, or a script error."""
    if _env_flag("K6_STANDIN_DIE_BEFORE_ARM"):
        print("stand-in: script error (K6_STANDIN_DIE_BEFORE_ARM)", file=sys.stderr)
        return EXIT_SCRIPT_ERROR
    print(json.dumps(INSPECTED, indent=2))
    return 0


def main(argv: list[str]) -> int:
    """Run the stand-in until the test ends; returns k6's exit code."""
    if argv[:1] == ["inspect"]:
        return inspect(argv[1:])
    try:
        options = parse_args(argv)
    except ValueError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    run_seconds = _env_float("K6_STANDIN_RUN_SECONDS", 0.2)
    init_seconds = _env_float("K6_STANDIN_INIT_SECONDS", 0.0)
    max_seconds = _env_float("K6_STANDIN_MAX_SECONDS", 900.0)
    final_code = int(os.environ.get("K6_STANDIN_EXIT", "0") or 0)
    iterations = int(os.environ.get("K6_STANDIN_ITERATIONS", "1") or 1)

    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())

    execution = Execution(
        f"{options.host}:{options.port}",
        os.environ.get("K6_STANDIN_LOG"),
        os.environ.get("K6_STANDIN_ARMED_LOG"),
        options.tags.get("run_id", ""),
    )
    execution.paused = options.paused
    server = _Server((options.host, options.port), _Handler)
    server.execution = execution
    threading.Thread(target=server.serve_forever, daemon=True).start()

    started = time.monotonic()
    init_done = started + init_seconds
    code = None
    with execution.lock:
        while code is None:
            now = time.monotonic()
            if terminated.is_set() or now - started > max_seconds:
                code = EXIT_SIGTERM
            elif execution.stopped:
                code = EXIT_STOPPED_API
            elif execution.status == STATUS_INIT_VUS and now >= init_done:
                if _env_flag("K6_STANDIN_DIE_BEFORE_ARM"):
                    code = EXIT_SCRIPT_ERROR
                else:
                    execution.log(execution.armed_log_path, "armed")
                    execution.status = STATUS_PAUSED_BEFORE_RUN
            paused = execution.paused
            if code is None and execution.status == STATUS_PAUSED_BEFORE_RUN and not paused:
                execution.status, execution.resumed_at = STATUS_RUNNING, now
            resumed_at = execution.resumed_at
            if code is None and resumed_at is not None and now - resumed_at >= run_seconds:
                execution.status, code = STATUS_ENDED, final_code
            if code is None:
                next_change = init_done if execution.status == STATUS_INIT_VUS else math.inf
                if resumed_at is not None:
                    next_change = resumed_at + run_seconds
                execution.lock.wait(max(0.0, min(WAKE, next_change - now)))

    deadline = time.monotonic() + RESPONSE_GRACE
    while time.monotonic() < deadline:  # let a stop's 200 reach the client first
        with execution.lock:
            if execution.responding == 0:
                break
        time.sleep(TICK)
    server.server_close()
    execution.log(execution.log_path, "exit")
    if code != EXIT_SCRIPT_ERROR:
        ran = execution.resumed_at is not None
        completed = ran and code not in (EXIT_SIGTERM, EXIT_STOPPED_API)
        seconds = time.monotonic() - execution.resumed_at if ran else 0.0
        _write_summary(options.summary_export, iterations if completed else 0, seconds)
    else:
        print("stand-in: script error (K6_STANDIN_DIE_BEFORE_ARM)", file=sys.stderr)
    return code


if __name__ == "__main__":
    exit_code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)  # daemon handler threads may still hold idle keep-alive connections
