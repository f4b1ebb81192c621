"""What k6 itself says about a script: its options as `k6 inspect` prints them.

Every unit's service runs `k6 inspect --execution-requirements` before `k6 run` and keeps the
JSON (OPTIONS_FILE); the leader reads its own copy to learn the script's thresholds (judged on the
whole run, not by each unit's k6), its setup/teardown timeouts, whether setup or teardown is
switched off, and how long the whole test may last.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

OPTIONS_FILE = "options.json"
DEFAULT_SETUP_TIMEOUT_S = 60.0  # k6's default setupTimeout
DEFAULT_TEARDOWN_TIMEOUT_S = 60.0  # k6's default teardownTimeout

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def duration_seconds(value: object, default: float = 0.0) -> float:
    """A k6 duration ("1m30s", "500ms", "2h", or a bare number of milliseconds) in seconds.

    Raises:
        ValueError: not a duration k6 accepts.
    """
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value) / 1000
    else:
        text = str(value).strip()
        try:
            seconds = float(text) / 1000
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"not a duration: {value!r}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


@dataclass(frozen=True)
class ScriptThreshold:
    """One expression of the script's `options.thresholds`, as k6 would judge it."""

    metric: str  # a metric name, maybe with a submetric selector: http_req_duration{status:200}
    expression: str  # k6's syntax: "p(95)<200", "rate<0.01", "count>=50"
    abort_on_fail: bool = False
    delay_abort_eval_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.metric}: {self.expression}"


@dataclass(frozen=True)
class ScriptOptions:
    """The parts of a script's options that the whole run (not each unit) acts on."""

    thresholds: tuple[ScriptThreshold, ...] = ()
    setup_timeout_s: float = DEFAULT_SETUP_TIMEOUT_S
    teardown_timeout_s: float = DEFAULT_TEARDOWN_TIMEOUT_S
    no_setup: bool = False
    no_teardown: bool = False
    total_duration_s: float | None = None  # the whole test at most (k6's execution requirements)
    max_vus: int | None = None

    @property
    def aborts(self) -> tuple[ScriptThreshold, ...]:
        """The thresholds that stop the whole run when it crosses them (`abortOnFail`)."""
        return tuple(t for t in self.thresholds if t.abort_on_fail)


def _threshold(metric: str, entry: object) -> ScriptThreshold:
    """One entry of a metric's threshold list: a string, or k6's object form."""
    if isinstance(entry, str):
        return ScriptThreshold(metric, entry.strip())
    if isinstance(entry, Mapping) and isinstance(entry.get("threshold"), str):
        try:
            delay = duration_seconds(entry.get("delayAbortEval"))
        except ValueError as e:
            raise ValueError(f"threshold on {metric}: delayAbortEval: {e}") from None
        return ScriptThreshold(
            metric,
            str(entry["threshold"]).strip(),
            abort_on_fail=entry.get("abortOnFail") is True,
            delay_abort_eval_s=delay,
        )
    raise ValueError(
        f"threshold on {metric}: {entry!r} is neither a string nor a threshold object"
    )


def parse_options(text: str) -> ScriptOptions:
    """Read `k6 inspect`'s JSON.

    Raises:
        ValueError: not `k6 inspect` output, or a threshold/timeout k6 would not accept.
    """
    try:
        options = json.loads(text)
    except ValueError as e:
        raise ValueError(f"k6 inspect printed no JSON: {e}") from None
    if not isinstance(options, Mapping):
        raise ValueError("k6 inspect printed no options object")  # noqa: TRY004
    raw = options.get("thresholds") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("options.thresholds is not an object")  # noqa: TRY004
    thresholds = []
    for metric, entries in raw.items():
        listed = entries if isinstance(entries, list) else [entries]
        thresholds.extend(_threshold(str(metric), entry) for entry in listed)
    try:
        setup = duration_seconds(options.get("setupTimeout"), DEFAULT_SETUP_TIMEOUT_S)
        teardown = duration_seconds(options.get("teardownTimeout"), DEFAULT_TEARDOWN_TIMEOUT_S)
    except ValueError as e:
        raise ValueError(f"setupTimeout/teardownTimeout: {e}") from None
    try:
        total = duration_seconds(options.get("totalDuration"), -1.0)
    except ValueError as e:
        raise ValueError(f"totalDuration: {e}") from None
    max_vus = options.get("maxVUs")
    return ScriptOptions(
        thresholds=tuple(thresholds),
        setup_timeout_s=setup,
        teardown_timeout_s=teardown,
        no_setup=options.get("noSetup") is True,
        no_teardown=options.get("noTeardown") is True,
        total_duration_s=None if total < 0 else total,
        max_vus=max_vus if isinstance(max_vus, int) and not isinstance(max_vus, bool) else None,
    )


def may_have_teardown(script: str) -> bool:
    """Whether the script text can export a teardown() (cheap: skips a k6 start when it cannot).

    A script exports teardown by naming it, or by re-exporting a whole module (`export *`).
    """
    return "teardown" in script or re.search(r"export\s*\*", script) is not None
