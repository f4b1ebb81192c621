#!/usr/bin/env python3
"""K6Charm: runs one k6 load test split across every unit, started on all at the same instant.

The charm observes events and carries out what `protocol` decides; k6 specifics live in `k6`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import ops
from charms.k6_k8s.v0.k6_test import K6TestRequirer, ProvidedTests
from ops import pebble

import cos
import dashboard
import k6
import protocol
import quicktest
import results
import sources
from protocol import AppData, Observed, Run, UnitData

logger = logging.getLogger(__name__)

PEER = "k6"
CONTAINER = "k6"
ARM_WAIT_SECONDS = 30.0  # how long one unit's arm hook waits for its own k6 to pause
RECHECK_WAIT_SECONDS = 2.0  # a later look at a k6 that was still initializing
LEADER_ONLY = "run it on the leader: juju run {app}/leader {action}"
MAX_STEPS = 8


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
        on = self.on
        for event in (
            on[PEER].relation_changed,
            on[PEER].relation_joined,
            on[PEER].relation_departed,
            on.leader_elected,
            on.update_status,
            on.config_changed,
            on[CONTAINER].pebble_ready,
        ):
            framework.observe(event, self._on_event)
        framework.observe(on[CONTAINER].pebble_custom_notice, self._on_notice)
        for event in (
            on.leader_elected,
            on.upgrade_charm,
            on[dashboard.RELATION].relation_created,
        ):
            framework.observe(event, self._on_dashboard_event)
        framework.observe(on.stop, self._on_stop)
        framework.observe(on.start_action, self._on_start_action)
        framework.observe(on.stop_action, self._on_stop_action)
        framework.observe(on.list_action, self._on_list_action)
        framework.observe(on.results_action, self._on_results_action)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.collect_app_status, self._on_collect_app_status)

    # ------------------------------------------------------------ state access

    @property
    def _peers(self) -> ops.Relation | None:
        return self.model.get_relation(PEER)

    def _app_data(self) -> AppData:
        """The leader-written run state (defaults when there is no peer relation yet)."""
        relation = self._peers
        return relation.load(AppData, self.app) if relation else AppData()

    def _save_app(self, data: AppData) -> None:
        relation = self._peers
        assert relation is not None
        relation.save(data, self.app)

    def _unit_data(self, unit: ops.Unit | None = None) -> UnitData:
        relation = self._peers
        return relation.load(UnitData, unit or self.unit) if relation else UnitData()

    def _save_unit(self, data: UnitData) -> None:
        relation = self._peers
        assert relation is not None
        relation.save(data, self.unit)

    def _run(self) -> Run | None:
        data = self._app_data().run
        return Run.from_dict(data) if data else None

    def _config(self) -> K6Config | None:
        """The validated config, or None when it is invalid (status says why)."""
        try:
            return self.load_config(K6Config)
        except ValueError:
            return None

    def _bind_address(self) -> str:
        """This unit's own pod IP: where its k6 REST API listens and where the leader reaches it.

        Not the ingress address: on Kubernetes that is the app's Service ClusterIP, one address
        shared by every unit (see docs/juju-k8s.md).
        """
        return str(self.model.get_binding(PEER).network.bind_address)  # type: ignore[union-attr]

    def _published_endpoint(self) -> str:
        """host:port at which the leader reaches this unit's own k6 (its pod, not a Service)."""
        return k6.endpoint_of(self._bind_address())

    def _units(self) -> dict[str, UnitData]:
        """Every present unit's report, this one included."""
        relation = self._peers
        units = {self.unit.name: self._unit_data()}
        if relation is not None:
            units.update({u.name: relation.load(UnitData, u) for u in relation.units})
        return units

    def _observe(self, check_service: bool = False) -> Observed:
        """Snapshot of everything the protocol decides on."""
        units = self._units()
        mine = units[self.unit.name]
        running = False
        if check_service or mine.live:
            running = self._service_running()
        return Observed(
            me=self.unit.name,
            is_leader=self.unit.is_leader(),
            run=self._run(),
            units=units,
            service_running=running,
            now=time.time(),
        )

    def _service_running(self) -> bool:
        try:
            return self.container.get_service(k6.SERVICE).is_running()
        except (ops.ModelError, pebble.ConnectionError):
            return False

    # ------------------------------------------------------------ the loop

    def _on_event(self, event: ops.EventBase) -> None:
        """Any event: let the protocol advance as far as it can."""
        self._reconcile(check_service=isinstance(event, ops.UpdateStatusEvent))

    def _reconcile(self, check_service: bool = False) -> None:
        """Carry out decisions until there is nothing left to do in this hook."""
        if self._peers is None:
            return
        done: list[protocol.Action] = []
        self._probed: frozenset[str] | None = None
        for _ in range(MAX_STEPS):
            observed = replace(self._observe(check_service), probed_ready=self._probed)
            actions = protocol.decide_unit(observed) or protocol.decide_leader(observed)
            actions = [a for a in actions if a not in done]
            if not actions:
                return
            for action in actions:
                done.append(action)
                self._carry_out(action, observed)

    def _carry_out(self, action: protocol.Action, observed: Observed) -> None:
        """Dispatch one decision."""
        if isinstance(action, protocol.Arm):
            self._arm(action.run)
        elif isinstance(action, protocol.Recheck):
            self._recheck(action.run_id)
        elif isinstance(action, protocol.Collect):
            self._collect(action.run_id, stop_service=action.stop_service)
        elif isinstance(action, protocol.Probe):
            self._probe(action.endpoints)
        elif isinstance(action, protocol.Resume):
            self._resume(action.endpoints)
        elif isinstance(action, protocol.Abort):
            self._abort(action.reason, observed)
        elif isinstance(action, protocol.Finish):
            self._finish(action.lost, observed)

    # ------------------------------------------------------------ participant side

    def _arm(self, run: Run) -> None:
        """Write the script, start `k6 run --paused`, report busy once its API says paused."""
        bind = self._bind_address()
        report = UnitData(
            endpoint=self._published_endpoint(), status=protocol.IDLE, run_id=run.run_id
        )
        script = self._app_data().script
        if sources.Script(run.script_name, script, run.source).sha256 != run.script_sha256:
            report.error = "script in the app databag does not match the run's sha256"
            self._save_unit(report)
            return
        tags = self._tags(run.run_id)
        outputs, output_env = cos.k6_outputs(
            cos.remote_write_url(self._remote_databags("send-remote-write")),
            cos.loki_url(self._remote_databags("logging")),
            tags,
        )
        command = k6.RunCommand(
            script=f"{k6.SCRIPT_DIR}/{run.script_name}",
            run_id=run.run_id,
            address=bind,
            index=run.index_of(self.unit.name),
            count=len(run.participants),
            environment=run.environment,
            tags=tags,
            extra_args=outputs,
        )
        environment = {"K6_K8S_UNIT": self.unit.name, "K6_K8S_RUN_ID": run.run_id, **output_env}
        try:
            self.container.push(
                f"{k6.WORKDIR}/{command.script}", script, make_dirs=True, permissions=0o644
            )
            for stale in (k6.SUMMARY_FILE, k6.REPORT_FILE):
                self.container.remove_path(f"{k6.WORKDIR}/{stale}", recursive=True)
            service_layer = k6.layer(command.service_command(), environment)
            self.container.add_layer(k6.SERVICE, service_layer, combine=True)
            self.container.restart(k6.SERVICE)
        except pebble.ChangeError as e:
            logger.warning("k6 did not start for run %s: %s", run.run_id, e.err)
            error = _last_line(e.err)
            self._save_unit(self._done_report(report, self._done_notice(run.run_id), error))
            return
        except (pebble.ConnectionError, pebble.APIError, pebble.PathError) as e:
            report.error = f"workload container unreachable: {e}"
            self._save_unit(report)
            return
        self._save_unit(self._ready_report(report, bind))

    def _ready_report(self, report: UnitData, bind: str, wait: float | None = None) -> UnitData:
        """Busy once the local k6 is paused before the run; pending while it initializes."""
        wait = ARM_WAIT_SECONDS if wait is None else wait
        status = k6.wait_ready(k6.endpoint_of(bind), wait, alive=self._service_running)
        if status is not None and status.ready:
            report.status = protocol.BUSY
        elif self._service_running():
            report.status = protocol.PENDING
        else:
            report = self._done_report(report, self._done_notice(report.run_id), "")
        return report

    def _recheck(self, run_id: str) -> None:
        """Probe the local k6 again (it was still initializing when we last looked)."""
        mine = self._unit_data()
        self._save_unit(self._ready_report(mine, self._bind_address(), RECHECK_WAIT_SECONDS))

    def _collect(self, run_id: str, stop_service: bool, notice: dict | None = None) -> None:
        """The local k6 has ended (or is stopped now): record its exit and go idle."""
        if stop_service:
            try:
                self.container.stop(k6.SERVICE)
            except (pebble.ChangeError, pebble.ConnectionError, pebble.APIError) as e:
                logger.warning("stopping k6 failed: %s", e)
        mine = self._unit_data()
        notice = notice or self._done_notice(run_id)
        self._save_unit(self._done_report(mine, notice, ""))

    def _done_report(self, base: UnitData, notice: dict | None, error: str) -> UnitData:
        """Idle, with the exit code and compact summary of the run that ended."""
        exit_code = None
        if notice is not None:
            try:
                exit_code = int(notice.get("exit_code", ""))
            except ValueError:
                error = error or f"unreadable exit code {notice.get('exit_code')!r}"
        elif not error:
            error = "k6 ended without a done notice"
        return UnitData(
            endpoint=base.endpoint,
            status=protocol.IDLE,
            run_id=base.run_id,
            exit_code=exit_code,
            error=error,
            summary=self._read_summary() if notice is not None else None,
            report=self._report_path() if notice is not None else "",
        )

    def _done_notice(self, run_id: str) -> dict | None:
        """The data of the done-notice for this run, if Pebble has one."""
        try:
            notices = self.container.get_notices(keys=[k6.NOTICE_KEY])
        except (pebble.ConnectionError, pebble.APIError):
            return None
        for notice in notices:
            if notice.last_data.get("run_id") == run_id:
                return dict(notice.last_data)
        return None

    def _report_path(self) -> str:
        """Where k6 exported this unit's HTML report, if it did."""
        path = f"{k6.WORKDIR}/{k6.REPORT_FILE}"
        try:
            return path if self.container.exists(path) else ""
        except (pebble.ConnectionError, pebble.APIError):
            return ""

    def _read_summary(self) -> dict | None:
        """This unit's compact k6 summary (None when k6 wrote none)."""
        try:
            text = self.container.pull(f"{k6.WORKDIR}/{k6.SUMMARY_FILE}").read()
            return results.compact(json.loads(text))
        except (pebble.PathError, pebble.ConnectionError, pebble.APIError, ValueError) as e:
            logger.info("no k6 summary: %s", e)
            return None

    def _on_notice(self, event: ops.PebbleCustomNoticeEvent) -> None:
        """k6 finished: a done-notice for the run this unit is in ends its part."""
        if event.notice.key == k6.NOTICE_KEY:
            data = dict(event.notice.last_data)
            mine = self._unit_data()
            if self._peers is not None and mine.live and data.get("run_id") == mine.run_id:
                self._collect(mine.run_id, stop_service=False, notice=data)
            else:
                logger.info("ignoring done-notice for run %s", data.get("run_id"))
        self._reconcile()

    def _on_dashboard_event(self, _: ops.EventBase) -> None:
        """Leader: publish the bundled Grafana dashboard on every grafana-dashboard relation."""
        if not self.unit.is_leader():
            return
        databag = dashboard.dashboard_databag(self.meta.name)
        for relation in self.model.relations[dashboard.RELATION]:
            relation.data[self.app].update(databag)

    def _on_stop(self, _: ops.StopEvent) -> None:
        """The unit is going away: leave no k6 behind."""
        if self.container.can_connect() and self._service_running():
            self.container.stop(k6.SERVICE)

    def _remote_databags(self, endpoint: str) -> list[dict[str, str]]:
        """Every remote unit's databag on a relation endpoint."""
        return [
            dict(relation.data[unit])
            for relation in self.model.relations[endpoint]
            for unit in relation.units
        ]

    def _tags(self, run_id: str) -> dict[str, str]:
        """Tags on every sample: the run and the Juju topology COS expects."""
        return {
            "run_id": run_id,
            "juju_model": self.model.name,
            "juju_model_uuid": self.model.uuid,
            "juju_application": self.app.name,
            "juju_unit": self.unit.name,
        }

    # ------------------------------------------------------------ leader side

    def _probe(self, endpoints: Mapping[str, str]) -> None:
        """Leader: which still-initializing participants are paused and ready by now."""
        statuses = k6.probe_all(list(endpoints.values()), timeout=1.0)
        self._probed = frozenset(
            p for p, e in endpoints.items() if (s := statuses.get(e)) is not None and s.ready
        )

    def _resume(self, endpoints: dict[str, str]) -> None:
        """Resume every participant at once; if any cannot be resumed, abort the run."""
        order = list(endpoints)
        outcomes = k6.resume_all([endpoints[p] for p in order])
        by_unit = dict(zip(order, outcomes, strict=True))
        failed = {
            p: r.error or "not acknowledged" for p, r in by_unit.items() if not (r.ok or r.skipped)
        }
        run = self._run()
        assert run is not None
        acks = {p: [r.sent, r.acked] for p, r in by_unit.items()}
        data = self._app_data()
        data.run = protocol.resumed(run, acks).to_dict()
        self._save_app(data)
        if failed:
            reason = "resume failed: " + "; ".join(f"{p}: {e}" for p, e in failed.items())
            self._abort(reason, self._observe())
        else:
            logger.info("run %s resumed on %d units", run.run_id, len(order))

    def _abort(self, reason: str, observed: Observed) -> None:
        """Phase stopping: PATCH stop to every armed participant; units stop on the change."""
        run = observed.run
        assert run is not None
        data = self._app_data()
        data.run = protocol.stopping(run, reason, observed.now).to_dict()
        self._save_app(data)
        endpoints = [
            observed.units[p].endpoint
            for p in run.participants
            if p in observed.units
            and observed.units[p].run_id == run.run_id
            and observed.units[p].live
            and observed.units[p].endpoint
        ]
        if endpoints:
            errors = {e: err for e, err in k6.stop_all(endpoints).items() if err}
            for endpoint, error in errors.items():
                logger.info(
                    "stop via API at %s failed (unit stops on its own): %s", endpoint, error
                )
        logger.warning("run %s stopping: %s", run.run_id, reason)

    def _finish(self, lost: tuple[str, ...], observed: Observed) -> None:
        """Aggregate the units' reports into the last run and clear the active run."""
        run = observed.run
        assert run is not None
        summaries = {
            p: observed.units[p].summary
            for p in run.participants
            if p in observed.units and observed.units[p].run_id == run.run_id
        }
        started = protocol.started_at(run)
        duration = observed.now - started if started else None
        aggregate = results.aggregate(summaries, duration)
        failures = results.evaluate(aggregate, results.parse_thresholds(run.thresholds))
        record = protocol.last_run_record(
            run, observed.units, lost, observed.now, aggregate, failures
        )
        self._save_app(AppData(status=protocol.IDLE, run=None, script="", last_run=record))
        logger.info("run %s ended %s %s", run.run_id, record["outcome"], record["reason"])

    # ------------------------------------------------------------ actions

    def _refuse_unless_leader(self, event: ops.ActionEvent, action: str) -> bool:
        if self.unit.is_leader():
            return False
        event.fail(LEADER_ONLY.format(app=self.app.name, action=action))
        return True

    def _on_start_action(self, event: ops.ActionEvent) -> None:
        """Freeze the run (script, participants, deadline) and arm this unit in the same hook."""
        if self._refuse_unless_leader(event, "start"):
            return
        params = event.load_params(StartParams, errors="fail")
        if self._peers is None:
            event.fail("the peer relation is not ready yet; retry in a moment")
            return
        active = self._run()
        if active is not None:
            event.fail(
                f"run {active.run_id} is already active ({active.phase}); "
                f"stop it first: juju run {self.app.name}/leader stop"
            )
            return
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
        run = self._new_run(script, config, thresholds)
        self._save_app(
            AppData(
                status=protocol.BUSY,
                run=run.to_dict(),
                script=script.text,
                last_run=self._app_data().last_run,
            )
        )
        event.log(f"run {run.run_id}: arming {len(run.participants)} unit(s)")
        self._reconcile()
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

    def _new_run(self, script: sources.Script, config: K6Config, thresholds: str) -> Run:
        """A run over every unit present now, in unit-number order."""
        relation = self._peers
        assert relation is not None
        names = [self.unit.name, *(u.name for u in relation.units)]
        now = time.time()
        return Run(
            run_id=uuid.uuid4().hex[:12],
            phase=protocol.ARMING,
            participants=tuple(sorted(names, key=protocol.unit_order)),
            script_name=script.name,
            script_sha256=script.sha256,
            source=script.source,
            created=now,
            deadline=now + config.arm_timeout,
            environment=dict(script.environment),
            thresholds=thresholds,
            expected_s=script.expected_s,
        )

    def _report_start(self, event: ops.ActionEvent, run: Run) -> None:
        """Tell the user what happened to the run started in this hook."""
        now_run = self._run()
        units = ",".join(run.participants)
        event.set_results({"run-id": run.run_id, "units": units})
        if now_run is None:
            last = self._app_data().last_run or {}
            if last.get("outcome") != protocol.PASSED:
                event.fail(f"run {run.run_id} {last.get('outcome')}: {last.get('reason')}")
                return
            message = f"run {run.run_id} already finished: passed"
        elif now_run.phase == protocol.RUNNING:
            message = f"run {run.run_id} started on {len(run.participants)} unit(s)"
        elif now_run.phase == protocol.STOPPING:
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
        run = self._run()
        if run is None:
            event.set_results({"message": "no active run; nothing to stop"})
            return
        observed = self._observe()
        self._abort(protocol.STOPPED_BY_USER, observed)
        self._reconcile()
        message = f"stopping run {run.run_id} ({run.phase}) on {len(run.participants)} unit(s)"
        if self._run() is None:
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
        last = self._app_data().last_run
        if not last:
            event.fail("no run has ended yet")
            return
        event.set_results(
            {
                "run-id": last["run_id"],
                "outcome": last["outcome"],
                "reason": last["reason"] or "-",
                "spread-ms": str(last["spread_ms"]),
                "units": {
                    u.replace("/", "-"): {
                        "exit-code": str(r["exit_code"]),
                        "report": r["report"] or "-",
                    }
                    for u, r in last["units"].items()
                },
                "table": results.format_table(last["units"], last["aggregate"]),
            }
        )

    # ------------------------------------------------------------ status

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        """Unit status: config problems, then this unit's part in the run."""
        try:
            self.load_config(K6Config)
        except ValueError as e:
            event.add_status(ops.BlockedStatus(str(e)))
        if self._peers is None:
            event.add_status(ops.WaitingStatus("waiting for the peer relation"))
            return
        mine = self._unit_data()
        run = self._run()
        if mine.status == protocol.PENDING:
            event.add_status(ops.MaintenanceStatus(f"arming run {mine.run_id}"))
        elif mine.status == protocol.BUSY:
            phase = run.phase if run and run.run_id == mine.run_id else "ending"
            label = "armed (paused)" if phase == protocol.ARMING else phase
            event.add_status(ops.ActiveStatus(f"{label}: run {mine.run_id}"))
        elif run and mine.run_id == run.run_id and (mine.error or mine.exit_code):
            failure = protocol.failure_text(self.unit.name, mine)
            event.add_status(ops.BlockedStatus(f"run {mine.run_id} failed: {failure}"))
        else:
            event.add_status(ops.ActiveStatus("idle"))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        """App status (leader): the run's phase and progress, or the last outcome."""
        if self._peers is None:
            return
        data = self._app_data()
        run = Run.from_dict(data.run) if data.run else None
        if run is None:
            last = data.last_run
            text = "idle"
            if last:
                text += f"; last run {last['run_id']} {last['outcome']}"
            event.add_status(ops.ActiveStatus(text))
            return
        units = self._units()
        total = len(run.participants)
        if run.phase == protocol.ARMING:
            armed = protocol.arming_count(run, units)
            event.add_status(ops.MaintenanceStatus(f"arming {armed}/{total}"))
        elif run.phase == protocol.RUNNING:
            running = total - protocol.finished_count(run, units)
            started = protocol.started_at(run)
            elapsed = f", {time.time() - started:.0f}s" if started else ""
            if elapsed and run.expected_s:
                elapsed += f" of {run.expected_s:.0f}s"
            event.add_status(ops.ActiveStatus(f"running {running}/{total} units{elapsed}"))
        else:
            done = protocol.finished_count(run, units)
            event.add_status(ops.MaintenanceStatus(f"stopping {done}/{total} units done"))


def _last_line(err: str) -> str:
    """The failed task's line of a Pebble change error ("- Start service ... (why)")."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return lines[-1].removeprefix("- ") if lines else err


if __name__ == "__main__":  # pragma: nocover
    ops.main(K6Charm)
