# Copyright 2026 k6-k8s contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

r"""One task armed on every unit of an application, then released on all of them at one instant.

A charm gives the library a `Workload` (how to start this unit's share, and how to release it)
and calls `task.start(payload)` from an action on the leader; the library does the rest.

A complete charm, examples/coconut in this library's repository: its src/eater.py (down to
`Eater`) and src/charm.py (from `CONTAINER`) in one module, without their docstrings, and
without what coconut adds to it: the `stop` and `results` actions (`_on_stop_action`,
`_on_results_action`, `_text`) and `aggregate=tally` (src/tally.py). A unit test checks that
this is so. Metadata: a peer endpoint `tasks`, a container `eater` whose image has `/bin/sh`,
GNU date and awk, and an action `eat` with an integer parameter `coconuts`.

```python
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ops
from charms.k6_k8s.v0.synchronized_task import (
    STOPPING, InstantRelease, OneShotService, Run, Share, SynchronizedTask, TaskRefused,
    Workload, done_notice_command)

SERVICE = "eat"
NOTICE_KEY = "coconut.example/done"
WORKDIR = "/var/lib/coconut"
START_FILE = "start-at"  # the start instant, epoch seconds; the leader's choice
STARTED_FILE = "started"  # when this unit really started eating
EATEN_FILE = "eaten"  # one line per coconut eaten: its number in the whole
POLL_SECONDS = 0.01  # how often the armed shell looks for the start file
BITE_SECONDS = 0.01  # a coconut takes a moment, so that a run lasts a little


def eat_script(coconuts: range) -> str:
    # wait for the start file, sleep until the instant in it, then eat (awk: dash has no floats)
    return "\n".join(
        [
            f"until [ -s {START_FILE} ]; do sleep {POLL_SECONDS}; done",
            f"at=$(cat {START_FILE})",
            'wait=$(awk -v at="$at" -v now="$(date +%s.%N)" '
            "'BEGIN { d = at - now; printf \"%.6f\", (d > 0 ? d : 0) }')",
            'sleep "$wait"',
            f"date +%s.%N > {STARTED_FILE}",
            f"i={coconuts.start}",
            f'while [ "$i" -lt {coconuts.stop} ]; do',
            f'  echo "$i" >> {EATEN_FILE}',
            f"  sleep {BITE_SECONDS}",
            "  i=$((i + 1))",
            "done",
        ]
    )


def service_command(script: str, run_id: str) -> str:
    # a child shell, so that Pebble's SIGTERM ends the loop; then the done notice
    return done_notice_command(shlex.join(["/bin/sh", "-c", script]), NOTICE_KEY, run_id)


class Eater(Workload):
    def __init__(self, container: ops.Container):
        self.container = container
        self.service = OneShotService(
            container, SERVICE, summary="eat a share of the coconuts", working_dir=WORKDIR
        )

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        coconuts = share.items(int(payload["coconuts"]))  # this unit's numbers of the whole
        self.container.make_dir(WORKDIR, make_parents=True)
        for stale in (START_FILE, STARTED_FILE, EATEN_FILE):
            self.container.remove_path(f"{WORKDIR}/{stale}", recursive=True)
        self.service.start(service_command(eat_script(coconuts), run.run_id))
        return True  # armed: the shell waits for its start file

    def release_at(self, run: Run, instant: float) -> None:
        self.container.push(f"{WORKDIR}/{START_FILE}", f"{instant:.6f}\n", make_dirs=True)

    def result(self, run: Run) -> dict[str, Any] | None:
        return {"eaten": self._eaten(), "started": self._started()}

    def _eaten(self) -> int:
        try:
            with self.container.pull(f"{WORKDIR}/{EATEN_FILE}") as lines:
                return sum(1 for _ in lines)
        except ops.pebble.PathError:
            return 0

    def _started(self) -> float | None:
        try:
            return float(self.container.pull(f"{WORKDIR}/{STARTED_FILE}").read())
        except (ops.pebble.PathError, ValueError):
            return None  # stopped before the instant


CONTAINER = "eater"
PEER = "tasks"
MAX_COCONUTS = 1_000_000
LEAD_SECONDS = 2.0  # the start instant is this far ahead of the moment the last unit armed
ARM_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class EatParams:
    coconuts: int = 0

    def __post_init__(self):
        if isinstance(self.coconuts, bool) or not isinstance(self.coconuts, int):
            raise ValueError(f"coconuts must be a whole number, not {self.coconuts!r}")
        if not 1 <= self.coconuts <= MAX_COCONUTS:
            raise ValueError(
                f"coconuts must be from 1 to {MAX_COCONUTS}, not {self.coconuts}: "
                "eat coconuts=<how many in all>"
            )


class CoconutCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.task = SynchronizedTask(
            self,
            PEER,
            Eater(self.unit.get_container(CONTAINER)),
            container=CONTAINER,
            notice_key=NOTICE_KEY,
            release=InstantRelease(lead=LEAD_SECONDS),
        )
        framework.observe(self.on.eat_action, self._on_eat_action)

    def _on_eat_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(EatParams, errors="fail")
        try:
            run = self.task.start(
                {"coconuts": params.coconuts},
                info={"coconuts": params.coconuts},  # kept in the last-run record
                arm_timeout=ARM_TIMEOUT_SECONDS,
            )
        except TaskRefused as e:
            event.fail(str(e))
            return
        event.set_results({"run-id": run.run_id, "units": ",".join(run.participants)})
        active = self.task.run
        if active is None or active.phase == STOPPING:  # it failed in this very hook
            last = self.task.last_run
            reason = active.reason if active else (last.reason if last else "")
            event.fail(f"run {run.run_id} did not start: {reason}")
            return
        event.log(
            f"run {run.run_id}: {params.coconuts} coconuts over {len(run.participants)} units"
        )


if __name__ == "__main__":
    ops.main(CoconutCharm)
```

How it works: Juju runs actions on one unit and gives no timing guarantee between units, so the
leader coordinates through the peer relation: it freezes a run (id, participants, payload
digest, deadline) in the application databag; each unit, woken by relation-changed, arms its
share of the task (started, waiting to go) and reports `busy` in its unit databag; when every
participant is armed the leader releases them all at once; when a unit's workload ends, a Pebble
notice wakes that unit, which reports `idle` with its exit code and result; when every
participant has reported, the leader aggregates the results into the last-run record and
clears the run. Deadlines, faults, departures, leadership changes and a user's stop end the run
instead of hanging it: every decision comes out of one pure state machine, `decide`.

The library observes the peer relation, leader-elected, update-status, the container's custom
notices and the unit's stop, keeps the unit and application statuses, and exposes `task.run`
(the active `Run`), `task.last_run` (a `LastRun`), `task.stop()`.

API:
- `SynchronizedTask(charm, relation_name, workload, *, container, notice_key, release,
  aggregate=None, clock=time.time)`: `start(payload, *, info=None, arm_timeout=120,
  expected_s=None) -> Run` (leader only; raises `TaskRefused` with a message for the user);
  `stop() -> Run | None`; `run`, `last_run`, `reports()`.
- `Workload`: the charm's side. `arm(run, payload, share, address) -> bool` (start this unit's
  share, waiting to be released, an API listening on `address`, the unit's own address; True
  once ready to go, False while it initializes; raise `ArmFailed` when it cannot start),
  `ready(run, address) -> bool` (look again), `running()`, `halt()` (those of its `service`, a
  `OneShotService`, when it has one),
  `result(run) -> dict | None` (this unit's result once it ended), and, by release mechanism,
  `release_request(endpoint) -> bytes` and optionally `probe`/`stop_remote` (`ApiRelease`) or
  `release_at(run, instant)` (`InstantRelease`).
- Release mechanisms: `ApiRelease(port)`: the leader opens a connection to every unit's
  published endpoint (its pod IP, the peer binding's bind address: on Kubernetes the
  ingress-address is one Service ClusterIP shared by all units), then writes every release
  request back to back (`fan_out`): the skew is the write loop, microseconds. `InstantRelease
  (lead)`: for workloads with no API, the leader writes a start time `lead` seconds ahead; every
  unit hands it to its armed workload, which waits for it. Its skew bound is the nodes' clock
  offset (NTP: usually well under 10 ms) plus the workload's own polling; a unit that learns
  the instant only after it passed starts late, and the last-run record says by how much.
- `aggregate(run, reports, ended) -> Aggregate`: the leader's callback when every participant
  has reported: a compact merged result for the last-run record, failures that fail the run,
  one short line per unit, and a headline for the application status.
- The workload signals its end with `done_notice_command(shell_line, notice_key, run_id)`,
  a Pebble service command that runs the line and then `pebble notify <key> run_id=… exit_code=…`
  (even when Pebble stops it with SIGTERM).
- `OneShotService(container, name, *, summary, working_dir, environment=None, kill_delay=None)`:
  the service a workload runs once per run. `start(command, environment=None)` puts it in the
  plan (startup disabled, `on-success`/`on-failure: ignore`: never restarted when it exits) and
  (re)starts it, raising `ArmFailed` with the failed task's line when Pebble cannot (e.g.
  "exited quickly with code 107"); `running()`, `halt()`; `layer(command, environment=None)`.
- Records: `Run` (the active run), `Share` (a participant's part: `bounds()`, `items(total)`),
  `UnitReport` (a unit's databag), `LastRun` with a `UnitLine` per participant, `AppData` (the
  application databag), `Aggregate`.
"""  # noqa: D214, D405, D411, D416 (a bare `return` in the example is code, not a section)

