"""The property tests' checker: what it counts as a violation, on hand-written hooks and logs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.emulator.model import Hook
from tests.support.schedules import Checker, _check_once_steps, _check_resume_times, _landed

ARMED_NS, RESUMED_NS = 1_000_000_000, 2_000_000_000


def write_logs(log_dir, units: int) -> None:
    for i in range(units):
        armed = {"event": "armed", "address": f"127.0.0.{i + 1}:6565", "run_id": "r1"}
        resumed = {"event": "resume", "address": f"127.0.0.{i + 1}:6565", "run_id": "r1"}
        (log_dir / f"{i}.armed").write_text(json.dumps({**armed, "epoch_ns": ARMED_NS}) + "\n")
        (log_dir / f"{i}.resume").write_text(json.dumps({**resumed, "epoch_ns": RESUMED_NS}))


@pytest.mark.parametrize(
    ("units", "violations"),
    [
        ({"t/0": {"released": []}, "t/1": {"released": []}}, 2),  # a resume nobody sent
        ({"t/0": {"released": [1.5]}, "t/1": {"released": [1.5]}}, 0),  # the record sent both
        ({"t/0": {"released": [], "lost": True}, "t/1": {"released": []}}, 0),  # sender lost
    ],
)
def test_a_resume_not_in_the_record_is_a_violation_unless_its_sender_was_lost(
    tmp_path, units, violations
):
    write_logs(tmp_path, 2)
    checker = Checker(ended={"r1": {"units": units}})

    _check_resume_times(checker, tmp_path, "t")

    assert len(checker.violations) == violations, checker.violations


@pytest.mark.parametrize(
    ("units", "landed"),
    [
        (["t/0", "t/1"], ["t/1"]),  # t/0 removed mid finish hook: t/1 did it again, the landed one
        (["t/0"], ["t/0"]),  # t/0 finished the run, then was removed: its step stands
        (["t/1", "t/2"], ["t/1", "t/2"]),  # twice with nobody removed: both count (a violation)
    ],
)
def test_a_step_of_the_end_counts_once_unless_its_unit_was_removed_mid_hook(units, landed):
    steps = [{"event": "conclude", "unit": unit} for unit in units]

    kept = _landed(steps, removed={"t/0"})

    assert [e["unit"] for e in kept] == landed


PASSED = {
    "run_id": "r1",
    "units": {"t/0": {"exit_code": 0, "error": "", "lost": False}},
    "outcome": "passed",
    "reason": "",
    "concluded": {"by": "127.0.0.1"},
}


def one_unit_model(tmp_path, app: dict, logged: list[str]):
    """A one-unit model whose workload logged these once-per-run steps of run r1."""
    lines = [json.dumps({"event": e, "run_id": "r1", "epoch_ns": 1_500_000_000}) for e in logged]
    (tmp_path / "once.log").write_text("".join(line + "\n" for line in lines))
    unit = SimpleNamespace(name="t/0", workdir=tmp_path, old_workdirs=())
    return SimpleNamespace(app=app, units={}, departed=[unit])


@pytest.mark.parametrize(
    ("logged", "concluded", "violations"),
    [
        (["prepare", "conclude"], {"by": "127.0.0.1"}, 0),  # prepared and concluded in one hook
        (["prepare"], {}, 1),  # prepared in that hook, never concluded
        ([], {"by": "127.0.0.1"}, 1),  # concluded, never prepared
    ],
)
def test_a_run_that_starts_and_ends_in_one_hook_is_judged_on_what_its_workload_logged(
    tmp_path, logged, concluded, violations
):
    # Arrange: the leader's one hook took every step of a one-unit run: the app databag shows no
    # run before it and none after it, only the run's last-run record
    last = {**PASSED, "concluded": concluded}
    model = one_unit_model(tmp_path, {"last_run": last}, logged)
    hook = Hook(unit="t/0", event="start_action", started=1.0, duration=1.0, leader=True)
    checker = Checker()

    # Act
    checker(hook, model)
    _check_once_steps(checker, model)

    # Assert
    assert checker.unseen == {"r1"}
    assert len(checker.violations) == violations, checker.violations


def test_a_run_seen_unprepared_between_hooks_is_not_taken_as_prepared_from_its_log(tmp_path):
    # Arrange: the run was visible between hooks without Run.prepared, then ended concluded
    model = one_unit_model(tmp_path, {"last_run": PASSED}, ["prepare", "conclude"])
    checker = Checker(active={"run_id": "r1", "phase": "running", "participants": ["t/0"]})
    hook = Hook(unit="t/0", event="k6_pebble_custom_notice", started=1.0, duration=1.0)

    # Act
    checker(hook, model)
    _check_once_steps(checker, model)

    # Assert
    assert checker.unseen == set()
    assert any(v.startswith("(g) run r1: prepared False") for v in checker.violations)
