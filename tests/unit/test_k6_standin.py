"""The k6 stand-in (a test double) answers and exits the way real k6 does, as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import k6_script

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.77.3.1"  # loopback only; away from the 127.0.0.x addresses other tests use
RESUME = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
STOP = {"data": {"type": "status", "id": "default", "attributes": {"stopped": True}}}
START_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0

pytestmark = pytest.mark.timeout(60)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class StandIn:
    """One stand-in process and its API URL."""

    def __init__(self, process: subprocess.Popen, address: str) -> None:
        self.process = process
        self.url = f"http://{address}/v1/status"

    def status(self) -> dict:
        response = httpx.get(self.url, timeout=2.0)
        response.raise_for_status()
        return response.json()["data"]["attributes"]

    def wait_status(self, wanted: int) -> dict:
        """Poll until the API shows status `wanted` (bounded by START_TIMEOUT)."""
        deadline = time.monotonic() + START_TIMEOUT
        last: dict | str = "no answer"
        while time.monotonic() < deadline:
            try:
                last = self.status()
                if last["status"] == wanted:
                    return last
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.02)
        raise AssertionError(f"status {wanted} not reached; last: {last}")

    def patch(self, body: dict | bytes) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.patch(self.url, content=body, timeout=2.0)
        return httpx.patch(self.url, json=body, timeout=2.0)

    def exit_code(self) -> int:
        return self.process.wait(timeout=EXIT_TIMEOUT)


@pytest.fixture
def start_standin(tmp_path: Path) -> Iterator:
    """Start stand-ins with given environment knobs; every one is killed at teardown."""
    processes: list[subprocess.Popen] = []

    def start(*extra: str, **knobs: str) -> StandIn:
        address = f"{HOST}:{_free_port(HOST)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("K6_STANDIN_")}
        env.update({f"K6_STANDIN_{k.upper()}": v for k, v in knobs.items()})
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-m", "tests.support.k6_standin", "run", "--paused"]
        argv += ["--address", address, *extra, str(tmp_path / "test.js")]
        process = subprocess.Popen(argv, cwd=tmp_path, env=env, start_new_session=True)
        processes.append(process)
        return StandIn(process, address)

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=EXIT_TIMEOUT)


def test_paused_standin_shows_k6_status_document(start_standin):
    standin = start_standin()
    attributes = standin.wait_status(4)
    assert attributes == {
        "status": 4,
        "paused": True,
        "vus": 0,
        "vus-max": 1,
        "stopped": False,
        "running": False,
        "tainted": False,
    }


def test_resume_runs_then_exits_with_configured_code(start_standin, tmp_path):
    log, summary = tmp_path / "resume.log", tmp_path / "summary.json"
    standin = start_standin(
        "--summary-export", str(summary), "--tag", "run_id=x", exit="99", run_seconds="2.0",
        log=str(log), iterations="5",
    )  # fmt: skip
    standin.wait_status(4)
    before = time.time_ns()
    response = standin.patch(RESUME)
    after = time.time_ns()
    assert response.status_code == 200
    assert response.json()["data"]["attributes"]["paused"] is False
    assert standin.wait_status(7)["running"] is True
    assert standin.exit_code() == 99
    entry, ended = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["event"] == "resume"
    assert before <= entry["epoch_ns"] <= after
    assert (ended["event"], ended["run_id"]) == ("exit", "x")
    assert ended["epoch_ns"] >= entry["epoch_ns"]
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["iterations"]["count"] == 5
    assert metrics["http_reqs"] == {"count": 0, "rate": 0}


def test_resume_once_running_answers_pause_error(start_standin):
    standin = start_standin(run_seconds="5")
    standin.wait_status(4)
    assert standin.patch(RESUME).status_code == 200
    standin.wait_status(7)
    assert standin.patch(RESUME).status_code == 500


def test_stop_exits_103(start_standin):
    standin = start_standin()
    standin.wait_status(4)
    response = standin.patch(STOP)
    assert response.status_code == 200
    assert response.json()["data"]["attributes"]["stopped"] is True
    assert standin.exit_code() == 103


def test_stop_without_data_wrapper_is_ignored_like_k6(start_standin):
    standin = start_standin()
    standin.wait_status(4)
    assert standin.patch({"stopped": True}).status_code == 200
    assert standin.status()["stopped"] is False
    assert standin.process.poll() is None


def test_sigterm_exits_105(start_standin):
    standin = start_standin()
    standin.wait_status(4)
    standin.process.send_signal(signal.SIGTERM)
    assert standin.exit_code() == 105


def test_init_shows_status_1_before_status_4(start_standin):
    standin = start_standin(init_seconds="2.0")
    assert standin.wait_status(1)["paused"] is True
    standin.wait_status(4)


def test_resume_during_init_takes_effect_when_init_ends(start_standin):
    standin = start_standin(init_seconds="2.0", run_seconds="0.1", exit="0")
    standin.wait_status(1)
    assert standin.patch(RESUME).status_code == 200
    assert standin.exit_code() == 0


def test_die_before_arm_exits_107_without_status_4(start_standin):
    standin = start_standin(init_seconds="2.0", die_before_arm="1")
    assert standin.wait_status(1)["status"] == 1
    assert standin.exit_code() == 107


def test_wrong_method_and_health_path_change_nothing(start_standin):
    standin = start_standin()
    standin.wait_status(4)
    assert httpx.post(standin.url, json=RESUME, timeout=2.0).status_code == 405
    health = httpx.patch(standin.url.replace("/v1/status", "/status"), json=RESUME, timeout=2.0)
    assert (health.status_code, health.text) == (200, "ok")
    assert standin.patch(b"nonsense").status_code == 400
    assert standin.status()["paused"] is True


def test_setup_put_and_teardown_answer_as_k6_and_are_logged(start_standin, tmp_path):
    log = tmp_path / "events.log"
    standin = start_standin("--tag", "run_id=y", log=str(log))
    standin.wait_status(4)
    base = standin.url.removesuffix("/v1/status")

    setup = httpx.post(f"{base}/v1/setup", timeout=5)
    put = httpx.put(f"{base}/v1/setup", content=b'{"token":"t"}', timeout=5)
    teardown = httpx.post(f"{base}/v1/teardown", timeout=5)

    assert setup.json() == {"data": {"type": "setupData", "id": "default", "attributes": {}}}
    assert put.json()["data"]["attributes"] == {"data": {"token": "t"}}
    assert teardown.status_code == 200
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["setup", "put_setup", "teardown"]


def test_inspect_prints_the_options_of_a_script_without_any(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.k6_standin", "inspect", "s.js"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip

    assert done.returncode == 0
    assert k6_script.parse_options(done.stdout).thresholds == ()
