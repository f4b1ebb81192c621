"""Unit tests for k6_whole_run: the leader's once-per-run steps and the run's own exit code.

The steps run against a small in-memory container and a fake k6 REST API on loopback (the
e2e tests, tests/e2e/test_one_test.py, run them with real k6 on the emulator).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from charms.k6_k8s.v0.synchronized_task import (
    FAILED,
    PASSED,
    STOPPED,
    STOPPED_BY_USER,
    LastRun,
    Run,
    UnitLine,
)
from ops import pebble

import k6_client
import k6_whole_run
from k6_script import OPTIONS_FILE, ScriptThreshold
from k6_whole_run import WholeRun, WholeRunSteps

WORKDIR = "/work"


class Disk:
    """The parts of ops.Container the steps use, on a dict."""

    def __init__(self, files: dict[str, str] | None = None) -> None:
        self.files = dict(files or {})

    def pull(self, path: str) -> io.StringIO:
        if path not in self.files:
            raise pebble.PathError("not-found", f"stat {path}: no such file or directory")
        return io.StringIO(self.files[path])

    def push(self, path: str, source: str, **_: object) -> None:
        self.files[path] = source

    def exists(self, path: str) -> bool:
        return path in self.files

    def remove_path(self, path: str, recursive: bool = False) -> None:
        self.files = {
            p: v for p, v in self.files.items() if p != path and not p.startswith(path + "/")
        }


class FakeK6Api:
    """POST /v1/setup answers `data`; PUT /v1/setup is recorded."""

    def __init__(self, data: str | None = '{"token":"t1"}') -> None:
        self.data = data
        self.calls: list[tuple[str, str, bytes]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.calls.append((self.command, self.path, body))
                inner = "{}" if api.data is None else '{"data":' + api.data + "}"
                out = '{"data":{"type":"setupData","id":"default","attributes":' + inner + "}}"
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out.encode())

            do_POST = do_PUT = _answer  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def k6_api() -> Iterator[FakeK6Api]:
    api = FakeK6Api()
    yield api
    api.server.shutdown()
    api.server.server_close()


def steps(disk: Disk) -> WholeRunSteps:
    return WholeRunSteps(disk, "k6/0", WORKDIR, "tests", {})  # type: ignore[arg-type]


def run(run_id: str = "r1", **kw: object) -> Run:
    return Run(
        run_id=run_id,
        phase="arming",
        participants=("k6/0", "k6/1"),
        created=1.0,
        deadline=9.0,
        **kw,
    )  # type: ignore[arg-type]


OPTIONS = {"thresholds": {"http_reqs": ["count>=50"]}, "setupTimeout": "5s", "totalDuration": "1m"}


def test_prepare_runs_setup_once_and_gives_its_data_to_every_unit(k6_api):
    disk = Disk({f"{WORKDIR}/{OPTIONS_FILE}": json.dumps(OPTIONS)})
    endpoints = {"k6/0": k6_api.endpoint, "k6/1": k6_api.endpoint}

    prepared = steps(disk).prepare(run(), endpoints, endpoints["k6/0"])

    assert prepared.error == ""
    whole = WholeRun.from_info(prepared.info)
    assert whole.setup_unit == "k6/0" and whole.setup_data == '{"token":"t1"}'
    assert whole.thresholds == (ScriptThreshold("http_reqs", "count>=50"),)
    assert whole.total_duration_s == 60.0
    assert [(m, p) for m, p, _ in k6_api.calls] == [
        ("POST", "/v1/setup"),
        *[("PUT", "/v1/setup")] * 2,
    ]
    assert {b for m, _, b in k6_api.calls if m == "PUT"} == {b'{"token":"t1"}'}


def test_a_retried_prepare_does_not_run_setup_again(k6_api):
    disk = Disk({f"{WORKDIR}/{OPTIONS_FILE}": json.dumps(OPTIONS)})
    endpoints = {"k6/0": k6_api.endpoint}
    steps(disk).prepare(
        run(), endpoints, endpoints["k6/0"]
    )  # the hook that ran it failed afterwards

    again = steps(disk).prepare(run(), endpoints, endpoints["k6/0"])

    assert WholeRun.from_info(again.info).setup_data == '{"token":"t1"}'
    assert [m for m, _, _ in k6_api.calls] == ["POST", "PUT", "PUT"]  # setup once, data twice


def test_a_new_run_runs_setup_again(k6_api):
    disk = Disk({f"{WORKDIR}/{OPTIONS_FILE}": json.dumps(OPTIONS)})
    steps(disk).prepare(run("r1"), {"k6/0": k6_api.endpoint}, k6_api.endpoint)

    steps(disk).prepare(run("r2"), {"k6/0": k6_api.endpoint}, k6_api.endpoint)

    assert [m for m, _, _ in k6_api.calls] == ["POST", "PUT", "POST", "PUT"]


def test_no_setup_in_the_options_runs_no_setup(k6_api):
    disk = Disk({f"{WORKDIR}/{OPTIONS_FILE}": json.dumps({**OPTIONS, "noSetup": True})})

    prepared = steps(disk).prepare(run(), {"k6/0": k6_api.endpoint}, k6_api.endpoint)

    assert WholeRun.from_info(prepared.info).setup_unit == ""
    assert k6_api.calls == []


def test_setup_data_over_the_limit_refuses_the_release(k6_api):
    k6_api.data = json.dumps("x" * (k6_whole_run.SETUP_DATA_MAX_BYTES + 1))
    disk = Disk({f"{WORKDIR}/{OPTIONS_FILE}": json.dumps(OPTIONS)})

    prepared = steps(disk).prepare(run(), {"k6/0": k6_api.endpoint}, k6_api.endpoint)

    assert prepared.error.startswith("setup() returned 64 KiB of data; k6-k8s carries at most 64")


def test_prepare_without_k6_inspects_output_says_so():
    prepared = steps(Disk()).prepare(run(), {"k6/0": "127.0.0.1:1"}, "127.0.0.1:1")

    assert prepared.error.startswith("k6 inspect's output is missing on k6/0: ")


def test_a_script_threshold_k6_k8s_cannot_judge_refuses_the_release_naming_it():
    options = {"thresholds": {"http_reqs": ["count>=50", "median<3"]}}
    disk = Disk({f"{WORKDIR}/{OPTIONS_FILE}": json.dumps(options)})

    prepared = steps(disk).prepare(run(), {"k6/0": "127.0.0.1:1"}, "127.0.0.1:1")

    assert prepared.error.startswith(
        "the script's threshold 'http_reqs: median<3' cannot be judged"
    )


def test_the_whole_run_survives_the_databag_round_trip():
    whole = WholeRun(
        thresholds=(ScriptThreshold("http_req_failed", "rate<0.1", True, 10.0),),
        setup_unit="k6/0",
        setup_data='{"a":1}',
        no_teardown=True,
        teardown_timeout_s=7.0,
        total_duration_s=30.0,
    )

    assert WholeRun.from_info(json.loads(json.dumps(whole.to_info()))) == whole
    assert WholeRun.from_info(None) == WholeRun()
    assert whole.aborts == whole.thresholds


def test_teardown_runs_in_a_fresh_paused_k6_of_one_vu_without_setup_or_thresholds():
    argv = k6_whole_run.teardown_argv("tests/t.js", {"TARGET": "x y"}, "10.1.0.7", "r1")

    assert argv == [
        "k6",
        "run",
        "--paused",
        "--no-setup",
        "--no-teardown",
        "--no-thresholds",
        "--no-summary",
        "--no-usage-report",
        "--vus",
        "1",
        "--iterations",
        "1",
        "--address",
        "10.1.0.7:6566",
        "--tag",
        "run_id=r1",
        "-e",
        "TARGET=x y",
        "tests/t.js",
    ]


def test_a_teardown_attempted_in_an_interrupted_hook_is_not_run_again():
    disk = Disk({f"{WORKDIR}/teardown/r1": ""})
    whole = WholeRun(setup_unit="k6/0")

    teardown = steps(disk).teardown(
        run(), {"script": "export function teardown() {}"}, whole, "10.0.0.1"
    )

    assert (teardown.ran, teardown.why_not) == (False, "an earlier attempt was interrupted")


class StartOnly:
    """The teardown k6's service: started (recorded), never running."""

    name = k6_whole_run.TEARDOWN_SERVICE

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, command: str, environment: object) -> None:
        self.started.append(command)


