#!/usr/bin/env python3
"""TEST DOUBLE: a charm on the synchronized-task library alone, with stand-in workloads.

It imports nothing from k6-k8s' own src/: only ops, the standard library and
`charms.k6_k8s.v0.synchronized_task`, so the property-based schedules
(tests/e2e/test_properties.py) exercise the library as any charm would use it. The config option
`release` picks the mechanism:

- `api` (`ApiRelease`): each unit runs the k6 stand-in (tests/support/k6_standin.py) with
  `run --paused` as a one-shot Pebble service; `arm` waits briefly for its REST API to say
  "paused before the run" (stdlib http.client), the leader releases every unit with the
  stand-in's resume PATCH, probes units still initializing and stops them through the API.
- `instant` (`InstantRelease`): each unit runs a shell line that marks itself ready, waits for a
  start file and then for the instant written in it, logs when it started, and exits with a
  configurable code; no API at all.

Fault knobs (the unit's environment): the k6 stand-in's `K6_STANDIN_*` for `api`; for `instant`
`TASK_STANDIN_EXIT` (exit code), `TASK_STANDIN_DIE_BEFORE_ARM` (exit 107 before ready),
`TASK_STANDIN_INIT_SECONDS` (time before ready) and `TASK_STANDIN_RUN_SECONDS` (run length).

The emulator moves the charm's clock ahead of the wall clock (`Model.tick`) to reach deadlines;
the instant workload reads the same offset from `.clock-offset-ns` in its working directory
(written by the test harness; absent, i.e. 0, on a real node where both share one clock).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ops
from charms.k6_k8s.v0.synchronized_task import (
    Aggregate,
    ApiRelease,
    Concluded,
    InstantRelease,
    OneShotService,
    Prepared,
    Run,
    Share,
    SynchronizedTask,
    TaskRefused,
    UnitReport,
    Workload,
    done_notice_command,
    endpoint_of,
)
from ops import pebble

logger = logging.getLogger(__name__)

PEER = "tasks"
CONTAINER = "worker"
SERVICE = "task"
NOTICE_KEY = "task-standin.example/done"
WORKDIR = "/var/lib/task-standin"
PORT = 6570  # the k6 stand-in's REST API (not k6's 6565: this charm is not k6)
LEAD_SECONDS = 0.3  # InstantRelease: the start instant is this far after the last unit armed
ARM_WAIT_SECONDS = 0.2  # how long `arm` waits for the workload to be ready
READY_WAIT_SECONDS = 0.05  # how long a later look waits
POLL_SECONDS = 0.02

STATUS_PATH = "/v1/status"
STATUS_PAUSED_BEFORE_RUN = 4
STATUS_RUNNING = 7
RESUME_BODY = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
STOP_BODY = {"data": {"type": "status", "id": "default", "attributes": {"stopped": True}}}
SUMMARY_FILE = "summary.json"
ONCE_LOG = "once.log"  # when prepare and conclude ran (one JSON line each)

# The k6 stand-in as the emulator runs it (K6EMU_PYTHON: the test's interpreter).
STANDIN = '"${K6EMU_PYTHON:-python3}" -m tests.support.k6_standin'

# The instant workload, run in a subshell so that its `exit` still reaches the done-notice.
# It logs "RUN_ID ready NS" and "RUN_ID start NS" (the clock in nanoseconds) to events.log.
INSTANT_LINE = """(
now() { echo $(( $(date +%s%N) + $(cat .clock-offset-ns 2>/dev/null || echo 0) )); }
sleep "${TASK_STANDIN_INIT_SECONDS:-0}"
if [ -n "${TASK_STANDIN_DIE_BEFORE_ARM:-}" ]; then exit 107; fi
echo "$TASK_RUN_ID ready $(now)" >> events.log
: > ready
until [ -s start-at ]; do sleep 0.01; done
at=$(cat start-at)
while [ "$(now)" -lt "$at" ]; do sleep 0.005; done
echo "$TASK_RUN_ID start $(now)" >> events.log
sleep "${TASK_STANDIN_RUN_SECONDS:-0.1}"
echo "$TASK_ITEMS" > result
exit "${TASK_STANDIN_EXIT:-0}"
)"""


def _request(endpoint: str, method: str, body: dict | None, timeout: float) -> dict | None:
    """One HTTP request to the stand-in's status resource; the JSON answer, None if none."""
    host, _, port = endpoint.rpartition(":")
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, STATUS_PATH, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            return None
        return json.loads(data)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def _attributes(endpoint: str, timeout: float = 0.5) -> dict | None:
    document = _request(endpoint, "GET", None, timeout)
    try:
        attributes = document["data"]["attributes"]  # type: ignore[index]
    except (TypeError, KeyError):
        return None
    return attributes if isinstance(attributes, dict) else None


