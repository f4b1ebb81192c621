"""Coordination on the concurrent model, and per-hook cost on the emulator.

`coordination`: one run per N on the emulator's concurrent model (Juju as it runs: every unit's
hooks at once, each costing the modelled hook cost beyond its code): wall time from `start` to
the release and from the last unit's end to the last-run record, and the hooks a run takes.
`hooks`: charm time, Pebble and HTTP calls per hook by event kind, from serial runs (one hook at
a time, so each hook's time is its own).
"""

from __future__ import annotations

import os

# Keep this bench's units apart from other emulators on the machine (read at import of the model).
os.environ.setdefault("K6EMU_ADDRESS_BASE", "127.0.60.1")

import contextlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import ops  # noqa: E402
import yaml  # noqa: E402
from charms.k6_k8s.v0 import synchronized_task as task  # noqa: E402
from ops import testing  # noqa: E402

import k6_client  # noqa: E402
from bench import ROOT, Figure, SectionResult  # noqa: E402
from bench.resume_skew import available_memory_mb  # noqa: E402
from tests.emulator.model import ADDRESS_BASE, HOOK_COST, Concurrency, Hook, Model  # noqa: E402

SIZES = (1, 3, 10, 30)
SEEDS = (1, 2, 3)  # shuffled repetitions per N > 1
# BENCH_COORDINATION_SIZES="1,3" / BENCH_COORDINATION_SEEDS="1,2" override (quick checks).
BUDGET_SECONDS = 300.0  # no new shuffled repetition starts after this much section time
K6_RSS_MB = 40.0  # a paused real k6 is ~36 MB (resume_skew measures it)
MEMORY_SHARE = 0.25
RUN_TIMEOUT = 150.0
IDLE_DRAIN = 300  # idle hooks run after the run cleared (samples for the per-hook table)
BARE_ROUNDS = 30
STANDIN_BIN = ROOT / "tests" / "emulator" / "standin-bin"
# The charm's k6 REST calls: k6_client's (wait_ready polls through get_status) and the library's
# release fan-out, each wrapped where the caller looks it up (module globals).
HTTP_FUNCTIONS = {
    "get_status": k6_client,
    "probe_all": k6_client,
    "stop_all": k6_client,
    "fan_out": task,
}
NO_RUN = "none"
IDLE = task.IDLE
LIVE = (task.BUSY, task.PENDING)  # a participant's own status while its k6 is up

_ORIGINAL = {name: getattr(module, name) for name, module in HTTP_FUNCTIONS.items()}


def _log(message: str) -> None:
    print(f"[coordination] {message}", file=sys.stderr, flush=True)


def script(size: int, seconds: float = 0.0) -> str:
    """A tiny test: 2N iterations shared by N VUs (one VU, two iterations per unit).

    Each iteration is a no-op, or a sleep of `seconds` / 2.
    """
    body = f"sleep({seconds / 2:g});" if seconds else ""
    return (
        "import { sleep } from 'k6';\n"
        "export const options = { scenarios: { s: { executor: 'shared-iterations', "
        f"vus: {size}, iterations: {2 * size}, maxDuration: '60s' }} }} }};\n"
        f"export default function () {{ {body} }}\n"
    )


# ---------------------------------------------------------------- HTTP calls the charm makes


