"""Quick tests: a k6 script for "hit this URL with this load", rendered from a template.

Every parameter is validated (ValueError with a message a user can act on) and emitted as a
JSON literal, so no value can break out of its JavaScript string.
"""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
TEMPLATE_NAME = "quick-test.js.j2"
QUICK_TEST_NAME = "quick-test.js"
SCENARIO_NAME = "quick"
MAX_URL_LENGTH = 2048
MAX_VUS = 10_000
MAX_RATE = 100_000
MIN_DURATION_MS = 1000  # k6 refuses shorter constant-vus / constant-arrival-rate scenarios
MAX_DURATION_MS = 24 * 60 * 60 * 1000
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_DURATION_RE = re.compile(r"(?:\d{1,9}(?:\.\d{1,9})?(?:ms|h|m|s))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def _js(value: str | int) -> str:
    """A JavaScript literal for value: JSON, ASCII only, with '<', '>', '&' escaped too."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def validate_url(url: str) -> str:
    """An http(s) URL with a host, bounded, without whitespace or control characters."""
    if not url:
        raise ValueError("url is empty: give an http:// or https:// URL")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url is {len(url)} characters long; the limit is {MAX_URL_LENGTH}")
    for char in url:
        if char in " \t\n\r\v\f" or unicodedata.category(char) == "Cc":
            raise ValueError(
                f"url contains whitespace or a control character ({char!r}): "
                "percent-encode it (e.g. %20 for a space)"
            )
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ValueError(f"url {url!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url {url!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValueError(f"url {url!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"url {url!r} has no host")
    return url


def duration_seconds(duration: str) -> Decimal:
    """Seconds in a (validated) k6 duration."""
    parts = _DURATION_PART_RE.findall(duration)
    return sum((Decimal(number) * _UNIT_MS[unit] for number, unit in parts), Decimal(0)) / 1000


def validate_duration(duration: str) -> str:
    """A k6 duration such as `30s`, `2m`, `1h30m`, `1500ms`: from 1s to 24h."""
    if not _DURATION_RE.fullmatch(duration):
        raise ValueError(
            f"duration {duration!r} is not a k6 duration: use a number with a unit "
            "(h, m, s, ms), e.g. 30s, 2m, 1h30m, 1500ms"
        )
    total_ms = duration_seconds(duration) * 1000
    if total_ms < MIN_DURATION_MS:
        raise ValueError(f"duration {duration!r} is shorter than k6's minimum of 1s")
    if total_ms > MAX_DURATION_MS:
        raise ValueError(f"duration {duration!r} is longer than the limit of 24h")
    return duration


def _validate_int(name: str, value: int, low: int, high: int) -> int:
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} is {value}; it must be between {low} and {high}")
    return value


def validate_method(method: str) -> str:
    """One of the HTTP methods k6's http.request is used with here (case-insensitive)."""
    upper = method.upper() if isinstance(method, str) else ""
    if upper not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    return upper


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # values are pre-encoded JavaScript literals (see _js)
        keep_trailing_newline=True,
    )


def render_quick_test(
    url: str,
    vus: int,
    duration: str,
    rate: int = 0,
    method: str = "GET",
    expect_status: int = 200,
) -> str:
    """A k6 script: `vus` constant VUs, or `rate` requests/s (rate > 0), for `duration`."""
    validate_url(url)
    _validate_int("vus", vus, 1, MAX_VUS)
    validate_duration(duration)
    _validate_int("rate", rate, 0, MAX_RATE)
    method = validate_method(method)
    _validate_int("expect-status", expect_status, 100, 599)
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(
        scenario=_js(SCENARIO_NAME),
        url=_js(url),
        method=_js(method),
        vus=_js(vus),
        duration=_js(duration),
        rate=_js(rate),
        arrival_rate=rate > 0,
        expect_status=_js(expect_status),
    )
