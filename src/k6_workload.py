"""The k6 workload: `k6 run --paused` as a one-shot Pebble service, and what the library needs.

`RunCommand` builds the command line (one shell-quoted string); `K6Workload` is this charm's
`Workload` for the synchronized-task library: it arms k6 for a unit's execution segment,
resumes it through its REST API (k6_client) and collects its summary.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import ops
from charms.k6_k8s.v0.synchronized_task import (
    Concluded,
    OneShotService,
    Prepared,
    Run,
    Share,
    UnitReport,
    Workload,
    done_notice_command,
    endpoint_of,
)
from ops import pebble

import k6_client
import k6_script
import results
from cos import REPORT_FILE
from k6_whole_run import WholeRunSteps

logger = logging.getLogger(__name__)

SERVICE = "k6"
NOTICE_KEY = "k6.com/done"
WORKDIR = "/var/lib/k6-k8s"
SUMMARY_FILE = "summary.json"
SCRIPT_DIR = "tests"
ARM_WAIT_SECONDS = 30.0  # how long one unit's arm hook waits for its own k6 to pause
RECHECK_WAIT_SECONDS = 2.0  # a later look at a k6 that was still initializing
KILL_DELAY_SECONDS = 5.0  # a stopped k6 exits 105 (the notice still follows) or is killed
# A unit's end that ends one `k6 run` ends the whole run (the others are stopped).
STOPS_EVERYONE = {
    107: "stopped on a script error (exit code 107)",
    108: "aborted the test: exec.test.abort() (exit code 108)",
}

# Settings for the k6 in the workload image (1.7 there, 1.1 in the tests; docs/juju-k8s.md):
# older k6 ignores unknown variables, so one environment serves both.
VERSION_ENV = {
    # since 1.2, a script importing a missing k6/x extension makes k6 download a custom binary
    # from Grafana's build service: never from a load-test pod (no egress is assumed)
    "K6_AUTO_EXTENSION_RESOLUTION": "false",
    # 1.5 added a new --summary-export format, announced as v2's default: keep the one parsed
    "K6_NEW_MACHINE_READABLE_SUMMARY": "false",
}


def segment_flags(share: Share) -> list[str]:
    """Execution-segment flags for one participant's share (none for a single unit)."""
    if share.count <= 1:
        return []
    if not 0 <= share.index < share.count:
        raise ValueError(f"participant index {share.index} outside 0..{share.count - 1}")
    bounds = [Fraction(i, share.count) for i in range(share.count + 1)]
    start, end = share.bounds()
    return [
        "--execution-segment",
        f"{start}:{end}",
        "--execution-segment-sequence",
        ",".join(str(b) for b in bounds),
    ]


@dataclass(frozen=True)
class RunCommand:
    """What one participant runs: inputs to `k6 run --paused`."""

    script: str  # path relative to the service working directory
    run_id: str
    address: str  # host the REST API binds to
    share: Share = Share(0, 1)
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()

    def k6_argv(self) -> list[str]:
        """The k6 argv, one list element per argument.

        `--no-setup --no-teardown --no-thresholds`: the leader runs setup() and teardown() once
        for the whole run and judges the script's thresholds on the merge (docs/k6-semantics.md).
        """
        argv = ["k6", "run", "--paused", "--address", endpoint_of(self.address, k6_client.PORT)]
        argv += ["--no-setup", "--no-teardown", "--no-thresholds"]
        argv += segment_flags(self.share)
        for key, value in sorted(self.tags.items()):
            argv += ["--tag", f"{key}={value}"]
        for key, value in self.environment.items():
            argv += ["-e", f"{key}={value}"]
        argv += ["--summary-export", SUMMARY_FILE, "--summary-trend-stats", results.trend_stats()]
        argv += ["--no-usage-report"]  # no phoning home from a load-test pod
        argv += [*self.extra_args, self.script]
        return argv

    def inspect_argv(self) -> list[str]:
        """`k6 inspect --execution-requirements`: the script's options, as k6 run reads them.

        `k6 run` gives the script the service's environment in __ENV; `k6 inspect` only with
        `--include-system-env-vars` (K6_K8S_UNIT, the outputs' settings).
        """
        argv = ["k6", "inspect", "--execution-requirements", "--include-system-env-vars"]
        for key, value in self.environment.items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, self.script]

    def shell_line(self) -> str:
        """k6 inspect into OPTIONS_FILE, then (if it worked) k6 run, in a child shell."""
        inspect, run = shlex.join(self.inspect_argv()), shlex.join(self.k6_argv())
        line = f"{inspect} > {k6_script.OPTIONS_FILE} && exec {run}"
        return shlex.join(["sh", "-c", line])

    def service_command(self) -> str:
        """The Pebble service command: k6, then the done-notice with the run id and exit code."""
        return done_notice_command(self.shell_line(), NOTICE_KEY, self.run_id)


@dataclass(frozen=True)
class Outputs:
    """Where this unit's k6 sends metrics and logs, and how its samples are tagged."""

    tags: Mapping[str, str]
    args: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)


