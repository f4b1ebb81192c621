"""Real Juju: deploy k6, scale to 3, run a config test, a related charm's test, and stop a run.

Needs a controller on a Kubernetes cloud (`tox -e integration`); conftest skips otherwise.
`CHARM_PATH` / `TESTER_CHARM_PATH` take prebuilt charms; otherwise both are packed here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:  # the packages are imported only when the tests really run
    from juju.action import Action
    from juju.unit import Unit
    from pytest_operator.plugin import OpsTest

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TESTER_SOURCE = Path(__file__).resolve().parent / "testers" / "k6-tester"
LIBRARY = Path("lib/charms/k6_k8s/v0/k6_test.py")
METADATA = yaml.safe_load((ROOT / "metadata.yaml").read_text())

APP = "k6"
TESTER = "k6-tester"
UNITS = 3
RESOURCES = {"k6-image": METADATA["resources"]["k6-image"]["upstream-source"]}

DEPLOY_TIMEOUT = 15 * 60
ACTION_TIMEOUT = 5 * 60
RUN_TIMEOUT = 5 * 60
POLL_SECONDS = 5
NO_RUN_YET = "no run has ended yet"  # what `results` answers before the first run ends

ITERATIONS = 30
SMALL_TEST = f"""
import {{ sleep }} from 'k6';
export const options = {{
  scenarios: {{
    shared: {{ executor: 'shared-iterations', vus: 3, iterations: {ITERATIONS},
              maxDuration: '60s' }},
  }},
}};
export default function () {{ sleep(0.2); }}
"""
ONE_TEST = f"""
import exec from 'k6/execution';
import {{ sleep }} from 'k6';
export const options = {{
  scenarios: {{
    shared: {{ executor: 'shared-iterations', vus: 3, iterations: {ITERATIONS},
              maxDuration: '60s' }},
  }},
  thresholds: {{ iterations: ['count>={ITERATIONS}'] }},
}};
export function setup() {{ return {{ token: 'once' }}; }}
export default function (data) {{
  if (!data || data.token !== 'once') exec.test.abort('setup() data missing');
  sleep(0.2);
}}
export function teardown(data) {{
  if (!data || data.token !== 'once') throw new Error('teardown() got ' + JSON.stringify(data));
}}
"""
LONG_TEST = """
import { sleep } from 'k6';
export const options = {
  scenarios: { long: { executor: 'constant-vus', vus: 3, duration: '10m' } },
};
export default function () { sleep(1); }
"""


# ------------------------------------------------------------------ helpers


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def _pack(ops_test: OpsTest, project: Path) -> Path:
    """Pack a charm project; with several platforms, the charm for this host's architecture."""
    charms = await ops_test.build_charm(project, return_all=True)
    for charm in charms:
        if _host_arch() in charm.name:
            return charm
    return charms[0]


def _tester_project(workdir: Path) -> Path:
    """A copy of the tester charm with this repository's k6_test library in its lib/."""
    project = workdir / TESTER
    if project.exists():
        shutil.rmtree(project)
    ignore = shutil.ignore_patterns("lib", "build", "*.charm")
    shutil.copytree(TESTER_SOURCE, project, ignore=ignore)
    (project / LIBRARY).parent.mkdir(parents=True)
    shutil.copy2(ROOT / LIBRARY, project / LIBRARY)
    return project


async def _leader(ops_test: OpsTest) -> Unit:
    assert ops_test.model is not None
    for unit in ops_test.model.applications[APP].units:
        if await unit.is_leader_from_status():
            return unit
    raise AssertionError(f"{APP} has no leader")


async def _run(unit: Unit, action_name: str, **params: Any) -> tuple[str, dict, str]:
    """Run an action to its end: (status, results, failure message)."""
    action: Action = await unit.run_action(action_name, **params)
    action = await asyncio.wait_for(action.wait(), timeout=ACTION_TIMEOUT)
    message = ""
    if action.status != "completed":
        message = await _action_message(unit, action)
    logger.info("%s %s: %s %s %s", unit.name, action_name, action.status, action.results, message)
    return action.status, dict(action.results), message


