"""K6Charm with ops.testing: every protocol transition and refusal, one hook at a time."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    IDLE,
    RUNNING,
    STOPPED_BY_USER,
    STOPPING,
    digest,
)
from ops import pebble, testing
from scenario.mocking import _MockPebbleClient

import charm
import k6_client
import k6_whole_run
import k6_workload
from k6_script import ScriptOptions
from k6_workload import NOTICE_KEY, SERVICE, SUMMARY_FILE, WORKDIR
from tests.emulator.target import free_port
from tests.support.k6_charm_states import (
    ADDRESS,
    PAYLOAD,
    SCRIPT,
    SERVICE_IP,
    app_data,
    app_of,
    container,
    ctx,
    endpoint,
    k6_argv,
    me_of,
    participant_gets_done_notice,
    peers,
    run_dict,
    running,
    state,
    unit_data,
)

RESUME = {"paused": False}
STOP = {"stopped": True}


# ------------------------------------------------------------------ a k6 REST API double


class FakeK6:
    """Serves k6's /v1/status on a free port of ADDRESS and records every PATCH body."""

    def __init__(self) -> None:
        self.status = 4
        self.paused = True
        self.patches: list[dict] = []
        self.posts: list[str] = []
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

            def do_POST(self) -> None:  # /v1/setup (a script without setup()) or /v1/teardown
                outer.posts.append(self.path)
                body = b'{"data":{"type":"setupData","id":"default","attributes":{}}}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((ADDRESS, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def attributes(self) -> list[dict]:
        """The attributes of every PATCH, in order."""
        return [p["data"]["attributes"] for p in self.patches]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def k6_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """k6's API port in this test: a free one (6565 in a pod), so two test runs never meet."""
    port = free_port(ADDRESS)
    monkeypatch.setattr(k6_client, "PORT", port)
    return port


@pytest.fixture
def fake_k6(monkeypatch: pytest.MonkeyPatch, k6_port: int) -> Iterator[FakeK6]:
    """The unit's k6 API double, on the port the charm dials (bound first: no port race)."""
    fake = FakeK6()
    monkeypatch.setattr(k6_client, "PORT", fake.port)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(autouse=True)
def script_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `k6 inspect` would have printed when the unit armed (no k6 runs in these tests)."""
    monkeypatch.setattr(k6_whole_run.WholeRunSteps, "options", lambda self: ScriptOptions())


@pytest.fixture(autouse=True)
def short_arm_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit waits for its own k6 at most this long in these tests."""
    monkeypatch.setattr(k6_workload, "ARM_WAIT_SECONDS", 0.3)
    monkeypatch.setattr(k6_workload, "RECHECK_WAIT_SECONDS", 0.1)


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
    relation = peers(app=app_data())

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


# ------------------------------------------------------------------ start → arm → release


def test_single_unit_start_releases_in_same_hook(tmp_path, fake_k6):
    context = ctx()
    st = state(tmp_path, peers(others={}))

    out = context.run(context.on.action("start"), st)

    app = app_of(out)
    assert app["run"]["phase"] == RUNNING
    assert app["run"]["participants"] == ["k6/0"]
    assert fake_k6.attributes() == [RESUME]
    sent, acked = app["run"]["released"]["k6/0"]
    assert sent <= acked
    assert me_of(out)["status"] == BUSY
    assert out.unit_status == testing.ActiveStatus(f"running: run {app['run']['run_id']}")
    assert context.action_results is not None
    assert context.action_results["units"] == "k6/0"
    assert "started on 1 unit" in context.action_results["message"]


