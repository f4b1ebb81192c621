"""The property-based exploration's harness: schedules, the protocol's invariants, one run.

A `Schedule` (units, faults, operations, the charm) runs on the emulator with a `Checker` called
after every hook; `run_schedule` returns the checker with any violation. Used by
tests/e2e/test_properties.py (hypothesis draws the schedules) and tests/e2e/soak.py
(`--replay` runs one printed schedule again); the invariants are listed there.
"""

from __future__ import annotations

import ast
import json
import math
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k6_whole_run import TEARDOWN_PORT
from tests.emulator.model import (
    K6,
    ActionResult,
    CharmUnderTest,
    Concurrency,
    Hook,
    Model,
    decode_databag,
)
from tests.support import task_charm

ROOT = Path(__file__).resolve().parents[2]
STANDIN_BIN = ROOT / "tests" / "emulator" / "standin-bin"
UPDATE_STATUS = 5.0  # seconds of charm clock per update-status tick
ARM_TIMEOUT = 5
ITEMS = 10  # the stand-in charm's task: items split across the units' shares
CLOCK_FILE = ".clock-offset-ns"  # the instant workload's view of the emulated clock offset
# Overlapping hooks: each hook costs 0–60 ms beyond its code (Juju's ~1 s, scaled down), failed
# hooks are retried after 50 ms, 100 ms, … (Juju's 5 s, 10 s, …).
OVERLAP = Concurrency(hook_cost=0.03, jitter=1.0, retry_scale=0.01)

TASK = task_charm.load()
TASK_CHARM = CharmUnderTest(
    TASK.TaskCharm,
    task_charm.ROOT,
    "task",
    TASK.PEER,
    TASK.CONTAINER,
    TASK.WORKDIR,
    TASK.PORT,
    TASK,
)


@dataclass(frozen=True)
class Setup:
    """How one kind of schedule deploys: the charm, its config, its release mechanism."""

    charm: CharmUnderTest
    config: dict[str, Any]
    instant: bool = False
    items: int | None = None  # the task's items, checked in a passed run's aggregate
    k6_path: str = ""


SETUPS = {
    "api": Setup(
        TASK_CHARM, {"release": "api", "arm-timeout": ARM_TIMEOUT, "items": ITEMS}, items=ITEMS
    ),
    "instant": Setup(
        TASK_CHARM,
        {"release": "instant", "arm-timeout": ARM_TIMEOUT, "items": ITEMS},
        instant=True,
        items=ITEMS,
    ),
    "k6": Setup(
        K6,
        {
            "load-test": "export default function () {}\nexport function teardown() {}\n",
            "arm-timeout": ARM_TIMEOUT,
        },
        k6_path=str(STANDIN_BIN),
    ),
}


# ------------------------------------------------------------------ schedules


@dataclass(frozen=True)
class UnitFaults:
    exit_code: int = 0
    die_before_arm: bool = False
    slow_init: bool = False  # ready 0.3 s after it starts (arm waits less: pending first)
    stuck_init: bool = False  # never ready (library charms only: k6's arm waits 30 s for it)


@dataclass(frozen=True)
class Schedule:
    units: int
    seed: int
    faults: tuple[UnitFaults, ...]
    ops: tuple[tuple, ...]
    charm: str = "k6"  # a key of SETUPS (schedules printed before the split ran the k6 charm)
    concurrent: bool = False  # overlapping hooks (the emulator's concurrent mode)


_BUILDERS = {"Schedule": Schedule, "UnitFaults": UnitFaults}


def parse_schedule(text: str) -> Schedule:
    """A schedule as hypothesis prints it (`schedule=Schedule(units=2, ...)`), without eval."""

    def value(node: ast.expr):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Tuple | ast.List):
            return tuple(value(e) for e in node.elts)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _BUILDERS
            and not node.args
        ):
            return _BUILDERS[node.func.id](**{k.arg: value(k.value) for k in node.keywords})
        raise ValueError(f"not part of a printed schedule: {ast.unparse(node)}")

    text = text.strip().removeprefix("schedule=").rstrip(",")
    try:
        schedule = value(ast.parse(text, mode="eval").body)
    except (SyntaxError, TypeError) as e:
        raise ValueError(f"not a printed schedule: {e}") from e
    if not isinstance(schedule, Schedule):
        raise ValueError("not a printed schedule: expected Schedule(...)")
    if schedule.charm not in SETUPS:
        raise ValueError(f"not a printed schedule: charm must be one of {sorted(SETUPS)}")
    return schedule


