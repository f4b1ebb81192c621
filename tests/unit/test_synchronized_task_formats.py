"""Records across revisions: what an older LIBPATCH wrote, and what a newer one may write.

A rolling `juju refresh` runs old and new revisions side by side on one peer relation. This
library reads every record of the previous LIBPATCH (fixtures written by it, data/records/) and
refuses a newer format with a clear status instead of raising; a run it cannot read still ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from charms.k6_k8s.v0.synchronized_task import (
    ARMING,
    BUSY,
    FORMAT,
    IDLE,
    PENDING,
    RUNNING,
    STOPPING,
    AppData,
    Finish,
    LastRun,
    Run,
    UnitReport,
    UnreadableRecord,
    decide_leader,
)
from ops import testing

from tests.support.task_scenario import (
    FakeWorkload,
    app_out,
    at,
    context,
    peers,
    scenario_run,
    state,
    unit_bag,
    unit_out,
    worker,
)

PREVIOUS = json.loads((Path(__file__).parent / "data" / "records" / "libpatch3.json").read_text())


def app_from(bag: dict[str, str]) -> AppData:
    """The app databag as Relation.load reads it (each field one JSON value)."""
    return AppData(**{k: json.loads(v) for k, v in bag.items()})


def report_from(bag: dict[str, str]) -> UnitReport:
    return UnitReport(**{k: json.loads(v) for k, v in bag.items()})


# ------------------------------------------------------------ the previous LIBPATCH's records


def test_the_fixtures_were_written_by_the_previous_libpatch():
    assert PREVIOUS["libpatch"] == 3
    runs = [json.loads(bag["run"]) for bag in PREVIOUS["app"].values()]
    assert all("format" not in run for run in runs if run is not None)


@pytest.mark.parametrize(
    ("phase", "expected"), [("arming", ARMING), ("running", RUNNING), ("stopping", STOPPING)]
)
def test_a_run_the_previous_libpatch_wrote_reads_as_a_run_not_yet_prepared(phase, expected):
    data = app_from(PREVIOUS["app"][phase])

    assert data.run is not None and data.run.phase == expected
    assert data.run.participants == ("k6/0", "k6/1", "k6/2")
    assert (data.run.prepared, data.run.watcher, data.run.format) == (None, "", FORMAT)
    assert data.payload is not None and data.payload["script_name"] == "load-test.js"


def test_a_last_run_record_the_previous_libpatch_wrote_reads_whole():
    last = app_from(PREVIOUS["app"]["idle"]).last_run

    assert isinstance(last, LastRun)
    assert (last.run_id, last.outcome, last.concluded) == ("a1b2c3d4e5f6", "passed", {})
    assert last.units["k6/1"].line == {"requests": 20}


@pytest.mark.parametrize(
    ("kind", "status"), [("pending", PENDING), ("busy", BUSY), ("idle", IDLE)]
)
def test_a_report_the_previous_libpatch_wrote_reads_whole(kind, status):
    report = report_from(PREVIOUS["unit"][kind])

    assert (report.status, report.run_id, report.stop_run, report.ended_at) == (
        status,
        "a1b2c3d4e5f6",
        "",
        None,
    )


def test_a_running_run_of_the_previous_libpatch_finishes_on_this_one():
    data = app_from(PREVIOUS["app"]["running"])
    assert data.run is not None
    idle = report_from(PREVIOUS["unit"]["idle"])
    units = dict.fromkeys(data.run.participants, idle)
    from tests.support.task_observations import observed

    actions = decide_leader(observed(data.run, units, me="k6/0"))

    # not prepared by the old leader: no conclusion to wait for; a watch first, then the end
    assert [type(a).__name__ for a in actions] == ["Watch"]
    watched = decide_leader(
        observed(Run.from_dict({**data.run.to_dict(), "watcher": "k6/0"}), units, me="k6/0")
    )
    assert watched == [Finish(lost=())]


# ------------------------------------------------------------ a newer revision's records


NEWER_RUN = {
    **json.loads(PREVIOUS["app"]["running"]["run"]),
    "format": FORMAT + 1,
    "phase": "concluding",  # a phase this revision does not know
    "quorum": 2,  # a field it does not know
}


def test_a_newer_run_is_refused_naming_its_format():
    with pytest.raises(UnreadableRecord, match=f"the run has format {FORMAT + 1}, newer than"):
        Run.from_dict(NEWER_RUN)


def test_fields_a_newer_revision_added_to_a_readable_run_are_ignored():
    run = Run.from_dict({**json.loads(PREVIOUS["app"]["running"]["run"]), "quorum": 2})

    assert run.phase == RUNNING and not hasattr(run, "quorum")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"run_id": "x"}, "the run is damaged"),
        ({**NEWER_RUN, "format": FORMAT, "phase": "concluding"}, "unknown phase 'concluding'"),
        ({**NEWER_RUN, "format": "two"}, "the run has no readable format"),
        ([1, 2], "the run is not a JSON object"),
    ],
)
def test_a_damaged_run_is_unreadable_not_a_crash(record, message):
    with pytest.raises(UnreadableRecord, match=message):
        Run.from_dict(record)  # type: ignore[arg-type]


def newer_app_bag() -> dict[str, str]:
    bag = dict(PREVIOUS["app"]["running"])
    bag["run"] = json.dumps(NEWER_RUN)
    return bag


def test_a_participant_that_cannot_read_the_run_ends_its_share_and_says_why():
    workload = FakeWorkload()
    ctx = context(workload, unit_id=1)
    mine = UnitReport(endpoint="", status=BUSY, run_id="a1b2c3d4e5f6")
    relation = peers(newer_app_bag(), mine=mine)

    out = ctx.run(ctx.on.update_status(), state(relation, leader=False))

    report = unit_out(out, relation)
    assert (report.status, report.run_id) == (IDLE, "a1b2c3d4e5f6")
    assert report.error.startswith("cannot read the application databag: the run has format 3")
    assert workload.called("halt") == [()]  # its workload stopped: the run ends for it
    assert out.unit_status == testing.BlockedStatus(
        f"cannot read the application databag: the run has format {FORMAT + 1}, newer than this "
        "revision's 2 (LIBPATCH 5): refresh this unit to the charm revision that wrote it"[:120]
    )


def test_a_leader_that_cannot_read_the_app_databag_writes_nothing_and_refuses_to_start():
    workload = FakeWorkload()
    ctx = context(workload)
    relation = peers(newer_app_bag())

    with pytest.raises(testing.ActionFailed, match="cannot read the application databag"):
        ctx.run(ctx.on.action("start", params={"size": 3}), state(relation))
    out = ctx.run(ctx.on.update_status(), state(relation))

    assert out.get_relation(relation.id).local_app_data == newer_app_bag()  # untouched
    assert out.unit_status.name == "blocked"
    assert workload.called("arm") == []


def test_a_damaged_app_databag_is_a_blocked_status_not_a_hook_error():
    ctx = context(FakeWorkload(), unit_id=1)
    relation = peers({"run": "{not json", "payload": "null", "last_run": "null"})

    out = ctx.run(ctx.on.update_status(), state(relation, leader=False))

    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("cannot read the application databag: ")


def test_a_participant_report_in_a_newer_format_fails_the_run_before_its_start():
    workload = FakeWorkload()
    ctx = context(workload)
    newer = {**unit_bag(at("10.0.0.11:7000")), "format": json.dumps(FORMAT + 1)}
    relation = testing.PeerRelation(
        "peers",
        local_app_data={
            "run": json.dumps(scenario_run(ARMING).to_dict()),
            "payload": json.dumps({"size": 12}),
            "last_run": "null",
        },
        local_unit_data=unit_bag(at("10.0.0.10:7000")),
        peers_data={1: newer, 2: unit_bag(at("10.0.0.12:7000"))},
    )

    out = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=1), state(relation, container=worker())
    )

    run = app_out(out, relation).run
    assert run is not None and run.phase == STOPPING
    assert run.reason.startswith("failed before the start: app/1 (no exit code: unreadable report")
    assert f"has format {FORMAT + 1}" in run.reason
