"""The leader's once-per-run steps: setup() before the release, the abort watcher, teardown().

See docs/k6-semantics.md.

Every unit's k6 runs with `--no-setup --no-teardown --no-thresholds`. The leader runs setup()
through its own paused k6 and hands the data to every unit (`PUT /v1/setup`); it starts the
watcher (k6_watch) when the script has abortOnFail thresholds; at the end it runs teardown() in
a fresh k6 on its own pod with the same data. A hook can fail and be retried by Juju: setup()'s
data is kept per run in the leader's container, and teardown() is marked as attempted before it
runs, so neither runs twice for one run.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ops
from charms.k6_k8s.v0.synchronized_task import (
    PASSED,
    STOPPED_BY_USER,
    ArmFailed,
    Concluded,
    LastRun,
    OneShotService,
    Prepared,
    Run,
    done_notice_command,
    endpoint_of,
)
from ops import pebble

import k6_client
import k6_script
import k6_watch
import results
from k6_script import ScriptOptions, ScriptThreshold

logger = logging.getLogger(__name__)

SETUP_DIR = "setup"  # <workdir>/setup/<run id>.json: setup()'s data for this run
TEARDOWN_DIR = "teardown"  # <workdir>/teardown/<run id>: teardown() was attempted
TEARDOWN_SERVICE = "k6-teardown"
TEARDOWN_PORT = 6566  # the teardown k6's REST API (the run's own k6 has 6565)
TEARDOWN_READY_S = 60.0  # how long the fresh k6 may take to init before teardown()
SETUP_DATA_MAX_BYTES = 64 * 1024  # setup()'s data is kept in the run for teardown()
API_MARGIN_S = 10.0  # the leader waits k6's own setupTimeout/teardownTimeout plus this
NO_DATA = "undefined"  # setup() returned nothing (or the script has none)
THRESHOLDS_FAILED = results.THRESHOLDS_FAILED


@dataclass(frozen=True)
class WholeRun:
    """What the leader learnt before the release, kept in the run for everyone after it."""

    thresholds: tuple[ScriptThreshold, ...] = ()
    setup_unit: str = ""  # who ran setup() ("" : nobody, noSetup)
    setup_data: str | None = None  # setup()'s data as JSON text (None: undefined)
    no_teardown: bool = False
    teardown_timeout_s: float = k6_script.DEFAULT_TEARDOWN_TIMEOUT_S
    total_duration_s: float | None = None

    @property
    def aborts(self) -> tuple[ScriptThreshold, ...]:
        """The abortOnFail thresholds (the watcher's)."""
        return tuple(t for t in self.thresholds if t.abort_on_fail)

    def to_info(self) -> dict[str, Any]:
        """JSON for the run record."""
        return {
            "thresholds": [
                [t.metric, t.expression, t.abort_on_fail, t.delay_abort_eval_s]
                for t in self.thresholds
            ],
            "setup_unit": self.setup_unit,
            "setup_data": self.setup_data,
            "no_teardown": self.no_teardown,
            "teardown_timeout_s": self.teardown_timeout_s,
            "total_duration_s": self.total_duration_s,
        }

    @classmethod
    def from_info(cls, info: Mapping[str, Any] | None) -> WholeRun:
        """From the run record (a run armed by an older revision has none: all defaults)."""
        info = info or {}
        thresholds = tuple(
            ScriptThreshold(str(m), str(e), bool(a), float(d))
            for m, e, a, d in info.get("thresholds") or ()
        )
        data = info.get("setup_data")
        total = info.get("total_duration_s")
        return cls(
            thresholds=thresholds,
            setup_unit=str(info.get("setup_unit") or ""),
            setup_data=data if isinstance(data, str) else None,
            no_teardown=info.get("no_teardown") is True,
            teardown_timeout_s=float(
                info.get("teardown_timeout_s") or k6_script.DEFAULT_TEARDOWN_TIMEOUT_S
            ),
            total_duration_s=float(total) if isinstance(total, int | float) else None,
        )


def check_thresholds(thresholds: Sequence[ScriptThreshold]) -> None:
    """Every threshold of the script is one k6-k8s can judge on the merge.

    Raises:
        ValueError: the first one it cannot, named.
    """
    for threshold in thresholds:
        try:
            results.parse_thresholds(str(threshold))
        except ValueError as e:
            raise ValueError(
                f"the script's threshold '{threshold}' cannot be judged: {e}"
            ) from None


@dataclass(frozen=True)
class Setup:
    """What setup() gave: its data (JSON text or None), or why the run cannot start."""

    data: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Teardown:
    """Whether teardown() ran, and how it went."""

    ran: bool
    unit: str = ""
    error: str = ""
    why_not: str = ""  # when it did not run

    def to_info(self) -> dict[str, Any]:
        """For the last-run record."""
        info: dict[str, Any] = {"ran": self.ran, "unit": self.unit}
        if self.error:
            info["error"] = self.error
        if self.why_not:
            info["why_not"] = self.why_not
        return info


class WholeRunSteps:
    """The leader's once-per-run steps, in its own workload container (K6Workload's)."""

    def __init__(
        self,
        container: ops.Container,
        unit_name: str,
        workdir: str,
        script_dir: str,
        environment: Mapping[str, str],
    ):
        self.container = container
        self.unit_name = unit_name
        self.workdir = workdir
        self.script_dir = script_dir
        self.watcher = OneShotService(
            container,
            k6_watch.SERVICE,
            summary="k6-k8s abort watcher (one run)",
            working_dir=workdir,
            environment=environment,
        )
        self.teardown_k6 = OneShotService(
            container,
            TEARDOWN_SERVICE,
            summary="k6 teardown (one run)",
            working_dir=workdir,
            environment=environment,
        )

    # ------------------------------------------------------------ before the release

    def prepare(self, run: Run, endpoints: Mapping[str, str], mine: str) -> Prepared:
        """The script's options, then setup() once on this unit's k6 (at `mine`) for every unit."""
        try:
            options = self.options()
            check_thresholds(options.thresholds)
        except ValueError as e:
            return Prepared(error=str(e))
        setup_unit, data = "", None
        if not options.no_setup:
            setup = self.setup(run, options, mine, endpoints)
            if setup.error:
                return Prepared(error=setup.error)
            setup_unit, data = self.unit_name, setup.data
        whole = WholeRun(
            thresholds=options.thresholds,
            setup_unit=setup_unit,
            setup_data=data,
            no_teardown=options.no_teardown,
            teardown_timeout_s=options.teardown_timeout_s,
            total_duration_s=options.total_duration_s,
        )
        return Prepared(info=whole.to_info())

    def options(self) -> ScriptOptions:
        """The script's options as this unit's `k6 inspect` printed them when it armed.

        Raises:
            ValueError: no options (the file is gone or unreadable).
        """
        try:
            text = self.container.pull(f"{self.workdir}/{k6_script.OPTIONS_FILE}").read()
        except pebble.PathError as e:
            raise ValueError(
                f"k6 inspect's output is missing on {self.unit_name}: {e.message}"
            ) from None
        return k6_script.parse_options(text)

    def setup(
        self, run: Run, options: ScriptOptions, mine: str, endpoints: Mapping[str, str]
    ) -> Setup:
        """The script's setup function, once, on this unit's paused k6; its data to every k6."""
        cached = self._cached_setup(run.run_id)
        if cached is not None:
            data = None if cached == NO_DATA else cached
        else:
            answer = k6_client.run_setup(mine, options.setup_timeout_s + API_MARGIN_S)
            if answer.error:
                return Setup(error=f"setup() failed on {self.unit_name}: {answer.error}")
            data = answer.data
            if data is not None and len(data.encode()) > SETUP_DATA_MAX_BYTES:
                return Setup(
                    error=f"setup() returned {len(data.encode()) // 1024} KiB of data; k6-k8s "
                    f"carries at most {SETUP_DATA_MAX_BYTES // 1024} KiB to every unit and to "
                    "teardown(): return less (e.g. ids, not whole records)"
                )
            self._cache_setup(run.run_id, NO_DATA if data is None else data)
        if data is not None:
            errors = k6_client.put_setup_all([e for e in endpoints.values() if e], data)
            failed = {e: why for e, why in errors.items() if why}
            if failed:
                where = "; ".join(f"{e}: {why}" for e, why in failed.items())
                return Setup(error=f"setup()'s data did not reach every unit: {where}")
        return Setup(data=data)

    def _setup_path(self, run_id: str) -> str:
        return f"{self.workdir}/{SETUP_DIR}/{run_id}.json"

    def _cached_setup(self, run_id: str) -> str | None:
        try:
            return self.container.pull(self._setup_path(run_id)).read()
        except pebble.PathError:
            return None

    def _cache_setup(self, run_id: str, text: str) -> None:
        self.container.remove_path(f"{self.workdir}/{SETUP_DIR}", recursive=True)
        self.container.push(self._setup_path(run_id), text, make_dirs=True)

    # ------------------------------------------------------------ while it runs

    def watch(self, run: Run, endpoints: Mapping[str, str]) -> None:
        """Start the watcher of the script's abortOnFail thresholds (when it has any)."""
        whole = WholeRun.from_info(run.prepared)
        started = run.started
        if not whole.aborts or started is None:
            return
        plan = k6_watch.plan(whole.aborts, endpoints, started, whole.total_duration_s)
        environment = {k6_watch.PLAN_ENV: json.dumps(plan, separators=(",", ":"))}
        command = done_notice_command(k6_watch.shell_line(), k6_watch.NOTICE_KEY, run.run_id)
        self.container.push(
            f"{self.workdir}/{k6_watch.SCRIPT_FILE}", k6_watch.SOURCE.read_text(), make_dirs=True
        )
        self.container.remove_path(f"{self.workdir}/{k6_watch.LOG_FILE}", recursive=True)
        try:
            self.watcher.start(command, environment)
        except ArmFailed as e:
            logger.warning("run %s: the abort watcher did not start: %s", run.run_id, e)
            return
        logger.info("run %s: watching %d abort threshold(s)", run.run_id, len(whole.aborts))

    def watcher_trip(self) -> k6_watch.Trip | None:
        """The watcher's trip, if it logged one."""
        try:
            log = self.container.pull(f"{self.workdir}/{k6_watch.LOG_FILE}").read()
        except pebble.PathError:
            return None
        return k6_watch.read_trip(log)

    def stop(self, service: OneShotService) -> None:
        """Stop a helper service if it runs (the watcher, the teardown k6)."""
        try:
            if service.name in self.container.get_services(service.name) and service.running():
                service.halt()
        except (pebble.APIError, pebble.ChangeError) as e:
            logger.info("could not stop %s: %s", service.name, e)

    # ------------------------------------------------------------ after the last end

    def conclude(self, run: Run, payload: Mapping[str, Any], address: str) -> Concluded:
        """Stop the watcher, read its verdict, run teardown() once: what the record keeps."""
        self.stop(self.watcher)
        whole = WholeRun.from_info(run.prepared)
        info: dict[str, Any] = {"setup": {"unit": whole.setup_unit}}
        failures: list[str] = []
        trip = self.watcher_trip()
        if trip is not None:
            info["abort"] = trip.reason()
            if not run.reason:  # every unit ended before the leader acted on the trip
                failures.append(trip.reason())
        teardown = self.teardown(run, payload, whole, address)
        info["teardown"] = teardown.to_info()
        if teardown.error:
            failures.append(f"teardown() failed on {teardown.unit}: {teardown.error}")
        return Concluded(info=info, failures=tuple(failures))

    def teardown(
        self, run: Run, payload: Mapping[str, Any], whole: WholeRun, address: str
    ) -> Teardown:
        """The script's teardown function, once, in a fresh k6 on this pod, with setup's data."""
        text = str(payload.get("script") or "")
        if whole.no_teardown:
            return Teardown(ran=False, why_not="noTeardown is set")
        if not k6_script.may_have_teardown(text):
            return Teardown(ran=False, why_not="the script has no teardown()")
        mark = f"{self.workdir}/{TEARDOWN_DIR}/{run.run_id}"
        if self.container.exists(mark):
            return Teardown(False, self.unit_name, why_not="an earlier attempt was interrupted")
        self.container.remove_path(f"{self.workdir}/{TEARDOWN_DIR}", recursive=True)
        self.container.push(mark, "", make_dirs=True)
        script = f"{self.script_dir}/{payload.get('script_name') or 'script.js'}"
        self.container.push(f"{self.workdir}/{script}", text, make_dirs=True, permissions=0o644)
        environment = {str(k): str(v) for k, v in (payload.get("environment") or {}).items()}
        command = teardown_command(script, environment, address, run.run_id)
        own = {"K6_K8S_UNIT": self.unit_name, "K6_K8S_RUN_ID": run.run_id}
        return self._run_teardown(whole, command, own, address)

    def _run_teardown(
        self, whole: WholeRun, command: str, environment: Mapping[str, str], address: str
    ) -> Teardown:
        """Start the teardown k6, give it setup()'s data, run teardown(), stop it."""
        endpoint = endpoint_of(address, TEARDOWN_PORT)
        try:
            self.teardown_k6.start(command, environment)
            status = k6_client.wait_ready(endpoint, TEARDOWN_READY_S)
            if status is None or not status.ready:
                return Teardown(False, self.unit_name, error="the teardown k6 did not start")
            if whole.setup_data is not None:
                put = k6_client.put_setup_all([endpoint], whole.setup_data)[endpoint]
                if put:
                    return Teardown(False, self.unit_name, error=f"setup()'s data: {put}")
            answer = k6_client.run_teardown(endpoint, whole.teardown_timeout_s + API_MARGIN_S)
            return Teardown(answer.reached, self.unit_name, error=answer.error or "")
        except ArmFailed as e:
            return Teardown(False, self.unit_name, error=f"the teardown k6 did not start: {e}")
        finally:
            self.stop(self.teardown_k6)


def teardown_argv(
    script: str, environment: Mapping[str, str], address: str, run_id: str = ""
) -> list[str]:
    """The fresh k6 that runs teardown(): paused, one VU, no setup, no thresholds, no summary."""
    argv = ["k6", "run", "--paused", "--no-setup", "--no-teardown", "--no-thresholds"]
    argv += ["--no-summary", "--no-usage-report", "--vus", "1", "--iterations", "1"]
    argv += ["--address", endpoint_of(address, TEARDOWN_PORT)]
    if run_id:
        argv += ["--tag", f"run_id={run_id}"]  # teardown()'s samples, like the run's
    for key, value in environment.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, script]


