"""Property-based exploration: random schedules, faults and start/stop on the emulator.

The k6 processes here are a TEST DOUBLE (tests/support/k6_standin.py: k6's REST API and exit
codes, no load) so that hundreds of runs fit in minutes; real k6 runs in every other e2e test.
Invariants are checked after every hook; a failing schedule is shrunk by hypothesis and printed
(`Falsifying example: ...(schedule=Schedule(...))`); run it again on its own with
`python -m tests.e2e.soak --replay 'Schedule(...)'` (or replay hypothesis' exact bytes with the
printed `@reproduce_failure` blob).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.emulator.model import Hook, Model

ROOT = Path(__file__).resolve().parents[2]
STANDIN_BIN = ROOT / "tests" / "emulator" / "standin-bin"
UPDATE_STATUS = 5.0  # seconds of charm clock per update-status tick
ARM_TIMEOUT = 5
EXAMPLES = int(os.environ.get("K6K8S_SOAK_EXAMPLES", "500"))
# A soak shard explores its own seeded part of the space (tests/e2e/soak.py); CI is derandomized.
SHARD = os.environ.get("K6K8S_SOAK_SHARD")

pytestmark = pytest.mark.timeout(0)


# ------------------------------------------------------------------ schedules


@dataclass(frozen=True)
class UnitFaults:
    exit_code: int = 0
    die_before_arm: bool = False
    slow_init: bool = False


@dataclass(frozen=True)
class Schedule:
    units: int
    seed: int
    faults: tuple[UnitFaults, ...]
    ops: tuple[tuple, ...]


unit_faults = st.builds(
    UnitFaults,
    exit_code=st.sampled_from([0, 0, 0, 99]),
    die_before_arm=st.sampled_from([False, False, False, True]),
    slow_init=st.booleans(),
)
ops = st.one_of(
    st.just(("start",)),
    st.just(("start",)),
    st.just(("stop",)),
    st.just(("tick",)),
    st.tuples(st.just("hooks"), st.integers(1, 8)),
    st.tuples(st.just("elect"), st.integers(0, 4)),
    st.tuples(st.just("remove"), st.integers(0, 4)),
    st.just(("add",)),
    st.tuples(st.just("kill"), st.integers(0, 4)),
    st.tuples(st.just("replay"), st.integers(0, 4)),
)


@st.composite
def schedules(draw) -> Schedule:
    units = draw(st.integers(1, 3))
    faults = tuple(draw(st.lists(unit_faults, min_size=units + 1, max_size=units + 1)))
    return Schedule(
        units=units,
        seed=draw(st.integers(0, 2**16)),
        faults=faults,
        ops=tuple(draw(st.lists(ops, min_size=1, max_size=8))),
    )


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
    return schedule


# ------------------------------------------------------------------ invariants


@dataclass
class Checker:
    """Checks the protocol's invariants after every hook the model runs."""

    violations: list[str] = field(default_factory=list)
    active: dict | None = None
    busy_at: dict[tuple[str, str], float] = field(default_factory=dict)
    ended: dict[str, dict] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.violations.append(text)

    def __call__(self, hook: Hook, model: Model) -> None:
        if hook.error:
            self.fail(f"hook crashed: {hook.unit} {hook.event}: {hook.error}")
        for unit in model.units.values():
            data = model.unit_view(unit.index)
            if data.get("status") == "busy":
                # the start of the hook that armed it: a leader arms and resumes in one hook
                self.busy_at.setdefault((unit.name, data["run_id"]), hook.started)
        run = model.app.get("run")
        if run and hook.event == "update_status" and hook.unit == model.leader_unit.name:
            self._check_deadlines(hook, model, run)
        before = self.active
        if before and run and before["run_id"] != run["run_id"]:
            self.fail(f"(e) run {run['run_id']} replaced active run {before['run_id']}")
        if before and run and before["phase"] == "arming" and run["phase"] == "running":
            self._check_resume(model, run)
        if before and not run:
            self._check_ended(model, before)
        if run and not before:
            self.started.append(run["run_id"])
        self.active = run

    def _check_deadlines(self, hook: Hook, model: Model, run: dict) -> None:
        """(b) the leader's first update-status past a deadline acts on it.

        Past the arm deadline the run leaves `arming` (resumed or aborted); past the stop
        deadline a stopping run ends, recording whoever never reported as lost.
        """
        now = hook.started + model.clock_offset  # the charm's clock when the hook began
        late = f"after the leader's update-status at {now:.1f}"
        if run["phase"] == "arming" and now > run["deadline"]:
            self.fail(f"(b) run {run['run_id']} still arming {late}, deadline {run['deadline']}")
        stop = run.get("stop_deadline")
        if run["phase"] == "stopping" and stop is not None and now > stop:
            self.fail(f"(b) run {run['run_id']} still stopping {late}, stop deadline {stop}")

    def _check_resume(self, model: Model, run: dict) -> None:
        """(a) every participant was armed for this run when the leader resumed."""
        for name in run["participants"]:
            data = model.unit_view(name) if _present(model, name) else {}
            if not (data.get("status") == "busy" and data.get("run_id") == run["run_id"]):
                self.fail(f"(a) resumed run {run['run_id']} while {name} was {data}")

    def _check_ended(self, model: Model, run: dict) -> None:
        """(d) the last run record matches the units' reports; (b) deadline kept."""
        last = model.app.get("last_run") or {}
        run_id = run["run_id"]
        if last.get("run_id") != run_id:
            self.fail(f"(d) run {run_id} cleared without its last-run record: {last}")
            return
        now = time.time() + model.clock_offset
        self.ended[run_id] = {"at": now, **last}
        if "not armed within" in last["reason"] and now > run["deadline"] + UPDATE_STATUS + 15:
            self.fail(f"(b) run {run_id} aborted at {now}, deadline {run['deadline']}")
        codes = {u: r["exit_code"] for u, r in last["units"].items()}
        if last["outcome"] == "passed" and (set(codes.values()) != {0} or last["reason"]):
            self.fail(f"(d) run {run_id} passed with exit codes {codes}: {last['reason']}")
        for name in run["participants"]:
            if not _present(model, name):
                continue
            data = model.unit_view(name)
            if data.get("run_id") == run_id and data.get("exit_code") != codes.get(name):
                self.fail(f"(d) {name} reported {data.get('exit_code')}, record {codes}")
            if last["outcome"] == "passed" and data.get("run_id") != run_id:
                self.fail(f"(d) run {run_id} passed without a report from {name}")


