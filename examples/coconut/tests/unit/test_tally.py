"""The leader's tally: totals, every share eaten exactly once, start skew."""

from __future__ import annotations

import pytest
from charms.k6_k8s.v0.synchronized_task import RUNNING, Run, UnitReport

from tally import start_skew_ms, tally

UNITS = ("c/0", "c/1", "c/2")
AT = 1_700_000_002.0


def a_run(coconuts: int = 31) -> Run:
    return Run("r1", RUNNING, UNITS, AT - 5, AT + 60, info={"coconuts": coconuts}, start_at=AT)


def reported(eaten: int, started: float | None) -> UnitReport:
    return UnitReport(
        status="idle", run_id="r1", exit_code=0, result={"eaten": eaten, "started": started}
    )


def test_every_share_eaten_merges_into_the_total_and_the_skew():
    reports = {
        "c/0": reported(10, AT + 0.002),
        "c/1": reported(10, AT + 0.005),
        "c/2": reported(11, AT + 0.003),
    }

    merged = tally(a_run(31), reports, AT + 1)

    assert merged.failures == []
    assert merged.data == {
        "requested": 31,
        "eaten": 31,
        "start_skew_ms": pytest.approx(3.0, abs=0.001),
        "last_start_after_instant_ms": pytest.approx(5.0, abs=0.001),
    }
    assert merged.lines["c/2"] == {"eaten": 11, "started": AT + 0.003}
    assert merged.headline == "31/31 coconuts eaten, start skew 3.0 ms"


def test_a_unit_that_ate_more_or_less_than_its_share_fails_the_run():
    reports = {
        "c/0": reported(10, AT),
        "c/1": reported(9, AT),
        "c/2": reported(11, AT),
    }

    merged = tally(a_run(31), reports, AT + 1)

    assert merged.failures == ["c/1 ate 9 of its 10", "30 of 31 coconuts eaten"]


def test_a_lost_unit_is_missing_from_the_total():
    reports = {"c/0": reported(10, AT), "c/2": reported(11, AT + 0.001)}

    merged = tally(a_run(31), reports, AT + 1)

    assert merged.data["eaten"] == 21
    assert merged.failures == ["21 of 31 coconuts eaten"]
    assert set(merged.lines) == {"c/0", "c/2"}


def test_units_that_never_started_have_no_skew():
    reports = {u: UnitReport(status="idle", run_id="r1", exit_code=143) for u in UNITS}

    merged = tally(a_run(31), reports, AT + 1)

    assert merged.data["start_skew_ms"] is None
    assert merged.data["last_start_after_instant_ms"] is None
    assert merged.lines["c/0"] == {"eaten": 0, "started": None}


def test_start_skew_is_max_minus_min_in_ms():
    assert start_skew_ms([AT + 0.010, AT, AT + 0.004]) == pytest.approx(10.0, abs=0.001)
    assert start_skew_ms([AT]) == 0.0
    assert start_skew_ms([]) is None