async def _action_message(unit: Unit, action: Action) -> str:
    """The message a failed action was failed with (`event.fail(...)`)."""
    from juju.client import client

    facade = client.ActionFacade.from_connection(unit.connection)
    answer = await facade.Actions(entities=[{"tag": f"action-{action.id}"}])
    return answer.results[0].message or ""


async def _start(unit: Unit, **params: Any) -> str:
    """`start` on the leader; the run id."""
    status, results, message = await _run(unit, "start", **params)
    assert status == "completed", f"start failed: {message}"
    assert len(results["units"].split(",")) == UNITS, results
    return results["run-id"]


async def _wait_for_results(unit: Unit, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    """Poll `results` until it reports `run_id` (bounded); its results."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        status, results, message = await _run(unit, "results")
        if status == "completed" and results.get("run-id") == run_id:
            return results
        if status != "completed" and NO_RUN_YET not in message:
            raise AssertionError(f"results failed: {message}")
        last = message or f"last ended run is {results.get('run-id')}"
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"run {run_id} did not end within {timeout}s ({last})")


async def _wait_for_app_message(ops_test: OpsTest, prefix: str, timeout: float) -> str:
    """Wait until the app status message (set by the leader) starts with `prefix`."""
    assert ops_test.model is not None
    app = ops_test.model.applications[APP]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.status_message.startswith(prefix):
            return app.status_message
        await asyncio.sleep(1)
    raise AssertionError(f"app status is {app.status_message!r}, not {prefix!r}…")


def _assert_exit_codes(results: dict, expected: str | None) -> None:
    """Every one of the UNITS units reported; with `expected`, that exit code."""
    units = results["units"]
    assert sorted(units) == [f"{APP}-{i}" for i in range(UNITS)], units
    for unit, report in units.items():
        if expected is None:
            assert report["exit-code"] != "0", f"{unit} was not stopped: {report}"
        else:
            assert report["exit-code"] == expected, f"{unit}: {report}"


def _total_iterations(table: str) -> str:
    """The ITERATIONS cell of the results table's TOTAL row."""
    for line in table.splitlines():
        cells = line.split()
        if cells and cells[0] == "TOTAL":
            return cells[2]  # TOTAL has no EXIT cell: TOTAL, REQUESTS, ITERATIONS, ...
    raise AssertionError(f"no TOTAL row in:\n{table}")


# ------------------------------------------------------------------ tests


@pytest.mark.abort_on_fail
async def test_build_and_deploy(ops_test: OpsTest):
    """Pack (or take CHARM_PATH) and deploy one unit with the upstream k6 image."""
    assert ops_test.model is not None
    charm = Path(os.environ["CHARM_PATH"]) if os.environ.get("CHARM_PATH") else None
    charm = charm or await _pack(ops_test, ROOT)
    await ops_test.model.deploy(
        charm, application_name=APP, resources=RESOURCES, num_units=1, base="ubuntu@24.04"
    )
    await ops_test.model.wait_for_idle(
        apps=[APP], status="active", raise_on_blocked=True, timeout=DEPLOY_TIMEOUT
    )
    assert ops_test.model.applications[APP].status_message.startswith("idle")


@pytest.mark.abort_on_fail
async def test_scale_to_three(ops_test: OpsTest):
    assert ops_test.model is not None
    await ops_test.model.applications[APP].scale(UNITS)
    await ops_test.model.wait_for_idle(
        apps=[APP],
        status="active",
        raise_on_blocked=True,
        wait_for_exact_units=UNITS,
        timeout=DEPLOY_TIMEOUT,
    )
    for unit in ops_test.model.applications[APP].units:
        assert unit.workload_status_message == "idle", unit.name


@pytest.mark.abort_on_fail
async def test_config_test_runs_split_over_every_unit(ops_test: OpsTest):
    """`start` with no parameters runs `load-test`; shared iterations add up over 3 units."""
    assert ops_test.model is not None
    await ops_test.model.applications[APP].set_config({"load-test": SMALL_TEST})
    await ops_test.model.wait_for_idle(apps=[APP], status="active", timeout=DEPLOY_TIMEOUT)
    leader = await _leader(ops_test)

    run_id = await _start(leader)
    results = await _wait_for_results(leader, run_id)

    assert results["outcome"] == "passed", results
    assert results["reason"] == "-"
    _assert_exit_codes(results, "0")
    assert _total_iterations(results["table"]) == str(ITERATIONS), results["table"]
    await _wait_for_app_message(ops_test, f"idle; last run {run_id} passed", timeout=120)


@pytest.mark.abort_on_fail
async def test_related_charm_test_runs(ops_test: OpsTest):
    """A test received over k6_tests runs with `start app=… test=…`, with its environment."""
    assert ops_test.model is not None
    tester = os.environ.get("TESTER_CHARM_PATH")
    charm = Path(tester) if tester else await _pack(ops_test, _tester_project(ops_test.tmp_path))
    await ops_test.model.deploy(charm, application_name=TESTER, num_units=1, base="ubuntu@24.04")
    await ops_test.model.integrate(f"{APP}:receive-k6-tests", f"{TESTER}:send-k6-tests")
    await ops_test.model.wait_for_idle(
        apps=[APP, TESTER], status="active", raise_on_blocked=True, timeout=DEPLOY_TIMEOUT
    )
    leader = await _leader(ops_test)

    status, listed, message = await _run(leader, "list")
    assert status == "completed", message
    assert "smoke.js" in listed["tests"][TESTER]["tests"].split(","), listed

    # smoke.js fails its `checks` threshold (exit code 99) unless GREETING arrived from the tester
    run_id = await _start(leader, app=TESTER, test="smoke.js")
    results = await _wait_for_results(leader, run_id)

    assert results["outcome"] == "passed", results
    _assert_exit_codes(results, "0")


async def test_setup_and_teardown_run_once_and_thresholds_judge_the_whole_run(ops_test: OpsTest):
    """One test on 3 units: setup() once, its data on every unit, teardown() once with it, the
    script's threshold on the whole run's iterations (each unit alone would fail it).
    """
    leader = await _leader(ops_test)

    run_id = await _start(leader, script=ONE_TEST)
    results = await _wait_for_results(leader, run_id)

    assert results["outcome"] == "passed", results
    assert results["exit-code"] == "0", results
    assert results["setup"] == f"ran on {leader.name}", results
    assert results["teardown"] == f"ran on {leader.name}", results
    _assert_exit_codes(results, "0")  # no unit aborted for want of setup()'s data
    assert _total_iterations(results["table"]) == str(ITERATIONS), results["table"]


async def test_stop_mid_run_records_the_run_stopped(ops_test: OpsTest):
    """`stop` during a long constant-vus run stops every unit; the run is recorded stopped."""
    leader = await _leader(ops_test)
    run_id = await _start(leader, script=LONG_TEST)
    await _wait_for_app_message(ops_test, "running", timeout=180)

    status, _, message = await _run(leader, "start", script=LONG_TEST)
    assert status == "failed"
    assert f"run {run_id} is already active" in message

    status, stopped, message = await _run(leader, "stop")
    assert status == "completed", message
    assert stopped["run-id"] == run_id
    results = await _wait_for_results(leader, run_id)

    assert results["outcome"] == "stopped", results
    assert results["reason"] == "stopped by user"
    _assert_exit_codes(results, expected=None)
    await _wait_for_app_message(ops_test, f"idle; last run {run_id} stopped", timeout=120)
