"""Unit tests for the synchronized-task library: the decision tables, the records, the fan-out,
the done-notice command, and `SynchronizedTask` on a stand-in charm with ops.testing.

Decision tests build an `Observed` by hand and assert the exact decision, so each reads as one
row of the state machine's table. The fan-out runs against real sockets on 127.0.0.0/8 (and ::1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import ops
import pytest
from charms.k6_k8s.v0 import synchronized_task as lib
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    FAILED,
    IDLE,
    PASSED,
    PENDING,
    PHASES,
    RUNNING,
    STOP_GRACE_SECONDS,
    STOPPED,
    STOPPED_BY_USER,
    STOPPING,
    Abort,
    Aggregate,
    ApiRelease,
    AppData,
    Arm,
    ArmFailed,
    Collect,
    Finish,
    Halt,
    InstantRelease,
    LastRun,
    Observed,
    Outcome,
    Probe,
    Recheck,
    Refuse,
    Release,
    Run,
    Schedule,
    Share,
    StartAt,
    Started,
    SynchronizedTask,
    TaskRefused,
    UnitLine,
    UnitReport,
    Workload,
    app_status,
    count_armed,
    count_finished,
    decide,
    decide_leader,
    decide_unit,
    digest,
    done_notice_command,
    endpoint_of,
    fan_out,
    last_run_record,
    outcome_of,
    release_spread_ms,
    stopping,
    unit_order,
    unit_status,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from ops import testing

from tests.emulator.target import free_port

RUN_ID = "r1"
OLD_RUN_ID = "r0"
UNITS = ("app/0", "app/1", "app/2")
CREATED = 1000.0
DEADLINE = 1120.0
NOW = 1010.0
SHA = "ab" * 32
MISMATCH = "the payload in the app databag does not match its digest"


def make_run(
    phase: str = ARMING,
    participants: tuple[str, ...] = UNITS,
    *,
    run_id: str = RUN_ID,
    reason: str = "",
    stop_deadline: float | None = None,
    released: Mapping[str, list[float | None]] | None = None,
    start_at: float | None = None,
    expected_s: float | None = None,
    payload_sha256: str = SHA,
    info: Mapping[str, Any] | None = None,
    deadline: float = DEADLINE,
) -> Run:
    """A run frozen at CREATED with an arm deadline at DEADLINE."""
    return Run(
        run_id=run_id,
        phase=phase,
        participants=participants,
        created=CREATED,
        deadline=deadline,
        payload_sha256=payload_sha256,
        info=dict(info or {}),
        expected_s=expected_s,
        released=dict(released or {}),
        start_at=start_at,
        reason=reason,
        stop_deadline=stop_deadline,
    )


def address_of(unit: str) -> str:
    return f"10.0.0.{int(unit.rsplit('/', 1)[1]) + 10}:7000"


def idle() -> UnitReport:
    """A unit that has never taken part in any run."""
    return UnitReport()


def pending(unit: str, run_id: str = RUN_ID) -> UnitReport:
    """The workload started for the run, not yet seen ready."""
    return UnitReport(endpoint=address_of(unit), status=PENDING, run_id=run_id)


def armed(unit: str, run_id: str = RUN_ID, started_at: float | None = None) -> UnitReport:
    """Armed (or already released) for the run."""
    return UnitReport(endpoint=address_of(unit), status=BUSY, run_id=run_id, started_at=started_at)


def done(
    unit: str, run_id: str = RUN_ID, exit_code: int | None = 0, error: str = ""
) -> UnitReport:
    """Reported its end for the run."""
    return UnitReport(
        endpoint=address_of(unit), status=IDLE, run_id=run_id, exit_code=exit_code, error=error
    )


def observed(
    run: Run | None = None,
    units: Mapping[str, UnitReport] | None = None,
    *,
    me: str = "app/0",
    leader: bool = True,
    running: bool = False,
    now: float = NOW,
    probed_ready: frozenset[str] | None = None,
    instant: bool = False,
    lead: float = 2.0,
    payload_ok: bool = True,
    notice: Mapping[str, str] | None = None,
    stop_requested: bool = False,
    released: Mapping[str, Outcome] | None = None,
) -> Observed:
    """An observation; by default every unit of UNITS is present and idle."""
    return Observed(
        me=me,
        is_leader=leader,
        run=run,
        units=dict(units) if units is not None else {u: idle() for u in UNITS},
        running=running,
        now=now,
        instant_release=instant,
        lead_s=lead,
        payload_ok=payload_ok,
        notice=notice,
        stop_requested=stop_requested,
        probed_ready=probed_ready,
        released=released,
    )


def all_armed(run_id: str = RUN_ID) -> dict[str, UnitReport]:
    return {u: armed(u, run_id) for u in UNITS}


# ============================================================ decide_unit: participant


def test_participant_arms_when_run_is_arming_and_not_armed_yet():
    run = make_run(ARMING)

    assert decide_unit(observed(run, me="app/1")) == [Arm(run)]


def test_participant_arms_even_when_its_own_databag_is_not_in_the_observation():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/2": idle()}

    assert decide_unit(observed(run, units, me="app/1")) == [Arm(run)]


def test_participant_with_stale_data_from_another_run_arms_for_the_new_run():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0", OLD_RUN_ID), "app/1": idle(), "app/2": idle()}

    assert decide_unit(observed(run, units, running=True)) == [Arm(run)]


def test_arming_participant_rechecks_while_its_workload_runs_but_is_not_yet_ready():
    run = make_run(ARMING)
    units = {"app/0": pending("app/0"), "app/1": idle(), "app/2": idle()}

    assert decide_unit(observed(run, units, running=True)) == [Recheck(RUN_ID)]


def test_armed_participant_waits_for_the_release_while_its_workload_waits():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/1": idle(), "app/2": idle()}

    assert decide_unit(observed(run, units, running=True)) == []


def test_arming_participant_whose_workload_exited_before_ready_collects_without_stopping():
    run = make_run(ARMING)
    units = {"app/0": pending("app/0"), "app/1": idle(), "app/2": idle()}

    decision = decide_unit(observed(run, units, running=False))

    assert decision == [Collect(RUN_ID, stop=False)]


def test_armed_participant_whose_workload_died_while_waiting_collects_without_stopping():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/1": idle(), "app/2": idle()}

    decision = decide_unit(observed(run, units, running=False))

    assert decision == [Collect(RUN_ID, stop=False)]


def test_running_participant_keeps_running_while_its_workload_runs():
    run = make_run(RUNNING)

    decision = decide_unit(observed(run, all_armed(), running=True))

    assert decision == []


def test_running_participant_collects_without_stopping_when_its_workload_has_ended():
    run = make_run(RUNNING)

    decision = decide_unit(observed(run, all_armed(), running=False))

    assert decision == [Collect(RUN_ID, stop=False)]


@pytest.mark.parametrize("mine", [armed("app/0"), pending("app/0")], ids=["busy", "pending"])
def test_stopping_participant_with_a_running_workload_collects_and_stops_it(mine: UnitReport):
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {**all_armed(), "app/0": mine}

    decision = decide_unit(observed(run, units, running=True))

    assert decision == [Collect(RUN_ID, stop=True)]


def test_stopping_participant_whose_workload_already_ended_collects_without_stopping():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)

    decision = decide_unit(observed(run, all_armed(), running=False))

    assert decision == [Collect(RUN_ID, stop=False)]


@pytest.mark.parametrize("phase", [ARMING, RUNNING, STOPPING])
def test_participant_that_reported_its_end_does_nothing_more(phase: str):
    run = make_run(phase)
    units = {**all_armed(), "app/0": done("app/0", exit_code=107, error="SyntaxError")}

    assert decide_unit(observed(run, units)) == []


@pytest.mark.parametrize("phase", [RUNNING, STOPPING])
def test_participant_that_never_armed_does_not_arm_once_the_run_left_arming(phase: str):
    run = make_run(phase)
    units = {**all_armed(), "app/0": idle()}

    assert decide_unit(observed(run, units)) == []


# ------------------------------------------------------------ payload digest


def test_participant_refuses_to_arm_when_the_payload_does_not_match_its_digest():
    run = make_run(ARMING)

    decision = decide_unit(observed(run, me="app/1", payload_ok=False))

    assert decision == [Refuse(RUN_ID, MISMATCH)]


@pytest.mark.parametrize(
    "mine",
    [idle(), armed("app/1", OLD_RUN_ID), done("app/1", OLD_RUN_ID)],
    ids=["never ran", "busy for an old run", "done with an old run"],
)
@pytest.mark.parametrize("running", [False, True])
def test_participant_never_arms_on_a_mismatched_payload(mine: UnitReport, running: bool):
    run = make_run(ARMING)
    units = {**all_armed(), "app/1": mine}

    decision = decide_unit(observed(run, units, me="app/1", payload_ok=False, running=running))

    assert [type(d) for d in decision] == [Refuse]


# ------------------------------------------------------------ done-notice


NOTICE_DATA = {"run_id": RUN_ID, "exit_code": "0"}


@pytest.mark.parametrize("running", [True, False], ids=["still running", "gone"])
def test_done_notice_for_the_live_run_collects_it_without_stopping(running: bool):
    run = make_run(RUNNING)

    decision = decide_unit(observed(run, all_armed(), running=running, notice=NOTICE_DATA))

    assert decision == [Collect(RUN_ID, stop=False, notice=NOTICE_DATA)]


def test_done_notice_is_collected_instead_of_stopping_a_stopping_run():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    notice = {"run_id": RUN_ID, "exit_code": "105"}

    decision = decide_unit(observed(run, all_armed(), running=True, notice=notice))

    assert decision == [Collect(RUN_ID, stop=False, notice=notice)]


def test_done_notice_of_another_run_is_ignored_while_the_workload_runs():
    run = make_run(RUNNING)
    stale = {"run_id": OLD_RUN_ID, "exit_code": "99"}

    assert decide_unit(observed(run, all_armed(), running=True, notice=stale)) == []


def test_done_notice_of_another_run_is_not_the_end_of_this_one():
    run = make_run(RUNNING)
    stale = {"run_id": OLD_RUN_ID, "exit_code": "99"}

    decision = decide_unit(observed(run, all_armed(), running=False, notice=stale))

    assert decision == [Collect(RUN_ID, stop=False)]


def test_done_notice_for_a_participant_that_already_reported_is_ignored():
    run = make_run(RUNNING)
    units = {**all_armed(), "app/0": done("app/0", exit_code=105)}

    assert decide_unit(observed(run, units, notice=NOTICE_DATA)) == []


# ------------------------------------------------------------ InstantRelease: the start instant


@pytest.mark.parametrize(
    "me, leader", [("app/0", True), ("app/1", False)], ids=["leader", "participant"]
)
def test_armed_participant_hands_the_start_instant_to_its_workload(me: str, leader: bool):
    run = make_run(RUNNING, start_at=NOW + 2.0)

    decision = decide(observed(run, all_armed(), me=me, leader=leader, running=True))

    assert decision == [StartAt(RUN_ID, NOW + 2.0)]


def test_participant_that_handed_over_the_instant_does_not_again():
    run = make_run(RUNNING, start_at=NOW + 2.0)
    units = {**all_armed(), "app/1": armed("app/1", started_at=NOW)}

    assert decide(observed(run, units, me="app/1", leader=False, running=True)) == []


def test_start_instant_is_not_handed_to_a_workload_that_has_ended():
    run = make_run(RUNNING, start_at=NOW + 2.0)

    decision = decide_unit(observed(run, all_armed(), me="app/1", running=False))

    assert decision == [Collect(RUN_ID, stop=False)]


def test_no_start_instant_is_handed_over_while_arming():
    run = make_run(ARMING, start_at=None)

    assert decide_unit(observed(run, all_armed(), running=True)) == []


# ============================================================ decide_unit: bystander / no run


def test_idle_unit_without_a_run_does_nothing():
    assert decide_unit(observed(None)) == []


def test_idle_bystander_of_a_run_does_nothing():
    run = make_run(RUNNING, participants=("app/1", "app/2"))

    assert decide_unit(observed(run, me="app/0")) == []


def test_bystander_with_a_running_workload_collects_and_stops_it():
    run = make_run(RUNNING, participants=("app/1", "app/2"))
    units = {
        "app/0": armed("app/0", OLD_RUN_ID),
        "app/1": armed("app/1"),
        "app/2": armed("app/2"),
    }

    decision = decide_unit(observed(run, units, me="app/0", running=True))

    assert decision == [Collect(OLD_RUN_ID, stop=True)]


@pytest.mark.parametrize("status", [PENDING, BUSY])
def test_unit_left_busy_after_its_run_ended_collects_without_stopping(status: str):
    units = {
        "app/0": UnitReport(endpoint=address_of("app/0"), status=status, run_id=OLD_RUN_ID),
        "app/1": idle(),
    }

    decision = decide_unit(observed(None, units, running=False))

    assert decision == [Collect(OLD_RUN_ID, stop=False)]


def test_unit_still_running_its_workload_after_its_run_ended_collects_and_stops_it():
    units = {"app/0": armed("app/0", OLD_RUN_ID)}

    decision = decide_unit(observed(None, units, running=True))

    assert decision == [Collect(OLD_RUN_ID, stop=True)]


def test_idle_unit_with_a_stray_workload_and_no_run_stops_it_and_keeps_its_report():
    units = {"app/0": done("app/0", OLD_RUN_ID)}

    decision = decide_unit(observed(None, units, running=True))

    assert decision == [Halt()]  # not Collect: that would rewrite the report, result lost


def test_unit_decisions_do_not_depend_on_leadership():
    run = make_run(ARMING)

    as_leader = decide_unit(observed(run, me="app/2", leader=True))
    as_follower = decide_unit(observed(run, me="app/2", leader=False))

    assert as_leader == as_follower == [Arm(run)]


def test_decide_puts_the_units_own_decision_before_the_leaders():
    run = make_run(ARMING)  # every participant idle: the leader's deadline has passed too

    decision = decide(observed(run, me="app/0", now=DEADLINE + 1))

    assert decision == [Arm(run)]
    assert decide_leader(observed(run, me="app/0", now=DEADLINE + 1)) == [
        Abort("not armed within the arm-timeout: app/0, app/1, app/2")
    ]


# ============================================================ decide_leader: arming


def test_no_leader_decision_without_a_run():
    assert decide_leader(observed(None, all_armed())) == []


def test_leader_waits_while_some_participants_are_still_arming():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/1": pending("app/1"), "app/2": idle()}

    assert decide_leader(observed(run, units)) == []


def test_leader_releases_when_every_participant_is_busy_for_the_run():
    run = make_run(ARMING)

    decision = decide_leader(observed(run, all_armed()))

    assert decision == [
        Release({"app/0": "10.0.0.10:7000", "app/1": "10.0.0.11:7000", "app/2": "10.0.0.12:7000"})
    ]


def test_leader_releases_participants_in_the_frozen_order():
    run = make_run(ARMING, participants=("app/2", "app/0"))

    (decision,) = decide_leader(observed(run, all_armed()))

    assert isinstance(decision, Release)
    assert list(decision.endpoints.items()) == [
        ("app/2", "10.0.0.12:7000"),
        ("app/0", "10.0.0.10:7000"),
    ]


def test_leader_releases_only_participants_not_units_that_joined_after_the_start():
    run = make_run(ARMING, participants=("app/0", "app/1"))
    units = {"app/0": armed("app/0"), "app/1": armed("app/1"), "app/3": idle()}

    decision = decide_leader(observed(run, units))

    assert decision == [Release({"app/0": "10.0.0.10:7000", "app/1": "10.0.0.11:7000"})]


def test_leader_releases_an_armed_run_even_after_the_arm_deadline():
    run = make_run(ARMING)

    decision = decide_leader(observed(run, all_armed(), now=DEADLINE + 30))

    assert [type(d) for d in decision] == [Release]


def test_stale_unit_data_for_another_run_does_not_count_as_armed():
    run = make_run(ARMING)
    units = {**all_armed(), "app/1": armed("app/1", OLD_RUN_ID)}

    assert decide_leader(observed(run, units)) == []


def test_pending_participant_does_not_count_as_armed_until_probed_ready():
    run = make_run(ARMING)
    units = {**all_armed(), "app/2": pending("app/2")}

    assert decide_leader(observed(run, units, probed_ready=frozenset())) == []


def test_leader_probes_participants_still_initializing_once_every_one_has_started():
    run = make_run(ARMING)
    units = {**all_armed(), "app/2": pending("app/2")}

    decision = decide_leader(observed(run, units))

    assert decision == [Probe({"app/2": "10.0.0.12:7000"})]


def test_leader_does_not_probe_while_a_participant_has_not_started():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/1": pending("app/1"), "app/2": idle()}

    assert decide_leader(observed(run, units)) == []


def test_leader_releases_when_the_probe_finds_the_initializing_participant_ready():
    run = make_run(ARMING)
    units = {**all_armed(), "app/2": pending("app/2")}

    decision = decide_leader(observed(run, units, probed_ready=frozenset({"app/2"})))

    assert decision == [Release({u: units[u].endpoint for u in UNITS})]


def test_leader_aborts_naming_units_not_armed_by_deadline():
    run = make_run(ARMING)
    units = {
        "app/0": armed("app/0"),
        "app/1": pending("app/1"),
        "app/2": armed("app/2", OLD_RUN_ID),
    }

    decision = decide_leader(observed(run, units, now=DEADLINE + 0.001))

    assert decision == [Abort("not armed within the arm-timeout: app/1, app/2")]


def test_leader_does_not_abort_at_exactly_the_arm_deadline():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/1": pending("app/1"), "app/2": armed("app/2")}

    decision = decide_leader(observed(run, units, now=DEADLINE, probed_ready=frozenset()))

    assert decision == []


def test_leader_aborts_when_participant_departs_before_start():
    run = make_run(ARMING)
    units = {"app/0": armed("app/0"), "app/2": armed("app/2")}

    decision = decide_leader(observed(run, units))

    assert decision == [Abort("app/1 departed before the start")]


def test_leader_abort_names_every_departed_participant_in_run_order():
    run = make_run(ARMING, participants=("app/0", "app/2", "app/1"))
    units = {"app/0": armed("app/0")}

    decision = decide_leader(observed(run, units))

    assert decision == [Abort("app/2, app/1 departed before the start")]


def test_departure_is_reported_before_a_failure_or_the_deadline():
    run = make_run(ARMING)
    units = {"app/0": done("app/0", exit_code=107), "app/1": pending("app/1")}

    decision = decide_leader(observed(run, units, now=DEADLINE + 1))

    assert decision == [Abort("app/2 departed before the start")]


def test_leader_aborts_when_a_participant_fails_before_the_start():
    run = make_run(ARMING)
    units = {
        "app/0": armed("app/0"),
        "app/1": done("app/1", exit_code=107, error="SyntaxError: Unexpected token"),
        "app/2": done("app/2", exit_code=None, error="workload container unreachable"),
    }

    decision = decide_leader(observed(run, units))

    assert decision == [
        Abort(
            "failed before the start: app/1 (exit code 107: SyntaxError: Unexpected token); "
            "app/2 (no exit code: workload container unreachable)"
        )
    ]


def test_failure_before_the_start_is_reported_instead_of_the_deadline():
    run = make_run(ARMING)
    units = {
        "app/0": armed("app/0"),
        "app/1": done("app/1", exit_code=0),
        "app/2": pending("app/2"),
    }

    decision = decide_leader(observed(run, units, now=DEADLINE + 1))

    assert decision == [Abort("failed before the start: app/1 (exit code 0)")]


def test_a_refused_payload_aborts_the_run_before_the_start_naming_the_unit():
    run = make_run(ARMING)
    units = {**all_armed(), "app/1": done("app/1", exit_code=None, error=MISMATCH)}

    decision = decide_leader(observed(run, units))

    assert decision == [Abort(f"failed before the start: app/1 (no exit code: {MISMATCH})")]


# ------------------------------------------------------------ the release's outcome


def acked(sent: float, at: float) -> Outcome:
    return Outcome(sent=sent, acked=at)


def test_release_acknowledged_by_every_participant_is_started_with_the_times():
    run = make_run(ARMING)
    released = {
        "app/0": acked(1010.0, 1010.002),
        "app/1": acked(1010.0001, 1010.001),
        "app/2": acked(1010.0002, 1010.003),
    }

    decision = decide_leader(observed(run, all_armed(), released=released))

    assert decision == [
        Started(
            {
                "app/0": [1010.0, 1010.002],
                "app/1": [1010.0001, 1010.001],
                "app/2": [1010.0002, 1010.003],
            }
        )
    ]


def test_failed_release_aborts_naming_only_the_unreachable_unit_not_the_skipped_ones():
    run = make_run(ARMING)
    released = {
        "app/0": Outcome(skipped=True),
        "app/1": Outcome(error="connect failed after 3 attempts: [Errno 111] Connection refused"),
        "app/2": Outcome(skipped=True),
    }

    decision = decide_leader(observed(run, all_armed(), released=released))

    assert decision == [
        Abort(
            "release failed: app/1: connect failed after 3 attempts: "
            "[Errno 111] Connection refused",
            released={"app/0": [None, None], "app/1": [None, None], "app/2": [None, None]},
        )
    ]


def test_release_failed_after_the_send_names_each_unit_that_did_not_acknowledge():
    run = make_run(ARMING)
    released = {
        "app/0": acked(1010.0, 1010.001),
        "app/1": Outcome(sent=1010.0, error="no answer within 3.0s"),
        "app/2": Outcome(sent=1010.0),  # sent, neither answered nor failed
    }

    decision = decide_leader(observed(run, all_armed(), released=released))

    assert decision == [
        Abort(
            "release failed: app/1: no answer within 3.0s; app/2: not acknowledged",
            released={
                "app/0": [1010.0, 1010.001],
                "app/1": [1010.0, None],
                "app/2": [1010.0, None],
            },
        )
    ]


def test_an_answer_that_came_with_an_error_is_a_failed_release():
    run = make_run(ARMING, participants=("app/0",))
    released = {"app/0": Outcome(sent=1.0, acked=2.0, error="unexpected answer: 'HTTP/1.1 500'")}

    (decision,) = decide_leader(observed(run, {"app/0": armed("app/0")}, released=released))

    assert decision == Abort(
        "release failed: app/0: unexpected answer: 'HTTP/1.1 500'", released={"app/0": [1.0, 2.0]}
    )


# ------------------------------------------------------------ InstantRelease: the schedule


def test_instant_release_schedules_the_start_lead_seconds_after_every_participant_armed():
    run = make_run(ARMING)

    decision = decide_leader(observed(run, all_armed(), instant=True, lead=2.5))

    assert decision == [Schedule(NOW + 2.5)]


def test_instant_release_never_probes_initializing_participants():
    run = make_run(ARMING)
    units = {**all_armed(), "app/2": pending("app/2")}

    assert decide_leader(observed(run, units, instant=True)) == []
    assert decide_leader(observed(run, units, instant=True, now=DEADLINE + 1)) == [
        Abort("not armed within the arm-timeout: app/2")
    ]


@pytest.mark.parametrize("phase", [RUNNING, STOPPING])
def test_instant_release_schedules_only_while_arming(phase: str):
    run = make_run(phase, start_at=NOW - 1, stop_deadline=NOW + 60)

    decision = decide_leader(observed(run, all_armed(), instant=True))

    assert not [d for d in decision if isinstance(d, Schedule | Release | Probe)]


# ------------------------------------------------------------ the user's stop


@pytest.mark.parametrize("phase", [ARMING, RUNNING])
def test_user_stop_aborts_the_run_on_the_leader(phase: str):
    run = make_run(phase)

    decision = decide_leader(observed(run, all_armed(), stop_requested=True))

    assert decision == [Abort(STOPPED_BY_USER)]


def test_user_stop_is_decided_before_a_release_of_an_armed_run():
    run = make_run(ARMING)

    decision = decide(observed(run, all_armed(), running=True, stop_requested=True))

    assert decision == [Abort("stopped by user")]


def test_user_stop_of_a_run_already_stopping_does_not_abort_again():
    run = make_run(STOPPING, reason="app/1 departed before the start", stop_deadline=NOW + 60)

    assert decide_leader(observed(run, all_armed(), stop_requested=True)) == []


def test_user_stop_is_not_a_decision_of_a_unit_that_is_not_the_leader():
    run = make_run(RUNNING)

    assert decide_leader(observed(run, all_armed(), leader=False, stop_requested=True)) == []


# ============================================================ decide_leader: running / stopping


def test_leader_waits_while_participants_are_still_running():
    run = make_run(RUNNING)
    units = {**all_armed(), "app/0": done("app/0")}

    assert decide_leader(observed(run, units, now=DEADLINE + 10_000)) == []


def test_running_run_finishes_when_every_participant_reported_its_end():
    run = make_run(RUNNING)
    units = {u: done(u) for u in UNITS}

    assert decide_leader(observed(run, units)) == [Finish(lost=())]


def test_running_run_finishes_without_departed_unit_and_records_it_lost():
    run = make_run(RUNNING)
    units = {"app/0": done("app/0"), "app/2": done("app/2", exit_code=99)}

    assert decide_leader(observed(run, units)) == [Finish(lost=("app/1",))]


def test_running_run_waits_for_a_departed_units_peers_before_finishing():
    run = make_run(RUNNING)
    units = {"app/0": done("app/0"), "app/2": armed("app/2")}

    assert decide_leader(observed(run, units)) == []


def test_running_run_whose_participants_all_departed_finishes_with_all_lost():
    run = make_run(RUNNING)

    assert decide_leader(observed(run, {"app/5": idle()})) == [Finish(lost=UNITS)]


def test_running_participant_reporting_on_another_run_is_recorded_lost():
    run = make_run(RUNNING)
    units = {"app/0": done("app/0"), "app/1": done("app/1"), "app/2": idle()}

    decision = decide_leader(observed(run, units))

    assert decision == [Finish(lost=("app/2",))]


def test_stopping_run_waits_for_armed_units_before_the_stop_deadline():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {
        "app/0": done("app/0", exit_code=103),
        "app/1": armed("app/1"),
        "app/2": pending("app/2"),
    }

    assert decide_leader(observed(run, units)) == []


def test_stopping_run_treats_never_armed_units_as_done():
    run = make_run(STOPPING, reason="not armed", stop_deadline=NOW + 60)
    units = {
        "app/0": done("app/0", exit_code=103),
        "app/1": idle(),
        "app/2": armed("app/2", OLD_RUN_ID),
    }

    assert decide_leader(observed(run, units)) == [Finish(lost=())]


def test_stopping_run_finishes_without_departed_unit_and_records_it_lost():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"app/0": done("app/0", exit_code=103), "app/2": idle()}

    assert decide_leader(observed(run, units)) == [Finish(lost=("app/1",))]


def test_stop_deadline_records_silent_units_lost():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"app/0": done("app/0", exit_code=103), "app/2": armed("app/2")}  # app/1 departed

    decision = decide_leader(observed(run, units, now=NOW + 60.5))

    assert decision == [Finish(lost=("app/1", "app/2"))]


def test_stop_deadline_lists_departed_units_before_silent_ones():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"app/0": pending("app/0"), "app/1": done("app/1", exit_code=103)}

    decision = decide_leader(observed(run, units, now=NOW + 61))

    assert decision == [Finish(lost=("app/2", "app/0"))]


def test_stopping_run_keeps_waiting_at_exactly_the_stop_deadline():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {
        "app/0": done("app/0", exit_code=103),
        "app/1": armed("app/1"),
        "app/2": armed("app/2"),
    }

    assert decide_leader(observed(run, units, now=NOW + 60)) == []


LEADER_SCENARIOS = {
    "all armed": (make_run(ARMING), all_armed(), NOW),
    "arm deadline": (make_run(ARMING), {u: pending(u) for u in UNITS}, DEADLINE + 1),
    "departed": (make_run(ARMING), {"app/0": armed("app/0")}, NOW),
    "failed": (make_run(ARMING), {**all_armed(), "app/1": done("app/1", exit_code=107)}, NOW),
    "all done": (make_run(RUNNING), {u: done(u) for u in UNITS}, NOW),
    "stop deadline": (make_run(STOPPING, reason="x", stop_deadline=NOW), all_armed(), NOW + 1),
}


@pytest.mark.parametrize("scenario", LEADER_SCENARIOS.values(), ids=LEADER_SCENARIOS.keys())
def test_non_leader_never_gets_leader_decisions(
    scenario: tuple[Run, dict[str, UnitReport], float],
):
    run, units, now = scenario

    assert decide_leader(observed(run, units, leader=False, now=now)) == []
    assert decide_leader(observed(run, units, leader=True, now=now)) != []


# ============================================================ property


UNIT_NAMES = [f"app/{i}" for i in range(5)]
any_unit_state = st.builds(
    UnitReport,
    endpoint=st.sampled_from(["", "10.0.0.1:7000"]),
    status=st.sampled_from([IDLE, PENDING, BUSY]),
    run_id=st.sampled_from(["", OLD_RUN_ID, RUN_ID]),
    exit_code=st.sampled_from([None, 0, 99, 105]),
)
armed_state = st.builds(
    UnitReport,
    endpoint=st.sampled_from(["10.0.0.1:7000", "10.0.0.2:7000"]),
    status=st.just(BUSY),
    run_id=st.just(RUN_ID),
)
# Biased towards armed so that "every participant armed" is common, not a rare corner.
unit_or_absent = st.sampled_from(["absent", "armed", "armed", "armed", "any"]).flatmap(
    lambda kind: {"absent": st.none(), "armed": armed_state, "any": any_unit_state}[kind]
)
present_units = st.fixed_dictionaries(dict.fromkeys(UNIT_NAMES, unit_or_absent)).map(
    lambda units: {name: data for name, data in units.items() if data is not None}
)


@settings(max_examples=400, deadline=None)
@given(
    participants=st.lists(st.sampled_from(UNIT_NAMES), min_size=1, max_size=5, unique=True),
    units=present_units,
    phase=st.sampled_from(PHASES),
    now=st.sampled_from([NOW, DEADLINE, DEADLINE + 1]),
    stop_deadline=st.sampled_from([None, NOW - 1, NOW + 60]),
)
def test_leader_releases_only_when_every_participant_is_armed_while_arming(
    participants: list[str],
    units: dict[str, UnitReport],
    phase: str,
    now: float,
    stop_deadline: float | None,
):
    run = make_run(phase, tuple(participants), stop_deadline=stop_deadline)

    decision = decide_leader(observed(run, units, now=now))

    every_armed = all(p in units and units[p].armed_for(RUN_ID) for p in participants)
    releases = [d for d in decision if isinstance(d, Release)]
    if releases:
        assert phase == ARMING and every_armed
        assert releases == [Release({p: units[p].endpoint for p in participants})]
    elif phase == ARMING and every_armed:
        pytest.fail(f"every participant armed while arming, but decided {decision}")
    assert len(decision) <= 1
    assert decide_leader(observed(run, units, now=now, leader=False)) == []


@settings(max_examples=200, deadline=None)
@given(
    participants=st.lists(st.sampled_from(UNIT_NAMES), min_size=1, max_size=5, unique=True),
    units=present_units,
    payload_ok=st.booleans(),
    running=st.booleans(),
    me=st.sampled_from(UNIT_NAMES),
)
def test_a_unit_arms_only_for_an_arming_run_it_takes_part_in_with_a_matching_payload(
    participants: list[str],
    units: dict[str, UnitReport],
    payload_ok: bool,
    running: bool,
    me: str,
):
    run = make_run(ARMING, tuple(participants))

    decision = decide_unit(observed(run, units, me=me, payload_ok=payload_ok, running=running))

    if any(isinstance(d, Arm) for d in decision):
        assert payload_ok and me in participants
        assert units.get(me, UnitReport()).run_id != RUN_ID
    if any(isinstance(d, Refuse) for d in decision):
        assert not payload_ok and me in participants
    assert len(decision) <= 1


# ============================================================ records


def test_pending_is_a_unit_status_of_its_own_not_the_arming_phase():
    report = pending("app/0")

    assert PENDING == "pending"
    assert PENDING not in PHASES
    assert report.live and report.pending_for(RUN_ID)
    assert not report.armed_for(RUN_ID) and not report.finished(RUN_ID)


def test_run_round_trips_through_json_as_the_databag_stores_it():
    run = Run(
        run_id="r-7",
        phase=STOPPING,
        participants=("app/0", "app/10", "app/2"),
        created=1000.25,
        deadline=1120.25,
        payload_sha256="0f" * 32,
        info={"label": "spike", "options": {"TOKEN": "a=b,c"}},
        expected_s=90.0,
        released={"app/0": [1001.0, 1001.5], "app/10": [1001.0, None], "app/2": [None, None]},
        start_at=None,
        reason="release failed: app/10: no answer within 3.0s",
        stop_deadline=1061.5,
    )

    stored = json.dumps(run.to_dict())
    back = Run.from_dict(json.loads(stored))

    assert back == run
    assert back.participants == ("app/0", "app/10", "app/2")
    assert json.loads(stored)["participants"] == ["app/0", "app/10", "app/2"]


def test_run_with_defaults_round_trips_through_json():
    run = make_run(ARMING)

    assert Run.from_dict(json.loads(json.dumps(run.to_dict()))) == run


def test_run_from_a_newer_revisions_databag_ignores_keys_it_does_not_know():
    data = {**make_run(RUNNING).to_dict(), "added_later": [1, 2]}

    assert Run.from_dict(data) == make_run(RUNNING)


def test_run_to_dict_holds_plain_json_types():
    run = make_run(RUNNING, released={"app/0": [1.0, 2.0]}, start_at=None)

    data = run.to_dict()

    assert data["participants"] == list(UNITS)
    assert data["released"] == {"app/0": [1.0, 2.0]}
    assert data["info"] == {}
    assert data["stop_deadline"] is None
    assert data["start_at"] is None
    assert data["phase"] == "running"


def test_run_with_an_unknown_phase_is_rejected():
    with pytest.raises(ValueError, match="unknown phase 'paused'"):
        make_run("paused")


def test_run_from_databag_with_an_unknown_phase_is_rejected():
    data = make_run(ARMING).to_dict()
    data["phase"] = "done"

    with pytest.raises(ValueError, match="unknown phase 'done'"):
        Run.from_dict(data)


def test_run_index_of_is_the_position_in_the_frozen_order():
    run = make_run(ARMING, participants=("app/2", "app/0", "app/10"))

    assert [run.index_of(u) for u in ("app/2", "app/0", "app/10")] == [0, 1, 2]
    assert run.share_of("app/10") == Share(2, 3)


def test_run_started_is_the_first_ack_else_the_start_instant_else_none():
    by_acks = make_run(RUNNING, released={"app/0": [5.0, 7.5], "app/1": [5.0, 6.25]})
    by_instant = make_run(RUNNING, start_at=1012.0)

    assert by_acks.started == 6.25
    assert by_instant.started == 1012.0
    assert make_run(RUNNING, released={"app/0": [5.0, None]}).started is None


def test_unit_order_sorts_unit_numbers_numerically():
    names = ["app/10", "app/2", "app/0", "app/1"]

    assert sorted(names, key=unit_order) == ["app/0", "app/1", "app/2", "app/10"]


def test_unit_order_groups_by_application_then_number():
    assert unit_order("app/2") < unit_order("app/10")
    assert unit_order("load/9") < unit_order("mload/0")
    assert unit_order("my-app/3") == ("my-app", 3)
    assert unit_order("odd") == ("odd", -1)


def test_unit_report_armed_for_and_finished_are_per_run():
    assert armed("app/0").armed_for(RUN_ID)
    assert not armed("app/0").armed_for(OLD_RUN_ID)
    assert not pending("app/0").armed_for(RUN_ID)
    assert not done("app/0").armed_for(RUN_ID)
    assert done("app/0").finished(RUN_ID)
    assert not done("app/0").finished(OLD_RUN_ID)
    assert not armed("app/0").finished(RUN_ID)
    assert not idle().finished(RUN_ID)


def test_count_armed_counts_present_participants_armed_for_this_run():
    run = make_run(ARMING, participants=("app/0", "app/1", "app/2", "app/3"))
    units = {
        "app/0": armed("app/0"),
        "app/1": armed("app/1", OLD_RUN_ID),
        "app/2": pending("app/2"),
        "app/4": armed("app/4"),  # not a participant
    }

    assert count_armed(run, units) == 1


def test_count_finished_counts_present_participants_done_for_this_run():
    run = make_run(RUNNING, participants=("app/0", "app/1", "app/2", "app/3"))
    units = {
        "app/0": done("app/0"),
        "app/1": done("app/1", exit_code=99),
        "app/2": done("app/2", OLD_RUN_ID),
        "app/4": done("app/4"),  # not a participant
    }

    assert count_finished(run, units) == 2


def test_stopping_sets_stop_deadline_to_now_plus_the_grace():
    run = make_run(RUNNING)

    after = stopping(run, STOPPED_BY_USER, now=1500.0)

    assert STOP_GRACE_SECONDS == 60.0
    assert after.stop_deadline == 1500.0 + STOP_GRACE_SECONDS == 1560.0
    assert after.phase == STOPPING
    assert after.reason == STOPPED_BY_USER
    assert after.deadline == DEADLINE
    assert run.phase == RUNNING  # the input run is untouched


@pytest.mark.parametrize(
    "address, endpoint", [("10.1.2.3", "10.1.2.3:7000"), ("fd00::5", "[fd00::5]:7000")]
)
def test_endpoint_brackets_ipv6_addresses(address: str, endpoint: str):
    assert endpoint_of(address, 7000) == endpoint


def test_digest_is_the_same_whatever_the_order_of_the_dict_keys():
    one = {"size": 12, "options": {"a": 1, "b": [1, 2]}, "name": "x"}
    other = {"name": "x", "options": {"b": [1, 2], "a": 1}, "size": 12}

    assert digest(one) == digest(other)
    canonical = b'{"name":"x","options":{"a":1,"b":[1,2]},"size":12}'
    assert digest(other) == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "changed",
    [{"size": 13}, {"size": "12"}, {"size": 12, "extra": None}],
    ids=["value", "type", "key"],
)
def test_digest_changes_with_any_value_or_key(changed: dict):
    assert digest({"size": 12}) != digest(changed)


def test_share_bounds_are_exact_fractions_of_the_whole():
    assert Share(1, 3).bounds() == (Fraction(1, 3), Fraction(2, 3))
    assert [Share(i, 3).split(10) for i in range(3)] == [3, 3, 4]


@settings(max_examples=300, deadline=None)
@given(total=st.integers(min_value=0, max_value=10**9), count=st.integers(1, 64))
def test_share_split_gives_every_item_exactly_once_across_the_shares(total: int, count: int):
    splits = [Share(i, count).split(total) for i in range(count)]

    assert sum(splits) == total
    assert max(splits) - min(splits) <= 1


@settings(max_examples=200, deadline=None)
@given(total=st.integers(min_value=0, max_value=3000), count=st.integers(1, 64))
def test_share_items_are_consecutive_and_each_in_exactly_one_share(total: int, count: int):
    shares = [Share(i, count).items(total) for i in range(count)]

    assert [item for share in shares for item in share] == list(range(total))
    assert [len(share) for share in shares] == [Share(i, count).split(total) for i in range(count)]


# ============================================================ verdicts


def test_release_spread_is_the_gap_between_first_and_last_ack_in_ms():
    run = make_run(
        RUNNING,
        released={
            "app/0": [1000.0, 1000.5125],
            "app/1": [1000.0, 1000.5],
            "app/2": [1000.0, 1000.505],
        },
    )

    assert release_spread_ms(run) == 12.5


def test_release_spread_ignores_units_without_an_ack():
    run = make_run(
        RUNNING, released={"app/0": [1000.0, 1000.25], "app/1": [1000.0, None], "app/2": [1000.0]}
    )

    assert release_spread_ms(run) == 0.0


@pytest.mark.parametrize(
    "released", [{}, {"app/0": [None, None], "app/1": [1000.0, None]}], ids=["none", "no acks"]
)
def test_release_spread_is_none_without_acks(released: dict):
    assert release_spread_ms(make_run(RUNNING, released=released)) is None


def test_outcome_is_passed_when_every_participant_exits_zero():
    units = {u: done(u) for u in UNITS}

    assert outcome_of(make_run(RUNNING), units, ()) == (PASSED, "")


def test_outcome_is_failed_naming_participants_with_a_non_zero_exit():
    units = {
        "app/0": done("app/0"),
        "app/1": done("app/1", exit_code=99),
        "app/2": done("app/2", exit_code=108, error="aborted"),
    }

    assert outcome_of(make_run(RUNNING), units, ()) == (
        FAILED,
        "app/1 (exit code 99); app/2 (exit code 108: aborted)",
    )


def test_outcome_is_failed_when_a_participant_exits_zero_with_an_error():
    units = {**{u: done(u) for u in UNITS}, "app/1": done("app/1", error="no result")}

    assert outcome_of(make_run(RUNNING), units, ()) == (
        FAILED,
        "app/1 (exit code 0: no result)",
    )


def test_outcome_is_failed_when_participants_were_lost():
    units = {"app/0": done("app/0"), "app/2": done("app/2", exit_code=99)}

    assert outcome_of(make_run(RUNNING), units, ("app/1", "app/2")) == (
        FAILED,
        "lost during the run: app/1, app/2",
    )


def test_outcome_is_stopped_when_the_user_stopped_the_run():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW)
    units = {u: done(u, exit_code=103) for u in UNITS}

    assert outcome_of(run, units, ("app/2",)) == (STOPPED, STOPPED_BY_USER)


def test_outcome_is_failed_with_the_abort_reason_even_if_every_unit_exited_zero():
    run = make_run(STOPPING, reason="app/1 departed before the start", stop_deadline=NOW)
    units = {u: done(u) for u in UNITS}

    assert outcome_of(run, units, ()) == (FAILED, "app/1 departed before the start")


def test_outcome_is_failed_on_the_aggregates_failures_when_every_unit_passed():
    units = {u: done(u) for u in UNITS}

    assert outcome_of(make_run(RUNNING), units, (), ["p95 250 > 200", "errors 0.5 > 0.01"]) == (
        FAILED,
        "p95 250 > 200; errors 0.5 > 0.01",
    )


def test_last_run_record_holds_hand_computed_times_and_per_unit_lines():
    run = make_run(
        RUNNING,
        participants=("app/0", "app/1", "app/2"),
        released={"app/0": [1010.0, 1010.25], "app/2": [1010.0, 1010.75]},
        info={"label": "nightly"},
    )
    units = {
        "app/0": UnitReport(
            endpoint="10.0.0.10:7000",
            status=IDLE,
            run_id=RUN_ID,
            exit_code=0,
            result={"items": 4},
        ),
        "app/2": done("app/2", OLD_RUN_ID, exit_code=99, error="old failure"),
    }
    aggregate = Aggregate(
        data={"items": 4},
        lines={"app/0": {"items": 4}},
        headline="4 items",
    )

    record = last_run_record(run, units, lost=("app/1",), now=1070.75, aggregate=aggregate)

    assert record == LastRun(
        run_id=RUN_ID,
        outcome=FAILED,
        reason="lost during the run: app/1",
        created=1000.0,
        started=1010.25,
        ended=1070.75,
        duration_s=60.5,
        spread_ms=500.0,
        units={
            "app/0": UnitLine(exit_code=0, released=(1010.0, 1010.25), line={"items": 4}),
            "app/1": UnitLine(lost=True),
            # stale data from another run is not this run's report
            "app/2": UnitLine(released=(1010.0, 1010.75)),
        },
        aggregate={"items": 4},
        failures=(),
        headline="4 items",
        info={"label": "nightly"},
    )
    assert LastRun.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_last_run_record_fails_a_passed_run_on_the_aggregates_failures():
    run = make_run(RUNNING, participants=("app/0",), released={"app/0": [5.0, 6.0]})
    units = {"app/0": done("app/0")}
    failures = ["p95 latency 250 > 200", "error rate 0.5 > 0.01"]

    record = last_run_record(run, units, (), now=66.5, aggregate=Aggregate(failures=failures))

    assert record.outcome == FAILED
    assert record.reason == "p95 latency 250 > 200; error rate 0.5 > 0.01"
    assert record.failures == tuple(failures)
    assert record.duration_s == 60.5
    assert record.spread_ms == 0.0
    assert record.aggregate == {}


def test_last_run_record_keeps_the_first_failure_reason_over_the_aggregates_failures():
    run = make_run(RUNNING, participants=("app/0",))
    units = {"app/0": done("app/0", exit_code=107)}

    record = last_run_record(run, units, (), now=2000.0, aggregate=Aggregate(failures=["t"]))

    assert (record.outcome, record.reason) == (FAILED, "app/0 (exit code 107)")
    assert record.failures == ("t",)


def test_last_run_record_of_a_run_never_released_has_no_start_duration_or_spread():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW)
    units = {u: done(u, exit_code=105) for u in UNITS}

    record = last_run_record(run, units, (), now=1200.0)

    assert (record.outcome, record.reason) == (STOPPED, STOPPED_BY_USER)
    assert record.started is None
    assert record.duration_s is None
    assert record.spread_ms is None
    assert record.units["app/1"].exit_code == 105


def test_last_run_record_of_an_instant_release_says_how_late_each_unit_learnt_the_instant():
    run = make_run(RUNNING, start_at=1012.0)
    units = {
        "app/0": UnitReport(status=IDLE, run_id=RUN_ID, exit_code=0, started_at=1010.0),
        "app/1": UnitReport(status=IDLE, run_id=RUN_ID, exit_code=0, started_at=1012.25),
        "app/2": UnitReport(status=IDLE, run_id=RUN_ID, exit_code=0, started_at=None),
    }

    record = last_run_record(run, units, (), now=1072.0)

    assert {u: line.late_ms for u, line in record.units.items()} == {
        "app/0": 0.0,  # learnt it before the instant: on time
        "app/1": 250.0,
        "app/2": None,
    }
    assert (record.started, record.duration_s, record.spread_ms) == (1012.0, 60.0, None)
    assert record.outcome == PASSED


def test_app_data_from_the_databags_json_is_typed():
    last = last_run_record(make_run(RUNNING), {u: done(u) for u in UNITS}, (), now=1070.0)
    raw = {"run": make_run(ARMING).to_dict(), "payload": {"size": 1}, "last_run": last.to_dict()}

    data = AppData(**json.loads(json.dumps(raw)))

    assert data.run == make_run(ARMING)
    assert data.last_run == last
    assert isinstance(data.last_run.units["app/0"], UnitLine)


def test_unit_line_from_a_newer_revision_ignores_keys_it_does_not_know():
    line = UnitLine.from_dict({"exit_code": 0, "released": [1.0, 2.0], "later": True})

    assert line == UnitLine(exit_code=0, released=(1.0, 2.0))


# ============================================================ status texts


@pytest.mark.parametrize(
    "run, mine, expected",
    [
        (None, idle(), ops.ActiveStatus("idle")),
        (make_run(ARMING), pending("app/0"), ops.MaintenanceStatus("arming run r1")),
        (make_run(ARMING), armed("app/0"), ops.ActiveStatus("armed: run r1")),
        (make_run(RUNNING), armed("app/0"), ops.ActiveStatus("running: run r1")),
        (make_run(STOPPING), armed("app/0"), ops.ActiveStatus("stopping: run r1")),
        (None, armed("app/0"), ops.ActiveStatus("ending: run r1")),
        (
            make_run(RUNNING),
            done("app/0", exit_code=107, error="syntax error"),
            ops.BlockedStatus("run r1 failed: app/0 (exit code 107: syntax error)"),
        ),
        (make_run(RUNNING), done("app/0"), ops.ActiveStatus("idle")),
        (make_run(RUNNING), done("app/0", OLD_RUN_ID, exit_code=1), ops.ActiveStatus("idle")),
    ],
    ids=[
        "idle",
        "pending",
        "armed",
        "running",
        "stopping",
        "run gone",
        "failed",
        "done",
        "old failure",
    ],
)
def test_unit_status_describes_the_units_part_in_the_run(
    run: Run | None, mine: UnitReport, expected: ops.StatusBase
):
    assert unit_status(run, mine, "app/0") == expected


def test_app_status_while_running_counts_units_and_seconds_of_the_expected():
    run = make_run(RUNNING, released={"app/0": [999.0, 1000.0]}, expected_s=60.0)
    units = {**all_armed(), "app/2": done("app/2")}

    assert app_status(run, None, units, now=1012.4) == ops.ActiveStatus(
        "running 2/3 units, 12s of 60s"
    )
    unbounded = replace(run, expected_s=None)
    assert app_status(unbounded, None, units, now=1012.4) == ops.ActiveStatus(
        "running 2/3 units, 12s"
    )
    assert app_status(make_run(RUNNING), None, units, now=1012.4) == ops.ActiveStatus(
        "running 2/3 units"
    )


def test_app_status_of_an_idle_app_names_the_last_outcome_and_headline():
    last = last_run_record(make_run(RUNNING), {u: done(u) for u in UNITS}, (), now=1070.0)
    failed = last_run_record(make_run(RUNNING), {}, UNITS, now=1070.0)

    assert app_status(None, None, {}, NOW) == ops.ActiveStatus("idle")
    assert app_status(None, replace(last, headline="12 items"), {}, NOW) == ops.ActiveStatus(
        "idle; last run r1 passed, 12 items"
    )
    assert app_status(None, failed, {}, NOW) == ops.ActiveStatus(
        "idle; last run r1 failed: lost during the run: app/0, app/1, app/2"
    )
    long = replace(failed, reason="x" * 100)
    assert app_status(None, long, {}, NOW) == ops.ActiveStatus(
        f"idle; last run r1 failed: {'x' * 79}…"
    )


def test_unit_status_during_a_users_stop_is_not_a_failure():
    run = replace(make_run(STOPPING), reason=STOPPED_BY_USER)
    mine = UnitReport(status=IDLE, run_id="r1", exit_code=103)

    status = unit_status(run, mine, "app/0")

    assert status == ops.MaintenanceStatus("stopped: run r1 (the others are stopping)")


# ============================================================ fan_out on real sockets


def release_request(endpoint: str, body: bytes = b'{"go":true}') -> bytes:
    """A generic HTTP/1.1 request, as a workload's `release_request` would encode it."""
    return (
        b"POST /release HTTP/1.1\r\nHost: "
        + endpoint.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def requests_for(endpoints: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(e, release_request(e)) for e in endpoints]


OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def read_request(conn: socket.socket) -> bytes:
    """One whole HTTP request (head and Content-Length body) from `conn`."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        v
        for k, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
        if k.lower() == b"content-length"
    ]
    length = int(lengths[0]) if lengths else 0
    while len(body) < length and (chunk := conn.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class RawServer:
    """A TCP listener on a loopback address that treats each connection with `behaviour`."""

    behaviour: Callable[[socket.socket], None]
    host: str = "127.0.0.1"
    stop: threading.Event = field(default_factory=threading.Event)
    handled: threading.Event = field(default_factory=threading.Event)  # a connection closed

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.sock.bind((self.host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.host, self.port)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    self.behaviour(conn)
                except OSError:
                    pass
            self.handled.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Start RawServers (random free ports); all are closed afterwards."""
    servers: list[RawServer] = []

    def start(behaviour: Callable[[socket.socket], None], host: str = "127.0.0.1") -> RawServer:
        servers.append(RawServer(behaviour, host))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@dataclass
class Recorder:
    """A RawServer behaviour: record the request, answer with `answer` (200 by default)."""

    answer: bytes = OK_ANSWER
    requests: list[bytes] = field(default_factory=list)

    def __call__(self, conn: socket.socket) -> None:
        request = read_request(conn)
        if request:  # a connection closed without a byte is no request
            self.requests.append(request)
            conn.sendall(self.answer)


@dataclass
class Silent:
    """A RawServer behaviour: read the request, then answer nothing until the test ends."""

    requests: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, conn: socket.socket) -> None:
        self.requests.append(read_request(conn))
        self.release.wait(timeout=10)


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@dataclass
class ConnectLog:
    """Every connect attempt the process starts: (address, monotonic time), in order."""

    attempts: list[tuple[tuple, float]] = field(default_factory=list)
    after: Callable[[tuple], None] | None = None  # called after each attempt

    def times(self, endpoint: str) -> list[float]:
        host, port = endpoint.rsplit(":", 1)
        return [t for (a, t) in self.attempts if a[:2] == (host.strip("[]"), int(port))]