READY = k6_client.ApiStatus(status=k6_client.STATUS_PAUSED_BEFORE_RUN, paused=True)


@pytest.mark.parametrize(
    ("ready", "put_error", "teardown_answer", "ran", "error"),
    [
        (None, None, None, False, "the teardown k6 did not start"),
        (READY, "ConnectTimeout: ", None, False, "setup()'s data: ConnectTimeout: "),
        (
            READY,
            None,
            k6_client.TeardownAnswer(False, "k6 at x did not answer: ConnectTimeout: "),
            False,
            "k6 at x did not answer: ConnectTimeout: ",
        ),
        (READY, None, k6_client.TeardownAnswer(True, "Error: no"), True, "Error: no"),
        (READY, None, k6_client.TeardownAnswer(True), True, ""),
    ],
)
def test_the_record_says_teardown_ran_only_when_k6_got_the_call(
    monkeypatch, ready, put_error, teardown_answer, ran, error
):
    whole_steps = steps(Disk())
    whole_steps.teardown_k6 = StartOnly()  # type: ignore[assignment]
    whole_steps.stop = lambda service: None  # type: ignore[method-assign]
    monkeypatch.setattr(k6_client, "wait_ready", lambda endpoint, timeout: ready)
    monkeypatch.setattr(k6_client, "put_setup_all", lambda eps, data: {eps[0]: put_error})
    monkeypatch.setattr(k6_client, "run_teardown", lambda endpoint, timeout: teardown_answer)
    script = {"script": "export function teardown(data) {}"}

    teardown = whole_steps.teardown(run(), script, WholeRun(setup_data='{"t":1}'), "10.0.0.1")

    assert (teardown.ran, teardown.unit, teardown.error) == (ran, "k6/0", error)


