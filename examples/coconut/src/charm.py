#!/usr/bin/env python3
"""Coconut eater: every unit eats its share of the coconuts, all starting at one instant.

A small second charm on charms.k6_k8s.v0.synchronized_task: the library coordinates, `eater`
is the workload, `tally` merges the units' counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import ops
from charms.k6_k8s.v0.synchronized_task import (
    STOPPING,
    InstantRelease,
    SynchronizedTask,
    TaskRefused,
)

from eater import NOTICE_KEY, Eater
from tally import tally

CONTAINER = "eater"
PEER = "tasks"
MAX_COCONUTS = 1_000_000  # as in charmcraft.yaml
LEAD_SECONDS = 2.0  # the start instant is this far ahead of the moment the last unit armed
ARM_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class EatParams:
    """The `eat` action's parameters."""

    coconuts: int = 0

    def __post_init__(self):
        if isinstance(self.coconuts, bool) or not isinstance(self.coconuts, int):
            raise ValueError(f"coconuts must be a whole number, not {self.coconuts!r}")
        if not 1 <= self.coconuts <= MAX_COCONUTS:
            raise ValueError(
                f"coconuts must be from 1 to {MAX_COCONUTS}, not {self.coconuts}: "
                "eat coconuts=<how many in all>"
            )


class CoconutCharm(ops.CharmBase):
    """Eats coconuts on every unit at once."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.task = SynchronizedTask(
            self,
            PEER,
            Eater(self.unit.get_container(CONTAINER)),
            container=CONTAINER,
            notice_key=NOTICE_KEY,
            release=InstantRelease(lead=LEAD_SECONDS),
            aggregate=tally,
        )
        framework.observe(self.on.eat_action, self._on_eat_action)
        framework.observe(self.on.stop_action, self._on_stop_action)
        framework.observe(self.on.results_action, self._on_results_action)

    def _on_eat_action(self, event: ops.ActionEvent) -> None:
        """Freeze a run over every unit present; this unit (the leader) arms in this hook."""
        params = event.load_params(EatParams, errors="fail")
        try:
            run = self.task.start(
                {"coconuts": params.coconuts},
                info={"coconuts": params.coconuts},  # what `tally` sees (not the payload)
                arm_timeout=ARM_TIMEOUT_SECONDS,
            )
        except TaskRefused as e:
            event.fail(str(e))
            return
        event.set_results({"run-id": run.run_id, "units": ",".join(run.participants)})
        active = self.task.run
        if active is None or active.phase == STOPPING:  # it failed in this very hook
            last = self.task.last_run
            reason = active.reason if active else (last.reason if last else "")
            event.fail(f"run {run.run_id} did not start: {reason}")
            return
        event.log(
            f"run {run.run_id}: {params.coconuts} coconuts over {len(run.participants)} units"
        )

    def _on_stop_action(self, event: ops.ActionEvent) -> None:
        """Stop the active run on every unit."""
        try:
            run = self.task.stop()
        except TaskRefused as e:
            event.fail(str(e))
            return
        if run is None:
            event.set_results({"message": "no active run; nothing to stop"})
            return
        event.set_results({"run-id": run.run_id, "message": f"stopping run {run.run_id}"})

    def _on_results_action(self, event: ops.ActionEvent) -> None:
        """The last run: outcome, each unit's count, how far apart the units started."""
        last = self.task.last_run
        if last is None:
            event.fail(f"no run has ended yet: juju run {self.app.name}/leader eat coconuts=100")
            return
        units = {
            unit.replace("/", "-"): {
                "eaten": _text(line.line.get("eaten")),
                "lost": str(line.lost).lower(),
                "late-ms": _text(line.late_ms),
            }
            for unit, line in last.units.items()
        }
        event.set_results(
            {
                "run-id": last.run_id,
                "outcome": last.outcome,
                "reason": last.reason or "-",
                "requested": _text(last.aggregate.get("requested")),
                "eaten": _text(last.aggregate.get("eaten")),
                "start-skew-ms": _text(last.aggregate.get("start_skew_ms")),
                "units": units,
            }
        )


def _text(value: object) -> str:
    """An action result value: '-' for nothing."""
    return "-" if value is None else str(value)


if __name__ == "__main__":  # pragma: nocover
    ops.main(CoconutCharm)
