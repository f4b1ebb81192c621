"""Bad input the other unit tests leave out: config, action parameters, relation data, notices.

Each row of docs/bad-input.md that no other test proved is proved here, at the charm's edge.
"""

from __future__ import annotations

import json

import pytest
from ops import testing

import sources
from k6_workload import SERVICE
from tests.support.k6_charm_states import (
    PAYLOAD,
    SCRIPT,
    app_data,
    app_of,
    ctx,
    me_of,
    participant_gets_done_notice,
    peers,
    run_dict,
    state,
)

URL = "http://127.0.0.1:9/"


def start_failure(tmp_path, params: dict | None = None, config: dict | None = None) -> str:
    """The message of a `start` that must fail (on a single-unit leader)."""
    context = ctx()
    st = state(tmp_path, peers(others={}), config=config)

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start", params=params or {}), st)

    return failure.value.message


def config_status(tmp_path, config: dict) -> testing.StatusBase:
    """The unit status after config-changed with `config`."""
    context = ctx()
    out = context.run(context.on.config_changed(), state(tmp_path, config=config))
    return out.unit_status


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("timeout", [-1, 0, 4, 3601, 10**9])
def test_arm_timeout_out_of_range_blocks_the_unit(tmp_path, timeout):
    status = config_status(tmp_path, {"load-test": SCRIPT, "arm-timeout": timeout})

    assert status == testing.BlockedStatus(f"arm-timeout must be 5..3600 seconds, not {timeout}")


@pytest.mark.parametrize("timeout", [5, 3600])
def test_arm_timeout_at_either_bound_is_accepted(tmp_path, timeout):
    status = config_status(tmp_path, {"load-test": SCRIPT, "arm-timeout": timeout})

    assert status == testing.ActiveStatus("idle")


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        (
            "http_req_failed",
            "invalid thresholds config: bad threshold 'http_req_failed': expected "
            "'<metric> <stat><op><number>' or '<metric>: <stat><op><number>, ...', "
            "e.g. 'http_req_failed rate<0.01' or 'http_req_duration: p(95)<200, p(99)<500'",
        ),
        (
            "http_req_duration p(101)<500",
            "invalid thresholds config: bad threshold 'http_req_duration p(101)<500': "
            "'p(101)' is not a percentile; use p(N) with N a number from 0 to 100, "
            "e.g. p(95) or p(99.9)",
        ),
        (
            "http_reqs count>many",
            "invalid thresholds config: bad threshold 'http_reqs count>many': "
            "'many' is not a number",
        ),
    ],
)
def test_invalid_thresholds_config_blocks_the_unit(tmp_path, thresholds, message):
    status = config_status(tmp_path, {"load-test": SCRIPT, "thresholds": thresholds})

    assert status == testing.BlockedStatus(message)


@pytest.mark.parametrize(
    "thresholds",
    ["http_req_failed rate<0.01", "http_req_duration: p(95)<500, p(99.9)<900; http_reqs count>1"],
)
def test_valid_thresholds_config_leaves_the_unit_idle(tmp_path, thresholds):
    status = config_status(tmp_path, {"load-test": SCRIPT, "thresholds": thresholds})

    assert status == testing.ActiveStatus("idle")


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            'A="x,y',
            "invalid environment config: environment: unbalanced double quote in 'A=\"x,y'",
        ),
        (
            'A=x"y"',
            "invalid environment config: environment entry 'A=x\"y\"' has a stray double quote",
        ),
        (
            "1A=x",
            "invalid environment config: environment entry '1A=x' is not KEY=VALUE "
            "with a valid KEY",
        ),
        (
            "A-B=x",
            "invalid environment config: environment entry 'A-B=x' is not KEY=VALUE "
            "with a valid KEY",
        ),
        (
            "=x",
            "invalid environment config: environment entry '=x' is not KEY=VALUE with a valid KEY",
        ),
    ],
)
def test_invalid_environment_config_blocks_the_unit(tmp_path, environment, message):
    status = config_status(tmp_path, {"load-test": SCRIPT, "environment": environment})

    assert status == testing.BlockedStatus(message)


def test_start_with_invalid_config_is_refused(tmp_path):
    message = start_failure(tmp_path, config={"load-test": SCRIPT, "arm-timeout": 4})

    assert message == "the charm config is invalid; see `juju status` and fix it first"


