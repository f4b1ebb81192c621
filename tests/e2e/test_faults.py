"""Faults end to end on the emulator: bad scripts, killed k6, leadership moves, scaling, stops.

Real k6 processes throughout; every test ends with nobody busy and no process left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import httpx
import pytest

import k6_client
import k6_workload
from tests.e2e import scripts
from tests.emulator.model import Model, unit_address
from tests.emulator.target import Target
from tests.support.emulated_runs import configure

EXIT_STOPPED_API = 103  # k6: stopped through its REST API
EXIT_SIGTERM = 105  # k6: interrupted by SIGTERM

pytestmark = pytest.mark.timeout(60)

SYNTAX_ERROR = "import http from 'k6/http';\nexport default function ( {\n"


def phase(model: Model) -> str | None:
    """The active run's phase (None when no run is active)."""
    return (model.app.get("run") or {}).get("phase")


def assert_all_idle(model: Model) -> None:
    """No active run, no unit busy or arming (an empty databag reads as idle), no k6 process."""
    assert model.app.get("run") is None
    statuses = {
        u.name: model.unit_view(u.index).get("status", "idle") for u in model.units.values()
    }
    assert statuses == {u.name: "idle" for u in model.units.values()}
    assert model.k6_running() == []


def api_status(index: int) -> dict | None:
    """Unit `index`'s k6 REST status attributes; None when the connection is refused."""
    try:
        with socket.create_connection((unit_address(index), k6_client.PORT), timeout=2) as sock:
            head = f"GET {k6_client.STATUS_PATH} HTTP/1.1\r\nHost: x\r\n"
            request = head + "Connection: close\r\n\r\n"
            sock.sendall(request.encode())
            sock.settimeout(2)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    except ConnectionRefusedError:
        return None
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)["data"]["attributes"]


def api_listening(model: Model) -> dict[str, bool]:
    """Unit name -> whether anything accepts connections on its k6 API port."""
    return {u.name: api_status(u.index) is not None for u in model.units.values()}


def started_k6(model: Model, index: int) -> bool:
    """Whether Pebble on unit `index` was ever asked to start k6."""
    return any(c.startswith("start") for c in model.units[index].supervisor.calls)


def in_init_only_on(unit: str, seconds: int) -> str:
    """A script whose init context busy-waits for `seconds` on `unit` only (it never arms)."""
    return f"""
if (__ENV.K6_K8S_UNIT === '{unit}') {{
  const end = Date.now() + {seconds * 1000};
  while (Date.now() < end) {{}}
}}
""" + scripts.constant_vus(2, "3s")


def throws_on_all_but(unit: str) -> str:
    """A script whose init context throws on every unit but `unit` (k6 exits 107 there)."""
    return f"""
if (__ENV.K6_K8S_UNIT !== '{unit}') {{ throw new Error('boom on ' + __ENV.K6_K8S_UNIT); }}
""" + scripts.constant_vus(2, "3s")


# ------------------------------------------------------------------ script errors


def test_syntax_error_ends_the_run_failed_before_the_start_with_exit_107(make_model, target):
    # k6 and its done notice must end within Pebble's okay-delay to fail the start: on a busy
    # machine that can take over 1 s, so the delay is longer here (the behaviour is the same)
    model = make_model(3, configure(target, SYNTAX_ERROR), okay_delay=5.0)

    result = model.action(0, "start")
    run_id = result.results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert result.failure is not None
    assert result.failure.startswith(f"run {run_id} failed: failed before the start: ")
    assert last["outcome"] == "failed"
    assert last["reason"].startswith("failed before the start: k6/0 (exit code 107: ")
    reported = {u: r["exit_code"] for u, r in last["units"].items() if r["exit_code"] is not None}
    assert reported == {"k6/0": 107}  # the leader's own arm fails first; nobody else starts k6
    assert not started_k6(model, 1) and not started_k6(model, 2)
    assert target.stats()["count"] == 0
    assert_all_idle(model)