@pytest.mark.parametrize(
    ("whole", "script", "why_not"),
    [
        (WholeRun(no_teardown=True), "export function teardown() {}", "noTeardown is set"),
        (WholeRun(), "export default function () {}", "the script has no teardown()"),
    ],
)
def test_no_teardown_to_run_is_said(whole, script, why_not):
    teardown = steps(Disk()).teardown(run(), {"script": script}, whole, "10.0.0.1")

    assert (teardown.ran, teardown.why_not) == (False, why_not)


# ------------------------------------------------------------ the run's own exit code


def last(outcome: str, reason: str = "", failures: tuple[str, ...] = (), codes=(0, 0)) -> LastRun:
    units = {f"k6/{i}": UnitLine(exit_code=c) for i, c in enumerate(codes)}
    return LastRun("r1", outcome, reason, 1.0, 2.0, 3.0, 1.0, None, units, failures=failures)


@pytest.mark.parametrize(
    ("record", "code"),
    [
        (last(PASSED), 0),
        (last(STOPPED, STOPPED_BY_USER, codes=(105, 103)), 105),
        (last(FAILED, "abortOnFail threshold 'x: rate<1' crossed on the whole run"), 99),
        (last(FAILED, "k6/1 aborted the test: exec.test.abort() (exit code 108), 3.0 s"), 108),
        (last(FAILED, "k6/1 stopped on a script error (exit code 107)"), 107),
        (last(FAILED, "setup() failed on k6/0: Error: boom"), 107),
        (last(FAILED, "setup() failed on k6/0: setup() did not finish within 70 s"), 100),
        (
            last(
                FAILED,
                "thresholds failed: http_reqs count<=30: count is 61",
                ("thresholds failed: http_reqs count<=30: count is 61",),
            ),
            99,
        ),
        (
            last(
                FAILED,
                "teardown() failed on k6/0: Error: x",
                ("teardown() failed on k6/0: Error: x",),
            ),
            107,
        ),
        (last(FAILED, "k6/1 (exit code 110)", codes=(0, 110)), 110),
        (last(FAILED, "lost during the run: k6/1", codes=(0, None)), None),
    ],
)
def test_the_runs_exit_code_is_the_one_one_k6_run_would_give(record, code):
    assert k6_whole_run.exit_code_of(record) == code
