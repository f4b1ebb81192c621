#!/usr/bin/env python3
"""K6Charm: one k6 load test split across every unit, started on all at the same instant.

The synchronized-task library runs the protocol; this charm adds k6: where scripts come from,
the k6 workload (k6_workload), its outputs (cos) and its results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ops
from charms.k6_k8s.v0.k6_test import K6TestRequirer, ProvidedTests
from charms.k6_k8s.v0.synchronized_task import (
    PASSED,
    RUNNING,
    STOPPING,
    ApiRelease,
    Run,
    SynchronizedTask,
    TaskRefused,
)

import cos
import dashboard
import k6_client
import k6_watch
import k6_whole_run
import quicktest
import results
import sources
from k6_workload import NOTICE_KEY, WORKDIR, K6Workload, Outputs

logger = logging.getLogger(__name__)

PEER = "k6"
CONTAINER = "k6"
LEADER_ONLY = "run it on the leader: juju run {app}/leader {action}"
REPORT_PATH = f"{WORKDIR}/{cos.REPORT_FILE}"  # where each unit's k6 exports its HTML report


@dataclass(frozen=True)
class K6Config:
    """The charm's configuration, validated."""

    load_test: str = ""
    environment: str = ""
    arm_timeout: int = 120
    thresholds: str = ""

    def __post_init__(self):
        try:
            sources.parse_environment(self.environment)
        except ValueError as e:
            raise ValueError(f"invalid environment config: {e}") from None
        if not 5 <= self.arm_timeout <= 3600:
            raise ValueError(f"arm-timeout must be 5..3600 seconds, not {self.arm_timeout}")
        try:
            results.parse_thresholds(self.thresholds)
        except ValueError as e:
            raise ValueError(f"invalid thresholds config: {e}") from None

    @property
    def env(self) -> dict[str, str]:
        """The parsed environment."""
        return sources.parse_environment(self.environment)


@dataclass(frozen=True)
class StartParams:
    """Parameters of the `start` action."""

    app: str = ""
    test: str = ""
    script: str = ""
    url: str = ""
    vus: int = 10
    duration: str = "30s"
    rate: int = 0
    method: str = "GET"
    expect_status: int = 200
    thresholds: str = ""


