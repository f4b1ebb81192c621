"""Quick URL tests end to end: `start url=...` renders a k6 script that real k6 runs on every unit.

Quick tests cannot tag requests with the unit, so the load is checked in the units' summaries.
"""

from __future__ import annotations

import pytest

from tests.emulator.model import Model

pytestmark = pytest.mark.timeout(60)


def start_and_wait(model: Model, **params) -> dict:
    """`start` on the leader with quick-test parameters; the last run once it has ended."""
    result = model.action(model.leader, "start", **params)
    assert result.ok, result.failure
    run_id = result.results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=40)
    return model.app["last_run"]


def unit_gauge(model: Model, name: str) -> dict[str, int]:
    """One gauge (its maximum) from each unit's compact summary, in its own databag."""
    return {
        u.name: model.unit_view(u.index)["result"]["summary"]["gauges"][name]
        for u in model.units.values()
    }


def test_quick_constant_vus_splits_the_vus_across_units(make_model, target):
    model = make_model(2)

    last = start_and_wait(model, url=f"{target.url}/q", vus=4, duration="2s")

    assert last["outcome"] == "passed", last["reason"]
    assert last["info"]["source"] == "quick"
    assert target.stats()["count"] > 0
    assert unit_gauge(model, "vus_max") == {"k6/0": 2, "k6/1": 2}
    assert last["aggregate"]["gauges"]["vus_max"]["sum_of_unit_max"] == 4
    requests = {u: r["line"]["requests"] for u, r in last["units"].items()}
    assert all(n > 0 for n in requests.values()), requests
    assert sum(requests.values()) == target.stats()["count"]
    assert model.k6_running() == []


def test_quick_rate_delivers_rate_times_duration(make_model, target):
    model = make_model(2)

    last = start_and_wait(model, url=f"{target.url}/q", rate=20, duration="3s")

    expected = 20 * 3
    count = target.stats()["count"]
    assert last["outcome"] == "passed", last["reason"]
    assert abs(count - expected) <= 0.1 * expected, count
    assert last["aggregate"]["counters"]["http_reqs"]["count"] == count
    assert model.k6_running() == []


def test_quick_test_with_unexpected_status_fails_its_threshold(make_model, target):
    model = make_model(2)

    last = start_and_wait(model, url=f"{target.url}/status/503", vus=2, duration="1s")

    assert last["outcome"] == "failed"
    assert last["reason"].startswith("thresholds failed: http_req_failed")  # rate<0.01, merged
    assert {r["exit_code"] for r in last["units"].values()} == {0}
    assert target.stats()["count"] > 0
    assert model.k6_running() == []