from __future__ import annotations

import abc
import errno
import hashlib
import json
import logging
import math
import os
import re
import selectors
import shlex
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction
from typing import Any

import ops

LIBID = "28c9808dd4d5494197c89ce24d0b8221"
LIBAPI = 0
LIBPATCH = 5

# Relation.load/save (typed databags) arrived in ops 2.18 (this repository pins ops 3.9.0).
PYDEPS = ["ops>=2.18"]

logger = logging.getLogger(__name__)

# Run phases (the application databag's run) and unit statuses (each unit databag).
ARMING, RUNNING, STOPPING = "arming", "running", "stopping"
PHASES = (ARMING, RUNNING, STOPPING)
IDLE = "idle"
PENDING = "pending"  # the workload started for the run but was not yet ready when last seen
BUSY = "busy"  # armed and ready (or already released)

PASSED, FAILED, STOPPED = "passed", "failed", "stopped"
STOPPED_BY_USER = "stopped by user"
STOP_GRACE_SECONDS = 60.0  # how long a stopping run waits for its units' reports
MAX_STEPS = 8  # decisions carried out in one hook, at most
# The records' format: written into each of them; a unit reads any record up to its own format
# (an older one has no `format` and fills what it lacks with defaults) and refuses a newer one
# with a clear status (UnreadableRecord). 1: LIBPATCH <= 3; 2: LIBPATCH 4 (prepare, watch,
# conclude, stops_everyone). Bump it when a reader of the previous format would misread.
FORMAT = 2
PEBBLE = "/charm/bin/pebble"  # the pebble CLI inside a Juju sidecar's workload container
_UNIT_NUMBER = re.compile(r"/(\d+)$")


def unit_order(name: str) -> tuple[str, int]:
    """Sort key for unit names: app/2 before app/10."""
    match = _UNIT_NUMBER.search(name)
    return (name.rsplit("/", 1)[0], int(match.group(1)) if match else -1)


