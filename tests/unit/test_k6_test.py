"""The k6_tests charm library: the provider and the requirer tested against each other."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import ClassVar

import ops
import pytest
from charms.k6_k8s.v0 import k6_test
from ops import testing

PROVIDER_META = {
    "name": "webapp",
    "provides": {"send-k6-tests": {"interface": "k6_tests"}},
}
REQUIRER_META = {
    "name": "k6",
    "requires": {"receive-k6-tests": {"interface": "k6_tests"}},
}
ENVIRONMENT = {"TARGET": "http://webapp:8080", "TOKEN": "a=b,c"}
SMOKE = "import http from 'k6/http';\nexport default function () { http.get(__ENV.TARGET); }\n"
SPIKE = "export const options = { vus: 100 };\nexport default function () {}\n"


def provider_context(tests_dir: str | Path, environment=None, **kwargs) -> testing.Context:
    class ProviderCharm(ops.CharmBase):
        def __init__(self, framework: ops.Framework):
            super().__init__(framework)
            self.k6_tests = k6_test.K6TestProvider(
                self, tests_dir=tests_dir, environment=environment
            )

    return testing.Context(ProviderCharm, meta=PROVIDER_META, **kwargs)


class RequirerCharm(ops.CharmBase):
    seen: ClassVar[list[dict[str, k6_test.ProvidedTests]]] = []

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.k6_tests = k6_test.K6TestRequirer(self)
        framework.observe(self.k6_tests.on.tests_changed, self._on_tests_changed)

    def _on_tests_changed(self, _: k6_test.K6TestsChangedEvent):
        RequirerCharm.seen.append(self.k6_tests.tests())


@pytest.fixture
def requirer() -> testing.Context:
    RequirerCharm.seen = []
    return testing.Context(RequirerCharm, meta=REQUIRER_META)


@pytest.fixture
def tests_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "load"
    folder.mkdir()
    (folder / "smoke.js").write_text(SMOKE)
    (folder / "spike.js").write_text(SPIKE)
    (folder / "README.md").write_text("not a test")
    (folder / "nested").mkdir()
    (folder / "nested" / "deep.js").write_text("export default function () {}")
    (folder / "dir.js").mkdir()
    return folder


def published(state: testing.State, relation: testing.Relation) -> dict:
    return json.loads(state.get_relation(relation.id).local_app_data["k6"])


def provided_tests(requirer: testing.Context, *relations: testing.Relation):
    """What the requirer's tests_changed handler sees after relation-changed on the first."""
    state = testing.State(relations=relations)
    requirer.run(requirer.on.relation_changed(relations[0], remote_unit=0), state)
    return RequirerCharm.seen[-1]


def test_leader_publishes_top_level_js_files_and_environment(tests_dir):
    ctx = provider_context(tests_dir, ENVIRONMENT)
    relation = testing.Relation("send-k6-tests", remote_app_name="k6")

    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        testing.State(leader=True, relations=[relation]),
    )

    assert published(out, relation) == {
        "tests": {"smoke.js": SMOKE, "spike.js": SPIKE},
        "environment": ENVIRONMENT,
    }


def test_provider_and_requirer_agree_on_the_databag(tests_dir, requirer):
    provider = provider_context(tests_dir, ENVIRONMENT)
    sent = testing.Relation("send-k6-tests", remote_app_name="k6")
    out = provider.run(
        provider.on.relation_created(sent), testing.State(leader=True, relations=[sent])
    )
    databag = out.get_relation(sent.id).local_app_data
    received = testing.Relation(
        "receive-k6-tests", remote_app_name="webapp", remote_app_data=dict(databag)
    )

    seen = provided_tests(requirer, received)

    assert seen == {
        "webapp": k6_test.ProvidedTests(
            tests={"smoke.js": SMOKE, "spike.js": SPIKE}, environment=ENVIRONMENT, error=None
        )
    }


@pytest.mark.parametrize(
    "event",
    ["relation_created", "relation_joined", "leader_elected", "upgrade_charm", "config_changed"],
)
def test_every_trigger_publishes_to_every_relation(tests_dir, event):
    ctx = provider_context(tests_dir)
    first = testing.Relation("send-k6-tests", remote_app_name="k6-a")
    second = testing.Relation("send-k6-tests", remote_app_name="k6-b")
    state = testing.State(leader=True, relations=[first, second])
    trigger = getattr(ctx.on, event)
    if event == "relation_joined":
        fired = trigger(first, remote_unit=0)
    else:
        fired = trigger(first) if event == "relation_created" else trigger()

    out = ctx.run(fired, state)

    expected = {"tests": {"smoke.js": SMOKE, "spike.js": SPIKE}, "environment": {}}
    assert published(out, first) == expected
    assert published(out, second) == expected


