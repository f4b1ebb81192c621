"""Property-based exploration: random schedules, faults and start/stop on the emulator.

The schedules run against the synchronized-task library through a stand-in charm that uses
nothing but the library (tests/support/task_charm), once per release mechanism, and against the
k6 charm itself:

- `api` (3/5 of the examples): the library's ApiRelease; each unit runs the k6 stand-in
  (tests/support/k6_standin.py: k6's REST API and exit codes, no load) as a one-shot service;
- `instant` (1/5): InstantRelease; each unit runs a shell line that waits for a start file;
- `k6` (1/5): the k6 charm (src/charm.py), with the same k6 stand-in in place of k6.

These are TEST DOUBLES so that hundreds of runs fit in minutes; real k6 runs in every other e2e
test. Each kind runs 4/5 of its schedules on the serial emulator (one hook at a time) and 1/5
with **overlapping hooks** (the emulator's concurrent mode, Juju as it runs: every unit's hooks at
once, each on a snapshot of the relation data taken when it starts, its writes landing at its end
plus a random cost, so a hook can commit after another unit committed what it did not read).
Schedules mix event delivery with faults: k6 killed, stale notices replayed, units removed and
added, leadership moved, pods restarted (the unit keeps its databag, its containers come back
empty, it gets Juju's restart events). Invariants are checked after every hook, on what each hook
read (its snapshot) where the protocol decided on it:

(a) nobody is released before every participant is armed: in the databags, every participant
    is armed (busy, or pending and probed ready) when the leader records a release or a start
    instant; physically, every resume a stand-in received arrived after every participant's
    stand-in was paused before the run, and no instant workload started before its run's start
    instant, which was written after every participant's workload was ready;
(b) every run ends, and the leader's first update-status past a deadline acts on it;
(c) at the end nobody is left busy or pending and no workload runs;
(d) the last-run record is consistent: passed only with every exit code 0 (and, for the
    stand-in charm, every item of the task done exactly once across the shares), and its
    per-unit exit codes are the units' own reports;
(e) there are never two active runs: a start while a run is active is refused.

A failing schedule is shrunk by hypothesis and printed (`Falsifying example: ...
(schedule=Schedule(...))`); run it again on its own with
`python -m tests.e2e.soak --replay 'Schedule(...)'` (or replay hypothesis' exact bytes with the
printed `@reproduce_failure` blob; a schedule with overlapping hooks replays the same steps, but
the threads' exact timing differs from run to run). K6K8S_SOAK_EXAMPLES sets how many schedules
run in all (500 by default, as in CI, derandomized); K6K8S_SOAK_SHARD seeds one soak shard
(tests/e2e/soak.py).
"""

from __future__ import annotations

import os
from collections import Counter
from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.emulator.model import Concurrency, Hook, Model
from tests.support.schedules import SETUPS, Schedule, UnitFaults, parse_schedule, run_schedule

EXAMPLES = int(os.environ.get("K6K8S_SOAK_EXAMPLES", "500"))
# A soak shard explores its own seeded part of the space (tests/e2e/soak.py); CI is derandomized.
SHARD = os.environ.get("K6K8S_SOAK_SHARD")

pytestmark = pytest.mark.timeout(0)


def examples_for(charm: str, total: int = EXAMPLES, concurrent: bool = False) -> int:
    """This kind's share: 4/5 serial, 1/5 with overlapping hooks, each split 3/5 api,
    1/5 instant, the rest k6 (of 500: 240, 80, 80 serial; 60, 20, 20 overlapping).
    """
    part = total // 5 if concurrent else total - total // 5
    api, instant = part * 3 // 5, part // 5
    return {"api": api, "instant": instant, "k6": part - api - instant}[charm]


def unit_faults(charm: str) -> st.SearchStrategy[UnitFaults]:
    return st.builds(
        UnitFaults,
        exit_code=st.sampled_from([0, 0, 0, 99]),
        die_before_arm=st.sampled_from([False, False, False, True]),
        slow_init=st.booleans(),
        stuck_init=st.just(False) if charm == "k6" else st.sampled_from([False] * 7 + [True]),
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
    st.tuples(st.just("restart"), st.integers(0, 4)),
)


