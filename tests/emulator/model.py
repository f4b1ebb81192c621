"""A Juju model of N units of a charm on one machine: the real charm, real processes, Juju's rules.

Each unit is an ops.testing Context whose State is carried from hook to hook; relation writes
become relation-changed on the *other* units; each unit's Pebble runs real processes.

Two ways to run the hooks:

- serial (the default): one hook at a time; each sees everything committed before it.
- concurrent (`Model(..., concurrency=Concurrency(...))`), Juju as it runs: every unit works
  through its own queue at the same time as the others. A hook reads relation data once, when
  it starts (a snapshot); its code runs in a thread of its own (tests/emulator/turns.py: hooks
  that wait overlap); its writes are committed at its end plus a modelled cost (the agent's
  dispatch, the charm's process start, the commit), and only then queue relation-changed on the
  other units (coalesced per remote unit, as Juju's uniter does). A hook that raises commits
  nothing, puts the unit in error and is retried with Juju's backoff before the unit's later
  events. Each unit takes its next event in the uniter's order: leadership, workload events
  (Pebble notices), actions, lifecycle hooks, relation hooks (departures, the app's change,
  joins, units' changes), the rest; an action waits for the unit's hook in flight.

Both modes model a pod restart (`restart_pod`: the unit keeps its name and databag, its
containers come back empty, it gets Juju's restart events) and a rolling `juju refresh`.
Sources for every rule: docs/juju-k8s.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import logging
import math
import os
import random
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import ops
import yaml
from ops import testing
from scenario import state as scenario_state

import charm as charm_module
import k6_client
import k6_workload
from charm import K6Charm
from tests.emulator import pebble as emu_pebble
from tests.emulator import turns

# Scenario warns at every hook that the container filesystem it rebuilds is not empty: here the
# mounts carry each unit's files from hook to hook on purpose. It also warns at every
# relation-changed for an app-settings change (Juju's has no remote unit; Scenario picks one).
for _name in ("mocking", "runtime", "consistency_checker"):
    logging.getLogger(f"ops-scenario.{_name}").setLevel(logging.ERROR)

PEER_ID = 9001  # far from the ids ops.testing gives other relations
ROOT = Path(__file__).resolve().parents[2]


ADDRESS_BASE = os.environ.get("K6EMU_ADDRESS_BASE", "127.0.0.170")

# How network-get answers on the peer binding (docs/juju-k8s.md, "Addresses"):
K8S = "k8s"  # Juju on Kubernetes: bind = the pod IP; ingress = the app's Service ClusterIP
PER_UNIT_INGRESS = "per-unit-ingress"  # machines-like: every unit's ingress is its own address
NETWORKS = (K8S, PER_UNIT_INGRESS)


def unit_address(index: int, base: str = ADDRESS_BASE) -> str:
    """Unit i's own loopback address (base + i): its pod IP, the peer binding's bind address.

    Set K6EMU_ADDRESS_BASE (e.g. 127.0.3.1) to keep concurrent emulators apart.
    """
    prefix, _, last = base.rpartition(".")
    if not prefix.startswith("127.") or not 0 <= int(last) + index < 255:
        raise ValueError(f"no loopback address for unit {index} from base {base}")
    return f"{prefix}.{int(last) + index}"


def service_address(base: str = ADDRESS_BASE) -> str:
    """The app's stand-in Service ClusterIP (base - 1): shared by all units, nothing on 6565."""
    return unit_address(-1, base)


@dataclass(frozen=True)
class CharmUnderTest:
    """Which charm the model deploys, and the names the emulator needs to wire it."""

    type: type[ops.CharmBase]
    root: Path  # holds its metadata.yaml, actions.yaml, config.yaml
    app: str
    peer: str  # the peer endpoint
    container: str
    workdir: str  # the container path mapped to each unit's own folder
    port: int = 0  # its workload's API port, if any
    clock_module: ModuleType | None = None  # the module whose `time` is the charm's clock


K6 = CharmUnderTest(
    K6Charm, ROOT, "k6", "k6", "k6", k6_workload.WORKDIR, k6_client.PORT, charm_module
)


@dataclass(frozen=True)
class Connect:
    """One TCP connect the charm made (in a hook of `unit`), as the emulated network saw it."""

    unit: str
    host: str
    port: int
    refused: bool
    at: float = 0.0  # when (epoch seconds) the charm called connect


class Network:
    """The pod network as the charm's own code meets it: records connects, applies policies.

    Only the charm's connects (made in this process, inside hooks) pass through here; k6 and
    the targets are separate processes and use the kernel's loopback directly. A unit that is
    `cut` is unreachable from every other unit (a NetworkPolicy that drops the leader's
    traffic): connects to its address fail with ECONNREFUSED; its own hooks still reach it.
    """

    def __init__(self) -> None:
        self.connects: list[Connect] = []
        self._local = threading.local()  # the unit whose hook runs in this thread
        self.cut: dict[str, str] = {}  # address -> unit name

    @property
    def current_unit(self) -> str:
        """The unit whose hook this thread runs ("" outside hooks)."""
        return getattr(self._local, "unit", "")

    @current_unit.setter
    def current_unit(self, name: str) -> None:
        self._local.unit = name

    def check(self, address: Any) -> bool:
        """Record a connect to `address`; True when the policy refuses it."""
        if not (isinstance(address, tuple) and len(address) >= 2):
            return False
        host, port = str(address[0]), int(address[1])
        owner = self.cut.get(host)
        refused = owner is not None and owner != self.current_unit
        self.connects.append(Connect(self.current_unit, host, port, refused, time.time()))
        return refused

    def __enter__(self) -> Network:
        if not _ACTIVE_NETWORKS:
            _install_connect_hooks()
        _ACTIVE_NETWORKS.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE_NETWORKS.remove(self)
        if not _ACTIVE_NETWORKS:
            _remove_connect_hooks()


