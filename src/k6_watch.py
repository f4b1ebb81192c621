"""The watcher: a k6 run by the leader that judges abortOnFail thresholds on the whole run, live.

Each unit's k6 runs with `--no-thresholds` (no unit stops on its own share); the leader starts
templates/k6-watch.js as a one-shot service after the release when the script has abortOnFail
thresholds. When the whole run certainly crosses one, the watcher logs a trip line and exits 108;
its done-notice wakes the leader, which reads the trip (`read_trip`) and stops every unit.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import results
from k6_script import ScriptThreshold

SERVICE = "k6-watch"
NOTICE_KEY = "k6.com/watch"
SCRIPT_FILE = "k6-watch.js"
LOG_FILE = "watch.log"
PLAN_ENV = "K6K8S_WATCH"
SOURCE = Path(__file__).parent.parent / "templates" / SCRIPT_FILE
INTERVAL_S = 1.0  # how often the watcher reads every unit's live metrics
GRACE_S = 120.0  # the watcher outlives the test's own longest duration by this much
DEFAULT_UNTIL_S = 24 * 3600.0  # when k6 cannot say how long the test may last
TRIP_KEY = "k6k8s_trip"
TRIP_REASON = "abortOnFail threshold"  # how a trip's reason starts (the run's exit code: 99)


def watched_stat(stat: str) -> dict[str, Any]:
    """A threshold stat for the watcher: {"stat": "rate"}, or {"stat": "p", "percent": 95}."""
    if stat.startswith("p("):
        return {"stat": "p", "percent": float(stat[2:-1])}
    return {"stat": stat}


def plan(
    thresholds: Sequence[ScriptThreshold],
    endpoints: Mapping[str, str],
    started: float,
    total_duration_s: float | None,
) -> dict[str, Any]:
    """The watcher's plan (K6K8S_WATCH) for these abortOnFail thresholds.

    Raises:
        ValueError: a threshold expression k6-k8s cannot judge (the message names it).
    """
    watched = []
    for threshold in thresholds:
        (parsed,) = results.parse_thresholds(str(threshold))
        watched.append(
            {
                "text": str(threshold),
                "metric": parsed.metric,
                **watched_stat(parsed.stat),
                "op": parsed.op,
                "value": parsed.value,
                "delay_s": threshold.delay_abort_eval_s,
            }
        )
    until = DEFAULT_UNTIL_S if total_duration_s is None else total_duration_s + GRACE_S
    return {
        "endpoints": dict(endpoints),
        "started": started,
        "interval_s": INTERVAL_S,
        "until_s": until,
        "thresholds": watched,
    }


def k6_argv() -> list[str]:
    """The watcher's k6: no REST API, no summary, its console (the trip line) to LOG_FILE."""
    return [
        "k6",
        "run",
        "--quiet",
        "--no-summary",
        "--no-thresholds",
        "--no-usage-report",
        "--address",
        "",
        "--log-format",
        "json",
        "--console-output",
        LOG_FILE,
        SCRIPT_FILE,
    ]


def shell_line() -> str:
    """The watcher's command as one shell-quoted line."""
    return shlex.join(k6_argv())


@dataclass(frozen=True)
class Trip:
    """The watcher saw the whole run cross an abortOnFail threshold."""

    threshold: str
    value: float | tuple[float, float] | None
    at_s: float | None
    units: int | None

    def reason(self) -> str:
        """The run's reason, for the results and the status."""
        when = "" if self.at_s is None else f" {self.at_s:.1f} s after the start"
        value = ""
        if isinstance(self.value, tuple):
            value = f": live value between {_fmt(self.value[0])} and {_fmt(self.value[1])}"
        elif self.value is not None:
            value = f": live value {_fmt(self.value)}"
        units = "" if self.units is None else f", from {self.units} unit(s)"
        return f"{TRIP_REASON} '{self.threshold}' crossed on the whole run{when}{value}{units}"


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def read_trip(log: str) -> Trip | None:
    """The trip the watcher logged (its console output, JSON lines), or None."""
    for line in log.splitlines():
        try:
            message = json.loads(json.loads(line).get("msg", ""))
            trip = message[TRIP_KEY]
        except (ValueError, TypeError, AttributeError, KeyError):
            continue
        if not isinstance(trip, Mapping):
            continue
        raw = trip.get("value")
        if isinstance(raw, list) and len(raw) == 2:
            low, high = _number(raw[0]), _number(raw[1])
            value = (low, high) if low is not None and high is not None else None
        else:
            value = _number(raw)
        units = trip.get("units")
        return Trip(
            threshold=str(trip.get("threshold", "")),
            value=value,
            at_s=_number(trip.get("at_s")),
            units=units if isinstance(units, int) and not isinstance(units, bool) else None,
        )
    return None
