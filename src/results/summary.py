"""One unit's summary: k6's `--summary-export` shrunk to what the merge needs, under 8 KiB.

Which stats every unit's k6 reports (`trend_stats`, the GRID), and `compact`, the small summary a
unit puts in its databag (its shape: `CompactSummary`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Final, TypedDict, cast

from results._numbers import as_count, as_number, percentile_fraction, round_significant

# A unit's compact summary travels in its relation databag: four trends with their grids fit.
MAX_COMPACT_BYTES = 8192
# Significant digits of a trend's grid values: each moves by at most 5e-5 of itself, far below
# what merging costs, and 4 trends' grids fit MAX_COMPACT_BYTES (docs/results.md, "Rounding").
GRID_DIGITS = 5


def _grid_percents(steps: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Percentiles from 0 (excluded) up to each bound by its step, as decimal text for k6."""
    points: list[str] = []
    low = Decimal(0)
    for bound, step in steps:
        point = low + Decimal(step)
        while point <= Decimal(bound):
            points.append(format(point.normalize(), "f"))
            point += Decimal(step)
        low = Decimal(bound)
    return tuple(points)


# Where k6 reports every trend, in percent: (up to, step). Fine on both sides of p95, p99 and
# p99.9 and 1 % steps through the body (a slower unit's body holds the run's tail), 2.5 % in the
# lower tail; measured against other grids in docs/results.md, "Choosing the grid".
GRID_STEPS = (
    ("45", "2.5"),
    ("85", "1"),
    ("94", "0.5"),
    ("98", "0.1"),
    ("99.8", "0.05"),
    ("99.98", "0.01"),
    ("99.995", "0.005"),
    ("99.999", "0.004"),
)
GRID_PERCENTS: tuple[str, ...] = _grid_percents(GRID_STEPS)  # 174: "2.5", "5", ..., "99.999"
# The quantile fractions exactly as k6 computes them from `p(<text>)`: float(text) / 100.
GRID: tuple[float, ...] = tuple(float(p) / 100 for p in GRID_PERCENTS)
# Key of the grid values (a list in GRID order) in a compact trend; names the grid's version.
GRID_KEY: Final = "grid_v1"


def trend_stats() -> str:
    """The `--summary-trend-stats` value for every unit's k6: avg, min, max, count, the GRID."""
    return ",".join(["avg", "min", "max", "count", *(f"p({p})" for p in GRID_PERCENTS)])


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
# k6's own trends, all in milliseconds (a script's Trend may hold anything).
TIME_TRENDS = frozenset(
    {
        *_TREND_COUNT_SOURCE,
        "group_duration",
        "ws_connecting",
        "ws_ping",
        "ws_session_duration",
        "grpc_req_duration",
    }
)
_BUILTIN_METRICS = frozenset(
    {
        *CORE_METRICS,
        *TIME_TRENDS,
        "ws_msgs_received",
        "ws_msgs_sent",
        "ws_sessions",
        "grpc_streams",
        "grpc_streams_msgs_received",
        "grpc_streams_msgs_sent",
    }
)
# What a trend keeps when its grid does not fit (and what a summary without a grid carries).
TREND_STATS = ("min", "max", "avg", "med", "p(90)", "p(95)")
# Order in which a counter's count/rate gives the test duration (count / rate = seconds).
_DURATION_COUNTERS = ("iterations", "http_reqs")

_SECTIONS = ("counters", "rates", "trends", "gauges")


class RateCounts(TypedDict):
    """A Rate metric's small form: how many samples were true (passes) and false (fails)."""

    passes: int | float
    fails: int | float


class FullTrend(TypedDict):
    """A trend's full form: min, max, avg, count and k6's value at each GRID fraction."""

    min: float
    max: float
    avg: float
    count: int
    grid_v1: list[float]  # GRID_KEY: the values in GRID order


# A trend's small form: each of TREND_STATS and the count when known.
SmallTrend = TypedDict(
    "SmallTrend",
    {
        "min": float,
        "max": float,
        "avg": float,
        "med": float,
        "p(90)": float,
        "p(95)": float,
        "count": int,
    },
    total=False,
)
CompactTrend = FullTrend | SmallTrend


class CompactSummary(TypedDict):
    """What `compact` keeps of one unit's summary export (JSON in the unit's databag)."""

    duration_s: float | None  # seconds the unit's test ran, from a counter's count / rate
    counters: dict[str, int | float]  # name -> count
    rates: dict[str, RateCounts]
    trends: dict[str, CompactTrend]
    gauges: dict[str, int | float]  # name -> max
    dropped: int  # metrics left out to stay under MAX_COMPACT_BYTES


