"""Unit tests for protocol: the unit and leader decision tables, the run model, the verdicts.

Every test builds an `Observed` by hand and asserts the exact decision, so each reads as one row
of the protocol's table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    ARMING,
    BUSY,
    FAILED,
    IDLE,
    PASSED,
    PENDING,
    RUNNING,
    STOP_GRACE_SECONDS,
    STOPPED,
    STOPPED_BY_USER,
    STOPPING,
    Abort,
    Arm,
    Collect,
    Finish,
    Observed,
    Recheck,
    Resume,
    Run,
    UnitData,
)

RUN_ID = "r1"
OLD_RUN_ID = "r0"
UNITS = ("k6/0", "k6/1", "k6/2")
CREATED = 1000.0
DEADLINE = 1120.0
NOW = 1010.0


def make_run(
    phase: str = ARMING,
    participants: tuple[str, ...] = UNITS,
    *,
    run_id: str = RUN_ID,
    reason: str = "",
    stop_deadline: float | None = None,
    resumed: Mapping[str, list[float | None]] | None = None,
) -> Run:
    """A run frozen at CREATED with an arm deadline at DEADLINE."""
    return Run(
        run_id=run_id,
        phase=phase,
        participants=participants,
        script_name="load.js",
        script_sha256="ab" * 32,
        source="config",
        created=CREATED,
        deadline=DEADLINE,
        reason=reason,
        stop_deadline=stop_deadline,
        resumed=resumed or {},
    )


def endpoint_of(unit: str) -> str:
    return f"10.0.0.{int(unit.rsplit('/', 1)[1]) + 10}:6565"


def idle() -> UnitData:
    """A unit that has never taken part in any run."""
    return UnitData()


def pending(unit: str, run_id: str = RUN_ID) -> UnitData:
    """k6 started for the run, not yet seen paused."""
    return UnitData(endpoint=endpoint_of(unit), status=PENDING, run_id=run_id)


def armed(unit: str, run_id: str = RUN_ID) -> UnitData:
    """k6 paused (or resumed) for the run."""
    return UnitData(endpoint=endpoint_of(unit), status=BUSY, run_id=run_id)


def done(unit: str, run_id: str = RUN_ID, exit_code: int | None = 0, error: str = "") -> UnitData:
    """Reported its end for the run."""
    return UnitData(
        endpoint=endpoint_of(unit), status=IDLE, run_id=run_id, exit_code=exit_code, error=error
    )


def observed(
    run: Run | None = None,
    units: Mapping[str, UnitData] | None = None,
    *,
    me: str = "k6/0",
    leader: bool = True,
    service_running: bool = False,
    now: float = NOW,
    probed_ready: frozenset[str] | None = None,
) -> Observed:
    """An observation; by default every unit of UNITS is present and idle."""
    return Observed(
        me=me,
        is_leader=leader,
        run=run,
        units=dict(units) if units is not None else {u: idle() for u in UNITS},
        service_running=service_running,
        now=now,
        probed_ready=probed_ready,
    )


def all_armed(run_id: str = RUN_ID) -> dict[str, UnitData]:
    return {u: armed(u, run_id) for u in UNITS}


# ============================================================ decide_unit: participant


def test_participant_arms_when_run_is_arming_and_not_armed_yet():
    run = make_run(ARMING)

    assert protocol.decide_unit(observed(run, me="k6/1")) == [Arm(run)]


def test_participant_arms_even_when_its_own_databag_is_not_in_the_observation():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/2": idle()}

    assert protocol.decide_unit(observed(run, units, me="k6/1")) == [Arm(run)]


def test_participant_with_stale_data_from_another_run_arms_for_the_new_run():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0", OLD_RUN_ID), "k6/1": idle(), "k6/2": idle()}

    assert protocol.decide_unit(observed(run, units, service_running=True)) == [Arm(run)]


def test_arming_participant_rechecks_while_k6_runs_but_is_not_yet_paused():
    run = make_run(ARMING)
    units = {"k6/0": pending("k6/0"), "k6/1": idle(), "k6/2": idle()}

    assert protocol.decide_unit(observed(run, units, service_running=True)) == [Recheck(RUN_ID)]


def test_armed_participant_waits_for_the_resume_while_k6_is_paused():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": idle(), "k6/2": idle()}

    assert protocol.decide_unit(observed(run, units, service_running=True)) == []


def test_arming_participant_whose_k6_exited_before_the_pause_collects_without_stopping():
    run = make_run(ARMING)
    units = {"k6/0": pending("k6/0"), "k6/1": idle(), "k6/2": idle()}

    decision = protocol.decide_unit(observed(run, units, service_running=False))

    assert decision == [Collect(RUN_ID, stop_service=False)]


def test_armed_participant_whose_k6_died_while_paused_collects_without_stopping():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": idle(), "k6/2": idle()}

    decision = protocol.decide_unit(observed(run, units, service_running=False))

    assert decision == [Collect(RUN_ID, stop_service=False)]


def test_running_participant_keeps_running_while_its_service_runs():
    run = make_run(RUNNING)

    decision = protocol.decide_unit(observed(run, all_armed(), service_running=True))

    assert decision == []


def test_running_participant_collects_without_stopping_when_k6_has_ended():
    run = make_run(RUNNING)

    decision = protocol.decide_unit(observed(run, all_armed(), service_running=False))

    assert decision == [Collect(RUN_ID, stop_service=False)]


@pytest.mark.parametrize("mine", [armed("k6/0"), pending("k6/0")], ids=["busy", "pending"])
def test_stopping_participant_with_running_service_collects_and_stops_it(mine: UnitData):
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {**all_armed(), "k6/0": mine}

    decision = protocol.decide_unit(observed(run, units, service_running=True))

    assert decision == [Collect(RUN_ID, stop_service=True)]


def test_stopping_participant_whose_k6_already_ended_collects_without_stopping():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)

    decision = protocol.decide_unit(observed(run, all_armed(), service_running=False))

    assert decision == [Collect(RUN_ID, stop_service=False)]


@pytest.mark.parametrize("phase", [ARMING, RUNNING, STOPPING])
def test_participant_that_reported_its_end_does_nothing_more(phase: str):
    run = make_run(phase)
    units = {**all_armed(), "k6/0": done("k6/0", exit_code=107, error="SyntaxError")}

    assert protocol.decide_unit(observed(run, units)) == []


@pytest.mark.parametrize("phase", [RUNNING, STOPPING])
def test_participant_that_never_armed_does_not_arm_once_the_run_left_arming(phase: str):
    run = make_run(phase)
    units = {**all_armed(), "k6/0": idle()}

    assert protocol.decide_unit(observed(run, units)) == []


# ============================================================ decide_unit: bystander / no run


def test_idle_unit_without_a_run_does_nothing():
    assert protocol.decide_unit(observed(None)) == []


def test_idle_bystander_of_a_run_does_nothing():
    run = make_run(RUNNING, participants=("k6/1", "k6/2"))

    assert protocol.decide_unit(observed(run, me="k6/0")) == []


def test_bystander_with_running_service_collects_and_stops_it():
    run = make_run(RUNNING, participants=("k6/1", "k6/2"))
    units = {"k6/0": armed("k6/0", OLD_RUN_ID), "k6/1": armed("k6/1"), "k6/2": armed("k6/2")}

    decision = protocol.decide_unit(observed(run, units, me="k6/0", service_running=True))

    assert decision == [Collect(OLD_RUN_ID, stop_service=True)]


@pytest.mark.parametrize("status", [PENDING, BUSY])
def test_unit_left_busy_after_its_run_ended_collects_without_stopping(status: str):
    units = {
        "k6/0": UnitData(endpoint=endpoint_of("k6/0"), status=status, run_id=OLD_RUN_ID),
        "k6/1": idle(),
    }

    decision = protocol.decide_unit(observed(None, units, service_running=False))

    assert decision == [Collect(OLD_RUN_ID, stop_service=False)]


def test_unit_still_running_k6_after_its_run_ended_collects_and_stops_it():
    units = {"k6/0": armed("k6/0", OLD_RUN_ID)}

    decision = protocol.decide_unit(observed(None, units, service_running=True))

    assert decision == [Collect(OLD_RUN_ID, stop_service=True)]


def test_idle_unit_with_a_stray_service_and_no_run_stops_it():
    units = {"k6/0": done("k6/0", OLD_RUN_ID)}

    decision = protocol.decide_unit(observed(None, units, service_running=True))

    assert decision == [Collect(OLD_RUN_ID, stop_service=True)]


def test_unit_decisions_do_not_depend_on_leadership():
    run = make_run(ARMING)

    as_leader = protocol.decide_unit(observed(run, me="k6/2", leader=True))
    as_follower = protocol.decide_unit(observed(run, me="k6/2", leader=False))

    assert as_leader == as_follower == [Arm(run)]


# ============================================================ decide_leader: arming


def test_no_leader_decision_without_a_run():
    assert protocol.decide_leader(observed(None, all_armed())) == []


def test_leader_waits_while_some_participants_are_still_arming():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": pending("k6/1"), "k6/2": idle()}

    assert protocol.decide_leader(observed(run, units)) == []


def test_leader_resumes_when_every_participant_is_busy_for_the_run():
    run = make_run(ARMING)

    decision = protocol.decide_leader(observed(run, all_armed()))

    assert decision == [
        Resume({"k6/0": "10.0.0.10:6565", "k6/1": "10.0.0.11:6565", "k6/2": "10.0.0.12:6565"})
    ]


def test_leader_resumes_participants_in_the_frozen_order():
    run = make_run(ARMING, participants=("k6/2", "k6/0"))

    (decision,) = protocol.decide_leader(observed(run, all_armed()))

    assert isinstance(decision, Resume)
    assert list(decision.endpoints.items()) == [
        ("k6/2", "10.0.0.12:6565"),
        ("k6/0", "10.0.0.10:6565"),
    ]


def test_leader_resumes_only_participants_not_units_that_joined_after_the_start():
    run = make_run(ARMING, participants=("k6/0", "k6/1"))
    units = {"k6/0": armed("k6/0"), "k6/1": armed("k6/1"), "k6/3": idle()}

    decision = protocol.decide_leader(observed(run, units))

    assert decision == [Resume({"k6/0": "10.0.0.10:6565", "k6/1": "10.0.0.11:6565"})]


def test_leader_resumes_an_armed_run_even_after_the_arm_deadline():
    run = make_run(ARMING)

    decision = protocol.decide_leader(observed(run, all_armed(), now=DEADLINE + 30))

    assert [type(d) for d in decision] == [Resume]


def test_stale_unit_data_for_another_run_does_not_count_as_armed():
    run = make_run(ARMING)
    units = {**all_armed(), "k6/1": armed("k6/1", OLD_RUN_ID)}

    assert protocol.decide_leader(observed(run, units)) == []


def test_pending_participant_does_not_count_as_armed_until_probed_ready():
    run = make_run(ARMING)
    units = {**all_armed(), "k6/2": pending("k6/2")}

    assert protocol.decide_leader(observed(run, units, probed_ready=frozenset())) == []


def test_leader_probes_participants_still_initializing_once_every_one_has_started():
    run = make_run(ARMING)
    units = {**all_armed(), "k6/2": pending("k6/2")}

    decision = protocol.decide_leader(observed(run, units))

    assert decision == [protocol.Probe({"k6/2": units["k6/2"].endpoint})]


def test_leader_does_not_probe_while_a_participant_has_not_started():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": pending("k6/1"), "k6/2": idle()}

    assert protocol.decide_leader(observed(run, units)) == []


def test_leader_resumes_when_the_probe_finds_the_initializing_participant_ready():
    run = make_run(ARMING)
    units = {**all_armed(), "k6/2": pending("k6/2")}

    decision = protocol.decide_leader(observed(run, units, probed_ready=frozenset({"k6/2"})))

    assert decision == [Resume({u: units[u].endpoint for u in UNITS})]


def test_leader_aborts_naming_units_not_armed_by_deadline():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": pending("k6/1"), "k6/2": armed("k6/2", OLD_RUN_ID)}

    decision = protocol.decide_leader(observed(run, units, now=DEADLINE + 0.001))

    assert decision == [Abort("not armed within the arm-timeout: k6/1, k6/2")]


def test_leader_does_not_abort_at_exactly_the_arm_deadline():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": pending("k6/1"), "k6/2": armed("k6/2")}

    decision = protocol.decide_leader(observed(run, units, now=DEADLINE, probed_ready=frozenset()))

    assert decision == []


def test_leader_aborts_when_participant_departs_before_start():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/2": armed("k6/2")}

    decision = protocol.decide_leader(observed(run, units))

    assert decision == [Abort("k6/1 departed before the start")]


def test_leader_abort_names_every_departed_participant_in_run_order():
    run = make_run(ARMING, participants=("k6/0", "k6/2", "k6/1"))
    units = {"k6/0": armed("k6/0")}

    decision = protocol.decide_leader(observed(run, units))

    assert decision == [Abort("k6/2, k6/1 departed before the start")]


def test_departure_is_reported_before_a_failure_or_the_deadline():
    run = make_run(ARMING)
    units = {"k6/0": done("k6/0", exit_code=107), "k6/1": pending("k6/1")}

    decision = protocol.decide_leader(observed(run, units, now=DEADLINE + 1))

    assert decision == [Abort("k6/2 departed before the start")]


def test_leader_aborts_when_a_participant_fails_before_the_start():
    run = make_run(ARMING)
    units = {
        "k6/0": armed("k6/0"),
        "k6/1": done("k6/1", exit_code=107, error="SyntaxError: Unexpected token"),
        "k6/2": done("k6/2", exit_code=None, error="workload container unreachable"),
    }

    decision = protocol.decide_leader(observed(run, units))

    assert decision == [
        Abort(
            "failed before the start: k6/1 (exit code 107: SyntaxError: Unexpected token); "
            "k6/2 (no exit code: workload container unreachable)"
        )
    ]


def test_failure_before_the_start_is_reported_instead_of_the_deadline():
    run = make_run(ARMING)
    units = {"k6/0": armed("k6/0"), "k6/1": done("k6/1", exit_code=0), "k6/2": pending("k6/2")}

    decision = protocol.decide_leader(observed(run, units, now=DEADLINE + 1))

    assert decision == [Abort("failed before the start: k6/1 (exit code 0)")]


# ============================================================ decide_leader: running / stopping


def test_leader_waits_while_participants_are_still_running():
    run = make_run(RUNNING)
    units = {**all_armed(), "k6/0": done("k6/0")}

    assert protocol.decide_leader(observed(run, units, now=DEADLINE + 10_000)) == []


def test_running_run_finishes_when_every_participant_reported_its_end():
    run = make_run(RUNNING)
    units = {u: done(u) for u in UNITS}

    assert protocol.decide_leader(observed(run, units)) == [Finish(lost=())]


def test_running_run_finishes_without_departed_unit_and_records_it_lost():
    run = make_run(RUNNING)
    units = {"k6/0": done("k6/0"), "k6/2": done("k6/2", exit_code=99)}

    assert protocol.decide_leader(observed(run, units)) == [Finish(lost=("k6/1",))]


def test_running_run_waits_for_a_departed_units_peers_before_finishing():
    run = make_run(RUNNING)
    units = {"k6/0": done("k6/0"), "k6/2": armed("k6/2")}

    assert protocol.decide_leader(observed(run, units)) == []


def test_running_run_whose_participants_all_departed_finishes_with_all_lost():
    run = make_run(RUNNING)

    assert protocol.decide_leader(observed(run, {"k6/5": idle()})) == [Finish(lost=UNITS)]


def test_stopping_run_waits_for_armed_units_before_the_stop_deadline():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"k6/0": done("k6/0", exit_code=103), "k6/1": armed("k6/1"), "k6/2": pending("k6/2")}

    assert protocol.decide_leader(observed(run, units)) == []


def test_stopping_run_treats_never_armed_units_as_done():
    run = make_run(STOPPING, reason="not armed", stop_deadline=NOW + 60)
    units = {
        "k6/0": done("k6/0", exit_code=103),
        "k6/1": idle(),
        "k6/2": armed("k6/2", OLD_RUN_ID),
    }

    assert protocol.decide_leader(observed(run, units)) == [Finish(lost=())]


def test_stopping_run_finishes_without_departed_unit_and_records_it_lost():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"k6/0": done("k6/0", exit_code=103), "k6/2": idle()}

    assert protocol.decide_leader(observed(run, units)) == [Finish(lost=("k6/1",))]


def test_stop_deadline_records_silent_units_lost():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"k6/0": done("k6/0", exit_code=103), "k6/2": armed("k6/2")}  # k6/1 departed

    decision = protocol.decide_leader(observed(run, units, now=NOW + 60.5))

    assert decision == [Finish(lost=("k6/1", "k6/2"))]


def test_stop_deadline_lists_departed_units_before_silent_ones():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"k6/0": pending("k6/0"), "k6/1": done("k6/1", exit_code=103)}

    decision = protocol.decide_leader(observed(run, units, now=NOW + 61))

    assert decision == [Finish(lost=("k6/2", "k6/0"))]


def test_stopping_run_keeps_waiting_at_exactly_the_stop_deadline():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)
    units = {"k6/0": done("k6/0", exit_code=103), "k6/1": armed("k6/1"), "k6/2": armed("k6/2")}

    assert protocol.decide_leader(observed(run, units, now=NOW + 60)) == []


LEADER_SCENARIOS = {
    "all armed": (make_run(ARMING), all_armed(), NOW),
    "arm deadline": (make_run(ARMING), {u: pending(u) for u in UNITS}, DEADLINE + 1),
    "departed": (make_run(ARMING), {"k6/0": armed("k6/0")}, NOW),
    "failed": (make_run(ARMING), {**all_armed(), "k6/1": done("k6/1", exit_code=107)}, NOW),
    "all done": (make_run(RUNNING), {u: done(u) for u in UNITS}, NOW),
    "stop deadline": (make_run(STOPPING, reason="x", stop_deadline=NOW), all_armed(), NOW + 1),
}


@pytest.mark.parametrize("scenario", LEADER_SCENARIOS.values(), ids=LEADER_SCENARIOS.keys())
def test_non_leader_never_gets_leader_decisions(
    scenario: tuple[Run, dict[str, UnitData], float],
):
    run, units, now = scenario

    assert protocol.decide_leader(observed(run, units, leader=False, now=now)) == []
    assert protocol.decide_leader(observed(run, units, leader=True, now=now)) != []


# ============================================================ property


UNIT_NAMES = [f"k6/{i}" for i in range(5)]
any_unit_state = st.builds(
    UnitData,
    endpoint=st.sampled_from(["", "10.0.0.1:6565"]),
    status=st.sampled_from([IDLE, PENDING, BUSY]),
    run_id=st.sampled_from(["", OLD_RUN_ID, RUN_ID]),
    exit_code=st.sampled_from([None, 0, 99, 105]),
)
armed_state = st.builds(
    UnitData,
    endpoint=st.sampled_from(["10.0.0.1:6565", "10.0.0.2:6565"]),
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
    phase=st.sampled_from(protocol.PHASES),
    now=st.sampled_from([NOW, DEADLINE, DEADLINE + 1]),
    stop_deadline=st.sampled_from([None, NOW - 1, NOW + 60]),
)
def test_leader_resumes_only_when_every_participant_is_armed_while_arming(
    participants: list[str],
    units: dict[str, UnitData],
    phase: str,
    now: float,
    stop_deadline: float | None,
):
    run = make_run(phase, tuple(participants), stop_deadline=stop_deadline)

    decision = protocol.decide_leader(observed(run, units, now=now))

    every_armed = all(p in units and units[p].armed_for(RUN_ID) for p in participants)
    resumes = [d for d in decision if isinstance(d, Resume)]
    if resumes:
        assert phase == ARMING and every_armed
        assert resumes == [Resume({p: units[p].endpoint for p in participants})]
    elif phase == ARMING and every_armed:
        pytest.fail(f"every participant armed while arming, but decided {decision}")
    assert len(decision) <= 1
    assert protocol.decide_leader(observed(run, units, now=now, leader=False)) == []


# ============================================================ Run model


def test_run_round_trips_through_json_as_the_databag_stores_it():
    run = Run(
        run_id="r-7",
        phase=STOPPING,
        participants=("k6/0", "k6/10", "k6/2"),
        script_name="spike.js",
        script_sha256="0f" * 32,
        source="relation:webapp",
        created=1000.25,
        deadline=1120.25,
        environment={"TARGET": "http://webapp:8080", "TOKEN": "a=b,c"},
        thresholds="http_req_failed rate<0.01",
        resumed={"k6/0": [1001.0, 1001.5], "k6/10": [1001.0, None], "k6/2": [None, None]},
        reason="resume failed: k6/10: no answer within 3.0s",
        stop_deadline=1061.5,
    )

    stored = json.dumps(run.to_dict())
    back = Run.from_dict(json.loads(stored))

    assert back == run
    assert back.participants == ("k6/0", "k6/10", "k6/2")
    assert json.loads(stored)["participants"] == ["k6/0", "k6/10", "k6/2"]


def test_run_with_defaults_round_trips_through_json():
    run = make_run(ARMING)

    assert Run.from_dict(json.loads(json.dumps(run.to_dict()))) == run


def test_run_to_dict_holds_plain_json_types():
    run = make_run(RUNNING, resumed={"k6/0": [1.0, 2.0]})

    data = run.to_dict()

    assert data["participants"] == list(UNITS)
    assert data["resumed"] == {"k6/0": [1.0, 2.0]}
    assert data["environment"] == {}
    assert data["stop_deadline"] is None
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
    run = make_run(ARMING, participants=("k6/2", "k6/0", "k6/10"))

    assert [run.index_of(u) for u in ("k6/2", "k6/0", "k6/10")] == [0, 1, 2]


def test_unit_order_sorts_unit_numbers_numerically():
    names = ["k6/10", "k6/2", "k6/0", "k6/1"]

    assert sorted(names, key=protocol.unit_order) == ["k6/0", "k6/1", "k6/2", "k6/10"]


def test_unit_order_groups_by_application_then_number():
    assert protocol.unit_order("k6/2") < protocol.unit_order("k6/10")
    assert protocol.unit_order("load/9") < protocol.unit_order("mload/0")
    assert protocol.unit_order("k6-k8s/3") == ("k6-k8s", 3)
    assert protocol.unit_order("odd") == ("odd", -1)


def test_unit_data_armed_for_and_finished_are_per_run():
    assert armed("k6/0").armed_for(RUN_ID)
    assert not armed("k6/0").armed_for(OLD_RUN_ID)
    assert not pending("k6/0").armed_for(RUN_ID)
    assert not done("k6/0").armed_for(RUN_ID)
    assert done("k6/0").finished(RUN_ID)
    assert not done("k6/0").finished(OLD_RUN_ID)
    assert not armed("k6/0").finished(RUN_ID)
    assert not idle().finished(RUN_ID)


def test_arming_count_counts_present_participants_armed_for_this_run():
    run = make_run(ARMING, participants=("k6/0", "k6/1", "k6/2", "k6/3"))
    units = {
        "k6/0": armed("k6/0"),
        "k6/1": armed("k6/1", OLD_RUN_ID),
        "k6/2": pending("k6/2"),
        "k6/4": armed("k6/4"),  # not a participant
    }

    assert protocol.arming_count(run, units) == 1


def test_finished_count_counts_present_participants_done_for_this_run():
    run = make_run(RUNNING, participants=("k6/0", "k6/1", "k6/2", "k6/3"))
    units = {
        "k6/0": done("k6/0"),
        "k6/1": done("k6/1", exit_code=99),
        "k6/2": done("k6/2", OLD_RUN_ID),
        "k6/4": done("k6/4"),  # not a participant
    }

    assert protocol.finished_count(run, units) == 2


def test_resumed_moves_to_running_and_keeps_the_acks():
    run = make_run(ARMING)
    acks = {"k6/0": [1010.0, 1010.002], "k6/1": [1010.0, None]}

    after = protocol.resumed(run, acks)

    assert after.phase == RUNNING
    assert after.resumed == acks
    assert after.run_id == run.run_id and after.participants == run.participants
    assert run.phase == ARMING  # the input run is untouched


def test_stopping_sets_stop_deadline_to_now_plus_the_grace():
    run = make_run(RUNNING)

    after = protocol.stopping(run, STOPPED_BY_USER, now=1500.0)

    assert STOP_GRACE_SECONDS == 60.0
    assert after.stop_deadline == 1500.0 + STOP_GRACE_SECONDS == 1560.0
    assert after.phase == STOPPING
    assert after.reason == STOPPED_BY_USER
    assert after.deadline == DEADLINE


# ============================================================ verdicts


def test_resume_spread_is_the_gap_between_first_and_last_ack_in_ms():
    run = make_run(
        RUNNING,
        resumed={
            "k6/0": [1000.0, 1000.5125],
            "k6/1": [1000.0, 1000.5],
            "k6/2": [1000.0, 1000.505],
        },
    )

    assert protocol.resume_spread_ms(run) == 12.5


def test_resume_spread_ignores_units_without_an_ack():
    run = make_run(
        RUNNING, resumed={"k6/0": [1000.0, 1000.25], "k6/1": [1000.0, None], "k6/2": [1000.0]}
    )

    assert protocol.resume_spread_ms(run) == 0.0


@pytest.mark.parametrize(
    "resumed", [{}, {"k6/0": [None, None], "k6/1": [1000.0, None]}], ids=["none", "no acks"]
)
def test_resume_spread_is_none_without_acks(resumed: dict):
    assert protocol.resume_spread_ms(make_run(RUNNING, resumed=resumed)) is None


def test_outcome_is_passed_when_every_participant_exits_zero():
    units = {u: done(u) for u in UNITS}

    assert protocol.outcome_of(make_run(RUNNING), units, ()) == (PASSED, "")


def test_outcome_is_failed_naming_participants_with_a_non_zero_exit():
    units = {
        "k6/0": done("k6/0"),
        "k6/1": done("k6/1", exit_code=99),
        "k6/2": done("k6/2", exit_code=108, error="aborted"),
    }

    assert protocol.outcome_of(make_run(RUNNING), units, ()) == (
        FAILED,
        "k6/1 (exit code 99); k6/2 (exit code 108: aborted)",
    )


def test_outcome_is_failed_when_a_participant_exits_zero_with_an_error():
    units = {**{u: done(u) for u in UNITS}, "k6/1": done("k6/1", error="no summary")}

    assert protocol.outcome_of(make_run(RUNNING), units, ()) == (
        FAILED,
        "k6/1 (exit code 0: no summary)",
    )


def test_outcome_is_failed_when_participants_were_lost():
    units = {"k6/0": done("k6/0"), "k6/2": done("k6/2", exit_code=99)}

    assert protocol.outcome_of(make_run(RUNNING), units, ("k6/1", "k6/2")) == (
        FAILED,
        "lost during the run: k6/1, k6/2",
    )


def test_outcome_is_stopped_when_the_user_stopped_the_run():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW)
    units = {u: done(u, exit_code=103) for u in UNITS}

    assert protocol.outcome_of(run, units, ("k6/2",)) == (STOPPED, STOPPED_BY_USER)


def test_outcome_is_failed_with_the_abort_reason_even_if_every_unit_exited_zero():
    run = make_run(STOPPING, reason="k6/1 departed before the start", stop_deadline=NOW)
    units = {u: done(u) for u in UNITS}

    assert protocol.outcome_of(run, units, ()) == (FAILED, "k6/1 departed before the start")


def test_last_run_record_holds_hand_computed_times_and_per_unit_reports():
    run = make_run(
        RUNNING,
        participants=("k6/0", "k6/1", "k6/2"),
        resumed={"k6/0": [1010.0, 1010.25], "k6/2": [1010.0, 1010.75]},
    )
    summary = {"iterations": {"count": 4}}
    units = {
        "k6/0": UnitData(
            endpoint="10.0.0.10:6565",
            status=IDLE,
            run_id=RUN_ID,
            exit_code=0,
            summary=summary,
            report="<html>k6/0</html>",
        ),
        "k6/2": done("k6/2", OLD_RUN_ID, exit_code=99, error="old failure"),
    }

    record = protocol.last_run_record(
        run, units, lost=("k6/1",), now=1070.75, aggregate={"iterations": 4}
    )

    assert record == {
        "run_id": RUN_ID,
        "source": "config",
        "script_name": "load.js",
        "outcome": FAILED,
        "reason": "lost during the run: k6/1",
        "created": 1000.0,
        "started": 1010.25,
        "ended": 1070.75,
        "duration_s": 60.5,
        "spread_ms": 500.0,
        "units": {
            "k6/0": {
                "exit_code": 0,
                "error": "",
                "lost": False,
                "summary": summary,
                "report": "<html>k6/0</html>",
                "resume": [1010.0, 1010.25],
            },
            "k6/1": {
                "exit_code": None,
                "error": "",
                "lost": True,
                "summary": None,
                "report": "",
                "resume": [],
            },
            "k6/2": {  # stale data from another run is not this run's report
                "exit_code": None,
                "error": "",
                "lost": False,
                "summary": None,
                "report": "",
                "resume": [1010.0, 1010.75],
            },
        },
        "aggregate": {"iterations": 4},
        "thresholds": "",
        "threshold_failures": [],
    }
    json.dumps(record)  # the record goes into the databag as JSON


def test_last_run_record_fails_a_passed_run_on_threshold_failures():
    run = make_run(RUNNING, participants=("k6/0",), resumed={"k6/0": [5.0, 6.0]})
    units = {"k6/0": done("k6/0")}
    failures = ["http_req_duration p(95)<200 (was 250)", "checks rate>0.99 (was 0.5)"]

    record = protocol.last_run_record(run, units, (), now=66.5, threshold_failures=failures)

    assert record["outcome"] == FAILED
    assert record["reason"] == (
        "thresholds failed: http_req_duration p(95)<200 (was 250); checks rate>0.99 (was 0.5)"
    )
    assert record["threshold_failures"] == failures
    assert record["duration_s"] == 60.5
    assert record["spread_ms"] == 0.0
    assert record["aggregate"] == {}


def test_last_run_record_keeps_the_first_failure_reason_over_threshold_failures():
    run = make_run(RUNNING, participants=("k6/0",))
    units = {"k6/0": done("k6/0", exit_code=107)}

    record = protocol.last_run_record(run, units, (), now=2000.0, threshold_failures=["t"])

    assert (record["outcome"], record["reason"]) == (FAILED, "k6/0 (exit code 107)")
    assert record["threshold_failures"] == ["t"]


def test_last_run_record_of_a_run_never_resumed_has_no_start_duration_or_spread():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW)
    units = {u: done(u, exit_code=105) for u in UNITS}

    record = protocol.last_run_record(run, units, (), now=1200.0)

    assert (record["outcome"], record["reason"]) == (STOPPED, STOPPED_BY_USER)
    assert record["started"] is None
    assert record["duration_s"] is None
    assert record["spread_ms"] is None
    assert record["units"]["k6/1"]["exit_code"] == 105


def test_running_participant_reporting_on_another_run_is_recorded_lost():
    run = make_run(RUNNING)
    units = {"k6/0": done("k6/0"), "k6/1": done("k6/1"), "k6/2": idle()}

    decision = protocol.decide_leader(observed(run, units))

    assert decision == [protocol.Finish(lost=("k6/2",))]