def test_script_error_on_the_other_units_names_each_with_exit_107(make_model, target):
    model = make_model(3, configure(target, throws_on_all_but("k6/0")), okay_delay=5.0)

    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=40)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"].startswith("failed before the start: ")
    failure = (
        'k6/1 (exit code 107: Start service "k6" '
        "(service start attempt: exited quickly with code 107, will ignore))"
    )
    assert failure in last["reason"]
    assert "k6/0 (" not in last["reason"]
    assert last["units"]["k6/1"]["exit_code"] == 107
    assert last["units"]["k6/2"]["exit_code"] in (107, None)  # named only if it failed first
    assert last["units"]["k6/0"]["released"] == []  # never resumed
    assert target.stats()["count"] == 0
    assert_all_idle(model)


# ------------------------------------------------------------------ k6 killed


def test_k6_killed_mid_run_is_reported_and_fails_the_run(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(3, "8s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)
    model.settle(lambda: len(target.stats()["by_unit"]) == 3, timeout=10)

    victim = model.units[1].supervisor.services[k6_workload.SERVICE].process
    assert victim is not None
    os.killpg(victim.pid, signal.SIGKILL)  # k6 and its shell: no done-notice can be sent
    victim.wait(timeout=10)
    model.tick(1)
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"] == "k6/1 (no exit code: the workload ended without a done notice)"
    assert last["units"]["k6/1"]["exit_code"] is None
    assert last["units"]["k6/1"]["error"] == "the workload ended without a done notice"
    assert {last["units"][u]["exit_code"] for u in ("k6/0", "k6/2")} == {0}
    assert_all_idle(model)


# ------------------------------------------------------------------ leadership


@pytest.mark.parametrize("when", ["arming", "running"])
def test_new_leader_carries_the_run_to_its_end(make_model, target, when):
    model = make_model(3, configure(target, scripts.constant_vus(3, "3s")))
    run_id = model.action(0, "start").results["run-id"]
    if when == "running":
        model.settle(lambda: phase(model) == "running", timeout=30)
    assert phase(model) == when

    model.elect(1)
    elected_at = len(model.hooks)
    model.settle(lambda: model.finished(run_id), timeout=40)

    last = model.app["last_run"]
    assert last["outcome"] == "passed", last["reason"]
    assert {u: r["exit_code"] for u, r in last["units"].items()} == {
        "k6/0": 0,
        "k6/1": 0,
        "k6/2": 0,
    }
    assert all(len(r["released"]) == 2 and r["released"][1] for r in last["units"].values())
    assert {h.unit for h in model.hooks[elected_at:] if h.app_keys} == {"k6/1"}
    assert [h.unit for h in model.hooks[elected_at:] if "last_run" in h.app_keys] == ["k6/1"]
    assert set(target.stats()["by_unit"]) == {"k6/0", "k6/1", "k6/2"}
    assert_all_idle(model)


def test_new_leader_finishes_a_stop_the_old_leader_began(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(3, "30s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)
    assert model.action(0, "stop").ok
    assert phase(model) == "stopping"

    model.elect(1)  # before any unit has seen the stop
    elected_at = len(model.hooks)
    model.settle(lambda: model.finished(run_id), timeout=40)

    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("stopped", "stopped by user")
    assert [h.unit for h in model.hooks[elected_at:] if "last_run" in h.app_keys] == ["k6/1"]
    assert not any(r["lost"] for r in last["units"].values())
    assert_all_idle(model)


def test_leader_removed_mid_run_the_new_leader_records_it_lost(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(3, "6s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)

    model.remove_unit(0)
    model.elect(1)
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("failed", "lost during the run: k6/0")
    assert {u: (r["lost"], r["exit_code"]) for u, r in last["units"].items()} == {
        "k6/0": (True, None),
        "k6/1": (False, 0),
        "k6/2": (False, 0),
    }
    assert_all_idle(model)


# ------------------------------------------------------------------ scale down and up


def test_participant_departing_while_arming_aborts_the_run_naming_it(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(3, "3s")))
    run_id = model.action(0, "start").results["run-id"]
    assert phase(model) == "arming"

    model.remove_unit(2)
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"] == "k6/2 departed before the start"
    assert last["units"]["k6/2"]["lost"] is True
    assert target.stats()["count"] == 0
    assert not any(s.alive for s in model.departed[0].supervisor.services.values())
    assert_all_idle(model)


def test_participant_departing_while_running_is_recorded_lost(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(3, "6s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)
    model.settle(lambda: len(target.stats()["by_unit"]) == 3, timeout=10)

    model.remove_unit(2)
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"] == "lost during the run: k6/2"
    assert {u: r["lost"] for u, r in last["units"].items()} == {
        "k6/0": False,
        "k6/1": False,
        "k6/2": True,
    }
    assert last["units"]["k6/0"]["exit_code"] == last["units"]["k6/1"]["exit_code"] == 0
    assert_all_idle(model)


def test_unit_added_during_a_run_stays_out_of_it_and_joins_the_next(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "3s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)

    new = model.add_unit()
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "passed", last["reason"]
    assert set(last["units"]) == {"k6/0", "k6/1"}
    assert model.unit_view(new.index).get("status", "idle") == "idle"
    assert not started_k6(model, new.index)
    assert new.status == "active: idle"
    assert set(target.stats()["by_unit"]) == {"k6/0", "k6/1"}
    assert_all_idle(model)

    next_run = model.action(0, "start").results
    model.settle(lambda: model.finished(next_run["run-id"]), timeout=30)

    assert next_run["units"] == "k6/0,k6/1,k6/2"
    assert model.app["last_run"]["outcome"] == "passed"
    assert_all_idle(model)


# ------------------------------------------------------------------ stop


def test_stop_before_anyone_else_armed_ends_the_run_in_the_same_hook(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(2, "30s")))
    run_id = model.action(0, "start").results["run-id"]

    result = model.action(0, "stop")
    model.settle(lambda: model.finished(run_id), timeout=30)

    assert result.ok
    assert result.results == {"message": f"stopped run {run_id} on 3 unit(s)", "run-id": run_id}
    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("stopped", "stopped by user")
    assert not started_k6(model, 1) and not started_k6(model, 2)
    assert target.stats()["count"] == 0
    assert_all_idle(model)
    assert api_listening(model) == {"k6/0": False, "k6/1": False, "k6/2": False}


def test_stop_while_some_are_armed_stops_the_armed_ones(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(2, "30s")))
    run_id = model.action(0, "start").results["run-id"]
    model.step()  # k6/1 arms; k6/2 has not yet seen the run
    assert model.unit_view(1)["status"] == "busy" and phase(model) == "arming"

    result = model.action(0, "stop")
    model.settle(lambda: model.finished(run_id), timeout=30)

    assert result.ok
    assert result.results["message"] == f"stopping run {run_id} (arming) on 3 unit(s)"
    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("stopped", "stopped by user")
    # k6/1's exit code (103) is lost when its stop races the done-notice: see
    # test_done_notice_survives_a_stop_that_races_it below.
    assert last["units"]["k6/1"]["released"] == []
    assert not started_k6(model, 2)
    assert target.stats()["count"] == 0
    assert_all_idle(model)


def test_stop_while_running_ends_every_k6(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "30s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)

    result = model.action(0, "stop")
    model.settle(lambda: model.finished(run_id), timeout=30)

    assert result.ok and result.results["run-id"] == run_id
    assert model.app["last_run"]["outcome"] == "stopped"
    assert_all_idle(model)


def test_stop_when_idle_is_a_clear_no_op(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "3s")))
    before = dict(model.app_data)

    result = model.action(0, "stop")

    assert result.ok
    assert result.results == {"message": "no active run; nothing to stop"}
    assert model.app_data == before
    assert_all_idle(model)


# ------------------------------------------------------------------ the k6 REST API window


def test_k6_api_listens_only_from_arm_to_exit(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "6s")))
    assert api_listening(model) == {"k6/0": False, "k6/1": False}

    run_id = model.action(0, "start").results["run-id"]
    armed = api_status(0)
    assert phase(model) == "arming"
    assert armed is not None and (armed["status"], armed["paused"]) == (4, True)
    assert api_listening(model) == {"k6/0": True, "k6/1": False}
    model.settle(lambda: phase(model) == "running", timeout=30)
    assert api_listening(model) == {"k6/0": True, "k6/1": True}
    model.settle(lambda: model.finished(run_id), timeout=30)

    assert model.app["last_run"]["outcome"] == "passed"
    assert api_listening(model) == {"k6/0": False, "k6/1": False}
    assert_all_idle(model)


def test_early_resume_through_the_api_by_someone_else_aborts_the_run(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "30s")))
    run_id = model.action(0, "start").results["run-id"]
    assert phase(model) == "arming" and api_status(0) is not None

    # anyone who can reach the leader's k6 API resumes it before the others are armed
    body = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
    endpoint = f"http://{unit_address(0)}:{k6_client.PORT}{k6_client.STATUS_PATH}"
    assert httpx.patch(endpoint, json=body, timeout=2, trust_env=False).status_code == 200
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"].startswith("release failed: k6/0: ")  # k6 answers a second resume
    assert "HTTP/1.1 500" in last["reason"]  # with 500 "Pause error"
    assert_all_idle(model)


def test_stop_through_a_units_api_by_someone_else_fails_the_run_naming_it(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "3s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)

    assert k6_client.stop_all([f"{unit_address(1)}:{k6_client.PORT}"]) == {
        f"{unit_address(1)}:{k6_client.PORT}": None
    }
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("failed", "k6/1 (exit code 103)")
    assert last["units"]["k6/0"]["exit_code"] == 0
    assert_all_idle(model)


def test_resume_that_cannot_reach_one_unit_resumes_nobody_and_stops_every_k6(make_model, target):
    model = make_model(3, configure(target, scripts.constant_vus(3, "30s")))
    # k6/2 arms and answers on its own pod IP, but a network policy keeps the others out
    model.cut(2)
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=40)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"].startswith(
        "release failed: k6/2: connect failed after 3 attempts: "  # bounded: 1 try, 2 retries
    ), last["reason"]
    assert model.unit_view(2)["endpoint"] == f"{unit_address(2)}:{k6_client.PORT}"
    refused = [c.unit for c in model.connects_to(unit_address(2)) if c.refused]
    assert set(refused) == {"k6/0"} and len(refused) >= 3  # 3 resume attempts (+ the stop)
    # all or nobody: no unit was resumed, no load was sent
    assert {u: r["released"] for u, r in last["units"].items()} == {
        "k6/0": [None, None],
        "k6/1": [None, None],
        "k6/2": [None, None],
    }
    assert target.stats()["count"] == 0
    # the leader stops the reachable ones through their API, which races each unit stopping
    # its own k6 when it sees `stopping` (SIGTERM: 105, or 143 when it lands during the exit);
    # only its own unit can stop the cut-off one
    stopped = {EXIT_STOPPED_API, EXIT_SIGTERM, 128 + signal.SIGTERM}
    codes = {u: r["exit_code"] for u, r in last["units"].items()}
    assert codes["k6/0"] in stopped and codes["k6/1"] in stopped, codes
    assert codes["k6/2"] == EXIT_SIGTERM
    assert_all_idle(model)