@pytest.fixture
def connect_log(monkeypatch: pytest.MonkeyPatch) -> ConnectLog:
    """Count connect attempts (fan_out connects without blocking, with `connect_ex`)."""
    log = ConnectLog()
    connect_ex = socket.socket.connect_ex

    def counting(sock: socket.socket, address) -> int:
        log.attempts.append((address, time.monotonic()))
        code = connect_ex(sock, address)
        if log.after is not None:
            log.after(address)
        return code

    monkeypatch.setattr(socket.socket, "connect_ex", counting)
    return log


def test_fan_out_sends_exactly_one_request_to_every_endpoint(raw_server):
    recorders = [Recorder() for _ in range(3)]
    servers = [raw_server(r) for r in recorders]
    endpoints = [s.endpoint for s in servers]

    results = fan_out(requests_for(endpoints), timeout=3.0)

    assert [r.endpoint for r in results] == endpoints
    for recorder, endpoint, result in zip(recorders, endpoints, results, strict=True):
        assert result.ok, result
        assert (result.error, result.skipped) == (None, False)
        assert result.connected is not None and result.sent is not None
        assert result.acked is not None
        assert result.connected <= result.sent <= result.acked
        assert recorder.requests == [release_request(endpoint)]
        assert result.outcome() == Outcome(result.sent, result.acked, None, False)


