"""Thresholds: k6's `<metric> <stat><op><number>` conditions, parsed and judged on the merge.

A percentile is judged on the merged estimate; a failure's reason shows its rank error.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from results._numbers import (
    as_mappings,
    as_number,
    fmt,
    percentile_key,
    rank_text,
    stat_percent,
)

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "===": operator.eq,
    "!=": operator.ne,
}
THRESHOLD_STATS = ("count", "rate", "value", "min", "max", "avg", "med", "p(N)")
_CONDITION = (
    r"(?P<stat>[A-Za-z]\w*(?:\([^()]*\))?)\s*(?P<op><=|>=|===|==|!=|<|>)\s*(?P<number>\S+)"
)
_THRESHOLD_RE = re.compile(r"^(?P<metric>\S.*?)\s+" + _CONDITION + "$")
_CONDITION_RE = re.compile(r"^" + _CONDITION + "$")
_FORMS = (
    "expected '<metric> <stat><op><number>' or '<metric>: <stat><op><number>, ...', "
    "e.g. 'http_req_failed rate<0.01' or 'http_req_duration: p(95)<200, p(99)<500'"
)


@dataclass(frozen=True)
class Threshold:
    """One pass condition on the merged results, e.g. `http_req_duration p(95)<200`."""

    metric: str
    stat: str  # count, rate, value, min, max, avg, med or p(N) with 0 <= N <= 100
    op: str  # one of <, <=, >, >=, ==, === (as ==), !=
    value: float
    written: str = field(default="", compare=False)  # the number as the user wrote it

    def __str__(self) -> str:
        return f"{self.metric} {self.stat}{self.op}{self.written or f'{self.value:.15g}'}"


def _outside_braces(text: str, separator: str) -> list[int]:
    """Positions of `separator` outside `{...}` (a submetric's tags may hold ':' and ',')."""
    depth, found = 0, []
    for position, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0:
            found.append(position)
    return found


def _metric_name_ok(metric: str) -> bool:
    """A metric name, maybe with `{tags}`: nothing outside the braces that a condition holds."""
    depth, outside = 0, []
    for char in metric:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        elif depth == 0:
            outside.append(char)
    return bool(outside) and not any(c.isspace() or c in "<>=,:;()" for c in outside)


def _condition(entry: str, metric: str, match: re.Match[str]) -> Threshold:
    """The threshold one matched `<stat><op><number>` makes, or ValueError naming `entry`."""
    stat = match["stat"]
    if not _metric_name_ok(metric):
        raise ValueError(f"bad threshold {entry!r}: {metric!r} is not a metric name; {_FORMS}")
    if stat.startswith("p("):
        percent = stat_percent(stat)
        if percent is None:
            raise ValueError(
                f"bad threshold {entry!r}: {stat!r} is not a percentile; "
                "use p(N) with N a number from 0 to 100, e.g. p(95) or p(99.9)"
            )
        stat = percentile_key(percent)
    elif stat not in THRESHOLD_STATS:
        raise ValueError(
            f"bad threshold {entry!r}: unknown stat {stat!r}; "
            f"use one of {', '.join(THRESHOLD_STATS)}"
        )
    try:
        value = float(match["number"])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"bad threshold {entry!r}: {match['number']!r} is not a number")
    return Threshold(metric, stat, match["op"], value, match["number"])


def _parse_entry(entry: str) -> list[Threshold]:
    """The thresholds of one entry: `metric stat<op>number` or `metric: cond, cond, ...`."""
    colons = _outside_braces(entry, ":")
    if not colons:
        match = _THRESHOLD_RE.match(entry)
        if match is None:
            raise ValueError(f"bad threshold {entry!r}: {_FORMS}")
        return [_condition(entry, match["metric"], match)]
    metric, rest = entry[: colons[0]].strip(), entry[colons[0] + 1 :]
    thresholds = []
    bounds = [-1, *_outside_braces(rest, ","), len(rest)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        condition = rest[start + 1 : end].strip()
        match = _CONDITION_RE.match(condition)
        if match is None:
            raise ValueError(
                f"bad threshold {entry!r}: condition {condition!r} is not "
                f"'<stat><op><number>' (e.g. 'p(95)<200'); {_FORMS}"
            )
        thresholds.append(_condition(entry, metric, match))
    return thresholds


def parse_thresholds(text: str) -> list[Threshold]:
    """Parse threshold entries separated by ';' or newlines, in k6's syntax.

    An entry is `<metric> <stat><op><number>` (`http_req_failed rate<0.01`) or `<metric>:
    <stat><op><number>, ...` (`http_req_duration: p(95)<200, p(99)<500`). Stats: count, rate,
    value (a rate's), min, max, avg, med, p(N) (0 <= N <= 100); ops: <, <=, >, >=, ==.

    Raises:
        ValueError: an entry does not parse; the message names it and says what is allowed.
    """
    thresholds = []
    for raw in re.split(r"[;\n]", text):
        entry = raw.strip()
        if entry:
            thresholds.extend(_parse_entry(entry))
    return thresholds


# Which threshold stat reads which field of an aggregate entry, per kind of metric; a trend
# also reads any p(N) from its "p(N)" field.
_THRESHOLD_FIELDS = {
    "counters": {"count": "count", "rate": "rate"},
    "rates": {"rate": "rate", "value": "rate"},
    "trends": {"min": "min", "max": "max", "avg": "avg", "count": "count", "med": "p(50)"},
    "gauges": {"max": "max", "value": "max"},
}
# k6's built-in Counters: a `rate` threshold on one without samples is judged on 0, as k6 does
# (on a Rate without samples k6 judges nothing: the threshold holds).
_K6_COUNTERS = frozenset(
    {
        "http_reqs",
        "iterations",
        "data_sent",
        "data_received",
        "dropped_iterations",
        "ws_msgs_sent",
        "ws_msgs_received",
        "ws_sessions",
        "grpc_streams",
        "grpc_streams_msgs_sent",
        "grpc_streams_msgs_received",
    }
)
_KIND_NAMES = {"counters": "counter", "rates": "rate", "trends": "trend", "gauges": "gauge"}


def script_thresholds(prepared: Mapping[str, object] | None) -> list[Threshold]:
    """The script's own thresholds, as the leader kept them in the run before the release.

    `prepared["thresholds"]` is a list of `[metric, expression, abortOnFail, delayAbortEval]`
    (k6_whole_run.WholeRun); the leader checked each parses before the release.
    """
    entries = (prepared or {}).get("thresholds")
    found: list[Threshold] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, list) and len(entry) >= 2:
            found.extend(parse_thresholds(f"{entry[0]}: {entry[1]}"))
    return found