_ACTIVE_NETWORKS: list[Network] = []  # models open now (tests may hold several at once)
_ORIGINAL_CONNECT = socket.socket.connect
_ORIGINAL_CONNECT_EX = socket.socket.connect_ex


def _refused(address: Any) -> bool:
    refusals = [network.check(address) for network in _ACTIVE_NETWORKS]  # every one records
    return any(refusals)


def _connect(sock: socket.socket, address: Any) -> None:
    if _refused(address):
        raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
    return _ORIGINAL_CONNECT(sock, address)


def _connect_ex(sock: socket.socket, address: Any) -> int:
    if _refused(address):
        return errno.ECONNREFUSED
    return _ORIGINAL_CONNECT_EX(sock, address)


def _install_connect_hooks() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


def _remove_connect_hooks() -> None:
    socket.socket.connect = _ORIGINAL_CONNECT  # type: ignore[method-assign]
    socket.socket.connect_ex = _ORIGINAL_CONNECT_EX  # type: ignore[method-assign]


# Juju as it runs (docs/juju-k8s.md, "Hooks of every unit at once"):
HOOK_COST = 1.0  # seconds a hook costs on a real model beyond the charm's own code
# The uniter's hook retry: juju/juju apiserver/facades/agent/retrystrategy/retrystrategy.go
# (MinRetryTime 5 s, RetryTimeFactor 2, MaxRetryTime 5 min, JitterRetryTime), driven by
# worker/uniter/uniter.go through juju/utils' BackoffTimer (jitter: ±3 % of each next delay).
RETRY_MIN, RETRY_FACTOR, RETRY_MAX, RETRY_JITTER = 5.0, 2.0, 300.0, 0.03
COALESCED = ("relation_changed", "update_status")  # one pending at a time per remote / timer
RELATION_EVENTS = ("relation_departed", "relation_changed", "relation_joined")
POD_DOWN = "pod-down"  # not a hook: the pod is deleted and created again, its containers empty
PUMP_INTERVAL = 0.01  # concurrent mode: how often Pebble's exits and notices are picked up


@dataclass(frozen=True)
class Concurrency:
    """How a concurrent model costs its hooks (scaled down in tests)."""

    hook_cost: float = HOOK_COST
    jitter: float = 0.0  # each hook's cost is uniform in hook_cost × [1 − jitter, 1 + jitter]
    retry_scale: float = 1.0  # Juju's retry delays (5 s, 10 s, … 5 min) times this
    unit_costs: Mapping[str, float] = field(default_factory=dict)  # a slower agent, by unit

    def cost(self, unit: str, rng: random.Random) -> float:
        """One hook's modelled cost on `unit`."""
        base = self.unit_costs.get(unit, self.hook_cost)
        return base * (1 + self.jitter * (2 * rng.random() - 1)) if self.jitter else base


@dataclass
class Hook:
    """One hook as it ran: for tests and benchmarks."""

    unit: str
    event: str
    started: float  # epoch: when it read its snapshot
    duration: float  # from then to the end of its code
    unit_keys: tuple[str, ...] = ()
    app_keys: tuple[str, ...] = ()
    error: str | None = None
    pebble_calls: tuple[str, ...] = ()
    committed: float | None = None  # epoch: when its writes became visible to the others
    clock_start: float = 0.0  # the charm's clock when it started and when its code ended
    clock_end: float = 0.0
    leader: bool = False  # its unit led when it started
    seen: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)  # others'
    seen_app: Mapping[str, str] = field(default_factory=dict, repr=False)  # databags it read
    # concurrent mode, how late the emulator was (the model holds while these stay small):
    start_lag: float = 0.0  # from when the unit could start it to when it did
    commit_lag: float = 0.0  # from when its writes were due to when they landed


@dataclass
class _Queued:
    seq: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # monotonic: when it was queued
    pinned: bool = False  # part of a pod's restart sequence: runs in its place, first


@dataclass
class Unit:
    """One emulated unit: its context, carried state pieces, event queue and Pebble."""

    index: int
    name: str
    address: str
    ctx: testing.Context
    supervisor: emu_pebble.Supervisor
    workdir: Path
    unit_data: dict[str, str] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)
    stored_states: frozenset = frozenset()
    queue: deque[_Queued] = field(default_factory=deque)
    status: str = ""
    can_connect: bool = True
    # concurrent mode
    running: _Running | None = None  # its hook in flight
    action: _Queued | None = None  # an action waiting for the hook in flight
    failed: _Queued | None = None  # the hook in error, retried before anything else
    retry_delay: float = 0.0
    retry_at: float = 0.0
    free_at: float = 0.0  # monotonic: when its last hook ended
    # pod restarts
    pod: int = 0  # how many times its pod was replaced
    ready_pod: int = 0  # the pod whose `start` hook succeeded (Kubernetes' readiness)
    old_workdirs: list[Path] = field(default_factory=list)  # the files of replaced pods

    @property
    def busy_with(self) -> str | None:
        """The hook in flight (concurrent mode), if any."""
        return self.running.hook.event if self.running else None

    @property
    def restarting(self) -> bool:
        """Its pod is going to be replaced, or was and has not run `start` yet."""
        return self.ready_pod < self.pod or any(q.kind == POD_DOWN for q in self.queue)