# ------------------------------------------------------------------ invariants


def _sent(run: dict[str, Any]) -> bool:
    """A release went out for this run: a resume request written, or a start instant set."""
    return run.get("start_at") is not None or any(
        times and times[0] is not None for times in (run.get("released") or {}).values()
    )


@dataclass
class Checker:
    """Checks the protocol's invariants after every hook the model runs."""

    instant: bool = False
    items: int | None = None
    violations: list[str] = field(default_factory=list)
    active: dict | None = None
    last_id: str | None = None
    ended: dict[str, dict] = field(default_factory=dict)  # run id -> its last-run record
    started: list[str] = field(default_factory=list)
    start_at: dict[str, float] = field(default_factory=dict)  # run id -> its start instant
    scheduled_at: dict[str, float] = field(default_factory=dict)  # charm clock, end of that hook
    hooks: list[Hook] = field(default_factory=list)  # every hook checked, in commit order
    released_by: dict[str, float] = field(default_factory=dict)  # run id -> its hook's end (wall)
    finished_in: dict[str, tuple[float, float]] = field(default_factory=dict)  # its hook (wall)
    prepared: set[str] = field(default_factory=set)  # runs seen with Run.prepared set
    unseen: set[str] = field(default_factory=set)  # runs started and ended within one hook

    def fail(self, text: str) -> None:
        self.violations.append(text)

    def __call__(self, hook: Hook, model: Model) -> None:
        self.hooks.append(hook)
        if hook.error:
            self.fail(f"hook crashed: {hook.unit} {hook.event}: {hook.error}")
        app = model.app
        run = app.get("run")
        last = app.get("last_run")
        last_id = last.get("run_id") if last else None
        if run and hook.event == "update_status" and hook.leader:
            self._check_deadlines(hook, model, run)
        before = self.active
        if before and before["phase"] == "arming":
            aborted = run if run and run["run_id"] == before["run_id"] else last
            if aborted and aborted.get("run_id") == before["run_id"]:
                self._check_arm_timeout(hook, model, before, aborted.get("reason", ""))
        if before and run and before["run_id"] != run["run_id"]:
            self.fail(f"(e) run {run['run_id']} replaced active run {before['run_id']}")
        if (
            run
            and _sent(run)
            and not (before and before["run_id"] == run["run_id"] and _sent(before))
        ):
            self._check_release(hook, model, run)
        if last_id is not None and last_id != self.last_id:
            known = before if before and before["run_id"] == last_id else None
            if known is None:
                self.started.append(last_id)  # started and ended within this hook
                self.unseen.add(last_id)
            self._check_ended(hook, model, known, last)
        if before and not run and last_id != before["run_id"]:
            self.fail(f"(d) run {before['run_id']} cleared without its last-run record: {last}")
        if run and not (before and before["run_id"] == run["run_id"]):
            self.started.append(run["run_id"])
        if run and run.get("prepared") is not None:
            self.prepared.add(run["run_id"])
        self.active, self.last_id = run, last_id

    def _check_deadlines(self, hook: Hook, model: Model, run: dict) -> None:
        """(b) the leader's first update-status past a deadline acts on it.

        Past the arm deadline the run leaves `arming` (released or aborted); past the stop
        deadline a stopping run ends, recording whoever never reported as lost.
        """
        now = hook.clock_start  # the charm's clock when the hook began
        late = f"after the leader's update-status at {now:.1f}"
        if run["phase"] == "arming" and now > run["deadline"]:
            units = _view(hook, model)
            self.fail(
                f"(b) run {run['run_id']} still arming {late}, deadline {run['deadline']:.1f}; "
                f"units {units}"
            )
        stop = run.get("stop_deadline")
        if run["phase"] == "stopping" and stop is not None and now > stop:
            self.fail(f"(b) run {run['run_id']} still stopping {late}, stop deadline {stop}")

    def _check_arm_timeout(self, hook: Hook, model: Model, run: dict, reason: str) -> None:
        """(b) a run aborted for the arm-timeout was aborted past its deadline, not before."""
        now = hook.clock_end  # the charm's clock when the hook's code ended
        if "not armed within" in reason and now < run["deadline"]:
            self.fail(f"(b) run {run['run_id']} aborted at {now}, deadline {run['deadline']}")

    def _check_release(self, hook: Hook, model: Model, run: dict) -> None:
        """(a) in the databags: every participant was armed when the leader released them.

        Armed: busy for the run; with ApiRelease also pending (still initializing when it last
        looked), which the leader releases once its probe finds it ready (checked physically
        by `_check_resume_times`). Checked on what the releasing hook read: with overlapping
        hooks a participant may report its end before the release lands.
        """
        run_id = run["run_id"]
        self.released_by[run_id] = hook.started + hook.duration
        if run.get("prepared") is None:
            self.fail(f"(f) run {run_id} released before it was prepared")
        armed = ("busy",) if self.instant else ("busy", "pending")
        view = _view(hook, model)
        for name in run["participants"]:
            data = view.get(name, {})
            # the releasing unit may also have collected its own end within that same hook (a
            # 0.1 s workload, or its stop after a failed release); `_check_resume_times` still
            # checks physically that it was ready before any resume
            if name == hook.unit and (data.get("status"), data.get("run_id")) == ("idle", run_id):
                continue
            if not (data.get("status") in armed and data.get("run_id") == run_id):
                state = (data or "without a report") if name in view else "gone"
                self.fail(f"(a) released run {run_id} while {name} was {state}")
        if run.get("start_at") is not None:
            self.start_at[run_id] = run["start_at"]
            self.scheduled_at[run_id] = hook.clock_end

    def _check_ended(self, hook: Hook, model: Model, run: dict | None, last: dict) -> None:
        """(d) the last-run record matches the units' reports."""
        run_id = last["run_id"]
        self.ended[run_id] = {"at": hook.clock_end, **last}
        self.finished_in[run_id] = (hook.started, hook.started + hook.duration)
        if run and run.get("prepared") is not None:
            self.prepared.add(run_id)
        participants = list(run["participants"]) if run else list(last["units"])
        if set(last["units"]) != set(participants):
            self.fail(f"(d) run {run_id} recorded units {sorted(last['units'])}, {participants}")
        units = last["units"]
        codes = {u: line["exit_code"] for u, line in units.items()}
        outcome, reason = last["outcome"], last["reason"]
        if outcome not in ("passed", "failed", "stopped") or (outcome == "passed") == bool(reason):
            self.fail(f"(d) run {run_id} ended {outcome!r} with reason {reason!r}")
        if (outcome == "stopped") != (reason == "stopped by user"):
            self.fail(f"(d) run {run_id} ended {outcome!r} with reason {reason!r}")
        if outcome == "passed":
            flawed = {u: line for u, line in units.items() if line["error"] or line["lost"]}
            if set(codes.values()) != {0} or flawed or last.get("failures"):
                self.fail(f"(d) run {run_id} passed with exit codes {codes}, flawed {flawed}")
            done = (last.get("aggregate") or {}).get("items")
            if self.items is not None and done != self.items:
                self.fail(f"(d) run {run_id} passed with {done} of {self.items} items done")
        view = _view(hook, model)  # what the finishing hook read
        for name in participants:
            if name not in view:
                continue
            data = view[name]
            line = units.get(name) or {}
            if data.get("run_id") == run_id and (
                data.get("exit_code") != line.get("exit_code")
                or data.get("error", "") != line.get("error", "")
            ):
                self.fail(f"(d) {name} reported {data}, record {line}")
            if outcome == "passed" and data.get("run_id") != run_id:
                self.fail(f"(d) run {run_id} passed without a report from {name}")