def test_fan_out_connects_every_endpoint_before_it_writes_any_request(raw_server):
    servers = [raw_server(Recorder()) for _ in range(4)]

    results = fan_out(requests_for([s.endpoint for s in servers]))

    assert all(r.ok for r in results), results
    assert max(r.connected for r in results) <= min(r.sent for r in results)


def test_fan_out_of_nothing_sends_nothing():
    assert fan_out([]) == []


@pytest.mark.parametrize("bad", ["no-port-here", ":6565", "[::1]:70000", "127.0.0.1:0"])
def test_fan_out_rejects_a_malformed_endpoint_before_connecting_anywhere(
    raw_server, connect_log: ConnectLog, bad: str
):
    recorder = Recorder()
    server = raw_server(recorder)

    with pytest.raises(ValueError):
        fan_out(requests_for([server.endpoint, bad]))

    assert connect_log.attempts == []
    assert recorder.requests == []


def test_fan_out_looks_up_a_host_name_and_tries_each_of_its_addresses(raw_server):
    recorder = Recorder()
    server = raw_server(recorder)  # on 127.0.0.1 only: "localhost" may resolve to ::1 first
    endpoint = f"localhost:{server.port}"

    (result,) = fan_out(requests_for([endpoint]), connect_retries=0)

    assert result.ok, result
    assert recorder.requests == [release_request(endpoint)]