def threshold_percents(thresholds: Sequence[Threshold]) -> dict[str, set[float]]:
    """Per metric, the percentiles (0..100) its thresholds need."""
    needed: dict[str, set[float]] = {}
    for threshold in thresholds:
        percent = stat_percent(threshold.stat)
        if percent is not None:
            needed.setdefault(threshold.metric, set()).add(percent)
    return needed


def _without_samples(threshold: Threshold) -> str | None:
    """k6's verdict on a metric no unit sampled.

    Every stat of k6's empty sink is 0, but a Rate without samples is not judged at all.
    """
    base = threshold.metric.split("{", 1)[0]
    if threshold.stat == "rate" and base not in _K6_COUNTERS:
        return None  # a Rate (or a custom metric judged on its rate): k6 skips it
    if _OPERATORS[threshold.op](0, threshold.value):
        return None
    return f"{threshold}: {threshold.stat} is 0 (no samples)"


def _dropped(aggregate: Mapping[str, object]) -> bool:
    """Some unit left metrics out of its summary (an absent metric may be one of them)."""
    dropped = aggregate.get("dropped")
    return isinstance(dropped, Mapping) and any(dropped.values())


def _judge(
    aggregate: Mapping[str, object], threshold: Threshold, like_k6: bool = False
) -> str | None:
    """Why `threshold` fails against `aggregate`, or None when it holds."""
    for section, fields in _THRESHOLD_FIELDS.items():
        entry = as_mappings(aggregate.get(section)).get(threshold.metric)
        if entry is None:
            continue
        percentile = section == "trends" and threshold.stat.startswith("p(")
        field = threshold.stat if percentile else fields.get(threshold.stat)
        if field is None:
            kind = _KIND_NAMES[section]
            allowed = ", ".join([*fields, *(["p(N)"] if section == "trends" else [])])
            return f"{threshold}: a {kind} metric has no {threshold.stat} (use {allowed})"
        if field not in entry:
            return (
                f"{threshold}: {threshold.stat} of {threshold.metric} was not merged "
                "(aggregate() was not given this threshold)"
            )
        value = as_number(entry.get(field))
        if value is None:
            why = ""
            if section == "counters":
                why = ": run duration unknown"
            elif isinstance(unknown := entry.get("count_unknown_units"), list) and unknown:
                why = f": no sample count from {', '.join(map(str, unknown))}"
            elif entry.get("count") == 0 or entry.get("passes") == entry.get("fails") == 0:
                if like_k6:
                    return _without_samples(threshold)
                why = ": no samples"
            return f"{threshold}: {threshold.stat} of {threshold.metric} is unknown{why}"
        if _OPERATORS[threshold.op](value, threshold.value):
            return None
        if field.startswith("p("):
            errors = entry.get("rank_error")
            error = errors.get(field) if isinstance(errors, Mapping) else None
            return f"{threshold}: {threshold.stat} is {fmt(value)} ({rank_text(error)})"
        return f"{threshold}: {threshold.stat} is {fmt(value)}"
    if like_k6 and not _dropped(aggregate):
        return _without_samples(threshold)  # no unit sampled it (k6 leaves it out of summaries)
    return f"{threshold}: metric {threshold.metric} not reported"


def evaluate(
    aggregate: Mapping[str, object], thresholds: Sequence[Threshold], like_k6: bool = False
) -> list[str]:
    """Judge thresholds against an aggregate: one human-readable reason per failure, [] = pass.

    A threshold whose value cannot be computed (metric not reported, run duration or a unit's
    sample count unknown, no samples) fails: a run never passes on a number nobody measured.
    `like_k6` (the script's own thresholds) judges a metric without samples as one `k6 run`
    does instead: on 0, except a Rate, which holds (docs/k6-semantics.md).
    A percentile is judged on the merged estimate, even when the threshold lies within its rank
    error; a failure's reason shows that error (`p(95) is 231.4 (±0.41 % rank)`).
    """
    return [reason for t in thresholds if (reason := _judge(aggregate, t, like_k6)) is not None]
