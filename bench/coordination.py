"""Coordination and per-hook cost on the emulator: hooks to resume and to clear a run, per N.

Charm time, Pebble and HTTP calls per hook by event kind. Both sections read the same runs
(real charm, real k6, tests/emulator); they run once per process.
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
from tests.emulator.model import ADDRESS_BASE, Hook, Model  # noqa: E402

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


def script(size: int) -> str:
    """A tiny test: 2N no-op iterations shared by N VUs (one VU and two iterations per unit)."""
    return (
        "export const options = { scenarios: { s: { executor: 'shared-iterations', "
        f"vus: {size}, iterations: {2 * size}, maxDuration: '30s' }} }} }};\n"
        "export default function () {}\n"
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
    ready_before: bool | None  # every participant's k6 paused before the run, probed (arming)

    @property
    def wrote(self) -> bool:
        """The hook changed relation data."""
        return bool(self.hook.unit_keys or self.hook.app_keys)

    @property
    def writes_nothing_but_pushes(self) -> bool:
        """Changed no relation data yet pushed a file or ran a command in the workload."""
        return not self.wrote and any(c in ("push", "exec") for c in self.hook.pebble_calls)


class Recorder:
    """The model's on_hook: records every hook; while arming, probes every participant."""

    def __init__(self, http: HttpCounter) -> None:
        self.http = http
        self.records: list[HookRecord] = []
        self.phase = NO_RUN
        self.status: dict[str, str] = {}
        self.ready: bool | None = None
        self.probe_seconds = 0.0

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
                ready_before=self.ready,
            )
        )
        self.phase, self.status[hook.unit] = phase, status
        self.ready = None
        if run and phase == "arming":
            # The state every next hook starts from: hooks run one at a time.
            t0 = time.perf_counter()
            endpoints = [
                task.endpoint_of(model.unit(p).address, k6_client.PORT)
                for p in run["participants"]
            ]
            statuses = _ORIGINAL["probe_all"](endpoints, timeout=0.5)
            self.ready = all(s is not None and s.ready for s in statuses.values())
            self.probe_seconds += time.perf_counter() - t0


# ---------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """One run from `start` to the run cleared, with the model's hooks around it."""

    size: int
    order: str  # FIFO | shuffled
    seed: int
    kind: str  # k6 | stand-in
    records: list[HookRecord]
    start: int  # indexes into records
    resume: int
    cleared: int
    overhead: dict[str, list[float]] = field(default_factory=dict)
    wall_resume: float = 0.0
    wall_run: float = 0.0
    resume_ms: float | None = None  # fan_out: first PATCH sent → last acknowledgement

    @property
    def label(self) -> str:
        return "FIFO" if self.order == "FIFO" else f"shuffled s={self.seed}"

    @property
    def probe_resume(self) -> int | None:
        """The first leader hook that starts with every participant probed paused (status 4)."""
        if self.records[self.start].phase_after == "running":
            return self.start  # one unit: the start action resumes it
        for i in range(self.start + 1, self.resume + 1):
            r = self.records[i]
            if r.leader and r.phase_before == "arming" and r.ready_before:
                return i
        return None

    @property
    def last_done(self) -> int:
        """The last hook in which a participant reported its end (its databag back to idle)."""
        ends = [
            i
            for i in range(self.start, self.cleared + 1)
            if self.records[i].status_before in LIVE and self.records[i].status_after == IDLE
        ]
        return ends[-1]

    def window(self, first: int, last: int) -> list[HookRecord]:
        return self.records[first : last + 1]


def leader_hooks(records: Sequence[HookRecord]) -> int:
    return sum(1 for r in records if r.leader)


def per_unit(records: Sequence[HookRecord], size: int) -> tuple[float, int]:
    """Median and max hooks over the non-leader units (0 when there are none)."""
    counts = Counter(r.hook.unit for r in records if not r.leader)
    values = [counts.get(f"k6/{i}", 0) for i in range(1, size)]
    return (statistics.median(values), max(values)) if values else (0, 0)


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