class K6Workload(Workload):
    """k6 in the workload container, driven through Pebble and its own REST API."""

    def __init__(
        self, container: ops.Container, unit_name: str, outputs: Callable[[str], Outputs]
    ):
        self.container = container
        self.service = OneShotService(
            container,
            SERVICE,
            summary="k6 load test (one run)",
            working_dir=WORKDIR,
            environment=VERSION_ENV,
            kill_delay=KILL_DELAY_SECONDS,
        )
        self.unit_name = unit_name
        self.outputs = outputs  # run id -> this run's tags, output flags and environment
        self.whole_run = WholeRunSteps(container, unit_name, WORKDIR, SCRIPT_DIR, VERSION_ENV)

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        """Write the script, start `k6 run --paused`, wait until its API says paused."""
        outputs = self.outputs(run.run_id)
        command = RunCommand(
            script=f"{SCRIPT_DIR}/{payload['script_name']}",
            run_id=run.run_id,
            address=address,
            share=share,
            environment=payload.get("environment", {}),
            tags=outputs.tags,
            extra_args=outputs.args,
        )
        environment = {
            "K6_K8S_UNIT": self.unit_name,
            "K6_K8S_RUN_ID": run.run_id,
            **outputs.environment,
        }
        self.container.push(
            f"{WORKDIR}/{command.script}", payload["script"], make_dirs=True, permissions=0o644
        )
        for stale in (SUMMARY_FILE, REPORT_FILE, k6_script.OPTIONS_FILE):
            self.container.remove_path(f"{WORKDIR}/{stale}", recursive=True)
        self.service.start(command.service_command(), environment)
        return self._ready(address, ARM_WAIT_SECONDS)

    def ready(self, run: Run, address: str) -> bool:
        """Look again at a k6 that was still initializing."""
        return self._ready(address, RECHECK_WAIT_SECONDS)

    def _ready(self, address: str, wait: float) -> bool:
        endpoint = endpoint_of(address, k6_client.PORT)
        status = k6_client.wait_ready(endpoint, wait, alive=self.running)
        return status is not None and status.ready

    def halt(self) -> None:
        """Stop k6 (SIGTERM: it exits 105, the notice still follows) and the watcher, if any."""
        self.service.halt()
        self.whole_run.stop(self.whole_run.watcher)

    def result(self, run: Run) -> dict[str, Any] | None:
        """This unit's compact k6 summary and the path of its HTML report."""
        keep = {t.metric for thresholds in results.run_thresholds(run) for t in thresholds}
        return {"summary": self._summary(keep), "report": self._report_path()}

    def _summary(self, keep: set[str]) -> results.CompactSummary | None:
        try:
            text = self.container.pull(f"{WORKDIR}/{SUMMARY_FILE}").read()
            return results.compact(json.loads(text), keep=keep)
        except (pebble.PathError, ValueError) as e:
            logger.info("no k6 summary: %s", e)
            return None

    def _report_path(self) -> str:
        path = f"{WORKDIR}/{REPORT_FILE}"
        return path if self.container.exists(path) else ""

    def release_request(self, endpoint: str) -> bytes:
        """PATCH /v1/status paused=false."""
        return k6_client.resume_request(endpoint)

    def probe(self, endpoints: Mapping[str, str]) -> frozenset[str]:
        """Which units' k6 are paused before the run by now."""
        statuses = k6_client.probe_all(list(endpoints.values()), timeout=1.0)
        return frozenset(
            p for p, e in endpoints.items() if (s := statuses.get(e)) is not None and s.ready
        )

    def stop_remote(self, endpoints: Sequence[str]) -> None:
        """PATCH stopped=true to each k6; a unit that cannot be reached stops on its own."""
        for endpoint, error in k6_client.stop_all(endpoints).items():
            if error:
                logger.info("stop via API at %s failed (it stops on its own): %s", endpoint, error)

    # ------------------------------------------------------------ once for the whole run

    def prepare(self, run: Run, endpoints: Mapping[str, str], address: str) -> Prepared:
        """The script's options, and setup() once on this (the leader's) k6 (k6_whole_run)."""
        return self.whole_run.prepare(run, endpoints, endpoint_of(address, k6_client.PORT))

    def watch(self, run: Run, endpoints: Mapping[str, str]) -> None:
        """The abortOnFail watcher, when the script has such thresholds (k6_whole_run)."""
        self.whole_run.watch(run, endpoints)

    def conclude(
        self,
        run: Run,
        payload: Mapping[str, Any],
        reports: Mapping[str, UnitReport],
        address: str,
    ) -> Concluded:
        """The watcher's verdict, and teardown() once in a fresh k6 here (k6_whole_run)."""
        return self.whole_run.conclude(run, payload, address)

    def stops_everyone(self, exit_code: int | None) -> str:
        """k6's own aborts stop the whole run, as they stop one `k6 run`."""
        return STOPS_EVERYONE.get(exit_code, "") if exit_code is not None else ""