def _present(model: Model, name: str) -> bool:
    return any(u.name == name for u in model.units.values())


def _view(hook: Hook, model: Model) -> dict[str, dict]:
    """Every unit's report as `hook` saw it: the others' at its start, its own as it left it."""
    view = {name: decode_databag(data) for name, data in hook.seen.items()}
    if _present(model, hook.unit):
        view[hook.unit] = model.unit_view(hook.unit)
    return view


# ------------------------------------------------------------------ running a schedule


def _configure_faults(model: Model, schedule: Schedule, log_dir: Path) -> None:
    """Each unit's faults (its index's, the last for added units), for both kinds of workload."""
    for unit in model.units.values():
        faults = schedule.faults[min(unit.index, len(schedule.faults) - 1)]
        env = unit.supervisor.extra_env
        init = "1000" if faults.stuck_init else "0.3" if faults.slow_init else "0"
        for prefix in ("K6_STANDIN", "TASK_STANDIN"):
            env[f"{prefix}_EXIT"] = str(faults.exit_code)
            env[f"{prefix}_DIE_BEFORE_ARM"] = "1" if faults.die_before_arm else ""
            env[f"{prefix}_INIT_SECONDS"] = init
        env["K6_STANDIN_LOG"] = str(log_dir / f"{unit.index}.resume")
        env["K6_STANDIN_ARMED_LOG"] = str(log_dir / f"{unit.index}.armed")