@pytest.mark.parametrize(
    ("load_test", "message"),
    [
        (" \n\t", "no test to run: set one with `juju config k6 load-test=@script.js`"),
        (
            "x" * (sources.MAX_SCRIPT_BYTES + 1),
            "the load-test config script is 262145 bytes; the limit is 262144 bytes",
        ),
        (
            "é" * (sources.MAX_SCRIPT_BYTES // 2 + 1),
            "the load-test config script is 262146 bytes; the limit is 262144 bytes",
        ),
        (SCRIPT + "\x00", "the load-test config script contains a NUL byte"),
    ],
)
def test_unusable_load_test_config_fails_start(tmp_path, load_test, message):
    assert start_failure(tmp_path, config={"load-test": load_test}).startswith(message)


def test_nul_byte_in_environment_config_blocks_the_unit(tmp_path):
    status = config_status(tmp_path, {"load-test": SCRIPT, "environment": "A=x\x00y"})

    assert status.name == "blocked"
    assert (
        status.message
        == "invalid environment config: environment entry 'A' has a NUL byte in its value"
    )


# ------------------------------------------------------------------ start parameters


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"thresholds": "http_reqs"}, "bad threshold 'http_reqs': expected"),
        ({"thresholds": "http_req_duration p(-1)<5"}, "'p(-1)' is not a percentile"),
        (
            {"thresholds": "http_req_duration: p(95)<5, fast"},
            "condition 'fast' is not '<stat><op><number>'",
        ),
        ({"thresholds": "http_reqs total>5"}, "unknown stat 'total'"),
        ({"thresholds": "http_reqs count>inf"}, "'inf' is not a number"),
        ({"script": "   \n"}, "the script parameter is empty"),
        ({"script": SCRIPT + "\x00"}, "the script parameter contains a NUL byte"),
        (
            {"script": "x" * (sources.MAX_SCRIPT_BYTES + 1)},
            "the script parameter is 262145 bytes; the limit is 262144 bytes",
        ),
        (
            {"app": "webapp", "test": "a" * 129},
            f"test name {'a' * 32!r}... is longer than 128 characters",
        ),
        ({"app": "webapp", "test": "a..b.js"}, "test name 'a..b.js' is not a plain file name"),
        ({"app": "webapp", "test": "a\x00.js"}, "is not a plain file name"),
        ({"app": "webapp", "test": ".hidden.js"}, "is not a plain file name"),
        ({"app": "webapp", "test": "sub/a.js"}, "is not a plain file name"),
        (
            {"url": URL, "script": SCRIPT},
            "give exactly one of test, script, url (got script, url)",
        ),
        ({"url": URL, "vus": 0}, "vus is 0; it must be between 1 and 10000"),
        ({"url": URL, "vus": 10_001}, "vus is 10001; it must be between 1 and 10000"),
        ({"url": URL, "rate": -1}, "rate is -1; it must be between 0 and 100000"),
        ({"url": URL, "duration": "1d"}, "duration '1d' is not a k6 duration"),
        ({"url": URL, "duration": "500ms"}, "duration '500ms' is shorter than k6's minimum"),
        ({"url": URL, "duration": "25h"}, "duration '25h' is longer than the limit of 24h"),
        ({"url": URL, "method": "TRACE"}, "method 'TRACE' is not one of GET, HEAD"),
        ({"url": URL, "expect-status": 600}, "is 600; it must be between 100 and 599"),
        ({"url": "http://a/ b"}, "url contains whitespace or a control character"),
    ],
)
def test_bad_start_parameter_fails_the_action_with_the_reason(tmp_path, params, message):
    assert message in start_failure(tmp_path, params)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (" \n", "test 'odd.js' from 'webapp' is empty"),
        (SCRIPT + "\x00", "test 'odd.js' from 'webapp' contains a NUL byte"),
    ],
)
def test_a_related_apps_test_that_k6_could_not_run_fails_start(tmp_path, text, message):
    provided = json.dumps({"tests": {"odd.js": text}})
    webapp = testing.Relation(
        "receive-k6-tests", remote_app_name="webapp", remote_app_data={"k6": provided}
    )
    context = ctx()
    st = state(tmp_path, relations={peers(others={}), webapp})

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start", params={"app": "webapp", "test": "odd.js"}), st)

    assert failure.value.message == message


def test_start_with_a_bad_threshold_changes_nothing(tmp_path):
    context = ctx()
    st = state(tmp_path, peers(others={}))

    with pytest.raises(testing.ActionFailed):
        context.run(context.on.action("start", params={"thresholds": "nope"}), st)

    assert context.action_results is None
    assert list(st.get_container("k6").layers) == []


def test_bad_expect_status_names_the_parameter_as_the_user_typed_it(tmp_path):
    message = start_failure(tmp_path, {"url": URL, "expect-status": 600})

    assert message.startswith("expect-status is 600")


# ------------------------------------------------------------------ relation data and notices


def test_done_notice_with_an_unreadable_exit_code_is_reported_as_an_error(tmp_path):
    out = participant_gets_done_notice(tmp_path, "x;y")

    mine = me_of(out)
    assert (mine["status"], mine["run_id"], mine["exit_code"]) == ("idle", "r1", None)
    assert mine["error"] == "unreadable exit code 'x;y'"
    assert out.unit_status == testing.BlockedStatus(
        "run r1 failed: k6/1 (no exit code: unreadable exit code 'x;y')"
    )


def test_app_data_script_that_differs_from_the_run_digest_is_not_run(tmp_path):
    relation = peers(unit=1, app=app_data(payload={**PAYLOAD, "script": "export default 1;"}))
    context = ctx(1)

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False),
    )

    assert me_of(out)["error"] == "the payload in the app databag does not match its digest"
    assert SERVICE not in out.get_container("k6").plan.services


def test_run_with_a_key_from_a_newer_revision_does_not_crash_the_hook(tmp_path):
    run = run_dict(phase="running", participants=["k6/0"]) | {"added_later": 1}
    relation = peers(unit=1, app=app_data(run=run))
    context = ctx(1)

    out = context.run(context.on.update_status(), state(tmp_path, relation, leader=False))

    assert out.unit_status == testing.ActiveStatus("idle")
    assert app_of(out)["run"]["added_later"] == 1