class HttpCounter:
    """Counts the charm's k6 REST requests by wrapping the functions it calls."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()

    def _wrap(self, name: str) -> Callable[..., Any]:
        original = _ORIGINAL[name]

        def counted(*args: Any, **kwargs: Any) -> Any:
            target = args[0] if args else next(iter(kwargs.values()))
            self.requests[name] += 1 if name == "get_status" else len(target)
            return original(*args, **kwargs)

        return counted

    @contextlib.contextmanager
    def installed(self) -> Iterator[HttpCounter]:
        """Wrap the functions (wait_ready's own get_status calls included) while active."""
        for name, module in HTTP_FUNCTIONS.items():
            setattr(module, name, self._wrap(name))
        try:
            yield self
        finally:
            for name, module in HTTP_FUNCTIONS.items():
                setattr(module, name, _ORIGINAL[name])

    def take(self) -> Counter[str]:
        """The requests since the last take."""
        taken, self.requests = self.requests, Counter()
        return taken


# ---------------------------------------------------------------- one record per hook


@dataclass
class HookRecord:
    """One hook with the model's state just before and after it."""

    hook: Hook
    leader: bool
    phase_before: str
    phase_after: str
    status_before: str  # the unit's own databag status
    status_after: str
    http: Counter[str]

    @property
    def wrote(self) -> bool:
        """The hook changed relation data."""
        return bool(self.hook.unit_keys or self.hook.app_keys)

    @property
    def writes_nothing_but_pushes(self) -> bool:
        """Changed no relation data yet pushed a file or ran a command in the workload."""
        return not self.wrote and any(c in ("push", "exec") for c in self.hook.pebble_calls)


class Recorder:
    """The model's on_hook: records every hook with the state around it."""

    def __init__(self, http: HttpCounter) -> None:
        self.http = http
        self.records: list[HookRecord] = []
        self.phase = NO_RUN
        self.status: dict[str, str] = {}

    def __call__(self, hook: Hook, model: Model) -> None:
        run = model.app.get("run")
        phase = run["phase"] if run else NO_RUN
        status = model.unit_view(hook.unit).get("status", IDLE)
        self.records.append(
            HookRecord(
                hook=hook,
                leader=hook.unit == model.leader_unit.name,
                phase_before=self.phase,
                phase_after=phase,
                status_before=self.status.get(hook.unit, IDLE),
                status_after=status,
                http=self.http.take(),
            )
        )
        self.phase, self.status[hook.unit] = phase, status


# ---------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """One run from `start` to the run cleared, with the model's hooks around it."""

    size: int
    order: str  # FIFO | shuffled
    seed: int
    kind: str  # k6 | stand-in
    records: list[HookRecord]
    overhead: dict[str, list[float]] = field(default_factory=dict)
    resume_ms: float | None = None  # fan_out: first PATCH sent → last acknowledgement


def use_real_k6(size: int) -> bool:
    """Real k6 while N paused k6 fit in a share of the free memory."""
    return size * K6_RSS_MB <= MEMORY_SHARE * available_memory_mb()


class _Bare(ops.CharmBase):
    """Observes nothing: what ops.testing and the ops framework cost on their own."""


def _idle_overhead(model: Model) -> dict[str, list[float]]:
    """The emulator's own cost per hook: an empty charm's no-op hook on the idle leader's State."""
    meta = {
        name: yaml.safe_load((ROOT / f"{name}.yaml").read_text())
        for name in ("metadata", "actions", "config")
    }
    bare = testing.Context(
        _Bare, meta=meta["metadata"], actions=meta["actions"], config=meta["config"]
    )
    unit = model.leader_unit
    empty = []
    for _ in range(BARE_ROUNDS):
        state = model._state(unit)  # the same State the emulator builds for a K6Charm hook
        t0 = time.perf_counter()
        bare.run(bare.on.install(), state)
        empty.append(time.perf_counter() - t0)
    return {"empty": empty}


def _workload(real: bool, seconds: float = 0.05) -> dict[str, Any]:
    """Model arguments for real k6, or for the k6 stand-in.

    The stand-in starts in milliseconds and runs `seconds` once released.
    """
    if real:
        return {}
    return {
        "k6_path": str(STANDIN_BIN),
        "extra_env": {"PYTHONPATH": str(ROOT), "K6_STANDIN_RUN_SECONDS": str(seconds)},
    }


def one_run(size: int, order: str, seed: int) -> RunRecord:
    """Serial: a model, idle samples, `start` to the run cleared, then some idle hooks drained."""
    real = use_real_k6(size)
    kwargs = _workload(real)
    http = HttpCounter()
    recorder = Recorder(http)
    with http.installed():
        model = Model(
            size,
            {"load-test": script(size)},
            shuffle=order == "shuffled",
            seed=seed,
            update_status_interval=None,
            on_hook=recorder,
            **kwargs,
        )
        try:
            model.settle(timeout=60)
            model.update_status()  # idle update-status on every unit
            for unit in model.units.values():
                model._enqueue(unit, "install")  # an event the charm does not observe: a no-op
            model.settle(timeout=30)
            overhead = _idle_overhead(model) if order == "FIFO" else {}
            last = _start_to_record(model, f"N={size} {order} s={seed}")
            resumes = [
                u["released"]  # [sent, acked] of its release (the library's UnitLine)
                for u in last["units"].values()
                if len(u["released"]) == 2 and None not in u["released"]
            ]
            resume_ms = (max(a for _, a in resumes) - min(s for s, _ in resumes)) * 1000
            model.run_hooks(IDLE_DRAIN)
        finally:
            leftovers = model.close()
        if leftovers:
            raise RuntimeError(f"processes left behind: {leftovers}")
    return RunRecord(
        size=size,
        order=order,
        seed=seed,
        kind="k6" if real else "stand-in",
        records=recorder.records,
        overhead=overhead,
        resume_ms=resume_ms,
    )


def _start_to_record(model: Model, label: str) -> dict[str, Any]:
    """`start` on the leader, then hooks until the run's last-run record; that record (passed)."""
    result = model.action(model.leader, "start")
    if not result.ok:
        raise RuntimeError(f"{label}: start failed: {result.failure}")
    run_id = result.results["run-id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while not model.run_ended(run_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{label}: run not ended in time")
        if model.run_hooks(1) == 0:
            time.sleep(0.005)
    last = model.app["last_run"]
    if last["outcome"] != "passed":
        raise RuntimeError(f"{label}: run {last['outcome']}: {last['reason']}")
    return last


_RUNS: list[RunRecord] = []
_NOTES: list[str] = []


def _numbers(variable: str, default: tuple[int, ...]) -> tuple[int, ...]:
    text = os.environ.get(variable, "")
    return tuple(int(s) for s in text.split(",") if s.strip()) if text.strip() else default


def runs() -> list[RunRecord]:
    """The serial runs of the hooks section, measured once per process."""
    if _RUNS:
        return _RUNS
    t0 = time.monotonic()
    sizes = _numbers("BENCH_COORDINATION_SIZES", SIZES)
    plan = [(n, "FIFO", 0) for n in sizes]
    plan += [
        (n, "shuffled", s) for s in _numbers("BENCH_COORDINATION_SEEDS", SEEDS) for n in sizes
    ]
    plan = [(n, order, s) for n, order, s in plan if order == "FIFO" or n > 1]
    skipped = []
    for size, order, seed in plan:
        if order == "shuffled" and time.monotonic() - t0 > BUDGET_SECONDS:
            skipped.append(f"N={size} s={seed}")
            continue
        _log(f"N={size} {order} seed={seed}")
        _RUNS.append(one_run(size, order, seed))
    elapsed = time.monotonic() - t0
    _NOTES.append(f"{len(_RUNS)} runs in {elapsed:.0f} s")
    if skipped:
        _NOTES.append(f"skipped (over the {BUDGET_SECONDS:.0f} s budget): {', '.join(skipped)}")
    return _RUNS


# ---------------------------------------------------------------- section 2: coordination

CONCURRENT_SIZES = (3, 10, 30, 100)  # BENCH_CONCURRENT_SIZES="3,10" overrides
RUN_SECONDS = 5.0  # the load's length: long enough for the release's relation-changed to drain
REPEATS = 3  # runs per N (BENCH_CONCURRENT_REPEATS overrides)
REAL_K6_MAX = 30  # above: the k6 stand-in (N real k6 initializing at once outrun 2 CPUs)
NOTICE_KEY = "k6.com/done"


def _fmt(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _wrap(line: str) -> str:
    """Markdown list items wrapped at 99 columns (the doc's own width)."""
    if not line.startswith("- "):
        return line
    return textwrap.fill(line, width=99, subsequent_indent="  ")


@dataclass
class ConcurrentRun:
    """One run on the concurrent model: its hooks from `start` to the last-run record."""

    size: int
    kind: str  # k6 | stand-in
    cost: float  # the modelled hook cost, seconds
    hooks: list[Hook]  # every hook that committed from the start action to the record
    start: float  # epoch: the start action began
    release: float  # epoch: the first release request left
    arms: dict[str, float]  # participant -> its arm hook's code time, seconds
    ends: dict[str, float]  # participant -> epoch its workload's done notice reached Pebble
    record: float  # epoch: the hook writing the last-run record committed
    queued: int  # events queued or in flight when the record landed (no-ops still to run)
    armed: dict[str, float]  # participant -> epoch its arm landed
    reported: dict[str, float]  # participant -> epoch its end report landed

    @property
    def leader(self) -> str:
        return self.hooks[0].unit

    @property
    def start_to_release(self) -> float:
        return self.release - self.start

    @property
    def slowest_arm(self) -> float:
        return max(self.arms.values())

    @property
    def end_to_record(self) -> float:
        return self.record - max(self.ends.values())

    @property
    def release_met(self) -> bool:
        return self.start_to_release <= self.slowest_arm + 2 * self.cost

    @property
    def record_met(self) -> bool:
        return self.end_to_record <= 2 * self.cost

    def per_other_unit(self) -> tuple[float, int]:
        counts = Counter(h.unit for h in self.hooks if h.unit != self.leader)
        values = [counts.get(f"k6/{i}", 0) for i in range(1, self.size)]
        return statistics.median(values), max(values)


class _RunWatch:
    """on_hook of a concurrent run: the hooks from `start` on, arms, and the record."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.arms: dict[str, float] = {}
        self.armed: dict[str, float] = {}
        self.reported: dict[str, float] = {}
        self.record: float | None = None
        self.queued = 0
        self.run_id = ""

    def __call__(self, hook: Hook, model: Model) -> None:
        if hook.event == "start-action":
            self.run_id = model.app["run"]["run_id"]
        if not self.run_id or self.record is not None:
            return
        self.hooks.append(hook)
        report = model.unit_view(hook.unit)
        if "status" in hook.unit_keys and report.get("status") in LIVE:
            self.arms.setdefault(hook.unit, hook.duration)
            self.armed.setdefault(hook.unit, hook.committed or 0.0)
        if "status" in hook.unit_keys and report.get("status") == IDLE:
            self.reported.setdefault(hook.unit, hook.committed or 0.0)
        if (model.app.get("last_run") or {}).get("run_id") == self.run_id:
            self.record = hook.committed
            busy = sum(1 for u in model.units.values() if u.busy_with)
            self.queued = busy + sum(len(u.queue) for u in model.units.values())


def _notice_times(model: Model, run_id: str) -> dict[str, float]:
    """When each unit's done notice for the run reached its Pebble (epoch)."""
    times = {}
    for unit in model.units.values():
        notice = unit.supervisor.notices.get(NOTICE_KEY)
        if notice is not None and notice.last_data.get("run_id") == run_id:
            times[unit.name] = notice.last_occurred.timestamp()
    return times


def concurrent_run(size: int, cost: float) -> ConcurrentRun:
    """One `start` to its last-run record on N units that have long been deployed."""
    real = size <= REAL_K6_MAX and use_real_k6(size)
    watch = _RunWatch()
    model = Model(
        size,
        {"load-test": script(size, RUN_SECONDS)},
        update_status_interval=None,
        on_hook=watch,
        concurrency=Concurrency(hook_cost=cost),
        initial_hooks=False,
        **_workload(real, RUN_SECONDS),
    )
    try:
        last = _start_to_record(model, f"concurrent N={size}")
        ends = _notice_times(model, last["run_id"])
    finally:
        leftovers = model.close()
    if leftovers:
        raise RuntimeError(f"processes left behind: {leftovers}")
    sent = [line["released"][0] for line in last["units"].values() if line["released"]]
    assert watch.record is not None and len(ends) == size and len(watch.arms) == size
    return ConcurrentRun(
        size=size,
        kind="k6" if real else "stand-in",
        cost=cost,
        hooks=watch.hooks,
        start=watch.hooks[0].started,
        release=min(sent),
        arms=watch.arms,
        ends=ends,
        record=watch.record,
        queued=watch.queued,
        armed=watch.armed,
        reported=watch.reported,
    )


def _span(values: Sequence[float]) -> str:
    """Median (min–max), to the hundredth."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.2f}" if low == high else f"{mid:.2f} ({low:.2f}–{high:.2f})"


def _met(flags: Sequence[bool]) -> str:
    """How many of the repetitions met the target."""
    met = sum(flags)
    word = "met" if met == len(flags) else "not met" if met == 0 else "partly met"
    return f"**{word}** ({met}/{len(flags)})"


def _row(runs: Sequence[ConcurrentRun]) -> str:
    """One N: medians over its repetitions, ranges in brackets."""
    first = runs[0]
    targets = [r.slowest_arm + 2 * r.cost for r in runs]
    hooks = [len(r.hooks) for r in runs]
    leader = [sum(1 for h in r.hooks if h.unit == r.leader) for r in runs]
    per_unit = [r.per_other_unit() for r in runs]
    queued = [r.queued for r in runs]
    total = [len(r.hooks) + r.queued for r in runs]
    every = [h for r in runs for h in r.hooks]
    lags = [
        f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"
        for values in ([h.start_lag for h in every], [h.commit_lag for h in every])
    ]
    return (
        f"| {first.size} | {first.kind} | {_fmt(first.cost)} "
        f"| {_span([r.start_to_release for r in runs])} | {_span(targets)} "
        f"| {_met([r.release_met for r in runs])} | {_span([r.end_to_record for r in runs])} "
        f"| {_fmt(2 * first.cost)} | {_met([r.record_met for r in runs])} "
        f"| {_fmt(statistics.median(hooks))} | {_fmt(statistics.median(leader))} "
        f"| {_fmt(statistics.median(m for m, _ in per_unit))} / {max(x for _, x in per_unit)} "
        f"| {_fmt(statistics.median(queued))} | {_fmt(statistics.median(total))} "
        f"| {(2 * first.size + 3) * (first.size - 1)} | {lags[0]}; {lags[1]} |"
    )


def coordination() -> SectionResult:
    """Wall times and hooks of runs per N on the concurrent model, against the targets."""
    cost = float(os.environ.get("BENCH_HOOK_COST", HOOK_COST))
    repeats = int(os.environ.get("BENCH_CONCURRENT_REPEATS", REPEATS))
    t0 = time.monotonic()
    by_size: dict[int, list[ConcurrentRun]] = {}
    for size in _numbers("BENCH_CONCURRENT_SIZES", CONCURRENT_SIZES):
        for repeat in range(repeats):
            _log(f"concurrent N={size}, hook cost {cost} s, run {repeat + 1} of {repeats}")
            by_size.setdefault(size, []).append(concurrent_run(size, cost))
    table = (
        "| N | workload | hook cost (s) | start → release (s) | target: slowest arm + 2 hook "
        "costs (s) | | last end → record (s) | target: 2 hook costs (s) | | hooks start → "
        "record | leader | per other unit: median / max | still queued at the record | hooks "
        "per run | events the writes fire: (2N + 3)(N − 1) "
        "| emulator lag, ms, median / max: start; commit |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(_row(runs) for runs in by_size.values())
    )
    medians = [_median_run(runs) for runs in by_size.values()]
    intro = textwrap.fill(
        f"{repeats} runs per N on the emulator's **concurrent model** "
        f"(`Concurrency(hook_cost={_fmt(cost)})`: every unit's hooks at once, each reading the "
        "relation data when it starts and committing at the end of its code plus the modelled "
        "hook cost, Juju's about 1 s per hook; docs/juju-k8s.md). The units have long been "
        "deployed (no join hooks queued); the test is `shared-iterations`, `vus: N`, "
        f"`iterations: 2N`, each iteration a {_fmt(RUN_SECONDS / 2)} s sleep (the load lasts "
        f"{_fmt(RUN_SECONDS)} s), on real k6 up to N = {REAL_K6_MAX} and the k6 stand-in "
        "(tests/support/k6_standin.py: k6's REST API, no load, "
        f"{_fmt(RUN_SECONDS)} s once released) above. Times: the median run, the range over "
        "the runs in brackets; a target is met when a run's own time is within it.",
        width=99,
    )
    text = f"""{intro}

- start → release: from the start action's beginning to the first release request (the
  fan-out's first PATCH). Target: the slowest unit's arm (its arm hook's code: Pebble's start
  check and k6's init) plus 2 hook costs.
- last end → record: from the last participant's done notice reaching its Pebble to the commit
  of the leader's hook that wrote the last-run record. Target: 2 hook costs.
- hooks (medians): every hook from the start action to the record, the leader's, each other
  unit's; then the events still queued at the record (relation-changed nobody needs any more:
  they run, as no-ops, after the record) and the sum, against (2N + 3)(N − 1), the
  relation-changed events the run's writes fire before Juju coalesces them (2 writes per unit,
  3 by the leader to the app databag, each one event on every other unit).
- emulator lag: how late the emulator started a hook its unit was free to run, and landed a
  commit that was due; the model holds while these stay well under the hook cost.

{table}

{_concurrent_reading(medians)}

Section wall time {time.monotonic() - t0:.0f} s; emulator address base {ADDRESS_BASE}.
"""
    return SectionResult(text, [_concurrent_figure(medians)])


def _median_run(runs: Sequence[ConcurrentRun]) -> ConcurrentRun:
    """The run whose start → release is the median of its N (the reading's example)."""
    ordered = sorted(runs, key=lambda r: r.start_to_release)
    return ordered[len(ordered) // 2]


def _concurrent_reading(all_runs: Sequence[ConcurrentRun]) -> str:
    """What the table says, computed from it (one run per N: its median run)."""
    missed = [r.size for r in all_runs if not r.release_met]
    excess = ", ".join(
        f"N={r.size}: {r.start_to_release - r.slowest_arm - 2 * r.cost:+.2f} s" for r in all_runs
    )
    leader_arm = ", ".join(f"N={r.size}: {r.arms[r.leader]:.2f} s" for r in all_runs)
    release_parts = "; ".join(
        f"N={r.size}: {r.armed[r.leader] - r.start:.2f} + "
        f"{max(r.armed.values()) - r.armed[r.leader]:.2f} + "
        f"{r.release - max(r.armed.values()):.2f}"
        for r in all_runs
    )
    record_parts = "; ".join(
        f"N={r.size}: {max(r.reported.values()) - max(r.ends.values()):.2f} + "
        f"{r.record - max(r.reported.values()):.2f}"
        for r in all_runs
    )
    record_missed = [r.size for r in all_runs if not r.record_met]
    largest = max(all_runs, key=lambda r: r.size)
    lines = [
        "Reading:",
        "",
        f"- start → release against its target, in the median run of each N ({excess}): "
        + (f"not met at N = {', '.join(map(str, missed))}. " if missed else "met at every N. ")
        + "Where it goes (seconds: the start action until its commit, i.e. the leader's own "
        "arm and a hook cost; then until the last other unit's arm landed, i.e. its arm and a "
        "hook cost; then until the first release request, i.e. the leader's hook already in "
        f"flight when that arm landed, plus its releasing hook's code): {release_parts}. "
        "Two things make it more than the slowest arm + 2 hook costs. The leader arms itself "
        f"inside the start action ({leader_arm}) before the run is committed, so the others "
        "start arming one arm and one hook cost after `start`. And each agent runs one hook at "
        "a time: when the last arm lands, the leader is usually busy with the relation-changed "
        "of an earlier one, and releases in its next hook (up to one more hook cost). The "
        "protocol could remove the first: commit the run first and start the leader's own k6 "
        "without waiting for it (Pebble's start without waiting, `timeout=0` in ops), report "
        "`pending`, and let the leader's next hook (a relation-changed from the first unit "
        "armed) recheck it, as it already does for a unit still initializing. The second is "
        "Juju's: the release can come up to 3 hook costs after the slowest arm, not 2. Not "
        "changed here.",
        "- last end → record against its target, in the same runs: "
        + (
            f"not met at N = {', '.join(map(str, record_missed))}. "
            if record_missed
            else "met at every N. "
        )
        + "The last unit to end reports it in its next hook (its done notice comes before "
        "relation hooks in Juju's order), and the leader finishes in its first hook that "
        "reads that report: 2 hooks, i.e. 2 hook costs plus their own code (tens of "
        "milliseconds), when both agents are idle. Where it goes (seconds: from the last "
        "unit's end to the last end report landing, which may be another unit's; then to the "
        f"record): {record_parts}. Either part takes up to one more hook cost when the agent "
        "is busy with a hook as the event arrives: one of the no-op relation-changed that "
        "every write fires on every unit (next bullet) — at the end, the other units' end "
        "reports, which land at about the same moment, and at large N the backlog still "
        "queued from the arming.",
        "- Hooks per run grow as N²: each of the N units' two writes (armed, ended) and the "
        "leader's three app-databag writes (the run, its release, the record) fire "
        "relation-changed on every other unit, (2N + 3)(N − 1) events. Juju coalesces the ones "
        "for one remote unit that pile up while an agent is busy, so fewer run than fire; most "
        f"run after the record, as no-ops (at N = {largest.size}, {largest.queued} were still "
        f"queued then: about {largest.queued / max(1, largest.size):.0f} s of every agent's "
        "time after the run). A new `start` in that time is not held up behind them: actions "
        "come before hooks, and the run's app-settings change before the units' changes.",
        "- Writing less: every write counted above is one the protocol needs, one to arm and "
        "one to report the end per unit (only the leader reads them) and the leader's three. "
        "The one it could drop is the release's (`running`, with each unit's release times), "
        "N − 1 events at the moment every agent should be free for the done notices: the "
        "leader could keep the release times in its own stored state until the record. The "
        "price is leader failover: a new leader reading `arming` with everyone armed would "
        "release again, and k6 answers a resume of a running test with an error, so the "
        "release would have to count that answer as done. The only O(N) design is no unit "
        "writes at all (the leader polling every unit's k6 API for readiness and ends), which "
        "needs leader hooks to poll from: update-status, every 5 minutes. Neither is done here.",
    ]
    behind = [
        f"N={r.size}: up to {max(max(h.start_lag, h.commit_lag) for h in r.hooks):.2f} s"
        for r in all_runs
        if max(max(h.start_lag, h.commit_lag) for h in r.hooks) > r.cost / 4
    ]
    if behind:
        lines.append(
            "- The emulator itself fell behind the model at times (one Python process runs "
            f"every unit's hooks on this machine's CPUs; {', '.join(behind)} late): those "
            "times are upper bounds of the model's."
        )
    return "\n".join(_wrap(line) for line in lines)


def _concurrent_figure(all_runs: Sequence[ConcurrentRun]) -> Figure:
    return Figure(
        filename="benchmarks-coordination.png",
        title="A run on the concurrent model: wall times and their targets",
        xlabel="units (N)",
        ylabel="seconds",
        x=[float(r.size) for r in all_runs],
        series={
            "start → release": [r.start_to_release for r in all_runs],
            "target: slowest arm + 2 hook costs": [r.slowest_arm + 2 * r.cost for r in all_runs],
            "last end → record": [r.end_to_record for r in all_runs],
            "target: 2 hook costs": [2 * r.cost for r in all_runs],
        },
        logx=True,
    )


# ---------------------------------------------------------------- section 3: per-hook cost


def kind_of(r: HookRecord) -> str:
    """The row a hook belongs to in the per-hook table."""
    event = r.hook.event
    before, after = r.phase_before, r.phase_after
    role = "leader" if r.leader else "unit"
    if event == "start-action":
        return "start-action (leader freezes the run, arms itself)"
    if before == NO_RUN and after == NO_RUN and r.status_before not in LIVE:
        return {
            "install": "install, idle: not observed (charm no-op)",
            "update_status": "update_status, idle",
            "relation_changed": "relation_changed, idle (no run)",
            "relation_joined": "relation_joined, idle",
            "pebble_custom_notice": "pebble_custom_notice, idle (after the run cleared)",
        }.get(event, f"{event}, idle")
    if before == "arming":
        if after == "running":
            return f"{event}, leader resumes"
        if r.status_before not in LIVE and r.status_after in LIVE:
            return f"{event}, arming: the unit arms"
        return f"{event}, arming: nothing to do ({role})"
    if before in ("running", "stopping"):
        if after == NO_RUN:
            return f"{event}, leader finishes (run cleared)"
        if r.status_before in LIVE and r.status_after == IDLE:
            return f"{event}, running: the unit reports its end"
        return f"{event}, running: nothing to do ({role})"
    return f"{event}, {before}→{after}"


def _calls(records: Sequence[HookRecord]) -> str:
    """Pebble calls per hook, by kind (mean over the hooks)."""
    total: Counter[str] = Counter()
    for r in records:
        total.update(c.split()[0] for c in r.hook.pebble_calls)
    if not total:
        return "0"
    parts = []
    for name, count in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        mean = count / len(records)
        parts.append(f"{name} {_fmt(round(mean, 1))}")
    return ", ".join(parts)


def _http(records: Sequence[HookRecord]) -> str:
    """HTTP requests per hook: median / max, and by function."""
    per_hook = [sum(r.http.values()) for r in records]
    if not any(per_hook):
        return "0"
    by_function: Counter[str] = Counter()
    for r in records:
        by_function.update(r.http)
    names = ", ".join(f"{n} {_fmt(round(c / len(records), 1))}" for n, c in by_function.items())
    return f"{_fmt(statistics.median(per_hook))} / {max(per_hook)} ({names})"


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}" if values else "—"


def hooks() -> str:
    """Median charm time, Pebble and HTTP calls per hook, by event kind."""
    all_runs = runs()
    groups: dict[str, list[tuple[int, HookRecord]]] = {}
    for run in all_runs:
        for r in run.records:
            groups.setdefault(kind_of(r), []).append((run.size, r))
    sizes = sorted({run.size for run in all_runs})
    rows = []
    for kind, members in sorted(groups.items(), key=lambda kv: _row_order(kv[0])):
        records = [r for _, r in members]
        durations = [r.hook.duration for r in records]
        by_size = " / ".join(
            _ms([r.hook.duration for n, r in members if n == size]) for size in sizes
        )
        flagged = sum(1 for r in records if r.writes_nothing_but_pushes)
        wrote = sum(1 for r in records if r.wrote)
        errors = sum(1 for r in records if r.hook.error)
        rows.append(
            f"| {kind} | {len(records)} | {_ms(durations)} | {by_size} | {_calls(records)} "
            f"| {_http(records)} | {wrote} | {'**' + str(flagged) + '**' if flagged else 0} "
            f"| {errors} |"
        )
    size_head = " / ".join(str(n) for n in sizes)
    table = (
        f"| event kind | hooks | median ms | median ms at N = {size_head} "
        "| Pebble calls per hook (mean) | HTTP requests per hook: median / max (mean by call) "
        "| wrote relation keys | wrote nothing yet push/exec | errors |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    empty = [d for run in all_runs for d in run.overhead.get("empty", [])]
    noop = [r.hook.duration for run in all_runs for r in run.records if r.hook.event == "install"]
    flagged = [
        f"{r.hook.unit} {r.hook.event}"
        for run in all_runs
        for r in run.records
        if r.writes_nothing_but_pushes
    ]
    overhead = (
        f"Emulator overhead, measured separately on an idle unit: `ops.testing` running an empty "
        f"charm (same metadata, same State, observes nothing) takes **{_ms(empty)} ms** per hook "
        f"(median of {len(empty)}); the K6Charm on an event it does not observe (`install`: "
        f"charm construction plus the collect-status handlers) takes **{_ms(noop)} ms** "
        f"(median of {len(noop)}). Every median above includes the first; subtract it for the "
        f"charm's own time."
    )
    resume_sizes = sorted({run.size for run in all_runs})
    resume_spans = ", ".join(
        f"N={n}: {statistics.median(values):.1f} ms"
        for n in resume_sizes
        if (values := [r.resume_ms for r in all_runs if r.size == n and r.resume_ms is not None])
    )
    overhead += (
        f" Inside the leader's resume hook, `fan_out` from its first PATCH sent to the last "
        f"acknowledgement (median): {resume_spans} — N k6 processes waking at once on this "
        f"machine's CPUs answer the PATCH late; the sends themselves leave within a millisecond "
        f"(see the skew section)."
    )
    verdict = (
        "No hook that wrote no relation keys called Pebble `push` or `exec`."
        if not flagged
        else f"**Hooks that wrote nothing yet called push/exec: {', '.join(flagged[:10])}.**"
    )
    return f"""Per-hook cost, from serial runs of the emulator (one hook at a time, so each hook's
time is its own; every hook of every model: the unit joins, idle update-status and a
not-observed `install` on every unit, the run, then up to {IDLE_DRAIN} of the idle
relation-changed events still queued after the run cleared).
Time is `Hook.duration` (the whole `ops.testing` run, so it includes the emulator's overhead,
below). Pebble calls are those the emulated Pebble records per hook; HTTP requests are counted
by wrapping `k6_client.get_status` (one request; `wait_ready` polls through it),
`k6_client.probe_all`, `k6_client.stop_all` and the library's release `fan_out` (one request
per endpoint). A row's state is the model's
state when the hook started: the run's phase and the unit's own status.

{table}

{overhead}

{verdict}

{HOOKS_READING.format(nothing=_nothing_to_do(groups))}
"""


HOOKS_READING = """Reading:

- Idle hooks (no run, the unit idle) make no Pebble call and no HTTP request, except
  update-status, which makes one `get_services`: the periodic check that no k6 runs on a unit
  that believes itself idle (a hook that started k6 and then failed has its `busy` write
  discarded by Juju; this read is how that k6 is found and stopped).
- The arm hook's time is Pebble's 1 s start check (`restart`) plus whatever of k6's init is left
  after it, polled every 50 ms through `get_status` (this tiny script is paused within that
  second, so one request finds it ready); every other hook takes milliseconds, most of them the
  emulator's own overhead.
{nothing}
- The leader's resume hook makes N resume requests (one per participant, all sent before any
  answer is read); the finishing hook makes no HTTP call: the units' reports are in the databags.
"""


def _nothing_to_do(groups: dict[str, list[tuple[int, HookRecord]]]) -> str:
    """The reading's bullet on hooks with nothing to do: Pebble and HTTP calls, measured."""

    def mean_calls(role: str, live: bool) -> tuple[str, int]:
        records = [
            r
            for kind, members in groups.items()
            if f"nothing to do ({role})" in kind
            for _, r in members
            if (r.status_before in LIVE) == live
        ]
        calls = sum(len(r.hook.pebble_calls) for r in records)
        http = sum(sum(r.http.values()) for r in records)
        if not records:
            return "—", 0
        return _fmt(round(calls / len(records), 1)), http

    unit_live, http_live = mean_calls("unit", True)
    leader_live, http_leader = mean_calls("leader", True)
    unit_done, http_done = mean_calls("unit", False)
    http = http_live + http_leader + http_done
    return _wrap(
        f"- Hooks that find nothing to do while the unit's own k6 is up make {unit_live} Pebble "
        f"call(s) on average on another unit and {leader_live} on the leader (`get_services`: "
        f"is my k6 still running?); once the unit has reported its end, {unit_done}. HTTP "
        f"requests in all these hooks: {http}."
    )


def _row_order(kind: str) -> tuple[int, str]:
    """Idle hooks first, then the run in the order it happens, the finish last."""
    order = (
        "install",
        ", idle",
        "start-action",
        "arming: the unit arms",
        "arming: nothing",
        "leader resumes",
        "running: nothing",
        "running: the unit reports",
        "leader finishes",
    )
    for i, part in enumerate(order):
        if part in kind:
            return (i, kind)
    return (len(order), kind)


SECTIONS = {"coordination": coordination, "hooks": hooks}