def test_non_leader_writes_nothing(tests_dir):
    ctx = provider_context(tests_dir, ENVIRONMENT)
    relation = testing.Relation("send-k6-tests", remote_app_name="k6")

    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        testing.State(leader=False, relations=[relation]),
    )

    assert out.get_relation(relation.id).local_app_data == {}


def test_explicit_publish_replaces_the_environment(tests_dir):
    ctx = provider_context(tests_dir, ENVIRONMENT)
    relation = testing.Relation("send-k6-tests", remote_app_name="k6")
    state = testing.State(leader=True, relations=[relation])

    with ctx(ctx.on.update_status(), state) as manager:
        manager.charm.k6_tests.publish(environment={"TARGET": "http://new:1"})
        out = manager.run()

    assert published(out, relation)["environment"] == {"TARGET": "http://new:1"}


def test_relative_tests_dir_is_resolved_against_the_charm_root(tmp_path):
    (tmp_path / "tests" / "load").mkdir(parents=True)
    (tmp_path / "tests" / "load" / "smoke.js").write_text(SMOKE)
    ctx = provider_context("tests/load", charm_root=tmp_path)
    relation = testing.Relation("send-k6-tests", remote_app_name="k6")

    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        testing.State(leader=True, relations=[relation]),
    )

    assert published(out, relation)["tests"] == {"smoke.js": SMOKE}


def test_provider_skips_files_the_requirer_would_refuse(tests_dir, caplog):
    (tests_dir / "big.js").write_text("x" * (k6_test.MAX_SCRIPT_BYTES + 1))
    (tests_dir / "latin1.js").write_bytes(b"caf\xe9")
    (tests_dir / "bad name.js").write_text(SMOKE)
    ctx = provider_context(tests_dir)
    relation = testing.Relation("send-k6-tests", remote_app_name="k6")

    with caplog.at_level(logging.WARNING):
        out = ctx.run(
            ctx.on.relation_joined(relation, remote_unit=0),
            testing.State(leader=True, relations=[relation]),
        )

    assert sorted(published(out, relation)["tests"]) == ["smoke.js", "spike.js"]
    skipped = [r.getMessage() for r in caplog.records if "not publishing" in r.getMessage()]
    assert len(skipped) == 3


def test_missing_tests_dir_publishes_no_tests(tmp_path, caplog):
    ctx = provider_context(tmp_path / "absent", ENVIRONMENT)
    relation = testing.Relation("send-k6-tests", remote_app_name="k6")

    with caplog.at_level(logging.WARNING):
        out = ctx.run(
            ctx.on.relation_joined(relation, remote_unit=0),
            testing.State(leader=True, relations=[relation]),
        )

    assert published(out, relation) == {"tests": {}, "environment": ENVIRONMENT}
    assert "does not exist" in caplog.text


def test_leader_without_relations_reads_nothing(tmp_path, caplog):
    ctx = provider_context(tmp_path / "absent")

    with caplog.at_level(logging.WARNING):
        ctx.run(ctx.on.config_changed(), testing.State(leader=True))

    assert "does not exist" not in caplog.text


def test_script_of_exactly_the_limit_is_accepted():
    text = "x" * k6_test.MAX_SCRIPT_BYTES

    parsed = k6_test.parse_provided(json.dumps({"tests": {"big.js": text}}))

    assert parsed == k6_test.ProvidedTests(tests={"big.js": text})


def test_app_that_has_not_published_yet_provides_nothing(requirer):
    relation = testing.Relation("receive-k6-tests", remote_app_name="webapp")

    assert provided_tests(requirer, relation) == {"webapp": k6_test.ProvidedTests()}


