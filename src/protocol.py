"""The run protocol: what each unit and the leader do next, decided from plain data.

No `ops` here: the charm observes, builds an `Observed`, and carries out the returned actions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

ARMING = "arming"
RUNNING = "running"
STOPPING = "stopping"
PHASES = (ARMING, RUNNING, STOPPING)

IDLE = "idle"
PENDING = "arming"  # k6 started, not yet seen paused
BUSY = "busy"

PASSED = "passed"
FAILED = "failed"
STOPPED = "stopped"

STOP_GRACE_SECONDS = 60.0
_UNIT_NUMBER = re.compile(r"/(\d+)$")


def unit_order(name: str) -> tuple[str, int]:
    """Sort key for unit names: k6/2 before k6/10."""
    match = _UNIT_NUMBER.search(name)
    return (name.rsplit("/", 1)[0], int(match.group(1)) if match else -1)


# ------------------------------------------------------------------ databag models


@dataclass
class AppData:
    """The leader-written app databag of the peer relation."""

    status: str = IDLE
    run: dict[str, Any] | None = None
    script: str = ""
    last_run: dict[str, Any] | None = None


@dataclass
class UnitData:
    """One unit's own databag in the peer relation."""

    endpoint: str = ""
    status: str = IDLE
    run_id: str = ""
    exit_code: int | None = None
    error: str = ""
    summary: dict[str, Any] | None = None
    report: str = ""

    @property
    def live(self) -> bool:
        """k6 started for `run_id` and not yet reported ended (arming or busy)."""
        return self.status in (PENDING, BUSY)

    def armed_for(self, run_id: str) -> bool:
        """Paused and ready (or already resumed) for this run."""
        return self.status == BUSY and self.run_id == run_id

    def pending_for(self, run_id: str) -> bool:
        """k6 started for this run but was still initializing when the unit last looked."""
        return self.status == PENDING and self.run_id == run_id

    def finished(self, run_id: str) -> bool:
        """Reported an end (done, failed, stopped) for this run."""
        return self.status == IDLE and self.run_id == run_id


@dataclass(frozen=True)
class Run:
    """The active run as the leader froze it at `start`."""

    run_id: str
    phase: str
    participants: tuple[str, ...]
    script_name: str
    script_sha256: str
    source: str
    created: float
    deadline: float
    environment: Mapping[str, str] = field(default_factory=dict)
    thresholds: str = ""
    resumed: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    reason: str = ""
    stop_deadline: float | None = None
    expected_s: float | None = None

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}")
        object.__setattr__(self, "participants", tuple(self.participants))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """Rebuild from the app databag's JSON (keys a newer revision added are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the app databag."""
        data = asdict(self)
        data["participants"] = list(self.participants)
        data["environment"] = dict(self.environment)
        data["resumed"] = {k: list(v) for k, v in self.resumed.items()}
        return data

    def index_of(self, unit: str) -> int:
        """Position of a participant in the frozen order (its execution segment)."""
        return self.participants.index(unit)


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Arm:
    """Start `k6 run --paused` for this run on this unit and report when paused."""

    run: Run


@dataclass(frozen=True)
class Recheck:
    """k6 is started but was not yet paused: probe the local API again."""

    run_id: str


@dataclass(frozen=True)
class Collect:
    """The local k6 service has ended (or must end): record how, and go idle."""

    run_id: str
    stop_service: bool


@dataclass(frozen=True)
class Probe:
    """Ask the REST API of participants that were still initializing whether they are paused."""

    endpoints: Mapping[str, str]


@dataclass(frozen=True)
class Resume:
    """Resume every participant at once."""

    endpoints: Mapping[str, str]


@dataclass(frozen=True)
class Abort:
    """End the run early: stop every unit; the run ends failed with the reason."""

    reason: str


@dataclass(frozen=True)
class Finish:
    """Every participant has reported: record the outcome and clear the active run."""

    lost: tuple[str, ...] = ()


Action = Arm | Recheck | Collect | Probe | Resume | Abort | Finish


@dataclass(frozen=True)
class Observed:
    """Everything a decision needs; nothing from ops."""

    me: str
    is_leader: bool
    run: Run | None
    units: Mapping[str, UnitData]  # every unit present in the relation, me included
    service_running: bool
    now: float
    probed_ready: frozenset[str] | None = None  # None: no probe in this hook yet


def decide_unit(o: Observed) -> list[Action]:
    """What this unit does for itself, as a participant (or a bystander)."""
    mine = o.units.get(o.me, UnitData())
    run = o.run
    active_mine = run is not None and o.me in run.participants
    if active_mine and run is not None:
        if run.phase == ARMING and mine.run_id != run.run_id:
            return [Arm(run)]
        if mine.run_id == run.run_id and mine.live:
            if run.phase == STOPPING and o.service_running:
                return [Collect(run.run_id, stop_service=True)]
            if not o.service_running:
                return [Collect(run.run_id, stop_service=False)]
            if mine.status == PENDING:
                return [Recheck(run.run_id)]
        return []
    # No run for me: nothing may keep running, nothing may stay busy.
    if mine.live or o.service_running:
        return [Collect(mine.run_id, stop_service=o.service_running)]
    return []