def _publish_clock(model: Model) -> None:
    """The emulated clock offset, for workloads that read the time themselves (instant)."""
    text = str(round(model.clock_offset * 1e9))
    for unit in model.units.values():
        tmp = unit.workdir / f"{CLOCK_FILE}.tmp"
        tmp.write_text(text)
        os.replace(tmp, unit.workdir / CLOCK_FILE)


def _tick(model: Model) -> None:
    model.tick(UPDATE_STATUS)
    _publish_clock(model)


def _action(model: Model, name: str) -> ActionResult | None:
    """Run an action on the leader; None if it crashed (the checker records the crash)."""
    try:
        return model.action(model.leader, name)
    except RuntimeError:
        return None


def _apply(model: Model, op: tuple, checker: Checker, log_dir: Path, schedule: Schedule) -> None:
    kind = op[0]
    units = sorted(model.units)
    if kind == "start":
        result = _action(model, "start")
        seen = decode_databag(result.hook.seen_app) if result and result.hook else {}
        if seen.get("run") is not None and result is not None and result.ok:
            checker.fail("(e) start succeeded while a run was active")
    elif kind == "stop":
        _action(model, "stop")
    elif kind == "tick":
        _tick(model)
    elif kind == "hooks":
        model.run_hooks(op[1])
    elif kind == "elect":
        model.elect(units[op[1] % len(units)])
    elif kind == "remove" and len(units) > 1:
        index = units[op[1] % len(units)]
        model.remove_unit(index)
        if index == model.leader:
            model.elect(sorted(model.units)[0])
    elif kind == "add" and len(units) < 4:
        model.add_unit()
        _configure_faults(model, schedule, log_dir)
        _publish_clock(model)
    elif kind == "kill":
        unit = model.units[units[op[1] % len(units)]]
        for service in unit.supervisor.services.values():
            if service.alive and service.process is not None:
                os.killpg(service.process.pid, signal.SIGKILL)
    elif kind == "restart":
        model.restart_pod(units[op[1] % len(units)])
    elif kind == "replay":
        unit = model.units[units[op[1] % len(units)]]
        for key in list(unit.supervisor.notices):
            model._enqueue(unit, "pebble_custom_notice", key=key)  # duplicate, maybe stale
        for other in model.units.values():
            if other is not unit:
                model._enqueue(other, "relation_changed", remote=unit.index)


def _finish(model: Model, checker: Checker, wall_limit: float = 60.0) -> None:
    """Deliver everything, ticking the clock, until no run is active (bounded in wall time)."""
    deadline = time.monotonic() + wall_limit
    while time.monotonic() < deadline:
        model.settle(timeout=30)
        if model.app.get("run") is None and not model.k6_running():
            return
        if any(v.startswith("(b)") for v in checker.violations):
            return  # a deadline was missed already: no need to wait out the wall limit
        time.sleep(0.1)
        _tick(model)
    logs = {
        u.name: [(p.name, p.read_text()[-300:]) for p in u.supervisor.log_dir.glob("*.log")]
        for u in model.units.values()
    }
    checker.fail(f"(b) run never ended: {model.app.get('run')}; service logs {logs}")


