"""One test on N units, as one `k6 run` of it (issue: one k6 test, not N).

Real k6 on 3 emulated units: setup() and teardown() once, the script's own thresholds judged on
the whole run, aborts that stop the whole run (docs/k6-semantics.md).
"""

from __future__ import annotations

import pytest

from tests.e2e import scripts
from tests.support.emulated_runs import assert_all_idle, configure, run_to_end

UNITS = 3
STOP_BOUND_S = 10.0  # stated in docs/k6-semantics.md: watcher read + one leader hook + stops


def paths(target) -> dict:
    return target.stats()["paths"]


def test_setup_and_teardown_run_once_and_every_request_carries_the_one_token(make_model, target):
    model = make_model(UNITS, configure(target, scripts.one_test(iterations=60, vus=6)))

    last = run_to_end(model)

    seen = paths(target)
    assert last["outcome"] == "passed", last["reason"]
    assert (seen["/setup"]["count"], seen["/load"]["count"], seen["/teardown"]["count"]) == (
        1,
        60,
        1,
    )
    assert seen["/setup"]["last"] <= seen["/load"]["first"]
    assert seen["/teardown"]["first"] >= seen["/load"]["last"]
    tokens = target.stats()["tokens"]
    assert len(tokens) == 1 and list(tokens.values()) == [61]  # 60 loads + the teardown
    assert last["spread_ms"] is not None
    assert last["concluded"]["teardown"]["ran"] is True
    assert "error" not in last["concluded"]["teardown"]
    assert_all_idle(model)


def test_a_throwing_setup_fails_the_run_before_any_load(make_model, target):
    script = scripts.one_test(setup="throw new Error('no token today');")
    model = make_model(UNITS, configure(target, script))

    last = run_to_end(model)

    assert last["outcome"] == "failed"
    assert "setup() failed on k6/0: Error: no token today" in last["reason"]
    assert "/load" not in paths(target) and "/teardown" not in paths(target)
    assert paths(target)["/setup"]["count"] == 1
    assert_all_idle(model)


@pytest.mark.parametrize(
    ("thresholds", "outcome"),
    [("http_reqs: ['count>=50']", "passed"), ("http_reqs: ['count<=30']", "failed")],
)
def test_a_count_threshold_is_judged_on_the_whole_run(make_model, target, thresholds, outcome):
    # 60 load requests + setup's 1 (counted, as in one k6 run): every unit alone sends ~20
    model = make_model(UNITS, configure(target, scripts.one_test(60, 6, thresholds=thresholds)))

    last = run_to_end(model)

    assert last["outcome"] == outcome, last["reason"]
    assert {u["exit_code"] for u in last["units"].values()} == {0}  # no unit judged its share
    if outcome == "failed":
        assert last["reason"] == "thresholds failed: http_reqs count<=30: count is 61"
    assert_all_idle(model)


def test_submetric_and_percentile_thresholds_are_judged_on_the_merge(make_model, target):
    thresholds = (
        "'http_req_duration{status:200}': ['p(95)<5000', 'max<60000'], "
        "'http_req_duration{name:nothing}': ['p(95)<1'], "  # no samples: 0, as k6
        "http_req_failed: ['rate<0.01'], iterations: ['count==60', 'count!=61']"
    )
    model = make_model(UNITS, configure(target, scripts.one_test(60, 6, thresholds=thresholds)))

    last = run_to_end(model)

    assert last["outcome"] == "passed", last["reason"]
    merged = last["aggregate"]["trends"]["http_req_duration{status:200}"]
    assert merged["count"] == 61
    assert merged["p(95)"] is not None and merged["rank_error"]["p(95)"] < 0.05
    assert_all_idle(model)


def test_a_percentile_threshold_the_whole_run_fails_fails_with_the_merged_value(
    make_model, target
):
    model = make_model(
        UNITS,
        configure(
            target, scripts.one_test(60, 6, thresholds="http_req_duration: ['p(95)<0.001']")
        ),
    )

    last = run_to_end(model)

    assert last["outcome"] == "failed"
    assert last["reason"].startswith("thresholds failed: http_req_duration p(95)<0.001: p(95) is ")
    assert "% rank)" in last["reason"]


ABORT_ON_FAILURES = (
    "http_req_failed: [{ threshold: 'rate<0.1', abortOnFail: true, delayAbortEval: '1s' }]"
)


def failing_on(unit: str) -> str:
    """A 20 s paced test whose requests fail on `unit` only (a third of the whole run's)."""
    return scripts.one_test(
        thresholds=ABORT_ON_FAILURES,
        executor="{ executor: 'constant-vus', vus: 3, duration: '20s' }",
        load=(
            f"if (__ENV.K6_K8S_UNIT === '{unit}') "
            f"http.get(`${{__ENV.TARGET}}/status/500`, {{ {scripts.HEADER} }}); sleep(0.1);"
        ),
    )