def one_run(size: int, order: str, seed: int) -> RunRecord:
    """Build a model, take idle samples, run `start` to the run cleared, drain some idle hooks."""
    real = use_real_k6(size)
    kwargs: dict[str, Any] = {}
    if not real:
        kwargs = {
            "k6_path": str(STANDIN_BIN),
            "extra_env": {"PYTHONPATH": str(ROOT), "K6_STANDIN_RUN_SECONDS": "0.05"},
        }
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
            start = len(recorder.records)
            t0 = time.monotonic()
            result = model.action(model.leader, "start")
            if not result.ok:
                raise RuntimeError(f"start failed at N={size}: {result.failure}")
            run_id = result.results["run-id"]
            wall_resume = None
            deadline = t0 + RUN_TIMEOUT
            while not model.run_ended(run_id):
                if wall_resume is None and recorder.phase in ("running", NO_RUN):
                    wall_resume = time.monotonic() - t0
                if time.monotonic() > deadline:
                    raise TimeoutError(f"N={size} {order} s={seed}: run not ended in time")
                if model.run_hooks(1) == 0:
                    time.sleep(0.005)
            wall_run = time.monotonic() - t0
            last = model.app["last_run"]
            if last["outcome"] != "passed":
                raise RuntimeError(f"N={size} run {last['outcome']}: {last['reason']}")
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
    records = recorder.records
    resume = next(i for i in range(start, len(records)) if records[i].phase_after != "arming")
    cleared = next(
        i
        for i in range(start, len(records))
        if records[i].phase_before != NO_RUN and records[i].phase_after == NO_RUN
    )
    return RunRecord(
        size=size,
        order=order,
        seed=seed,
        kind="k6" if real else "stand-in",
        records=records,
        start=start,
        resume=resume,
        cleared=cleared,
        overhead=overhead,
        wall_resume=wall_resume or 0.0,
        wall_run=wall_run,
        resume_ms=resume_ms,
    )


_RUNS: list[RunRecord] = []
_NOTES: list[str] = []


def _numbers(variable: str, default: tuple[int, ...]) -> tuple[int, ...]:
    text = os.environ.get(variable, "")
    return tuple(int(s) for s in text.split(",") if s.strip()) if text.strip() else default


def runs() -> list[RunRecord]:
    """Every run of both sections, measured once per process."""
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