def test_fan_out_sends_nobody_anything_when_one_endpoint_stays_unreachable_after_its_retries(
    raw_server, dead_endpoint: str, connect_log: ConnectLog
):
    recorders = [Recorder() for _ in range(4)]
    endpoints = [raw_server(r).endpoint for r in recorders]
    endpoints.insert(2, dead_endpoint)

    results = fan_out(requests_for(endpoints), connect_retries=2)

    by_endpoint = {r.endpoint: r for r in results}
    dead = by_endpoint.pop(dead_endpoint)
    assert dead.error is not None and dead.error.startswith("connect failed after 3 attempts: ")
    assert "Connection refused" in dead.error
    assert (dead.sent, dead.acked, dead.ok, dead.skipped) == (None, None, False, False)
    dead_attempts = connect_log.times(dead_endpoint)
    assert len(dead_attempts) == 3  # one try and two retries, then it gives up
    assert dead_attempts[1] - dead_attempts[0] >= lib.FIRST_BACKOFF  # with a backoff
    assert len(connect_log.attempts) == 3 + len(recorders)  # the reachable ones once each
    for endpoint, reachable in by_endpoint.items():
        # all or nobody: the reachable ones are connected, then not sent to either
        assert (reachable.skipped, reachable.sent, reachable.error, reachable.ok) == (
            True,
            None,
            None,
            False,
        )
        assert reachable.connected is not None
        # the dead one's retries did not hold their connects up
        (attempt,) = connect_log.times(endpoint)
        assert attempt < dead_attempts[1]
    assert [r.requests for r in recorders] == [[], [], [], []]