# ------------------------------------------------------------------ start during a run


def test_start_during_an_active_run_is_refused_and_changes_nothing(make_model, target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "3s")))
    run_id = model.action(0, "start").results["run-id"]

    for expected_phase in ("arming", "running"):
        if expected_phase == "running":
            model.settle(lambda: phase(model) == "running", timeout=30)
        assert phase(model) == expected_phase
        before = dict(model.app_data)
        result = model.action(0, "start", url=f"{target.url}/again", vus=1, duration="1s")

        assert result.failure == (
            f"run {run_id} is already active ({expected_phase}); "
            "stop it first: juju run k6/leader stop"
        )
        assert model.app_data == before

    model.settle(lambda: model.finished(run_id), timeout=30)
    assert model.app["last_run"]["outcome"] == "passed"
    assert_all_idle(model)


# ------------------------------------------------------------------ arming that never completes


def test_unit_not_armed_by_the_arm_timeout_aborts_the_run(make_model, target, monkeypatch):
    wait_ready = k6_client.wait_ready  # a hook waits at most 1 s for its own k6 (not 30 s) here
    short = lambda e, t, **kw: wait_ready(e, min(t, 1.0), **kw)  # noqa: E731
    monkeypatch.setattr(k6_client, "wait_ready", short)
    # the timeout runs on the real clock from `start`; arming k6/0 takes seconds on a busy box
    config = configure(target, in_init_only_on("k6/1", seconds=40)) | {"arm-timeout": 30}
    model = make_model(2, config, update_status_interval=None)
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.unit_view(1).get("status") == "pending", timeout=20)
    assert phase(model) == "arming"
    assert model.units[1].status == f"maintenance: arming run {run_id}"

    model.tick(31)
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"] == "not armed within the arm-timeout: k6/1"
    assert last["units"]["k6/0"]["released"] == []
    assert target.stats()["count"] == 0
    assert_all_idle(model)


