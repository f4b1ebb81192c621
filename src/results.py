"""Arithmetic on k6 results: shrink one unit's summary export, merge all units, judge thresholds.

Pure data in, pure data out (stdlib only); every dict produced here is JSON-serializable.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A unit's compact summary travels in its relation databag: keep it well under Juju's limits.
MAX_COMPACT_BYTES = 4096
# Significant digits kept for trend statistics (ms) and durations; counts are never rounded.
SIGNIFICANT_DIGITS = 6

# Metrics kept whatever else the script defines (when the export has them).
CORE_METRICS = (
    "http_reqs",
    "iterations",
    "data_sent",
    "data_received",
    "checks",
    "http_req_failed",
    "http_req_duration",
    "iteration_duration",
    "vus_max",
    "vus",
    "dropped_iterations",
)
# Trends whose sample count equals a counter's count: one sample per request / per iteration.
# Measured with `--summary-trend-stats ...,count`: http_req_duration count == http_reqs count
# (refused connections included), iteration_duration count == iterations count (interrupted
# iterations are in neither). Submetrics such as `http_req_duration{expected_response:true}` are
# a subset, so their count is unknown.
_TREND_COUNT_SOURCE = {
    "http_req_duration": "http_reqs",
    "http_req_blocked": "http_reqs",
    "http_req_connecting": "http_reqs",
    "http_req_tls_handshaking": "http_reqs",
    "http_req_sending": "http_reqs",
    "http_req_waiting": "http_reqs",
    "http_req_receiving": "http_reqs",
    "iteration_duration": "iterations",
}
_BUILTIN_METRICS = frozenset(
    {
        *CORE_METRICS,
        *_TREND_COUNT_SOURCE,
        "group_duration",
        "ws_connecting",
        "ws_msgs_received",
        "ws_msgs_sent",
        "ws_ping",
        "ws_session_duration",
        "ws_sessions",
        "grpc_req_duration",
        "grpc_streams",
        "grpc_streams_msgs_received",
        "grpc_streams_msgs_sent",
    }
)
TREND_STATS = ("min", "max", "avg", "med", "p(90)", "p(95)")
PERCENTILES = ("p(90)", "p(95)")
# Order in which a counter's count/rate gives the test duration (count / rate = seconds).
_DURATION_COUNTERS = ("iterations", "http_reqs")

_SECTIONS = ("counters", "rates", "trends", "gauges")


def _number(value: object) -> int | float | None:
    """A finite JSON number, or None (booleans, strings, NaN and infinities are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _round(value: float) -> float:
    """Round a float to SIGNIFICANT_DIGITS; ints stay exact."""
    if isinstance(value, int):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _kind(entry: Mapping[str, object]) -> str | None:
    """Which section a summary-export metric belongs to, from the keys k6 writes for it."""
    if "passes" in entry and "fails" in entry:
        return "rates"  # Rate: passes, fails, value (= passes / (passes + fails))
    if "count" in entry and "rate" in entry:
        return "counters"  # Counter: count, rate (= count / test duration)
    if "value" in entry:
        return "gauges"  # Gauge: value (last), min, max
    if any(stat in entry for stat in TREND_STATS):
        return "trends"  # Trend: --summary-trend-stats, default avg,min,med,max,p(90),p(95)
    return None


def _compact_entry(
    kind: str, name: str, entry: Mapping[str, object], metrics: Mapping[str, object]
) -> object | None:
    """The kept part of one metric, or None when it carries no usable number."""
    if kind == "counters":
        return _number(entry.get("count"))
    if kind == "gauges":
        return _number(entry.get("max"))
    if kind == "rates":
        passes, fails = _number(entry.get("passes")), _number(entry.get("fails"))
        if passes is None or fails is None:
            return None
        return {"passes": passes, "fails": fails}
    stats: dict[str, int | float] = {}
    for stat in TREND_STATS:
        value = _number(entry.get(stat))
        if value is not None:
            stats[stat] = _round(value)
    count = _number(entry.get("count"))  # present when --summary-trend-stats includes count
    if count is None and name in _TREND_COUNT_SOURCE:
        source = metrics.get(_TREND_COUNT_SOURCE[name])
        if isinstance(source, Mapping):
            count = _number(source.get("count"))
    if count is not None:
        stats["count"] = count
    return stats or None


def _compact_metric(
    name: str, entry: object, metrics: Mapping[str, object]
) -> tuple[str, object] | None:
    """(section, kept value) of one summary-export metric, or None when it has no use here."""
    kind = _kind(entry) if isinstance(entry, Mapping) else None
    if kind is None or not isinstance(entry, Mapping):
        return None
    value = _compact_entry(kind, name, entry, metrics)
    return None if value is None else (kind, value)


def _summary_duration(metrics: Mapping[str, object]) -> float | None:
    """Seconds the unit's test ran: k6 computes every counter's rate as count / duration."""
    names = [*_DURATION_COUNTERS, *sorted(set(metrics) - set(_DURATION_COUNTERS))]
    for name in names:
        entry = metrics.get(name)
        if not isinstance(entry, Mapping) or _kind(entry) != "counters":
            continue
        count, rate = _number(entry.get("count")), _number(entry.get("rate"))
        if count and rate:
            return _round(float(count / rate))
    return None


def _priority(name: str) -> tuple[int, str]:
    """Order for metrics beyond the core: the script's own first, then submetrics, then k6's."""
    if name in CORE_METRICS:
        return (0, name)
    if "{" in name:
        return (2, name)
    if name in _BUILTIN_METRICS or name.startswith("browser_"):
        return (3, name)
    return (1, name)


def _item_bytes(name: str, value: object) -> int:
    """Bytes `"name": value, ` adds to a json.dumps'ed dict (separator counted always)."""
    return len(json.dumps(name)) + 2 + len(json.dumps(value)) + 2


def compact(summary_export: Mapping[str, object]) -> dict[str, Any]:
    """Shrink a k6 `--summary-export` document to what the results need, under MAX_COMPACT_BYTES.

    Returns `{"duration_s": float | None, "counters": {name: count}, "rates": {name: {"passes",
    "fails"}}, "trends": {name: {min, max, avg, med, p(90), p(95)[, count]}}, "gauges": {name:
    max}, "dropped": int}`. A trend has "count" only when it is known. Metrics that do not fit
    are left out, the script's own before k6's breakdowns, and counted in "dropped".

    Raises:
        ValueError: the document has no "metrics" object (not a k6 summary export).
    """
    metrics = summary_export.get("metrics") if isinstance(summary_export, Mapping) else None
    if not isinstance(metrics, Mapping):
        # ValueError like json.JSONDecodeError: one `except ValueError` covers a bad file.
        raise ValueError("not a k6 summary export: no 'metrics' object")  # noqa: TRY004
    sections: dict[str, dict[str, object]] = {section: {} for section in _SECTIONS}
    empty = {"duration_s": _summary_duration(metrics), **sections, "dropped": 0}
    # Worst case for the marker: as many digits as the number of metrics could need.
    budget = MAX_COMPACT_BYTES - 1 - len(json.dumps(empty)) - len(str(len(metrics)))
    dropped = 0
    for name in sorted(metrics, key=lambda n: _priority(str(n))):
        kept = _compact_metric(name, metrics[name], metrics)
        if kept is None or _item_bytes(name, kept[1]) > budget:
            dropped += 1
            continue
        kind, value = kept
        budget -= _item_bytes(name, value)
        sections[kind][name] = value
    return {**empty, **sections, "dropped": dropped}


def unit_sort_key(unit: str) -> tuple[str, float]:
    """Sort "k6/2" before "k6/10": by application name, then unit number."""
    app, _, number = unit.rpartition("/")
    return (app, int(number)) if number.isdigit() else (unit, math.inf)


def _sum(values: Iterable[int | float]) -> int | float:
    """Exact sum: ints stay ints (Python ints do not overflow), floats go through math.fsum."""
    values = list(values)
    if all(isinstance(v, int) for v in values):
        return sum(values)
    return math.fsum(values)


def _numbers(section: object) -> dict[str, int | float]:
    """The name -> number items of a compact section (anything else is ignored)."""
    if not isinstance(section, Mapping):
        return {}
    return {k: n for k, v in section.items() if (n := _number(v)) is not None}


def _mappings(section: object) -> dict[str, Mapping[str, object]]:
    """The name -> mapping items of a compact section (anything else is ignored)."""
    if not isinstance(section, Mapping):
        return {}
    return {k: v for k, v in section.items() if isinstance(v, Mapping)}


def _merge_trend(per_unit: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """Merge one trend: exact min, max, count and weighted avg; percentiles stay per unit."""
    # A trend with count 0 exists only because a threshold names it; k6 writes zeros for it.
    sampled = {u: s for u, s in per_unit.items() if s.get("count") != 0}
    unknown = [u for u, s in sampled.items() if _number(s.get("count")) is None]
    mins = [n for s in sampled.values() if (n := _number(s.get("min"))) is not None]
    maxes = [n for s in sampled.values() if (n := _number(s.get("max"))) is not None]
    avgs = {u: n for u, s in sampled.items() if (n := _number(s.get("avg"))) is not None}
    merged: dict[str, object] = {
        "min": min(mins, default=None),
        "max": max(maxes, default=None),
        "avg": None,
        "count": None,
    }
    if unknown:
        merged["count_unknown_units"] = unknown
        if len(sampled) == 1:
            merged["avg"] = avgs.get(unknown[0])  # a single unit's avg is exact without a count
    else:
        counts = {u: _number(s.get("count")) or 0 for u, s in sampled.items()}
        total = _sum(counts.values())
        merged["count"] = total
        if total and len(avgs) == len(sampled):
            merged["avg"] = _round(math.fsum(avgs[u] * counts[u] for u in sampled) / total)
    # Not a merged percentile: the range of the units' own. The merged value is usually inside
    # it (always, for nearest-rank percentiles; k6 interpolates, so tiny samples may stray).
    for pct in PERCENTILES:
        values = [n for s in sampled.values() if (n := _number(s.get(pct))) is not None]
        if values:
            merged[f"{pct}_unit_range"] = [min(values), max(values)]
    merged["per_unit"] = {u: dict(s) for u, s in per_unit.items()}
    return merged


def aggregate(
    per_unit: Mapping[str, Mapping[str, object] | None], duration_s: float | None
) -> dict[str, Any]:
    """Merge every unit's compact summary into one run result.

    Counters are summed exactly and their per-second rate recomputed from `duration_s` (or, when
    it is None, the longest unit's own duration; no rate when neither is known or it is 0). Rate
    metrics merge passes and fails. For `http_req_failed` k6 adds `true` for a *failed* request,
    so its passes are the failed requests and its "rate" is the error rate, as k6 prints it.
    Trends get exact min/max, a count-weighted avg (None, with the units named, when a count is
    unknown) and each unit's percentiles: a global percentile cannot be derived from them.

    Returns:
        `{"units_reporting": [unit], "units_missing": [unit], "duration_s": float | None,
        "duration_source": "run" | "units" | None, "counters": {name: {"count", "rate"}},
        "rates": {name: {"passes", "fails", "rate"}}, "trends": {name: {"min", "max", "avg",
        "count", "p(90)_unit_range", "p(95)_unit_range", "per_unit": {unit: stats}}}, "gauges":
        {name: {"max", "sum_of_unit_max"}}, "dropped": {unit: metrics left out by compact}}`.
        A metric that some reporting units lack also has "missing_from": [unit].
    """
    units = sorted(per_unit, key=unit_sort_key)
    summaries = {u: s for u in units if isinstance(s := per_unit[u], Mapping)}
    source: str | None = "run" if duration_s is not None else None
    if duration_s is None:
        durations = [n for s in summaries.values() if (n := _number(s.get("duration_s")))]
        if durations:
            duration_s, source = max(durations), "units"

    def per_second(count: float) -> float | None:
        return _round(count / duration_s) if duration_s and duration_s > 0 else None

    counters: dict[str, dict[str, int | float]] = {}
    rates: dict[str, dict[str, Mapping[str, object]]] = {}
    trends: dict[str, dict[str, Mapping[str, object]]] = {}
    gauges: dict[str, dict[str, int | float]] = {}
    for unit, summary in summaries.items():
        for name, count in _numbers(summary.get("counters")).items():
            counters.setdefault(name, {})[unit] = count
        for name, entry in _mappings(summary.get("rates")).items():
            rates.setdefault(name, {})[unit] = entry
        for name, entry in _mappings(summary.get("trends")).items():
            trends.setdefault(name, {})[unit] = entry
        for name, value in _numbers(summary.get("gauges")).items():
            gauges.setdefault(name, {})[unit] = value

    def with_missing(merged: Mapping[str, object], present: Mapping[str, object]) -> dict:
        missing = [u for u in summaries if u not in present]
        return {**merged, "missing_from": missing} if missing else dict(merged)

    merged_counters = {}
    for name, values in sorted(counters.items()):
        count = _sum(values.values())
        merged_counters[name] = with_missing({"count": count, "rate": per_second(count)}, values)
    merged_rates = {}
    for name, entries in sorted(rates.items()):
        passes = _sum(_number(e.get("passes")) or 0 for e in entries.values())
        fails = _sum(_number(e.get("fails")) or 0 for e in entries.values())
        total = passes + fails
        merged = {"passes": passes, "fails": fails, "rate": passes / total if total else None}
        merged_rates[name] = with_missing(merged, entries)
    merged_gauges = {}
    for name, values in sorted(gauges.items()):
        merged = {"max": max(values.values()), "sum_of_unit_max": _sum(values.values())}
        merged_gauges[name] = with_missing(merged, values)
    merged_trends = {
        name: with_missing(_merge_trend(entries), entries)
        for name, entries in sorted(trends.items())
    }
    return {
        "units_reporting": list(summaries),
        "units_missing": [u for u in units if u not in summaries],
        "duration_s": duration_s,
        "duration_source": source,
        "counters": merged_counters,
        "rates": merged_rates,
        "trends": merged_trends,
        "gauges": merged_gauges,
        "dropped": {u: n for u, s in summaries.items() if (n := _number(s.get("dropped")))},
    }


# --- thresholds -------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
THRESHOLD_STATS = ("count", "rate", "value", "min", "max", "avg")
_THRESHOLD_RE = re.compile(
    r"^(?P<metric>\S.*?)\s+(?P<stat>[A-Za-z]\w*(?:\(\s*[\d.]+\s*\))?)\s*"
    r"(?P<op><=|>=|==|<|>)\s*(?P<number>\S+)$"
)


@dataclass(frozen=True)
class Threshold:
    """One pass condition on the merged results, e.g. `http_req_failed rate<0.01`."""

    metric: str
    stat: str  # one of THRESHOLD_STATS
    op: str  # one of <, <=, >, >=, ==
    value: float

    def __str__(self) -> str:
        return f"{self.metric} {self.stat}{self.op}{self.value:.15g}"


def parse_thresholds(text: str) -> list[Threshold]:
    """Parse `<metric> <stat><op><number>` entries separated by ';' or newlines.

    Raises:
        ValueError: an entry does not parse; the message names it and says what is allowed.
    """
    thresholds = []
    for raw in re.split(r"[;\n]", text):
        entry = raw.strip()
        if not entry:
            continue
        match = _THRESHOLD_RE.match(entry)
        if match is None:
            raise ValueError(
                f"bad threshold {entry!r}: expected '<metric> <stat><op><number>', "
                "e.g. 'http_req_failed rate<0.01'"
            )
        stat = match["stat"]
        if stat.startswith(("p(", "med")):
            raise ValueError(
                f"bad threshold {entry!r}: percentiles cannot be merged across units; "
                f"use one of {', '.join(THRESHOLD_STATS)}"
            )
        if stat not in THRESHOLD_STATS:
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
        thresholds.append(Threshold(match["metric"], stat, match["op"], value))
    return thresholds


# Which threshold stat reads which field of an aggregate entry, per kind of metric.
_THRESHOLD_FIELDS = {
    "counters": {"count": "count", "rate": "rate"},
    "rates": {"rate": "rate", "value": "rate"},
    "trends": {"min": "min", "max": "max", "avg": "avg", "count": "count"},
    "gauges": {"max": "max"},
}
_KIND_NAMES = {"counters": "counter", "rates": "rate", "trends": "trend", "gauges": "gauge"}


def _judge(aggregate: Mapping[str, object], threshold: Threshold) -> str | None:
    """Why `threshold` fails against `aggregate`, or None when it holds."""
    for section, fields in _THRESHOLD_FIELDS.items():
        entry = _mappings(aggregate.get(section)).get(threshold.metric)
        if entry is None:
            continue
        if threshold.stat not in fields:
            kind = _KIND_NAMES[section]
            return (
                f"{threshold}: a {kind} metric has no {threshold.stat} (use {', '.join(fields)})"
            )
        value = _number(entry.get(fields[threshold.stat]))
        if value is None:
            why = ""
            if section == "counters":
                why = ": run duration unknown"
            elif isinstance(unknown := entry.get("count_unknown_units"), list) and unknown:
                why = f": no sample count from {', '.join(map(str, unknown))}"
            elif entry.get("count") == 0 or entry.get("passes") == entry.get("fails") == 0:
                why = ": no samples"
            return f"{threshold}: {threshold.stat} of {threshold.metric} is unknown{why}"
        if not _OPERATORS[threshold.op](value, threshold.value):
            return f"{threshold}: {threshold.stat} is {_fmt(value)}"
        return None
    return f"{threshold}: metric {threshold.metric} not reported"


def evaluate(aggregate: Mapping[str, object], thresholds: Sequence[Threshold]) -> list[str]:
    """Judge thresholds against an aggregate: one human-readable reason per failure, [] = pass.

    A threshold whose value cannot be computed (metric not reported, run duration or a unit's
    sample count unknown, no samples) fails: a run never passes on a number nobody measured.
    """
    return [reason for t in thresholds if (reason := _judge(aggregate, t)) is not None]


# --- table ------------------------------------------------------------------------------------


def _fmt(value: object, spec: str = ".6g") -> str:
    """A number formatted with `spec` ("-" when there is none); ints in full, never 1.2e+07."""
    number = _number(value)
    if number is None:
        return "-"
    return f"{number:d}" if isinstance(number, int) and spec == ".6g" else format(number, spec)


def _failed_requests(entry: Mapping[str, object]) -> tuple[float | None, float | None]:
    """(failed, total) requests from an http_req_failed entry: k6 counts a failure as a pass."""
    passes, fails = _number(entry.get("passes")), _number(entry.get("fails"))
    if passes is None or fails is None:
        return None, None
    return passes, passes + fails


def _percent(part: float | None, whole: float | None) -> str:
    """Part / whole as a percentage with two decimals, "-" when undefined."""
    return f"{part / whole * 100:.2f}%" if part is not None and whole else "-"


def _unit_row(unit: str, info: Mapping[str, object]) -> tuple[str, ...]:
    """One unit's cells: name, exit code, requests, iterations, failed requests, p(95) ms."""
    exit_code = info.get("exit_code")
    if info.get("lost"):
        exit_cell = "lost"
    elif isinstance(exit_code, int) and not isinstance(exit_code, bool):
        exit_cell = str(exit_code)
    else:
        exit_cell = "-"
    summary = info.get("summary")
    summary = summary if isinstance(summary, Mapping) else {}
    counters = _numbers(summary.get("counters"))
    failed, total = _failed_requests(_mappings(summary.get("rates")).get("http_req_failed", {}))
    duration = _mappings(summary.get("trends")).get("http_req_duration", {})
    return (
        unit,
        exit_cell,
        _fmt(counters.get("http_reqs")),
        _fmt(counters.get("iterations")),
        _percent(failed, total),
        _fmt(duration.get("p(95)"), ".2f"),
    )


def format_table(
    units: Mapping[str, Mapping[str, object]], aggregate: Mapping[str, object]
) -> str:
    """A fixed-width text table: one row per unit in unit order, a TOTAL row, then run rates.

    `units[unit]` may hold "exit_code" (int | None), "summary" (compact dict | None) and "lost".
    The TOTAL p(95) is the range of the units' own p(95): percentiles cannot be merged.
    """
    header = ("UNIT", "EXIT", "REQUESTS", "ITERATIONS", "FAILED", "P95 MS")
    rows = [_unit_row(unit, units[unit]) for unit in sorted(units, key=unit_sort_key)]
    counters = _mappings(aggregate.get("counters"))
    requests = counters.get("http_reqs", {})
    failed, total = _failed_requests(_mappings(aggregate.get("rates")).get("http_req_failed", {}))
    p95 = _mappings(aggregate.get("trends")).get("http_req_duration", {}).get("p(95)_unit_range")
    low, high = p95 if isinstance(p95, list) and len(p95) == 2 else (None, None)
    p95_cell = _fmt(low, ".2f") if low == high else f"{_fmt(low, '.2f')}..{_fmt(high, '.2f')}"
    totals = (
        "TOTAL",
        "",
        _fmt(requests.get("count")),
        _fmt(counters.get("iterations", {}).get("count")),
        _percent(failed, total),
        p95_cell,
    )
    widths = [max(len(row[i]) for row in (header, *rows, totals)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    duration = _number(aggregate.get("duration_s"))
    lines = [line(header), rule, *(line(row) for row in rows), rule, line(totals)]
    over = "duration unknown" if duration is None else f"over {_fmt(duration)} s"
    lines.append(f"req/s: {_fmt(requests.get('rate'), '.2f')} ({over})")
    lines.append(
        f"error rate: {_percent(failed, total)} ({_fmt(failed)} of {_fmt(total)} requests failed)"
    )
    missing = aggregate.get("units_missing")
    if isinstance(missing, list) and missing:
        lines.append(f"no summary from: {', '.join(str(u) for u in missing)}")
    return "\n".join(lines)