@dataclass
class _Running:
    """A hook in flight: started on a snapshot, committed at the end of its code plus its cost."""

    unit: Unit
    queued: _Queued
    hook: Hook
    cost: float
    out: testing.State | None = None
    failure: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    ended: float | None = None  # monotonic, once its code returned

    @property
    def commit_at(self) -> float:
        """When its writes land (monotonic); infinity while its code runs."""
        return math.inf if self.ended is None else self.ended + self.cost


class Model:
    """N units of the k6 charm, an app databag, a scheduler, and every hook recorded."""

    def __init__(
        self,
        units: int,
        config: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        shuffle: bool = False,
        update_status_interval: float | None = 5.0,
        leader: int = 0,
        extra_env: Mapping[str, str] | None = None,
        relations: Sequence[testing.RelationBase] = (),
        on_hook: Callable[[Hook, Model], None] | None = None,
        okay_delay: float = emu_pebble.START_OKAY_DELAY,
        k6_path: str = "",
        network: str = K8S,
        charm: CharmUnderTest = K6,
        charm_type: type[ops.CharmBase] | None = None,
        concurrency: Concurrency | None = None,
        on_pod_restart: Callable[[Unit, Model], None] | None = None,
        initial_hooks: bool = True,
    ):
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, not {network!r}")
        self.tmp = Path(tempfile.mkdtemp(prefix="k6emu-"))
        self.config = dict(config or {})
        self.rng = random.Random(seed)
        self.shuffle = shuffle
        self.update_status_interval = update_status_interval
        self.extra_env = dict(extra_env or {})
        self.relations = list(relations)  # other apps' relations, the same for every unit
        self.okay_delay = okay_delay  # Pebble's start okay-delay (1 s); faster for explorations
        self.k6_path = k6_path  # a folder whose `k6` replaces the real one (test doubles only)
        self.on_hook = on_hook
        self.network_model = network
        self.charm = charm if charm_type is None else dataclasses.replace(charm, type=charm_type)
        self.spec = _charm_spec(self.charm.root)
        self.service_address = service_address()
        self.units: dict[int, Unit] = {}
        self.app_data: dict[str, str] = {}
        self.leader = leader
        self.hooks: list[Hook] = []
        self.juju_model = testing.Model(name="emu", uuid="00000000-0000-4000-8000-000000000000")
        self._seq = itertools.count()
        self._next_update = time.monotonic() + (update_status_interval or 1e9)
        self._patch = contextlib.ExitStack()
        self._patch.enter_context(emu_pebble.patched())
        self._patch.enter_context(_fast_scenario())
        if self.charm.clock_module is not None:
            self._patch.enter_context(
                mock.patch.object(self.charm.clock_module, "time", _Clock(self))
            )
        self.network = self._patch.enter_context(Network())
        self.clock_offset = 0.0  # seconds the charm's clock runs ahead of the wall clock
        self.departed: list[Unit] = []
        self.on_pod_restart = on_pod_restart  # called when a replaced pod comes back (empty)
        self.pod_log: list[tuple[float, str, str]] = []  # (epoch, unit, "down" | "ready")
        self._rollout: list[int] = []  # `juju refresh`: the units still to replace, in order
        self._rolling: tuple[int, int] | None = None  # (unit, its pod once replaced)
        self.concurrency = concurrency
        self._running: list[_Running] = []
        self._threads: list[threading.Thread] = []
        self._landed_actions: dict[int, _Running] = {}
        self._electing: int | None = None  # a leadership move waiting for the old leader's hook
        self._pumped = 0.0
        self._baton = turns.Baton()
        if concurrency is not None:
            self._patch.enter_context(turns.sleeps_take_turns())
            self._baton.take()  # the main thread runs except while it sleeps
        for i in range(units):
            self._add_unit(i)
        if not initial_hooks:  # a model long deployed: its first hooks ran long ago (benchmarks)
            return
        for unit in self.units.values():
            self._enqueue(unit, "leader_elected" if unit.index == leader else "pebble_ready")
            for other in self.units.values():
                if other is not unit:
                    self._enqueue(unit, "relation_joined", remote=other.index)

    # ------------------------------------------------------------ units

    def _add_unit(self, index: int) -> Unit:
        self._next_index = max(getattr(self, "_next_index", 0), index + 1)  # Juju never reuses
        workdir = self.tmp / f"unit-{index}" / "work"
        notices = self.tmp / f"unit-{index}" / "notices"
        logs = self.tmp / f"unit-{index}" / "logs"
        for d in (workdir, notices, logs):
            d.mkdir(parents=True, exist_ok=True)
        name = f"{self.charm.app}/{index}"
        env = {**self.extra_env, "K6EMU_UNIT": name}
        supervisor = emu_pebble.Supervisor(
            name,
            {self.charm.workdir: workdir},
            notices,
            logs,
            env,
            okay_delay=self.okay_delay,
            path_prefix=self.k6_path,
        )
        ctx = testing.Context(self.charm.type, app_name=self.charm.app, unit_id=index, **self.spec)
        emu_pebble.REGISTRY[id(ctx)] = supervisor
        unit = Unit(index, name, unit_address(index), ctx, supervisor, workdir)
        unit.free_at = time.monotonic()
        self.units[index] = unit
        return unit

    def unit(self, ref: int | str) -> Unit:
        """A unit by index or name."""
        if isinstance(ref, str):
            ref = int(ref.rsplit("/", 1)[1])
        return self.units[ref]

    @property
    def leader_unit(self) -> Unit:
        """The current leader."""
        return self.units[self.leader]

    # ------------------------------------------------------------ state

    def _state(self, unit: Unit) -> testing.State:
        peers = {j: dict(u.unit_data) for j, u in self.units.items() if j != unit.index}
        relation = testing.PeerRelation(
            self.charm.peer,
            id=PEER_ID,
            local_app_data=dict(self.app_data),
            local_unit_data=dict(unit.unit_data),
            peers_data=peers,
        )
        sup = unit.supervisor
        container = testing.Container(
            self.charm.container,
            can_connect=unit.can_connect,
            layers=dict(unit.layers),
            service_statuses={n: sup.status(n) for n in sup.services},
            mounts={"work": testing.Mount(location=self.charm.workdir, source=unit.workdir)},
            notices=[
                testing.Notice(
                    n.key, id=n.id, last_data=dict(n.last_data), occurrences=n.occurrences
                )
                for n in sup.notices.values()
            ],
        )
        ingress = self.service_address if self.network_model == K8S else unit.address
        network = testing.Network(
            self.charm.peer,
            bind_addresses=[testing.BindAddress([testing.Address(unit.address)])],
            ingress_addresses=[ingress],
            egress_subnets=[f"{unit.address}/32"],
        )
        return testing.State(
            leader=unit.index == self.leader,
            relations={relation, *self.relations},
            containers={container},
            networks={network},
            config=self.config,
            model=self.juju_model,
            stored_states=unit.stored_states,
            planned_units=len(self.units),
        )

    def _event(self, unit: Unit, state: testing.State, queued: _Queued) -> Any:
        on = unit.ctx.on
        relation = state.get_relation(PEER_ID)
        kind, args = queued.kind, queued.args
        if kind == "relation_changed":
            return on.relation_changed(relation, remote_unit=args.get("remote"))
        if kind == "relation_joined":
            return on.relation_joined(relation, remote_unit=args["remote"])
        if kind == "relation_departed":
            return on.relation_departed(
                relation, remote_unit=args["remote"], departing_unit=args["remote"]
            )
        if kind == "pebble_custom_notice":
            container = state.get_container(self.charm.container)
            notice = next(n for n in container.notices if n.key == args["key"])
            return on.pebble_custom_notice(container, notice)
        if kind == "pebble_ready":
            return on.pebble_ready(state.get_container(self.charm.container))
        if kind == "action":
            return on.action(args["name"], params=args.get("params", {}))
        if kind == "leader_settings_changed":  # a Juju hook ops.testing has no helper for
            return scenario_state._Event(kind)
        return getattr(on, kind)()

    # ------------------------------------------------------------ queues

    def _enqueue(self, unit: Unit, kind: str, **args: Any) -> None:
        """Queue an event; concurrently, like Juju, a change or tick already pending absorbs it."""
        if self.concurrency is not None and kind in COALESCED:
            if any(q.kind == kind and q.args == args for q in unit.queue):
                return
        unit.queue.append(_Queued(next(self._seq), kind, args, time.monotonic()))

    def _next_event(self, unit: Unit) -> _Queued | None:
        """The event the unit runs next (None: nothing, or waiting to retry a failed hook).

        Serial: first in, first out. Concurrent: a pod's restart sequence first; in error, an
        action or else the failed hook once its retry is due, nothing else; otherwise the next
        in the uniter's order (`_juju_order`), an action among them.
        """
        if unit.failed is not None:
            if unit.action is not None:
                queued, unit.action = unit.action, None
                return queued
            if time.monotonic() < unit.retry_at:
                return None
            queued, unit.failed = unit.failed, None
            return queued
        while unit.queue or unit.action:
            queued = self._pop_next(unit)
            if queued.kind == POD_DOWN:
                self._replace_pod(unit)
            elif not (queued.kind == "relation_changed" and self._no_remote(queued)):
                return queued
        return None

    def _pop_next(self, unit: Unit) -> _Queued:
        if unit.queue and (self.concurrency is None or unit.queue[0].pinned):
            return unit.queue.popleft()
        first = min([*unit.queue, *([unit.action] if unit.action else [])], key=_juju_order)
        if first is unit.action:
            unit.action = None
        else:
            unit.queue.remove(first)
        return first

    def _no_remote(self, queued: _Queued) -> bool:
        """An app-settings change for a unit now alone, which ops.testing cannot run.

        ops.testing needs a remote unit for relation-changed; the unit gets relation-departed
        for the writer anyway.
        """
        return queued.args.get("remote") is None and len(self.units) < 2

    # ------------------------------------------------------------ one hook

    def _begin(self, unit: Unit, queued: _Queued) -> tuple[testing.State, Any, Hook]:
        """The hook's snapshot: its State, its event, and its record."""
        state = self._state(unit)
        event = self._event(unit, state, queued)
        label = queued.kind if queued.kind != "action" else f"{queued.args['name']}-action"
        now = time.time()
        hook = Hook(
            unit.name,
            label,
            now,
            0.0,
            clock_start=now + self.clock_offset,
            leader=unit.index == self.leader,
            seen={u.name: u.unit_data for u in self.units.values() if u is not unit},
            seen_app=self.app_data,
        )
        return state, event, hook

    def _execute(
        self, unit: Unit, state: testing.State, event: Any, hook: Hook
    ) -> tuple[testing.State | None, str | None]:
        """Run the charm on the snapshot; the output state (None if it raised) and a failure."""
        calls_before = len(unit.supervisor.calls)
        out, failure = None, None
        self.network.current_unit = unit.name
        try:
            out = unit.ctx.run(event, state)
        except testing.ActionFailed as e:
            out, failure = e.state, e.message
        except Exception as e:  # a hook error: Juju discards its writes  # noqa: BLE001
            hook.error = f"{type(e).__name__}: {e}"
        finally:
            self.network.current_unit = ""
            release_frameworks(unit.ctx)
        hook.duration = time.time() - hook.started
        hook.clock_end = time.time() + self.clock_offset
        hook.pebble_calls = tuple(unit.supervisor.calls[calls_before:])
        return out, failure

    def _land(self, unit: Unit, queued: _Queued, hook: Hook, out: testing.State | None) -> None:
        """The hook ends: its writes become visible (or, concurrently, its error is retried)."""
        if out is not None and hook.error is None:
            hook.unit_keys, hook.app_keys = self._commit(unit, out, hook)
        if self.concurrency is not None and queued.kind != "action":
            if hook.error is not None:
                self._in_error(unit, queued, hook.error)
            else:
                unit.retry_delay = 0.0
        if queued.kind == "start" and hook.error is None and unit.ready_pod < unit.pod:
            unit.ready_pod = unit.pod
            self.pod_log.append((time.time(), unit.name, "ready"))
        hook.committed = time.time()
        self.hooks.append(hook)
        if self.on_hook:
            self.on_hook(hook, self)

    def run_hook(self, unit: Unit, queued: _Queued) -> tuple[Hook, Any]:
        """Run one hook on one unit now (serial); commit its writes only if it succeeds."""
        state, event, hook = self._begin(unit, queued)
        out, failure = self._execute(unit, state, event, hook)
        self._land(unit, queued, hook, out)
        return hook, failure

    def _commit(
        self, unit: Unit, out: testing.State, hook: Hook
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Carry the unit's output state; tell the other units what changed."""
        relation = out.get_relation(PEER_ID)
        new_unit = dict(relation.local_unit_data)
        unit_keys = _changed(unit.unit_data, new_unit)
        app_keys: tuple[str, ...] = ()
        if hook.leader and unit.index == self.leader:  # what it wrote, onto what is there now
            written = dict(relation.local_app_data)
            app_keys = _changed(hook.seen_app, written)
            app = {**self.app_data, **{k: written[k] for k in app_keys if k in written}}
            self.app_data = {k: v for k, v in app.items() if k in written or k not in app_keys}
        unit.unit_data = new_unit
        container = out.get_container(self.charm.container)
        unit.layers = dict(container.layers)
        unit.stored_states = out.stored_states
        unit.status = f"{out.unit_status.name}: {out.unit_status.message}"
        for other in self.units.values():
            if other is unit:
                continue
            if self.concurrency is None:
                if unit_keys or app_keys:
                    self._enqueue(other, "relation_changed", remote=unit.index)
                continue
            if app_keys:  # Juju's app-settings change: no remote unit
                self._enqueue(other, "relation_changed", remote=None)
            if unit_keys:
                self._enqueue(other, "relation_changed", remote=unit.index)
        return unit_keys, app_keys

    def _in_error(self, unit: Unit, queued: _Queued, error: str) -> None:
        """The unit is in error: the same hook again after Juju's backoff, nothing else before."""
        assert self.concurrency is not None
        delay = unit.retry_delay or RETRY_MIN
        unit.failed = queued
        unit.retry_at = time.monotonic() + delay * self.concurrency.retry_scale
        jitter = 1 + RETRY_JITTER * (2 * self.rng.random() - 1)
        unit.retry_delay = min(delay * RETRY_FACTOR * jitter, RETRY_MAX)
        unit.status = f"error: hook failed: {error}"

    # ------------------------------------------------------------ the scheduler

    def _pump(self) -> None:
        """Deliver what the world did meanwhile: k6's notices, update-status ticks, a rollout."""
        if self.concurrency is not None:
            if time.monotonic() - self._pumped < PUMP_INTERVAL:
                return
            self._pumped = time.monotonic()
        for unit in self.units.values():
            unit.supervisor.poll()
            while unit.supervisor.new_notices:
                notice = unit.supervisor.new_notices.pop(0)
                self._enqueue(unit, "pebble_custom_notice", key=notice.key)
        if self.update_status_interval and time.monotonic() >= self._next_update:
            self._next_update = time.monotonic() + self.update_status_interval
            for unit in self.units.values():
                self._enqueue(unit, "update_status")
        self._roll()

    def step(self) -> Hook | None:
        """Run the next hook to its end; None when nothing is queued (or in flight).

        Serial: the next queued hook (FIFO across units, or a seeded random unit), run now.
        Concurrent: every unit that is free starts its next hook; this returns at the next
        commit, sleeping (other units' hooks run meanwhile) until one is due.
        """
        if self.concurrency is not None:
            return self._concurrent_step()
        while True:
            ready = [u for u in self.units.values() if u.queue]
            if not ready:
                return None
            if self.shuffle:
                unit = self.rng.choice(ready)
            else:
                unit = min(ready, key=lambda u: u.queue[0].seq)
            queued = self._next_event(unit)
            if queued is not None:
                hook, _ = self.run_hook(unit, queued)
                return hook

    def _concurrent_step(self) -> Hook | None:
        while True:
            self._pump()
            landed = self._land_due()
            if landed is not None:
                return landed
            self._start_free_units()
            wake = self._next_wake()
            if wake is None:
                return None
            time.sleep(min(max(wake - time.monotonic(), 0.0), PUMP_INTERVAL))

    def _land_due(self) -> Hook | None:
        """Commit the earliest hook whose end (code plus cost) has come."""
        now = time.monotonic()
        due = [r for r in self._running if r.commit_at <= now]
        if not due:
            return None
        running = min(due, key=lambda r: r.commit_at)
        self._running.remove(running)
        running.hook.commit_lag = now - running.commit_at
        unit = running.unit
        unit.running = None
        unit.free_at = now
        if self.units.get(unit.index) is not unit:  # removed meanwhile: nothing lands
            if running.queued.kind == "action":
                running.failure = running.failure or "the unit was removed"
                self._landed_actions[running.queued.seq] = running
            return self._land_due()
        self._land(unit, running.queued, running.hook, running.out)
        if running.queued.kind == "action":
            self._landed_actions[running.queued.seq] = running
        return running.hook

    def _start_free_units(self) -> None:
        """Every unit with nothing in flight starts its next event, on a snapshot taken now."""
        self._hand_over_leadership()
        free = [u for u in self.units.values() if u.running is None]
        if self.shuffle:
            self.rng.shuffle(free)
        for unit in free:
            if unit.index == self._electing_from():
                continue  # the old leader starts nothing while its lease is being handed over
            queued = self._next_event(unit)
            if queued is not None:
                self._launch(unit, queued)

    def _launch(self, unit: Unit, queued: _Queued) -> None:
        assert self.concurrency is not None
        startable = max(queued.at, unit.free_at, unit.retry_at)
        state, event, hook = self._begin(unit, queued)
        hook.start_lag = max(0.0, time.monotonic() - startable)
        running = _Running(unit, queued, hook, self.concurrency.cost(unit.name, self.rng))
        unit.running = running
        self._running.append(running)

        def code() -> None:
            try:
                running.out, running.failure = self._execute(unit, state, event, hook)
                running.results = dict(unit.ctx.action_results or {})
                running.logs = list(unit.ctx.action_logs)
            except BaseException as e:  # noqa: BLE001 (the thread must always end its hook)
                hook.error = hook.error or f"{type(e).__name__}: {e}"
            finally:
                running.ended = time.monotonic()

        self._threads.append(turns.run_in_turn(self._baton, code, f"{unit.name} {hook.event}"))

    def _next_wake(self) -> float | None:
        """When the scheduler next has something to do; None when nothing is left at all."""
        now = time.monotonic()
        times = [r.commit_at for r in self._running]
        if any(r.ended is None for r in self._running):
            times.append(now + PUMP_INTERVAL)  # code still running: look again soon
        for unit in self.units.values():
            if unit.running is None and unit.failed is not None:
                times.append(unit.retry_at)
            elif unit.running is None and (unit.queue or unit.action):
                times.append(now)
        return min(times) if times else None

    def _electing_from(self) -> int | None:
        return self.leader if self._electing is not None else None

    def _hand_over_leadership(self) -> None:
        """A pending election happens once the old leader's hook has ended (its lease expired)."""
        if self._electing is None:
            return
        old = self.units.get(self.leader)
        if old is not None and old.running is not None:
            return
        index, self._electing = self._electing, None
        self._elect_now(index)

    def run_hooks(self, count: int) -> int:
        """Deliver what happened and run at most `count` hooks to their end; return how many."""
        ran = 0
        while ran < count:
            self._pump()
            if self.step() is None:
                break
            ran += 1
        return ran

    def tick(self, seconds: float) -> None:
        """Let `seconds` pass on the charm's clock and fire update-status on every unit."""
        self.clock_offset += seconds
        self.update_status()

    def settle(self, until: Callable[[], bool] | None = None, timeout: float = 60.0) -> None:
        """Run hooks and deliver notices until `until()` holds with no hook queued."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            if self.step() is not None:
                if time.monotonic() > deadline:
                    raise TimeoutError(self._timeout_text(timeout))
                continue
            if until is None or until():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(self._timeout_text(timeout))
            time.sleep(0.01)

    def run_until(self, until: Callable[[], bool], timeout: float = 60.0) -> None:
        """Run hooks until `until()` holds, checked after each hook (others may be queued)."""
        deadline = time.monotonic() + timeout
        while not until():
            if self.step() is None:
                time.sleep(0.01)
            if time.monotonic() > deadline:
                raise TimeoutError(self._timeout_text(timeout))

    def start_hooks(self) -> list[str]:
        """Concurrent: every free unit starts its next hook now; the units that started one."""
        assert self.concurrency is not None, "a serial model runs each hook to its end"
        self._pump()
        busy = {u.name for u in self.units.values() if u.running}
        self._start_free_units()
        return [u.name for u in self.units.values() if u.running and u.name not in busy]

    def _timeout_text(self, timeout: float) -> str:
        tail = "\n".join(f"  {h.unit} {h.event} {h.error or ''}" for h in self.hooks[-15:])
        return f"not settled within {timeout}s; app data {self.app_data}; last hooks:\n{tail}"

    # ------------------------------------------------------------ what tests do

    def action(self, unit: int | str, name: str, **params: Any) -> ActionResult:
        """Run an action on a unit, like `juju run` (which returns once it has ended).

        Serial: now. Concurrent: once the unit's hook in flight has ended, in the uniter's order
        (after pending leadership and workload events, before the other hooks); other units'
        hooks go on meanwhile, and this returns once the action's hook committed.
        """
        target = self.unit(unit)
        params = {k.replace("_", "-"): v for k, v in params.items()}
        queued = _Queued(next(self._seq), "action", {"name": name, "params": params})
        queued.at = time.monotonic()
        if self.concurrency is None:
            hook, failure = self.run_hook(target, queued)
            results, logs = dict(target.ctx.action_results or {}), list(target.ctx.action_logs)
        else:
            target.action = queued
            while queued.seq not in self._landed_actions:
                if self.step() is None:
                    time.sleep(PUMP_INTERVAL)
            running = self._landed_actions.pop(queued.seq)
            hook, failure, results, logs = (
                running.hook,
                running.failure,
                running.results,
                running.logs,
            )
        if hook.error:
            raise RuntimeError(f"action {name} crashed on {target.name}: {hook.error}")
        return ActionResult(results, failure, logs, hook)

    def elect(self, index: int) -> None:
        """Move leadership: the new leader gets leader-elected.

        Concurrent: Juju's lease keeps the old leader leading while its hook runs; the move
        happens when that hook has ended, before the old leader starts another.
        """
        if self.concurrency is not None:
            self._electing = index
            self._hand_over_leadership()
            return
        self._elect_now(index)

    def _elect_now(self, index: int) -> None:
        self.leader = index
        if index in self.units:
            self._enqueue(self.units[index], "leader_elected")

    def update_status(self) -> None:
        """Fire update-status on every unit."""
        for unit in self.units.values():
            self._enqueue(unit, "update_status")

    def add_unit(self) -> Unit:
        """Scale up by one: relation-joined on both sides."""
        unit = self._add_unit(self._next_index)
        self._enqueue(unit, "pebble_ready")
        for other in self.units.values():
            if other is not unit:
                self._enqueue(other, "relation_joined", remote=unit.index)
                self._enqueue(unit, "relation_joined", remote=other.index)
        return unit

    def cut(self, index: int) -> None:
        """A network policy from now on: no other unit can connect to this unit's pod IP."""
        unit = self.units[index]
        self.network.cut[unit.address] = unit.name

    def connects_to(self, host: str, port: int | None = None) -> list[Connect]:
        """Every connect the charm made to host:port (port: the workload's API port)."""
        port = self.charm.port if port is None else port
        return [c for c in self.network.connects if (c.host, c.port) == (host, port)]

    def remove_unit(self, index: int) -> None:
        """Scale down: the unit's k6 is stopped with it; the others see relation-departed."""
        unit = self.units.pop(index)
        unit.supervisor.kill_all()
        self.departed.append(unit)
        for other in self.units.values():
            other.queue = deque(q for q in other.queue if q.args.get("remote") != index)
            self._enqueue(other, "relation_departed", remote=index)

    # ------------------------------------------------------------ pods

    def restart_pod(self, index: int) -> None:
        """The unit's pod is deleted and created again (eviction, node drain, `juju refresh`).

        After the hook in flight, Juju runs `stop` in the old pod (Kubernetes' SIGTERM); the new
        pod keeps the unit's name and its databag, its containers start empty (no processes, no
        files, no Pebble layers or notices), and it runs upgrade-charm, config-changed,
        leader-settings-changed (not on the leader), start and pebble-ready before the events
        still queued. Juju's pod-churn sequence: docs/juju-k8s.md.
        """
        unit = self.units[index]
        if any(q.kind == POD_DOWN for q in unit.queue):
            return
        sequence = ["stop", POD_DOWN, "upgrade_charm", "config_changed"]
        if index != self.leader:
            sequence.append("leader_settings_changed")
        sequence += ["start", "pebble_ready"]
        for kind in reversed(sequence):
            unit.queue.appendleft(_Queued(next(self._seq), kind, {}, time.monotonic(), True))

    def _replace_pod(self, unit: Unit) -> None:
        """The old pod is gone: its processes, files, Pebble plan and notices with it."""
        supervisor = unit.supervisor
        supervisor.kill_all()
        supervisor.services.clear()
        supervisor.notices.clear()
        supervisor.new_notices.clear()
        for stale in supervisor.notice_dir.glob("*"):
            stale.unlink(missing_ok=True)
        unit.layers = {}
        unit.pod += 1
        old = unit.workdir.with_name(f"{unit.workdir.name}.pod-{unit.pod}")
        unit.workdir.rename(old)
        unit.old_workdirs.append(old)
        unit.workdir.mkdir()
        unit.queue = deque(q for q in unit.queue if q.kind != "pebble_custom_notice")
        self.pod_log.append((time.time(), unit.name, "down"))
        if self.on_pod_restart:
            self.on_pod_restart(unit, self)

    def refresh(self) -> None:
        """`juju refresh` (same revision): Kubernetes' rolling update of the StatefulSet.

        One pod at a time, the highest unit number first; the next once the new pod is ready
        (its charm container's readiness check passes once `start` has run).
        """
        self._rollout = sorted(self.units, reverse=True)
        self._rolling = None
        self._roll()

    @property
    def refreshing(self) -> bool:
        """A rolling refresh is still replacing pods."""
        return bool(self._rollout)

    def _roll(self) -> None:
        """Replace the next pod once the one being replaced is ready (or has gone)."""
        while self._rollout:
            unit = self.units.get(self._rollout[0])
            if unit is not None and self._rolling is None:
                self._rolling = (unit.index, unit.pod + 1)
                self.restart_pod(unit.index)
                return
            if unit is not None and self._rolling and unit.ready_pod < self._rolling[1]:
                return
            self._rollout.pop(0)
            self._rolling = None

    # ------------------------------------------------------------ reading the model

    @property
    def app(self) -> dict[str, Any]:
        """The app databag, decoded."""
        return decode_databag(self.app_data)

    def unit_view(self, ref: int | str) -> dict[str, Any]:
        """A unit's databag, decoded."""
        return decode_databag(self.unit(ref).unit_data)

    def run_ended(self, run_id: str) -> bool:
        """The run is no longer active and is the last run recorded."""
        app = self.app
        return app.get("run") is None and (app.get("last_run") or {}).get("run_id") == run_id

    def finished(self, run_id: str) -> bool:
        """The run has ended and every unit's service process has exited.

        A unit reports idle on its done notice, which its service's shell sends just before it
        exits: as with real Pebble, the service stays active for those few milliseconds.
        """
        return self.run_ended(run_id) and not self.k6_running()

    def k6_running(self) -> list[str]:
        """Units whose k6 service process is alive."""
        return [
            u.name
            for u in self.units.values()
            if any(s.alive for s in u.supervisor.services.values())
        ]

    def close(self) -> list[int]:
        """Kill every process started; return the pids still alive after that (should be [])."""
        every = [*self.units.values(), *self.departed]
        for unit in every:
            unit.supervisor.kill_all()
        stuck = turns.let_run(self._baton, self._threads, timeout=30)
        if stuck:
            logging.getLogger(__name__).warning("hook threads still running: %s", stuck)
        for unit in every:
            emu_pebble.REGISTRY.pop(id(unit.ctx), None)
        if self._baton.mine:
            self._baton.give()
        self._patch.close()
        left = [pid for unit in every for pid in unit.supervisor.leftovers()]
        shutil.rmtree(self.tmp, ignore_errors=True)
        return left

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def release_frameworks(ctx: testing.Context) -> None:
    """Let the frameworks of `ctx`'s finished runs go (ops keeps every one for the process).

    `ops.Framework.on` caches its events object per framework in a WeakKeyDictionary whose value
    refers to the framework, so the key never dies: every hook's framework, charm class and
    emitted events lived as long as the test process (about 9,000 objects a schedule). In the
    soak's hour that grew each process to several GB, and Python's full collections of it took
    20-30 s, long enough to time out a settle. A unit runs one hook at a time, so every
    framework of its context is finished once its run returns.
    """
    cache = getattr(ops.Framework.__dict__.get("on"), "_cache", None)
    if cache is None:  # ops no longer caches this way: nothing to release
        return
    for framework in [f for f in list(cache.keys()) if getattr(f, "_context", None) is ctx]:
        cache.pop(framework, None)


def _charm_spec(root: Path) -> dict[str, Any]:
    """metadata, actions and config of the charm at `root` (also for subclasses elsewhere)."""

    def load(name: str) -> Any:
        path = root / name
        return yaml.safe_load(path.read_text()) if path.exists() else None

    meta = dict(load("metadata.yaml") or load("charmcraft.yaml") or {})
    actions = load("actions.yaml") or meta.pop("actions", None)
    config = load("config.yaml") or meta.pop("config", None)
    return {"meta": meta, "actions": actions, "config": config}


class _Clock:
    """The charm's `time` module: wall time plus the model's offset (for deadlines)."""

    def __init__(self, model: Model):
        self._model = model

    def time(self) -> float:
        return time.time() + self._model.clock_offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextlib.contextmanager
def _fast_scenario():
    """Hook overhead down: Scenario's per-hook temp dirs in RAM, its YAML through libyaml."""
    from scenario import _runtime

    def safe_dump(data: Any, stream: Any = None, **kwargs: Any) -> Any:
        return yaml.dump(
            data, stream, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **kwargs
        )

    def safe_load(stream: Any) -> Any:
        return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

    old_tempdir = tempfile.tempdir
    if os.access("/dev/shm", os.W_OK):
        tempfile.tempdir = "/dev/shm"
    try:
        with (
            mock.patch.object(_runtime.yaml, "safe_dump", safe_dump),
            mock.patch.object(yaml, "safe_load", safe_load),
        ):
            yield
    finally:
        tempfile.tempdir = old_tempdir


@dataclass
class ActionResult:
    """What `juju run` would show (and the action's hook, for tests)."""

    results: dict[str, Any]
    failure: str | None
    logs: list[str]
    hook: Hook | None = None

    @property
    def ok(self) -> bool:
        """The action did not fail."""
        return self.failure is None


# The uniter's resolvers, in the order it asks them (juju/juju worker/uniter/resolver.go,
# `uniterResolver.NextOp`): leadership, then the workload hook resolver that
# worker/uniter/uniter.go adds for charms with containers (pebble-ready, custom notices), then
# actions, then the lifecycle hooks, then relations, then the rest (update-status last).
_RESOLVER_ORDER = {
    "leader_elected": 0,
    "leader_settings_changed": 0,
    "pebble_ready": 1,
    "pebble_custom_notice": 1,
    "action": 2,
    "upgrade_charm": 3,
    "config_changed": 3,
    "start": 3,
    "stop": 3,
}
_RELATIONS = 4


def _juju_order(queued: _Queued) -> tuple[int, int, str, int]:
    """Sort key of a unit's pending events in the uniter's order; ties first in, first out."""
    if queued.kind in RELATION_EVENTS:
        return (_RELATIONS, *_relation_order(queued), queued.seq)
    return (_RESOLVER_ORDER.get(queued.kind, _RELATIONS + 1), 0, "", queued.seq)


def _relation_order(queued: _Queued) -> tuple[int, str]:
    """Juju's order among a relation's pending hooks (worker/uniter/relation/resolver.go).

    Unit names are compared as strings there (app/10 before app/2): so are they here.
    """
    remote = "" if queued.args.get("remote") is None else str(queued.args["remote"])
    if queued.kind == "relation_departed":
        return (0, remote)
    if queued.kind == "relation_changed" and not remote:
        return (1, remote)
    if queued.kind == "relation_joined":
        return (2, remote)
    return (3, remote)


def _changed(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[str, ...]:
    keys = set(old) | set(new)
    return tuple(sorted(k for k in keys if old.get(k) != new.get(k)))


def decode_databag(data: Mapping[str, str]) -> dict[str, Any]:
    """A databag with each JSON value decoded (a value that is not JSON stays a string)."""
    import json

    decoded = {}
    for key, value in data.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded


__all__ = [
    "HOOK_COST",
    "K8S",
    "POD_DOWN",
    "Concurrency",
    "PER_UNIT_INGRESS",
    "ActionResult",
    "Connect",
    "Hook",
    "Model",
    "Network",
    "Unit",
    "dataclasses",
    "decode_databag",
    "service_address",
    "unit_address",
]
