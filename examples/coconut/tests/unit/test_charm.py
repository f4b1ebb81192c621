"""CoconutCharm with ops.testing: the actions and the library's steps as this charm meets them."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    IDLE,
    RUNNING,
    LastRun,
    Run,
    UnitLine,
    UnitReport,
    digest,
)
from ops import pebble, testing

import eater
from charm import LEAD_SECONDS, CoconutCharm

ME, OTHER = "coconut-eater/0", "coconut-eater/1"
NOW = 1_700_000_000.0


# ------------------------------------------------------------------ arranging states


def app_bag(run: Run | None = None, coconuts: int = 10, last: LastRun | None = None) -> dict:
    """The application databag as the library writes it (one JSON value per field)."""
    bag = {}
    if run is not None:
        bag["run"] = json.dumps(run.to_dict())
        bag["payload"] = json.dumps({"coconuts": coconuts})
    if last is not None:
        bag["last_run"] = json.dumps(last.to_dict())
    return bag


def unit_bag(report: UnitReport) -> dict[str, str]:
    """A unit databag as the library writes it."""
    return {key: json.dumps(value) for key, value in asdict(report).items()}


def a_run(phase: str = ARMING, coconuts: int = 10, start_at: float | None = None) -> Run:
    return Run(
        run_id="r1",
        phase=phase,
        participants=(ME, OTHER),
        created=NOW,
        deadline=NOW + 60,
        payload_sha256=digest({"coconuts": coconuts}),
        info={"coconuts": coconuts},
        start_at=start_at,
    )


def eat_layer(status: pebble.ServiceStatus) -> dict[str, Any]:
    """The container as it is after an arm: the eat service in the plan, in `status`."""
    layer = pebble.Layer({"services": {eater.SERVICE: {"command": "true"}}})
    return {"layers": {eater.SERVICE: layer}, "service_statuses": {eater.SERVICE: status}}


def state(
    *,
    leader: bool = True,
    app: dict | None = None,
    mine: UnitReport | None = None,
    other: UnitReport | None = None,
    work: Path | None = None,
    service: pebble.ServiceStatus | None = None,
    notices: tuple[testing.Notice, ...] = (),
) -> testing.State:
    relation = testing.PeerRelation(
        "tasks",
        local_app_data=app or {},
        local_unit_data=unit_bag(mine) if mine else {},
        peers_data={1: unit_bag(other) if other else {}},
    )
    mounts = {"work": testing.Mount(location=eater.WORKDIR, source=work)} if work else {}
    container = testing.Container(
        "eater",
        can_connect=True,
        mounts=mounts,
        notices=list(notices),
        **(eat_layer(service) if service else {}),
    )
    return testing.State(leader=leader, relations={relation}, containers={container})


def load(bag: dict[str, str], key: str) -> Any:
    return json.loads(bag[key]) if key in bag else None


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(CoconutCharm)


# ------------------------------------------------------------------ eat


def test_eat_on_the_leader_freezes_the_run_and_arms_its_own_share(ctx):
    out = ctx.run(ctx.on.action("eat", params={"coconuts": 10}), state())

    relation = out.get_relation(next(iter(out.relations)).id)
    run = load(relation.local_app_data, "run")
    assert run["phase"] == ARMING
    assert run["participants"] == [ME, OTHER]
    assert load(relation.local_app_data, "payload") == {"coconuts": 10}
    mine = load(relation.local_unit_data, "status"), load(relation.local_unit_data, "run_id")
    assert mine == (BUSY, run["run_id"])
    container = out.get_container("eater")
    command = container.plan.services[eater.SERVICE].command
    assert command == eater.service_command(eater.eat_script(range(0, 5)), run["run_id"])
    assert container.service_statuses[eater.SERVICE] == pebble.ServiceStatus.ACTIVE
    assert ctx.action_results == {"run-id": run["run_id"], "units": f"{ME},{OTHER}"}
    assert out.app_status == testing.MaintenanceStatus("arming 1/2")


def test_eat_on_a_non_leader_is_refused(ctx):
    with pytest.raises(testing.ActionFailed, match="only the leader starts a run"):
        ctx.run(ctx.on.action("eat", params={"coconuts": 10}), state(leader=False))


@pytest.mark.parametrize("coconuts", [0, -3, 1_000_001])
def test_eat_with_coconuts_out_of_range_fails_saying_the_range(ctx, coconuts):
    with pytest.raises(testing.ActionFailed, match="coconuts must be from 1 to 1000000") as e:
        ctx.run(ctx.on.action("eat", params={"coconuts": coconuts}), state())

    relation = e.value.state.get_relation(next(iter(e.value.state.relations)).id)
    assert "run" not in relation.local_app_data


def test_eat_while_a_run_is_active_is_refused_naming_it(ctx):
    with pytest.raises(testing.ActionFailed, match="run r1 is already active"):
        ctx.run(ctx.on.action("eat", params={"coconuts": 10}), state(app=app_bag(a_run())))


def test_eat_when_the_container_is_unreachable_fails_with_the_reason(ctx):
    state_in = state()
    container = next(iter(state_in.containers))
    unreachable = testing.State(
        leader=True,
        relations=state_in.relations,
        containers={testing.Container(container.name, can_connect=False)},
    )

    with pytest.raises(testing.ActionFailed, match="did not start: failed before the start") as e:
        ctx.run(ctx.on.action("eat", params={"coconuts": 10}), unreachable)

    app = next(iter(e.value.state.relations)).local_app_data
    assert load(app, "run") is None  # ended in this hook: the other unit never saw it
    last = load(app, "last_run")
    assert last["outcome"] == "failed"
    assert "workload container unreachable" in last["reason"]


# ------------------------------------------------------------------ the instant


def test_last_unit_armed_leader_schedules_the_instant_and_hands_it_over_in_same_hook(
    ctx, tmp_path
):
    armed = UnitReport(status=BUSY, run_id="r1")
    state_in = state(
        app=app_bag(a_run()),
        mine=armed,
        other=armed,
        work=tmp_path,
        service=pebble.ServiceStatus.ACTIVE,
    )
    relation = next(iter(state_in.relations))
    before = time.time()

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=1), state_in)

    after = time.time()
    bag = out.get_relation(relation.id)
    run = load(bag.local_app_data, "run")
    assert run["phase"] == RUNNING
    assert before + LEAD_SECONDS <= run["start_at"] <= after + LEAD_SECONDS
    assert (tmp_path / eater.START_FILE).read_text() == f"{run['start_at']:.6f}\n"
    assert before <= load(bag.local_unit_data, "started_at") <= after


def test_a_non_leader_hands_over_the_instant_when_the_run_starts(ctx, tmp_path):
    armed = UnitReport(status=BUSY, run_id="r1")
    state_in = state(
        leader=False,
        app=app_bag(a_run(RUNNING, start_at=NOW + 2)),
        mine=armed,
        other=armed,
        work=tmp_path,
        service=pebble.ServiceStatus.ACTIVE,
    )
    relation = next(iter(state_in.relations))

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=1), state_in)

    assert (tmp_path / eater.START_FILE).read_text() == f"{NOW + 2:.6f}\n"
    assert load(out.get_relation(relation.id).local_unit_data, "started_at") is not None


# ------------------------------------------------------------------ the end


def ended_in(work: Path, coconuts: range, started: float) -> None:
    """What the shell leaves behind: one line per coconut, and its start time."""
    (work / eater.EATEN_FILE).write_text("".join(f"{i}\n" for i in coconuts))
    (work / eater.STARTED_FILE).write_text(f"{started:.9f}\n")


def done(exit_code: str = "0") -> testing.Notice:
    return testing.Notice(eater.NOTICE_KEY, last_data={"run_id": "r1", "exit_code": exit_code})


def test_done_notice_reports_what_this_unit_ate(ctx, tmp_path):
    ended_in(tmp_path, range(0, 5), NOW + 2.001)
    notice = done()
    state_in = state(
        leader=False,
        app=app_bag(a_run(RUNNING, start_at=NOW + 2)),
        mine=UnitReport(status=BUSY, run_id="r1", started_at=NOW + 0.5),
        other=UnitReport(status=BUSY, run_id="r1", started_at=NOW + 0.6),
        work=tmp_path,
        service=pebble.ServiceStatus.INACTIVE,
        notices=(notice,),
    )
    container = next(iter(state_in.containers))

    out = ctx.run(ctx.on.pebble_custom_notice(container, notice), state_in)

    bag = next(iter(out.relations)).local_unit_data
    assert load(bag, "status") == IDLE
    assert load(bag, "exit_code") == 0
    assert load(bag, "result") == {"eaten": 5, "started": pytest.approx(NOW + 2.001)}


def test_leader_tallies_when_the_last_unit_reports(ctx, tmp_path):
    ended_in(tmp_path, range(0, 5), NOW + 2.001)
    notice = done()
    other = UnitReport(
        status=IDLE,
        run_id="r1",
        exit_code=0,
        result={"eaten": 5, "started": NOW + 2.004},
        started_at=NOW + 0.6,
    )
    state_in = state(
        app=app_bag(a_run(RUNNING, start_at=NOW + 2)),
        mine=UnitReport(status=BUSY, run_id="r1", started_at=NOW + 0.5),
        other=other,
        work=tmp_path,
        service=pebble.ServiceStatus.INACTIVE,
        notices=(notice,),
    )
    container = next(iter(state_in.containers))

    out = ctx.run(ctx.on.pebble_custom_notice(container, notice), state_in)

    app = next(iter(out.relations)).local_app_data
    assert load(app, "run") is None
    last = load(app, "last_run")
    assert (last["outcome"], last["reason"]) == ("passed", "")
    assert last["aggregate"]["eaten"] == 10
    assert last["aggregate"]["start_skew_ms"] == pytest.approx(3.0, abs=0.01)
    assert last["units"][OTHER]["line"]["eaten"] == 5
    assert out.app_status.message.startswith("idle; last run r1 passed, 10/10 coconuts eaten")


# ------------------------------------------------------------------ results and stop


def test_results_show_outcome_counts_and_start_skew(ctx):
    last = LastRun(
        run_id="r1",
        outcome="failed",
        reason=f"lost during the run: {OTHER}",
        created=NOW,
        started=NOW + 2,
        ended=NOW + 5,
        duration_s=3.0,
        spread_ms=None,
        units={
            ME: UnitLine(exit_code=0, late_ms=0.0, line={"eaten": 5, "started": NOW + 2.001}),
            OTHER: UnitLine(lost=True),
        },
        aggregate={"requested": 10, "eaten": 5, "start_skew_ms": 0.0},
    )

    ctx.run(ctx.on.action("results"), state(leader=False, app=app_bag(last=last)))

    assert ctx.action_results == {
        "run-id": "r1",
        "outcome": "failed",
        "reason": f"lost during the run: {OTHER}",
        "requested": "10",
        "eaten": "5",
        "start-skew-ms": "0.0",
        "units": {
            "coconut-eater-0": {"eaten": "5", "lost": "false", "late-ms": "0.0"},
            "coconut-eater-1": {"eaten": "-", "lost": "true", "late-ms": "-"},
        },
    }


def test_results_before_any_run_fails_saying_how_to_start_one(ctx):
    with pytest.raises(testing.ActionFailed, match="no run has ended yet"):
        ctx.run(ctx.on.action("results"), state())


def test_stop_moves_the_run_to_stopping_and_stops_the_local_eater(ctx, tmp_path):
    armed = UnitReport(status=BUSY, run_id="r1", started_at=NOW + 0.5)
    state_in = state(
        app=app_bag(a_run(RUNNING, start_at=NOW + 2)),
        mine=armed,
        other=armed,
        work=tmp_path,
        service=pebble.ServiceStatus.ACTIVE,
    )

    out = ctx.run(ctx.on.action("stop"), state_in)

    run = load(next(iter(out.relations)).local_app_data, "run")
    assert (run["phase"], run["reason"]) == ("stopping", "stopped by user")
    container = out.get_container("eater")
    assert container.service_statuses[eater.SERVICE] == pebble.ServiceStatus.INACTIVE
    assert ctx.action_results == {"run-id": "r1", "message": "stopping run r1"}


def test_stop_on_a_non_leader_is_refused(ctx):
    with pytest.raises(testing.ActionFailed, match="only the leader stops a run"):
        ctx.run(ctx.on.action("stop"), state(leader=False))
