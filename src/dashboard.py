"""The Grafana dashboards this charm ships, encoded as the grafana_dashboard provider's databag.

Pure: reads the bundled JSON files and returns the app databag; the charm writes it (no ops here).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cosl import DashboardPath40UID, LZMABase64

RELATION = "grafana-dashboard"
DATABAG_KEY = "dashboards"
# Where the files live relative to the charm root: part of each dashboard's uid, as in the
# grafana_dashboard library, so the uid is the one the library would give the same file.
DASHBOARDS_PATH = "src/grafana_dashboards"
DASHBOARDS_DIR = Path(__file__).resolve().parent / "grafana_dashboards"
# Not the library's default (True). With inject_dropdowns, Grafana adds juju_* variables read
# from `up` and matchers on them to every query; k6 metrics arrive by remote write, so there is
# no `up` for them. The dashboard carries its own juju_*/run_id variables over k6's metrics.
INJECT_DROPDOWNS = False


def load(directory: Path = DASHBOARDS_DIR) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every `*.json` dashboard in `directory`: interface id `file:<stem>` -> (file name, JSON).

    Raises:
        ValueError: a file is not JSON or not a JSON object (a packaging bug: fail loudly).
    """
    dashboards = {}
    for path in sorted(directory.glob("*.json")):
        content = json.loads(path.read_text())
        if not isinstance(content, dict):
            raise ValueError(f"{path.name} is not a Grafana dashboard (a JSON object)")  # noqa: TRY004
        dashboards[f"file:{path.stem}"] = (path.name, content)
    return dashboards


def stamped(charm_name: str, file_name: str, dashboard: Mapping[str, Any]) -> dict[str, Any]:
    """The dashboard with the uid and tag the grafana_dashboard library gives a bundled file."""
    content = dict(dashboard)
    if not DashboardPath40UID.is_valid(content.get("uid", "")):
        content["uid"] = DashboardPath40UID.generate(charm_name, f"{DASHBOARDS_PATH}/{file_name}")
    tags = [str(tag) for tag in content.get("tags", [])]
    if not any(tag.startswith("charm: ") for tag in tags):
        tags.append(f"charm: {charm_name}")
    content["tags"] = tags
    return content


def _template(charm_name: str, dashboard_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of `templates`: the compressed dashboard and how Grafana should render it."""
    alt_uid = hashlib.shake_256(f"{charm_name}-{dashboard_id}".encode()).hexdigest(8)
    return {
        "charm": charm_name,
        "content": LZMABase64.compress(json.dumps(content)),
        "juju_topology": {},  # what the library sends when inject_dropdowns is off
        "inject_dropdowns": INJECT_DROPDOWNS,
        "dashboard_alt_uid": alt_uid,
    }


def dashboard_databag(charm_name: str, directory: Path = DASHBOARDS_DIR) -> dict[str, str]:
    """The leader's app databag on every grafana-dashboard relation.

    `{"dashboards": json({"templates": {"file:<stem>": {"charm", "content", "juju_topology",
    "inject_dropdowns", "dashboard_alt_uid"}}, "uuid": ...})}`, as the grafana_dashboard
    library writes it (`content` is LZMA + base64 JSON, cosl's encoding). The library's "uuid"
    is random to force a relation-changed on every write; here it is derived from the templates,
    so rewriting unchanged dashboards changes nothing and changed ones always change the databag.
    """
    templates = {
        dashboard_id: _template(charm_name, dashboard_id, stamped(charm_name, name, content))
        for dashboard_id, (name, content) in load(directory).items()
    }
    digest = json.dumps(templates, sort_keys=True)
    data = {"templates": templates, "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, digest))}
    return {DATABAG_KEY: json.dumps(data)}
