"""Drive the emulated k6 model through a run: its config, one run to the end, nothing left.

Shared by the end-to-end tests (tests/e2e) that run the real charm with real k6.
"""

from __future__ import annotations

from tests.emulator.model import Model
from tests.emulator.target import Target


def configure(target: Target, script: str) -> dict:
    """Config with an inline script aimed at the target."""
    return {"load-test": script, "environment": f"TARGET={target.url}"}


def run_to_end(model: Model, timeout: float = 60.0, **params) -> dict:
    """`start` on the leader, then deliver events until the run is recorded as ended."""
    result = model.action(model.leader, "start", **params)
    run_id = result.results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=timeout)
    return model.app["last_run"]


def assert_all_idle(model: Model) -> None:
    """No unit busy, no k6 process, no active run."""
    assert model.app.get("run") is None
    assert {u.name: model.unit_view(u.index)["status"] for u in model.units.values()} == {
        u.name: "idle" for u in model.units.values()
    }
    assert model.k6_running() == []
