"""The coconut example (examples/coconut) on the emulator: the library drives a second charm.

Real shells eat real coconuts (lines in files) on 3 emulated units released by InstantRelease:
the starts lie within the bound, every share is eaten exactly once, a lost unit is named.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections import Counter
from types import ModuleType

import pytest
import yaml
from charms.k6_k8s.v0.synchronized_task import Share

from tests.emulator.model import ROOT, CharmUnderTest, Model

pytestmark = pytest.mark.timeout(90)

EXAMPLE = ROOT / "examples" / "coconut"
# A sanity bound, not a speed goal (tests assert no wall-clock times): a unit that started on
# anything but its own clock (e.g. a later hook) would be a hook interval late. The skew itself
# is printed (tens of ms here: the eaters' poll interval plus process wake-ups).
SKEW_SANITY_MS = 1000.0


def _load_example() -> tuple[ModuleType, ModuleType]:
    """The example's charm module under its own name (the k6 charm is `charm` here)."""
    src = str(EXAMPLE / "src")
    if src not in sys.path:
        sys.path.append(src)  # after the k6 charm's src: its own modules, eater and tally
    module = sys.modules.get("coconut_charm")
    if module is None:
        spec = importlib.util.spec_from_file_location("coconut_charm", EXAMPLE / "src/charm.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["coconut_charm"] = module
        spec.loader.exec_module(module)
    return module, importlib.import_module("eater")


coconut_charm, eater = _load_example()


@pytest.fixture(scope="module")
def coconut(tmp_path_factory: pytest.TempPathFactory) -> CharmUnderTest:
    """The example as the emulator deploys it.

    Its charmcraft.yaml is split into metadata.yaml and actions.yaml first: the emulator hands
    a unified charmcraft.yaml to Scenario as meta *and* its actions again, which Scenario
    refuses ("Cannot specify actions in both").
    """
    root = tmp_path_factory.mktemp("coconut-charm")
    meta = yaml.safe_load((EXAMPLE / "charmcraft.yaml").read_text())
    (root / "actions.yaml").write_text(yaml.safe_dump(meta.pop("actions")))
    (root / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return CharmUnderTest(
        coconut_charm.CoconutCharm,
        root,
        app="coconut",
        peer="tasks",
        container="eater",
        workdir=eater.WORKDIR,
    )


def eat(model: Model, coconuts: int) -> str:
    """`juju run coconut/leader eat coconuts=N`; the run id."""
    result = model.action(model.leader, "eat", coconuts=coconuts)
    assert result.ok, result.failure
    return result.results["run-id"]


def eat_and_wait(model: Model, coconuts: int) -> dict:
    """Eat, wait until the run ended; the last-run record."""
    run_id = eat(model, coconuts)
    model.settle(lambda: model.finished(run_id), timeout=60)
    return model.app["last_run"]


def eaten_on_disk(model: Model, index: int) -> list[int]:
    """The coconut numbers unit `index` wrote, in order."""
    path = model.unit(index).workdir / eater.EATEN_FILE
    return [int(n) for n in path.read_text().split()] if path.exists() else []


def test_three_units_start_eating_at_the_instant_they_all_learnt_in_time(make_model, coconut):
    model = make_model(3, charm=coconut)

    last = eat_and_wait(model, 30)

    assert last["outcome"] == "passed", last["reason"]
    instant = last["started"]  # InstantRelease: the scheduled start
    starts = {u: line["line"]["started"] for u, line in last["units"].items()}
    on_disk = {
        u.name: float((u.workdir / eater.STARTED_FILE).read_text()) for u in model.units.values()
    }
    assert starts == pytest.approx(on_disk)
    skew_ms = (max(starts.values()) - min(starts.values())) * 1000
    after_ms = (min(starts.values()) - instant) * 1000
    print(
        f"\ncoconut start skew over 3 units: {skew_ms:.3f} ms "
        f"(first start {after_ms:.3f} ms after the instant; "
        f"units learnt it {[line['late_ms'] for line in last['units'].values()]} ms late)"
    )
    assert all(t >= instant for t in starts.values()), (instant, starts)
    assert skew_ms < SKEW_SANITY_MS
    assert last["aggregate"]["start_skew_ms"] == pytest.approx(skew_ms, abs=0.01)
    assert all(line["late_ms"] == 0.0 for line in last["units"].values())  # in time


def test_every_share_is_eaten_exactly_once(make_model, coconut):
    model = make_model(3, charm=coconut)

    last = eat_and_wait(model, 31)

    assert last["outcome"] == "passed", last["reason"]
    assert last["aggregate"]["eaten"] == 31
    counts = {u: line["line"]["eaten"] for u, line in last["units"].items()}
    assert counts == {f"coconut/{i}": Share(i, 3).split(31) for i in range(3)}
    eaten = [n for i in range(3) for n in eaten_on_disk(model, i)]
    assert Counter(eaten) == Counter(range(31))
    assert model.k6_running() == []  # no eater left running


def test_a_unit_lost_mid_run_is_named_and_the_others_finish(make_model, coconut):
    model = make_model(3, charm=coconut)
    run_id = eat(model, 3 * 150)
    lost = model.unit(2)
    model.settle(lambda: (lost.workdir / eater.STARTED_FILE).exists(), timeout=30)
    assert model.app["run"]["phase"] == "running"
    assert len(eaten_on_disk(model, 2)) < 150  # still eating

    model.remove_unit(2)
    model.settle(lambda: model.finished(run_id), timeout=60)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert last["reason"] == "lost during the run: coconut/2"
    assert last["units"]["coconut/2"]["lost"] is True
    for i in (0, 1):
        line = last["units"][f"coconut/{i}"]
        assert (line["exit_code"], line["lost"], line["line"]["eaten"]) == (0, False, 150)
    assert last["aggregate"]["eaten"] == 300
    assert "300 of 450 coconuts eaten" in last["failures"]
    assert model.k6_running() == []


def test_a_stop_while_eating_ends_every_unit_at_once_with_its_notice(make_model, coconut):
    model = make_model(3, charm=coconut)
    run_id = eat(model, 3 * 150)
    model.settle(lambda: (model.unit(2).workdir / eater.STARTED_FILE).exists(), timeout=30)

    stopped = model.action(model.leader, "stop")
    model.settle(lambda: model.finished(run_id), timeout=30)

    assert stopped.ok, stopped.failure
    last = model.app["last_run"]
    assert (last["outcome"], last["reason"]) == ("stopped", "stopped by user")
    # every shell ended on SIGTERM and still sent its done notice (no SIGKILL, no silence)
    assert {u: line["exit_code"] for u, line in last["units"].items()} == {
        f"coconut/{i}": 143 for i in range(3)
    }
    assert 0 < last["aggregate"]["eaten"] < 450
    assert model.k6_running() == []
