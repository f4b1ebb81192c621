"""Per-hook side effects on the emulator with real k6: hooks that change nothing touch nothing.

Counts each hook's Pebble calls (recorded by the emulated Pebble) and the charm's k6 REST
requests (the k6_client functions and the library's fan-out, wrapped with counters). No timings
here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import charms.k6_k8s.v0.synchronized_task as library
import pytest

import k6_client
from tests.e2e import scripts
from tests.emulator.model import Hook, Model
from tests.emulator.target import Target

pytestmark = pytest.mark.timeout(90)

HTTP_FUNCTIONS = {  # every way the charm reaches a k6 REST API
    k6_client: ("get_status", "probe_all", "stop_all"),
    library: ("fan_out",),
}
WORKLOAD_CHANGES = ("push", "exec")


@dataclass
class Seen:
    """One hook, with the run and the unit's own status as they were when it started."""

    hook: Hook
    run_before: bool
    unit_status_before: str
    http: Counter[str]

    @property
    def wrote(self) -> bool:
        return bool(self.hook.unit_keys or self.hook.app_keys)

    @property
    def idle(self) -> bool:
        """Not an action; no active run and this unit idle when the hook started."""
        return (
            not self.hook.event.endswith("-action")
            and not self.run_before
            and self.unit_status_before == "idle"
        )


class Watcher:
    """The model's on_hook: each hook with the HTTP requests the charm made during it."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.requests: Counter[str] = Counter()
        self._run = False
        self._status: dict[str, str] = {}

    def counted(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.requests[name] += 1
            return original(*args, **kwargs)

        return call

    def __call__(self, hook: Hook, model: Model) -> None:
        self.seen.append(Seen(hook, self._run, self._status.get(hook.unit, "idle"), self.requests))
        self.requests = Counter()
        self._run = model.app.get("run") is not None
        self._status[hook.unit] = model.unit_view(hook.unit).get("status", "idle")


@pytest.fixture
def watcher(monkeypatch: pytest.MonkeyPatch) -> Watcher:
    """A watcher whose counters see every k6 REST call the charm makes."""
    w = Watcher()
    for module, names in HTTP_FUNCTIONS.items():
        for name in names:
            monkeypatch.setattr(module, name, w.counted(name, getattr(module, name)))
    return w


def test_hooks_that_change_nothing_touch_neither_the_workload_nor_k6(
    make_model, target: Target, watcher: Watcher
):
    config = {
        "load-test": scripts.shared_iterations(6, vus=3),
        "environment": f"TARGET={target.url}",
    }
    model = make_model(3, config, update_status_interval=None, on_hook=watcher)
    model.update_status()
    model.settle(timeout=10)

    run_id = model.action(model.leader, "start").results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=60)
    model.update_status()
    model.settle(timeout=10)

    assert model.app["last_run"]["outcome"] == "passed", model.app["last_run"]["reason"]
    seen = watcher.seen
    assert [s.hook.error for s in seen if s.hook.error] == []
    # The run itself went through the workload and k6's API, so the counters see them.
    assert any("push" in s.hook.pebble_calls for s in seen if s.wrote)
    assert sum(s.http["fan_out"] for s in seen) == 1
    unchanged = [s for s in seen if not s.wrote]
    assert len(unchanged) > 10
    touching = [
        (s.hook.unit, s.hook.event, s.hook.pebble_calls)
        for s in unchanged
        if set(s.hook.pebble_calls) & set(WORKLOAD_CHANGES)
    ]
    assert touching == []
    idle = [s for s in seen if s.idle]
    assert {s.hook.event for s in idle} >= {
        "relation_joined",
        "relation_changed",
        "update_status",
        "leader_elected",
        "pebble_ready",
    }
    assert [(s.hook.unit, s.hook.event, dict(s.http)) for s in idle if s.http] == []
    assert [(s.hook.unit, s.hook.event) for s in idle if s.wrote] == []
    # Idle hooks make no Pebble call, but update-status: its one read (is a k6 running on a unit
    # that believes itself idle?) is how a k6 whose hook failed after starting it gets stopped.
    calls = {
        (s.hook.unit, s.hook.event, s.hook.pebble_calls)
        for s in idle
        if s.hook.pebble_calls and s.hook.event != "update_status"
    }
    assert calls == set()
    update_status_calls = {s.hook.pebble_calls for s in idle if s.hook.event == "update_status"}
    assert update_status_calls == {("get_services",)}
