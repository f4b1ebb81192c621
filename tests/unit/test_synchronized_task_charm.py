"""`SynchronizedTask` on a stand-in charm with ops.testing: what each hook writes and calls.

The stand-in charm, its fake workload and the state builders are tests/support/task_scenario.py;
a release goes to a real local server (tests/support/raw_server.py) on a port the kernel picks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
from charms.k6_k8s.v0 import synchronized_task as lib
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    FAILED,
    IDLE,
    PASSED,
    PENDING,
    RUNNING,
    STOP_GRACE_SECONDS,
    STOPPED_BY_USER,
    STOPPING,
    Aggregate,
    ApiRelease,
    InstantRelease,
    LastRun,
    Run,
    Share,
    UnitLine,
    UnitReport,
    digest,
)
from ops import testing

from tests.support.raw_server import RawServer, Recorder, release_request
from tests.support.task_observations import MISMATCH, OLD_RUN_ID, RUN_ID, UNITS
from tests.support.task_scenario import (
    ADDRESS,
    CLOCK,
    PAYLOAD,
    FakeWorkload,
    app_bag,
    app_out,
    at,
    context,
    done_notice,
    peers,
    scenario_run,
    state,
    unit_out,
    worker,
)

# ============================================================ SynchronizedTask with ops.testing


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


def test_single_unit_start_with_an_instant_takes_five_steps_in_one_hook():
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0))
    relation = peers()

    out = ctx.run(ctx.on.action("start", params={"size": 3}), state(relation))

    run = app_out(out, relation).run
    assert run is not None and run.phase == RUNNING  # Arm, Prepare, Schedule, StartAt, Watch
    assert run.prepared == {} and run.watcher == "app/0"
    assert workload.called("release_at") == [(run.run_id, CLOCK + 2.0)]
    assert not [line for line in ctx.juju_log if line.level == "WARNING"]


def test_reaching_the_step_cap_logs_a_warning_naming_the_last_decisions(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(lib, "MAX_STEPS", 3)  # the same start needs five steps
    workload = FakeWorkload()
    ctx = context(workload, InstantRelease(lead=2.0))
    relation = peers()

    out = ctx.run(ctx.on.action("start", params={"size": 3}), state(relation))

    run = app_out(out, relation).run
    assert run is not None and run.phase == RUNNING  # Arm, Prepare, Schedule carried out
    assert workload.called("release_at") == []  # StartAt is left for the next hook
    warnings = [line.message for line in ctx.juju_log if line.level == "WARNING"]
    assert warnings == [
        "stopped after 3 steps in one hook (MAX_STEPS); the last decisions: Arm, Prepare, "
        "Schedule; "
        "any left are taken in the next hook"
    ]


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
        endpoint=f"{ADDRESS}:7000",
        status=IDLE,
        run_id=RUN_ID,
        exit_code=99,
        result={"items": 5},
        ended_at=CLOCK,
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
    # prepared (nothing to prepare), released, running with each unit's [sent, acked], watched
    # by the leader, and otherwise the run as it was frozen
    frozen = scenario_run(ARMING)
    assert run == replace(
        frozen, phase=RUNNING, released=run.released, prepared={}, watcher="app/0"
    )
    assert workload.called("prepare") == [RUN_ID]
    assert workload.called("watch") == [RUN_ID]
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
        ended_at=CLOCK,
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