def test_start_arms_leader_and_waits_for_the_others(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    app = app_of(out)
    assert set(app) == {"run", "payload", "last_run"}
    assert app["run"]["phase"] == ARMING
    assert app["run"]["participants"] == ["k6/0", "k6/1"]
    assert app["payload"] == PAYLOAD
    assert app["payload"]["script"] == SCRIPT
    assert app["run"]["payload_sha256"] == digest(PAYLOAD)
    assert app["run"]["info"] == {
        "source": "config",
        "script_name": "load-test.js",
        "thresholds": "",
    }
    assert me_of(out)["status"] == BUSY
    assert me_of(out)["endpoint"] == endpoint()
    assert fake_k6.patches == []
    assert out.app_status == testing.MaintenanceStatus("arming 1/2")
    assert out.unit_status == testing.ActiveStatus(f"armed: run {app['run']['run_id']}")
    assert context.action_results is not None
    assert "armed on 2 unit(s)" in context.action_results["message"]


def test_unit_publishes_its_pod_ip_not_the_shared_ingress_address(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    assert me_of(out)["endpoint"] == endpoint()
    assert SERVICE_IP not in json.dumps(app_of(out)) + json.dumps(me_of(out))


def test_ipv6_pod_ip_is_published_bracketed(tmp_path):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path, bind="fd00:10:1::5"))

    assert me_of(out)["endpoint"] == endpoint("[fd00:10:1::5]")
    argv = k6_argv(out)
    assert argv[argv.index("--address") + 1] == endpoint("[fd00:10:1::5]")


def test_unit_whose_k6_is_still_initializing_reports_pending(tmp_path):
    context = ctx()  # nothing answers on the pod IP's k6 port: k6 is not paused yet

    out = context.run(context.on.action("start"), state(tmp_path, bind="fd00:10:1::5"))

    run_id = app_of(out)["run"]["run_id"]
    assert me_of(out)["status"] == "pending"
    assert out.unit_status == testing.MaintenanceStatus(f"arming run {run_id}")
    assert out.app_status == testing.MaintenanceStatus("arming 0/2")


def test_arming_service_is_one_shot_and_runs_the_pushed_script(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    service = out.get_container("k6").plan.services[SERVICE]
    assert service.on_success == "ignore"
    assert service.on_failure == "ignore"
    assert service.startup == "disabled"
    assert service.working_dir == WORKDIR
    assert (tmp_path / "work" / "tests" / "load-test.js").read_text() == SCRIPT
    argv = k6_argv(out)
    assert argv[:5] == ["k6", "run", "--paused", "--address", endpoint()]
    assert argv[-1] == "tests/load-test.js"
    assert "--execution-segment" in argv
    assert argv[argv.index("--execution-segment") + 1] == "0:1/2"
    assert "run_id=" + app_of(out)["run"]["run_id"] in argv


def test_participant_arms_its_own_segment_on_relation_changed(tmp_path, fake_k6):
    context = ctx(1)
    relation = peers(
        unit=1,
        app=app_data(),
        others={0: unit_data(status="busy", run_id="r1", endpoint=endpoint("127.0.0.9"))},
    )

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False),
    )

    argv = k6_argv(out)
    assert argv[argv.index("--execution-segment") + 1] == "1/2:1"
    assert argv[argv.index("--execution-segment-sequence") + 1] == "0,1/2,1"
    assert me_of(out)["status"] == BUSY
    assert me_of(out)["run_id"] == "r1"
    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.ACTIVE
    assert out.unit_status == testing.ActiveStatus("armed: run r1")


def test_participant_refuses_a_payload_whose_digest_does_not_match(tmp_path, fake_k6):
    context = ctx(1)
    tampered = {**PAYLOAD, "script": SCRIPT + "tampered"}
    relation = peers(unit=1, app=app_data(payload=tampered))

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False),
    )

    mine = me_of(out)
    assert mine["status"] == IDLE and mine["run_id"] == "r1"
    assert mine["error"] == "the payload in the app databag does not match its digest"
    assert SERVICE not in out.get_container("k6").plan.services
    assert out.unit_status == testing.BlockedStatus(
        "run r1 failed: k6/1 (no exit code: the payload in the app databag does not match "
        "its digest)"
    )


def test_hostile_environment_value_stays_one_argument(tmp_path, fake_k6):
    hostile = "x'; touch /tmp/pwned; '"
    context = ctx()
    config = {"load-test": SCRIPT, "environment": f'EVIL="{hostile}"'}

    out = context.run(context.on.action("start"), state(tmp_path, config=config))

    argv = k6_argv(out)
    assert argv[argv.index("-e") + 1] == f"EVIL={hostile}"


