"""A Juju model of N units of a charm on one machine: the real charm, real processes, Juju's rules.

Each unit is an ops.testing Context whose State is carried from hook to hook; relation writes
become relation-changed on the *other* units; each unit's Pebble runs real processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import logging
import os
import random
import shutil
import socket
import tempfile
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

import charm as charm_module
import k6_client
import k6_workload
from charm import K6Charm
from tests.emulator import pebble as emu_pebble

# Scenario warns at every hook that the container filesystem it rebuilds is not empty: here the
# mounts carry each unit's files from hook to hook on purpose.
logging.getLogger("ops-scenario.mocking").setLevel(logging.ERROR)

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
        self.current_unit = ""
        self.cut: dict[str, str] = {}  # address -> unit name

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


@dataclass
class Hook:
    """One hook as it ran: for tests and benchmarks."""

    unit: str
    event: str
    started: float
    duration: float
    unit_keys: tuple[str, ...] = ()
    app_keys: tuple[str, ...] = ()
    error: str | None = None
    pebble_calls: tuple[str, ...] = ()


@dataclass
class _Queued:
    seq: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


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
        for i in range(units):
            self._add_unit(i)
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
        return getattr(on, kind)()

    # ------------------------------------------------------------ running hooks

    def _enqueue(self, unit: Unit, kind: str, **args: Any) -> None:
        unit.queue.append(_Queued(next(self._seq), kind, args))

    def run_hook(self, unit: Unit, queued: _Queued) -> tuple[Hook, Any]:
        """Run one hook on one unit; commit its writes only if it succeeds."""
        state = self._state(unit)
        event = self._event(unit, state, queued)
        calls_before = len(unit.supervisor.calls)
        started = time.time()
        t0 = time.perf_counter()
        error, out, failure = None, None, None
        self.network.current_unit = unit.name
        try:
            out = unit.ctx.run(event, state)
        except testing.ActionFailed as e:
            out, failure = e.state, e.message
        except Exception as e:  # a hook error: Juju discards its writes  # noqa: BLE001
            error = f"{type(e).__name__}: {e}"
        finally:
            self.network.current_unit = ""
        duration = time.perf_counter() - t0
        label = queued.kind if queued.kind != "action" else f"{queued.args['name']}-action"
        hook = Hook(
            unit.name,
            label,
            started,
            duration,
            error=error,
            pebble_calls=tuple(unit.supervisor.calls[calls_before:]),
        )
        if out is not None:
            hook.unit_keys, hook.app_keys = self._commit(unit, out)
        self.hooks.append(hook)
        if self.on_hook:
            self.on_hook(hook, self)
        return hook, failure

    def _commit(self, unit: Unit, out: testing.State) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Carry the unit's output state; tell the other units what changed."""
        relation = out.get_relation(PEER_ID)
        new_unit, new_app = dict(relation.local_unit_data), dict(relation.local_app_data)
        unit_keys = _changed(unit.unit_data, new_unit)
        app_keys = _changed(self.app_data, new_app) if unit.index == self.leader else ()
        unit.unit_data = new_unit
        if unit.index == self.leader:
            self.app_data = new_app
        container = out.get_container(self.charm.container)
        unit.layers = dict(container.layers)
        unit.stored_states = out.stored_states
        unit.status = f"{out.unit_status.name}: {out.unit_status.message}"
        if unit_keys or app_keys:
            for other in self.units.values():
                if other is not unit:
                    self._enqueue(other, "relation_changed", remote=unit.index)
        return unit_keys, app_keys

    def _pump(self) -> None:
        """Deliver what the world did meanwhile: notices from k6, update-status ticks."""
        for unit in self.units.values():
            unit.supervisor.poll()
            while unit.supervisor.new_notices:
                notice = unit.supervisor.new_notices.pop(0)
                self._enqueue(unit, "pebble_custom_notice", key=notice.key)
        if self.update_status_interval and time.monotonic() >= self._next_update:
            self._next_update = time.monotonic() + self.update_status_interval
            for unit in self.units.values():
                self._enqueue(unit, "update_status")

    def step(self) -> Hook | None:
        """Run the next queued hook (FIFO across units, or a seeded random unit)."""
        ready = [u for u in self.units.values() if u.queue]
        if not ready:
            return None
        if self.shuffle:
            unit = self.rng.choice(ready)
        else:
            unit = min(ready, key=lambda u: u.queue[0].seq)
        hook, _ = self.run_hook(unit, unit.queue.popleft())
        return hook

    def run_hooks(self, count: int) -> int:
        """Deliver what happened and run at most `count` queued hooks; return how many ran."""
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

    def _timeout_text(self, timeout: float) -> str:
        tail = "\n".join(f"  {h.unit} {h.event} {h.error or ''}" for h in self.hooks[-15:])
        return f"not settled within {timeout}s; app data {self.app_data}; last hooks:\n{tail}"

    # ------------------------------------------------------------ what tests do

    def action(self, unit: int | str, name: str, **params: Any) -> ActionResult:
        """Run an action on a unit now (after its queued hooks), like `juju run`."""
        target = self.unit(unit)
        params = {k.replace("_", "-"): v for k, v in params.items()}
        hook, failure = self.run_hook(
            target, _Queued(next(self._seq), "action", {"name": name, "params": params})
        )
        if hook.error:
            raise RuntimeError(f"action {name} crashed on {target.name}: {hook.error}")
        return ActionResult(
            dict(target.ctx.action_results or {}), failure, list(target.ctx.action_logs)
        )

    def elect(self, index: int) -> None:
        """Move leadership: the new leader gets leader-elected."""
        self.leader = index
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

    @property
    def app(self) -> dict[str, Any]:
        """The app databag, decoded."""
        return _decode(self.app_data)

    def unit_view(self, ref: int | str) -> dict[str, Any]:
        """A unit's databag, decoded."""
        return _decode(self.unit(ref).unit_data)

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
            emu_pebble.REGISTRY.pop(id(unit.ctx), None)
        self._patch.close()
        left = [pid for unit in every for pid in unit.supervisor.leftovers()]
        shutil.rmtree(self.tmp, ignore_errors=True)
        return left

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    """What `juju run` would show."""

    results: dict[str, Any]
    failure: str | None
    logs: list[str]

    @property
    def ok(self) -> bool:
        """The action did not fail."""
        return self.failure is None


def _changed(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[str, ...]:
    keys = set(old) | set(new)
    return tuple(sorted(k for k in keys if old.get(k) != new.get(k)))


def _decode(data: Mapping[str, str]) -> dict[str, Any]:
    import json

    decoded = {}
    for key, value in data.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded


__all__ = [
    "K8S",
    "PER_UNIT_INGRESS",
    "ActionResult",
    "Connect",
    "Hook",
    "Model",
    "Network",
    "Unit",
    "dataclasses",
    "service_address",
    "unit_address",
]