def test_unit_with_unreachable_container_aborts_the_run_naming_it(make_model, target: Target):
    model = make_model(2, configure(target, scripts.constant_vus(2, "3s")) | {"arm-timeout": 30})
    model.units[1].can_connect = False

    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.finished(run_id), timeout=30)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"].startswith(
        "failed before the start: k6/1 (no exit code: workload container unreachable"
    )
    assert last["units"]["k6/1"]["exit_code"] is None
    assert not started_k6(model, 1)
    assert target.stats()["count"] == 0
    assert_all_idle(model)


# ------------------------------------------------------------------ a stop racing the done-notice

SLOW_NOTIFY = """import os, time
if os.environ.get("K6EMU_UNIT") == "k6/1" and os.environ.get("K6EMU_NOTICE_DIR"):
    time.sleep(3)  # `pebble notify` in k6/1's service is slow
"""


def notifying(model: Model, index: int) -> bool:
    """Whether unit `index`'s k6 service shell is running `pebble notify` right now."""
    service = model.units[index].supervisor.services[k6_workload.SERVICE]
    assert service.process is not None
    group = service.process.pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()  # noqa: SIM115
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == group and b"notify.py" in cmdline:
            return True
    return False


def test_done_notice_survives_a_stop_that_races_it(make_model, target, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SLOW_NOTIFY)
    config = configure(target, scripts.constant_vus(2, "30s"))
    model = make_model(2, config, extra_env={"PYTHONPATH": str(tmp_path)})
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: phase(model) == "running", timeout=30)
    # k6 on k6/1 ends on its own (here through its API) and its shell starts the done-notice ...
    assert k6_client.stop_all([f"{unit_address(1)}:{k6_client.PORT}"]) == {
        f"{unit_address(1)}:{k6_client.PORT}": None
    }
    for _ in range(100):
        if notifying(model, 1):
            break
        time.sleep(0.05)
    assert notifying(model, 1)

    model.action(0, "stop")  # ... just as the user stops the run
    model.settle(lambda: model.finished(run_id), timeout=30)

    unit = model.app["last_run"]["units"]["k6/1"]
    assert (unit["exit_code"], unit["error"]) == (EXIT_STOPPED_API, "")
