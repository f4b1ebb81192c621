"""A rolling refresh puts two revisions on one peer relation: records one side cannot read.

Real k6 on the emulator. A newer revision's leader rewrites the running run in a format this
revision does not know: every unit of this revision ends its share and says why (no hook error,
no k6 left), and once the leader writes a run they can read again the run ends.
"""

from __future__ import annotations

import json

from charms.k6_k8s.v0.synchronized_task import FORMAT

from tests.e2e import scripts
from tests.support.emulated_runs import assert_all_idle, configure


def newer(record: str) -> str:
    """The same run as a newer revision would write it: a newer format, a field unknown here."""
    run = json.loads(record)
    return json.dumps({**run, "format": FORMAT + 1, "quorum": 2})


def test_units_that_cannot_read_a_newer_leaders_run_end_their_share_and_say_why(
    make_model, target
):
    model = make_model(3, configure(target, scripts.constant_vus(3, "30s")))
    run_id = model.action(0, "start").results["run-id"]
    model.settle(lambda: model.app["run"]["phase"] == "running", timeout=30)
    model.settle(lambda: len(target.stats()["by_unit"]) == 3, timeout=10)
    current = model.app_data["run"]

    model.app_data["run"] = newer(current)  # the refreshed leader's write...
    model.update_status()  # ...reaches the others' hooks (and the leader's own)
    model.settle(lambda: not model.k6_running(), timeout=60)

    errors = {u.name: model.unit_view(u.index).get("error", "") for u in model.units.values()}
    assert all(
        e.startswith(f"cannot read the application databag: the run has format {FORMAT + 1}")
        for e in errors.values()
    ), errors
    assert all(
        u.status.startswith("blocked: cannot read the application databag")
        for u in model.units.values()
    )
    assert not [h for h in model.hooks if h.error]  # a clear status, never a hook error
    assert json.loads(model.app_data["run"])["format"] == FORMAT + 1  # nobody wrote over it

    model.app_data["run"] = current  # the leader, refreshed too, writes what everyone reads
    model.update_status()
    model.settle(lambda: model.finished(run_id), timeout=60)

    last = model.app["last_run"]
    assert last["outcome"] == "failed"
    assert "cannot read the application databag" in last["reason"]
    assert_all_idle(model)
