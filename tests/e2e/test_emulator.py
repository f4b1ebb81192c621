"""The emulator itself: Juju's relation rules and Pebble's service rules, as the charm sees."""

from __future__ import annotations

import gc
import json
import socket
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from ops import pebble

import k6_client
import k6_workload
from charm import K6Charm
from tests.e2e import scripts
from tests.emulator import pebble as emu_pebble
from tests.emulator.model import (
    PER_UNIT_INGRESS,
    RETRY_FACTOR,
    RETRY_MIN,
    Concurrency,
    Hook,
    Model,
    service_address,
    unit_address,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def supervisor(tmp_path: Path):
    dirs = [tmp_path / d for d in ("work", "notices", "logs")]
    for d in dirs:
        d.mkdir()
    sup = emu_pebble.Supervisor("k6/0", {"/work": dirs[0]}, dirs[1], dirs[2])
    yield sup
    sup.kill_all()
    assert sup.leftovers() == []


IGNORE = {"on-success": "ignore", "on-failure": "ignore"}


def spec(command: str, **extra: str) -> dict:
    return {"command": command, "working-dir": "/work", **extra}


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# ------------------------------------------------------------------ Pebble


def test_exited_service_is_restarted_by_default(supervisor):
    supervisor.start("svc", spec("/bin/sh -c 'sleep 3; exit 0'"))

    restarted = wait_for(lambda: supervisor.poll() or supervisor.services["svc"].starts >= 2, 10)

    assert restarted, "Pebble restarts a service that exits unless told to ignore it"


def test_service_with_ignore_is_not_restarted(supervisor):
    supervisor.start(
        "svc", spec("/bin/sh -c 'sleep 3; exit 3'", **{"on-success": "ignore",
                                                         "on-failure": "ignore"})
    )  # fmt: skip

    wait_for(lambda: supervisor.status("svc") != pebble.ServiceStatus.ACTIVE, 10)
    time.sleep(1.0)
    supervisor.poll()

    assert supervisor.services["svc"].starts == 1
    assert supervisor.status("svc") == pebble.ServiceStatus.ERROR


def test_start_of_a_process_that_exits_within_a_second_fails_like_pebble(supervisor):
    with pytest.raises(pebble.ChangeError) as failure:
        supervisor.start("svc", spec("/bin/sh -c 'exit 3'", **IGNORE))

    assert failure.value.err == (
        "cannot perform the following tasks:\n"
        '- Start service "svc" (service start attempt: exited quickly with code 3, will ignore)'
    )
    assert supervisor.status("svc") == pebble.ServiceStatus.ERROR  # with ignore: error


def test_a_quick_exit_with_code_0_fails_the_start_too(supervisor):
    with pytest.raises(pebble.ChangeError, match="exited quickly with code 0, will ignore"):
        supervisor.start("svc", spec("/bin/sh -c 'exit 0'", **IGNORE))

    assert supervisor.status("svc") == pebble.ServiceStatus.INACTIVE  # code 0: stopped


def test_a_failed_start_without_ignore_is_restarted_with_backoff(supervisor):
    with pytest.raises(pebble.ChangeError, match="exited quickly with code 3, will restart"):
        supervisor.start("svc", spec("/bin/sh -c 'exit 3'"))

    assert wait_for(lambda: supervisor.poll() or supervisor.services["svc"].starts >= 3, 5)
    assert supervisor.status("svc") == pebble.ServiceStatus.ACTIVE  # backoff reads as active


def test_a_service_in_error_starts_again_after_a_new_layer(supervisor):
    with pytest.raises(pebble.ChangeError):
        supervisor.start("svc", spec("/bin/sh -c 'exit 107'", **IGNORE))

    supervisor.start("svc", spec("/bin/sh -c 'sleep 30'", **IGNORE))

    assert supervisor.status("svc") == pebble.ServiceStatus.ACTIVE
    supervisor.stop("svc")
    assert supervisor.status("svc") == pebble.ServiceStatus.INACTIVE


def test_stop_sends_term_then_kill_after_the_kill_delay(supervisor):
    supervisor.start(
        "svc", spec("/bin/sh -c \"trap '' TERM; sleep 30\"", **{"kill-delay": "0.3s"})
    )
    t0 = time.monotonic()

    supervisor.stop("svc")

    assert 0.25 <= time.monotonic() - t0 < 5
    assert supervisor.status("svc") == pebble.ServiceStatus.INACTIVE
    assert supervisor.services["svc"].exit_code == 137  # as Pebble reports a SIGKILL


def test_pebble_notify_in_the_service_becomes_a_notice_with_its_data(supervisor):
    command = "/bin/sh -c '/charm/bin/pebble notify k6.com/done run_id=r1 exit_code=0; sleep 2'"
    supervisor.start("svc", spec(command))

    assert wait_for(lambda: supervisor.ingest() or "k6.com/done" in supervisor.notices)
    notice = supervisor.notices["k6.com/done"]
    assert dict(notice.last_data) == {"run_id": "r1", "exit_code": "0"}
    assert notice.occurrences == 1
    assert notice.type == pebble.NoticeType.CUSTOM.value


def test_the_same_notice_key_again_repeats_it_with_the_new_data(supervisor):
    command = (
        "/bin/sh -c '/charm/bin/pebble notify k6.com/done run_id=r1 exit_code=0; "
        "/charm/bin/pebble notify k6.com/done run_id=r2 exit_code=99; sleep 2'"
    )
    supervisor.start("svc", spec(command))

    assert wait_for(
        lambda: (
            supervisor.ingest() is not None
            and supervisor.notices.get("k6.com/done") is not None
            and supervisor.notices["k6.com/done"].occurrences == 2
        )
    )
    notice = supervisor.notices["k6.com/done"]
    assert dict(notice.last_data) == {"run_id": "r2", "exit_code": "99"}
    assert [n.key for n in supervisor.new_notices] == ["k6.com/done", "k6.com/done"]


def test_a_stopped_k6_service_line_still_notifies_with_exit_code_105(supervisor, tmp_path):
    command = k6_workload.RunCommand(
        script="t.js", run_id="r9", address="127.0.0.1"
    ).service_command()
    # the real line, with a stand-in `k6` that exits 105 on SIGTERM as k6 does
    standin = tmp_path / "bin"
    standin.mkdir()
    (standin / "k6").write_text(
        "#!/bin/sh\n[ \"$1\" = inspect ] && exit 0\ntrap 'exit 105' TERM\n"
        "while :; do sleep 0.05; done\n"
    )
    (standin / "k6").chmod(0o755)
    supervisor.path_prefix = str(standin)
    supervisor.start("k6", spec(command, **{"on-success": "ignore", "on-failure": "ignore"}))

    supervisor.stop("k6")

    assert wait_for(
        lambda: supervisor.ingest() is not None and "k6.com/done" in supervisor.notices
    )
    assert dict(supervisor.notices["k6.com/done"].last_data) == {
        "run_id": "r9",
        "exit_code": "105",
    }


def test_working_dir_maps_to_the_units_own_folder(supervisor, tmp_path):
    supervisor.start("svc", spec("/bin/sh -c 'pwd > where; sleep 3'"))

    assert wait_for(lambda: (tmp_path / "work" / "where").exists())
    assert (tmp_path / "work" / "where").read_text().strip() == str(tmp_path / "work")


# ------------------------------------------------------------------ Juju


@pytest.fixture
def model():
    m = Model(3, {"load-test": "export default function () {}"}, update_status_interval=None)
    m.settle(timeout=30)
    yield m
    assert m.close() == []


def test_each_unit_has_its_own_loopback_address(model):
    addresses = {u.address for u in model.units.values()}

    assert addresses == {unit_address(0), unit_address(1), unit_address(2)}
    assert all(a.startswith("127.") for a in addresses) and len(addresses) == 3


def binding(model: Model, index: int) -> tuple[str, str]:
    """(bind address, ingress address) that network-get gives unit `index` in a hook."""
    (network,) = model._state(model.units[index]).networks
    return network.bind_addresses[0].addresses[0].value, network.ingress_addresses[0]


def test_on_kubernetes_bind_is_the_pod_and_ingress_is_one_shared_service_address(model):
    bindings = [binding(model, i) for i in range(3)]

    assert [bind for bind, _ in bindings] == [unit_address(i) for i in range(3)]
    assert {ingress for _, ingress in bindings} == {service_address()}
    assert service_address() not in {unit_address(i) for i in range(3)}


def test_nothing_serves_the_k6_port_on_the_service_address(model):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((model.service_address, k6_client.PORT), timeout=2).close()

    assert [(c.host, c.refused) for c in model.connects_to(model.service_address)] == [
        (model.service_address, False)  # recorded; refused by the kernel, not by a policy
    ]


def test_per_unit_ingress_model_gives_each_unit_its_own_ingress():
    with Model(2, {}, update_status_interval=None, network=PER_UNIT_INGRESS) as m:
        assert [binding(m, i) for i in range(2)] == [
            (unit_address(0), unit_address(0)),
            (unit_address(1), unit_address(1)),
        ]


def test_a_cut_unit_is_unreachable_from_other_units_hooks_only(model):
    model.cut(2)

    model.network.current_unit = "k6/0"
    refused_other = model.network.check((unit_address(2), k6_client.PORT))
    model.network.current_unit = "k6/2"
    refused_self = model.network.check((unit_address(2), k6_client.PORT))
    model.network.current_unit = ""

    assert (refused_other, refused_self) == (True, False)


def test_a_real_connect_to_a_cut_unit_is_refused_although_something_listens(model):
    listener = socket.create_server((unit_address(2), 0))
    port = listener.getsockname()[1]
    model.cut(2)
    model.network.current_unit = "k6/1"
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((unit_address(2), port), timeout=2)
        model.network.current_unit = "k6/2"
        socket.create_connection((unit_address(2), port), timeout=2).close()
    finally:
        model.network.current_unit = ""
        listener.close()


def test_writer_gets_no_relation_changed_for_its_own_write(model):
    model.action(0, "start")

    queued = {u.name: [q.kind for q in u.queue] for u in model.units.values()}

    assert queued["k6/0"] == []
    assert queued["k6/1"] == ["relation_changed"] and queued["k6/2"] == ["relation_changed"]
    hook = model.hooks[-1]
    assert hook.unit == "k6/0" and "run" in hook.app_keys and "status" in hook.unit_keys


def test_a_hook_that_raises_commits_nothing_and_tells_nobody(model, monkeypatch):
    model.action(0, "start")
    unit1_before = dict(model.unit(1).unit_data)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(k6_client, "wait_ready", broken)
    model.run_hooks(1)  # k6/1's relation-changed: arms, then crashes

    hook = model.hooks[-1]
    assert hook.unit == "k6/1" and hook.error and "boom" in hook.error
    assert model.unit(1).unit_data == unit1_before
    assert all(q.args.get("remote") != 1 for u in model.units.values() for q in u.queue)


def test_every_hook_is_recorded_with_unit_event_duration_and_keys(model):
    model.action(0, "start")

    hook = model.hooks[-1]

    assert (hook.unit, hook.event) == ("k6/0", "start-action")
    assert hook.duration > 0
    assert set(hook.unit_keys) >= {"status", "run_id", "endpoint"}
    assert "start k6" in hook.pebble_calls


class Probing(K6Charm):
    """The charm plus test hooks on update-status (class-level: each unit is a new instance)."""

    during_hook: Callable[[], None] = staticmethod(lambda: None)
    seen: ClassVar[list[str]] = []

    def __init__(self, framework):
        super().__init__(framework)
        framework.observe(self.on.update_status, self._probe_hook)

    def _probe_hook(self, _):
        relation = self.model.get_relation("k6")
        assert relation is not None
        if self.unit.name == "k6/0":
            remote = next(u for u in relation.units if u.name == "k6/1")
            before = relation.data[remote].get("mark", "")
            Probing.during_hook()  # the world moves on while the hook runs
            Probing.seen[:] = [before, relation.data[remote].get("mark", "")]
        if self.unit.name == "k6/2":
            relation.data[self.app]["mark"] = '"written by a non-leader"'


@pytest.fixture
def probing():
    Probing.seen.clear()
    m = Model(3, {}, update_status_interval=None, charm_type=Probing)
    m.settle(timeout=30)
    yield m
    Probing.during_hook = staticmethod(lambda: None)
    assert m.close() == []


def test_only_the_leader_may_write_the_app_databag(probing):
    probing.update_status()
    probing.settle(timeout=30)

    errors = {h.unit: h.error for h in probing.hooks if h.event == "update_status" and h.error}
    assert list(errors) == ["k6/2"] and "RelationDataAccessError" in errors["k6/2"]
    assert "mark" not in probing.app_data


def test_peer_data_read_in_a_hook_is_a_snapshot_for_the_whole_hook(probing):
    probing.units[1].unit_data["mark"] = '"before"'
    Probing.during_hook = staticmethod(
        lambda: probing.units[1].unit_data.update(mark='"written meanwhile"')
    )

    probing.run_hook(probing.units[0], model_queued(probing, "update_status"))

    assert Probing.seen == ['"before"', '"before"']
    assert probing.units[1].unit_data["mark"] == '"written meanwhile"'


def test_writing_an_unchanged_value_fires_no_relation_changed(model):
    model.update_status()
    model.settle(timeout=30)  # idle units rewrite nothing
    before = len(model.hooks)

    model.update_status()
    model.settle(timeout=30)

    assert [h.event for h in model.hooks[before:]] == ["update_status"] * 3


def test_a_pebble_notice_wakes_only_the_unit_whose_workload_sent_it(model):
    notice = model.units[1].supervisor._record("k6.com/done", {"run_id": "x", "exit_code": "0"})
    model.units[1].supervisor.new_notices.append(notice)

    model._pump()

    assert {u.name: [q.kind for q in u.queue] for u in model.units.values()} == {
        "k6/0": [],
        "k6/1": ["pebble_custom_notice"],
        "k6/2": [],
    }


def model_queued(model: Model, kind: str):
    """One queued event of `kind`, as the scheduler would hand it to run_hook."""
    model._enqueue(model.units[0], kind)
    return model.units[0].queue.pop()


# ------------------------------------------------------------------ Juju as it runs: concurrent


def overlapped(a: Hook, b: Hook) -> bool:
    """Each of the two hooks started before the other's writes landed."""
    assert a.committed is not None and b.committed is not None
    return a.started < b.committed and b.started < a.committed


def test_concurrent_units_arm_at_once_each_on_a_snapshot_without_the_others_write():
    cost = 0.2
    with Model(
        3,
        {"load-test": "export default function () {}"},
        update_status_interval=None,
        concurrency=Concurrency(hook_cost=cost),
    ) as model:
        model.settle(timeout=30)
        run_id = model.action(0, "start").results["run-id"]
        model.settle(lambda: model.finished(run_id), timeout=60)

        arms: dict[str, Hook] = {}
        for hook in model.hooks:  # each unit's first write of its status: its arm
            if hook.unit != "k6/0" and "status" in hook.unit_keys:
                arms.setdefault(hook.unit, hook)
        one, two = arms["k6/1"], arms["k6/2"]
        assert overlapped(one, two)  # no serial schedule has two hooks in flight at once
        assert json.loads(one.seen["k6/2"].get("run_id", '""')) != run_id
        assert json.loads(two.seen["k6/1"].get("run_id", '""')) != run_id
        for hook in model.hooks:
            assert hook.committed is not None
            assert hook.committed >= hook.started + hook.duration + cost * 0.99
        assert model.app["last_run"]["outcome"] == "passed"


class Counting(Probing):
    """The charm; its update-status counts in the unit's databag, then raises while `failures`."""

    failures: ClassVar[int] = 0

    def _probe_hook(self, _):
        relation = self.model.get_relation("k6")
        assert relation is not None
        mine = relation.data[self.unit]
        mine["mark"] = str(int(mine.get("mark", "0")) + 1)
        if Counting.failures > 0:
            Counting.failures -= 1
            raise RuntimeError("flaky")


def test_writes_land_at_the_hooks_end_and_queue_one_relation_changed_per_writer():
    Counting.failures = 0
    concurrency = Concurrency(hook_cost=0.05, unit_costs={"k6/0": 2.0})
    with Model(
        2, {}, update_status_interval=None, charm_type=Counting, concurrency=concurrency
    ) as model:
        model.settle(timeout=30)
        model._enqueue(model.units[0], "update_status")
        assert model.start_hooks() == ["k6/0"]  # busy for about two seconds
        marks = []
        for _ in range(3):
            model._enqueue(model.units[1], "update_status")
            model.run_until(lambda: not model.units[1].queue and not model.units[1].busy_with)
            marks.append(model.units[1].unit_data["mark"])
        assert model.units[0].busy_with == "update_status"
        pending = [q for q in model.units[0].queue if q.kind == "relation_changed"]
        model.settle(timeout=30)

        assert model.units[0].busy_with is None
        assert marks == ["1", "2", "3"]  # each write landed when its hook ended
        assert [q.args for q in pending] == [{"remote": 1}]  # three writes, one event pending
        last = [h for h in model.hooks if h.unit == "k6/0"][-1]
        assert last.event == "relation_changed" and last.seen["k6/1"]["mark"] == "3"


def test_a_hook_that_raises_is_retried_with_jujus_backoff_before_the_units_later_events():
    Counting.failures = 2
    scale = 0.02  # Juju's 5 s, 10 s, … become 0.1 s, 0.2 s, …
    concurrency = Concurrency(hook_cost=0.01, retry_scale=scale)
    with Model(
        2, {}, update_status_interval=None, charm_type=Counting, concurrency=concurrency
    ) as model:
        model.settle(timeout=30)
        model._enqueue(model.units[1], "update_status")
        model.run_until(lambda: any(h.error for h in model.hooks))
        model._enqueue(model.units[1], "config_changed")  # comes while the unit is in error
        model.settle(timeout=30)

        hooks = [
            h
            for h in model.hooks
            if h.unit == "k6/1" and h.event in ("update_status", "config_changed")
        ]
        assert [(h.event, bool(h.error)) for h in hooks] == [
            ("update_status", True),
            ("update_status", True),
            ("update_status", False),
            ("config_changed", False),  # only once the failed hook passed
        ]
        first, second, third = (h.started for h in hooks[:3])
        assert second - first >= RETRY_MIN * scale * 0.97
        assert third - second >= RETRY_MIN * RETRY_FACTOR * scale * 0.97 * 0.97
        assert model.units[1].unit_data["mark"] == "1"  # the failed attempts committed nothing
        assert model.units[1].retry_delay == 0.0  # passed: the backoff starts over


def test_leadership_moves_once_the_old_leaders_hook_has_ended():
    concurrency = Concurrency(hook_cost=0.05, unit_costs={"k6/0": 1.0})
    with Model(2, {}, update_status_interval=None, concurrency=concurrency) as model:
        model.settle(timeout=30)
        model._enqueue(model.units[0], "update_status")
        assert model.start_hooks() == ["k6/0"]

        model.elect(1)
        assert model.leader == 0  # its lease holds while its hook runs
        model.settle(timeout=30)

        assert model.leader == 1
        old = next(h for h in model.hooks if h.unit == "k6/0" and h.event == "update_status")
        elected = next(h for h in model.hooks if h.event == "leader_elected" and h.unit == "k6/1")
        assert old.committed is not None and elected.started >= old.committed


# ------------------------------------------------------------------ pod restarts


def test_a_restarted_pod_keeps_name_and_databag_comes_back_empty_and_gets_the_churn_events():
    with Model(
        2,
        {"load-test": scripts.constant_vus(2, "30s")},
        update_status_interval=None,
        concurrency=Concurrency(hook_cost=0.05),
    ) as model:
        model.settle(timeout=30)
        run_id = model.action(0, "start").results["run-id"]
        model.settle(lambda: model.app["run"]["phase"] == "running", timeout=30)
        unit = model.units[1]
        assert (
            any(unit.workdir.iterdir()) and unit.layers and model.k6_running() == ["k6/0", "k6/1"]
        )
        before = len(model.hooks)

        model.restart_pod(1)
        model.settle(lambda: not unit.restarting, timeout=30)

        events = [h.event for h in model.hooks[before:] if h.unit == "k6/1"]
        churn = [
            "stop",
            "upgrade_charm",
            "config_changed",
            "leader_settings_changed",
            "start",
            "pebble_ready",
        ]
        assert [e for e in events if e in churn] == churn
        assert unit.name == "k6/1" and unit.pod == 1 and unit.ready_pod == 1
        assert not any(unit.workdir.iterdir())  # the script, the summary: gone with the pod
        assert (
            unit.layers == {} and unit.supervisor.services == {} and unit.supervisor.notices == {}
        )
        assert "k6/1" not in model.k6_running() and unit.supervisor.leftovers(0) == []
        report = model.unit_view(1)
        assert report["run_id"] == run_id and report["endpoint"]  # the databag stayed
        assert [e for _, u, e in model.pod_log] == ["down", "ready"]


def test_a_units_pending_events_run_in_the_uniters_order():
    with Model(3, {}, update_status_interval=None, concurrency=Concurrency(0.01)) as model:
        model.settle(timeout=30)
        unit = model.units[2]
        for kind, args in [
            ("relation_changed", {"remote": 1}),
            ("update_status", {}),
            ("relation_changed", {"remote": 0}),
            ("pebble_custom_notice", {"key": "k6.com/done"}),
            ("relation_changed", {"remote": None}),  # the leader's app-settings change
            ("config_changed", {}),
            ("leader_elected", {}),
        ]:
            model._enqueue(unit, kind, **args)
        unit.action = model_queued(model, "action")

        order = []
        while (queued := model._next_event(unit)) is not None:
            order.append((queued.kind, queued.args.get("remote")))

        assert order == [
            ("leader_elected", None),
            ("pebble_custom_notice", None),  # workload events before actions and hooks
            ("action", None),
            ("config_changed", None),
            ("relation_changed", None),  # a relation's hooks: the app's change first,
            ("relation_changed", 0),  # then units' changes by unit name
            ("relation_changed", 1),
            ("update_status", None),
        ]


# ------------------------------------------------------------------ the emulator's own footprint


def contexts_of_a_model_that_ran(concurrency: Concurrency | None) -> list[weakref.ref]:
    """Weak references to the unit contexts of a model that deployed, ran once and closed."""
    script = {"load-test": "export default function () {}"}
    with Model(3, script, update_status_interval=None, concurrency=concurrency) as model:
        model.settle(timeout=30)
        run_id = model.action(0, "start").results["run-id"]
        model.settle(lambda: model.finished(run_id), timeout=30)
        assert len(model.hooks) > 10
        return [weakref.ref(unit.ctx) for unit in model.units.values()]


@pytest.mark.parametrize("concurrency", [None, Concurrency(0.01)], ids=["serial", "concurrent"])
def test_a_closed_model_leaves_nothing_of_its_hooks_alive(concurrency):
    # Arrange
    contexts = contexts_of_a_model_that_ran(concurrency)

    # Act
    gc.collect()

    # Assert: no unit's context (nor the frameworks and charms its runs made) outlives the model;
    # the soak runs 7,000 models in one process
    assert [ref() for ref in contexts] == [None, None, None]
