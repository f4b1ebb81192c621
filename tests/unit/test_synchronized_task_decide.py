"""The synchronized-task library's decisions, as the state machine's own table.

Each test builds an `Observed` by hand (tests/support/task_observations.py) and asserts the exact
decision: `decide_unit` (a participant, a bystander), `decide_leader` (arming, the release's
outcome, running, stopping), `decide` (their composition), and properties over many states.
"""

from __future__ import annotations

from dataclasses import replace

import ops
import pytest
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    IDLE,
    PENDING,
    PHASES,
    RUNNING,
    STOPPED_BY_USER,
    STOPPING,
    Abort,
    Arm,
    Collect,
    Finish,
    Halt,
    Observed,
    Outcome,
    Probe,
    Recheck,
    Refuse,
    Release,
    Run,
    Schedule,
    StartAt,
    Started,
    UnitReport,
    decide,
    decide_leader,
    decide_unit,
    unit_status,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.task_observations import (
    DEADLINE,
    MISMATCH,
    NOW,
    OLD_RUN_ID,
    RUN_ID,
    UNITS,
    address_of,
    all_armed,
    armed,
    done,
    idle,
    make_run,
    observed,
    pending,
)

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


def test_decide_skips_a_unit_decision_carried_out_in_this_hook_and_gives_the_leaders():
    # the leader rechecked its own workload in this hook and found it still initializing
    run = make_run(ARMING, ("app/0",))
    units = {"app/0": pending("app/0")}

    late = observed(run, units, running=True, now=DEADLINE + 1, instant=True)

    decision = decide(replace(late, done=(Recheck(RUN_ID),)))

    assert decide(late) == [Recheck(RUN_ID)]
    assert decision == [Abort("not armed within the arm-timeout: app/0")]


def test_decide_skips_a_leader_decision_carried_out_in_this_hook():
    run = make_run(ARMING)
    release = Release({u: address_of(u) for u in UNITS})

    decision = decide(observed(run, all_armed(), running=True, done=(release,)))

    assert decide(observed(run, all_armed(), running=True)) == [release]
    assert decision == []


def test_decide_gives_a_decision_again_when_it_differs_from_the_one_carried_out():
    run = make_run(ARMING, ("app/0",))
    units = {"app/0": pending("app/0")}

    decision = decide(observed(run, units, running=True, done=(Recheck(OLD_RUN_ID),)))

    assert decision == [Recheck(RUN_ID)]


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


# ============================================================ found by the property schedules


def test_a_participant_released_while_pending_does_not_recheck_once_the_run_runs():
    run = make_run(RUNNING)
    mine = UnitReport(status=PENDING, run_id=run.run_id)
    observed = Observed(me="app/0", is_leader=False, run=run, units={"app/0": mine},
                        running=True, now=NOW)  # fmt: skip

    assert decide_unit(observed) == []
    assert unit_status(run, mine, "app/0") == ops.ActiveStatus(f"running: run {run.run_id}")
    assert decide_unit(replace(observed, run=make_run(ARMING))) == [Recheck(run.run_id)]
