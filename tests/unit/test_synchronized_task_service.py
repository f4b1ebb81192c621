"""The synchronized-task library's service side: the done-notice command, run by a real /bin/sh."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from charms.k6_k8s.v0 import synchronized_task as lib
from charms.k6_k8s.v0.synchronized_task import done_notice_command

# ============================================================ done_notice_command


NOTICE = "example.com/done"


@pytest.fixture
def fake_pebble(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pebble` that writes its argv, one per line, to argv.txt; where the command calls it."""
    script = tmp_path / "pebble"
    script.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(tmp_path))}/argv.txt\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr(lib, "PEBBLE", str(script))
    return tmp_path / "argv.txt"


def test_done_notice_command_runs_the_line_then_notifies_its_exit_code(fake_pebble: Path):
    command = done_notice_command("echo hi > out; sh -c 'exit 3'", NOTICE, "r-9")

    proc = subprocess.run(shlex.split(command), cwd=fake_pebble.parent, timeout=30, check=False)

    assert proc.returncode == 3
    assert (fake_pebble.parent / "out").read_text() == "hi\n"
    assert fake_pebble.read_text().splitlines() == [
        "notify",
        NOTICE,
        "run_id=r-9",
        "exit_code=3",
    ]


def test_done_notice_command_keeps_a_hostile_run_id_one_argument(fake_pebble: Path):
    hostile = "r1 x=$(touch pwned); touch pwned2 `touch pwned3`"
    command = done_notice_command("true", NOTICE, hostile)

    proc = subprocess.run(shlex.split(command), cwd=fake_pebble.parent, timeout=30, check=False)

    assert proc.returncode == 0
    assert fake_pebble.read_text().splitlines()[2] == f"run_id={hostile}"
    assert not any(fake_pebble.parent.glob("pwned*"))


def test_done_notice_command_still_notifies_when_its_process_group_gets_sigterm(
    fake_pebble: Path,
):
    line = "sh -c " + shlex.quote("touch started; exec sleep 30")
    command = done_notice_command(line, NOTICE, "r1")
    proc = subprocess.Popen(shlex.split(command), cwd=fake_pebble.parent, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (fake_pebble.parent / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGTERM)  # what a Pebble stop sends
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    assert code == 128 + signal.SIGTERM
    assert fake_pebble.read_text().splitlines()[-1] == f"exit_code={128 + signal.SIGTERM}"
