"""Pebble, emulated with real processes: the services a unit's plan starts really run here.

ops.testing's mock Pebble client is patched (only for contexts registered by the emulator) so
that start/stop/restart run, signal and wait for real processes with Pebble's semantics.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import pebble
from scenario import mocking

FAKE_PEBBLE = Path(__file__).resolve().parent / "bin" / "pebble"
CHARM_PEBBLE = "/charm/bin/pebble"
START_OKAY_DELAY = 1.0  # Pebble's: a process that exits within 1 s fails the start
BACKOFF_START, BACKOFF_LIMIT = 0.5, 30.0


def parse_duration(text: str | None, default: float) -> float:
    """Pebble duration strings such as '5s', '500ms', '1m'."""
    if not text:
        return default
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


@dataclass
class Service:
    """One service's live process and Pebble bookkeeping."""

    name: str
    spec: dict[str, Any]
    process: subprocess.Popen | None = None
    exit_code: int | None = None
    backoff: float = BACKOFF_START
    restart_at: float | None = None
    starts: int = 0
    stopped_by_user: bool = True
    failed: bool = False  # Pebble's state error

    @property
    def alive(self) -> bool:
        """The process is running now."""
        return self.process is not None and self.process.poll() is None


@dataclass
class Supervisor:
    """One unit's Pebble: real processes, notices from `pebble notify`, container paths mapped."""

    unit: str
    mounts: dict[str, Path]  # container location -> host directory
    notice_dir: Path
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    notices: dict[str, pebble.Notice] = field(default_factory=dict)
    new_notices: list[pebble.Notice] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    okay_delay: float = START_OKAY_DELAY
    path_prefix: str = ""  # folder put first on PATH (e.g. a k6 stand-in)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _notice_seq: int = 0

    # ------------------------------------------------------------ paths and commands

    def host_path(self, container_path: str) -> str:
        """Map a container path to the host directory mounted there."""
        for location, source in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if container_path == location or container_path.startswith(location + "/"):
                return str(source) + container_path[len(location) :]
        return container_path

    def argv(self, command: str) -> list[str]:
        """Split the command like Pebble does; point `/charm/bin/pebble` at the emulator's."""
        return [arg.replace(CHARM_PEBBLE, str(FAKE_PEBBLE)) for arg in shlex.split(command)]

    def _spawn(self, service: Service) -> None:
        spec = service.spec
        env = {**os.environ, **self.extra_env, **spec.get("environment", {})}
        env["K6EMU_NOTICE_DIR"] = str(self.notice_dir)
        env["K6EMU_PYTHON"] = sys.executable
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        if self.path_prefix:
            env["PATH"] = f"{self.path_prefix}:{env['PATH']}"
        cwd = self.host_path(spec.get("working-dir") or "/")
        log = open(self.log_dir / f"{service.name}.log", "ab")  # noqa: SIM115
        try:
            service.process = self._popen(spec, env, cwd, log)
        except (OSError, ValueError) as e:  # what Pebble reports when it cannot exec
            raise _change_error(service.name, f"cannot start service: {e}") from None
        finally:
            log.close()
        service.starts += 1
        service.exit_code = None
        self.pids.append(service.process.pid)

    def _popen(self, spec: dict[str, Any], env: dict, cwd: str, log: Any) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(spec["command"]),
            cwd=cwd if os.path.isdir(cwd) else None,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as Pebble does
        )

    # ------------------------------------------------------------ Pebble operations

    def start(self, name: str, spec: dict[str, Any]) -> None:
        """Start a service and wait Pebble's okay-delay; a quick exit fails the start.

        As real Pebble (servstate/handlers.go; measured on v1.32.1): the change fails "exited
        quickly with code N, will <action>" for any code, 0 included; then the service's exit
        policy applies as for any exit: `ignore` leaves it in state error (inactive for code
        0), `restart` (the default) restarts it with backoff.
        """
        self.calls.append(f"start {name}")
        service = self.services.get(name)
        if service is not None and service.alive:
            return
        service = Service(name, dict(spec), stopped_by_user=False)
        self.services[name] = service
        self._spawn(service)
        deadline = time.monotonic() + self.okay_delay
        while time.monotonic() < deadline:
            if service.process.poll() is not None:  # type: ignore[union-attr]
                code = service.process.returncode  # type: ignore[union-attr]
                action = self._exited(service, code)
                self.ingest()
                raise _change_error(
                    name,
                    f"service start attempt: exited quickly with code {service.exit_code}, "
                    f"will {action}",
                )
            time.sleep(0.01)

    def stop(self, name: str) -> None:
        """SIGTERM the process group, SIGKILL after the kill-delay; wait until it is gone."""
        self.calls.append(f"stop {name}")
        service = self.services.get(name)
        if service is None:
            return
        service.stopped_by_user = True
        service.restart_at = None
        if not service.alive:
            return
        process = service.process
        assert process is not None
        kill_delay = parse_duration(service.spec.get("kill-delay"), 5.0)
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=kill_delay)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        returncode = process.returncode
        service.exit_code = 128 - returncode if returncode < 0 else returncode
        self.ingest()

    def status(self, name: str) -> pebble.ServiceStatus:
        """What Pebble would report for the service now."""
        self.poll()
        service = self.services.get(name)
        if service is None:
            return pebble.ServiceStatus.INACTIVE
        if not service.alive and service.process is not None and service.exit_code is None:
            self.poll()  # it exited just after the poll above: apply its policy before answering
        if service.alive or service.restart_at is not None:
            return pebble.ServiceStatus.ACTIVE
        if service.failed and not service.stopped_by_user:
            return pebble.ServiceStatus.ERROR
        return pebble.ServiceStatus.INACTIVE

    def poll(self) -> None:
        """Reap exits and apply the on-success/on-failure policy (restart with backoff)."""
        now = time.monotonic()
        for service in self.services.values():
            process = service.process
            if process is not None and process.poll() is not None and service.exit_code is None:
                self._exited(service, process.returncode)
            if service.restart_at is not None and now >= service.restart_at:
                service.restart_at = None
                self._spawn(service)
        self.ingest()

    def _exited(self, service: Service, returncode: int) -> str:
        """Record an exit the user did not ask for; apply the service's policy; return it."""
        # Like Pebble (Go's exit status), a process killed by signal N shows as 128 + N.
        service.exit_code = 128 - returncode if returncode < 0 else returncode
        action = service.spec.get("on-success" if returncode == 0 else "on-failure", "restart")
        if action == "restart" and not service.stopped_by_user:
            service.restart_at = time.monotonic() + service.backoff
            service.backoff = min(service.backoff * 2, BACKOFF_LIMIT)
        elif not service.stopped_by_user and service.exit_code != 0:
            service.failed = True  # Pebble's state "exited" (status error); code 0: "stopped"
        return action

    def ingest(self) -> list[pebble.Notice]:
        """Pick up `pebble notify` calls the service made; return the new notices."""
        found = []
        with self._lock:
            for path in sorted(self.notice_dir.glob("*.json")):
                try:
                    body = json.loads(path.read_text())
                except ValueError:
                    continue  # half-written; next poll
                path.unlink()
                found.append(self._record(body["key"], body["data"]))
        self.new_notices.extend(found)
        return found

    def _record(self, key: str, data: dict[str, str]) -> pebble.Notice:
        """Record one occurrence: same key → same notice, repeated with the new data."""
        self._notice_seq += 1
        now = datetime.datetime.now(tz=datetime.timezone.utc)
        old = self.notices.get(key)
        notice = pebble.Notice(
            id=old.id if old else str(self._notice_seq),
            user_id=0,
            type=pebble.NoticeType.CUSTOM.value,  # the mock client filters on the string
            key=key,
            first_occurred=old.first_occurred if old else now,
            last_occurred=now,
            last_repeated=now,
            occurrences=(old.occurrences + 1) if old else 1,
            last_data=dict(data),
        )
        self.notices[key] = notice
        return notice

    def kill_all(self) -> None:
        """Teardown: SIGKILL every process group this unit ever started."""
        for service in self.services.values():
            service.stopped_by_user = True
            service.restart_at = None
        for pid in self.pids:
            _signal_group(pid, signal.SIGKILL)
        for service in self.services.values():
            if service.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    service.process.wait(timeout=10)

    def leftovers(self, wait: float = 3.0) -> list[int]:
        """Live (non-zombie) processes in any process group this unit started."""
        groups = set(self.pids)
        deadline = time.monotonic() + wait
        while True:
            alive = [pid for pid, pgid in _live_processes() if pgid in groups]
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.05)