def leader_sees_every_participant_armed(
    tmp_path, mine: str | None = None, other: str | None = None
) -> testing.State:
    """Run the leader's relation-changed from k6/1 when both units are armed for run r1.

    By default setup() already ran (the run is prepared): what is tested is the release.
    """
    context = ctx()
    relation = peers(
        app=app_data(run_dict(prepared={})),
        me=unit_data(status="busy", run_id="r1", endpoint=mine or endpoint()),
        others={1: unit_data(status="busy", run_id="r1", endpoint=other or endpoint())},
    )
    st = state(tmp_path, relation, containers={running(tmp_path)})
    return context.run(context.on.relation_changed(relation, remote_unit=1), st)


def test_leader_releases_everyone_when_the_last_participant_reports_busy(tmp_path, fake_k6):
    out = leader_sees_every_participant_armed(tmp_path)

    assert app_of(out)["run"]["phase"] == RUNNING
    assert fake_k6.attributes() == [RESUME, RESUME]
    assert set(app_of(out)["run"]["released"]) == {"k6/0", "k6/1"}
    assert out.app_status.name == "active"
    assert out.app_status.message.startswith("running 2/2 units, ")
    assert out.app_status.message.endswith("s")


def leader_sees_every_participant_armed_before_setup(tmp_path) -> testing.State:
    """The leader's relation-changed from k6/1 when both are armed for r1, not yet prepared."""
    context = ctx()
    relation = peers(
        app=app_data(),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
        others={1: unit_data(status="busy", run_id="r1", endpoint=endpoint())},
    )
    st = state(tmp_path, relation, containers={running(tmp_path)})
    return context.run(context.on.relation_changed(relation, remote_unit=1), st)


def test_the_leader_runs_setup_on_its_own_k6_then_releases_everyone(tmp_path, fake_k6):
    out = leader_sees_every_participant_armed_before_setup(tmp_path)

    run = app_of(out)["run"]
    assert fake_k6.posts == ["/v1/setup"]  # once, on the leader's own k6
    assert run["phase"] == RUNNING
    assert run["prepared"]["setup_unit"] == "k6/0"
    assert run["prepared"]["setup_data"] is None  # a script without setup(): nothing to PUT
    assert fake_k6.attributes() == [RESUME, RESUME]


def test_a_setup_that_cannot_run_aborts_the_run_before_any_release(tmp_path):
    out = leader_sees_every_participant_armed_before_setup(tmp_path)  # no k6 answers there

    run = app_of(out)["run"]
    assert run["phase"] == STOPPING
    assert run["reason"].startswith(f"setup() failed on k6/0: k6 at {endpoint()} did not answer")
    assert run["prepared"] is None
    assert run["released"] == {}  # nobody released


def test_failed_release_aborts_the_run(tmp_path, dead_endpoint):
    out = leader_sees_every_participant_armed(tmp_path, dead_endpoint, dead_endpoint)

    run = app_of(out)["run"]
    assert run["phase"] == STOPPING
    assert run["reason"].startswith("release failed: k6/0: connect failed")


def test_release_with_one_unreachable_unit_releases_nobody_and_names_it(
    tmp_path, fake_k6, dead_endpoint
):
    out = leader_sees_every_participant_armed(tmp_path, other=dead_endpoint)

    run = app_of(out)["run"]
    assert run["phase"] == STOPPING
    assert run["reason"].startswith("release failed: k6/1: connect failed after 3 attempts: ")
    assert "k6/0" not in run["reason"]
    assert run["released"] == {"k6/0": [None, None], "k6/1": [None, None]}
    assert RESUME not in fake_k6.attributes()


def test_arm_that_exits_quickly_reports_k6s_exit_code(tmp_path, monkeypatch):
    def exited_quickly(self, *names):
        err = (
            "cannot perform the following tasks:\n"
            '- Start service "k6" (service start attempt: exited quickly with code 107, '
            "will ignore)"
        )
        raise pebble.ChangeError(err, None)  # type: ignore[arg-type]

    monkeypatch.setattr("ops.Container.restart", exited_quickly)
    notice = testing.Notice(NOTICE_KEY, last_data={"run_id": "r1", "exit_code": "107"})
    context = ctx(1)
    relation = peers(unit=1, app=app_data())
    st = state(
        tmp_path, relation, leader=False, containers={container(tmp_path, notices=[notice])}
    )

    out = context.run(context.on.relation_changed(relation, remote_unit=0), st)

    mine = me_of(out)
    assert (mine["status"], mine["run_id"], mine["exit_code"]) == ("idle", "r1", 107)
    assert mine["error"] == (
        'Start service "k6" (service start attempt: exited quickly with code 107, will ignore)'
    )