def _paused_before_run(attributes: dict | None) -> bool:
    return bool(
        attributes
        and attributes.get("status") == STATUS_PAUSED_BEFORE_RUN
        and attributes.get("paused")
    )


class _OneShot(Workload):
    """A one-shot Pebble service that ends with the library's done-notice."""

    def __init__(self, container: ops.Container):
        self.container = container
        self.service = OneShotService(
            container,
            SERVICE,
            summary="stand-in task (one run)",
            working_dir=WORKDIR,
            kill_delay=2.0,
        )

    def _start(self, line: str, run: Run, environment: Mapping[str, str]) -> None:
        self.service.start(done_notice_command(line, NOTICE_KEY, run.run_id), environment)

    def _remove(self, *names: str) -> None:
        for name in names:
            self.container.remove_path(f"{WORKDIR}/{name}", recursive=True)

    # The once-per-run steps: each logs one line to ONCE_LOG (the property tests check when),
    # once per run as the library asks (a retried hook finds its marker and does nothing).
    def prepare(self, run: Run, endpoints: Mapping[str, str], address: str) -> Prepared:
        """Log the step; nothing to prepare."""
        self._once("prepare", run.run_id)
        return Prepared(info={"by": address})

    def conclude(
        self,
        run: Run,
        payload: Mapping[str, Any],
        reports: Mapping[str, UnitReport],
        address: str,
    ) -> Concluded:
        """Log the step; nothing to conclude."""
        self._once("conclude", run.run_id)
        return Concluded(info={"by": address})

    def _once(self, step: str, run_id: str) -> None:
        marker = f"{WORKDIR}/{step}-{run_id}"
        if self.container.exists(marker):
            return
        self.container.push(marker, "", make_dirs=True)
        try:
            log = self.container.pull(f"{WORKDIR}/{ONCE_LOG}").read()
        except pebble.PathError:
            log = ""
        line = json.dumps({"event": step, "run_id": run_id, "epoch_ns": time.time_ns()})
        self.container.push(f"{WORKDIR}/{ONCE_LOG}", log + line + "\n", make_dirs=True)