def test_fan_out_retries_a_refused_connect_until_the_endpoint_listens(connect_log: ConnectLog):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not yet listening: connects are refused
    endpoint = f"127.0.0.1:{sock.getsockname()[1]}"
    listening = threading.Event()

    def listen(_: tuple) -> None:  # listening from the first refusal on
        if not listening.is_set():
            sock.listen(1)
            listening.set()

    connect_log.after = listen
    requests: list[bytes] = []

    def serve() -> None:
        listening.wait(timeout=10)
        sock.settimeout(10)
        conn, _ = sock.accept()
        with conn:
            requests.append(read_request(conn))
            conn.sendall(OK_ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        (result,) = fan_out(requests_for([endpoint]), timeout=3.0, connect_retries=5)
    finally:
        thread.join(timeout=10)
        sock.close()

    assert result.ok, result
    assert len(connect_log.times(endpoint)) == 2  # refused once, then connected
    assert requests == [release_request(endpoint)]


def test_fan_out_reports_an_unexpected_answer(raw_server):
    failing = Recorder(answer=b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    fine = Recorder()
    endpoints = [raw_server(failing).endpoint, raw_server(fine).endpoint]

    failed, ok = fan_out(requests_for(endpoints))

    assert failed.error == "unexpected answer: 'HTTP/1.1 500 Internal Server Error'"
    assert failed.sent is not None and failed.acked is None and not failed.ok
    assert ok.ok
    assert failing.requests == [release_request(endpoints[0])]


def test_fan_out_reports_no_answer_within_the_timeout(raw_server):
    silent, fine = Silent(), Recorder()
    endpoints = [raw_server(silent).endpoint, raw_server(fine).endpoint]
    try:
        hung, ok = fan_out(requests_for(endpoints), timeout=0.3)
    finally:
        silent.release.set()

    assert hung.error == "no answer within 0.3s"
    assert hung.sent is not None and hung.acked is None and not hung.ok
    assert ok.ok
    assert silent.requests == [release_request(endpoints[0])]


def test_fan_out_reports_a_connection_closed_without_an_answer(raw_server):
    server = raw_server(read_request)

    (result,) = fan_out(requests_for([server.endpoint]), timeout=2.0)

    assert result.error == "unexpected answer: ''"
    assert result.sent is not None and not result.ok


def test_fan_out_reports_a_connection_reset_while_waiting_for_the_answer(raw_server):
    def read_then_reset(conn: socket.socket) -> None:
        read_request(conn)
        _reset(conn)

    server = raw_server(read_then_reset)

    (result,) = fan_out(requests_for([server.endpoint]), timeout=2.0)

    assert result.error is not None and result.error.startswith("receive failed: ")
    assert result.sent is not None and not result.ok


def test_fan_out_reports_a_send_to_a_connection_already_reset(
    raw_server, monkeypatch: pytest.MonkeyPatch
):
    connected = threading.Event()

    def reset_once_connected(conn: socket.socket) -> None:
        connected.wait(timeout=10)
        _reset(conn)

    server = raw_server(reset_once_connected)
    connect_all = lib._connect_all

    def connect_then_wait_for_the_reset(*args):
        dials = connect_all(*args)
        connected.set()
        assert server.handled.wait(timeout=10)  # the server has reset the connection
        return dials

    monkeypatch.setattr(lib, "_connect_all", connect_then_wait_for_the_reset)

    (reset,) = fan_out(requests_for([server.endpoint]))

    assert reset.error is not None and reset.error.startswith("send failed: ")
    assert (reset.sent, reset.acked, reset.skipped) == (None, None, False)


def ipv6_loopback() -> str:
    """::1, or skip when this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"IPv6 loopback ::1 is not configured here ({e})")
    return "::1"


def test_fan_out_reaches_an_ipv6_endpoint_in_brackets_next_to_an_ipv4_one(raw_server):
    v6, v4 = Recorder(), Recorder()
    endpoints = [raw_server(v6, host=ipv6_loopback()).endpoint, raw_server(v4).endpoint]
    assert endpoints[0].startswith("[::1]:")

    results = fan_out(requests_for(endpoints), timeout=3.0)

    assert [r.ok for r in results] == [True, True], results
    assert v6.requests == [release_request(endpoints[0])]
    assert v4.requests == [release_request(endpoints[1])]


def test_fan_out_names_an_unreachable_ipv6_endpoint_and_sends_nobody_anything(raw_server):
    recorder = Recorder()
    server = raw_server(recorder)
    dead = f"[{ipv6_loopback()}]:{free_port('::1')}"

    live, unreachable = fan_out(requests_for([server.endpoint, dead]), connect_retries=1)

    assert unreachable.error is not None
    assert unreachable.error.startswith("connect failed after 2 attempts: ")
    assert live.skipped and not live.ok
    assert recorder.requests == []  # connected at most, never sent a byte


class BackloggedListener:
    """A listener on 127.0.0.1 whose accept queue is full, so the kernel drops every new SYN.

    A connect to it stays in SYN_SENT (the kernel retransmits the SYN after about 1 s, then
    3 s) until `release()` accepts the connection that fills the queue; then the next SYN
    gets through, and the listener answers one request with 200.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)  # room for exactly one queued connection
        self.filler = socket.create_connection(self.sock.getsockname(), timeout=2)
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.released = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        self.released.set()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.closed.is_set():
            if not self.released.is_set():
                time.sleep(0.005)
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                if conn.getpeername() == self.filler.getsockname():
                    continue
                self.requests.append(read_request(conn))
                conn.sendall(OK_ANSWER)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.filler.close()
        self.sock.close()


@pytest.fixture
def backlogged() -> Iterator[Callable[[int], list[BackloggedListener]]]:
    made: list[BackloggedListener] = []

    def make(count: int) -> list[BackloggedListener]:
        made.extend(BackloggedListener() for _ in range(count))
        return made[-count:]

    try:
        yield make
    finally:
        for listener in made:
            listener.close()


def syn_sent_to(ports: set[int]) -> int:
    """Sockets of this network namespace in SYN_SENT towards one of `ports` (/proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        columns = line.split()
        if columns[3] == "02" and int(columns[2].rsplit(":", 1)[1], 16) in ports:
            count += 1
    return count


def test_fan_out_has_every_connect_in_flight_at_once(backlogged):
    count = 20
    listeners = backlogged(count)
    ports = {listener.port for listener in listeners}
    outcome: dict[str, list[lib.Delivery]] = {}
    requests = requests_for([x.endpoint for x in listeners])
    thread = threading.Thread(
        target=lambda: outcome.setdefault("results", fan_out(requests, timeout=10.0)),
        daemon=True,
    )
    thread.start()

    in_flight = 0  # most connects seen waiting for their handshake at the same time
    deadline = time.monotonic() + 10
    while in_flight < count and time.monotonic() < deadline:
        in_flight = max(in_flight, syn_sent_to(ports))
        time.sleep(0.01)
    for listener in listeners:
        listener.release()
    thread.join(timeout=60)

    assert in_flight == count  # one connect after another would show at most one
    results = outcome["results"]
    assert all(r.ok for r in results), results
    assert [x.requests for x in listeners] == [[release_request(x.endpoint)] for x in listeners]
    assert max(r.connected for r in results) <= min(r.sent for r in results)


def test_fan_out_retries_each_endpoint_independently_of_the_others(
    backlogged, raw_server, connect_log: ConnectLog
):
    unreachable = backlogged(10)  # never released: every SYN is dropped, every connect times out
    recorder = Recorder()
    reachable = raw_server(recorder)
    endpoints = [reachable.endpoint] + [x.endpoint for x in unreachable]
    timeout, retries = 0.3, 2
    started = time.monotonic()

    results = fan_out(requests_for(endpoints), timeout=timeout, connect_retries=retries)

    elapsed = time.monotonic() - started
    for result in results[1:]:
        assert result.error == "connect failed after 3 attempts: timed out after 0.3s"
    assert results[0].skipped and recorder.requests == []
    attempts = {x.endpoint: connect_log.times(x.endpoint) for x in unreachable}
    assert [len(a) for a in attempts.values()] == [3] * len(unreachable)
    # every endpoint's first attempt started before any endpoint's second one: concurrently
    assert max(a[0] for a in attempts.values()) < min(a[1] for a in attempts.values())
    # each waited its own timeouts and backoffs: 3 × 0.3 s + 0.05 s + 0.1 s at least
    assert elapsed >= timeout * (retries + 1) + lib.FIRST_BACKOFF * 3


# ============================================================ done_notice_command


NOTICE_KEY = "example.com/done"


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
    command = done_notice_command("echo hi > out; sh -c 'exit 3'", NOTICE_KEY, "r-9")

    proc = subprocess.run(shlex.split(command), cwd=fake_pebble.parent, timeout=30, check=False)

    assert proc.returncode == 3
    assert (fake_pebble.parent / "out").read_text() == "hi\n"
    assert fake_pebble.read_text().splitlines() == [
        "notify",
        NOTICE_KEY,
        "run_id=r-9",
        "exit_code=3",
    ]


def test_done_notice_command_keeps_a_hostile_run_id_one_argument(fake_pebble: Path):
    hostile = "r1 x=$(touch pwned); touch pwned2 `touch pwned3`"
    command = done_notice_command("true", NOTICE_KEY, hostile)

    proc = subprocess.run(shlex.split(command), cwd=fake_pebble.parent, timeout=30, check=False)

    assert proc.returncode == 0
    assert fake_pebble.read_text().splitlines()[2] == f"run_id={hostile}"
    assert not any(fake_pebble.parent.glob("pwned*"))


def test_done_notice_command_still_notifies_when_its_process_group_gets_sigterm(
    fake_pebble: Path,
):
    line = "sh -c " + shlex.quote("touch started; exec sleep 30")
    command = done_notice_command(line, NOTICE_KEY, "r1")
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


# ============================================================ SynchronizedTask with ops.testing


CLOCK = 5000.0  # the stand-in's clock: every run is created now
ADDRESS = "127.0.0.1"  # the unit's bind address (its pod IP)
PAYLOAD = {"size": 12}
META = {
    "name": "app",
    "containers": {"worker": {"resource": "worker-image"}},
    "resources": {"worker-image": {"type": "oci-image"}},
    "peers": {"peers": {"interface": "synchronized_task_peers"}},
}
ACTIONS = {
    "start": {"params": {"size": {"type": "integer", "default": 12}}},
    "stop": {},
}


@dataclass
class FakeWorkload(Workload):
    """Records every call; answers as configured."""

    ready_at_arm: bool = True
    ready_later: bool = False
    alive: bool = True
    arm_failure: str = ""
    outcome: dict[str, Any] | None = None
    probed: frozenset[str] = frozenset()
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def called(self, name: str) -> list[Any]:
        return [args for call, args in self.calls if call == name]

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        self.calls.append(("arm", (run.run_id, dict(payload), share, address)))
        if self.arm_failure:
            raise ArmFailed(self.arm_failure)
        return self.ready_at_arm

    def ready(self, run: Run, address: str) -> bool:
        self.calls.append(("ready", (run.run_id, address)))
        return self.ready_later

    def running(self) -> bool:
        self.calls.append(("running", ()))
        return self.alive

    def halt(self) -> None:
        self.calls.append(("halt", ()))
        self.alive = False

    def result(self, run: Run) -> dict[str, Any] | None:
        self.calls.append(("result", run.run_id))
        return self.outcome

    def release_request(self, endpoint: str) -> bytes:
        self.calls.append(("release_request", endpoint))
        return release_request(endpoint)

    def probe(self, endpoints: Mapping[str, str]) -> frozenset[str]:
        self.calls.append(("probe", dict(endpoints)))
        return self.probed

    def stop_remote(self, endpoints: Sequence[str]) -> None:
        self.calls.append(("stop_remote", list(endpoints)))

    def release_at(self, run: Run, instant: float) -> None:
        self.calls.append(("release_at", (run.run_id, instant)))


AggregateFn = Callable[[Run, Mapping[str, UnitReport], float], Aggregate]


def stand_in(
    workload: FakeWorkload, release: ApiRelease | InstantRelease, aggregate: AggregateFn | None
) -> type[ops.CharmBase]:
    """A minimal charm on the library: a `start` and a `stop` action, nothing else."""

    class StandInCharm(ops.CharmBase):
        def __init__(self, framework: ops.Framework):
            super().__init__(framework)
            self.task = SynchronizedTask(
                self,
                "peers",
                workload,
                container="worker",
                notice_key=NOTICE_KEY,
                release=release,
                aggregate=aggregate,
                clock=lambda: CLOCK,
            )
            framework.observe(self.on.start_action, self._on_start)
            framework.observe(self.on.stop_action, self._on_stop)

        def _on_start(self, event: ops.ActionEvent) -> None:
            try:
                run = self.task.start(
                    {"size": event.params["size"]},
                    info={"label": "demo"},
                    arm_timeout=60,
                    expected_s=30,
                )
            except TaskRefused as e:
                event.fail(str(e))
                return
            event.set_results({"run-id": run.run_id})

        def _on_stop(self, event: ops.ActionEvent) -> None:
            try:
                run = self.task.stop()
            except TaskRefused as e:
                event.fail(str(e))
                return
            event.set_results({"stopped": run.run_id if run else ""})

    return StandInCharm


def context(
    workload: FakeWorkload,
    release: ApiRelease | InstantRelease | None = None,
    *,
    unit_id: int = 0,
    aggregate: AggregateFn | None = None,
) -> testing.Context:
    charm = stand_in(workload, release or InstantRelease(lead=2.0), aggregate)
    return testing.Context(charm, meta=META, actions=ACTIONS, unit_id=unit_id)


def app_bag(
    run: Run | None = None, payload: Mapping[str, Any] | None = None, last: LastRun | None = None
) -> dict[str, str]:
    """The app databag as the library writes it: each field one JSON value."""
    if run is not None and payload is None:
        payload = PAYLOAD
    return {
        "run": json.dumps(run.to_dict() if run else None),
        "payload": json.dumps(dict(payload) if payload is not None else None),
        "last_run": json.dumps(last.to_dict() if last else None),
    }


def unit_bag(report: UnitReport) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in asdict(report).items()}


def peers(
    app: dict[str, str] | None = None,
    mine: UnitReport | None = None,
    others: Mapping[int, UnitReport] | None = None,
) -> testing.PeerRelation:
    return testing.PeerRelation(
        "peers",
        local_app_data=app or {},
        local_unit_data=unit_bag(mine) if mine else {},
        peers_data={i: unit_bag(r) for i, r in (others or {}).items()},
    )


def worker(*notices: testing.Notice) -> testing.Container:
    """The workload container, with the Pebble notices it holds."""
    return testing.Container("worker", can_connect=True, notices=list(notices))


def done_notice(run_id: str, exit_code: int) -> testing.Notice:
    return testing.Notice(NOTICE_KEY, last_data={"run_id": run_id, "exit_code": str(exit_code)})


def state(
    relation: testing.PeerRelation | None,
    *,
    leader: bool = True,
    container: testing.Container | None = None,
) -> testing.State:
    return testing.State(
        leader=leader,
        relations=[relation] if relation else [],
        containers=[container or worker()],
        networks=[testing.Network("peers", [testing.BindAddress([testing.Address(ADDRESS)])])],
    )


def app_out(out: testing.State, relation: testing.PeerRelation) -> AppData:
    bag = out.get_relation(relation.id).local_app_data
    return AppData(
        **{k: json.loads(v) for k, v in bag.items() if k in ("run", "payload", "last_run")}
    )


def unit_out(out: testing.State, relation: testing.PeerRelation) -> UnitReport:
    bag = out.get_relation(relation.id).local_unit_data
    known = {f.name for f in fields(UnitReport)}
    return UnitReport(**{k: json.loads(v) for k, v in bag.items() if k in known})


def scenario_run(
    phase: str = ARMING,
    participants: tuple[str, ...] = UNITS,
    payload: Mapping[str, Any] = PAYLOAD,
    **overrides: Any,
) -> Run:
    """A run as `start` froze it at CLOCK - 10 with the payload's digest."""
    values: dict[str, Any] = {
        "run_id": RUN_ID,
        "phase": phase,
        "participants": participants,
        "created": CLOCK - 10,
        "deadline": CLOCK + 50,
        "payload_sha256": digest(payload),
        "info": {"label": "demo"},
        **overrides,
    }
    return Run(**values)


def at(endpoint: str, status: str = BUSY, **kw: Any) -> UnitReport:
    """A report for RUN_ID: reached at `endpoint` ("" under InstantRelease)."""
    return UnitReport(endpoint=endpoint, status=status, run_id=RUN_ID, **kw)


@pytest.fixture
def release_server(raw_server) -> tuple[RawServer, Recorder]:
    """A local endpoint that answers 200 to every release request, and what it received."""
    recorder = Recorder()
    return raw_server(recorder), recorder


# ------------------------------------------------------------ start


def test_single_unit_start_releases_in_the_same_hook(release_server):
    server, recorder = release_server
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=server.port))
    relation = peers()

    out = ctx.run(ctx.on.action("start", params={"size": 7}), state(relation))

    data = app_out(out, relation)
    run = data.run
    assert run is not None and ctx.action_results == {"run-id": run.run_id}
    assert (run.phase, run.participants, run.created, run.deadline) == (
        RUNNING,
        ("app/0",),
        CLOCK,
        CLOCK + 60,
    )
    assert (run.payload_sha256, data.payload) == (digest({"size": 7}), {"size": 7})
    (sent, acked) = run.released["app/0"]
    assert sent is not None and acked is not None and sent <= acked
    endpoint = f"{ADDRESS}:{server.port}"
    assert recorder.requests == [release_request(endpoint)]
    assert workload.called("arm") == [(run.run_id, {"size": 7}, Share(0, 1), ADDRESS)]
    assert workload.called("release_request") == [endpoint]
    assert unit_out(out, relation) == UnitReport(endpoint=endpoint, status=BUSY, run_id=run.run_id)
    assert out.unit_status == testing.ActiveStatus(f"running: run {run.run_id}")