def test_single_unit_start_whose_k6_exits_quickly_fails_the_action_with_the_reason(
    tmp_path, monkeypatch
):
    def exited_quickly(self, *names):
        err = '- Start service "k6" (service start attempt: exited quickly with code 107)'
        raise pebble.ChangeError(err, None)  # type: ignore[arg-type]

    monkeypatch.setattr("ops.Container.restart", exited_quickly)
    context = ctx()
    st = state(tmp_path, peers(others={}))

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start"), st)

    assert failure.value.message.endswith(
        " failed: failed before the start: k6/0 (no exit code: "
        'Start service "k6" (service start attempt: exited quickly with code 107))'
    )
    assert failure.value.state is not None
    last = app_of(failure.value.state)["last_run"]
    assert failure.value.message.startswith(f"run {last['run_id']} failed: ")
    assert (last["outcome"], app_of(failure.value.state)["run"]) == ("failed", None)


def test_leader_aborts_when_a_participant_failed_before_the_start(tmp_path, fake_k6):
    context = ctx()
    relation = peers(
        app=app_data(),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
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
    assert fake_k6.attributes() == [STOP]
    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.INACTIVE


def test_leader_aborts_on_update_status_after_the_arm_deadline(tmp_path, fake_k6):
    context = ctx()
    relation = peers(
        app=app_data(run=run_dict(deadline=1.0)),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
        others={1: unit_data()},
    )

    out = context.run(
        context.on.update_status(), state(tmp_path, relation, containers={running(tmp_path)})
    )

    last = app_of(out)["last_run"]
    assert app_of(out)["run"] is None
    assert last["reason"] == "not armed within the arm-timeout: k6/1"
    assert last["units"]["k6/1"]["exit_code"] is None


def test_leader_probes_a_participant_that_was_still_initializing_and_releases(tmp_path, fake_k6):
    context = ctx()
    relation = peers(
        app=app_data(),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
        others={1: unit_data(status="pending", run_id="r1", endpoint=endpoint())},
    )

    out = context.run(
        context.on.update_status(), state(tmp_path, relation, containers={running(tmp_path)})
    )

    assert app_of(out)["run"]["phase"] == RUNNING
    # one probe (GET) of the pending unit, then one release per participant
    assert fake_k6.attributes() == [RESUME, RESUME]


# ------------------------------------------------------------------ done, stale, finish


def test_done_notice_for_the_current_run_reports_exit_code_and_summary(tmp_path):
    (tmp_path / "work").mkdir()
    summary = {
        "metrics": {
            "http_reqs": {"count": 7, "rate": 7.0},
            "iterations": {"count": 7, "rate": 7.0},
        },
        "root_group": {},
    }
    (tmp_path / "work" / SUMMARY_FILE).write_text(json.dumps(summary))

    out = participant_gets_done_notice(tmp_path, "0")

    mine = me_of(out)
    assert (mine["status"], mine["run_id"], mine["exit_code"]) == ("idle", "r1", 0)
    assert mine["result"]["summary"]["counters"]["http_reqs"] == 7
    assert mine["result"]["report"] == ""  # k6 exported no HTML report
    assert out.unit_status == testing.ActiveStatus("idle")


def test_done_notice_with_a_failing_exit_code_blocks_the_unit_naming_it(tmp_path):
    out = participant_gets_done_notice(tmp_path, "99")

    assert me_of(out)["exit_code"] == 99
    assert out.unit_status == testing.BlockedStatus("run r1 failed: k6/1 (exit code 99)")


def test_done_notice_for_another_run_is_ignored(tmp_path):
    notice = testing.Notice(NOTICE_KEY, last_data={"run_id": "old", "exit_code": "0"})
    cont = running(tmp_path, notices=[notice])
    me = unit_data(status="busy", run_id="r1", endpoint=endpoint())
    relation = peers(unit=1, app=app_data(run=run_dict(phase="running")), me=me)
    context = ctx(1)

    out = context.run(
        context.on.pebble_custom_notice(cont, notice),
        state(tmp_path, relation, leader=False, containers={cont}),
    )

    assert out.get_relation(900).local_unit_data == me
    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.ACTIVE


def test_leader_finishes_when_every_participant_is_idle(tmp_path):
    notice = testing.Notice(NOTICE_KEY, last_data={"run_id": "r1", "exit_code": "0"})
    cont = container(tmp_path, notices=[notice])
    released = {"k6/0": [100.0, 100.001], "k6/1": [100.0, 100.003]}
    relation = peers(
        app=app_data(run=run_dict(phase="running", released=released)),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
        others={1: unit_data(status="idle", run_id="r1", exit_code=0)},
    )
    context = ctx()

    out = context.run(
        context.on.pebble_custom_notice(cont, notice), state(tmp_path, relation, containers={cont})
    )

    app = app_of(out)
    assert app["run"] is None and app["payload"] is None
    last = app["last_run"]
    assert last["outcome"] == "passed"
    assert {u: r["exit_code"] for u, r in last["units"].items()} == {"k6/0": 0, "k6/1": 0}
    assert last["spread_ms"] == pytest.approx(2.0)
    assert last["info"]["script_name"] == "load-test.js"
    assert out.app_status == testing.ActiveStatus("idle; last run r1 passed")


def test_unit_whose_k6_vanished_without_notice_reports_it(tmp_path):
    relation = peers(
        unit=1,
        app=app_data(run=run_dict(phase="running")),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
    )
    context = ctx(1)

    out = context.run(context.on.update_status(), state(tmp_path, relation, leader=False))

    mine = me_of(out)
    assert (mine["status"], mine["exit_code"]) == ("idle", None)
    assert mine["error"] == "the workload ended without a done notice"


# ------------------------------------------------------------------ stop


def test_stop_when_idle_is_a_clear_no_op(tmp_path):
    context = ctx()

    out = context.run(context.on.action("stop"), state(tmp_path))

    assert context.action_results == {"message": "no active run; nothing to stop"}
    assert app_of(out) == {}


def test_stop_while_running_patches_stop_and_stops_own_service(tmp_path, fake_k6):
    cont = running(tmp_path)
    relation = peers(
        app=app_data(run=run_dict(phase="running")),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
        others={1: unit_data(status="busy", run_id="r1", endpoint=endpoint())},
    )
    context = ctx()

    out = context.run(context.on.action("stop"), state(tmp_path, relation, containers={cont}))

    assert fake_k6.attributes() == [STOP, STOP]
    assert app_of(out)["run"]["phase"] == STOPPING
    assert app_of(out)["run"]["reason"] == STOPPED_BY_USER
    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.INACTIVE
    assert me_of(out)["status"] == IDLE
    assert out.app_status == testing.MaintenanceStatus("stopping 1/2 units done")
    assert context.action_results is not None
    assert context.action_results["run-id"] == "r1"
    assert "stopping run r1 (running)" in context.action_results["message"]


def test_stop_of_a_single_unit_run_ends_it_in_the_same_hook(tmp_path, fake_k6):
    relation = peers(
        app=app_data(run=run_dict(phase="running", participants=["k6/0"])),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
        others={},
    )
    context = ctx()

    out = context.run(
        context.on.action("stop"), state(tmp_path, relation, containers={running(tmp_path)})
    )

    assert app_of(out)["run"] is None
    assert app_of(out)["last_run"]["outcome"] == "stopped"
    assert context.action_results is not None
    assert context.action_results["message"] == "stopped run r1 on 1 unit(s)"


def test_unit_stops_its_k6_when_the_run_goes_stopping(tmp_path):
    cont = running(tmp_path)
    relation = peers(
        unit=1,
        app=app_data(run=run_dict(phase="stopping", reason="stopped by user")),
        me=unit_data(status="busy", run_id="r1", endpoint=endpoint()),
    )
    context = ctx(1)

    out = context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False, containers={cont}),
    )

    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.INACTIVE
    assert me_of(out)["status"] == IDLE


