"""Pod restarts as faults, with real k6, on the emulator's concurrent model (Juju as it runs).

A participant's pod restarts while it arms (its k6 still initializing), while it is armed (k6
paused, the others not yet), while the run runs; the leader's own pod restarts; a rolling
`juju refresh` replaces every pod while idle and during a run. The restarted unit keeps its
name and databag, its containers come back empty and it gets Juju's restart events
(docs/juju-k8s.md). Each run ends with the outcome the protocol states (docs/protocol.md), nobody
is left busy, no k6 runs, and the restarted units take part in the next run.
"""

from __future__ import annotations

import pytest

import k6_workload
from tests.e2e import scripts
from tests.emulator.model import Concurrency, Model
from tests.emulator.target import Target
from tests.support.emulated_runs import assert_all_idle, configure, run_to_end

pytestmark = pytest.mark.timeout(120)

CONCURRENCY = Concurrency(hook_cost=0.1)  # a tenth of Juju's: the runs' shape, in less time
LOST = "(no exit code: the workload ended without a done notice)"


def phase(model: Model) -> str | None:
    """The active run's phase (None when no run is active)."""
    return (model.app.get("run") or {}).get("phase")


def status(model: Model, index: int) -> str | None:
    """Unit `index`'s own report status."""
    return model.unit_view(index).get("status")


def restart(model: Model, index: int) -> None:
    """Restart the unit's pod and run hooks until the new pod has run `start`."""
    unit = model.units[index]
    pod = unit.pod
    model.restart_pod(index)
    model.run_until(lambda: unit.ready_pod > pod, timeout=30)


def next_run_passes_on_every_unit(model: Model, target: Target) -> None:
    """The next run, on every unit (the restarted ones included), passes."""
    before = target.stats()["by_unit"]
    model.config["load-test"] = scripts.shared_iterations(12, vus=3)

    last = run_to_end(model, timeout=60)

    assert last["outcome"] == "passed", last["reason"]
    assert {u: line["exit_code"] for u, line in last["units"].items()} == {
        "k6/0": 0,
        "k6/1": 0,
        "k6/2": 0,
    }
    after = target.stats()["by_unit"]
    assert {u for u in after if after[u] > before.get(u, 0)} == {"k6/0", "k6/1", "k6/2"}
    assert_all_idle(model)


@pytest.mark.parametrize(
    ("case", "victim", "reason"),
    [
        ("arming", 1, f"failed before the start: k6/1 {LOST}"),
        ("armed", 1, f"failed before the start: k6/1 {LOST}"),
        ("running", 1, f"k6/1 {LOST}"),
        ("leader", 0, f"k6/0 {LOST}"),
    ],
)
def test_a_pod_restart_ends_the_run_as_the_protocol_says_and_the_unit_joins_the_next(
    make_model, target, monkeypatch, case, victim, reason
):
    # arming: k6/1's k6 in its init (reported pending: the arm's own wait is shorter here);
    # armed: k6/1's k6 paused while k6/2's agent is slow to commit its own arm
    monkeypatch.setattr(k6_workload, "ARM_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(k6_workload, "RECHECK_WAIT_SECONDS", 0.2)
    arming = case in ("arming", "armed")
    script = scripts.constant_vus(3, "5s")
    if case == "arming":
        script = scripts.slow_init_on("k6/1", 5, script)
    model = make_model(3, configure(target, script), concurrency=CONCURRENCY)
    if case == "armed":
        model.concurrency = Concurrency(0.1, unit_costs={"k6/2": 3.0})
    run_id = model.action(0, "start").results["run-id"]
    if case == "arming":
        model.run_until(lambda: status(model, 1) == "pending", timeout=30)
    elif case == "armed":
        model.run_until(lambda: status(model, 1) == "busy", timeout=30)
        assert status(model, 2) is None  # k6/2's arm has not landed: no release yet
    else:
        model.run_until(lambda: phase(model) == "running", timeout=30)
        model.run_until(lambda: len(target.stats()["by_unit"]) == 3, timeout=10)
    assert phase(model) == ("arming" if arming else "running")

    restart(model, victim)
    model.concurrency = CONCURRENCY  # k6/2's agent as fast as the others again
    model.settle(lambda: model.finished(run_id), timeout=60)

    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("failed", reason)
    assert last["units"][f"k6/{victim}"]["exit_code"] is None
    if arming:
        assert target.stats()["count"] == 0  # aborted before the start: nobody was released
    else:
        others = {u: line["exit_code"] for u, line in last["units"].items() if u != f"k6/{victim}"}
        assert set(others.values()) == {0}  # the others ran their share to the end
    assert [(unit, what) for _, unit, what in model.pod_log] == [
        (f"k6/{victim}", "down"),
        (f"k6/{victim}", "ready"),
    ]
    assert_all_idle(model)
    next_run_passes_on_every_unit(model, target)


def test_a_rolling_refresh_while_idle_replaces_one_pod_at_a_time_highest_first(make_model, target):
    model = make_model(
        3, configure(target, scripts.shared_iterations(6, vus=3)), concurrency=CONCURRENCY
    )
    first = run_to_end(model)
    databags = {u.name: dict(u.unit_data) for u in model.units.values()}

    model.refresh()
    model.run_until(lambda: not model.refreshing, timeout=60)
    model.settle(timeout=30)

    assert [(unit, what) for _, unit, what in model.pod_log] == [
        ("k6/2", "down"),
        ("k6/2", "ready"),
        ("k6/1", "down"),
        ("k6/1", "ready"),
        ("k6/0", "down"),
        ("k6/0", "ready"),
    ]
    times = [when for when, _, _ in model.pod_log]
    assert times == sorted(times)  # the next pod goes down only once the previous one is ready
    assert {u.name: dict(u.unit_data) for u in model.units.values()} == databags
    assert model.app["last_run"] == first and model.leader == 0
    next_run_passes_on_every_unit(model, target)


def test_a_rolling_refresh_during_a_run_ends_it_failed_and_the_next_run_passes(make_model, target):
    model = make_model(
        3, configure(target, scripts.constant_vus(3, "8s")), concurrency=CONCURRENCY
    )
    run_id = model.action(0, "start").results["run-id"]
    model.run_until(lambda: phase(model) == "running", timeout=30)

    model.refresh()
    model.settle(lambda: model.finished(run_id) and not model.refreshing, timeout=60)

    last = model.app["last_run"]
    lost = [u for u, line in sorted(last["units"].items()) if line["exit_code"] is None]
    assert "k6/2" in lost  # the first pod replaced, seconds before the load ends
    assert {last["units"][u]["exit_code"] for u in last["units"] if u not in lost} <= {0}
    assert (last["outcome"], last["reason"]) == ("failed", "; ".join(f"{u} {LOST}" for u in lost))
    assert [unit for _, unit, what in model.pod_log if what == "down"] == ["k6/2", "k6/1", "k6/0"]
    assert_all_idle(model)
    next_run_passes_on_every_unit(model, target)