def _live_processes() -> list[tuple[int, int]]:
    """(pid, process group) of every process on the machine that is not a zombie."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found.append((int(entry), int(fields[2])))
    return found


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _change_error(name: str, reason: str) -> pebble.ChangeError:
    err = f'cannot perform the following tasks:\n- Start service "{name}" ({reason})'
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    change = pebble.Change(
        id=pebble.ChangeID("emu"),
        kind="start",
        summary=f'Start service "{name}"',
        status="Error",
        tasks=[],
        ready=True,
        err=err,
        spawn_time=now,
        ready_time=now,
    )
    return pebble.ChangeError(err, change)


# ------------------------------------------------------------ patching ops.testing

REGISTRY: dict[int, Supervisor] = {}  # id(Context) -> that unit's supervisor
_Client = mocking._MockPebbleClient
_RECORDED = ("push", "pull", "exec", "add_layer", "remove_path", "list_files", "make_dir")
_SERVED = (
    "start_services",
    "stop_services",
    "restart_services",
    "get_services",
    "get_notices",
    "replan_services",
)
_ORIGINAL = {name: getattr(_Client, name) for name in (*_SERVED, *_RECORDED)}


def _supervisor(client: Any) -> Supervisor | None:
    return REGISTRY.get(id(client._context))


def _plan_spec(client: Any, name: str) -> dict[str, Any]:
    service = client.get_plan().services.get(name)
    if service is None:
        raise client._api_error(400, f"cannot start services: service {name} does not exist")
    return service.to_dict()


def _start_services(self: Any, services: list[str], timeout: float = 30.0, delay: float = 0.1):
    sup = _supervisor(self)
    if sup is None:
        return _ORIGINAL["start_services"](self, services, timeout, delay)
    for name in services:
        try:
            sup.start(name, _plan_spec(self, name))
        finally:
            self._service_status[name] = sup.status(name)
    return None


def _stop_services(self: Any, services: list[str], timeout: float = 30.0, delay: float = 0.1):
    sup = _supervisor(self)
    if sup is None:
        return _ORIGINAL["stop_services"](self, services, timeout, delay)
    for name in services:
        sup.stop(name)
        self._service_status[name] = sup.status(name)
    return None


def _restart_services(self: Any, services: list[str], timeout: float = 30.0, delay: float = 0.1):
    sup = _supervisor(self)
    if sup is None:
        return _ORIGINAL["restart_services"](self, services, timeout, delay)
    for name in services:
        sup.stop(name)
    return _start_services(self, services, timeout, delay)


def _replan_services(self: Any, timeout: float = 30.0, delay: float = 0.1):
    sup = _supervisor(self)
    if sup is None:
        return _ORIGINAL["replan_services"](self, timeout, delay)
    plan = self.get_plan()
    wanted = [n for n, s in plan.services.items() if s.startup == pebble.ServiceStartup.ENABLED]
    for name in wanted:
        sup.stop(name)
    return _start_services(self, wanted, timeout, delay)


def _get_services(self: Any, names: list[str] | None = None):
    sup = _supervisor(self)
    if sup is not None:
        for name in sup.services:
            self._service_status[name] = sup.status(name)
        sup.calls.append("get_services")
    return _ORIGINAL["get_services"](self, names)


def _get_notices(self: Any, **kwargs: Any):
    sup = _supervisor(self)
    if sup is not None:
        sup.ingest()
        for notice in sup.notices.values():
            self._notices[(pebble.NoticeType.CUSTOM.value, notice.key)] = notice
        sup.calls.append("get_notices")
    return _ORIGINAL["get_notices"](self, **kwargs)


def _recording(name: str) -> Any:
    """Wrap a mock-client call so the unit's supervisor counts it (for per-hook costs)."""

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        sup = _supervisor(self)
        if sup is not None:
            sup.calls.append(name)
        return _ORIGINAL[name](self, *args, **kwargs)

    return call


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """Route the mock Pebble client's service calls to real processes while active."""
    replacements = {
        "start_services": _start_services,
        "stop_services": _stop_services,
        "restart_services": _restart_services,
        "replan_services": _replan_services,
        "get_services": _get_services,
        "get_notices": _get_notices,
        **{name: _recording(name) for name in _RECORDED},
    }
    for name, function in replacements.items():
        setattr(_Client, name, function)
    try:
        yield
    finally:
        for name, function in _ORIGINAL.items():
            setattr(_Client, name, function)