def test_unit_stop_event_stops_a_running_k6(tmp_path):
    context = ctx(1)
    st = state(tmp_path, peers(unit=1), leader=False, containers={running(tmp_path)})

    out = context.run(context.on.stop(), st)

    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.INACTIVE


# ------------------------------------------------------------------ idle hooks: calls made


@pytest.fixture
def pebble_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the Pebble API calls the charm makes, on ops.testing's mock Pebble client.

    Every public method of `pebble.Client` is wrapped; only the outermost call of a chain is
    counted (the mock's methods call each other).
    """
    calls: list[str] = []
    depth = [0]

    def counting(name: str, method):
        def wrapper(self, *args, **kwargs):
            if depth[0] == 0:
                calls.append(name)
            depth[0] += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    for name in dir(pebble.Client):
        method = getattr(_MockPebbleClient, name, None)
        if not name.startswith("_") and callable(method):
            monkeypatch.setattr(_MockPebbleClient, name, counting(name, method))
    return calls


@pytest.fixture
def http_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP request through httpx and every TCP connect the process starts."""
    calls: list[str] = []
    for cls in (httpx.Client, httpx.AsyncClient):
        send = cls.send

        def counting_send(self, request, *args, _send=send, **kwargs):
            calls.append(f"httpx {request.method} {request.url}")
            return _send(self, request, *args, **kwargs)

        monkeypatch.setattr(cls, "send", counting_send)
    for name in ("connect", "connect_ex"):
        connect = getattr(socket.socket, name)

        def counting_connect(self, address, _connect=connect, _name=name):
            calls.append(f"socket.{_name} {address}")
            return _connect(self, address)

        monkeypatch.setattr(socket.socket, name, counting_connect)
    return calls


def idle_state(tmp_path) -> testing.State:
    """Unit k6/1, no run, container reachable and empty."""
    return state(tmp_path, peers(unit=1), leader=False)


def test_call_counters_see_the_pebble_and_http_calls_of_an_arm(
    tmp_path, fake_k6, pebble_calls, http_calls
):
    context = ctx(1)
    relation = peers(unit=1, app=app_data())

    context.run(
        context.on.relation_changed(relation, remote_unit=0),
        state(tmp_path, relation, leader=False),
    )

    assert {"push", "add_layer", "restart_services", "get_services"} <= set(pebble_calls)
    assert f"httpx GET http://{endpoint()}/v1/status" in http_calls
    assert f"socket.connect {(ADDRESS, fake_k6.port)}" in http_calls


def test_idle_relation_changed_makes_no_pebble_and_no_http_call(
    tmp_path, pebble_calls, http_calls
):
    context = ctx(1)
    st = idle_state(tmp_path)

    out = context.run(context.on.relation_changed(st.get_relation(900), remote_unit=0), st)

    assert pebble_calls == []
    assert http_calls == []
    assert out.unit_status == testing.ActiveStatus("idle")


def test_idle_update_status_makes_one_pebble_call_for_a_stray_workload_and_no_http_call(
    tmp_path, pebble_calls, http_calls
):
    context = ctx(1)

    out = context.run(context.on.update_status(), idle_state(tmp_path))

    assert pebble_calls == ["get_services"]
    assert http_calls == []
    assert out.unit_status == testing.ActiveStatus("idle")


def test_idle_update_status_stops_a_stray_k6_left_running_with_no_run(tmp_path):
    context = ctx(1)
    st = state(tmp_path, peers(unit=1), leader=False, containers={running(tmp_path)})

    out = context.run(context.on.update_status(), st)

    assert out.get_container("k6").service_statuses[SERVICE] == pebble.ServiceStatus.INACTIVE
    assert me_of(out)["status"] == IDLE


# ------------------------------------------------------------------ config, status, list, results


def test_invalid_environment_blocks_naming_the_entry(tmp_path):
    context = ctx()
    config = {"load-test": SCRIPT, "environment": "GOOD=1,not a pair"}

    out = context.run(context.on.config_changed(), state(tmp_path, config=config))

    assert out.unit_status.name == "blocked"
    assert "'not a pair'" in out.unit_status.message


def test_unit_without_the_peer_relation_waits_for_it(tmp_path):
    context = ctx()

    out = context.run(context.on.update_status(), state(tmp_path, relations=set()))

    assert out.unit_status == testing.WaitingStatus("waiting for the peer relation")


def test_start_without_the_peer_relation_says_to_retry(tmp_path):
    context = ctx()

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("start"), state(tmp_path, relations=set()))

    assert failure.value.message == "the peer relation is not ready yet; retry in a moment"