@st.composite
def schedules(draw, charm: str, concurrent: bool = False) -> Schedule:
    units = draw(st.integers(1, 3))
    faults = tuple(draw(st.lists(unit_faults(charm), min_size=units + 1, max_size=units + 1)))
    return Schedule(
        units=units,
        seed=draw(st.integers(0, 2**16)),
        faults=faults,
        ops=tuple(draw(st.lists(ops, min_size=1, max_size=8))),
        charm=charm,
        concurrent=concurrent,
    )


SCHEDULES_RUN: Counter[tuple[str, bool]] = Counter()  # by charm and overlapping hooks or not
BLIND: Counter[str] = Counter()  # overlapping schedules in which two units' writes crossed


@pytest.fixture(scope="module", autouse=True)
def every_schedule_ran(request):
    """The promise of CI and the soak: EXAMPLES schedules really ran, not fewer."""
    yield
    if SCHEDULES_RUN and not request.session.testsfailed:
        for (charm, concurrent), n in SCHEDULES_RUN.items():
            wanted = examples_for(charm, concurrent=concurrent)
            assert n >= wanted, f"{charm} (overlapping: {concurrent}): {n} of {wanted}"
        ran = ", ".join(
            f"{n} {charm}{f' overlapping ({BLIND[charm]} crossed)' if concurrent else ''}"
            for (charm, concurrent), n in sorted(SCHEDULES_RUN.items())
        )
        print(f"\n{sum(SCHEDULES_RUN.values())} schedules ran ({ran}; EXAMPLES={EXAMPLES})")
        overlapping = sum(n for (_, concurrent), n in SCHEDULES_RUN.items() if concurrent)
        if overlapping >= 10:  # the overlapping schedules really reach what serial ones cannot
            assert sum(BLIND.values()) > 0, "no overlapping schedule had two writes cross"


def _explore(schedule: Schedule, tmp_path_factory) -> None:
    SCHEDULES_RUN[schedule.charm, schedule.concurrent] += 1
    checker = run_schedule(schedule, tmp_path_factory.mktemp("schedule"))
    if _blind_writers(checker.hooks):
        BLIND[schedule.charm] += 1

    assert checker.violations == [], f"seed {schedule.seed}: {checker.violations}"


def _property(charm: str, concurrent: bool, seed: int):
    """The property test of one kind of schedule: its share of the examples, its own seed."""

    @settings(
        max_examples=max(1, examples_for(charm, concurrent=concurrent)),
        deadline=None,
        derandomize=SHARD is None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(schedule=schedules(charm, concurrent))
    @hypothesis_seed(int(SHARD or 0) * 6 + seed)
    def keeps_the_invariants(schedule: Schedule, tmp_path_factory) -> None:
        _explore(schedule, tmp_path_factory)

    return keeps_the_invariants


test_library_api_release_keeps_the_invariants = _property("api", False, 0)
test_library_instant_release_keeps_the_invariants = _property("instant", False, 1)
test_k6_charm_keeps_the_invariants = _property("k6", False, 2)
test_library_api_release_keeps_the_invariants_with_overlapping_hooks = _property("api", True, 3)
test_library_instant_release_keeps_the_invariants_with_overlapping_hooks = _property(
    "instant", True, 4
)
test_k6_charm_keeps_the_invariants_with_overlapping_hooks = _property("k6", True, 5)


@pytest.mark.parametrize("charm", sorted(SETUPS))
@pytest.mark.parametrize("concurrent", [False, True], ids=["serial", "overlapping"])
def test_a_printed_schedule_parses_back_and_replays(charm, concurrent, tmp_path):
    schedule = Schedule(
        units=2,
        seed=7,
        faults=(UnitFaults(), UnitFaults(exit_code=99), UnitFaults()),
        ops=(("start",), ("hooks", 3), ("kill", 1), ("restart", 0), ("stop",), ("start",)),
        charm=charm,
        concurrent=concurrent,
    )

    replayed = parse_schedule(f"schedule={schedule!r},")
    checker = run_schedule(replayed, tmp_path)

    assert replayed == schedule
    assert checker.violations == []
    assert checker.started and set(checker.started) == set(checker.ended)


def test_a_schedule_printed_before_the_split_replays_on_the_k6_charm():
    text = "Schedule(units=1, seed=0, faults=(UnitFaults(),), ops=(('start',),))"

    assert parse_schedule(text).charm == "k6"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/pwned')",
        "Schedule(units=1, seed=0, faults=(), ops=(open('/etc/passwd'),))",
        "UnitFaults()",
        "Schedule(units=1",
        "Schedule(1, 2, (), ())",
        "Schedule(units=1, seed=0, faults=(), ops=(), charm='nope')",
    ],
)
def test_anything_but_a_printed_schedule_is_refused(text):
    with pytest.raises(ValueError, match="not a printed schedule|not part of a printed schedule"):
        parse_schedule(text)


