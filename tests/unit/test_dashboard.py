"""The grafana_dashboard provider databag: shape, round trip, and the bundled k6 dashboard."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import pytest
from cosl import DashboardPath40UID, GrafanaDashboard, LZMABase64

import dashboard

CHARM = "k6-k8s"
K6_JSON = Path(dashboard.DASHBOARDS_DIR) / "k6.json"
# Derived from the official grafana_dashboard library: no schema is published (see README.md)
SCHEMA = json.loads(
    (Path(__file__).parent / "data/interfaces/grafana_dashboard/v0/provider.json").read_text()
)
SELECTOR = (
    'juju_model=~"$juju_model"',
    'juju_application=~"$juju_application"',
    'run_id=~"$run_id"',
    'juju_unit=~"$juju_unit"',
)


@pytest.fixture
def bundled() -> dict:
    return json.loads(K6_JSON.read_text())


@pytest.fixture
def databag() -> dict[str, str]:
    return dashboard.dashboard_databag(CHARM)


def templates_of(databag: dict[str, str]) -> dict:
    return json.loads(databag["dashboards"])["templates"]


def all_panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def grafana_reads(databag: Mapping[str, str]) -> dict[str, dict]:
    """What Grafana takes from our databag, as the grafana_dashboard library's consumer does.

    GrafanaDashboardConsumer (LIBPATCH 46): `templates` of the JSON `dashboards` value; per
    template `content` decompressed with cosl's LZMABase64, its uid kept or else
    `dashboard_alt_uid`, `inject_dropdowns` (absent: true), `juju_topology` (when not empty,
    injected as label matchers) and `charm`.
    """
    read = {}
    for template_id, template in json.loads(databag["dashboards"])["templates"].items():
        board = json.loads(LZMABase64.decompress(template["content"]))
        board["uid"] = board.get("uid") or template["dashboard_alt_uid"]
        read[template_id] = {
            "charm": template["charm"],
            "inject_dropdowns": template.get("inject_dropdowns", True),
            "topology": template.get("juju_topology", {}),
            "dashboard": board,
        }
    return read


# ---------------------------------------------------------------- the databag


def test_databag_is_one_dashboards_key_with_templates_and_uuid(databag):
    assert set(databag) == {"dashboards"}
    data = json.loads(databag["dashboards"])
    assert set(data) == {"templates", "uuid"}
    assert list(data["templates"]) == ["file:k6"]


def test_template_entry_has_the_keys_grafana_reads(databag):
    template = templates_of(databag)["file:k6"]

    assert template == {
        "charm": CHARM,
        "content": template["content"],
        "juju_topology": {},
        "inject_dropdowns": False,
        "dashboard_alt_uid": hashlib.shake_256(f"{CHARM}-file:k6".encode()).hexdigest(8),
    }


def test_the_databag_has_the_shape_the_grafana_dashboard_library_reads(databag):
    decoded = {key: json.loads(value) for key, value in databag.items()}

    jsonschema.validate(decoded, SCHEMA)


def test_grafana_reads_the_bundled_dashboard_with_uid_and_charm_tag_and_no_injection(
    databag, bundled
):
    read = grafana_reads(databag)

    uid = DashboardPath40UID.generate(CHARM, "src/grafana_dashboards/k6.json")
    assert read == {
        "file:k6": {
            "charm": CHARM,
            "inject_dropdowns": False,  # no juju_* variables read from `up`: see INJECT_DROPDOWNS
            "topology": {},  # no label matchers added to the queries
            "dashboard": {**bundled, "uid": uid, "tags": [*bundled["tags"], f"charm: {CHARM}"]},
        }
    }
    assert DashboardPath40UID.is_valid(uid)


def test_content_is_what_cosl_grafana_dashboard_deserializes(databag, bundled):
    content = templates_of(databag)["file:k6"]["content"]

    with pytest.warns(DeprecationWarning):
        decoded = GrafanaDashboard(content)._deserialize()

    assert decoded["panels"] == bundled["panels"]
    assert decoded["templating"] == bundled["templating"]


def test_every_hook_writes_the_same_bytes_for_the_same_dashboards():
    # Each hook is a new process: the databag must not depend on one (the library's own uuid4
    # would make every rewrite a relation-changed on Grafana's side).
    probe = "import dashboard; print(dashboard.dashboard_databag('k6-k8s')['dashboards'])"
    written = {
        subprocess.run(
            [sys.executable, "-c", probe],
            env={
                **os.environ,
                "PYTHONPATH": str(Path(dashboard.__file__).parent),
                "PYTHONHASHSEED": seed,
            },
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }

    assert written == {dashboard.dashboard_databag(CHARM)["dashboards"]}
    assert uuid.UUID(json.loads(written.pop())["uuid"])


def test_a_changed_dashboard_changes_the_uuid(tmp_path, bundled):
    (tmp_path / "k6.json").write_text(json.dumps(bundled))
    before = json.loads(dashboard.dashboard_databag(CHARM, tmp_path)["dashboards"])["uuid"]
    (tmp_path / "k6.json").write_text(json.dumps({**bundled, "title": "renamed"}))

    after = json.loads(dashboard.dashboard_databag(CHARM, tmp_path)["dashboards"])["uuid"]

    assert before != after


def test_a_valid_path40_uid_and_an_existing_charm_tag_are_kept(tmp_path):
    uid = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "mine.json").write_text(json.dumps({"uid": uid, "tags": ["charm: other"]}))

    read = grafana_reads(dashboard.dashboard_databag(CHARM, tmp_path))

    assert read["file:mine"]["dashboard"] == {"uid": uid, "tags": ["charm: other"]}


def test_every_json_file_in_the_directory_is_a_template(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text('{"title": "b"}')
    (tmp_path / "notes.txt").write_text("not a dashboard")

    assert set(templates_of(dashboard.dashboard_databag(CHARM, tmp_path))) == {"file:a", "file:b"}


def test_a_file_that_is_not_a_json_object_fails_loudly(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")

    with pytest.raises(ValueError, match="bad.json is not a Grafana dashboard"):
        dashboard.dashboard_databag(CHARM, tmp_path)


# ---------------------------------------------------------------- the k6 dashboard itself


def test_every_panel_uses_the_cos_datasource_variables(bundled):
    for panel in all_panels(bundled):
        expected = "${lokids}" if panel["type"] == "logs" else "${prometheusds}"
        assert panel["datasource"]["uid"] == expected, panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {expected}, panel["title"]


def test_no_datasource_variable_of_its_own_so_grafana_injects_exactly_one(bundled):
    # Grafana's side inserts `prometheusds` and `lokids` variables; one defined here too would
    # be a duplicate name.
    variables = bundled["templating"]["list"]

    assert [v["type"] for v in variables] == ["query"] * len(variables)
    assert {v["name"] for v in variables} == {
        "juju_model",
        "juju_application",
        "run_id",
        "juju_unit",
    }
    for variable in variables:
        assert variable["datasource"]["uid"] == "${prometheusds}"
        assert variable["query"]["query"].startswith("label_values(k6_iterations_total")


def test_every_query_filters_on_run_unit_and_topology(bundled):
    for panel in all_panels(bundled):
        for target in panel["targets"]:
            for matcher in SELECTOR:
                assert matcher in target["expr"], (panel["title"], target["expr"])


def test_panels_cover_rate_iterations_quantiles_failures_vus_and_unit_breakdown(bundled):
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in all_panels(bundled)}
    text = "\n".join(exprs.values())

    assert "rate(k6_http_reqs_total" in exprs["Request rate"]
    assert "k6_iterations_total" in exprs["Iterations"]
    assert "rate(k6_iterations_total" in exprs["Iteration rate"]
    quantiles = re.findall(
        r"histogram_quantile\((0\.\d+), sum\(rate\(k6_http_req_duration_seconds",
        exprs["http_req_duration quantiles"],
    )
    assert quantiles == ["0.5", "0.9", "0.95", "0.99"]
    assert 'expected_response="false"' in exprs["Failed request ratio"]
    assert "k6_vus" in exprs["Virtual users"]
    assert text.count("sum by (juju_unit)") >= 5


def test_panel_ids_and_titles_are_unique_and_the_grid_has_no_overlap(bundled):
    panels = bundled["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({p["title"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, panel["title"]
        cells |= mine