def test_list_shows_the_config_test(tmp_path):
    context = ctx()

    context.run(context.on.action("list"), state(tmp_path))

    assert context.action_results is not None
    assert context.action_results["tests"]["config"] == {"load-test": f"{len(SCRIPT)} bytes"}


def test_list_without_any_test_says_so(tmp_path):
    context = ctx()

    context.run(context.on.action("list"), state(tmp_path, config={}))

    assert context.action_results == {"tests": {"none": "no tests available"}}


def test_results_without_any_run_fails_clearly(tmp_path):
    context = ctx()

    with pytest.raises(testing.ActionFailed) as failure:
        context.run(context.on.action("results"), state(tmp_path))

    assert failure.value.message == "no run has ended yet"


def test_results_show_the_last_runs_outcome_per_unit_and_a_table(tmp_path):
    last_run = {
        "run_id": "r0",
        "outcome": "failed",
        "reason": "k6/1 (exit code 99)",
        "created": 1000.0,
        "started": 1001.0,
        "ended": 1031.0,
        "duration_s": 30.0,
        "spread_ms": 0.25,
        "units": {
            "k6/0": {"exit_code": 0, "line": {"requests": 10, "report": True}},
            "k6/1": {"exit_code": 99, "line": {"requests": 12, "report": False}},
        },
        "aggregate": {},
    }
    relation = peers(app={"run": None, "payload": None, "last_run": last_run})
    context = ctx()

    context.run(context.on.action("results"), state(tmp_path, relation))

    results = context.action_results
    assert results is not None
    assert (results["run-id"], results["outcome"]) == ("r0", "failed")
    assert results["reason"] == "k6/1 (exit code 99)"
    assert results["spread-ms"] == "0.25"
    assert results["units"] == {
        "k6-0": {"exit-code": "0", "report": WORKDIR + "/report.html"},
        "k6-1": {"exit-code": "99", "report": "-"},
    }
    table = results["table"].splitlines()
    assert table[0].split()[:2] == ["UNIT", "EXIT"]
    rows = [row.split()[:3] for row in table if row.startswith("k6/")]
    assert rows == [["k6/0", "0", "10"], ["k6/1", "99", "12"]]


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

    app = app_of(out)
    info = app["run"]["info"]
    assert (info["script_name"], info["source"]) == ("smoke.js", "app:webapp")
    assert app["payload"]["environment"] == {"TARGET": "http://a", "X": "2"}
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
    assert app_of(out)["run"]["info"]["source"] == "quick"
    assert app_of(out)["run"]["expected_s"] == 30.0
    assert out.app_status.message.startswith("running 1/1 units, ")
    assert out.app_status.message.endswith("s of 30s")