def _short(value: float) -> int | float:
    """A grid value rounded to GRID_DIGITS, an integral one as int (`7`, not `7.0`)."""
    rounded = float(f"{value:.{GRID_DIGITS}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded


def _kind(entry: Mapping[str, object]) -> str | None:
    """Which section a summary-export metric belongs to, from the keys k6 writes for it."""
    if "passes" in entry and "fails" in entry:
        return "rates"  # Rate: passes, fails, value (= passes / (passes + fails))
    if "count" in entry and "rate" in entry:
        return "counters"  # Counter: count, rate (= count / test duration)
    if "value" in entry:
        return "gauges"  # Gauge: value (last), min, max
    if any(stat in entry for stat in (*TREND_STATS, "count")):
        return "trends"  # Trend: whatever --summary-trend-stats asked for
    return None


def _export_percentiles(entry: Mapping[str, object]) -> dict[float, int | float]:
    """The percentiles of one exported trend, by quantile fraction (`med` is 0.5)."""
    found: dict[float, int | float] = {}
    for key, value in entry.items():
        fraction = percentile_fraction(str(key))
        number = as_number(value)
        if fraction is not None and number is not None:
            found[fraction] = number
    return found


def _reduced_trend(
    name: str, entry: Mapping[str, object], metrics: Mapping[str, object]
) -> dict[str, int | float] | None:
    """A trend's small form: TREND_STATS (med, p(90), p(95) also from p(50)...) and its count."""
    percentiles = _export_percentiles(entry)
    stats: dict[str, int | float] = {}
    for stat in TREND_STATS:
        value = as_number(entry.get(stat))
        if value is None and (fraction := percentile_fraction(stat)) is not None:
            value = percentiles.get(fraction)
        if value is not None:
            stats[stat] = round_significant(value)
    count = as_count(entry.get("count"))  # present when --summary-trend-stats includes count
    if count is None and name in _TREND_COUNT_SOURCE:
        source = metrics.get(_TREND_COUNT_SOURCE[name])
        if isinstance(source, Mapping):
            count = as_count(source.get("count"))
    if count is not None:
        stats["count"] = count
    return stats or None


def _gridded_trend(
    entry: Mapping[str, object], reduced: Mapping[str, int | float]
) -> dict[str, object] | None:
    """A trend's full form: min, max, avg, count and the GRID values, or None without them.

    The values are rounded to GRID_DIGITS, then made non-decreasing and kept within
    [min, max], so that a rounding or a last-bit wobble in k6's interpolation never yields a
    decreasing distribution (each value moves by no more than its own rounding).
    """
    count = reduced.get("count")
    low, high, avg = reduced.get("min"), reduced.get("max"), reduced.get("avg")
    # With 2 samples or fewer, or one value, min and max fix k6's distribution: no grid needed.
    if count is None or count < 3 or low is None or high is None or avg is None or low >= high:
        return None
    percentiles = _export_percentiles(entry)
    if any(fraction not in percentiles for fraction in GRID):
        return None
    values: list[int | float] = []
    floor = low
    for fraction in GRID:
        value = min(max(_short(percentiles[fraction]), floor), high)
        values.append(value)
        floor = value
    return {"min": low, "max": high, "avg": avg, "count": count, GRID_KEY: values}


def _compact_entry(
    kind: str, name: str, entry: Mapping[str, object], metrics: Mapping[str, object]
) -> object | None:
    """The small form of one metric, or None when it carries no usable number."""
    if kind == "counters":
        return as_number(entry.get("count"))
    if kind == "gauges":
        return as_number(entry.get("max"))
    if kind == "rates":
        passes, fails = as_number(entry.get("passes")), as_number(entry.get("fails"))
        if passes is None or fails is None:
            return None
        return {"passes": passes, "fails": fails}
    return _reduced_trend(name, entry, metrics)


def _compact_metric(
    name: str, entry: object, metrics: Mapping[str, object]
) -> tuple[str, object] | None:
    """(section, small form) of one summary-export metric, or None when it has no use here."""
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
        count, rate = as_number(entry.get("count")), as_number(entry.get("rate"))
        if count and rate:
            return round_significant(float(count / rate))
    return None


# k6's own HTTP timings, most telling first (server time before connection set-up).
_HTTP_TIMINGS = ("http_req_waiting", "http_req_receiving", "http_req_sending", "http_req_blocked")


def _priority(name: str, keep: Collection[str] = ()) -> tuple[int, str]:
    """Order: what thresholds name, the core, the script's own, k6's HTTP timings, submetrics."""
    if name in keep:
        return (-1, name)
    if name in CORE_METRICS:
        return (0, name)
    if name in _HTTP_TIMINGS:
        return (2, str(_HTTP_TIMINGS.index(name)))
    if "{" in name:
        return (3, name)
    if name in _BUILTIN_METRICS or name.startswith("browser_"):
        return (4, name)
    return (1, name)


def _item_bytes(name: str, value: object) -> int:
    """Bytes `"name": value, ` adds to a json.dumps'ed dict (separator counted always)."""
    return len(json.dumps(name)) + 2 + len(json.dumps(value)) + 2


def compact(summary_export: Mapping[str, object], keep: Collection[str] = ()) -> CompactSummary:
    """Shrink a k6 `--summary-export` document to what the results need, under MAX_COMPACT_BYTES.

    The metrics in `keep` (those the run's thresholds name) come first, in both passes: they
    are never dropped while anything else is kept, and their trends get their grid first.

    A trend is either full (`FullTrend`: k6 ran with `trend_stats()`, it has 3 samples or more
    and the grid fits), or small (`SmallTrend`, each stat when known). Every metric is
    first placed in its small form, in priority order (core, the script's own, submetrics,
    k6's breakdowns); those that do not fit are left out and counted in "dropped". Then trends
    are upgraded to their full form in the same order while the bound allows.

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
    order = sorted(metrics, key=lambda n: _priority(str(n), keep))
    for name in order:
        kept = _compact_metric(name, metrics[name], metrics)
        if kept is None or _item_bytes(name, kept[1]) > budget:
            dropped += 1
            continue
        kind, value = kept
        budget -= _item_bytes(name, value)
        sections[kind][name] = value
    trends = sections["trends"]
    for name in order:
        entry = metrics[name]
        if name not in trends or not isinstance(entry, Mapping):
            continue
        reduced = trends[name]
        assert isinstance(reduced, dict)
        full = _gridded_trend(entry, reduced)
        if full is not None:
            extra = _item_bytes(name, full) - _item_bytes(name, reduced)
            if extra <= budget:
                budget -= extra
                trends[name] = full
    return cast(CompactSummary, {**empty, **sections, "dropped": dropped})