def _log_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _events(paths: list[Path], app: str | None = None) -> list[dict]:
    """Every event of these logs, each with `unit` (the log's unit index, when `app` is given)."""
    found = []
    for path in paths:
        if not path.exists():
            continue
        for event in _log_events(path):
            if app is not None:
                event["unit"] = f"{app}/{path.stem}"
            found.append(event)
    return found


def _within(checker: Checker, run_id: str, epoch_ns: int, what: str) -> None:
    """(g) a step of the end ran in the hook that recorded the run's end."""
    start, end = checker.finished_in.get(run_id, (math.inf, -math.inf))
    if not start - 0.001 <= epoch_ns / 1e9 <= end + 0.001:
        checker.fail(f"(g) {what} of run {run_id} at {epoch_ns / 1e9:.3f}, not in its finish hook")


def _landed(steps: list[dict], removed: set[str]) -> list[dict]:
    """The end's steps whose hook could land: a removed unit's count only if nobody else did it.

    A leader removed while its finish hook is in flight has done the step, but its writes never
    land (Juju commits at the hook's end): the new leader finishes the run and does it again.
    Physical and unavoidable (the step and the record cannot be one commit); not a violation.
    """
    kept = [e for e in steps if e.get("unit") not in removed]
    return kept or steps


def _was_prepared(checker: Checker, run_id: str, logged: bool) -> bool:
    """Whether the run was prepared: seen so in the app databag, or, for a run that started and
    ended within one hook (its record never visible between hooks: a one-unit run taking every
    step of it in one hook), as the workload logged it.
    """
    return run_id in checker.prepared or (run_id in checker.unseen and logged)


def _check_once_steps(checker: Checker, model: Model) -> None:
    """(f)/(g) the library's stand-in: prepare once before the release, conclude once at the end.

    Each unit's workload logs its prepare and conclude (tests/support/task_charm, ONCE_LOG).
    """
    units = [*model.units.values(), *model.departed]
    removed = {u.name for u in model.departed}
    events = []
    for u in units:
        for event in _events([w / "once.log" for w in (*u.old_workdirs, u.workdir)]):
            events.append({**event, "unit": u.name})
    for run_id, last in checker.ended.items():
        prepares = [e for e in events if e["event"] == "prepare" and e["run_id"] == run_id]
        concludes = [e for e in events if e["event"] == "conclude" and e["run_id"] == run_id]
        concludes = _landed(concludes, removed)
        if len(prepares) > 1 or len(concludes) > 1:
            checker.fail(f"(f) run {run_id}: {len(prepares)} prepares, {len(concludes)} concludes")
        released = checker.released_by.get(run_id)
        if released is not None and not any(e["epoch_ns"] / 1e9 <= released for e in prepares):
            checker.fail(f"(f) run {run_id} released at {released:.3f} without a prepare before")
        prepared = _was_prepared(checker, run_id, bool(prepares))
        if prepared != bool(concludes) or bool(concludes) != bool(last.get("concluded")):
            checker.fail(
                f"(g) run {run_id}: prepared {prepared}, concluded "
                f"{len(concludes)} time(s), recorded {last.get('concluded')}"
            )
        for event in concludes:
            _within(checker, run_id, event["epoch_ns"], "the conclusion")