def test_list_shows_related_tests_and_notes_unusable_providers(tmp_path):
    context = ctx()
    relations = {peers(), provider("webapp", GOOD), provider("broken", "{not json")}

    context.run(context.on.action("list"), state(tmp_path, relations=relations))

    assert context.action_results is not None
    tests = context.action_results["tests"]
    assert tests["webapp"] == {"tests": "smoke.js"}
    assert tests["broken"]["tests"] == ""
    assert "JSON" in tests["broken"]["error"] or "json" in tests["broken"]["error"]


# ------------------------------------------------------------------ COS: metrics, logs, report


def cos_relations() -> set[testing.Relation]:
    return {
        testing.Relation(
            "send-remote-write",
            remote_app_name="prometheus",
            remote_units_data={0: {"remote_write": json.dumps({"url": "http://prom:9090/w"})}},
        ),
        testing.Relation(
            "logging",
            remote_app_name="loki",
            remote_units_data={0: {"endpoint": json.dumps({"url": "http://loki:3100/push"})}},
        ),
    }


def test_armed_k6_sends_metrics_and_logs_to_related_cos_and_tags_the_juju_topology(
    tmp_path, fake_k6
):
    context = ctx()
    st = state(tmp_path, relations={peers(), *cos_relations()})

    out = context.run(context.on.action("start"), st)

    run_id = app_of(out)["run"]["run_id"]
    argv = k6_argv(out)
    assert argv[argv.index("-o") + 1] == "experimental-prometheus-rw"
    log_output = argv[argv.index("--log-output") + 1]
    assert log_output.startswith("loki=http://loki:3100/push,")
    assert "label.juju_unit=k6/0" in log_output.split(",")
    tags = {argv[i + 1] for i, a in enumerate(argv) if a == "--tag"}
    assert {f"run_id={run_id}", "juju_application=k6", "juju_unit=k6/0"} <= tags
    environment = out.get_container("k6").plan.services[SERVICE].environment
    assert environment["K6_PROMETHEUS_RW_SERVER_URL"] == "http://prom:9090/w"
    assert environment["K6_WEB_DASHBOARD_EXPORT"] == "report.html"
    assert (environment["K6_K8S_UNIT"], environment["K6_K8S_RUN_ID"]) == ("k6/0", run_id)


