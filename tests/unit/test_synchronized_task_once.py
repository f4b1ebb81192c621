"""The synchronized-task library's once-per-run steps, as decision tables and on a charm.

Prepare (the leader, every participant armed, before the release), Watch (the leader, once the
run runs, again on a new leader), Conclude (the leader, every participant ended, before the
record; also after a stop or an abort, but only when Prepare ran), and the aborts that are not
the user's stop: a unit whose end stops everyone, and the charm's `abort(reason)`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    FAILED,
    RUNNING,
    STOPPED_BY_USER,
    STOPPING,
    Abort,
    ApiRelease,
    AppData,
    Conclude,
    Concluded,
    Finish,
    InstantRelease,
    Prepare,
    Prepared,
    Release,
    Schedule,
    Watch,
    decide,
    decide_leader,
    last_run_record,
)
from ops import testing

from tests.support.raw_server import Recorder
from tests.support.task_observations import (
    NOW,
    RUN_ID,
    UNITS,
    address_of,
    all_armed,
    armed,
    done,
    make_run,
    observed,
)
from tests.support.task_scenario import (
    CLOCK,
    FakeWorkload,
    app_bag,
    app_out,
    at,
    context,
    peers,
    scenario_run,
    state,
)

ENDPOINTS = {u: address_of(u) for u in UNITS}


# ------------------------------------------------------------ prepare, before the release


def test_every_participant_armed_and_nothing_prepared_prepares_before_the_release():
    run = make_run(ARMING, prepared=None)

    assert decide_leader(observed(run, all_armed())) == [Prepare(ENDPOINTS)]


def test_once_prepared_the_leader_releases():
    run = make_run(ARMING, prepared={"setup": "done"})

    assert decide_leader(observed(run, all_armed())) == [Release(ENDPOINTS)]


def test_an_instant_release_is_prepared_too_then_scheduled():
    unprepared = observed(make_run(ARMING, prepared=None), all_armed(), instant=True, lead=2.0)
    prepared = observed(make_run(ARMING), all_armed(), instant=True, lead=2.0)

    assert decide_leader(unprepared) == [Prepare(ENDPOINTS)]
    assert decide_leader(prepared) == [Schedule(NOW + 2.0)]


def test_nothing_is_prepared_while_a_participant_is_not_armed():
    units = {**all_armed(), "app/2": replace(armed("app/2"), status="pending")}

    actions = decide_leader(observed(make_run(ARMING, prepared=None), units))

    assert not any(isinstance(a, Prepare) for a in actions)


def test_a_refused_preparation_aborts_before_the_release_with_its_reason():
    run = make_run(ARMING, prepared=None)

    actions = decide_leader(observed(run, all_armed(), prepare_error="setup() failed: boom"))

    assert actions == [Abort("setup() failed: boom")]


# ------------------------------------------------------------ watch, while it runs


def test_a_running_run_nobody_watches_yet_is_watched_by_the_leader():
    run = make_run(RUNNING, watcher="")

    assert decide_leader(observed(run, all_armed())) == [Watch(ENDPOINTS)]


def test_a_new_leader_starts_its_own_watch():
    run = make_run(RUNNING, watcher="app/0")

    actions = decide_leader(observed(run, all_armed(), me="app/1"))

    assert actions == [Watch(ENDPOINTS)]


def test_a_run_the_leader_watches_needs_nothing_more():
    assert decide_leader(observed(make_run(RUNNING, watcher="app/0"), all_armed())) == []


def test_a_stopping_run_is_not_watched():
    run = make_run(STOPPING, watcher="", reason=STOPPED_BY_USER, stop_deadline=NOW + 60)

    assert decide_leader(observed(run, all_armed())) == []


# ------------------------------------------------------------ a unit's end that stops everyone


def test_a_unit_whose_end_stops_everyone_aborts_the_run_naming_it_and_when():
    run = make_run(RUNNING, released={u: [NOW - 5.0, NOW - 5.0] for u in UNITS})
    stopper = replace(done("app/2", exit_code=108), stop_run="aborted the test", ended_at=NOW - 2)
    units = {**all_armed(), "app/2": stopper}

    actions = decide_leader(observed(run, units))

    assert actions == [Abort("app/2 aborted the test, 3.0 s after the start")]


def test_a_unit_that_simply_ended_stops_nobody():
    run = make_run(RUNNING)
    units = {**all_armed(), "app/2": done("app/2", exit_code=0)}

    assert decide_leader(observed(run, units)) == []


def test_a_stopper_seen_while_stopping_changes_nothing():
    run = make_run(STOPPING, reason="earlier", stop_deadline=NOW + 60)
    stopper = replace(done("app/2", exit_code=108), stop_run="aborted the test")

    assert decide_leader(observed(run, {**all_armed(), "app/2": stopper})) == []


# ------------------------------------------------------------ the charm's abort


def test_the_charms_abort_request_aborts_with_its_reason():
    run = make_run(RUNNING)

    actions = decide_leader(observed(run, all_armed(), abort_requested="threshold crossed"))

    assert actions == [Abort("threshold crossed")]


def test_an_abort_request_on_a_stopping_run_changes_nothing():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW + 60)

    assert decide_leader(observed(run, all_armed(), abort_requested="late")) == []


# ------------------------------------------------------------ conclude, after the last end


EVERYONE_DONE = {u: done(u) for u in UNITS}


@pytest.mark.parametrize(
    ("phase", "reason"), [(RUNNING, ""), (STOPPING, STOPPED_BY_USER), (STOPPING, "aborted")]
)
def test_a_prepared_run_everyone_ended_concludes_before_it_finishes(phase, reason):
    deadline = NOW + 60 if phase == STOPPING else None
    run = make_run(phase, reason=reason, stop_deadline=deadline)

    before = decide_leader(observed(run, EVERYONE_DONE, concluded=None))
    after = decide_leader(observed(run, EVERYONE_DONE, concluded=Concluded()))

    assert before == [Conclude()]
    assert after == [Finish(lost=())]


def test_a_run_never_prepared_finishes_without_concluding():
    run = make_run(STOPPING, reason="not armed", stop_deadline=NOW + 60, prepared=None)

    assert decide_leader(observed(run, EVERYONE_DONE, concluded=None)) == [Finish(lost=())]


def test_a_stopping_run_past_its_deadline_concludes_then_finishes_with_the_silent_lost():
    run = make_run(STOPPING, reason=STOPPED_BY_USER, stop_deadline=NOW - 1)
    units = {**EVERYONE_DONE, "app/1": armed("app/1")}

    assert decide_leader(observed(run, units, concluded=None)) == [Conclude()]
    assert decide_leader(observed(run, units)) == [Finish(lost=("app/1",))]


def test_decide_does_not_conclude_twice_in_one_hook():
    run = make_run(RUNNING)

    actions = decide(observed(run, EVERYONE_DONE, concluded=None, done=(Conclude(),)))

    assert actions == []  # the conclusion arrives in the hook's results; until then, wait


def test_a_conclusions_failures_fail_the_run_and_its_info_is_recorded():
    run = make_run(RUNNING)
    concluded = Concluded(info={"teardown": "failed"}, failures=("teardown() failed: boom",))

    record = last_run_record(run, EVERYONE_DONE, (), NOW, None, concluded)

    assert (record.outcome, record.reason) == (FAILED, "teardown() failed: boom")
    assert record.concluded == {"teardown": "failed"}
    assert record.failures == ("teardown() failed: boom",)


def test_a_record_without_a_conclusion_has_an_empty_one():
    record = last_run_record(make_run(RUNNING), EVERYONE_DONE, (), NOW)

    assert record.concluded == {}


# ------------------------------------------------------------ on a charm (ops.testing)


def every_unit_armed_for_an_unprepared_run(raw_server, workload: FakeWorkload) -> AppData:
    """The leader's relation-changed when every unit is armed and the run is not prepared."""
    servers = [raw_server(Recorder()) for _ in UNITS]
    ctx = context(workload, ApiRelease(port=servers[0].port))
    endpoints = [s.endpoint for s in servers]
    run = replace(scenario_run(ARMING), prepared=None)
    others = {1: at(endpoints[1]), 2: at(endpoints[2])}
    relation = peers(app_bag(run), mine=at(endpoints[0]), others=others)
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=2), state(relation))
    return app_out(out, relation)