def decide_leader(o: Observed) -> list[Action]:
    """What the leader does for the run as a whole."""
    run = o.run
    if not o.is_leader or run is None:
        return []
    present = [p for p in run.participants if p in o.units]
    departed = [p for p in run.participants if p not in o.units]
    if run.phase == ARMING:
        return _decide_arming(o, run, present, departed)
    finished = [p for p in present if o.units[p].finished(run.run_id)]
    # Reporting on another run: when stopping, a unit that never armed (nothing to wait for);
    # when running (every participant was armed at the resume), not the unit that armed: lost.
    absent = [p for p in present if o.units[p].run_id != run.run_id]
    if run.phase == RUNNING:
        departed = departed + absent
    waiting = [p for p in present if p not in finished and p not in absent]
    if not waiting:
        return [Finish(lost=tuple(departed))]
    if run.stop_deadline is not None and o.now > run.stop_deadline:
        return [Finish(lost=tuple(departed) + tuple(waiting))]
    return []


def _decide_arming(o: Observed, run: Run, present: list[str], departed: list[str]) -> list[Action]:
    """Leader decisions while the participants arm."""
    if departed:
        return [Abort(f"{', '.join(departed)} departed before the start")]
    failed = [p for p in present if o.units[p].finished(run.run_id)]
    if failed:
        details = "; ".join(failure_text(p, o.units[p]) for p in failed)
        return [Abort(f"failed before the start: {details}")]
    ready = o.probed_ready or frozenset()
    armed = {
        p
        for p in run.participants
        if o.units[p].armed_for(run.run_id) or (o.units[p].pending_for(run.run_id) and p in ready)
    }
    if armed == set(run.participants):
        return [Resume({p: o.units[p].endpoint for p in run.participants})]
    pending = [p for p in run.participants if o.units[p].pending_for(run.run_id)]
    all_started = all(p in armed or p in pending for p in run.participants)
    if pending and all_started and o.probed_ready is None:
        return [Probe({p: o.units[p].endpoint for p in pending})]
    if o.now > run.deadline:
        late = [p for p in run.participants if p not in armed]
        return [Abort(f"not armed within the arm-timeout: {', '.join(late)}")]
    return []


def failure_text(unit: str, data: UnitData) -> str:
    """One participant's failure, for messages."""
    code = "no exit code" if data.exit_code is None else f"exit code {data.exit_code}"
    return f"{unit} ({code}{': ' + data.error if data.error else ''})"


# ------------------------------------------------------------------ transitions


def arming_count(run: Run, units: Mapping[str, UnitData]) -> int:
    """How many participants are armed for the run."""
    return sum(1 for p in run.participants if p in units and units[p].armed_for(run.run_id))


def finished_count(run: Run, units: Mapping[str, UnitData]) -> int:
    """How many participants have reported an end for the run."""
    return sum(1 for p in run.participants if p in units and units[p].finished(run.run_id))


def resumed(run: Run, acks: Mapping[str, Sequence[float | None]]) -> Run:
    """The run after a successful resume: phase running, with each unit's sent/ack times."""
    return replace(run, phase=RUNNING, resumed=dict(acks))


def stopping(run: Run, reason: str, now: float) -> Run:
    """The run after a stop or an abort: phase stopping, with a bounded wait for reports."""
    return replace(run, phase=STOPPING, reason=reason, stop_deadline=now + STOP_GRACE_SECONDS)


def resume_acks(run: Run) -> list[float]:
    """When each participant acknowledged its resume (epoch seconds), where it did."""
    return [times[1] for times in run.resumed.values() if len(times) > 1 and times[1]]


def started_at(run: Run) -> float | None:
    """When the load started: the first resume acknowledgement."""
    acks = resume_acks(run)
    return min(acks) if acks else None


def resume_spread_ms(run: Run) -> float | None:
    """Spread of the resume acknowledgements across units, in milliseconds."""
    acks = resume_acks(run)
    if not acks:
        return None
    return round((max(acks) - min(acks)) * 1000, 3)


def outcome_of(run: Run, units: Mapping[str, UnitData], lost: Sequence[str]) -> tuple[str, str]:
    """The run's verdict and reason from the units' reports."""
    if run.reason:
        return (STOPPED if run.reason == STOPPED_BY_USER else FAILED), run.reason
    if lost:
        return FAILED, f"lost during the run: {', '.join(lost)}"
    bad = [
        p
        for p in run.participants
        if p in units and p not in lost and (units[p].exit_code != 0 or units[p].error)
    ]
    if bad:
        return FAILED, "; ".join(failure_text(p, units[p]) for p in bad)
    return PASSED, ""


STOPPED_BY_USER = "stopped by user"


def last_run_record(
    run: Run,
    units: Mapping[str, UnitData],
    lost: Sequence[str],
    now: float,
    aggregate: Mapping[str, Any] | None = None,
    threshold_failures: Sequence[str] = (),
) -> dict[str, Any]:
    """The last-run record the leader writes when the run ends."""
    outcome, reason = outcome_of(run, units, lost)
    if outcome == PASSED and threshold_failures:
        outcome, reason = FAILED, "thresholds failed: " + "; ".join(threshold_failures)
    started = started_at(run)
    per_unit = {}
    for p in run.participants:
        data = units.get(p, UnitData())
        reported = data.run_id == run.run_id
        per_unit[p] = {
            "exit_code": data.exit_code if reported else None,
            "error": data.error if reported else "",
            "lost": p in lost,
            "summary": data.summary if reported else None,
            "report": data.report if reported else "",
            "resume": list(run.resumed.get(p, [])),
        }
    return {
        "run_id": run.run_id,
        "source": run.source,
        "script_name": run.script_name,
        "outcome": outcome,
        "reason": reason,
        "created": run.created,
        "started": started,
        "ended": now,
        "duration_s": round(now - started, 3) if started else None,
        "spread_ms": resume_spread_ms(run),
        "units": per_unit,
        "aggregate": dict(aggregate or {}),
        "thresholds": run.thresholds,
        "threshold_failures": list(threshold_failures),
    }
