"""Property-based exploration: random schedules, faults and start/stop on the emulator.

The schedules run against the synchronized-task library through a stand-in charm that uses
nothing but the library (tests/support/task_charm), once per release mechanism, and against the
k6 charm itself:

- `api` (3/5 of the examples): the library's ApiRelease; each unit runs the k6 stand-in
  (tests/support/k6_standin.py: k6's REST API and exit codes, no load) as a one-shot service;
- `instant` (1/5): InstantRelease; each unit runs a shell line that waits for a start file;
- `k6` (1/5): the k6 charm (src/charm.py), with the same k6 stand-in in place of k6.

These are TEST DOUBLES so that hundreds of runs fit in minutes; real k6 runs in every other e2e
test. Invariants are checked after every hook:

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
printed `@reproduce_failure` blob). K6K8S_SOAK_EXAMPLES sets how many schedules run in all (500
by default, as in CI, derandomized); K6K8S_SOAK_SHARD seeds one soak shard (tests/e2e/soak.py).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.support.schedules import SETUPS, Schedule, UnitFaults, parse_schedule, run_schedule

EXAMPLES = int(os.environ.get("K6K8S_SOAK_EXAMPLES", "500"))
# A soak shard explores its own seeded part of the space (tests/e2e/soak.py); CI is derandomized.
SHARD = os.environ.get("K6K8S_SOAK_SHARD")

pytestmark = pytest.mark.timeout(0)


def examples_for(charm: str, total: int = EXAMPLES) -> int:
    """This charm's share: 3/5 api, 1/5 instant, the rest k6 (of 500: 300, 100, 100)."""
    api, instant = total * 3 // 5, total // 5
    return {"api": api, "instant": instant, "k6": total - api - instant}[charm]


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
)


@st.composite
def schedules(draw, charm: str) -> Schedule:
    units = draw(st.integers(1, 3))
    faults = tuple(draw(st.lists(unit_faults(charm), min_size=units + 1, max_size=units + 1)))
    return Schedule(
        units=units,
        seed=draw(st.integers(0, 2**16)),
        faults=faults,
        ops=tuple(draw(st.lists(ops, min_size=1, max_size=8))),
        charm=charm,
    )


SCHEDULES_RUN: Counter[str] = Counter()  # schedules the property tests ran, by charm


@pytest.fixture(scope="module", autouse=True)
def every_schedule_ran(request):
    """The promise of CI and the soak: EXAMPLES schedules really ran, not fewer."""
    yield
    if SCHEDULES_RUN and not request.session.testsfailed:
        for charm in SCHEDULES_RUN:
            wanted = examples_for(charm)
            assert SCHEDULES_RUN[charm] >= wanted, f"{charm}: {SCHEDULES_RUN[charm]} of {wanted}"
        ran = ", ".join(f"{n} {charm}" for charm, n in sorted(SCHEDULES_RUN.items()))
        print(f"\n{sum(SCHEDULES_RUN.values())} schedules ran ({ran}; EXAMPLES={EXAMPLES})")


def _explore(schedule: Schedule, tmp_path_factory) -> None:
    SCHEDULES_RUN[schedule.charm] += 1
    checker = run_schedule(schedule, tmp_path_factory.mktemp("schedule"))

    assert checker.violations == [], f"seed {schedule.seed}: {checker.violations}"


def _settings(charm: str):
    return settings(
        max_examples=max(1, examples_for(charm)),
        deadline=None,
        derandomize=SHARD is None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


@_settings("api")
@given(schedule=schedules("api"))
@hypothesis_seed(int(SHARD or 0) * 3)
def test_library_api_release_keeps_the_invariants(schedule: Schedule, tmp_path_factory) -> None:
    _explore(schedule, tmp_path_factory)


@_settings("instant")
@given(schedule=schedules("instant"))
@hypothesis_seed(int(SHARD or 0) * 3 + 1)
def test_library_instant_release_keeps_the_invariants(
    schedule: Schedule, tmp_path_factory
) -> None:
    _explore(schedule, tmp_path_factory)


@_settings("k6")
@given(schedule=schedules("k6"))
@hypothesis_seed(int(SHARD or 0) * 3 + 2)
def test_k6_charm_keeps_the_invariants(schedule: Schedule, tmp_path_factory) -> None:
    _explore(schedule, tmp_path_factory)


@pytest.mark.parametrize("charm", sorted(SETUPS))
def test_a_printed_schedule_parses_back_and_replays(charm, tmp_path):
    schedule = Schedule(
        units=2,
        seed=7,
        faults=(UnitFaults(), UnitFaults(exit_code=99), UnitFaults()),
        ops=(("start",), ("hooks", 3), ("kill", 1), ("stop",)),
        charm=charm,
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