def test_multi_unit_start_arms_the_leader_only_and_waits_for_the_others():
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=7000))
    relation = peers(others={1: UnitReport(), 2: UnitReport()})

    out = ctx.run(ctx.on.action("start", params={"size": 12}), state(relation))

    run = app_out(out, relation).run
    assert run is not None
    assert (run.phase, run.participants, run.released) == (ARMING, UNITS, {})
    assert workload.called("arm") == [(run.run_id, PAYLOAD, Share(0, 3), ADDRESS)]
    assert workload.called("release_request") == workload.called("probe") == []
    assert unit_out(out, relation).status == BUSY
    assert out.app_status == testing.MaintenanceStatus("arming 1/3")
    assert out.unit_status == testing.ActiveStatus(f"armed: run {run.run_id}")


@pytest.mark.parametrize(
    "setup, message",
    [
        ({"leader": False}, "only the leader starts a run: juju run app/leader …"),
        ({"relation": None}, "the peer relation is not ready yet; retry in a moment"),
        ({"run": RUNNING}, "run r1 is already active (running)"),
        ({"run": STOPPING}, "run r1 is already active (stopping)"),
    ],
    ids=["not leader", "no relation", "running", "stopping"],
)
def test_start_is_refused_with_a_message_for_the_user(setup: dict, message: str):
    workload = FakeWorkload()
    ctx = context(workload)
    relation: testing.PeerRelation | None = peers()
    if "run" in setup:
        relation = peers(app_bag(scenario_run(setup["run"], stop_deadline=CLOCK + 60)))
    if "relation" in setup:
        relation = None

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(
            ctx.on.action("start", params={"size": 12}),
            state(relation, leader=setup.get("leader", True)),
        )

    assert failure.value.message == message
    assert workload.called("arm") == []