def _present(model: Model, name: str) -> bool:
    return any(u.name == name for u in model.units.values())


# ------------------------------------------------------------------ running a schedule


def _configure_faults(model: Model, schedule: Schedule, log_dir: Path) -> None:
    for unit in model.units.values():
        faults = schedule.faults[min(unit.index, len(schedule.faults) - 1)]
        env = unit.supervisor.extra_env
        env["K6_STANDIN_EXIT"] = str(faults.exit_code)
        env["K6_STANDIN_DIE_BEFORE_ARM"] = "1" if faults.die_before_arm else ""
        env["K6_STANDIN_INIT_SECONDS"] = "0.3" if faults.slow_init else "0"
        env["K6_STANDIN_LOG"] = str(log_dir / f"{unit.name.replace('/', '-')}.resume")


def _apply(model: Model, op: tuple, checker: Checker, log_dir: Path, schedule: Schedule) -> None:
    kind = op[0]
    units = sorted(model.units)
    if kind == "start":
        was_active = model.app.get("run") is not None
        result = model.action(model.leader, "start")
        if was_active and result.ok:
            checker.fail("(e) start succeeded while a run was active")
    elif kind == "stop":
        model.action(model.leader, "stop")
    elif kind == "tick":
        model.tick(UPDATE_STATUS)
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
        unit = model.add_unit()
        _configure_faults(model, schedule, log_dir)
        del unit
    elif kind == "kill":
        unit = model.units[units[op[1] % len(units)]]
        for service in unit.supervisor.services.values():
            if service.alive and service.process is not None:
                os.killpg(service.process.pid, signal.SIGKILL)
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
        time.sleep(0.1)
        model.tick(UPDATE_STATUS)
    logs = {
        u.name: [(p.name, p.read_text()[-300:]) for p in u.supervisor.log_dir.glob("*.log")]
        for u in model.units.values()
    }
    checker.fail(f"(b) run never ended: {model.app.get('run')}; service logs {logs}")