class StandinWorkload(_OneShot):
    """`k6_standin run --paused`, released through its REST API (ApiRelease)."""

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        """Start the stand-in paused; True once its API says paused before the run."""
        endpoint = endpoint_of(address, PORT)
        items = share.split(int(payload["items"]))
        argv = ["run", "--paused", "--address", endpoint, "--tag", f"run_id={run.run_id}"]
        argv += ["--summary-export", SUMMARY_FILE]
        line = f"{STANDIN} {shlex.join([*argv, 'task.js'])}"
        self._remove(SUMMARY_FILE)
        self._start(line, run, {"K6_STANDIN_ITERATIONS": str(items)})
        return self._wait(endpoint, ARM_WAIT_SECONDS)

    def ready(self, run: Run, address: str) -> bool:
        """Look again at a stand-in that was still initializing."""
        return self._wait(endpoint_of(address, PORT), READY_WAIT_SECONDS)

    def _wait(self, endpoint: str, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            attributes = _attributes(endpoint)
            if _paused_before_run(attributes):
                return True
            if attributes is not None and attributes.get("status", 0) >= STATUS_RUNNING:
                return False
            if time.monotonic() >= deadline or (attributes is None and not self.running()):
                return False
            time.sleep(POLL_SECONDS)

    def result(self, run: Run) -> dict[str, Any] | None:
        """{"items": iterations the stand-in reports}, or None without a summary."""
        try:
            summary = json.loads(self.container.pull(f"{WORKDIR}/{SUMMARY_FILE}").read())
            return {"items": int(summary["metrics"]["iterations"]["count"])}
        except (pebble.PathError, ValueError, KeyError, TypeError):
            return None

    def release_request(self, endpoint: str) -> bytes:
        """PATCH /v1/status paused=false, pre-encoded."""
        body = json.dumps(RESUME_BODY).encode()
        head = (
            f"PATCH {STATUS_PATH} HTTP/1.1\r\nHost: {endpoint}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body

    def probe(self, endpoints: Mapping[str, str]) -> frozenset[str]:
        """The units whose stand-in is paused before the run by now."""
        return frozenset(p for p, e in endpoints.items() if _paused_before_run(_attributes(e)))

    def stop_remote(self, endpoints: Sequence[str]) -> None:
        """PATCH stopped=true to each stand-in (best effort: a unit also stops on its own)."""
        for endpoint in endpoints:
            if _request(endpoint, "PATCH", STOP_BODY, timeout=1.0) is None:
                logger.info("stop via API at %s failed (it stops on its own)", endpoint)


class ShellWorkload(_OneShot):
    """A shell line that waits for a start file (InstantRelease)."""

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        """Start the line; True once it marked itself ready."""
        self._remove("ready", "start-at", "result")
        environment = {
            "TASK_RUN_ID": run.run_id,
            "TASK_ITEMS": str(share.split(int(payload["items"]))),
        }
        self._start(INSTANT_LINE, run, environment)
        return self._wait(ARM_WAIT_SECONDS)

    def ready(self, run: Run, address: str) -> bool:
        """Look again at a line that was still initializing."""
        return self._wait(READY_WAIT_SECONDS)

    def _wait(self, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            if self.container.exists(f"{WORKDIR}/ready"):
                return True
            if time.monotonic() >= deadline or not self.running():
                return False
            time.sleep(POLL_SECONDS)

    def release_at(self, run: Run, instant: float) -> None:
        """The start file: the instant in integer nanoseconds (rounded up: never early)."""
        self.container.push(f"{WORKDIR}/start-at", str(math.ceil(instant * 1e9)), make_dirs=True)

    def result(self, run: Run) -> dict[str, Any] | None:
        """{"items": this unit's share}, written once the line ran to its end."""
        try:
            return {"items": int(self.container.pull(f"{WORKDIR}/result").read().strip())}
        except (pebble.PathError, ValueError):
            return None


def aggregate(run: Run, reports: Mapping[str, UnitReport], ended: float) -> Aggregate:
    """Items done in total and per unit."""
    items = {p: (r.result or {}).get("items") for p, r in reports.items()}
    total = sum(v for v in items.values() if isinstance(v, int))
    return Aggregate(
        data={"items": total},
        lines={p: {"items": v} for p, v in items.items()},
        headline=f"{total} items",
    )


class TaskCharm(ops.CharmBase):
    """The library, a stand-in workload, and the actions start and stop."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        container = self.unit.get_container(CONTAINER)
        if self.config.get("release") == "instant":
            workload: Workload = ShellWorkload(container)
            release: ApiRelease | InstantRelease = InstantRelease(lead=LEAD_SECONDS)
        else:
            workload, release = StandinWorkload(container), ApiRelease(port=PORT, timeout=1.0)
        self.task = SynchronizedTask(
            self,
            PEER,
            workload,
            container=CONTAINER,
            notice_key=NOTICE_KEY,
            release=release,
            aggregate=aggregate,
            clock=lambda: time.time(),  # through this module's `time`: the emulator moves it
        )
        framework.observe(self.on.start_action, self._on_start_action)
        framework.observe(self.on.stop_action, self._on_stop_action)

    def _on_start_action(self, event: ops.ActionEvent) -> None:
        items = int(self.config.get("items", 10))
        try:
            run = self.task.start(
                {"items": items},
                info={"items": items},
                arm_timeout=float(self.config.get("arm-timeout", 60)),
            )
        except TaskRefused as e:
            event.fail(str(e))
            return
        event.set_results({"run-id": run.run_id, "units": ",".join(run.participants)})

    def _on_stop_action(self, event: ops.ActionEvent) -> None:
        try:
            run = self.task.stop()
        except TaskRefused as e:
            event.fail(str(e))
            return
        event.set_results({"run-id": run.run_id if run else ""})


if __name__ == "__main__":  # pragma: nocover
    ops.main(TaskCharm)