# ------------------------------------------------------------ a participant


@pytest.mark.parametrize("ready, status", [(True, BUSY), (False, PENDING)])
def test_participant_arms_its_own_share_on_relation_changed(ready: bool, status: str):
    workload = FakeWorkload(ready_at_arm=ready)
    ctx = context(workload, ApiRelease(port=7000), unit_id=2)
    run = scenario_run(ARMING)
    relation = peers(app_bag(run), others={0: at("10.0.0.10:7000"), 1: UnitReport()})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    assert workload.called("arm") == [(RUN_ID, PAYLOAD, Share(2, 3), ADDRESS)]
    assert unit_out(out, relation) == UnitReport(
        endpoint=f"{ADDRESS}:7000", status=status, run_id=RUN_ID
    )


def test_participant_refuses_a_payload_that_does_not_match_the_runs_digest():
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    run = scenario_run(ARMING, payload={"size": 10})
    relation = peers(app_bag(run, payload={"size": 11}), others={0: at("10.0.0.10:7000")})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    assert unit_out(out, relation) == UnitReport(
        endpoint=f"{ADDRESS}:7000", status=IDLE, run_id=RUN_ID, error=MISMATCH
    )
    assert workload.called("arm") == []
    assert out.unit_status == testing.BlockedStatus(
        f"run r1 failed: app/1 (no exit code: {MISMATCH})"
    )


def test_participant_whose_workload_cannot_start_reports_the_failure():
    workload = FakeWorkload(arm_failure="exited quickly with code 107")
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    relation = peers(app_bag(scenario_run(ARMING)), others={0: at("10.0.0.10:7000")})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    report = unit_out(out, relation)
    assert (report.status, report.run_id, report.error) == (
        IDLE,
        RUN_ID,
        "exited quickly with code 107",
    )


def test_done_notice_makes_the_participant_idle_with_its_exit_code_and_result():
    workload = FakeWorkload(outcome={"items": 5})
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    run = scenario_run(RUNNING, released={u: [CLOCK - 5, CLOCK - 5] for u in UNITS})
    mine = at(f"{ADDRESS}:7000")
    relation = peers(app_bag(run), mine, others={0: at("10.0.0.10:7000")})
    notice = done_notice(RUN_ID, 99)
    container = worker(notice)

    out = ctx.run(
        ctx.on.pebble_custom_notice(container, notice),
        state(relation, leader=False, container=container),
    )

    assert unit_out(out, relation) == UnitReport(
        endpoint=f"{ADDRESS}:7000", status=IDLE, run_id=RUN_ID, exit_code=99, result={"items": 5}
    )
    assert workload.called("halt") == []
    assert workload.called("result") == [RUN_ID]
    assert out.unit_status == testing.BlockedStatus("run r1 failed: app/1 (exit code 99)")


def test_done_notice_of_another_run_changes_nothing():
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    run = scenario_run(RUNNING)
    mine = at(f"{ADDRESS}:7000")
    relation = peers(app_bag(run), mine, others={0: at("10.0.0.10:7000")})
    notice = done_notice(OLD_RUN_ID, 0)
    container = worker(notice)

    out = ctx.run(
        ctx.on.pebble_custom_notice(container, notice),
        state(relation, leader=False, container=container),
    )

    assert unit_out(out, relation) == mine
    assert [c for c, _ in workload.calls] == ["running"]


# ------------------------------------------------------------ the leader's release


def test_leader_releases_every_unit_when_every_report_is_busy(raw_server):
    recorders = [Recorder() for _ in UNITS]
    servers = [raw_server(r) for r in recorders]
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=servers[0].port))
    endpoints = [s.endpoint for s in servers]
    relation = peers(
        app_bag(scenario_run(ARMING)),
        mine=at(endpoints[0]),
        others={1: at(endpoints[1]), 2: at(endpoints[2])},
    )

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=2), state(relation))

    run = app_out(out, relation).run
    assert run is not None
    # running, with each unit's [sent, acked], and otherwise the run as it was frozen
    assert run == replace(scenario_run(ARMING), phase=RUNNING, released=run.released)
    assert set(run.released) == set(UNITS)
    assert all(sent is not None and acked is not None for sent, acked in run.released.values())
    assert workload.called("release_request") == endpoints
    assert [r.requests for r in recorders] == [[release_request(e)] for e in endpoints]
    assert out.unit_status == testing.ActiveStatus("running: run r1")


def test_failed_release_aborts_naming_the_unreachable_unit_and_sends_nobody_anything(
    raw_server, dead_endpoint: str
):
    recorders = [Recorder(), Recorder()]
    servers = [raw_server(r) for r in recorders]
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=servers[0].port))
    relation = peers(
        app_bag(scenario_run(ARMING)),
        mine=at(servers[0].endpoint),
        others={1: at(servers[1].endpoint), 2: at(dead_endpoint)},
    )

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=2), state(relation))

    run = app_out(out, relation).run
    assert run is not None
    assert run.phase == STOPPING
    assert run.reason == (
        "release failed: app/2: connect failed after 3 attempts: [Errno 111] Connection refused"
    )
    assert run.stop_deadline == CLOCK + STOP_GRACE_SECONDS
    assert run.released == {u: [None, None] for u in UNITS}
    assert [r.requests for r in recorders] == [[], []]
    assert workload.called("stop_remote") == [
        [servers[0].endpoint, servers[1].endpoint, dead_endpoint]
    ]
    assert workload.called("halt") == [()]  # the leader's own workload stops at once
    assert out.app_status == testing.MaintenanceStatus("stopping 1/3 units done")


@pytest.mark.parametrize("bad", ["", "no-port", "[::1]:70000"])
def test_a_participant_without_a_usable_endpoint_aborts_the_run_instead_of_crashing(
    raw_server, bad: str
):
    recorder = Recorder()
    server = raw_server(recorder)
    ctx = context(FakeWorkload(), ApiRelease(port=server.port))
    relation = peers(
        app_bag(scenario_run(ARMING)),
        mine=at(server.endpoint),
        others={1: at(server.endpoint), 2: at(bad)},
    )

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=2), state(relation))

    run = app_out(out, relation).run
    assert run is not None and run.phase == STOPPING
    assert run.reason == f"release failed: app/2: no usable endpoint published ({bad!r})"
    assert recorder.requests == []


def test_leader_probes_an_initializing_participant_and_releases_it_once_ready(release_server):
    server, recorder = release_server
    workload = FakeWorkload(probed=frozenset({"app/1"}))
    ctx = context(workload, ApiRelease(port=server.port))
    relation = peers(
        app_bag(scenario_run(ARMING, participants=("app/0", "app/1"))),
        mine=at(server.endpoint),
        others={1: at(server.endpoint, status=PENDING)},
    )

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=1), state(relation))

    run = app_out(out, relation).run
    assert run is not None and run.phase == RUNNING
    assert workload.called("probe") == [{"app/1": server.endpoint}]
    assert len(recorder.requests) == 2


# ------------------------------------------------------------ InstantRelease


def test_instant_release_schedules_the_start_and_hands_it_to_the_leaders_workload():
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0))
    relation = peers(
        app_bag(scenario_run(ARMING)),
        mine=at(""),
        others={1: at(""), 2: at("")},
    )

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=1), state(relation))

    run = app_out(out, relation).run
    assert run is not None
    assert (run.phase, run.start_at, run.released) == (RUNNING, CLOCK + 2.0, {})
    assert workload.called("release_at") == [(RUN_ID, CLOCK + 2.0)]
    assert unit_out(out, relation).started_at == CLOCK
    assert workload.called("probe") == workload.called("release_request") == []


def test_instant_release_participant_hands_the_start_instant_over_on_relation_changed():
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0), unit_id=1)
    run = scenario_run(RUNNING, start_at=CLOCK + 1.5)
    relation = peers(app_bag(run), mine=at(""), others={0: at("", started_at=CLOCK - 0.5)})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    assert workload.called("release_at") == [(RUN_ID, CLOCK + 1.5)]
    assert unit_out(out, relation) == at("", started_at=CLOCK)


def test_instant_release_participant_that_started_does_not_hand_the_instant_over_again():
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0), unit_id=1)
    run = scenario_run(RUNNING, start_at=CLOCK - 1)
    mine = at("", started_at=CLOCK - 3)
    relation = peers(app_bag(run), mine=mine, others={0: at("", started_at=CLOCK - 3)})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    assert workload.called("release_at") == []
    assert unit_out(out, relation) == mine


def test_instant_release_participant_arms_without_publishing_an_endpoint():
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0), unit_id=1)
    relation = peers(app_bag(scenario_run(ARMING)), others={0: at("")})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    assert unit_out(out, relation) == UnitReport(endpoint="", status=BUSY, run_id=RUN_ID)


# ------------------------------------------------------------ the end of a run


def count_items(run: Run, reports: Mapping[str, UnitReport], ended: float) -> Aggregate:
    """An aggregate callback: sums each unit's items; under 20 in all fails the run."""
    items = {p: (r.result or {}).get("items", 0) for p, r in reports.items()}
    total = sum(items.values())
    return Aggregate(
        data={"items": total, "ended": ended},
        failures=[f"{total} items < 20"] if total < 20 else [],
        lines={p: {"items": n} for p, n in items.items()},
        headline=f"{total} items",
    )


@pytest.mark.parametrize(
    "leaders_items, outcome, reason", [(15, PASSED, ""), (7, FAILED, "12 items < 20")]
)
def test_the_leaders_own_done_notice_finishes_the_run_into_the_last_run_record(
    leaders_items: int, outcome: str, reason: str
):
    workload = FakeWorkload(outcome={"items": leaders_items})
    seen: list[tuple[str, dict, float]] = []

    def aggregate(run: Run, reports: Mapping[str, UnitReport], ended: float) -> Aggregate:
        seen.append((run.run_id, {p: r.result for p, r in reports.items()}, ended))
        return count_items(run, reports, ended)

    ctx = context(workload, ApiRelease(port=7000), aggregate=aggregate)
    released = {"app/0": [CLOCK - 60, CLOCK - 59.996], "app/1": [CLOCK - 60, CLOCK - 59.999]}
    run = scenario_run(RUNNING, participants=("app/0", "app/1"), released=released)
    relation = peers(
        app_bag(run),
        mine=at(f"{ADDRESS}:7000"),
        others={1: at("10.0.0.11:7000", status=IDLE, exit_code=0, result={"items": 5})},
    )
    notice = done_notice(RUN_ID, 0)
    container = worker(notice)

    out = ctx.run(
        ctx.on.pebble_custom_notice(container, notice), state(relation, container=container)
    )

    total = leaders_items + 5
    data = app_out(out, relation)
    assert (data.run, data.payload) == (None, None)
    assert seen == [(RUN_ID, {"app/0": {"items": leaders_items}, "app/1": {"items": 5}}, CLOCK)]
    assert data.last_run == LastRun(
        run_id=RUN_ID,
        outcome=outcome,
        reason=reason,
        created=CLOCK - 10,
        started=CLOCK - 59.999,
        ended=CLOCK,
        duration_s=59.999,
        spread_ms=3.0,
        units={
            "app/0": UnitLine(
                exit_code=0, released=tuple(released["app/0"]), line={"items": leaders_items}
            ),
            "app/1": UnitLine(exit_code=0, released=tuple(released["app/1"]), line={"items": 5}),
        },
        aggregate={"items": total, "ended": CLOCK},
        failures=(reason,) if reason else (),
        headline=f"{total} items",
        info={"label": "demo"},
    )
    why = f": {reason}" if reason else ""
    assert out.app_status == testing.ActiveStatus(
        f"idle; last run r1 {outcome}{why}, {total} items"
    )
    assert out.unit_status == testing.ActiveStatus("idle")


