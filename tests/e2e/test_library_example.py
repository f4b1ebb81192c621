"""The library's docstring example is a complete charm: run it as written on the emulator."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import charms.k6_k8s.v0.synchronized_task as library
import pytest
import yaml

from tests.emulator.model import CharmUnderTest, Model

pytestmark = pytest.mark.timeout(90)

META = {
    "name": "coconuts",
    "containers": {"eater": {"resource": "image"}},
    "resources": {"image": {"type": "oci-image"}},
    "peers": {"tasks": {"interface": "coconut_tasks"}},
}
ACTIONS = {"eat": {"params": {"coconuts": {"type": "integer"}}}}


@pytest.fixture
def example(tmp_path: Path) -> CharmUnderTest:
    """The docstring's code block as a charm module, with the metadata it describes."""
    (code,) = re.findall(r"```python\n(.*?)```", library.__doc__ or "", re.S)
    path = tmp_path / "docstring_charm.py"
    path.write_text(code)
    (tmp_path / "metadata.yaml").write_text(yaml.safe_dump(META))
    (tmp_path / "actions.yaml").write_text(yaml.safe_dump(ACTIONS))
    spec = importlib.util.spec_from_file_location("docstring_charm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docstring_charm"] = module
    spec.loader.exec_module(module)
    charm = module.CoconutCharm
    yield CharmUnderTest(charm, tmp_path, "coconuts", "tasks", "eater", module.WORKDIR)
    sys.modules.pop("docstring_charm", None)


def test_the_docstring_example_eats_every_coconut_once_across_units(example):
    with Model(3, {}, charm=example, update_status_interval=None) as model:
        model.settle(timeout=30)

        result = model.action(0, "eat", coconuts=10)
        run_id = result.results["run-id"]
        model.settle(lambda: model.finished(run_id), timeout=60)

        last = model.app["last_run"]
        eaten = {u.name: (u.workdir / "eaten").read_text().split() for u in model.units.values()}
        assert result.ok, result.failure
        assert last["outcome"] == "passed", last["reason"]
        assert sorted(int(i) for lines in eaten.values() for i in lines) == list(range(10))
        assert {u: len(lines) for u, lines in eaten.items()} == {
            "coconuts/0": 3,
            "coconuts/1": 3,
            "coconuts/2": 4,
        }
        assert model.k6_running() == []