def _check_resume_times(checker: Checker, log_dir: Path) -> None:
    """(a), physically: every resume a k6 received came after all its run's units were busy."""
    for path in log_dir.glob("*.resume"):
        unit = path.stem.replace("-", "/")
        arrivals = [json.loads(line)["epoch_ns"] / 1e9 for line in path.read_text().splitlines()]
        runs = [
            (run_id, last)
            for run_id, last in checker.ended.items()
            if (last["units"].get(unit) or {}).get("resume")
        ]
        if len(arrivals) > len(runs):
            checker.fail(f"(a) {unit} got {len(arrivals)} resumes for {len(runs)} resumed runs")
        for arrived in arrivals:
            armed_before = any(
                all(
                    checker.busy_at.get((p, run_id), float("inf")) <= arrived
                    for p in last["units"]
                )
                for run_id, last in runs
            )
            if not armed_before:
                checker.fail(f"(a) {unit} resumed at {arrived} before its run was fully armed")


def run_schedule(schedule: Schedule, tmp: Path) -> Checker:
    checker = Checker()
    log_dir = tmp / f"log-{time.monotonic_ns()}"
    log_dir.mkdir()
    model = Model(
        schedule.units,
        {"load-test": "export default function () {}", "arm-timeout": ARM_TIMEOUT},
        seed=schedule.seed,
        shuffle=True,
        update_status_interval=None,
        okay_delay=0.05,
        k6_path=str(STANDIN_BIN),
        extra_env={
            "PYTHONPATH": str(ROOT),
            "K6_STANDIN_RUN_SECONDS": "0.1",
            "K6_STANDIN_MAX_SECONDS": "60",
        },
        on_hook=checker,
    )
    try:
        _configure_faults(model, schedule, log_dir)
        model.settle(timeout=30)
        for op in schedule.ops:
            _apply(model, op, checker, log_dir, schedule)
            model.run_hooks(model.rng.randint(0, 6))
        _finish(model, checker)
        # (c) after the run ends: nobody busy, no k6 running
        busy = {u.name: model.unit_view(u.index).get("status") for u in model.units.values()}
        if any(s in ("busy", "arming") for s in busy.values()):
            checker.fail(f"(c) units left busy: {busy}")
        if model.k6_running():
            checker.fail(f"(c) k6 still running on {model.k6_running()}")
        _check_resume_times(checker, log_dir)
    finally:
        left = model.close()
        if left:
            checker.fail(f"processes left behind: {left}")
    return checker


SCHEDULES_RUN: list[int] = []  # the seed of every schedule the property test ran


@pytest.fixture(scope="module", autouse=True)
def every_schedule_ran(request):
    """The promise of CI and the soak: EXAMPLES schedules really ran, not fewer."""
    yield
    if SCHEDULES_RUN and not request.session.testsfailed:
        assert len(SCHEDULES_RUN) >= EXAMPLES, f"{len(SCHEDULES_RUN)} of {EXAMPLES} ran"
        print(f"\n{len(SCHEDULES_RUN)} schedules ran (K6K8S_SOAK_EXAMPLES={EXAMPLES})")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SHARD is None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@given(schedule=schedules())
@hypothesis_seed(int(SHARD or 0))
def test_every_schedule_keeps_the_invariants(schedule: Schedule, tmp_path_factory) -> None:
    SCHEDULES_RUN.append(schedule.seed)
    checker = run_schedule(schedule, tmp_path_factory.mktemp("schedule"))

    assert checker.violations == [], f"seed {schedule.seed}: {checker.violations}"


def test_a_printed_schedule_parses_back_and_replays(tmp_path):
    schedule = Schedule(
        units=2,
        seed=7,
        faults=(UnitFaults(), UnitFaults(exit_code=99), UnitFaults()),
        ops=(("start",), ("hooks", 3), ("kill", 1), ("stop",)),
    )

    replayed = parse_schedule(f"schedule={schedule!r},")
    checker = run_schedule(replayed, tmp_path)

    assert replayed == schedule
    assert checker.violations == []
    assert checker.started and set(checker.started) == set(checker.ended)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/pwned')",
        "Schedule(units=1, seed=0, faults=(), ops=(open('/etc/passwd'),))",
        "UnitFaults()",
        "Schedule(units=1",
        "Schedule(1, 2, (), ())",
    ],
)
def test_anything_but_a_printed_schedule_is_refused(text):
    with pytest.raises(ValueError, match="not a printed schedule|not part of a printed schedule"):
        parse_schedule(text)