# ------------------------------------------------------------ stop


@pytest.mark.parametrize(
    "notices, exit_code, error",
    [
        ((done_notice(RUN_ID, 105),), 105, ""),
        ((), None, "the workload ended without a done notice"),
    ],
    ids=["notice after the halt", "no notice"],
)
def test_stop_sets_the_run_stopping_and_asks_the_live_units_to_stop(
    notices: tuple[testing.Notice, ...], exit_code: int | None, error: str
):
    workload = FakeWorkload(outcome={"items": 1})
    ctx = context(workload, ApiRelease(port=7000))
    run = scenario_run(RUNNING, released={u: [CLOCK - 5, CLOCK - 5] for u in UNITS})
    relation = peers(
        app_bag(run),
        mine=at(f"{ADDRESS}:7000"),
        others={
            1: at("10.0.0.11:7000"),
            2: at("10.0.0.12:7000", status=IDLE, exit_code=0),
        },
    )

    out = ctx.run(ctx.on.action("stop"), state(relation, container=worker(*notices)))

    stopped = app_out(out, relation).run
    assert ctx.action_results == {"stopped": RUN_ID}
    assert stopped is not None
    assert (stopped.phase, stopped.reason, stopped.stop_deadline) == (
        STOPPING,
        STOPPED_BY_USER,
        CLOCK + STOP_GRACE_SECONDS,
    )
    assert workload.called("stop_remote") == [[f"{ADDRESS}:7000", "10.0.0.11:7000"]]
    assert workload.called("halt") == [()]
    assert unit_out(out, relation) == UnitReport(
        endpoint=f"{ADDRESS}:7000",
        status=IDLE,
        run_id=RUN_ID,
        exit_code=exit_code,
        error=error,
        result={"items": 1} if exit_code is not None else None,
    )
    assert out.app_status == testing.MaintenanceStatus("stopping 2/3 units done")


def test_stop_without_a_run_does_nothing():
    workload = FakeWorkload()
    ctx = context(workload)
    relation = peers()

    out = ctx.run(ctx.on.action("stop"), state(relation))

    assert ctx.action_results == {"stopped": ""}
    assert app_out(out, relation).run is None
    assert workload.calls == []


def test_stop_is_refused_on_a_unit_that_is_not_the_leader():
    ctx = context(FakeWorkload())

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("stop"), state(peers(), leader=False))

    assert failure.value.message == "only the leader stops a run: juju run app/leader …"


def test_the_units_stop_halts_a_running_workload():
    workload = FakeWorkload()
    ctx = context(workload)

    ctx.run(ctx.on.stop(), state(peers()))

    assert workload.called("halt") == [()]


# ------------------------------------------------------------ statuses


RELEASED = {u: [CLOCK - 12.4, CLOCK - 12.4] for u in UNITS}
LAST = LastRun(
    run_id=OLD_RUN_ID,
    outcome=PASSED,
    reason="",
    created=1.0,
    started=2.0,
    ended=3.0,
    duration_s=1.0,
    spread_ms=0.0,
    units={},
    headline="12 items",
)
STATUS_CASES = {
    "idle": (
        peers(app_bag(), UnitReport()),
        testing.ActiveStatus("idle"),
        testing.ActiveStatus("idle"),
    ),
    "arming": (
        peers(
            app_bag(scenario_run(ARMING)),
            at(f"{ADDRESS}:7000"),
            {1: at("10.0.0.11:7000"), 2: UnitReport()},
        ),
        testing.ActiveStatus("armed: run r1"),
        testing.MaintenanceStatus("arming 2/3"),
    ),
    "running": (
        peers(
            app_bag(scenario_run(RUNNING, released=RELEASED, expected_s=60.0)),
            at(f"{ADDRESS}:7000"),
            {1: at("x:1"), 2: at("x:2", status=IDLE, exit_code=0)},
        ),
        testing.ActiveStatus("running: run r1"),
        testing.ActiveStatus("running 2/3 units, 12s of 60s"),
    ),
    "stopping": (
        peers(
            app_bag(scenario_run(STOPPING, reason="x", stop_deadline=CLOCK + 60)),
            at(f"{ADDRESS}:7000", status=IDLE, exit_code=0),
            {1: at("x:1", status=IDLE, exit_code=0), 2: at("x:2")},
        ),
        testing.ActiveStatus("idle"),
        testing.MaintenanceStatus("stopping 2/3 units done"),
    ),
    "last run": (
        peers(app_bag(last=LAST), UnitReport(run_id=OLD_RUN_ID, exit_code=0)),
        testing.ActiveStatus("idle"),
        testing.ActiveStatus("idle; last run r0 passed, 12 items"),
    ),
}


@pytest.mark.parametrize("case", STATUS_CASES.values(), ids=STATUS_CASES.keys())
def test_statuses_describe_the_run_on_the_leader(
    case: tuple[testing.PeerRelation, testing.ActiveStatus, testing.StatusBase],
):
    relation, unit, app = case
    ctx = context(FakeWorkload(), ApiRelease(port=7000))

    out = ctx.run(ctx.on.update_status(), state(relation))

    assert (out.unit_status, out.app_status) == (unit, app)


def test_participant_that_failed_during_the_run_is_blocked_naming_itself_and_the_error():
    ctx = context(FakeWorkload(alive=False), ApiRelease(port=7000), unit_id=1)
    mine = at("x:1", status=IDLE, exit_code=107, error="syntax error")
    relation = peers(app_bag(scenario_run(RUNNING)), mine, {0: at("x:0")})

    out = ctx.run(ctx.on.update_status(), state(relation, leader=False))

    assert out.unit_status == testing.BlockedStatus(
        "run r1 failed: app/1 (exit code 107: syntax error)"
    )


def test_participant_still_initializing_is_in_maintenance_after_a_recheck():
    workload = FakeWorkload(ready_later=False)
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    relation = peers(app_bag(scenario_run(ARMING)), at("x:1", status=PENDING), {0: at("x:0")})

    out = ctx.run(ctx.on.update_status(), state(relation, leader=False))

    assert workload.called("ready") == [(RUN_ID, ADDRESS)]
    assert unit_out(out, relation).status == PENDING
    assert out.unit_status == testing.MaintenanceStatus("arming run r1")


def test_unit_without_the_peer_relation_waits_for_it():
    ctx = context(FakeWorkload())

    out = ctx.run(ctx.on.update_status(), state(None))

    assert out.unit_status == testing.WaitingStatus("waiting for the peer relation")


# ------------------------------------------------------------ per-hook cost


def test_idle_units_relation_changed_makes_no_workload_call():
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    relation = peers(app_bag(), UnitReport(), {0: UnitReport()})

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state(relation, leader=False))

    assert workload.calls == []


def test_idle_units_update_status_asks_the_workload_once_whether_it_runs():
    workload = FakeWorkload(alive=False)
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    relation = peers(app_bag(), UnitReport(), {0: UnitReport()})

    ctx.run(ctx.on.update_status(), state(relation, leader=False))

    assert workload.calls == [("running", ())]


def test_update_status_halts_a_stray_workload_running_with_no_run_and_keeps_the_report():
    # e.g. the workload's wrapper still exiting after its done notice was collected
    workload = FakeWorkload(alive=True)
    ctx = context(workload, ApiRelease(port=7000), unit_id=1)
    report = UnitReport(
        endpoint="127.0.0.2:7000", run_id=OLD_RUN_ID, exit_code=0, result={"requests": 7}
    )
    relation = peers(app_bag(), report, {0: UnitReport()})

    out = ctx.run(ctx.on.update_status(), state(relation, leader=False))

    assert workload.called("halt") == [()]
    assert unit_out(out, relation) == report


# ============================================================ a library with no k6 in it


COPYRIGHT = "Copyright 2026 k6-k8s contributors"


def test_the_library_imports_nothing_of_k6_and_names_k6_only_in_its_own_import_path():
    code = (
        "import sys, charms.k6_k8s.v0.synchronized_task; "
        "print(sorted(m for m in sys.modules if 'k6' in m.lower()))"
    )
    lib_dir = Path(lib.__file__).resolve().parents[3]

    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(lib_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert (
        out.strip()
        == "['charms.k6_k8s', 'charms.k6_k8s.v0', 'charms.k6_k8s.v0.synchronized_task']"
    )
    text = Path(lib.__file__).read_text()
    assert text.startswith(f"# {COPYRIGHT}\n")
    text = text.replace(COPYRIGHT, "").replace("charms.k6_k8s.v0.synchronized_task", "")
    assert "k6" not in text.lower()


def test_the_library_header_is_one_charmcraft_reads_with_a_minimum_ops_it_runs_on():
    charmlibs = pytest.importorskip("charmcraft.utils.charmlibs")
    requirement = pytest.importorskip("packaging.requirements").Requirement

    internals = charmlibs.get_lib_internals(Path(lib.__file__))

    assert (internals.lib_id, internals.api, internals.patch) == (
        lib.LIBID,
        lib.LIBAPI,
        lib.LIBPATCH,
    )
    assert internals.pydeps == ["ops>=2.18"]
    (ops_requirement,) = (requirement(d) for d in internals.pydeps)
    assert ops.__version__ in ops_requirement.specifier
    assert "Licensed under the Apache License, Version 2.0" in internals.content


def test_app_databag_writes_records_in_their_compact_form_and_reads_them_back():
    line = UnitLine(exit_code=0, released=(1.5, 1.75), line={"n": 1})
    last = LastRun("r1", PASSED, "", 1.0, 1.5, 2.0, 0.5, 0.25, {"app/0": line})
    data = AppData(run=make_run(RUNNING), payload={"a": 1}, last_run=last)

    bag = lib.app_databag(data)

    assert json.loads(bag["last_run"])["units"]["app/0"] == {
        "exit_code": 0,
        "error": "",
        "lost": False,
        "released": [1.5, 1.75],
        "line": {"n": 1},
    }
    assert ", " not in bag["last_run"] and ": " not in bag["run"]
    assert AppData(**{k: json.loads(v) for k, v in bag.items()}) == data


# ============================================================ found by the property schedules


def test_a_leader_whose_own_workload_stays_initializing_still_aborts_at_the_arm_deadline():
    # the leader's Recheck finds its workload still not ready; the arm deadline has passed
    workload = FakeWorkload(ready_later=False)
    ctx = context(workload, InstantRelease(lead=2.0))
    run = scenario_run(ARMING, participants=("app/0",), deadline=CLOCK - 1)
    relation = peers(app_bag(run), mine=at("", status=PENDING))

    out = ctx.run(ctx.on.update_status(), state(relation))

    data = app_out(out, relation)
    assert workload.called("ready") == [(RUN_ID, ADDRESS)]
    assert workload.called("halt") == [()]  # the abort stopped it, in the same hook
    assert data.run is None and data.last_run is not None
    assert (data.last_run.outcome, data.last_run.reason) == (
        FAILED,
        "not armed within the arm-timeout: app/0",
    )


def test_a_participant_released_while_pending_does_not_recheck_once_the_run_runs():
    run = make_run(RUNNING)
    mine = UnitReport(status=PENDING, run_id=run.run_id)
    observed = Observed(me="app/0", is_leader=False, run=run, units={"app/0": mine},
                        running=True, now=NOW)  # fmt: skip

    assert decide_unit(observed) == []
    assert unit_status(run, mine, "app/0") == ops.ActiveStatus(f"running: run {run.run_id}")
    assert decide_unit(replace(observed, run=make_run(ARMING))) == [Recheck(run.run_id)]
