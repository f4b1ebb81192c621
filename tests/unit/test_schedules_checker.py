"""The property tests' checker: what it counts as a violation of (a), on hand-written logs."""

from __future__ import annotations

import json

import pytest

from tests.support.schedules import Checker, _check_resume_times, _landed

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