# ------------------------------------------------------------------ only overlapping hooks reach


def _blind_writers(hooks: list[Hook]) -> set[frozenset[str]]:
    """Units whose writing hooks were in flight at once: each landed without the other's write.

    On the serial emulator every hook reads every earlier commit, so this is always empty.
    """
    spans = [(h.unit, h.started, h.committed) for h in hooks if h.unit_keys and h.committed]
    return {
        frozenset((one, two))
        for (one, start1, end1), (two, start2, end2) in combinations(spans, 2)
        if one != two and start1 < end2 and start2 < end1
    }


def _ended_while_arming(app: dict, units: dict[str, dict]) -> list[str]:
    """Participants whose end (exit code 0) is in their databag while the run shows arming."""
    run = app.get("run")
    if not run or run["phase"] != "arming":
        return []
    return [
        name
        for name in run["participants"]
        if (units.get(name) or {}).get("run_id") == run["run_id"]
        and units[name].get("status") == "idle"
        and units[name].get("exit_code") == 0
    ]


@pytest.mark.parametrize("concurrent", [False, True], ids=["serial", "overlapping"])
def test_overlapping_hooks_reach_states_no_serial_schedule_can_and_the_run_still_passes(
    concurrent, tmp_path
):
    """One `start` on three units of the k6 charm (its k6 stand-in runs 0.1 s once released).

    With overlapping hooks, and the leader's agent slow (its hooks cost 1 s, the others 50 ms):
    k6/1's and k6/2's arms are in flight at once, each landing `busy` without having read the
    other's; and the released units report their end (exit code 0) while the app databag still
    shows the run arming, because the leader's release hook lands its `running` after them. No
    serial schedule reaches either state; the serial run of the same steps is the control. Both
    ways the invariants hold after every hook and the run passes.
    """
    hooks: list[Hook] = []
    early: list[str] = []

    def observe(hook: Hook, model: Model) -> None:
        hooks.append(hook)
        units = {u.name: model.unit_view(u.index) for u in model.units.values()}
        early.extend(_ended_while_arming(model.app, units))

    schedule = Schedule(3, 0, (UnitFaults(),) * 4, (("start",),), "k6", concurrent)
    slow_leader = Concurrency(hook_cost=0.05, unit_costs={"k6/0": 1.0})
    checker = run_schedule(schedule, tmp_path, slow_leader, observe)

    assert checker.violations == []
    (run_id,) = checker.ended
    last = checker.ended[run_id]
    assert last["outcome"] == "passed", last["reason"]
    assert {u: line["exit_code"] for u, line in last["units"].items()} == dict.fromkeys(
        ("k6/0", "k6/1", "k6/2"), 0
    )
    if concurrent:
        assert frozenset(("k6/1", "k6/2")) in _blind_writers(hooks)
        assert {"k6/1", "k6/2"} <= set(early)
    else:
        assert _blind_writers(hooks) == set() and early == []