def teardown_command(
    script: str, environment: Mapping[str, str], address: str, run_id: str = ""
) -> str:
    """The teardown k6 as one shell-quoted Pebble command."""
    return shlex.join(teardown_argv(script, environment, address, run_id))


# k6's exit codes (errext/exitcodes) for what ended one `k6 run`.
EXIT_OK, EXIT_THRESHOLDS, EXIT_SETUP_TIMEOUT, EXIT_TEARDOWN_TIMEOUT = 0, 99, 100, 101
EXIT_SIGNAL, EXIT_SCRIPT_ERROR, EXIT_ABORTED = 105, 107, 108


def _timed_out(text: str) -> bool:
    return "did not finish within" in text or "timed out" in text


def exit_code_of(last: LastRun) -> int | None:
    """The exit code one `k6 run` of the whole test would have ended with (None: no such run).

    A user's stop is k6's interrupt (105); an abortOnFail trip or a failed threshold 99; a
    unit's own abort its code (108, 107); setup() or teardown() failing 107, or 100/101 when
    they timed out; otherwise the first unit's failing code.
    """
    if last.outcome == PASSED:
        return EXIT_OK
    reason = last.reason
    if reason == STOPPED_BY_USER:
        return EXIT_SIGNAL
    if reason.startswith(k6_watch.TRIP_REASON):
        return EXIT_THRESHOLDS
    for code in (EXIT_ABORTED, EXIT_SCRIPT_ERROR):
        if f"(exit code {code})" in reason:
            return code
    if reason.startswith("setup() failed"):
        return EXIT_SETUP_TIMEOUT if _timed_out(reason) else EXIT_SCRIPT_ERROR
    if any(f.startswith(THRESHOLDS_FAILED) for f in last.failures):
        return EXIT_THRESHOLDS
    teardown = [f for f in last.failures if f.startswith("teardown() failed")]
    if teardown:
        return EXIT_TEARDOWN_TIMEOUT if _timed_out(teardown[0]) else EXIT_SCRIPT_ERROR
    codes = [line.exit_code for line in last.units.values() if line.exit_code not in (None, 0)]
    return codes[0] if codes else None
