"""ops.testing states for K6Charm: the peer relation, databags, container and network of a unit.

Shared by the charm's unit tests (tests/unit/test_charm.py, tests/unit/test_bad_input.py). The
run is `r1` over k6/0 and k6/1 unless a test says otherwise.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from charms.k6_k8s.v0.synchronized_task import ARMING, Run, digest
from ops import pebble, testing

import k6_client
from charm import K6Charm
from k6_workload import NOTICE_KEY, SERVICE, WORKDIR

ADDRESS = "127.0.0.1"  # the unit's pod IP (bind address), where a test's k6 double listens
SERVICE_IP = "10.152.183.7"  # the app's Service ClusterIP: Juju's ingress-address on K8s
SCRIPT = "export default function () {}"
PAYLOAD = {"script_name": "load-test.js", "script": SCRIPT, "environment": {}}


def endpoint(address: str = ADDRESS) -> str:
    """Where this unit's k6 API is: k6_client.PORT as it is now (tests give it a free port)."""
    return f"{address}:{k6_client.PORT}"


def run_dict(**overrides) -> dict:
    run = Run(
        run_id="r1",
        phase=ARMING,
        participants=("k6/0", "k6/1"),
        created=1000.0,
        deadline=9e12,
        payload_sha256=digest(PAYLOAD),
        info={"source": "config", "script_name": "load-test.js", "thresholds": ""},
    ).to_dict()
    run.update(overrides)
    return run


def app_data(run: dict | None = None, payload: dict | None = None, **extra) -> dict:
    """The leader's app databag (decoded): an active run and its payload."""
    return {"run": run or run_dict(), "payload": PAYLOAD if payload is None else payload, **extra}


def encode(data: dict) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in data.items()}


def unit_data(**fields) -> dict[str, str]:
    base = {
        "endpoint": "",
        "status": "idle",
        "run_id": "",
        "exit_code": None,
        "error": "",
        "result": None,
        "started_at": None,
    }
    base.update(fields)
    return encode(base)


def peers(
    app: dict | None = None,
    me: dict | None = None,
    others: dict[int, dict] | None = None,
    unit: int = 0,
) -> testing.PeerRelation:
    """The peer relation seen from unit `unit` (default: the other of k6/0, k6/1 is a peer)."""
    return testing.PeerRelation(
        "k6",
        id=900,
        local_app_data=encode(app or {}),
        local_unit_data=me if me is not None else unit_data(),
        peers_data=others if others is not None else {1 - unit: unit_data()},
    )


def container(tmp_path: Path, can_connect: bool = True, **kwargs) -> testing.Container:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return testing.Container(
        "k6",
        can_connect=can_connect,
        mounts={"work": testing.Mount(location=WORKDIR, source=work)},
        **kwargs,
    )


def running(tmp_path: Path, **kwargs) -> testing.Container:
    """A container whose k6 service is in the plan and running."""
    return container(
        tmp_path,
        layers={SERVICE: pebble.Layer({"services": {SERVICE: {"command": "k6 run x.js"}}})},
        service_statuses={SERVICE: pebble.ServiceStatus.ACTIVE},
        **kwargs,
    )


def state(
    tmp_path: Path,
    relation: testing.PeerRelation | None = None,
    leader: bool = True,
    config: dict | None = None,
    bind: str = ADDRESS,
    **kwargs,
) -> testing.State:
    network = testing.Network(
        "k6",
        bind_addresses=[testing.BindAddress([testing.Address(bind)])],
        ingress_addresses=[SERVICE_IP],
    )
    kwargs.setdefault("containers", {container(tmp_path)})
    kwargs.setdefault("relations", {relation or peers()})
    return testing.State(
        leader=leader,
        networks={network},
        config=config if config is not None else {"load-test": SCRIPT},
        **kwargs,
    )


def ctx(unit_id: int = 0) -> testing.Context:
    return testing.Context(K6Charm, unit_id=unit_id, app_name="k6")


def app_of(out: testing.State) -> dict:
    return {k: json.loads(v) for k, v in out.get_relation(900).local_app_data.items()}


def me_of(out: testing.State) -> dict:
    return {k: json.loads(v) for k, v in out.get_relation(900).local_unit_data.items()}


def service_parts(command: str) -> tuple[list[str], list[str]]:
    """(`k6 inspect` argv, `k6 run` argv) inside a k6 service command.

    The command is `/bin/sh -c "trap ...; sh -c '<inspect> > options.json && exec <run>'; ..."`.
    """
    sh, dash_c, line = shlex.split(command)
    assert (sh, dash_c) == ("/bin/sh", "-c")
    prefix, suffix = "trap 'true' TERM; ", "; code=$?; "
    assert line.startswith(prefix) and suffix in line
    child, child_c, inner = shlex.split(line[len(prefix) : line.index(suffix)])
    assert (child, child_c) == ("sh", "-c")
    inspect, separator, run = inner.partition(" > options.json && exec ")
    assert separator, inner
    return shlex.split(inspect), shlex.split(run)


def k6_argv(out: testing.State) -> list[str]:
    """The `k6 run` argv inside the service's command."""
    return service_parts(out.get_container("k6").plan.services[SERVICE].command)[1]


def participant_gets_done_notice(tmp_path, exit_code: str) -> testing.State:
    """k6/1, busy in running run r1, gets k6's done-notice."""
    notice = testing.Notice(NOTICE_KEY, last_data={"run_id": "r1", "exit_code": exit_code})
    cont = container(tmp_path, notices=[notice])
    relation = peers(
        unit=1,
        app=app_data(run=run_dict(phase="running")),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
    )
    context = ctx(1)
    return context.run(
        context.on.pebble_custom_notice(cont, notice),
        state(tmp_path, relation, leader=False, containers={cont}),
    )