def test_legacy_provider_data_without_environment_is_accepted(requirer):
    relation = testing.Relation(
        "receive-k6-tests",
        remote_app_name="old",
        remote_app_data={"k6": json.dumps({"tests": {"a.js": SMOKE}})},
    )

    assert provided_tests(requirer, relation) == {
        "old": k6_test.ProvidedTests(tests={"a.js": SMOKE})
    }


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{not json", "'k6' is not valid JSON"),
        ("", "'k6' is not valid JSON"),
        ("null", "'k6' is not a JSON object"),
        ('["a.js"]', "'k6' is not a JSON object"),
        ('"text"', "'k6' is not a JSON object"),
        ('{"tests": ["a.js"]}', "'tests' is not a JSON object"),
        ('{"tests": {"a.js": 1}}', "test 'a.js' is not a string"),
        ('{"tests": {"a.js": null}}', "test 'a.js' is not a string"),
        ('{"tests": {"../a.js": "x"}}', "test name '../a.js' is not a plain file name"),
        ('{"tests": {"sub/a.js": "x"}}', "test name 'sub/a.js' is not a plain file name"),
        ('{"tests": {"/etc/passwd": "x"}}', "test name '/etc/passwd' is not a plain file name"),
        ('{"tests": {"a.js\\n": "x"}}', "test name 'a.js\\n' is not a plain file name"),
        ('{"tests": {".hidden.js": "x"}}', "test name '.hidden.js' is not a plain file name"),
        ('{"tests": {"": "x"}}', "test name '' is not a plain file name"),
        ('{"tests": {"a.js": "\\ud800"}}', "test 'a.js' is not valid Unicode text"),
        (json.dumps({"tests": {"a" * 129: "x"}}), "is longer than 128 characters"),
        (
            json.dumps({"tests": {"big.js": "é" * (k6_test.MAX_SCRIPT_BYTES // 2 + 1)}}),
            "test 'big.js' is 262146 bytes; the limit is 262144 bytes",
        ),
        ('{"tests": {}, "environment": ["A=1"]}', "'environment' is not a JSON object"),
        ('{"environment": {"A": 1}}', "environment variable 'A' is not a string"),
        ('{"environment": {"A-B": "1"}}', "environment variable name 'A-B' is not valid"),
        ('{"environment": {"1A": "1"}}', "environment variable name '1A' is not valid"),
        ('{"environment": {"A\\n": "1"}}', "environment variable name 'A\\n' is not valid"),
        ('{"environment": {"A": "x\\u0000"}}', "environment variable 'A' contains a NUL byte"),
        ('{"environment": {"A": "\\udfff"}}', "environment variable 'A' is not valid Unicode"),
    ],
)
def test_malformed_app_is_refused_and_others_keep_working(raw, error, requirer, caplog):
    bad = testing.Relation("receive-k6-tests", remote_app_name="bad", remote_app_data={"k6": raw})
    good = testing.Relation(
        "receive-k6-tests",
        remote_app_name="good",
        remote_app_data={"k6": json.dumps({"tests": {"a.js": SMOKE}, "environment": {"A": "1"}})},
    )

    with caplog.at_level(logging.WARNING):
        seen = provided_tests(requirer, bad, good)

    assert seen["bad"].tests == {} and seen["bad"].environment == {}
    assert seen["bad"].error is not None and error in seen["bad"].error
    assert seen["good"] == k6_test.ProvidedTests(tests={"a.js": SMOKE}, environment={"A": "1"})
    assert f"ignoring k6 tests from bad: {seen['bad'].error}" in caplog.text


@pytest.mark.parametrize("event", ["relation_changed", "relation_departed", "relation_broken"])
def test_relation_events_emit_tests_changed(event, requirer):
    relation = testing.Relation(
        "receive-k6-tests", remote_app_name="webapp", remote_units_data={0: {}}
    )
    trigger = getattr(requirer.on, event)
    fired = trigger(relation) if event == "relation_broken" else trigger(relation, remote_unit=0)

    requirer.run(fired, testing.State(relations=[relation]))

    assert len(RequirerCharm.seen) == 1


def test_tests_changed_is_a_custom_event_after_the_relation_event():
    RequirerCharm.seen = []
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META, capture_framework_events=False)
    relation = testing.Relation("receive-k6-tests", remote_app_name="webapp")

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(relations=[relation]))

    assert [type(e).__name__ for e in ctx.emitted_events] == [
        "RelationChangedEvent",
        "K6TestsChangedEvent",
    ]


def test_broken_relation_is_left_out(requirer):
    data = {"k6": json.dumps({"tests": {"a.js": SMOKE}})}
    leaving = testing.Relation("receive-k6-tests", remote_app_name="leaving", remote_app_data=data)
    staying = testing.Relation("receive-k6-tests", remote_app_name="staying", remote_app_data=data)
    state = testing.State(relations=[leaving, staying])

    requirer.run(requirer.on.relation_broken(leaving), state)

    assert list(RequirerCharm.seen[-1]) == ["staying"]


def test_other_events_do_not_emit_tests_changed(requirer):
    relation = testing.Relation("receive-k6-tests", remote_app_name="webapp")

    requirer.run(
        requirer.on.relation_joined(relation, remote_unit=0), testing.State(relations=[relation])
    )

    assert RequirerCharm.seen == []