class K6Charm(ops.CharmBase):
    """Synchronized, distributed k6 load tests."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(CONTAINER)
        self.k6_tests = K6TestRequirer(self, "receive-k6-tests")
        self.k6 = K6Workload(self.container, self.unit.name, self._outputs)
        self.task = SynchronizedTask(
            self,
            PEER,
            self.k6,
            container=CONTAINER,
            notice_key=NOTICE_KEY,
            release=ApiRelease(port=k6_client.PORT),
            aggregate=results.aggregate_run,
            clock=lambda: time.time(),
        )
        on = self.on
        dashboard_events = (
            on.leader_elected,
            on.upgrade_charm,
            on[dashboard.RELATION].relation_created,
        )
        for event in dashboard_events:
            framework.observe(event, self._on_dashboard_event)
        framework.observe(on.start_action, self._on_start_action)
        framework.observe(on.stop_action, self._on_stop_action)
        framework.observe(on.list_action, self._on_list_action)
        framework.observe(on.results_action, self._on_results_action)
        framework.observe(on[CONTAINER].pebble_custom_notice, self._on_watcher_notice)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)

    def _config(self) -> K6Config | None:
        """The validated config, or None when it is invalid (status says why)."""
        try:
            return self.load_config(K6Config)
        except ValueError:
            return None

    # ------------------------------------------------------------ k6 for the library

    def _outputs(self, run_id: str) -> Outputs:
        """Tags on every sample (the run and the Juju topology COS expects), metrics and logs."""
        tags = {
            "run_id": run_id,
            "juju_model": self.model.name,
            "juju_model_uuid": self.model.uuid,
            "juju_application": self.app.name,
            "juju_unit": self.unit.name,
        }
        args, env = cos.k6_outputs(
            cos.remote_write_url(self._remote_databags("send-remote-write")),
            cos.loki_url(self._remote_databags("logging")),
            tags,
        )
        return Outputs(tags, args, env)

    def _remote_databags(self, endpoint: str) -> list[dict[str, str]]:
        """Every remote unit's databag on a relation endpoint."""
        return [
            dict(relation.data[unit])
            for relation in self.model.relations[endpoint]
            for unit in relation.units
        ]

    def _on_watcher_notice(self, event: ops.PebbleCustomNoticeEvent) -> None:
        """The watcher ended: when it saw the whole run cross an abortOnFail threshold, abort."""
        if event.notice.key != k6_watch.NOTICE_KEY:
            return
        run = self.task.run
        trip = self.k6.whole_run.watcher_trip()
        if not self.unit.is_leader():  # leadership moved: the new leader watches on its own
            self.k6.whole_run.stop(self.k6.whole_run.watcher)
            return
        if trip is None or run is None or run.run_id != event.notice.last_data.get("run_id"):
            return
        if run.phase == RUNNING:
            logger.warning("run %s: %s", run.run_id, trip.reason())
            self.task.abort(trip.reason())

    def _on_dashboard_event(self, _: ops.EventBase) -> None:
        """Leader: publish the bundled Grafana dashboard on every grafana-dashboard relation."""
        if not self.unit.is_leader():
            return
        databag = dashboard.dashboard_databag(self.meta.name)
        for relation in self.model.relations[dashboard.RELATION]:
            relation.data[self.app].update(databag)

    # ------------------------------------------------------------ actions

    def _refuse_unless_leader(self, event: ops.ActionEvent, action: str) -> bool:
        """Refuse a leader-only action, naming the command that works.

        The library refuses a non-leader's start and stop as well; this check stays because it
        is the same for all three actions (`results` is not the library's), with the hint the
        user needs, and comes before the parameters are parsed.
        """
        if self.unit.is_leader():
            return False
        event.fail(LEADER_ONLY.format(app=self.app.name, action=action))
        return True

    def _on_start_action(self, event: ops.ActionEvent) -> None:
        """Choose the script, then let the library freeze the run and arm this unit."""
        if self._refuse_unless_leader(event, "start"):
            return
        params = event.load_params(StartParams, errors="fail")
        config = self._config()
        if config is None:
            event.fail("the charm config is invalid; see `juju status` and fix it first")
            return
        if not self.container.can_connect():
            event.fail("the k6 workload container is unreachable; retry when it is up")
            return
        try:
            script = self._choose_script(params, config)
            thresholds = params.thresholds or config.thresholds
            results.parse_thresholds(thresholds)
        except ValueError as e:
            event.fail(str(e))
            return
        payload = {
            "script_name": script.name,
            "script": script.text,
            "environment": dict(script.environment),
        }
        info = {"source": script.source, "script_name": script.name, "thresholds": thresholds}
        try:
            run = self.task.start(
                payload, info=info, arm_timeout=config.arm_timeout, expected_s=script.expected_s
            )
        except TaskRefused as e:  # no peer relation yet, or a run already active
            active = self.task.run
            hint = f"; stop it first: juju run {self.app.name}/leader stop" if active else ""
            event.fail(f"{e}{hint}")
            return
        event.log(f"run {run.run_id}: armed on {len(run.participants)} unit(s) so far")
        self._report_start(event, run)

    def _choose_script(self, params: StartParams, config: K6Config) -> sources.Script:
        """Exactly one source: app+test, script, url, or (none) the load-test config."""
        chosen = [
            n
            for n, v in (("test", params.test), ("script", params.script), ("url", params.url))
            if v
        ]
        if len(chosen) > 1:
            raise ValueError(f"give exactly one of test, script, url (got {', '.join(chosen)})")
        if params.app and not params.test:
            raise ValueError("`app` needs `test`: start app=<app> test=<name> (see `list`)")
        if params.test:
            if not params.app:
                raise ValueError("`test` needs `app`: start app=<app> test=<name> (see `list`)")
            return sources.from_app(params.app, params.test, self._provided(), config.env)
        if params.script:
            return sources.from_inline(params.script, config.env)
        if params.url:
            text = quicktest.render_quick_test(
                params.url,
                params.vus,
                params.duration,
                params.rate,
                params.method,
                params.expect_status,
            )
            expected = float(quicktest.duration_seconds(params.duration))
            return sources.Script(quicktest.QUICK_TEST_NAME, text, "quick", config.env, expected)
        return sources.from_config(config.load_test, config.env)

    def _provided(self) -> dict[str, ProvidedTests]:
        """Tests that related apps provide over k6_tests (malformed ones carry an error)."""
        return self.k6_tests.tests()

    def _report_start(self, event: ops.ActionEvent, run: Run) -> None:
        """Tell the user what happened to the run started in this hook."""
        now_run = self.task.run
        units = ",".join(run.participants)
        event.set_results({"run-id": run.run_id, "units": units})
        if now_run is None:
            last = self.task.last_run
            if last is None or last.outcome != PASSED:
                outcome, reason = (last.outcome, last.reason) if last else ("ended", "")
                event.fail(f"run {run.run_id} {outcome}: {reason}")
                return
            message = f"run {run.run_id} already finished: passed"
        elif now_run.phase == RUNNING:
            message = f"run {run.run_id} started on {len(run.participants)} unit(s)"
        elif now_run.phase == STOPPING:
            event.fail(f"run {run.run_id} is being aborted: {now_run.reason}")
            return
        else:
            message = (
                f"run {run.run_id} armed on {len(run.participants)} unit(s); "
                "it starts when all are ready"
            )
        event.set_results({"message": message})
        event.log(message)

    def _on_stop_action(self, event: ops.ActionEvent) -> None:
        """Stop the active run on every unit."""
        if self._refuse_unless_leader(event, "stop"):
            return
        run = self.task.stop()
        if run is None:
            event.set_results({"message": "no active run; nothing to stop"})
            return
        message = f"stopping run {run.run_id} ({run.phase}) on {len(run.participants)} unit(s)"
        if self.task.run is None:
            message = f"stopped run {run.run_id} on {len(run.participants)} unit(s)"
        event.set_results({"message": message, "run-id": run.run_id})
        event.log(message)

    def _on_list_action(self, event: ops.ActionEvent) -> None:
        """The tests `start` can run."""
        config = self._config()
        tests: dict[str, Any] = {}
        if config is not None and config.load_test.strip():
            tests["config"] = {"load-test": f"{len(config.load_test.encode())} bytes"}
        for app, provided in sorted(self._provided().items()):
            entry: dict[str, Any] = {"tests": ",".join(sorted(provided.tests))}
            if provided.error:
                entry["error"] = provided.error
            tests[app] = entry
        event.set_results({"tests": tests or {"none": "no tests available"}})

    def _on_results_action(self, event: ops.ActionEvent) -> None:
        """The last run's result, aggregated over all units."""
        if self._refuse_unless_leader(event, "results"):
            return
        last = self.task.last_run
        if last is None:
            event.fail("no run has ended yet")
            return
        units = {
            u: {"exit_code": line.exit_code, "lost": line.lost, "line": dict(line.line)}
            for u, line in last.units.items()
        }
        event.set_results(
            {
                "run-id": last.run_id,
                "outcome": last.outcome,
                "exit-code": str(k6_whole_run.exit_code_of(last)),
                "reason": last.reason or "-",
                **lifecycle_results(last.concluded),
                "spread-ms": str(last.spread_ms),
                "units": {
                    u.replace("/", "-"): {
                        "exit-code": str(line.exit_code),
                        "report": REPORT_PATH if line.line.get("report") else "-",
                    }
                    for u, line in last.units.items()
                },
                "table": results.format_table(units, last.aggregate),
            }
        )

    # ------------------------------------------------------------ status

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        """Config problems block the unit (the library adds the unit's part in the run)."""
        try:
            self.load_config(K6Config)
        except ValueError as e:
            event.add_status(ops.BlockedStatus(str(e)))


def lifecycle_results(concluded: Mapping[str, Any]) -> dict[str, str]:
    """What the `results` action says of setup(), teardown() and a whole-run abort."""
    if not concluded:
        return {}
    setup = concluded.get("setup") or {}
    teardown = concluded.get("teardown") or {}
    found = {"setup": f"ran on {setup['unit']}" if setup.get("unit") else "not run"}
    if teardown.get("error"):
        how = "failed" if teardown.get("ran") else "not run"
        found["teardown"] = f"{how} on {teardown.get('unit')}: {teardown['error']}"
    elif teardown.get("ran"):
        found["teardown"] = f"ran on {teardown.get('unit')}"
    else:
        found["teardown"] = f"not run: {teardown.get('why_not') or 'unknown'}"
    if concluded.get("abort"):
        found["aborted"] = str(concluded["abort"])
    return found


if __name__ == "__main__":  # pragma: nocover
    ops.main(K6Charm)
