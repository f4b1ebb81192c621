"""COS wiring: where k6 sends metrics (Prometheus remote write) and logs (Loki), as k6 flags.

Pure: reads plain relation data, returns k6 arguments and environment; no ops import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"  # k6's HTML report, in the service's working directory


def _url_from(databags: Iterable[Mapping[str, str]], key: str) -> str | None:
    """The first valid http(s) `url` under JSON key `key` in any remote unit's databag."""
    for data in databags:
        raw = data.get(key)
        if not raw:
            continue
        try:
            url = json.loads(raw)["url"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring malformed %r relation data: %r", key, raw[:200])
            continue
        parsed = urlparse(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            logger.warning("ignoring %r url that is not http(s): %r", key, url)
            continue
        if any(c in url for c in ", \n\t"):
            logger.warning("ignoring %r url with a comma or whitespace: %r", key, url)
            continue
        return url
    return None


def remote_write_url(databags: Iterable[Mapping[str, str]]) -> str | None:
    """prometheus_remote_write: provider units publish `remote_write` = {"url": ...}."""
    return _url_from(databags, "remote_write")


def loki_url(databags: Iterable[Mapping[str, str]]) -> str | None:
    """loki_push_api: provider units publish `endpoint` = {"url": ".../loki/api/v1/push"}."""
    return _url_from(databags, "endpoint")


def k6_outputs(
    remote_write: str | None, loki: str | None, labels: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Extra `k6 run` arguments and service environment for metrics, logs and the HTML report."""
    args: list[str] = []
    env = {
        "K6_WEB_DASHBOARD": "true",
        "K6_WEB_DASHBOARD_PORT": "-1",  # no dashboard server: only the exported report
        "K6_WEB_DASHBOARD_PERIOD": "1s",
        "K6_WEB_DASHBOARD_EXPORT": REPORT_FILE,
    }
    if remote_write:
        args += ["-o", "experimental-prometheus-rw"]
        env["K6_PROMETHEUS_RW_SERVER_URL"] = remote_write
        env["K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM"] = "true"
    if loki:
        label_text = ",".join(
            f"label.{k}={v}" for k, v in sorted(labels.items()) if "," not in f"{k}{v}"
        )
        args += ["--log-output", f"loki={loki}" + (f",{label_text}" if label_text else "")]
    return args, env