def endpoint_of(address: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def digest(payload: Mapping[str, Any]) -> str:
    """sha256 of the payload's canonical JSON: what every unit checks before arming."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ records (databag models)


@dataclass(frozen=True)
class Run:
    """The active run as the leader froze it at `start`."""

    run_id: str
    phase: str
    participants: tuple[str, ...]
    created: float
    deadline: float  # arm deadline (epoch seconds)
    payload_sha256: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)  # small, the charm's own
    expected_s: float | None = None
    released: Mapping[str, Sequence[float | None]] = field(default_factory=dict)  # [sent, acked]
    start_at: float | None = None  # InstantRelease: the instant every workload starts
    reason: str = ""  # why it is stopping
    stop_deadline: float | None = None
    prepared: Mapping[str, Any] | None = None  # Workload.prepare's info; None: not prepared yet
    watcher: str = ""  # the leader that started Workload.watch for this run
    format: int = FORMAT

    def __post_init__(self):
        if self.phase not in PHASES:
            raise UnreadableRecord(f"unknown phase {self.phase!r}")
        object.__setattr__(self, "participants", tuple(self.participants))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """From the databag's JSON (keys a newer revision added are ignored).

        Raises:
            UnreadableRecord: a newer format, or not a run this library can act on.
        """
        return _build(cls, _readable(cls, data, "the run"), "the run")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["participants"] = list(self.participants)
        data["info"] = dict(self.info)
        data["released"] = {k: list(v) for k, v in self.released.items()}
        data["prepared"] = None if self.prepared is None else dict(self.prepared)
        return data

    def index_of(self, unit: str) -> int:
        """Position of a participant in the frozen order (its share of the task)."""
        return self.participants.index(unit)

    def share_of(self, unit: str) -> Share:
        """A participant's share of the task."""
        return Share(self.index_of(unit), len(self.participants))

    @property
    def started(self) -> float | None:
        """When the load started: the first release acknowledgement, or the start instant."""
        acks = release_acks(self)
        if acks:
            return min(acks)
        return self.start_at


def release_acks(run: Run) -> list[float]:
    """When each participant acknowledged its release (epoch seconds), where it did."""
    return [t[1] for t in run.released.values() if len(t) > 1 and t[1]]


@dataclass(frozen=True)
class Share:
    """Participant `index` of `count`: which part of the task this unit does."""

    index: int
    count: int

    def bounds(self) -> tuple[Fraction, Fraction]:
        """This share as a segment [start, end) of the whole, in exact fractions."""
        return Fraction(self.index, self.count), Fraction(self.index + 1, self.count)

    def items(self, total: int) -> range:
        """Which of `total` numbered items (0..total-1) are this share's: each in exactly one."""
        start, end = self.bounds()
        return range(math.floor(total * start), math.floor(total * end))

    def split(self, total: int) -> int:
        """How many of `total` whole items are this share's."""
        return len(self.items(total))


@dataclass
class UnitReport:
    """One unit's own databag: where it is reached and how its part of the run goes."""

    endpoint: str = ""
    status: str = IDLE
    run_id: str = ""
    exit_code: int | None = None
    error: str = ""
    result: dict[str, Any] | None = None  # the workload's result (bounded by the charm)
    started_at: float | None = None  # InstantRelease: when this unit handed over the instant
    ended_at: float | None = None  # when this unit reported its end
    stop_run: str = ""  # why this unit's end stops every other participant (Workload's call)
    format: int = FORMAT

    def __post_init__(self):
        _check_format(self.format, "a unit's report")
        if self.status not in (IDLE, PENDING, BUSY) or not isinstance(self.run_id, str):
            raise UnreadableRecord(f"a unit's report with status {self.status!r}")

    @property
    def live(self) -> bool:
        """The workload started for `run_id` and has not reported its end (pending or busy)."""
        return self.status in (PENDING, BUSY)

    def armed_for(self, run_id: str) -> bool:
        """Ready (or already released) for this run."""
        return self.status == BUSY and self.run_id == run_id

    def pending_for(self, run_id: str) -> bool:
        """Started for this run, not yet ready when the unit last looked."""
        return self.status == PENDING and self.run_id == run_id

    def finished(self, run_id: str) -> bool:
        """Reported an end (done, failed, stopped) for this run."""
        return self.status == IDLE and self.run_id == run_id


@dataclass(frozen=True)
class UnitLine:
    """One participant in the last-run record: one short line, whatever N."""

    exit_code: int | None = None
    error: str = ""
    lost: bool = False
    released: tuple[float | None, ...] = ()  # [sent, acked] of its release
    late_ms: float | None = None  # InstantRelease: how late it learnt the start instant
    line: Mapping[str, Any] = field(default_factory=dict)  # the aggregate callback's

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; `late_ms` only where a start instant was handed over."""
        data = asdict(self)
        data["released"] = list(self.released)
        if self.late_ms is None:
            del data["late_ms"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UnitLine:
        """From JSON."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["released"] = tuple(values.get("released") or ())
        return cls(**values)


@dataclass(frozen=True)
class LastRun:
    """The record of the last run that ended, kept in the application databag."""

    run_id: str
    outcome: str
    reason: str
    created: float
    started: float | None
    ended: float
    duration_s: float | None
    spread_ms: float | None
    units: Mapping[str, UnitLine]
    aggregate: Mapping[str, Any] = field(default_factory=dict)
    failures: tuple[str, ...] = ()
    headline: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    concluded: Mapping[str, Any] = field(default_factory=dict)  # Workload.conclude's info
    format: int = FORMAT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LastRun:
        """From JSON (keys a newer revision added are ignored).

        Raises:
            UnreadableRecord: a newer format, or not a record.
        """
        values = _readable(cls, data, "the last-run record")
        try:
            units = (data.get("units") or {}).items()
            values["units"] = {u: UnitLine.from_dict(v) for u, v in units}
            values["failures"] = tuple(values.get("failures") or ())
        except (TypeError, AttributeError, ValueError) as e:
            raise UnreadableRecord(f"the last-run record is damaged: {e}") from None
        return _build(cls, values, "the last-run record")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["units"] = {u: line.to_dict() for u, line in self.units.items()}
        data["failures"] = list(self.failures)
        return data


@dataclass(frozen=True)
class Aggregate:
    """The leader's merge of the participants' results (the charm's `aggregate` callback)."""

    data: Mapping[str, Any] = field(default_factory=dict)  # compact: O(1) in the units
    failures: Sequence[str] = ()  # each fails the run, e.g. a global threshold
    lines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # unit -> short line
    headline: str = ""  # one line for the application status


class UnreadableRecord(ValueError):
    """A databag record this library cannot act on (a newer format, or damaged); str() says why."""


def _check_format(version: object, what: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnreadableRecord(f"{what} has no readable format ({version!r})")
    if version > FORMAT:
        raise UnreadableRecord(
            f"{what} has format {version}, newer than this revision's {FORMAT} (LIBPATCH "
            f"{LIBPATCH}): refresh this unit to the charm revision that wrote it"
        )


def _build(cls: type, values: Mapping[str, Any], what: str) -> Any:
    """The record from its fields; a field missing or of the wrong shape makes it unreadable."""
    try:
        return cls(**values)
    except (TypeError, AttributeError, ValueError) as e:
        raise UnreadableRecord(f"{what} is damaged: {e}") from None


def _readable(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The known fields of a record read from JSON, once its format is one this library reads."""
    if not isinstance(data, Mapping):
        raise UnreadableRecord(f"{what} is not a JSON object")
    _check_format(data.get("format", 1), what)
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known}


@dataclass
class AppData:
    """The leader-written application databag."""

    run: Run | None = None
    payload: dict[str, Any] | None = None  # the task's input; its digest is in the run
    last_run: LastRun | None = None

    def __post_init__(self):
        if isinstance(self.run, Mapping):
            self.run = Run.from_dict(self.run)
        if isinstance(self.last_run, Mapping):
            self.last_run = LastRun.from_dict(self.last_run)


def _encode(value: Any) -> str:
    """One databag value as compact JSON (records through their own to_dict)."""
    if isinstance(value, Run | LastRun):
        value = value.to_dict()
    return json.dumps(value, separators=(",", ":"))


def app_databag(data: AppData) -> dict[str, str]:
    """The application databag's keys and values for `data` (one JSON value per field).

    Not `Relation.save`: it turns nested records into dicts before an encoder sees them, and the
    records have their own, more compact, JSON form.
    """
    return {f.name: _encode(getattr(data, f.name)) for f in fields(AppData)}


# ------------------------------------------------------------------ the workload side


class TaskRefused(Exception):
    """`start` or `stop` cannot be done now; the message tells the user what to do."""


class ArmFailed(Exception):
    """The workload could not be started (e.g. Pebble's "exited quickly"); str() says why."""


class Workload(abc.ABC):
    """What the charm does for the library on its own unit (and, as leader, towards others).

    A workload whose process is a `OneShotService` sets `service`, and `running` and `halt` are
    the service's; any other workload defines both.
    """

    service: OneShotService

    @abc.abstractmethod
    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        """Start this unit's share, waiting to be released; True once ready.

        `address` is this unit's own address (its pod IP): where an API must listen.

        Raises:
            ArmFailed: the workload did not start.
        """

    def ready(self, run: Run, address: str) -> bool:
        """Whether the workload started by `arm` is ready by now."""
        return True

    def running(self) -> bool:
        """The local workload process is alive."""
        return self.service.running()

    def halt(self) -> None:
        """Stop the local workload (Pebble's SIGTERM, then SIGKILL)."""
        self.service.halt()

    def result(self, run: Run) -> dict[str, Any] | None:
        """This unit's result once its workload ended (kept in its databag: keep it small)."""
        return None

    # ApiRelease
    def release_request(self, endpoint: str) -> bytes:
        """The bytes that release the workload listening at `endpoint` (an HTTP request)."""
        raise NotImplementedError("ApiRelease needs Workload.release_request")

    def probe(self, endpoints: Mapping[str, str]) -> frozenset[str]:
        """Leader: which of these units' workloads are ready (asked through their API)."""
        return frozenset()

    def stop_remote(self, endpoints: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Leader: ask these units' workloads to stop through their API (best effort)."""

    # InstantRelease
    def release_at(self, run: Run, instant: float) -> None:
        """Tell the armed local workload to start at `instant` (epoch seconds)."""
        raise NotImplementedError("InstantRelease needs Workload.release_at")

    # Once for the whole run, on the leader (each optional)
    def prepare(self, run: Run, endpoints: Mapping[str, str], address: str) -> Prepared:
        """Leader, once every participant is armed, before the release (e.g. a setup step).

        `endpoints` maps each participant to its published endpoint; `address` is this unit's
        own address (where its own workload listens). A hook can fail after
        this ran and Juju retries it: prepare must then give the same answer without doing
        its work twice. Its info is kept in the run (`Run.prepared`): keep it small.
        """
        return Prepared()

    def watch(self, run: Run, endpoints: Mapping[str, str]) -> None:  # noqa: B027
        """Leader, once the run runs (and on a new leader): start watching the whole run."""

    def conclude(
        self,
        run: Run,
        payload: Mapping[str, Any],
        reports: Mapping[str, UnitReport],
        address: str,
    ) -> Concluded:
        """Leader, once every participant ended (or is lost), if `prepare` ran: e.g. teardown.

        Also after a stop or an abort. Like `prepare`, it must not do its work twice when a
        hook is retried.
        """
        return Concluded()

    def stops_everyone(self, exit_code: int | None) -> str:
        """Why this unit's end (its exit code) must stop every other participant; "" if not."""
        return ""


@dataclass(frozen=True)
class Prepared:
    """What `Workload.prepare` did: info kept in the run, or why the run cannot be released."""

    info: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""  # the run aborts before the release with this reason


@dataclass(frozen=True)
class Concluded:
    """What `Workload.conclude` did: info for the last-run record, and failures of the run."""

    info: Mapping[str, Any] = field(default_factory=dict)
    failures: Sequence[str] = ()


# ------------------------------------------------------------------ release mechanisms


@dataclass(frozen=True)
class ApiRelease:
    """Release through each unit's own API: the leader's parallel fan-out to every pod."""

    port: int
    timeout: float = 3.0
    connect_retries: int = 2


@dataclass(frozen=True)
class InstantRelease:
    """Release at an instant `lead` seconds after the last unit armed (no API needed)."""

    lead: float = 2.0


# ------------------------------------------------------------------ the one-shot service


def done_notice_command(shell_line: str, notice_key: str, run_id: str) -> str:
    """A Pebble service command: run `shell_line`, then notify `notice_key` with its exit code.

    The line runs under `/bin/sh -c`. It must end when Pebble's SIGTERM reaches the process
    group: one command (whose exit code is then reported as is), or several wrapped in
    a child `sh -c '…'` (the trap below would otherwise let a loop carry on after the TERM).
    TERM is trapped by a handler (not ignored, which children
    would inherit) while it runs, so that a Pebble stop still sends the notice; then ignored,
    so that a stop racing the notice cannot kill `pebble notify`. The shell exits with the
    line's code, so Pebble's "exited quickly with code N" carries it too.
    """
    notify = shlex.join([PEBBLE, "notify", notice_key, f"run_id={run_id}"])
    line = (
        f"trap 'true' TERM; {shell_line}; code=$?; trap '' TERM; "
        f"{notify} exit_code=$code; exit $code"
    )
    return shlex.join(["/bin/sh", "-c", line])


class OneShotService:
    """A Pebble service that runs once per run: the usual process behind a `Workload`.

    `start(command)` puts the service in the plan and (re)starts it: startup disabled, and
    `on-success`/`on-failure: ignore`, so Pebble neither starts it at boot nor restarts it when
    it ends. A start Pebble reports as failed (e.g. "exited quickly with code 107") raises
    `ArmFailed` whose text is the failed task's line. `running()` and `halt()` are what a
    `Workload`'s own methods of those names usually return and do.
    """

    def __init__(
        self,
        container: ops.Container,
        name: str,
        *,
        summary: str,
        working_dir: str,
        environment: Mapping[str, str] | None = None,
        kill_delay: float | None = None,
    ):
        self.container = container
        self.name = name
        self.summary = summary
        self.working_dir = working_dir
        self.environment = dict(environment or {})  # every start's; `start` adds its own
        self.kill_delay = kill_delay  # seconds from SIGTERM to SIGKILL (Pebble's default: 5)

    def layer(
        self, command: str, environment: Mapping[str, str] | None = None
    ) -> ops.pebble.LayerDict:
        """The layer that runs `command` once, with `environment` over the service's own."""
        service: ops.pebble.ServiceDict = {
            "override": "replace",
            "summary": self.summary,
            "command": command,
            "startup": "disabled",
            "working-dir": self.working_dir,
            "on-success": "ignore",
            "on-failure": "ignore",
        }
        if self.kill_delay is not None:
            service["kill-delay"] = f"{self.kill_delay:g}s"
        if merged := {**self.environment, **(environment or {})}:
            service["environment"] = merged
        return {"summary": self.summary, "services": {self.name: service}}

    def start(self, command: str, environment: Mapping[str, str] | None = None) -> None:
        """Run `command` as the service from now on, and (re)start it.

        Raises:
            ArmFailed: Pebble could not start it; the text is the failed task's line.
        """
        self.container.add_layer(self.name, self.layer(command, environment), combine=True)
        try:
            self.container.restart(self.name)
        except ops.pebble.ChangeError as e:
            why = _failed_task(e.err or str(e))
            raise ArmFailed(why or f"service {self.name!r} did not start") from None

    def running(self) -> bool:
        """The service's process is alive."""
        return self.container.get_service(self.name).is_running()

    def halt(self) -> None:
        """Pebble's stop: SIGTERM to the process group, SIGKILL after the kill delay."""
        self.container.stop(self.name)


def _failed_task(err: str) -> str:
    """The failed task's line of a Pebble change error ("Start service ... (why)"), or ""."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return lines[-1].removeprefix("- ") if lines else ""


# ------------------------------------------------------------------ the charm side


class SynchronizedTask(ops.Object):
    """The pattern on a charm: observes the events, carries out `decide`, keeps the statuses."""

    def __init__(
        self,
        charm: ops.CharmBase,
        relation_name: str,
        workload: Workload,
        *,
        container: str,
        notice_key: str,
        release: ApiRelease | InstantRelease,
        aggregate: Callable[[Run, Mapping[str, UnitReport], float], Aggregate] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name
        self.workload = workload
        self.container = charm.unit.get_container(container)
        self.notice_key = notice_key
        self.release = release
        self.aggregate = aggregate
        self.clock = clock
        self.unreadable = ""  # why a record in the peer relation cannot be read (this hook)
        on = charm.on
        for event in (
            on[relation_name].relation_changed,
            on[relation_name].relation_joined,
            on[relation_name].relation_departed,
            on.leader_elected,
            on.config_changed,
            on[container].pebble_ready,
        ):
            self.framework.observe(event, self._on_event)
        self.framework.observe(on.update_status, self._on_update_status)
        self.framework.observe(on[container].pebble_custom_notice, self._on_notice)
        self.framework.observe(on.stop, self._on_unit_stop)
        self.framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        self.framework.observe(on.collect_app_status, self._on_collect_app_status)

    # ------------------------------------------------------------ state

    @property
    def relation(self) -> ops.Relation | None:
        """The peer relation (None before it exists)."""
        return self.charm.model.get_relation(self.relation_name)

    def _app_data(self) -> AppData:
        """The app databag; empty (and `unreadable` says why) when it cannot be read."""
        relation = self.relation
        if relation is None:
            return AppData()
        try:
            return relation.load(AppData, self.charm.app)
        except (UnreadableRecord, ValueError, TypeError) as e:  # a newer format, or damaged
            self.unreadable = f"the application databag: {e}"
            return AppData()

    def _save_app(self, data: AppData) -> None:
        relation = self.relation
        assert relation is not None
        relation.data[self.charm.app].update(app_databag(data))

    def _save_run(self, run: Run) -> None:
        """Write the active run alone (the payload and the last run stay as they are)."""
        relation = self.relation
        assert relation is not None
        relation.data[self.charm.app]["run"] = _encode(run)

    def _save_unit(self, report: UnitReport) -> None:
        relation = self.relation
        assert relation is not None
        relation.save(report, self.charm.unit)

    def _own_report(self) -> UnitReport:
        """This unit's report (without decoding every peer's); a fresh one if unreadable."""
        relation = self.relation
        return self._report(relation, self.charm.unit, "") if relation else UnitReport()

    def _report(self, relation: ops.Relation, unit: ops.Unit, run_id: str) -> UnitReport:
        """A unit's report; one it cannot read counts as that unit's failure in `run_id`."""
        try:
            return relation.load(UnitReport, unit)
        except (UnreadableRecord, ValueError, TypeError) as e:
            logger.warning("the report of %s is unreadable: %s", unit.name, e)
            return UnitReport(status=IDLE, run_id=run_id, error=f"unreadable report: {e}")

    @property
    def run(self) -> Run | None:
        """The active run, if any."""
        return self._app_data().run

    @property
    def last_run(self) -> LastRun | None:
        """The record of the last run that ended."""
        return self._app_data().last_run

    def reports(self, run_id: str = "") -> dict[str, UnitReport]:
        """Every present unit's report, this one's included (`run_id`: the active run's)."""
        relation = self.relation
        reports = {self.charm.unit.name: self._own_report()}
        if relation is not None:
            reports.update({u.name: self._report(relation, u, run_id) for u in relation.units})
        return reports

    def bind_address(self) -> str:
        """This unit's own address (its pod IP on Kubernetes): the peer binding's bind address."""
        binding = self.charm.model.get_binding(self.relation_name)
        assert binding is not None
        return str(binding.network.bind_address)

    def published_endpoint(self) -> str:
        """host:port at which the leader reaches this unit's workload (ApiRelease), or ""."""
        if not isinstance(self.release, ApiRelease):
            return ""
        return endpoint_of(self.bind_address(), self.release.port)

    # ------------------------------------------------------------ what the charm calls

    def start(
        self,
        payload: Mapping[str, Any],
        *,
        info: Mapping[str, Any] | None = None,
        arm_timeout: float = 120.0,
        expected_s: float | None = None,
    ) -> Run:
        """Freeze a run over every unit present now and arm this unit in the same hook.

        Raises:
            TaskRefused: not the leader, no peer relation yet, or a run already active.
        """
        if not self.charm.unit.is_leader():
            raise TaskRefused(
                f"only the leader starts a run: juju run {self.charm.app.name}/leader …"
            )
        relation = self.relation
        if relation is None:
            raise TaskRefused("the peer relation is not ready yet; retry in a moment")
        data = self._app_data()
        if self.unreadable:
            raise TaskRefused(f"cannot read {self.unreadable}")
        if data.run is not None:
            raise TaskRefused(f"run {data.run.run_id} is already active ({data.run.phase})")
        now = self.clock()
        names = [self.charm.unit.name, *(u.name for u in relation.units)]
        run = Run(
            run_id=uuid.uuid4().hex[:12],
            phase=ARMING,
            participants=tuple(sorted(names, key=unit_order)),
            created=now,
            deadline=now + arm_timeout,
            payload_sha256=digest(payload),
            info=dict(info or {}),
            expected_s=expected_s,
        )
        self._save_app(AppData(run=run, payload=dict(payload), last_run=data.last_run))
        self.reconcile()
        return run

    def stop(self) -> Run | None:
        """Stop the active run on every unit (leader only); the run it stopped, if any."""
        if not self.charm.unit.is_leader():
            raise TaskRefused(
                f"only the leader stops a run: juju run {self.charm.app.name}/leader …"
            )
        run = self.run
        if run is None:
            return None
        self.reconcile(stop_requested=True)
        return run

    def abort(self, reason: str) -> Run | None:
        """End the active run early on every unit, failed with `reason` (leader only)."""
        if not self.charm.unit.is_leader():
            raise TaskRefused(
                f"only the leader aborts a run: juju run {self.charm.app.name}/leader …"
            )
        run = self.run
        if run is None:
            return None
        self.reconcile(abort_requested=reason)
        return run

    # ------------------------------------------------------------ the loop

    def _on_event(self, _: ops.EventBase) -> None:
        self.reconcile()

    def _on_update_status(self, _: ops.EventBase) -> None:
        """The periodic look: also catches a workload left running with no run for it."""
        self.reconcile(check_workload=True)

    def _on_notice(self, event: ops.PebbleCustomNoticeEvent) -> None:
        """The local workload ended: its done-notice carries the run id and exit code."""
        if event.notice.key != self.notice_key:
            return
        self.reconcile(notice=dict(event.notice.last_data))

    def _on_unit_stop(self, _: ops.EventBase) -> None:
        """The unit is going away: leave no workload behind."""
        if self.container.can_connect() and self._running():
            self.workload.halt()

    def reconcile(
        self,
        check_workload: bool = False,
        notice: Mapping[str, str] | None = None,
        stop_requested: bool = False,
        abort_requested: str = "",
    ) -> None:
        """Carry out `decide`'s decisions until there is nothing left to do in this hook."""
        if self.relation is None:
            return
        hook = HookResults(
            notice=notice, stop_requested=stop_requested, abort_requested=abort_requested
        )
        for _ in range(MAX_STEPS):
            observed = self._observe(check_workload, hook)
            actions = decide(observed)
            if not actions:
                return
            for action in actions:
                hook.done.append(action)
                self._carry_out(action, observed, hook)
        logger.warning(
            "stopped after %d steps in one hook (MAX_STEPS); the last decisions: %s; "
            "any left are taken in the next hook",
            MAX_STEPS,
            ", ".join(type(action).__name__ for action in hook.done[-3:]),
        )

    def _observe(self, check_workload: bool, hook: HookResults) -> Observed:
        """Snapshot of everything the state machine decides on, this hook's results included."""
        data = self._app_data()
        units = self.reports(data.run.run_id if data.run else "")
        mine = units[self.charm.unit.name]
        running = self._running() if (check_workload or mine.live) else False
        payload_ok = data.run is None or (
            data.payload is not None and digest(data.payload) == data.run.payload_sha256
        )
        instant = isinstance(self.release, InstantRelease)
        return Observed(
            me=self.charm.unit.name,
            is_leader=self.charm.unit.is_leader(),
            run=data.run,
            units=units,
            running=running,
            now=self.clock(),
            instant_release=instant,
            lead_s=self.release.lead if isinstance(self.release, InstantRelease) else 0.0,
            payload_ok=payload_ok,
            notice=hook.notice,
            stop_requested=hook.stop_requested,
            abort_requested=hook.abort_requested,
            probed_ready=hook.probed,
            released=hook.released,
            prepare_error=hook.prepare_error,
            concluded=hook.concluded,
            unreadable=self.unreadable,
            done=tuple(hook.done),
        )

    def _running(self) -> bool:
        try:
            return self.workload.running()
        except (ops.ModelError, ops.pebble.ConnectionError):
            return False

    def _carry_out(self, action: Action, observed: Observed, hook: HookResults) -> None:
        """Dispatch one decision to its handler."""
        handlers: dict[type, Callable[[Any, Observed, HookResults], None]] = {
            Arm: self._arm,
            Refuse: self._refuse,
            Recheck: self._recheck,
            Collect: self._collect,
            Halt: self._halt,
            StartAt: self._start_at,
            Probe: self._probe,
            Release: self._release,
            Schedule: self._schedule,
            Started: self._started,
            Prepare: self._prepare,
            Watch: self._watch,
            Abort: self._abort,
            Conclude: self._conclude,
            Finish: self._finish,
        }
        handlers[type(action)](action, observed, hook)

    # ------------------------------------------------------------ participant side

    def _arm(self, action: Arm, _: Observed, __: HookResults) -> None:
        """Start this unit's share; report busy once ready, pending while it initializes."""
        run = action.run
        report = UnitReport(endpoint=self.published_endpoint(), status=IDLE, run_id=run.run_id)
        payload = self._app_data().payload or {}
        share = run.share_of(self.charm.unit.name)
        try:
            ready = self.workload.arm(run, payload, share, self.bind_address())
        except ArmFailed as e:
            logger.warning("the workload did not start for run %s: %s", run.run_id, e)
            self._save_unit(self._ended(report, self._done_notice(run.run_id), str(e), run))
            return
        except (ops.pebble.ConnectionError, ops.pebble.APIError, ops.pebble.PathError) as e:
            report.error = f"workload container unreachable: {e}"
            self._save_unit(report)
            return
        report.status = BUSY if ready else PENDING
        self._save_unit(report)

    def _refuse(self, action: Refuse, _: Observed, __: HookResults) -> None:
        """Report the run failed here without starting anything."""
        self._save_unit(
            UnitReport(
                endpoint=self.published_endpoint(),
                status=IDLE,
                run_id=action.run_id,
                error=action.error,
            )
        )

    def _recheck(self, action: Recheck, observed: Observed, _: HookResults) -> None:
        """Look again at a workload that was still initializing."""
        mine = observed.units[self.charm.unit.name]
        run = observed.run
        assert run is not None
        if self.workload.ready(run, self.bind_address()):
            self._save_unit(replace(mine, status=BUSY))

    def _start_at(self, action: StartAt, observed: Observed, hook: HookResults) -> None:
        """Hand the start instant to the armed local workload; note when that happened."""
        run = observed.run
        assert run is not None
        now = self.clock()
        try:
            self.workload.release_at(run, action.instant)
        except (ops.pebble.ConnectionError, ops.pebble.APIError, ops.pebble.PathError) as e:
            logger.warning("could not hand the start instant over: %s", e)
            self._collect(Collect(action.run_id, stop=True), observed, hook)
            return
        mine = observed.units[self.charm.unit.name]
        self._save_unit(replace(mine, started_at=now))

    def _halt(self, _: Halt | Collect, __: Observed, ___: HookResults) -> None:
        """Stop the local workload; a failure to is logged (the next hook sees it running)."""
        try:
            self.workload.halt()
        except (ops.pebble.ChangeError, ops.pebble.ConnectionError, ops.pebble.APIError) as e:
            logger.warning("stopping the workload failed: %s", e)

    def _collect(self, action: Collect, observed: Observed, hook: HookResults) -> None:
        """The local workload has ended (or is stopped now): record how, and go idle."""
        if action.stop:
            self._halt(action, observed, hook)
        mine = observed.units.get(self.charm.unit.name, UnitReport())
        notice = action.notice or self._done_notice(action.run_id)
        self._save_unit(self._ended(mine, notice, action.error, observed.run))

    def _ended(
        self, base: UnitReport, notice: Mapping[str, str] | None, error: str, run: Run | None
    ) -> UnitReport:
        """Idle, with the exit code (and the result, when `run` is this report's) of its end."""
        exit_code = None
        result = None
        stop_run = ""
        if notice is not None:
            try:
                exit_code = int(notice.get("exit_code", ""))
            except ValueError:
                error = error or f"unreadable exit code {notice.get('exit_code')!r}"
            if run is not None and run.run_id == base.run_id:
                result = self._result(run)
                stop_run = self.workload.stops_everyone(exit_code)
        elif not error:
            error = "the workload ended without a done notice"
        return UnitReport(
            endpoint=base.endpoint,
            status=IDLE,
            run_id=base.run_id,
            exit_code=exit_code,
            error=error,
            result=result,
            started_at=base.started_at,
            ended_at=self.clock(),
            stop_run=stop_run,
        )

    def _result(self, run: Run) -> dict[str, Any] | None:
        try:
            return self.workload.result(run)
        except (ops.pebble.ConnectionError, ops.pebble.APIError, ops.pebble.PathError) as e:
            logger.info("no result from the workload: %s", e)
            return None

    def _done_notice(self, run_id: str) -> dict[str, str] | None:
        """The data of the done-notice for this run, if Pebble has one."""
        try:
            notices = self.container.get_notices(keys=[self.notice_key])
        except (ops.pebble.ConnectionError, ops.pebble.APIError):
            return None
        for notice in notices:
            if notice.last_data.get("run_id") == run_id:
                return dict(notice.last_data)
        return None

    # ------------------------------------------------------------ leader side

    def _probe(self, action: Probe, _: Observed, hook: HookResults) -> None:
        """Which still-initializing participants are ready by now."""
        hook.probed = frozenset(self.workload.probe(action.endpoints))

    def _release(self, action: Release, _: Observed, hook: HookResults) -> None:
        """Release every participant at once through its API; the outcome decides next."""
        assert isinstance(self.release, ApiRelease)
        unusable = {p: e for p, e in action.endpoints.items() if not _usable(e)}
        if unusable:  # all or nobody: nothing is sent; the state machine aborts naming them
            hook.released = {
                p: Outcome(error=f"no usable endpoint published ({unusable[p]!r})")
                if p in unusable
                else Outcome(skipped=True)
                for p in action.endpoints
            }
            return
        order = list(action.endpoints)
        requests = [(e, self.workload.release_request(e)) for e in action.endpoints.values()]
        deliveries = fan_out(requests, self.release.timeout, self.release.connect_retries)
        hook.released = {p: d.outcome() for p, d in zip(order, deliveries, strict=True)}

    def _schedule(self, action: Schedule, observed: Observed, _: HookResults) -> None:
        """Every participant starts at the instant: the run is running from now on."""
        run = observed.run
        assert run is not None
        self._save_run(replace(run, phase=RUNNING, start_at=action.instant))
        logger.info("run %s starts at %.3f", run.run_id, action.instant)

    def _started(self, action: Started, observed: Observed, hook: HookResults) -> None:
        """The release reached everyone: record when, and the run is running."""
        run = observed.run
        assert run is not None
        self._save_run(replace(run, phase=RUNNING, released=dict(action.released)))
        hook.released = None
        logger.info("run %s released on %d units", run.run_id, len(run.participants))

    def _prepare(self, action: Prepare, observed: Observed, hook: HookResults) -> None:
        """Every participant is armed: the workload's once-per-run step before the release."""
        run = observed.run
        assert run is not None
        try:
            prepared = self.workload.prepare(run, action.endpoints, self.bind_address())
        except (ops.pebble.ConnectionError, ops.pebble.APIError, ops.pebble.PathError) as e:
            prepared = Prepared(error=f"the workload container is unreachable: {e}")
        if prepared.error:
            hook.prepare_error = prepared.error
            return
        self._save_run(replace(run, prepared=dict(prepared.info)))

    def _watch(self, action: Watch, observed: Observed, _: HookResults) -> None:
        """The run runs: this leader starts the workload's watch of the whole run."""
        run = observed.run
        assert run is not None
        try:
            self.workload.watch(run, action.endpoints)
        except (ops.pebble.ConnectionError, ops.pebble.APIError, ops.pebble.ChangeError) as e:
            logger.warning("run %s: the watch did not start: %s", run.run_id, e)
        self._save_run(replace(run, watcher=self.charm.unit.name))

    def _conclude(self, action: Conclude, observed: Observed, hook: HookResults) -> None:
        """Every participant ended: the workload's once-per-run step after the last end."""
        run = observed.run
        assert run is not None
        payload = self._app_data().payload or {}
        reports = {p: r for p, r in observed.units.items() if p in run.participants}
        try:
            hook.concluded = self.workload.conclude(run, payload, reports, self.bind_address())
        except (ops.pebble.ConnectionError, ops.pebble.APIError, ops.pebble.PathError) as e:
            hook.concluded = Concluded(failures=(f"could not conclude the run: {e}",))

    def _abort(self, action: Abort, observed: Observed, hook: HookResults) -> None:
        """Phase stopping: ask every armed participant to stop; units stop on the change."""
        run = observed.run
        assert run is not None
        if action.released is not None:
            run = replace(run, released=dict(action.released))
        self._save_run(stopping(run, action.reason, observed.now))
        hook.released = None
        endpoints = [
            observed.units[p].endpoint
            for p in run.participants
            if p in observed.units
            and observed.units[p].run_id == run.run_id
            and observed.units[p].live
            and observed.units[p].endpoint
        ]
        if endpoints:
            self.workload.stop_remote(endpoints)
        logger.warning("run %s stopping: %s", run.run_id, action.reason)

    def _finish(self, action: Finish, observed: Observed, _: HookResults) -> None:
        """Aggregate the participants' reports into the last run and clear the active run."""
        run = observed.run
        assert run is not None
        reports = {
            p: observed.units[p]
            for p in run.participants
            if p in observed.units and observed.units[p].run_id == run.run_id
        }
        aggregate = self.aggregate(run, reports, observed.now) if self.aggregate else None
        record = last_run_record(
            run, observed.units, action.lost, observed.now, aggregate, observed.concluded
        )
        self._save_app(AppData(run=None, payload=None, last_run=record))
        logger.info("run %s ended %s %s", run.run_id, record.outcome, record.reason)

    # ------------------------------------------------------------ status

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        """This unit's part in the run."""
        if self.relation is None:
            event.add_status(ops.WaitingStatus("waiting for the peer relation"))
            return
        run = self.run
        if self.unreadable:
            event.add_status(ops.BlockedStatus(f"cannot read {self.unreadable}"[:120]))
            return
        event.add_status(unit_status(run, self._own_report(), self.charm.unit.name))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        """The run's phase and progress, or the last outcome (leader)."""
        if self.relation is None:
            return
        data = self._app_data()
        event.add_status(app_status(data.run, data.last_run, self.reports(), self.clock()))


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Arm:
    """Start this unit's share of the run and report when it is ready."""

    run: Run


@dataclass(frozen=True)
class Refuse:
    """Do not arm: the run's input cannot be used here (reported as this unit's failure)."""

    run_id: str
    error: str


@dataclass(frozen=True)
class Recheck:
    """The workload started but was not ready: look again."""

    run_id: str


@dataclass(frozen=True)
class Collect:
    """The local workload has ended (or must end now): record how, and go idle."""

    run_id: str
    stop: bool
    notice: Mapping[str, str] | None = None
    error: str = ""  # why, when it is not the workload's own end


@dataclass(frozen=True)
class Halt:
    """A workload runs with nothing to report (this unit is idle): stop it, keep the report."""


@dataclass(frozen=True)
class StartAt:
    """InstantRelease: hand the start instant to the local armed workload."""

    run_id: str
    instant: float


@dataclass(frozen=True)
class Probe:
    """Leader: ask participants still initializing whether they are ready by now."""

    endpoints: Mapping[str, str]


@dataclass(frozen=True)
class Release:
    """Leader, ApiRelease: release every participant at once."""

    endpoints: Mapping[str, str]


@dataclass(frozen=True)
class Schedule:
    """Leader, InstantRelease: every participant starts at `instant`."""

    instant: float


@dataclass(frozen=True)
class Started:
    """Leader: the release reached everyone: the run is running."""

    released: Mapping[str, Sequence[float | None]]


@dataclass(frozen=True)
class Prepare:
    """Leader: every participant is armed; the workload's step before the release."""

    endpoints: Mapping[str, str]


@dataclass(frozen=True)
class Watch:
    """Leader: the run runs; start the workload's watch of the whole run."""

    endpoints: Mapping[str, str]


@dataclass(frozen=True)
class Conclude:
    """Leader: every participant ended (or is lost); the workload's step after the end."""


@dataclass(frozen=True)
class Abort:
    """Leader: end the run early; every unit stops; the run ends with the reason."""

    reason: str
    released: Mapping[str, Sequence[float | None]] | None = None


@dataclass(frozen=True)
class Finish:
    """Leader: every participant has reported: record the outcome and clear the run."""

    lost: tuple[str, ...] = ()


Action = (
    Arm | Refuse | Recheck | Collect | Halt | StartAt | Probe | Release | Schedule | Started
) | (Prepare | Watch | Abort | Conclude | Finish)


@dataclass(frozen=True)
class Outcome:
    """How one participant's release went (ApiRelease)."""

    sent: float | None = None
    acked: float | None = None
    error: str | None = None
    skipped: bool = False  # not sent: another participant could not be reached


@dataclass(frozen=True)
class Observed:
    """Everything a decision needs; nothing from ops."""

    me: str
    is_leader: bool
    run: Run | None
    units: Mapping[str, UnitReport]  # every unit in the relation, me included
    running: bool  # the local workload is alive
    now: float
    instant_release: bool = False
    lead_s: float = 2.0
    payload_ok: bool = True  # the payload in the databag matches the run's digest
    notice: Mapping[str, str] | None = None  # the done-notice this hook was woken by
    stop_requested: bool = False  # the user's stop runs in this hook
    abort_requested: str = ""  # the charm aborts the run in this hook, for this reason
    probed_ready: frozenset[str] | None = None  # None: no probe in this hook yet
    released: Mapping[str, Outcome] | None = None  # a release carried out in this hook
    prepare_error: str = ""  # the workload's prepare refused the release in this hook
    concluded: Concluded | None = None  # the workload's conclusion, reached in this hook
    unreadable: str = ""  # the app databag cannot be read here (a newer format): why
    done: tuple[Action, ...] = ()  # the decisions already carried out in this hook


@dataclass
class HookResults:
    """One hook's own results, created by each reconcile and passed to every handler.

    Each observation copies them into `Observed`: the hook's wake-up (a done-notice, the user's
    stop), the decisions carried out so far, and what the leader's probe and release found.
    """

    notice: Mapping[str, str] | None = None
    stop_requested: bool = False
    abort_requested: str = ""
    done: list[Action] = field(default_factory=list)
    probed: frozenset[str] | None = None  # participants the probe found ready; None: no probe
    released: Mapping[str, Outcome] | None = None  # each participant's release, once released
    prepare_error: str = ""
    concluded: Concluded | None = None


def decide(o: Observed) -> list[Action]:
    """The next things to do: this unit's own first, then the leader's; none done in this hook.

    Each level is filtered on its own: a unit decision already carried out in this hook (say
    a Recheck that found the workload still initializing) must not hide the leader's.
    """
    mine = [a for a in decide_unit(o) if a not in o.done]
    return mine or [a for a in decide_leader(o) if a not in o.done]


def decide_unit(o: Observed) -> list[Action]:
    """What this unit does for itself, as a participant (or a bystander)."""
    mine = o.units.get(o.me, UnitReport())
    run = o.run
    if o.unreadable:  # a newer revision's run: this unit cannot take part; it ends its share
        if mine.live:
            return [Collect(mine.run_id, stop=o.running, error=f"cannot read {o.unreadable}")]
        return [Halt()] if o.running else []
    if run is None or o.me not in run.participants:
        # No run for me: nothing may keep running, nobody may stay busy. An idle unit keeps its
        # report (e.g. its workload's wrapper still exiting after the done notice was handled).
        if mine.live:
            return [Collect(mine.run_id, stop=o.running)]
        return [Halt()] if o.running else []
    if run.phase == ARMING and mine.run_id != run.run_id:
        if not o.payload_ok:
            return [Refuse(run.run_id, "the payload in the app databag does not match its digest")]
        return [Arm(run)]
    if mine.run_id != run.run_id or not mine.live:
        return []
    if o.notice is not None and o.notice.get("run_id") == run.run_id:
        return [Collect(run.run_id, stop=False, notice=o.notice)]
    if run.phase == STOPPING and o.running:
        return [Collect(run.run_id, stop=True)]
    if not o.running:
        return [Collect(run.run_id, stop=False)]
    if mine.status == PENDING and run.phase == ARMING:
        return [Recheck(run.run_id)]  # once running, the leader's probe found it ready
    if run.phase == RUNNING and run.start_at is not None and mine.started_at is None:
        return [StartAt(run.run_id, run.start_at)]
    return []


def decide_leader(o: Observed) -> list[Action]:
    """What the leader does for the run as a whole."""
    run = o.run
    if not o.is_leader or run is None or o.unreadable:  # never write over what it cannot read
        return []
    if o.stop_requested and run.phase != STOPPING:
        return [Abort(STOPPED_BY_USER)]
    if o.abort_requested and run.phase != STOPPING:
        return [Abort(o.abort_requested)]
    present = [p for p in run.participants if p in o.units]
    departed = [p for p in run.participants if p not in o.units]
    if run.phase == ARMING:
        return _decide_arming(o, run, present, departed)
    finished = [p for p in present if o.units[p].finished(run.run_id)]
    if run.phase == RUNNING:
        stoppers = [p for p in finished if o.units[p].stop_run]
        if stoppers:
            return [Abort("; ".join(_stop_text(p, o.units[p], run) for p in stoppers))]
        if run.watcher != o.me:
            return [Watch({p: o.units[p].endpoint for p in present})]
    # Reporting on another run: when stopping, a unit that never armed (nothing to wait for);
    # when running (every participant was armed at the release), not the unit that armed: lost.
    absent = [p for p in present if o.units[p].run_id != run.run_id]
    if run.phase == RUNNING:
        departed = departed + absent
    waiting = [p for p in present if p not in finished and p not in absent]
    if not waiting:
        lost = tuple(departed)
    elif run.stop_deadline is not None and o.now > run.stop_deadline:
        lost = tuple(departed) + tuple(waiting)
    else:
        return []
    if run.prepared is not None and o.concluded is None:
        return [Conclude()]
    return [Finish(lost=lost)]


def _stop_text(unit: str, report: UnitReport, run: Run) -> str:
    """`app/2 <its reason>, 3.2 s after the start`: why and when a unit stopped everyone."""
    started = run.started
    when = ""
    if started is not None and report.ended_at is not None:
        when = f", {max(0.0, report.ended_at - started):.1f} s after the start"
    return f"{unit} {report.stop_run}{when}"


def _decide_arming(o: Observed, run: Run, present: list[str], departed: list[str]) -> list[Action]:
    """Leader decisions while the participants arm."""
    if o.released is not None:
        return [_after_release(o.released)]
    if departed:
        return [Abort(f"{', '.join(departed)} departed before the start")]
    failed = [p for p in present if o.units[p].finished(run.run_id)]
    if failed:
        details = "; ".join(failure_text(p, o.units[p]) for p in failed)
        return [Abort(f"failed before the start: {details}")]
    ready = o.probed_ready or frozenset()
    armed = {
        p
        for p in run.participants
        if o.units[p].armed_for(run.run_id) or (o.units[p].pending_for(run.run_id) and p in ready)
    }
    if armed == set(run.participants):
        endpoints = {p: o.units[p].endpoint for p in run.participants}
        if o.prepare_error:
            return [Abort(o.prepare_error)]
        if run.prepared is None:
            return [Prepare(endpoints)]
        if o.instant_release:
            return [Schedule(o.now + o.lead_s)]
        return [Release(endpoints)]
    pending = [p for p in run.participants if o.units[p].pending_for(run.run_id)]
    all_started = all(p in armed or p in pending for p in run.participants)
    if pending and all_started and o.probed_ready is None and not o.instant_release:
        return [Probe({p: o.units[p].endpoint for p in pending})]
    if o.now > run.deadline:
        late = [p for p in run.participants if p not in armed]
        return [Abort(f"not armed within the arm-timeout: {', '.join(late)}")]
    return []


def _after_release(released: Mapping[str, Outcome]) -> Action:
    """Running if every participant acknowledged; otherwise abort naming who failed."""
    times = {p: [r.sent, r.acked] for p, r in released.items()}
    failed = {
        p: r.error or "not acknowledged"
        for p, r in released.items()
        if not r.skipped and (r.error is not None or r.acked is None)
    }
    if failed or any(r.skipped for r in released.values()):
        reason = "release failed: " + "; ".join(f"{p}: {e}" for p, e in failed.items())
        return Abort(reason, released=times)
    return Started(times)


def failure_text(unit: str, data: UnitReport) -> str:
    """One participant's failure, for messages."""
    code = "no exit code" if data.exit_code is None else f"exit code {data.exit_code}"
    return f"{unit} ({code}{': ' + data.error if data.error else ''})"


# ------------------------------------------------------------------ outcome and statuses


def count_armed(run: Run, units: Mapping[str, UnitReport]) -> int:
    """How many participants are armed for the run."""
    return sum(1 for p in run.participants if p in units and units[p].armed_for(run.run_id))


def count_finished(run: Run, units: Mapping[str, UnitReport]) -> int:
    """How many participants have reported an end for the run."""
    return sum(1 for p in run.participants if p in units and units[p].finished(run.run_id))


def stopping(run: Run, reason: str, now: float) -> Run:
    """The run after a stop or an abort: phase stopping, with a bounded wait for reports."""
    return replace(run, phase=STOPPING, reason=reason, stop_deadline=now + STOP_GRACE_SECONDS)


def outcome_of(
    run: Run, units: Mapping[str, UnitReport], lost: Sequence[str], failures: Sequence[str] = ()
) -> tuple[str, str]:
    """The run's verdict and reason: a stop, an abort, a loss, a unit's failure, the aggregate."""
    if run.reason:
        return (STOPPED if run.reason == STOPPED_BY_USER else FAILED), run.reason
    if lost:
        return FAILED, f"lost during the run: {', '.join(lost)}"
    bad = [
        p for p in run.participants if p in units and (units[p].exit_code != 0 or units[p].error)
    ]
    if bad:
        return FAILED, "; ".join(failure_text(p, units[p]) for p in bad)
    if failures:
        return FAILED, "; ".join(failures)
    return PASSED, ""


def _ms(when: float | None) -> float | None:
    """An epoch time to the millisecond (the last-run record's per-unit times)."""
    return None if when is None else round(when, 3)


def release_spread_ms(run: Run) -> float | None:
    """Spread of the release acknowledgements across units, in milliseconds."""
    acks = release_acks(run)
    return round((max(acks) - min(acks)) * 1000, 3) if acks else None


def last_run_record(
    run: Run,
    units: Mapping[str, UnitReport],
    lost: Sequence[str],
    now: float,
    aggregate: Aggregate | None = None,
    concluded: Concluded | None = None,
) -> LastRun:
    """The record the leader writes when the run ends."""
    aggregate = aggregate or Aggregate()
    concluded = concluded or Concluded()
    failures = (*aggregate.failures, *concluded.failures)
    outcome, reason = outcome_of(run, units, lost, failures)
    started = run.started
    per_unit = {}
    for p in run.participants:
        data = units.get(p, UnitReport())
        reported = data.run_id == run.run_id
        late = None
        if run.start_at is not None and reported and data.started_at is not None:
            late = round(max(0.0, data.started_at - run.start_at) * 1000, 3)
        per_unit[p] = UnitLine(
            exit_code=data.exit_code if reported else None,
            error=data.error if reported else "",
            lost=p in lost,
            released=tuple(_ms(t) for t in run.released.get(p, ())),
            late_ms=late,
            line=dict(aggregate.lines.get(p, {})),
        )
    return LastRun(
        run_id=run.run_id,
        outcome=outcome,
        reason=reason,
        created=run.created,
        started=started,
        ended=now,
        duration_s=round(now - started, 3) if started else None,
        spread_ms=release_spread_ms(run),
        units=per_unit,
        aggregate=dict(aggregate.data),
        failures=failures,
        headline=aggregate.headline,
        info=dict(run.info),
        concluded=dict(concluded.info),
    )


def unit_status(run: Run | None, mine: UnitReport, me: str) -> ops.StatusBase:
    """A unit's status: its part in the active run, a failure of it, or idle."""
    if mine.status == PENDING and not (run and run.run_id == mine.run_id and run.phase != ARMING):
        return ops.MaintenanceStatus(f"arming run {mine.run_id}")
    if mine.live:
        phase = run.phase if run and run.run_id == mine.run_id else "ending"
        label = "armed" if phase == ARMING else phase
        return ops.ActiveStatus(f"{label}: run {mine.run_id}")
    if run and mine.run_id == run.run_id and run.reason == STOPPED_BY_USER:
        return ops.MaintenanceStatus(f"stopped: run {mine.run_id} (the others are stopping)")
    if run and mine.run_id == run.run_id and (mine.error or mine.exit_code):
        return ops.BlockedStatus(f"run {mine.run_id} failed: {failure_text(me, mine)}")
    return ops.ActiveStatus("idle")


def app_status(
    run: Run | None, last: LastRun | None, units: Mapping[str, UnitReport], now: float
) -> ops.StatusBase:
    """The application's status: the run's progress, or the last run's outcome."""
    if run is None:
        text = "idle"
        if last is not None:
            text += f"; last run {last.run_id} {last.outcome}"
            if last.outcome == FAILED and last.reason:
                reason = last.reason if len(last.reason) <= 80 else last.reason[:79] + "…"
                text += f": {reason}"
            if last.headline:
                text += f", {last.headline}"
        return ops.ActiveStatus(text)
    total = len(run.participants)
    if run.phase == ARMING:
        return ops.MaintenanceStatus(f"arming {count_armed(run, units)}/{total}")
    if run.phase == RUNNING:
        running = total - count_finished(run, units)
        started = run.started
        elapsed = f", {max(0.0, now - started):.0f}s" if started else ""
        if elapsed and run.expected_s:
            elapsed += f" of {run.expected_s:.0f}s"
        return ops.ActiveStatus(f"running {running}/{total} units{elapsed}")
    done = count_finished(run, units)
    return ops.MaintenanceStatus(f"stopping {done}/{total} units done")


# ------------------------------------------------------------------ the release fan-out


def _split(endpoint: str) -> tuple[str, int]:
    """The host and port of `host:port` or `[v6]:port`; ValueError unless both can be dialled."""
    host, _, port_text = endpoint.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    if not host or not 0 < port < 65536:
        raise ValueError(f"not a host:port endpoint: {endpoint!r}")
    return host, port


def _usable(endpoint: str) -> bool:
    """A host:port that fan_out can connect to (a unit may have published none)."""
    try:
        _split(endpoint)
    except ValueError:
        return False
    return True


def _addresses(host: str, port: int) -> list[tuple]:
    """Addresses to connect to, as getaddrinfo gives them; an IP address skips the lookup."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


FIRST_BACKOFF = 0.05  # seconds before an endpoint's first connect retry; doubles for each next


@dataclass(eq=False)
class _Dial:
    """One endpoint's connect, attempt by attempt (driven by `_Dialer`)."""

    index: int
    host: str
    port: int
    attempts: int = 0  # attempts started
    addresses: list[tuple] = field(default_factory=list)  # getaddrinfo's, not yet tried
    sock: socket.socket | None = None  # the connect in flight, then the connected socket
    deadline: float = math.inf  # monotonic: the connect in flight gives up
    retry_at: float = math.inf  # monotonic: the next attempt starts
    connected: float | None = None  # epoch seconds
    error: OSError | None = None  # why the last attempt failed, once no attempt is left


class _Dialer:
    """Non-blocking connects to every endpoint at once on one selector, each with its retries.

    An attempt resolves the endpoint (an IP address is taken as is; a host name is looked up,
    blocking) and tries its addresses in turn, each for up to `timeout`. A failed attempt is
    retried after FIRST_BACKOFF, doubling, while attempts are left: one endpoint's retries
    never hold up another's connects.
    """

    def __init__(self, timeout: float, retries: int) -> None:
        self.timeout, self.retries = timeout, retries
        self.selector = selectors.DefaultSelector()
        self.connecting: set[_Dial] = set()
        self.waiting: set[_Dial] = set()  # backing off before the next attempt

    def run(self, dials: Sequence[_Dial]) -> None:
        """Until every dial is connected or out of attempts; sockets of failures are closed."""
        for dial in dials:
            self._attempt(dial)
        while self.connecting or self.waiting:
            wake = min(
                min((d.deadline for d in self.connecting), default=math.inf),
                min((d.retry_at for d in self.waiting), default=math.inf),
            )
            for key, _ in self.selector.select(max(0.0, wake - time.monotonic())):
                self._settle(key.data)
            now = time.monotonic()
            for dial in [d for d in self.connecting if d.deadline <= now]:
                self._drop(dial)
                self._next_address(dial, TimeoutError(f"timed out after {self.timeout:g}s"))
            for dial in [d for d in self.waiting if d.retry_at <= now]:
                self._attempt(dial)

    def close(self) -> None:
        """Close the selector and every connect still in flight."""
        for dial in list(self.connecting):
            self._drop(dial)
        self.selector.close()

    def _attempt(self, dial: _Dial) -> None:
        self.waiting.discard(dial)
        dial.attempts += 1
        dial.retry_at = math.inf
        try:
            dial.addresses = _addresses(dial.host, dial.port)
        except OSError as e:
            self._attempt_failed(dial, e)
            return
        self._next_address(dial, OSError(f"no address for {dial.host}"))

    def _next_address(self, dial: _Dial, error: OSError) -> None:
        """Start connecting to the attempt's next address; the attempt fails when none is left."""
        while dial.addresses:
            family, kind, proto, _, address = dial.addresses.pop(0)
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                code = sock.connect_ex(address)
            except OSError as e:
                sock.close()
                error = e
                continue
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                error = OSError(code, os.strerror(code))
                continue
            dial.sock = sock
            if code == 0:
                dial.connected = time.time()
                return
            dial.deadline = time.monotonic() + self.timeout
            self.selector.register(sock, selectors.EVENT_WRITE, dial)
            self.connecting.add(dial)
            return
        self._attempt_failed(dial, error)

    def _settle(self, dial: _Dial) -> None:
        """The connect in flight has finished: connected, or on to the next address."""
        assert dial.sock is not None
        code = dial.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            self.selector.unregister(dial.sock)
            self.connecting.discard(dial)
            dial.connected = time.time()
        else:
            self._drop(dial)
            self._next_address(dial, OSError(code, os.strerror(code)))

    def _drop(self, dial: _Dial) -> None:
        """Abandon the connect in flight."""
        assert dial.sock is not None
        self.selector.unregister(dial.sock)
        self.connecting.discard(dial)
        dial.sock.close()
        dial.sock = None

    def _attempt_failed(self, dial: _Dial, error: OSError) -> None:
        if dial.attempts > self.retries:
            dial.error = error
        else:
            dial.retry_at = time.monotonic() + FIRST_BACKOFF * 2 ** (dial.attempts - 1)
            self.waiting.add(dial)


def _connect_all(endpoints: Sequence[str], timeout: float, retries: int) -> list[_Dial]:
    """Connect to every endpoint concurrently, each with 1 + `retries` attempts (`_Dialer`).

    Takes about one round trip when every endpoint answers, whatever their number; at most
    about timeout × (1 + retries) plus the backoffs when one does not. A malformed endpoint
    raises ValueError before anything is opened.
    """
    dials = [_Dial(i, *_split(endpoint)) for i, endpoint in enumerate(endpoints)]
    dialer = _Dialer(timeout, retries)
    try:
        dialer.run(dials)
    except BaseException:
        for dial in dials:
            if dial.sock is not None and dial not in dialer.connecting:
                dial.sock.close()
        raise
    finally:
        dialer.close()
    return dials


@dataclass
class Delivery:
    """One endpoint's request in a fan-out: when it left, when it was answered 200, or why not."""

    endpoint: str
    sent: float | None = None
    acked: float | None = None
    error: str | None = None
    skipped: bool = False  # not sent: another endpoint could not be reached (all or nobody)
    connected: float | None = None  # when its TCP connect completed (read by bench: the skew)

    # For a direct caller of the public `fan_out` (bench/ measures the release with it); the
    # library's own release decides on `outcome()` instead.
    @property
    def ok(self) -> bool:
        """Answered with HTTP 200."""
        return self.error is None and self.acked is not None

    def outcome(self) -> Outcome:
        """The part the state machine decides on."""
        return Outcome(self.sent, self.acked, self.error, self.skipped)


def fan_out(
    requests: Sequence[tuple[str, bytes]], timeout: float = 3.0, connect_retries: int = 2
) -> list[Delivery]:
    """Send one pre-encoded HTTP request to every endpoint at once: connect all, then write all.

    The connects run concurrently (non-blocking, one selector), so the writes start about one
    round trip after the call whatever the number of endpoints; each endpoint gets
    1 + `connect_retries` attempts of up to `timeout` with a short backoff, independently of the
    others, so the connect phase lasts at most about timeout × (1 + connect_retries) plus
    0.05 s × (2^connect_retries − 1). If any endpoint cannot be connected, nothing is sent to
    anyone (a partial start is not a synchronized one): the unreachable ones get the error, the
    others are marked skipped. The requests are pre-encoded and the connections open when the
    writes start, so the last request leaves microseconds after the first (an HTTP client
    library costs a few hundred microseconds per request, which at 64 units is the whole skew
    budget). An answer counts when its status line says 200. Every socket is closed before
    returning.
    """
    endpoints = [endpoint for endpoint, _ in requests]
    results = [Delivery(e) for e in endpoints]
    dials = _connect_all(endpoints, timeout, connect_retries)
    for dial in dials:
        results[dial.index].connected = dial.connected
    if any(dial.error is not None for dial in dials):
        for dial in dials:
            result = results[dial.index]
            if dial.error is not None:
                result.error = f"connect failed after {dial.attempts} attempts: {dial.error}"
            else:
                assert dial.sock is not None
                dial.sock.close()
                result.skipped = True
        return results
    socks = {dial.index: dial.sock for dial in dials if dial.sock is not None}
    try:
        sent_ok = _write_all(socks, [payload for _, payload in requests], results, timeout)
        _collect_acks(sent_ok, results, timeout)
    finally:
        for sock in socks.values():
            sock.close()
    return results


def _write_all(
    socks: Mapping[int, socket.socket],
    payloads: Sequence[bytes],
    results: Sequence[Delivery],
    timeout: float,
) -> dict[int, socket.socket]:
    """Write every pre-encoded request back to back; the sockets that took their whole request.

    The sockets are non-blocking: a fresh connection takes a small request at once. Anything a
    socket did not take is finished after the loop, with a blocking write bounded by `timeout`.
    """
    plan = [(i, sock.send, payloads[i]) for i, sock in socks.items()]
    now = time.time
    written: list[tuple[int, int | OSError, float]] = []
    for index, send, payload in plan:  # the fan-out: nothing else in this loop
        try:
            count: int | OSError = send(payload)
        except OSError as e:  # BlockingIOError too: nothing taken
            count = e
        written.append((index, count, now()))
    sent_ok: dict[int, socket.socket] = {}
    for (index, count, stamp), (_, _, payload) in zip(written, plan, strict=True):
        sock = socks[index]
        if isinstance(count, BlockingIOError):
            count = 0
        if isinstance(count, int) and count < len(payload):
            try:
                sock.settimeout(timeout)
                sock.sendall(payload[count:])
                count, stamp = len(payload), time.time()
            except OSError as e:
                count = e
        if isinstance(count, OSError):
            results[index].error = f"send failed: {count}"
        else:
            results[index].sent = stamp
            sent_ok[index] = sock
    return sent_ok


def _collect_acks(
    socks: Mapping[int, socket.socket], results: Sequence[Delivery], timeout: float
) -> None:
    """Read each response's status line; stamp the ack time or record the error."""
    selector = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    for index, sock in socks.items():
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        buffers[index] = b""
    deadline = time.monotonic() + timeout
    pending = set(socks)
    while pending and (remaining := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(remaining):
            index = key.data
            try:
                chunk = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except OSError as e:
                chunk, results[index].error = b"", f"receive failed: {e}"
            buffers[index] += chunk
            if b"\r\n" in buffers[index] or not chunk:
                selector.unregister(key.fileobj)
                pending.discard(index)
                line = buffers[index].split(b"\r\n", 1)[0].decode(errors="replace")
                parts = line.split()
                if len(parts) >= 2 and parts[1] == "200":
                    results[index].acked = time.time()
                elif results[index].error is None:
                    results[index].error = f"unexpected answer: {line!r}"
    for index in pending:
        results[index].error = f"no answer within {timeout}s"
    selector.close()
