"""The synchronized-task library's service side: the done-notice command, run by a real /bin/sh,
and `OneShotService` on a charm with ops.testing (its plan, a failed start, a halt).
"""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ops
import pytest
from charms.k6_k8s.v0 import synchronized_task as lib
from charms.k6_k8s.v0.synchronized_task import (
    ArmFailed,
    OneShotService,
    Run,
    Share,
    Workload,
    done_notice_command,
)
from ops import pebble, testing

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


# ============================================================ OneShotService with ops.testing


META = {
    "name": "one-shot",
    "containers": {"worker": {"resource": "worker-image"}},
    "resources": {"worker-image": {"type": "oci-image"}},
}
ACTIONS = {"start": {"params": {"command": {"type": "string"}}}, "halt": {}}
SERVICE = "task"
CHANGE_ERROR = (
    "cannot perform the following tasks:\n"
    '- Start service "task" (service start attempt: exited quickly with code 107, '
    "will ignore)\n"
)


class ServiceWorkload(Workload):
    """A workload that is its `service` alone: `running` and `halt` are the library's defaults."""

    def __init__(self, service: OneShotService):
        self.service = service

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        raise AssertionError("not armed in these tests")


def one_shot_charm(**settings: Any) -> type[ops.CharmBase]:
    """A charm whose `start` action starts a OneShotService made with `settings`."""

    class OneShotCharm(ops.CharmBase):
        def __init__(self, framework: ops.Framework):
            super().__init__(framework)
            container = self.unit.get_container("worker")
            self.workload = ServiceWorkload(OneShotService(container, SERVICE, **settings))
            framework.observe(self.on.start_action, self._on_start)
            framework.observe(self.on.halt_action, self._on_halt)

        def _on_start(self, event: ops.ActionEvent) -> None:
            try:
                self.workload.service.start(event.params["command"], {"RUN": "r1", "B": "2"})
            except ArmFailed as e:
                event.fail(str(e))
                return
            event.set_results({"running": self.workload.running()})

        def _on_halt(self, event: ops.ActionEvent) -> None:
            self.workload.halt()
            event.set_results({"running": self.workload.running()})

    return OneShotCharm


def service_context(**settings: Any) -> testing.Context:
    settings = {"summary": "a task (one run)", "working_dir": "/work", **settings}
    return testing.Context(one_shot_charm(**settings), meta=META, actions=ACTIONS)


def worker_with(status: pebble.ServiceStatus | None = None) -> testing.Container:
    """The container; with the service in its plan, in `status`, when given."""
    if status is None:
        return testing.Container("worker", can_connect=True)
    layer = pebble.Layer({"services": {SERVICE: {"override": "replace", "command": "true"}}})
    return testing.Container(
        "worker", can_connect=True, layers={SERVICE: layer}, service_statuses={SERVICE: status}
    )


def test_start_puts_a_one_shot_service_in_the_plan_and_starts_it():
    ctx = service_context(environment={"A": "1", "B": "0"}, kill_delay=2.5)

    out = ctx.run(
        ctx.on.action("start", params={"command": "sleep 30"}),
        testing.State(containers={worker_with()}),
    )

    container = out.get_container("worker")
    service = container.plan.services[SERVICE]
    assert service.to_dict() == {
        "override": "replace",
        "summary": "a task (one run)",
        "command": "sleep 30",
        "startup": "disabled",
        "working-dir": "/work",
        "on-success": "ignore",
        "on-failure": "ignore",
        "kill-delay": "2.5s",
        "environment": {"A": "1", "B": "2", "RUN": "r1"},  # the start's over the service's
    }
    assert container.service_statuses[SERVICE] == pebble.ServiceStatus.ACTIVE
    assert ctx.action_results == {"running": True}


def test_start_replaces_the_previous_runs_command_and_restarts_it():
    ctx = service_context()

    out = ctx.run(
        ctx.on.action("start", params={"command": "sleep 31"}),
        testing.State(containers={worker_with(pebble.ServiceStatus.ACTIVE)}),
    )

    service = out.get_container("worker").plan.services[SERVICE]
    assert (service.command, service.on_success, service.on_failure) == (
        "sleep 31",
        "ignore",
        "ignore",
    )
    assert (service.kill_delay, service.environment) == ("", {"RUN": "r1", "B": "2"})


@pytest.mark.parametrize(
    ("err", "text"),
    [
        (
            CHANGE_ERROR,
            'Start service "task" (service start attempt: exited quickly with code 107, '
            "will ignore)",
        ),
        ("one line without a task prefix", "one line without a task prefix"),
        ("first\n\n  - last task  \n\n", "last task"),
        ("", "service 'task' did not start"),
    ],
    ids=["pebble change error", "one line", "blank lines", "empty"],
)
def test_start_that_pebble_reports_failed_raises_arm_failed_with_the_failed_tasks_line(
    monkeypatch: pytest.MonkeyPatch, err: str, text: str
):
    now = datetime.datetime.now(datetime.timezone.utc)
    change = pebble.Change(pebble.ChangeID("7"), "restart", "", "Error", [], True, err, now, now)

    def exited_quickly(self: ops.Container, *names: str) -> None:
        raise pebble.ChangeError(err, change)

    monkeypatch.setattr(ops.Container, "restart", exited_quickly)
    ctx = service_context()

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(
            ctx.on.action("start", params={"command": "exit 107"}),
            testing.State(containers={worker_with()}),
        )

    assert failure.value.message == text


def test_a_workloads_halt_stops_its_service_and_its_running_says_so():
    ctx = service_context()

    out = ctx.run(
        ctx.on.action("halt"), testing.State(containers={worker_with(pebble.ServiceStatus.ACTIVE)})
    )

    assert out.get_container("worker").service_statuses[SERVICE] == pebble.ServiceStatus.INACTIVE
    assert ctx.action_results == {"running": False}