def _check_k6_steps(checker: Checker, log_dir: Path, app: str, removed: set[str]) -> None:
    """(f)/(g) k6: setup() once before any resume and its data to every unit before its own;
    teardown() once, in the finish hook, after every participant's k6 exited.

    The stand-ins log every setup, PUT, teardown and exit (tests/support/k6_standin.py).
    """
    events = _events(sorted(log_dir.glob("*.resume")), app)
    for run_id, last in checker.ended.items():
        mine = [e for e in events if e["run_id"] == run_id]
        setups = [e["epoch_ns"] for e in mine if e["event"] == "setup"]
        resumes = [e for e in mine if e["event"] == "resume"]
        teardowns = _landed([e for e in mine if e["event"] == "teardown"], removed)
        if len(setups) > 1 or len(teardowns) > 1:
            checker.fail(f"(f) run {run_id}: {len(setups)} setups, {len(teardowns)} teardowns")
        if resumes and (not setups or max(setups) > min(e["epoch_ns"] for e in resumes)):
            checker.fail(f"(f) run {run_id} resumed before its setup(): {setups}")
        for resume in resumes:
            puts = [
                e["epoch_ns"]
                for e in mine
                if e["event"] == "put_setup" and e["unit"] == resume["unit"]
            ]
            if not any(t <= resume["epoch_ns"] for t in puts):
                checker.fail(f"(f) {resume['unit']} resumed for {run_id} before setup()'s data")
        teardown = (last.get("concluded") or {}).get("teardown") or {}
        if bool(teardowns) != bool(teardown.get("ran")):
            checker.fail(f"(g) run {run_id}: {len(teardowns)} teardown(s), recorded {teardown}")
        if _was_prepared(checker, run_id, bool(setups)) and not teardown:
            checker.fail(f"(g) run {run_id} was prepared and ended without a teardown record")
        exits = [
            e["epoch_ns"]
            for e in mine
            if e["event"] == "exit" and not e["address"].endswith(f":{TEARDOWN_PORT}")
        ]
        for event in teardowns:
            _within(checker, run_id, event["epoch_ns"], "teardown()")
            if exits and event["epoch_ns"] < max(exits):
                checker.fail(f"(g) run {run_id}: teardown() before a participant's k6 exited")


def _check_resume_times(checker: Checker, log_dir: Path, app: str) -> None:
    """(a), physically (ApiRelease): the stand-ins' own logs of when they were armed (paused
    before the run) and when each resume arrived.

    Every resume a stand-in received is one the run's record shows as sent to it, at most one
    per unit and run, and arrived after every participant's stand-in was armed for that run.
    One exception, physical: a leader removed while its release hook is in flight has sent the
    resumes but its writes never land (Juju commits at the hook's end); the record then shows
    that unit lost and nobody released, and the units' own resumes are all that says so.
    """
    armed: dict[tuple[str, str], float] = {}
    for path in log_dir.glob("*.armed"):
        unit = f"{app}/{path.stem}"
        for event in _log_events(path):
            if event["address"].endswith(f":{TEARDOWN_PORT}"):
                continue  # the leader's teardown k6, paused for teardown() only
            armed.setdefault((unit, event["run_id"]), event["epoch_ns"] / 1e9)
    first: dict[str, float] = {}
    count: Counter[tuple[str, str]] = Counter()
    for path in log_dir.glob("*.resume"):
        unit = f"{app}/{path.stem}"
        for event in _log_events(path):
            if event["event"] != "resume":
                continue  # setup, put_setup, teardown, exit: _check_k6_steps
            run_id, arrived = event["run_id"], event["epoch_ns"] / 1e9
            count[unit, run_id] += 1
            first[run_id] = min(first.get(run_id, math.inf), arrived)
            lines = checker.ended.get(run_id, {}).get("units") or {}
            line = lines.get(unit) or {}
            releaser_lost = any(other.get("lost") for other in lines.values())
            if not (line.get("released") or [None])[0] and not releaser_lost:
                checker.fail(f"(a) {unit} got a resume for run {run_id!r} not sent to it: {line}")
    for (unit, run_id), n in count.items():
        if n > 1:
            checker.fail(f"(a) {unit} got {n} resumes for run {run_id}")
    for run_id, arrived in first.items():
        for unit in (checker.ended.get(run_id) or {}).get("units") or {}:
            at = armed.get((unit, run_id))
            if at is None or at > arrived:
                when = "never" if at is None else f"only at {at:.6f}"
                checker.fail(
                    f"(a) run {run_id} released at {arrived:.6f} (first resume received) but "
                    f"{unit} was armed {when}"
                )