def test_armed_k6_without_cos_relations_has_no_metrics_or_log_output(tmp_path, fake_k6):
    context = ctx()

    out = context.run(context.on.action("start"), state(tmp_path))

    argv = k6_argv(out)
    assert "-o" not in argv and "--log-output" not in argv
    environment = out.get_container("k6").plan.services[SERVICE].environment
    assert "K6_PROMETHEUS_RW_SERVER_URL" not in environment


@pytest.mark.parametrize(
    ("endpoint_name", "provided"),
    [
        ("send-remote-write", {"remote_write": json.dumps({"url": "http://prom:9090/w"})}),
        ("logging", {"endpoint": json.dumps({"url": "http://loki:3100/loki/api/v1/push"})}),
    ],
)
def test_cos_consumer_relations_get_nothing_written(tmp_path, endpoint_name, provided):
    # What the providers read from a consumer is alert rules (and, for Loki, the `metadata`
    # naming their topology). The official prometheus_remote_write consumer writes
    # `alert_rules` only when the charm has rules; the loki_push_api consumer writes `{}` and
    # the Loki provider skips a relation whose rules are `{}` or absent (prometheus-k8s
    # 006ef5be, loki-k8s 03bb7612). k6 has no rules: it writes nothing, as the libraries would.
    relation = testing.Relation(endpoint_name, remote_units_data={0: provided})
    context = ctx()
    st = state(tmp_path, relations={peers(others={}), relation})

    for event in (
        context.on.relation_joined(relation, remote_unit=0),
        context.on.relation_changed(relation, remote_unit=0),
    ):
        out = context.run(event, st)

        written = out.get_relation(relation.id)
        assert (written.local_app_data, written.local_unit_data) == ({}, relation.local_unit_data)


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


@pytest.mark.parametrize(
    ("teardown", "said"),
    [
        ({"ran": True, "unit": "k6/0"}, "ran on k6/0"),
        ({"ran": True, "unit": "k6/0", "error": "Error: no"}, "failed on k6/0: Error: no"),
        (
            {"ran": False, "unit": "k6/0", "error": "the teardown k6 did not start"},
            "not run on k6/0: the teardown k6 did not start",
        ),
        ({"ran": False, "why_not": "noTeardown is set"}, "not run: noTeardown is set"),
    ],
)
def test_results_say_whether_teardown_ran(teardown, said):
    concluded = {"setup": {"unit": "k6/0"}, "teardown": teardown}

    found = charm.lifecycle_results(concluded)

    assert found == {"setup": "ran on k6/0", "teardown": said}
