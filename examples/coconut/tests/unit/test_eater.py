"""The eat shell and its service command, run for real by /bin/sh in a temporary folder."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from charms.k6_k8s.v0.synchronized_task import PEBBLE

import eater

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def shell(tmp_path: Path):
    """Start a command in its own process group in tmp_path; kill the group at the end."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=tmp_path, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_script_waits_for_the_instant_then_eats_its_coconuts(tmp_path, shell):
    process = shell(["/bin/sh", "-c", eater.eat_script(range(20, 31))])
    time.sleep(0.3)
    assert process.poll() is None  # armed: waiting for the start file
    assert not (tmp_path / eater.STARTED_FILE).exists()
    instant = time.time() + 0.5
    (tmp_path / eater.START_FILE).write_text(f"{instant:.6f}\n")

    assert process.wait(timeout=10) == 0

    started = float((tmp_path / eater.STARTED_FILE).read_text())
    assert instant <= started < instant + 0.5
    eaten = (tmp_path / eater.EATEN_FILE).read_text().split()
    assert eaten == [str(n) for n in range(20, 31)]


def test_an_instant_already_past_starts_at_once(tmp_path, shell):
    (tmp_path / eater.START_FILE).write_text(f"{time.time() - 10:.6f}\n")
    began = time.time()

    assert shell(["/bin/sh", "-c", eater.eat_script(range(0, 1))]).wait(timeout=10) == 0

    assert began <= float((tmp_path / eater.STARTED_FILE).read_text()) < began + 1


def test_a_stop_while_armed_ends_the_service_at_once_and_still_sends_the_notice(tmp_path, shell):
    notify = tmp_path / "pebble"
    notify.write_text('#!/bin/sh\necho "$@" >> notified\n')
    notify.chmod(0o755)
    command = eater.service_command(eater.eat_script(range(0, 5)), "r1")
    argv = [arg.replace(PEBBLE, str(notify)) for arg in shlex.split(command)]
    process = shell(argv)
    time.sleep(0.3)

    os.killpg(process.pid, signal.SIGTERM)  # what Pebble's stop does first

    assert process.wait(timeout=2) == 128 + signal.SIGTERM
    notified = (tmp_path / "notified").read_text()
    assert notified == f"notify {eater.NOTICE_KEY} run_id=r1 exit_code=143\n"
    assert not (tmp_path / eater.EATEN_FILE).exists()