def test_a_whole_run_abort_threshold_stops_every_unit(make_model, target):
    model = make_model(UNITS, configure(target, failing_on("k6/1")))

    last = run_to_end(model, timeout=60)

    assert last["outcome"] == "failed"
    assert last["reason"].startswith(
        "abortOnFail threshold 'http_req_failed: rate<0.1' crossed on the whole run"
    )
    stats = target.stats()
    stopped = max(stats["last"].values()) - min(stats["first"].values())
    print(f"load lasted {stopped:.1f} s of 20 s")
    assert stopped < 20 - STOP_BOUND_S  # every unit stopped long before its 20 s
    assert paths(target)["/teardown"]["count"] == 1
    assert_all_idle(model)


def test_one_unit_over_while_the_whole_run_is_under_does_not_abort(make_model, target):
    script = failing_on("k6/1").replace("rate<0.1", "rate<0.5").replace("'20s'", "'4s'")
    model = make_model(UNITS, configure(target, script))

    last = run_to_end(model, timeout=60)

    assert last["outcome"] == "passed", last["reason"]  # k6/1 alone: half its requests failed
    assert paths(target)["/teardown"]["count"] == 1


def test_a_unit_aborting_the_test_stops_every_unit_then_teardown_runs_once(make_model, target):
    script = scripts.one_test(
        executor="{ executor: 'constant-vus', vus: 3, duration: '20s' }",
        load=(
            "sleep(0.1); if (__ENV.K6_K8S_UNIT === 'k6/2' && exec.scenario.iterationInInstance "
            ">= 5) exec.test.abort('enough');"
        ),
    )
    model = make_model(UNITS, configure(target, script))

    last = run_to_end(model, timeout=60)

    assert last["outcome"] == "failed"
    assert last["reason"].startswith("k6/2 aborted the test")
    assert last["units"]["k6/2"]["exit_code"] == 108
    stats = target.stats()
    assert max(stats["last"].values()) - min(stats["first"].values()) < 20 - STOP_BOUND_S
    assert paths(target)["/teardown"]["count"] == 1
    assert_all_idle(model)


def test_a_stopped_run_still_runs_teardown_once(make_model, target):
    script = scripts.one_test(
        executor="{ executor: 'constant-vus', vus: 3, duration: '60s' }", load="sleep(0.05);"
    )
    model = make_model(UNITS, configure(target, script))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.app["run"]["phase"] == "running", timeout=30)
    model.settle(lambda: len(target.stats()["by_unit"]) >= UNITS, timeout=10)

    model.action(0, "stop")
    model.settle(lambda: model.finished(run_id), timeout=60)

    last = model.app["last_run"]
    assert last["outcome"] == "stopped"
    assert paths(target)["/setup"]["count"] == 1
    assert paths(target)["/teardown"]["count"] == 1
    assert paths(target)["/teardown"]["first"] >= paths(target)["/load"]["last"]
    assert_all_idle(model)


def test_a_failing_teardown_fails_the_run_and_says_why(make_model, target):
    script = scripts.one_test(iterations=12, vus=3).replace(
        "export function teardown(data) {",
        "export function teardown(data) { throw new Error('no');",
    )
    model = make_model(UNITS, configure(target, script))

    last = run_to_end(model)
    results = model.action(0, "results").results

    assert last["outcome"] == "failed"
    assert last["reason"].startswith("teardown() failed on k6/0: Error: no")
    assert results["teardown"].startswith("failed on k6/0: Error: no")
    assert results["exit-code"] == "107"  # as one `k6 run` whose teardown throws
    assert paths(target)["/load"]["count"] == 12
    assert_all_idle(model)


def test_when_the_unit_that_ran_setup_is_gone_teardown_runs_on_the_new_leader(make_model, target):
    script = scripts.one_test(
        executor="{ executor: 'constant-vus', vus: 3, duration: '6s' }", load="sleep(0.05);"
    )
    model = make_model(UNITS, configure(target, script))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.app["run"]["phase"] == "running", timeout=30)

    model.remove_unit(0)  # the leader, whose k6 ran setup(), goes away mid-run
    model.elect(1)
    model.settle(lambda: model.finished(run_id), timeout=60)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"] == "lost during the run: k6/0"
    assert last["concluded"]["setup"] == {"unit": "k6/0"}
    assert last["concluded"]["teardown"] == {"ran": True, "unit": "k6/1"}
    assert paths(target)["/setup"]["count"] == 1
    assert paths(target)["/teardown"]["count"] == 1
    assert len(target.stats()["tokens"]) == 1  # the new leader used setup()'s own data