def test_a_leader_with_every_unit_armed_prepares_then_releases_in_one_hook(raw_server):
    workload = FakeWorkload(prepared=Prepared(info={"data": "token"}))

    after = every_unit_armed_for_an_unprepared_run(raw_server, workload).run
    assert after is not None and after.phase == RUNNING
    assert after.prepared == {"data": "token"}
    assert [c for c, _ in workload.calls if c in ("prepare", "release_request")] == [
        "prepare",
        *["release_request"] * 3,
    ]


def test_a_refused_preparation_stops_every_armed_unit_and_releases_nobody(raw_server):
    workload = FakeWorkload(prepared=Prepared(error="setup() failed on app/0: Error: boom"))

    after = every_unit_armed_for_an_unprepared_run(raw_server, workload).run
    assert after is not None and after.phase == STOPPING
    assert after.reason == "setup() failed on app/0: Error: boom"
    assert workload.called("release_request") == []
    assert [len(e) for e in workload.called("stop_remote")] == [3]  # every armed unit


def test_the_last_end_concludes_and_records_the_conclusion():
    workload = FakeWorkload(concluded=Concluded(info={"teardown": "ran"}))
    ctx = context(workload, ApiRelease(port=7000))
    run = scenario_run(RUNNING, released={u: [CLOCK - 5, CLOCK - 5] for u in UNITS})
    run = replace(run, prepared={}, watcher="app/0")
    ended = {1: done("app/1"), 2: done("app/2")}
    relation = peers(app_bag(run), mine=done("app/0"), others=ended)

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=2), state(relation))

    data = app_out(out, relation)
    assert data.run is None and data.last_run is not None
    assert data.last_run.concluded == {"teardown": "ran"}
    assert workload.called("conclude") == [RUN_ID]


def test_abort_on_a_unit_that_is_not_the_leader_is_refused():
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0), unit_id=1)
    relation = peers(app_bag(scenario_run(RUNNING)))

    with pytest.raises(testing.errors.UncaughtCharmError, match="only the leader aborts"):
        ctx.run(ctx.on.action("abort", params={"reason": "x"}), state(relation, leader=False))


def test_the_charms_abort_stops_the_run_with_its_reason():
    workload = FakeWorkload()
    ctx = context(workload, ApiRelease(port=7000))
    run = replace(scenario_run(RUNNING), prepared={}, watcher="app/0")
    relation = peers(app_bag(run), mine=at("10.0.0.10:7000"), others={1: at("10.0.0.11:7000")})

    out = ctx.run(ctx.on.action("abort", params={"reason": "threshold crossed"}), state(relation))

    after = app_out(out, relation).run
    assert after is not None and (after.phase, after.reason) == (STOPPING, "threshold crossed")
    assert workload.called("stop_remote") == [["10.0.0.10:7000", "10.0.0.11:7000"]]