def _fmt(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def databag_hooks(r: RunRecord) -> int:
    """Leader hooks from `start` to the resume, the charm's way."""
    return leader_hooks(r.window(r.start, r.resume))


def probe_hooks(r: RunRecord) -> int | None:
    """Leader hooks from `start` to the resume, probing everyone (None: never all paused)."""
    index = r.probe_resume
    return None if index is None else leader_hooks(r.window(r.start, index))


def leader_events(r: RunRecord) -> int:
    """Relation-changed events the run queues on the leader: one per other unit's write."""
    return sum(1 for x in r.window(r.start, r.cleared) if not x.leader and x.hook.unit_keys)


def coordination() -> SectionResult:
    """Hooks per unit and on the leader from `start` to resume and last done to cleared."""
    all_runs = runs()
    rows = []
    for r in all_runs:
        arming = r.window(r.start, r.resume)
        ending = r.window(r.last_done, r.cleared)
        whole = r.window(r.start, r.cleared)
        unit_med, unit_max = per_unit(arming, r.size)
        end_med, end_max = per_unit(ending, r.size)
        probe = probe_hooks(r)
        label = r.label + (" (stand-in)" if r.kind != "k6" else "")
        rows.append(
            f"| {r.size} | {label} | {databag_hooks(r)} | {'—' if probe is None else probe} "
            f"| {leader_events(r)} | {len(arming)} | {_fmt(unit_med)} / {unit_max} "
            f"| {r.wall_resume:.1f} | {leader_hooks(ending)} | {len(ending)} "
            f"| {_fmt(end_med)} / {end_max} | {leader_hooks(whole)} | {len(whole)} |"
        )
    table = (
        "| N | order | leader hooks start→resume: databag (the charm) | …: probe everyone "
        "| relation-changed the run queues on the leader | all hooks start→resume "
        "| per other unit: median / max | s start→resume | leader hooks last done→cleared "
        "| all hooks last done→cleared | per other unit: median / max "
        "| leader hooks start→cleared | all hooks start→cleared |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    kinds = {r.kind for r in all_runs}
    k6_text = "real k6" if kinds == {"k6"} else "real k6, the stand-in where marked"
    text = f"""Hooks from the `start` action to the resume (the hook in which the app databag's run
phase became `running`) and from the last done report to the run cleared, on the emulator
(tests/emulator: the real charm, {k6_text}; the test is `shared-iterations`, `vus: N`,
`iterations: 2N`, a no-op default function). Hooks run one at a time: **FIFO** across units (the
emulator's default) or **shuffled** (each step runs the next event of a seeded random unit).

- "Probe everyone" is the way the issue proposes: at every leader hook while the run arms,
  `GET /v1/status` on every participant and resume when all report status 4. The bench probes
  every participant after each hook while the run arms (hooks run one at a time, so that is the
  state the next hook starts from) and counts the first leader hook that starts with all of them
  paused.
- "Relation-changed the run queues on the leader": one per write by another unit (arm, end
  report), `start` to cleared: the O(N) events.
- "Last done report": the hook in which the last participant wrote its end (exit code, summary).
- "per other unit": hooks on each non-leader unit in the window.

{table}

{_reading(all_runs)}
"""
    notes = "; ".join(_NOTES)
    text += f"\nRuns: {notes}; emulator address base {ADDRESS_BASE}.\n"
    return SectionResult(text, [_figure(all_runs)])


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return _fmt(low) if low == high else f"{_fmt(low)}–{_fmt(high)}"


def _reading(all_runs: Sequence[RunRecord]) -> str:
    """What the table says, computed from it."""
    multi = [r for r in all_runs if r.size > 1]
    fifo = [databag_hooks(r) for r in multi if r.order == "FIFO"]
    shuffled = [r for r in multi if r.order == "shuffled"]
    sizes = sorted({r.size for r in shuffled})
    per_size = ", ".join(
        f"N={n}: {_fmt(statistics.median([databag_hooks(r) for r in shuffled if r.size == n]))}"
        for n in sizes
    )
    largest = max(r.size for r in all_runs)
    events = [leader_events(r) for r in all_runs if r.size == largest]
    before = [databag_hooks(r) - 1 for r in all_runs if r.size == largest]
    same = sum(1 for r in all_runs if probe_hooks(r) == databag_hooks(r))
    probed_ready = sum(1 for r in all_runs if r.probe_resume is not None)
    finish = [leader_hooks(r.window(r.last_done, r.cleared)) for r in all_runs]
    by_event = Counter(r.records[r.last_done].hook.event for r in all_runs)
    carriers = ", ".join(f"{e} in {c}" for e, c in by_event.most_common())
    lines = [
        "Reading:",
        "",
        f"- The resume does not wait on the O(N) events. At N={largest} a run queues "
        f"{_span(events)} relation-changed events on the leader; it resumed after "
        f"{_span(before)} of them, in the first hook whose snapshot shows every participant "
        "busy. The rest run after the resume (most after the run is cleared) and change nothing.",
    ]
    if fifo:
        lines.append(
            f"- FIFO runs every arm hook before the leader's first relation-changed, so the "
            f"leader resumes in hook {_span(fifo)} (the start action, then one relation-changed) "
            "at every N > 1."
        )
    if shuffled:
        values = [databag_hooks(r) for r in shuffled]
        lines.append(
            f"- Shuffled, the leader needs {_span(values)} hooks (median "
            f"{_fmt(statistics.median(values))}; per N: {per_size}), with no trend in N: each "
            "step runs a random unit's next event, so the leader's share of the hooks falls as N "
            "grows while the hooks until the last arm rise. Each leader hook before the resume "
            "ran while some participant had not yet written `busy` and (the probe says) was not "
            "paused: nothing could have resumed earlier."
        )
    lines += [
        f"- Probe everyone vs the databag: the same leader hook in {same} of {len(all_runs)} "
        f"runs (the probe found every k6 paused by the databag's resume hook in {probed_ready} "
        "of them). In the emulator this is by construction: a unit's k6 reaches status 4 inside "
        "that unit's own arm hook, which writes `busy` as it ends, and no other hook runs in "
        "between; a probe only learns what the databag says at the next hook anyway.",
        "- On real Juju the units arm concurrently (each arm hook is Pebble's 1 s start check "
        "plus k6's init, in parallel, so start→resume does not grow as N × 1 s as it does here; "
        "the wall time column is the emulator's serial arming). The only window a probe could "
        "win is between the last k6 reaching status 4 and the leader's hook that sees its "
        "`busy`: that unit's hook returning and committing, plus Juju dispatching "
        "relation-changed to the leader. The probe gains only when a leader hook happens to run "
        "inside that window, and then at most that one dispatch (a fraction of a second); it "
        "cannot remove hooks, since the leader's events are queued by the writes either way. "
        "Against that, a probe cannot tell which run a paused k6 belongs to: a stale paused k6 "
        "left by an aborted run on a unit that never processed the abort also answers status 4, "
        "and would be resumed into the new run.",
        "- **Kept: the databag way** (what the charm does): resume when every participant wrote "
        "`busy` for this run id, probing only participants that wrote this run id with status "
        "`arming` (their k6 is known to be this run's; it was still initializing when their "
        "own bounded wait ended). Probing everyone never resumed earlier here and risks resuming "
        "a stale k6.",
        f"- Ending: the leader clears the run in its first hook after the last end report in "
        f"every run ({_span(finish)} leader hook); the other hooks in that window are other "
        "units' queued no-op relation-changed events. The last end report came in "
        f"{carriers}: this tiny test ends milliseconds after the resume, and a unit that "
        "finds its k6 exited in any hook reports at once (reading the exit code from the "
        "done-notice through `get_notices`) instead of waiting for the notice's own hook, "
        "which the emulator, like Juju, queues behind the unit's pending events.",
    ]
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str) -> str:
    """Markdown list items wrapped at 99 columns (the doc's own width)."""
    if not line.startswith("- "):
        return line
    return textwrap.fill(line, width=99, subsequent_indent="  ")


def _figure(all_runs: Sequence[RunRecord]) -> Figure:
    sizes = sorted({r.size for r in all_runs})

    def series(order: str, measure: Callable[[RunRecord], int | None]) -> list[float | None]:
        values: list[float | None] = []
        for n in sizes:
            found = [
                v
                for r in all_runs
                if r.size == n and r.order == order
                if (v := measure(r)) is not None
            ]
            if not found and order == "shuffled" and n == 1:  # one unit: no order to shuffle
                found = [v for r in all_runs if r.size == n if (v := measure(r)) is not None]
            values.append(statistics.median(found) if found else None)
        return values

    def leader_run(r: RunRecord) -> int:
        return leader_hooks(r.window(r.start, r.cleared))

    def all_run(r: RunRecord) -> int:
        return len(r.window(r.start, r.cleared))

    return Figure(
        filename="benchmarks-coordination.png",
        title="Hooks per run on the emulator (shuffled: median over seeds)",
        xlabel="units (N)",
        ylabel="hooks",
        x=[float(n) for n in sizes],
        series={
            "leader, start→resume, databag (FIFO)": series("FIFO", databag_hooks),
            "leader, start→resume, databag (shuffled)": series("shuffled", databag_hooks),
            "leader, start→resume, probe everyone (shuffled; drawn over the databag line)": (
                series("shuffled", probe_hooks)
            ),
            "relation-changed queued on the leader (shuffled)": series("shuffled", leader_events),
            "leader, start→cleared (shuffled)": series("shuffled", leader_run),
            "all units, start→cleared (shuffled)": series("shuffled", all_run),
        },
        logx=True,
        logy=True,
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
    return f"""Per-hook cost, from the same runs as the coordination section (every hook of every
model: the unit joins, idle update-status and a not-observed `install` on every unit, the run,
then up to {IDLE_DRAIN} of the idle relation-changed events still queued after the run cleared).
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
