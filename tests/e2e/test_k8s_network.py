"""Juju on Kubernetes networking: every unit's k6 is reached at its own pod, never the Service.

On Kubernetes, network-get's ingress-address is the app's Service ClusterIP, one address for
all units; the emulator models it (docs/juju-k8s.md) with a shared address where nothing
listens on 6565 and records every connect the charm makes.
"""

from __future__ import annotations

import pytest
from charms.k6_k8s.v0.synchronized_task import endpoint_of

import k6_client
from charm import K6Charm
from tests.e2e import scripts
from tests.emulator.model import K8S, PER_UNIT_INGRESS, Model, unit_address
from tests.support.emulated_runs import assert_all_idle, configure, run_to_end

pytestmark = pytest.mark.timeout(90)


class IngressPublishingCharm(K6Charm):
    """The charm as it was before: it publishes ingress-address as its k6 endpoint."""

    def __init__(self, framework):
        super().__init__(framework)
        self.task.published_endpoint = self._ingress_endpoint  # type: ignore[method-assign]

    def _ingress_endpoint(self) -> str:
        network = self.model.get_binding("k6").network  # type: ignore[union-attr]
        return endpoint_of(str(network.ingress_address), k6_client.PORT)


def k6_connects(model: Model) -> dict[str, set[str]]:
    """Which hosts each unit's hooks connected to on the k6 port."""
    seen: dict[str, set[str]] = {}
    for c in model.network.connects:
        if c.port == k6_client.PORT:
            seen.setdefault(c.unit, set()).add(c.host)
    return seen


def print_spread(target, label: str) -> None:
    firsts = target.stats()["first"]
    spread_ms = (max(firsts.values()) - min(firsts.values())) * 1000 if firsts else float("nan")
    print(f"{label}: first-request spread {spread_ms:.2f} ms over {len(firsts)} unit(s)")


@pytest.mark.parametrize("network", [K8S, PER_UNIT_INGRESS])
@pytest.mark.parametrize("units", [1, 3])
def test_shared_iterations_send_exactly_60_requests(make_model, target, units, network):
    script = scripts.shared_iterations(60, vus=6)
    model = make_model(units, configure(target, script), network=network)

    last = run_to_end(model)

    print_spread(target, f"{network}, {units} unit(s), shared-iterations 60")
    assert last["outcome"] == "passed", last["reason"]
    assert target.stats()["count"] == 60
    assert set(target.stats()["by_unit"]) == {f"k6/{i}" for i in range(units)}
    assert_all_idle(model)
    assert model.connects_to(model.service_address) == []


@pytest.mark.parametrize("network", [K8S, PER_UNIT_INGRESS])
@pytest.mark.parametrize("units", [1, 3])
def test_constant_arrival_rate_sends_rate_times_duration(make_model, target, units, network):
    model = make_model(
        units, configure(target, scripts.constant_arrival_rate(40, "3s")), network=network
    )

    last = run_to_end(model)

    print_spread(target, f"{network}, {units} unit(s), 40/s x 3 s")
    count = target.stats()["count"]
    assert last["outcome"] == "passed", last["reason"]
    assert abs(count - 120) <= 0.05 * 120, count
    assert_all_idle(model)
    assert model.connects_to(model.service_address) == []


def test_on_kubernetes_resume_stop_and_probe_go_to_each_pod_only(make_model, target, monkeypatch):
    monkeypatch.setattr(
        "k6_workload.ARM_WAIT_SECONDS", 0.0
    )  # units report "pending": leader probes
    monkeypatch.setattr("k6_workload.RECHECK_WAIT_SECONDS", 0.0)
    model = make_model(3, configure(target, scripts.constant_vus(3, "30s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.app["run"]["phase"] == "running", timeout=30)
    model.settle(lambda: len(target.stats()["by_unit"]) == 3, timeout=10)

    model.action(0, "stop")
    model.settle(lambda: model.finished(run_id), timeout=30)

    assert model.app["last_run"]["outcome"] == "stopped"
    pods = {unit_address(i) for i in range(3)}
    assert model.connects_to(model.service_address) == []
    assert k6_connects(model)["k6/0"] == pods  # probe, resume and stop: each pod
    assert all(hosts <= pods for hosts in k6_connects(model).values())
    assert all(
        model.unit_view(i)["endpoint"] == f"{unit_address(i)}:{k6_client.PORT}" for i in range(3)
    )
    assert_all_idle(model)


@pytest.mark.parametrize("units", [1, 3])
def test_publishing_ingress_address_fails_on_kubernetes_and_sends_no_load(
    make_model, target, units
):
    script = scripts.shared_iterations(60, vus=6)
    model = make_model(units, configure(target, script), charm_type=IngressPublishingCharm)

    last = run_to_end(model)

    assert last["outcome"] == "failed"
    assert last["reason"].startswith("release failed: k6/0: connect failed after 3 attempts: ")
    assert "Connection refused" in last["reason"]
    assert target.stats()["count"] == 0
    assert len(model.connects_to(model.service_address)) >= 3
    assert_all_idle(model)


def test_publishing_ingress_address_works_only_where_ingress_is_per_unit(make_model, target):
    script = scripts.shared_iterations(60, vus=6)
    model = make_model(
        3, configure(target, script), charm_type=IngressPublishingCharm, network=PER_UNIT_INGRESS
    )

    last = run_to_end(model)

    assert last["outcome"] == "passed", last["reason"]
    assert target.stats()["count"] == 60
