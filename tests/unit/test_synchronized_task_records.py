"""The synchronized-task library's records and verdicts: runs, reports, shares, the last-run
record, the outcome of a run and the status texts (pure functions, no ops.testing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from fractions import Fraction

import ops
import pytest
from charms.k6_k8s.v0 import synchronized_task as lib
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
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
    Aggregate,
    AppData,
    LastRun,
    Run,
    Share,
    UnitLine,
    UnitReport,
    app_status,
    count_armed,
    count_finished,
    digest,
    endpoint_of,
    last_run_record,
    outcome_of,
    release_spread_ms,
    stopping,
    unit_order,
    unit_status,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.task_observations import (
    DEADLINE,
    NOW,
    OLD_RUN_ID,
    RUN_ID,
    UNITS,
    all_armed,
    armed,
    done,
    idle,
    make_run,
    pending,
)

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
