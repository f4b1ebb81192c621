"""K6Charm with ops.testing: every protocol transition and refusal, one hook at a time."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ops import pebble, testing

import k6
import protocol
from charm import K6Charm

ADDRESS = "127.0.0.1"  # the unit's pod IP (bind address), where FakeK6 listens
SERVICE_IP = "10.152.183.7"  # the app's Service ClusterIP: Juju's ingress-address on K8s
ENDPOINT = f"{ADDRESS}:{k6.PORT}"
SCRIPT = "export default function () {}"
SHA = __import__("hashlib").sha256(SCRIPT.encode()).hexdigest()


# ------------------------------------------------------------------ a k6 REST API double


class FakeK6:
    """Serves k6's /v1/status on 127.0.0.1:6565 and records every PATCH body."""

    def __init__(self) -> None:
        self.status = 4
        self.paused = True
        self.patches: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self) -> None:
                body = json.dumps(
                    {
                        "data": {
                            "type": "status",
                            "id": "default",
                            "attributes": {
                                "status": outer.status,
                                "paused": outer.paused,
                                "stopped": False,
                            },
                        }
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_GET(self) -> None:
                self._reply()

            def do_PATCH(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.patches.append(json.loads(self.rfile.read(length)))
                self._reply()

        self.server = ThreadingHTTPServer((ADDRESS, k6.PORT), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_k6() -> Iterator[FakeK6]:
    fake = FakeK6()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(autouse=True)
def short_arm_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit waits for its own k6 at most this long in these tests."""
    import charm

    monkeypatch.setattr(charm, "ARM_WAIT_SECONDS", 0.3)


# ------------------------------------------------------------------ state builders


def run_dict(**overrides) -> dict:
    run = protocol.Run(
        run_id="r1",
        phase=protocol.ARMING,
        participants=("k6/0", "k6/1"),
        script_name="load-test.js",
        script_sha256=SHA,
        source="config",
        created=1000.0,
        deadline=9e12,
    ).to_dict()
    run.update(overrides)
    return run


def encode(data: dict) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in data.items()}


def unit_data(**fields) -> dict[str, str]:
    base = {
        "endpoint": "",
        "status": "idle",
        "run_id": "",
        "exit_code": None,
        "error": "",
        "summary": None,
        "report": "",
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
        mounts={"work": testing.Mount(location=k6.WORKDIR, source=work)},
        **kwargs,
    )


def running(tmp_path: Path, **kwargs) -> testing.Container:
    """A container whose k6 service is in the plan and running."""
    return container(
        tmp_path,
        layers={k6.SERVICE: pebble.Layer(k6.layer("k6 run x.js"))},
        service_statuses={k6.SERVICE: pebble.ServiceStatus.ACTIVE},
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


def k6_argv(out: testing.State) -> list[str]:
    """The k6 argv inside the service's `/bin/sh -c` line."""
    command = out.get_container("k6").plan.services[k6.SERVICE].command
    sh, dash_c, line = shlex.split(command)
    assert (sh, dash_c) == ("/bin/sh", "-c")
    prefix, suffix = "trap 'true' TERM; ", "; code=$?; "
    assert line.startswith(prefix) and suffix in line
    return shlex.split(line[len(prefix) : line.index(suffix)])


# ------------------------------------------------------------------ leader-only actions


@pytest.mark.parametrize("action", ["start", "stop", "results"])
def test_non_leader_refuses_actions_with_the_leader_hint(tmp_path, action):
    context = ctx(1)

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action(action), state(tmp_path, peers(unit=1), leader=False))

    assert failure.value.message == f"run it on the leader: juju run k6/leader {action}"


def test_start_without_any_script_says_how_to_give_one(tmp_path):
    context = ctx()

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start"), state(tmp_path, config={}))

    assert "no test to run" in failure.value.message
    assert "load-test" in failure.value.message


def test_start_while_a_run_is_active_is_refused(tmp_path):
    context = ctx()
    relation = peers(app={"status": "busy", "run": run_dict(), "script": SCRIPT})

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start"), state(tmp_path, relation))

    assert "run r1 is already active (arming)" in failure.value.message


def test_start_with_unreachable_container_fails_clearly(tmp_path):
    context = ctx()
    st = state(tmp_path, containers={container(tmp_path, can_connect=False)})

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start"), st)

    assert "container is unreachable" in failure.value.message


def test_start_with_two_sources_is_refused(tmp_path):
    context = ctx()

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(
            context.on.action("start", params={"script": SCRIPT, "test": "a.js", "app": "x"}),
            state(tmp_path),
        )

    assert "exactly one of test, script, url" in failure.value.message


# ------------------------------------------------------------------ start → arm → resume


def test_single_unit_start_resumes_in_same_hook(tmp_path, fake_k6):
    context = ctx()
    st = state(tmp_path, peers(others={}))

    out = context.run(context.on.action("start"), st)

    app = app_of(out)
    assert app["run"]["phase"] == protocol.RUNNING
    assert app["run"]["participants"] == ["k6/0"]
    assert fake_k6.patches == [
        {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
    ]
    sent, acked = app["run"]["resumed"]["k6/0"]
    assert sent <= acked
    assert me_of(out)["status"] == protocol.BUSY
    assert context.action_results is not None
    assert context.action_results["units"] == "k6/0"
    assert "started on 1 unit" in context.action_results["message"]


def test_start_arms_leader_and_waits_for_the_others(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    app = app_of(out)
    assert app["status"] == "busy"
    assert app["run"]["phase"] == protocol.ARMING
    assert app["run"]["participants"] == ["k6/0", "k6/1"]
    assert app["script"] == SCRIPT
    assert app["run"]["script_sha256"] == SHA
    assert me_of(out) | {} == me_of(out) and me_of(out)["status"] == protocol.BUSY
    assert me_of(out)["endpoint"] == ENDPOINT
    assert fake_k6.patches == []
    assert out.app_status == testing.MaintenanceStatus("arming 1/2")
    assert "armed on 2 unit(s)" in context.action_results["message"]


def test_unit_publishes_its_pod_ip_not_the_shared_ingress_address(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    assert me_of(out)["endpoint"] == f"{ADDRESS}:{k6.PORT}"
    assert SERVICE_IP not in json.dumps(app_of(out)) + json.dumps(me_of(out))


def test_ipv6_pod_ip_is_published_bracketed(tmp_path):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path, bind="fd00:10:1::5"))

    assert me_of(out)["endpoint"] == f"[fd00:10:1::5]:{k6.PORT}"
    argv = k6_argv(out)
    assert argv[argv.index("--address") + 1] == f"[fd00:10:1::5]:{k6.PORT}"


def test_arming_service_is_one_shot_and_runs_the_pushed_script(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    service = out.get_container("k6").plan.services[k6.SERVICE]
    assert service.on_success == "ignore"
    assert service.on_failure == "ignore"
    assert service.startup == "disabled"
    assert service.working_dir == k6.WORKDIR
    assert (tmp_path / "work" / "tests" / "load-test.js").read_text() == SCRIPT
    argv = k6_argv(out)
    assert argv[:5] == ["k6", "run", "--paused", "--address", ENDPOINT]
    assert argv[-1] == "tests/load-test.js"
    assert "--execution-segment" in argv
    assert argv[argv.index("--execution-segment") + 1] == "0:1/2"
    assert "run_id=" + app_of(out)["run"]["run_id"] in argv


def test_participant_arms_its_own_segment_on_relation_changed(tmp_path, fake_k6):
    context = ctx(1)
    relation = peers(
        unit=1,
        app={"status": "busy", "run": run_dict(), "script": SCRIPT},
        others={0: unit_data(status="busy", run_id="r1", endpoint="127.0.0.9:6565")},
    )

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False),
    )

    argv = k6_argv(out)
    assert argv[argv.index("--execution-segment") + 1] == "1/2:1"
    assert argv[argv.index("--execution-segment-sequence") + 1] == "0,1/2,1"
    assert me_of(out)["status"] == protocol.BUSY
    assert me_of(out)["run_id"] == "r1"
    assert out.get_container("k6").service_statuses[k6.SERVICE] == pebble.ServiceStatus.ACTIVE


def test_participant_refuses_a_script_whose_digest_does_not_match(tmp_path, fake_k6):
    context = ctx(1)
    relation = peers(
        unit=1, app={"status": "busy", "run": run_dict(), "script": SCRIPT + "tampered"}
    )

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False),
    )

    mine = me_of(out)
    assert mine["status"] == protocol.IDLE and mine["run_id"] == "r1"
    assert "sha256" in mine["error"]
    assert k6.SERVICE not in out.get_container("k6").plan.services


def test_hostile_environment_value_stays_one_argument(tmp_path, fake_k6):
    hostile = "x'; touch /tmp/pwned; '"
    context = ctx()
    config = {"load-test": SCRIPT, "environment": f'EVIL="{hostile}"'}

    out = context.run(context.on.action("start"), state(tmp_path, config=config))

    argv = k6_argv(out)
    assert argv[argv.index("-e") + 1] == f"EVIL={hostile}"


def leader_sees_every_participant_armed(
    tmp_path, mine: str = ENDPOINT, other: str = ENDPOINT
) -> testing.State:
    """Run the leader's relation-changed from k6/1 when both units are armed for run r1."""
    context = ctx()
    relation = peers(
        app={"status": "busy", "run": run_dict(), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=mine),
        others={1: unit_data(status="busy", run_id="r1", endpoint=other)},
    )
    st = state(tmp_path, relation, containers={running(tmp_path)})
    return context.run(context.on.relation_changed(relation, remote_unit=1), st)


def test_leader_resumes_everyone_when_the_last_participant_reports_busy(tmp_path, fake_k6):
    out = leader_sees_every_participant_armed(tmp_path)

    assert app_of(out)["run"]["phase"] == protocol.RUNNING
    assert len(fake_k6.patches) == 2
    assert set(app_of(out)["run"]["resumed"]) == {"k6/0", "k6/1"}
    assert out.app_status.name == "active"
    assert out.app_status.message.startswith("running 2/2 units, ")
    assert out.app_status.message.endswith("s")


def test_failed_resume_aborts_the_run(tmp_path):
    out = leader_sees_every_participant_armed(tmp_path, "127.0.0.1:1", "127.0.0.1:1")

    run = app_of(out)["run"]
    assert run["phase"] == protocol.STOPPING
    assert run["reason"].startswith("resume failed: k6/0: connect failed")


def test_resume_with_one_unreachable_unit_resumes_nobody_and_names_it(tmp_path, fake_k6):
    out = leader_sees_every_participant_armed(tmp_path, other="127.0.0.1:1")

    run = app_of(out)["run"]
    assert run["phase"] == protocol.STOPPING
    assert run["reason"].startswith("resume failed: k6/1: connect failed after 3 attempts: ")
    assert "k6/0" not in run["reason"]
    assert run["resumed"] == {"k6/0": [None, None], "k6/1": [None, None]}
    assert {"paused": False} not in [p["data"]["attributes"] for p in fake_k6.patches]


def test_arm_that_exits_quickly_reports_k6s_exit_code(tmp_path, monkeypatch):
    def exited_quickly(self, *names):
        err = (
            "cannot perform the following tasks:\n"
            '- Start service "k6" (service start attempt: exited quickly with code 107, '
            "will ignore)"
        )
        raise pebble.ChangeError(err, None)  # type: ignore[arg-type]

    monkeypatch.setattr("ops.Container.restart", exited_quickly)
    notice = testing.Notice(k6.NOTICE_KEY, last_data={"run_id": "r1", "exit_code": "107"})
    context = ctx(1)
    relation = peers(unit=1, app={"status": "busy", "run": run_dict(), "script": SCRIPT})
    st = state(
        tmp_path, relation, leader=False, containers={container(tmp_path, notices=[notice])}
    )

    out = context.run(context.on.relation_changed(relation, remote_unit=0), st)

    mine = me_of(out)
    assert (mine["status"], mine["run_id"], mine["exit_code"]) == ("idle", "r1", 107)
    assert mine["error"] == (
        'Start service "k6" (service start attempt: exited quickly with code 107, will ignore)'
    )


def test_leader_aborts_when_a_participant_failed_before_the_start(tmp_path, fake_k6):
    context = ctx()
    relation = peers(
        app={"status": "busy", "run": run_dict(), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
        others={1: unit_data(status="idle", run_id="r1", exit_code=107, error="bad script")},
    )

    out = context.run(
        context.on.relation_changed(relation, remote_unit=1),
        state(tmp_path, relation, containers={running(tmp_path)}),
    )

    last = app_of(out)["last_run"]
    assert app_of(out)["run"] is None
    assert last["outcome"] == "failed"
    assert "failed before the start: k6/1 (exit code 107: bad script)" in last["reason"]
    assert [p["data"]["attributes"] for p in fake_k6.patches] == [{"stopped": True}]
    assert out.get_container("k6").service_statuses[k6.SERVICE] == pebble.ServiceStatus.INACTIVE


def test_leader_aborts_on_update_status_after_the_arm_deadline(tmp_path, fake_k6):
    context = ctx()
    relation = peers(
        app={"status": "busy", "run": run_dict(deadline=1.0), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
        others={1: unit_data()},
    )

    out = context.run(
        context.on.update_status(), state(tmp_path, relation, containers={running(tmp_path)})
    )

    last = app_of(out)["last_run"]
    assert app_of(out)["run"] is None
    assert last["reason"] == "not armed within the arm-timeout: k6/1"
    assert last["units"]["k6/1"]["exit_code"] is None


# ------------------------------------------------------------------ done, stale, finish


def participant_gets_done_notice(tmp_path, exit_code: str) -> testing.State:
    """k6/1, busy in running run r1, gets k6's done-notice."""
    notice = testing.Notice(k6.NOTICE_KEY, last_data={"run_id": "r1", "exit_code": exit_code})
    cont = container(tmp_path, notices=[notice])
    relation = peers(
        unit=1,
        app={"status": "busy", "run": run_dict(phase="running"), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
    )
    context = ctx(1)
    return context.run(
        context.on.pebble_custom_notice(cont, notice),
        state(tmp_path, relation, leader=False, containers={cont}),
    )


def test_done_notice_for_the_current_run_reports_exit_code_and_summary(tmp_path):
    (tmp_path / "work").mkdir()
    summary = {
        "metrics": {
            "http_reqs": {"count": 7, "rate": 7.0},
            "iterations": {"count": 7, "rate": 7.0},
        },
        "root_group": {},
    }
    (tmp_path / "work" / k6.SUMMARY_FILE).write_text(json.dumps(summary))

    mine = me_of(participant_gets_done_notice(tmp_path, "0"))

    assert (mine["status"], mine["run_id"], mine["exit_code"]) == ("idle", "r1", 0)
    assert mine["summary"]["counters"]["http_reqs"] == 7


def test_done_notice_for_another_run_is_ignored(tmp_path):
    notice = testing.Notice(k6.NOTICE_KEY, last_data={"run_id": "old", "exit_code": "0"})
    cont = running(tmp_path, notices=[notice])
    me = unit_data(status="busy", run_id="r1", endpoint=ENDPOINT)
    relation = peers(
        unit=1, app={"status": "busy", "run": run_dict(phase="running"), "script": SCRIPT}, me=me
    )
    context = ctx(1)

    out = context.run(
        context.on.pebble_custom_notice(cont, notice),
        state(tmp_path, relation, leader=False, containers={cont}),
    )

    assert out.get_relation(900).local_unit_data == me


def test_leader_finishes_when_every_participant_is_idle(tmp_path):
    notice = testing.Notice(k6.NOTICE_KEY, last_data={"run_id": "r1", "exit_code": "0"})
    cont = container(tmp_path, notices=[notice])
    resumed = {"k6/0": [100.0, 100.001], "k6/1": [100.0, 100.003]}
    relation = peers(
        app={
            "status": "busy",
            "run": run_dict(phase="running", resumed=resumed),
            "script": SCRIPT,
        },
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
        others={1: unit_data(status="idle", run_id="r1", exit_code=0)},
    )
    context = ctx()

    out = context.run(
        context.on.pebble_custom_notice(cont, notice), state(tmp_path, relation, containers={cont})
    )

    app = app_of(out)
    assert app["run"] is None and app["status"] == "idle" and app["script"] == ""
    last = app["last_run"]
    assert last["outcome"] == "passed"
    assert {u: r["exit_code"] for u, r in last["units"].items()} == {"k6/0": 0, "k6/1": 0}
    assert last["spread_ms"] == pytest.approx(2.0)
    assert out.app_status == testing.ActiveStatus("idle; last run r1 passed")


def test_unit_whose_k6_vanished_without_notice_reports_it(tmp_path):
    relation = peers(
        unit=1,
        app={"status": "busy", "run": run_dict(phase="running"), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
    )
    context = ctx(1)

    out = context.run(context.on.update_status(), state(tmp_path, relation, leader=False))

    mine = me_of(out)
    assert (mine["status"], mine["exit_code"]) == ("idle", None)
    assert mine["error"] == "k6 ended without a done notice"


# ------------------------------------------------------------------ stop


def test_stop_when_idle_is_a_clear_no_op(tmp_path):
    context = ctx()

    out = context.run(context.on.action("stop"), state(tmp_path))

    assert context.action_results == {"message": "no active run; nothing to stop"}
    assert app_of(out) == {}


def test_stop_while_running_patches_stop_and_stops_own_service(tmp_path, fake_k6):
    cont = running(tmp_path)
    relation = peers(
        app={"status": "busy", "run": run_dict(phase="running"), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
        others={1: unit_data(status="busy", run_id="r1", endpoint=ENDPOINT)},
    )
    context = ctx()

    out = context.run(context.on.action("stop"), state(tmp_path, relation, containers={cont}))

    assert [p["data"]["attributes"] for p in fake_k6.patches] == [{"stopped": True}] * 2
    assert app_of(out)["run"]["phase"] == protocol.STOPPING
    assert app_of(out)["run"]["reason"] == protocol.STOPPED_BY_USER
    assert out.get_container("k6").service_statuses[k6.SERVICE] == pebble.ServiceStatus.INACTIVE
    assert me_of(out)["status"] == protocol.IDLE
    assert "stopping run r1 (running)" in context.action_results["message"]


def test_unit_stops_its_k6_when_the_run_goes_stopping(tmp_path):
    cont = running(tmp_path)
    relation = peers(
        unit=1,
        app={
            "status": "busy",
            "run": run_dict(phase="stopping", reason="stopped by user"),
            "script": SCRIPT,
        },
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
    )
    context = ctx(1)

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False, containers={cont}),
    )

    assert out.get_container("k6").service_statuses[k6.SERVICE] == pebble.ServiceStatus.INACTIVE
    assert me_of(out)["status"] == protocol.IDLE


# ------------------------------------------------------------------ config, status, list, results


def test_invalid_environment_blocks_naming_the_entry(tmp_path):
    context = ctx()
    config = {"load-test": SCRIPT, "environment": "GOOD=1,not a pair"}

    out = context.run(context.on.config_changed(), state(tmp_path, config=config))

    assert out.unit_status.name == "blocked"
    assert "'not a pair'" in out.unit_status.message


def test_idle_hook_makes_no_pebble_or_http_call(tmp_path):
    context = ctx(1)
    cont = container(tmp_path, can_connect=False)  # any Pebble call would fail loudly

    out = context.run(
        context.on.update_status(), state(tmp_path, peers(unit=1), leader=False, containers={cont})
    )

    assert out.unit_status == testing.ActiveStatus("idle")


def test_list_shows_the_config_test(tmp_path):
    context = ctx()

    context.run(context.on.action("list"), state(tmp_path))

    assert context.action_results["tests"]["config"] == {"load-test": f"{len(SCRIPT)} bytes"}


def test_results_without_any_run_fails_clearly(tmp_path):
    context = ctx()

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("results"), state(tmp_path))

    assert failure.value.message == "no run has ended yet"


# ------------------------------------------------------------------ test sources


def provider(app: str, raw: str) -> testing.Relation:
    return testing.Relation("receive-k6-tests", remote_app_name=app, remote_app_data={"k6": raw})


GOOD = json.dumps({"tests": {"smoke.js": SCRIPT}, "environment": {"TARGET": "http://a", "X": "1"}})


def test_start_runs_a_related_apps_test_with_its_environment_overridden_by_config(
    tmp_path, fake_k6
):
    context = ctx()
    st = state(
        tmp_path,
        config={"environment": "X=2"},
        relations={peers(others={}), provider("webapp", GOOD)},
    )

    out = context.run(context.on.action("start", params={"app": "webapp", "test": "smoke.js"}), st)

    run = app_of(out)["run"]
    assert (run["script_name"], run["source"]) == ("smoke.js", "app:webapp")
    assert run["environment"] == {"TARGET": "http://a", "X": "2"}
    argv = k6_argv(out)
    assert argv[-1] == "tests/smoke.js"
    assert "TARGET=http://a" in argv and "X=2" in argv


@pytest.mark.parametrize(
    "params, message",
    [
        ({"app": "webapp", "test": "../etc/passwd"}, "not a plain file name"),
        ({"app": "webapp", "test": "missing.js"}, "provides no test 'missing.js'"),
        ({"app": "nobody", "test": "smoke.js"}, "no related app 'nobody'"),
        ({"test": "smoke.js"}, "`test` needs `app`"),
        ({"app": "webapp"}, "`app` needs `test`"),
        ({"app": "broken", "test": "smoke.js"}, "unusable"),
        ({"url": "file:///etc/passwd"}, "http"),
        ({"url": "http://x/`${a}`\n"}, "url"),
        ({"script": "x" * (300 * 1024)}, "limit"),
    ],
)
def test_bad_start_input_fails_with_a_clear_message(tmp_path, params, message):
    context = ctx()
    relations = {peers(others={}), provider("webapp", GOOD), provider("broken", "{not json")}
    st = state(tmp_path, relations=relations)

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start", params=params), st)

    assert message.lower() in failure.value.message.lower()


def test_start_with_url_renders_a_quick_test(tmp_path, fake_k6):
    context = ctx()

    out = context.run(
        context.on.action("start", params={"url": "http://127.0.0.1:9/x", "vus": 3}),
        state(tmp_path, peers(others={})),
    )

    script = (tmp_path / "work" / "tests" / "quick-test.js").read_text()
    assert '"http://127.0.0.1:9/x"' in script
    assert app_of(out)["run"]["source"] == "quick"
    assert app_of(out)["run"]["expected_s"] == 30.0
    assert out.app_status.message.startswith("running 1/1 units, ")
    assert out.app_status.message.endswith("s of 30s")


def test_list_shows_related_tests_and_notes_unusable_providers(tmp_path):
    context = ctx()
    relations = {peers(), provider("webapp", GOOD), provider("broken", "{not json")}

    context.run(context.on.action("list"), state(tmp_path, relations=relations))

    tests = context.action_results["tests"]
    assert tests["webapp"] == {"tests": "smoke.js"}
    assert tests["broken"]["tests"] == ""
    assert "JSON" in tests["broken"]["error"] or "json" in tests["broken"]["error"]


# ------------------------------------------------------------------ grafana dashboard


@pytest.mark.parametrize("leader", [True, False])
def test_leader_publishes_the_dashboard_when_grafana_relates(tmp_path, leader):
    import dashboard

    relation = testing.Relation("grafana-dashboard", remote_app_name="grafana")
    context = ctx(0 if leader else 1)
    st = state(tmp_path, leader=leader, relations={peers(unit=0 if leader else 1), relation})

    out = context.run(context.on.relation_created(relation), st)

    published = out.get_relation(relation.id).local_app_data
    assert published == (dashboard.dashboard_databag("k6-k8s") if leader else {})


def test_leader_probes_a_participant_that_was_still_initializing_and_resumes(tmp_path, fake_k6):
    context = ctx()
    relation = peers(
        app={"status": "busy", "run": run_dict(), "script": SCRIPT},
        me=unit_data(status="busy", run_id="r1", endpoint=ENDPOINT),
        others={1: unit_data(status="arming", run_id="r1", endpoint=ENDPOINT)},
    )

    out = context.run(
        context.on.update_status(), state(tmp_path, relation, containers={running(tmp_path)})
    )

    assert app_of(out)["run"]["phase"] == protocol.RUNNING
    assert [p["data"]["attributes"] for p in fake_k6.patches] == [{"paused": False}] * 2
