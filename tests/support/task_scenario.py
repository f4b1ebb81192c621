"""A stand-in charm on the synchronized-task library for ops.testing, and builders for its state.

`context(workload, release)` is a Context of a minimal charm (a `start` and a `stop` action)
whose `Workload` is a `FakeWorkload` that records every call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import ops
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    Aggregate,
    ApiRelease,
    AppData,
    ArmFailed,
    Concluded,
    InstantRelease,
    LastRun,
    Prepared,
    Run,
    Share,
    SynchronizedTask,
    TaskRefused,
    UnitReport,
    Workload,
    digest,
)
from ops import testing

from tests.support.raw_server import release_request
from tests.support.task_observations import RUN_ID, UNITS

NOTICE_KEY = "example.com/done"
CLOCK = 5000.0  # the stand-in's clock: every run is created now
ADDRESS = "127.0.0.1"  # the unit's bind address (its pod IP)
PAYLOAD = {"size": 12}
META = {
    "name": "app",
    "containers": {"worker": {"resource": "worker-image"}},
    "resources": {"worker-image": {"type": "oci-image"}},
    "peers": {"peers": {"interface": "synchronized_task_peers"}},
}
ACTIONS = {
    "start": {"params": {"size": {"type": "integer", "default": 12}}},
    "stop": {},
    "abort": {"params": {"reason": {"type": "string", "default": "aborted"}}},
}


@dataclass
class FakeWorkload(Workload):
    """Records every call; answers as configured."""

    ready_at_arm: bool = True
    ready_later: bool = False
    alive: bool = True
    arm_failure: str = ""
    outcome: dict[str, Any] | None = None
    probed: frozenset[str] = frozenset()
    prepared: Prepared = field(default_factory=Prepared)
    concluded: Concluded = field(default_factory=Concluded)
    stopper_codes: Mapping[int, str] = field(default_factory=dict)  # exit code -> stop_run
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def called(self, name: str) -> list[Any]:
        return [args for call, args in self.calls if call == name]

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        self.calls.append(("arm", (run.run_id, dict(payload), share, address)))
        if self.arm_failure:
            raise ArmFailed(self.arm_failure)
        return self.ready_at_arm

    def ready(self, run: Run, address: str) -> bool:
        self.calls.append(("ready", (run.run_id, address)))
        return self.ready_later

    def running(self) -> bool:
        self.calls.append(("running", ()))
        return self.alive

    def halt(self) -> None:
        self.calls.append(("halt", ()))
        self.alive = False

    def result(self, run: Run) -> dict[str, Any] | None:
        self.calls.append(("result", run.run_id))
        return self.outcome

    def release_request(self, endpoint: str) -> bytes:
        self.calls.append(("release_request", endpoint))
        return release_request(endpoint)

    def probe(self, endpoints: Mapping[str, str]) -> frozenset[str]:
        self.calls.append(("probe", dict(endpoints)))
        return self.probed

    def stop_remote(self, endpoints: Sequence[str]) -> None:
        self.calls.append(("stop_remote", list(endpoints)))

    def release_at(self, run: Run, instant: float) -> None:
        self.calls.append(("release_at", (run.run_id, instant)))

    def prepare(self, run: Run, endpoints: Mapping[str, str], address: str) -> Prepared:
        self.calls.append(("prepare", run.run_id))
        return self.prepared

    def watch(self, run: Run, endpoints: Mapping[str, str]) -> None:
        self.calls.append(("watch", run.run_id))

    def conclude(
        self,
        run: Run,
        payload: Mapping[str, Any],
        reports: Mapping[str, UnitReport],
        address: str,
    ) -> Concluded:
        self.calls.append(("conclude", run.run_id))
        return self.concluded

    def stops_everyone(self, exit_code: int | None) -> str:
        return self.stopper_codes.get(exit_code, "") if exit_code is not None else ""


AggregateFn = Callable[[Run, Mapping[str, UnitReport], float], Aggregate]


def stand_in(
    workload: FakeWorkload, release: ApiRelease | InstantRelease, aggregate: AggregateFn | None
) -> type[ops.CharmBase]:
    """A minimal charm on the library: a `start` and a `stop` action, nothing else."""

    class StandInCharm(ops.CharmBase):
        def __init__(self, framework: ops.Framework):
            super().__init__(framework)
            self.task = SynchronizedTask(
                self,
                "peers",
                workload,
                container="worker",
                notice_key=NOTICE_KEY,
                release=release,
                aggregate=aggregate,
                clock=lambda: CLOCK,
            )
            framework.observe(self.on.start_action, self._on_start)
            framework.observe(self.on.stop_action, self._on_stop)
            framework.observe(self.on.abort_action, self._on_abort)

        def _on_start(self, event: ops.ActionEvent) -> None:
            try:
                run = self.task.start(
                    {"size": event.params["size"]},
                    info={"label": "demo"},
                    arm_timeout=60,
                    expected_s=30,
                )
            except TaskRefused as e:
                event.fail(str(e))
                return
            event.set_results({"run-id": run.run_id})

        def _on_stop(self, event: ops.ActionEvent) -> None:
            try:
                run = self.task.stop()
            except TaskRefused as e:
                event.fail(str(e))
                return
            event.set_results({"stopped": run.run_id if run else ""})

        def _on_abort(self, event: ops.ActionEvent) -> None:
            run = self.task.abort(event.params["reason"])  # TaskRefused off the leader: a crash
            event.set_results({"aborted": run.run_id if run else ""})

    return StandInCharm


def context(
    workload: FakeWorkload,
    release: ApiRelease | InstantRelease | None = None,
    *,
    unit_id: int = 0,
    aggregate: AggregateFn | None = None,
) -> testing.Context:
    charm = stand_in(workload, release or InstantRelease(lead=2.0), aggregate)
    return testing.Context(charm, meta=META, actions=ACTIONS, unit_id=unit_id)


def app_bag(
    run: Run | None = None, payload: Mapping[str, Any] | None = None, last: LastRun | None = None
) -> dict[str, str]:
    """The app databag as the library writes it: each field one JSON value."""
    if run is not None and payload is None:
        payload = PAYLOAD
    return {
        "run": json.dumps(run.to_dict() if run else None),
        "payload": json.dumps(dict(payload) if payload is not None else None),
        "last_run": json.dumps(last.to_dict() if last else None),
    }


def unit_bag(report: UnitReport) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in asdict(report).items()}


def peers(
    app: dict[str, str] | None = None,
    mine: UnitReport | None = None,
    others: Mapping[int, UnitReport] | None = None,
) -> testing.PeerRelation:
    return testing.PeerRelation(
        "peers",
        local_app_data=app or {},
        local_unit_data=unit_bag(mine) if mine else {},
        peers_data={i: unit_bag(r) for i, r in (others or {}).items()},
    )


def worker(*notices: testing.Notice) -> testing.Container:
    """The workload container, with the Pebble notices it holds."""
    return testing.Container("worker", can_connect=True, notices=list(notices))


def done_notice(run_id: str, exit_code: int) -> testing.Notice:
    return testing.Notice(NOTICE_KEY, last_data={"run_id": run_id, "exit_code": str(exit_code)})


def state(
    relation: testing.PeerRelation | None,
    *,
    leader: bool = True,
    container: testing.Container | None = None,
) -> testing.State:
    return testing.State(
        leader=leader,
        relations=[relation] if relation else [],
        containers=[container or worker()],
        networks=[testing.Network("peers", [testing.BindAddress([testing.Address(ADDRESS)])])],
    )


def app_out(out: testing.State, relation: testing.PeerRelation) -> AppData:
    bag = out.get_relation(relation.id).local_app_data
    return AppData(
        **{k: json.loads(v) for k, v in bag.items() if k in ("run", "payload", "last_run")}
    )


def unit_out(out: testing.State, relation: testing.PeerRelation) -> UnitReport:
    bag = out.get_relation(relation.id).local_unit_data
    known = {f.name for f in fields(UnitReport)}
    return UnitReport(**{k: json.loads(v) for k, v in bag.items() if k in known})


def scenario_run(
    phase: str = ARMING,
    participants: tuple[str, ...] = UNITS,
    payload: Mapping[str, Any] = PAYLOAD,
    **overrides: Any,
) -> Run:
    """A run as `start` froze it at CLOCK - 10 with the payload's digest."""
    values: dict[str, Any] = {
        "run_id": RUN_ID,
        "phase": phase,
        "participants": participants,
        "created": CLOCK - 10,
        "deadline": CLOCK + 50,
        "payload_sha256": digest(payload),
        "info": {"label": "demo"},
        **overrides,
    }
    return Run(**values)


def at(endpoint: str, status: str = BUSY, **kw: Any) -> UnitReport:
    """A report for RUN_ID: reached at `endpoint` ("" under InstantRelease)."""
    return UnitReport(endpoint=endpoint, status=status, run_id=RUN_ID, **kw)