def _check_start_times(checker: Checker, model: Model) -> None:
    """(a), physically (InstantRelease): the instant workloads' own logs of ready and start.

    Every start belongs to a run with a start instant, at most one per unit and run, not before
    that instant; every participant's workload was ready before the instant was written.
    """
    ready: dict[tuple[str, str], int] = {}
    starts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for unit in [*model.units.values(), *model.departed]:
        paths = [w / "events.log" for w in (*unit.old_workdirs, unit.workdir)]
        lines = [line for path in paths if path.exists() for line in path.read_text().splitlines()]
        for line in lines:
            run_id, event, ns = line.split()
            if event == "ready":
                ready.setdefault((unit.name, run_id), int(ns))
            else:
                starts[unit.name, run_id].append(int(ns))
    for (unit, run_id), times in starts.items():
        start_at = checker.start_at.get(run_id)
        if start_at is None:
            checker.fail(f"(a) {unit} started run {run_id}, which had no start instant")
            continue
        if len(times) > 1:
            checker.fail(f"(a) {unit} started run {run_id} {len(times)} times")
        if min(times) < start_at * 1e9 - 1000:  # 1 µs: float rounding of the instant
            checker.fail(f"(a) {unit} started run {run_id} at {min(times)}, instant {start_at}")
    for run_id, written in checker.scheduled_at.items():
        for unit in (checker.ended.get(run_id) or {}).get("units") or {}:
            at = ready.get((unit, run_id))
            if at is None or at > written * 1e9:
                when = "never" if at is None else f"only at {at / 1e9:.6f}"
                checker.fail(
                    f"(a) run {run_id} scheduled at {written:.6f} but {unit} was ready {when}"
                )


def run_schedule(
    schedule: Schedule,
    tmp: Path,
    concurrency: Concurrency | None = None,
    observe: Callable[[Hook, Model], None] | None = None,
) -> Checker:
    """Run one schedule, checking the invariants after every hook (then `observe`, if given).

    `concurrency` replaces the overlapping schedules' OVERLAP (for a hand-made schedule).
    """
    setup = SETUPS[schedule.charm]
    checker = Checker(instant=setup.instant, items=setup.items)

    def on_hook(hook: Hook, model: Model) -> None:
        checker(hook, model)
        if observe is not None:
            observe(hook, model)

    log_dir = tmp / f"log-{time.monotonic_ns()}"
    log_dir.mkdir()
    model = Model(
        schedule.units,
        setup.config,
        seed=schedule.seed,
        shuffle=True,
        update_status_interval=None,
        okay_delay=0.05,
        k6_path=setup.k6_path,
        extra_env={
            "PYTHONPATH": str(ROOT),
            "K6_STANDIN_RUN_SECONDS": "0.1",
            "K6_STANDIN_MAX_SECONDS": "60",
            "K6_STANDIN_SETUP_DATA": '{"token":"from-setup"}',
            "TASK_STANDIN_RUN_SECONDS": "0.1",
        },
        on_hook=on_hook,
        charm=setup.charm,
        concurrency=(concurrency or OVERLAP) if schedule.concurrent else None,
        on_pod_restart=lambda unit, m: _publish_clock(m),  # a new pod: the offset file again
    )
    try:
        _configure_faults(model, schedule, log_dir)
        model.settle(timeout=30)
        for op in schedule.ops:
            _apply(model, op, checker, log_dir, schedule)
            model.run_hooks(model.rng.randint(0, 6))
        _finish(model, checker)
        # (c) after the run ends: nobody busy or pending, no workload running
        states = {u.name: model.unit_view(u.index).get("status") for u in model.units.values()}
        if any(s in ("busy", "pending") for s in states.values()):
            checker.fail(f"(c) units left busy or pending: {states}")
        if model.k6_running():
            checker.fail(f"(c) workload still running on {model.k6_running()}")
        if setup.instant:
            _check_start_times(checker, model)
        else:
            _check_resume_times(checker, log_dir, setup.charm.app)
        if setup.charm is K6:
            _check_k6_steps(checker, log_dir, setup.charm.app, {u.name for u in model.departed})
        else:
            _check_once_steps(checker, model)
    finally:
        left = model.close()
        if left:
            checker.fail(f"processes left behind: {left}")
    return checker
