"""Builders for the synchronized-task decision tables: runs, unit reports and observations.

Shared by the unit tests of the library's decisions, records and stand-in charm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    IDLE,
    PENDING,
    Action,
    Concluded,
    Observed,
    Outcome,
    Run,
    UnitReport,
)

RUN_ID = "r1"
OLD_RUN_ID = "r0"
UNITS = ("app/0", "app/1", "app/2")
CREATED = 1000.0
DEADLINE = 1120.0
NOW = 1010.0
SHA = "ab" * 32
MISMATCH = "the payload in the app databag does not match its digest"
PREPARED: Mapping[str, Any] = {}  # Workload.prepare's info (none)
CONCLUDED = Concluded()  # Workload.conclude's (nothing)


def make_run(
    phase: str = ARMING,
    participants: tuple[str, ...] = UNITS,
    *,
    run_id: str = RUN_ID,
    reason: str = "",
    stop_deadline: float | None = None,
    released: Mapping[str, list[float | None]] | None = None,
    start_at: float | None = None,
    expected_s: float | None = None,
    payload_sha256: str = SHA,
    info: Mapping[str, Any] | None = None,
    deadline: float = DEADLINE,
    prepared: Mapping[str, Any] | None = PREPARED,
    watcher: str = "app/0",
) -> Run:
    """A run frozen at CREATED with an arm deadline at DEADLINE.

    By default its once-per-run steps are done (prepared, watched by the leader app/0): the
    tables of those steps pass `prepared=None` / `watcher=""`.
    """
    return Run(
        run_id=run_id,
        phase=phase,
        participants=participants,
        created=CREATED,
        deadline=deadline,
        payload_sha256=payload_sha256,
        info=dict(info or {}),
        expected_s=expected_s,
        released=dict(released or {}),
        start_at=start_at,
        reason=reason,
        stop_deadline=stop_deadline,
        prepared=prepared,
        watcher=watcher,
    )


def address_of(unit: str) -> str:
    return f"10.0.0.{int(unit.rsplit('/', 1)[1]) + 10}:7000"


def idle() -> UnitReport:
    """A unit that has never taken part in any run."""
    return UnitReport()


def pending(unit: str, run_id: str = RUN_ID) -> UnitReport:
    """The workload started for the run, not yet seen ready."""
    return UnitReport(endpoint=address_of(unit), status=PENDING, run_id=run_id)


def armed(unit: str, run_id: str = RUN_ID, started_at: float | None = None) -> UnitReport:
    """Armed (or already released) for the run."""
    return UnitReport(endpoint=address_of(unit), status=BUSY, run_id=run_id, started_at=started_at)


def done(
    unit: str, run_id: str = RUN_ID, exit_code: int | None = 0, error: str = ""
) -> UnitReport:
    """Reported its end for the run."""
    return UnitReport(
        endpoint=address_of(unit), status=IDLE, run_id=run_id, exit_code=exit_code, error=error
    )


def observed(
    run: Run | None = None,
    units: Mapping[str, UnitReport] | None = None,
    *,
    me: str = "app/0",
    leader: bool = True,
    running: bool = False,
    now: float = NOW,
    probed_ready: frozenset[str] | None = None,
    instant: bool = False,
    lead: float = 2.0,
    payload_ok: bool = True,
    notice: Mapping[str, str] | None = None,
    stop_requested: bool = False,
    released: Mapping[str, Outcome] | None = None,
    done: tuple[Action, ...] = (),
    abort_requested: str = "",
    prepare_error: str = "",
    concluded: Concluded | None = CONCLUDED,
) -> Observed:
    """An observation; by default every unit of UNITS is present and idle.

    By default the workload has concluded in this hook (`concluded=None`: not yet).
    """
    return Observed(
        me=me,
        is_leader=leader,
        run=run,
        units=dict(units) if units is not None else {u: idle() for u in UNITS},
        running=running,
        now=now,
        instant_release=instant,
        lead_s=lead,
        payload_ok=payload_ok,
        notice=notice,
        stop_requested=stop_requested,
        probed_ready=probed_ready,
        released=released,
        done=done,
        abort_requested=abort_requested,
        prepare_error=prepare_error,
        concluded=concluded,
    )


def all_armed(run_id: str = RUN_ID) -> dict[str, UnitReport]:
    return {u: armed(u, run_id) for u in UNITS}
