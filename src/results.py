"""Arithmetic on k6 results: shrink one unit's summary export, merge all units, judge thresholds.

Pure data in, pure data out (stdlib, and the library's unit order); every dict produced here is
JSON-serializable. Trends merge through k6's own percentiles on a fixed grid, with a certified
rank error: docs/results.md.
"""

from __future__ import annotations

import json
import math
import operator
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from charms.k6_k8s.v0.synchronized_task import unit_order

# A unit's compact summary travels in its relation databag: four trends with their grids fit.
MAX_COMPACT_BYTES = 8192
# Significant digits kept for trend statistics (ms) and durations; counts are never rounded.
SIGNIFICANT_DIGITS = 6
# Significant digits of a trend's grid values: each moves by at most 5e-5 of itself, far below
# what merging costs, and 4 trends' grids fit MAX_COMPACT_BYTES (docs/results.md, "Rounding").
GRID_DIGITS = 5
# What storing GRID_DIGITS costs the guarantee: every stored value is within this share of itself
# of k6's exact value (rho / (1 - rho) = 5.00025e-5 for rho = 5e-5, plus k6's last float bit), so
# the certified rank error of a merged percentile x counts the samples <= x + VALUE_TOLERANCE * |x|
# and < x - VALUE_TOLERANCE * |x|: a sample closer to x than that may be on the other side
# (docs/results.md, "What the certificate says").
VALUE_TOLERANCE = 5.0003e-5


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
GRID_KEY = "grid_v1"
# Merged percentiles every aggregate reports for every trend (thresholds may add more).
REPORTED_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


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
_TIME_TRENDS = frozenset(
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
        *_TIME_TRENDS,
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
_PERCENTILE_RE = re.compile(r"^p\(\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*\)$")


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


def _short(value: float) -> int | float:
    """A grid value rounded to GRID_DIGITS, an integral one as int (`7`, not `7.0`)."""
    rounded = float(f"{value:.{GRID_DIGITS}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded


def _count(value: object) -> int | None:
    """A sample count: a non-negative integral number (k6 writes it as an integer)."""
    number = _number(value)
    if number is None or number < 0 or not float(number).is_integer():
        return None
    return int(number)


def _stat_percent(stat: str) -> float | None:
    """The percent of a `p(<x>)` stat (`med` is 50), or None when it is no percentile."""
    if stat == "med":
        return 50.0
    match = _PERCENTILE_RE.match(stat)
    if match is None:
        return None
    percent = float(match[1])
    return percent if 0 <= percent <= 100 else None


def _percentile_fraction(stat: str) -> float | None:
    """The quantile fraction of `p(<x>)` exactly as k6 computes it (x / 100), or of `med`."""
    percent = _stat_percent(stat)
    return None if percent is None else percent / 100


def _number_text(value: float) -> str:
    """Shortest plain text of a number: `95`, `99.9`, `0.00001` (a percentile key's number)."""
    return format(Decimal(repr(float(value))).normalize(), "f")


def percentile_key(percent: float) -> str:
    """The aggregate's key of a merged percentile: `p(95)`, `p(99.9)`."""
    return f"p({_number_text(percent)})"


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
        fraction = _percentile_fraction(str(key))
        number = _number(value)
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
        value = _number(entry.get(stat))
        if value is None and (fraction := _percentile_fraction(stat)) is not None:
            value = percentiles.get(fraction)
        if value is not None:
            stats[stat] = _round(value)
    count = _count(entry.get("count"))  # present when --summary-trend-stats includes count
    if count is None and name in _TREND_COUNT_SOURCE:
        source = metrics.get(_TREND_COUNT_SOURCE[name])
        if isinstance(source, Mapping):
            count = _count(source.get("count"))
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
        return _number(entry.get("count"))
    if kind == "gauges":
        return _number(entry.get("max"))
    if kind == "rates":
        passes, fails = _number(entry.get("passes")), _number(entry.get("fails"))
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
        count, rate = _number(entry.get("count")), _number(entry.get("rate"))
        if count and rate:
            return _round(float(count / rate))
    return None


# k6's own HTTP timings, most telling first (server time before connection set-up).
_HTTP_TIMINGS = ("http_req_waiting", "http_req_receiving", "http_req_sending", "http_req_blocked")


def _priority(name: str) -> tuple[int, str]:
    """Order for metrics beyond the core: the script's own, k6's HTTP timings, submetrics, k6's."""
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


def compact(summary_export: Mapping[str, object]) -> dict[str, Any]:
    """Shrink a k6 `--summary-export` document to what the results need, under MAX_COMPACT_BYTES.

    Returns `{"duration_s": float | None, "counters": {name: count}, "rates": {name: {"passes",
    "fails"}}, "trends": {name: trend}, "gauges": {name: max}, "dropped": int}`.

    A trend is either full, `{"min", "max", "avg", "count", GRID_KEY: [value at each GRID
    fraction]}` (k6 ran with `trend_stats()`, it has 3 samples or more and the grid fits), or
    small, `{min, max, avg, med, p(90), p(95)[, count]}` (each when known). Every metric is
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
    order = sorted(metrics, key=lambda n: _priority(str(n)))
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
    return {**empty, **sections, "dropped": dropped}


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


# --- merging distributions --------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """One unit's trend as k6 reported it: `values[j]` is k6's quantile at `fractions[j]`.

    `fractions` rise strictly from 0.0 (min) to 1.0 (max); `values` never decrease. Between
    points the unit's CDF is taken as linear, like k6's own interpolation between samples.
    """

    count: int
    fractions: tuple[float, ...]
    values: tuple[float, ...]

    @classmethod
    def from_compact(cls, stats: Mapping[str, object]) -> Distribution | None:
        """The distribution in a compact trend (full or small form); None without count/min/max.

        A small form gives a coarse distribution (min, med, p(90), p(95), max): it still merges,
        with a rank error that says how coarse it is.
        """
        count = _count(stats.get("count"))
        low, high = _number(stats.get("min")), _number(stats.get("max"))
        if not count or low is None or high is None or low > high:
            return None
        points = {0.0: low, 1.0: high}
        grid = stats.get(GRID_KEY)
        if isinstance(grid, list) and len(grid) == len(GRID):
            points.update(
                (f, n) for f, v in zip(GRID, grid, strict=True) if (n := _number(v)) is not None
            )
        for key, value in stats.items():
            fraction = _percentile_fraction(str(key))
            number = _number(value)
            if fraction is not None and 0 < fraction < 1 and number is not None:
                points[fraction] = number
        fractions = tuple(sorted(points))
        values: list[float] = []
        floor = low
        for fraction in fractions:  # non-decreasing within [min, max], whatever a databag holds
            floor = min(max(points[fraction], floor), high)
            values.append(floor)
        return cls(count, fractions, tuple(values))

    def mid_rank(self, x: float, *, left: bool = False) -> float:
        """c(x): samples at or below x, estimated; `left=True` gives the limit from below.

        c(x) = (n - 1) F(x) + 1/2 inside [min, max), 0 below min, n from max on, where F is the
        piecewise-linear CDF through the points: the mid-rank k6's own interpolation implies.
        """
        values, fractions = self.values, self.fractions
        if (x <= values[0]) if left else (x < values[0]):
            return 0.0
        if (x > values[-1]) if left else (x >= values[-1]):
            return float(self.count)
        j = bisect_left(values, x) if left else bisect_right(values, x)
        # left: values[j-1] < x <= values[j]; right: values[j-1] <= x < values[j]; 1 <= j <= m.
        low, high = values[j - 1], values[j]
        fraction = fractions[j - 1] + (fractions[j] - fractions[j - 1]) * (x - low) / (high - low)
        return (self.count - 1) * fraction + 0.5

    def count_bounds(self, x: float) -> tuple[int, int]:
        """(at least this many samples are <= x, at most this many are < x): exact for k6 data.

        k6's p(q) lies between the sorted samples s[floor(i)] and s[ceil(i)], i = q * (n - 1)
        computed in floats exactly as here. So a point q with value <= x puts floor(i) + 1
        samples at or below x; a point with value >= x leaves at most ceil(i) samples below x.
        """
        n1 = float(self.count) - 1.0
        at_or_below = bisect_right(self.values, x)
        low = 0 if at_or_below == 0 else math.floor(self.fractions[at_or_below - 1] * n1) + 1
        above = bisect_left(self.values, x)
        high = self.count if above == len(self.values) else math.ceil(self.fractions[above] * n1)
        return low, high


def rank_error(distributions: Sequence[Distribution], x: float, fraction: float) -> float:
    """The certified rank error of x as the `fraction` quantile of the union of the units.

    With G(x) = share of all samples <= x and G-(x) = share < x, the result e guarantees
    G(x') >= fraction - e and G-(x'') <= fraction + e (docs/results.md, Theorem 1) for
    x' = x + VALUE_TOLERANCE * |x| and x'' = x - VALUE_TOLERANCE * |x|; at x itself when the
    points are k6's exact values.
    """
    total = sum(d.count for d in distributions)
    bounds = [d.count_bounds(x) for d in distributions]
    at_or_below = sum(low for low, _ in bounds)
    below = sum(high for _, high in bounds)
    return max(fraction - at_or_below / total, below / total - fraction, 0.0)


def merged_quantile(distributions: Sequence[Distribution], fraction: float) -> float:
    """The `fraction` quantile (0..1) of the union of the units' samples, from their points.

    The smallest x whose summed mid-rank C(x) = sum of c_i(x) reaches fraction * (N - 1) + 1/2,
    the position k6 would interpolate at in the union: exact on C's piecewise-linear pieces,
    independent of the units' order. With one unit it is that unit's own interpolation.
    """
    total = sum(d.count for d in distributions)
    target = fraction * (total - 1) + 0.5

    def mid_rank(x: float, *, left: bool = False) -> float:  # fsum: exact, so order-free
        return math.fsum(d.mid_rank(x, left=left) for d in distributions)

    points = sorted({v for d in distributions for v in d.values})
    low, high = 0, len(points) - 1  # C(points[-1]) = N >= target: the answer is <= points[-1]
    while low < high:
        middle = (low + high) // 2
        if mid_rank(points[middle]) >= target:
            high = middle
        else:
            low = middle + 1
    if low == 0:
        return points[0]
    start, end = points[low - 1], points[low]
    at_start, before_end = mid_rank(start), mid_rank(end, left=True)
    if before_end < target or before_end <= at_start:
        return end  # C jumps over the target at `end` (ties in some unit, or its min/max)
    x = start + (end - start) * (target - at_start) / (before_end - at_start)
    return min(max(x, start), end)


def _round_up(value: float, digits: int = 3, scale: int = 1) -> float:
    """`value * scale` (non-negative) rounded up to `digits` significant digits, never below."""
    if value <= 0:
        return 0.0
    exact = Decimal(repr(float(value))) * scale  # the decimal that reads back as `value`, scaled
    step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    return float(exact.quantize(step, rounding=ROUND_CEILING))


def merge_percentiles(
    distributions: Sequence[Distribution], percents: Iterable[float]
) -> tuple[dict[str, float], dict[str, float]]:
    """({"p(95)": merged value}, {"p(95)": rank error}) for each percent (0..100).

    Each value is rounded to SIGNIFICANT_DIGITS first and its rank error certified for the
    rounded value itself, then rounded up to 3 significant digits.
    """
    values: dict[str, float] = {}
    errors: dict[str, float] = {}
    for percent in sorted(set(percents)):
        fraction = percent / 100
        value = _round(merged_quantile(distributions, fraction))
        key = percentile_key(percent)
        values[key] = value
        errors[key] = _round_up(rank_error(distributions, value, fraction))
    return values, errors


def _merge_trend(
    per_unit: Mapping[str, Mapping[str, object]], percents: Iterable[float]
) -> dict[str, object]:
    """Merge one trend: exact min, max, count, weighted avg; percentiles from the units' points."""
    # A trend with count 0 exists only because a threshold names it; k6 writes zeros for it.
    sampled = {u: s for u, s in per_unit.items() if s.get("count") != 0}
    unknown = [u for u, s in sampled.items() if _count(s.get("count")) is None]
    mins = [n for s in sampled.values() if (n := _number(s.get("min"))) is not None]
    maxes = [n for s in sampled.values() if (n := _number(s.get("max"))) is not None]
    avgs = {u: n for u, s in sampled.items() if (n := _number(s.get("avg"))) is not None}
    merged: dict[str, object] = {
        "min": min(mins, default=None),
        "max": max(maxes, default=None),
        "avg": None,
        "count": None,
    }
    keys = [percentile_key(p) for p in sorted(set(percents))]
    merged.update(dict.fromkeys(keys))
    if unknown:
        merged["count_unknown_units"] = unknown
        if len(sampled) == 1:
            merged["avg"] = avgs.get(unknown[0])  # a single unit's avg is exact without a count
        return merged
    counts = {u: _count(s.get("count")) or 0 for u, s in sampled.items()}
    total = _sum(counts.values())
    merged["count"] = total
    if total and len(avgs) == len(sampled):
        merged["avg"] = _round(math.fsum(avgs[u] * counts[u] for u in sampled) / total)
    distributions = [d for s in sampled.values() if (d := Distribution.from_compact(s))]
    if total and len(distributions) == len(sampled):
        values, errors = merge_percentiles(distributions, percents)
        merged.update(values)
        merged["rank_error"] = errors
    return merged


def _threshold_percents(thresholds: Sequence[Threshold]) -> dict[str, set[float]]:
    """Per metric, the percentiles (0..100) its thresholds need."""
    needed: dict[str, set[float]] = {}
    for threshold in thresholds:
        percent = _stat_percent(threshold.stat)
        if percent is not None:
            needed.setdefault(threshold.metric, set()).add(percent)
    return needed


def aggregate(
    per_unit: Mapping[str, Mapping[str, object] | None],
    duration_s: float | None,
    thresholds: Sequence[Threshold] = (),
) -> dict[str, Any]:
    """Merge every unit's compact summary into one run result, O(1) in the number of samples.

    Counters are summed exactly and their per-second rate recomputed from `duration_s` (or, when
    it is None, the longest unit's own duration; no rate when neither is known or it is 0). Rate
    metrics merge passes and fails. For `http_req_failed` k6 adds `true` for a *failed* request,
    so its passes are the failed requests and its "rate" is the error rate, as k6 prints it.
    Trends get exact min/max/count, a count-weighted avg and merged percentiles (REPORTED_
    PERCENTILES plus those `thresholds` name), each with its certified rank error. Nothing per
    unit is copied in: the units' own numbers stay in their summaries.

    Returns:
        `{"units_reporting": how many, "units_missing": [unit], "duration_s": float | None,
        "duration_source": "run" | "units" | None, "counters": {name: {"count", "rate"}},
        "rates": {name: {"passes", "fails", "rate"}}, "trends": {name: {"min", "max", "avg",
        "count", "p(50)", "p(90)", "p(95)", "p(99)", "p(99.9)"[, other "p(x)"], "rank_error":
        {"p(50)": e, ...}}}, "gauges": {name: {"max", "sum_of_unit_max"}}, "dropped": {unit:
        metrics left out by compact}}`. A merged percentile is None (and "rank_error" absent)
        when some unit's sample count is unknown ("count_unknown_units": [unit], avg None too
        unless a single unit reported) or no unit has samples. A metric that some reporting
        units lack also has "missing_from": [unit].
    """
    units = sorted(per_unit, key=unit_order)
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
    needed = _threshold_percents(thresholds)
    merged_trends = {
        name: with_missing(
            _merge_trend(entries, {*REPORTED_PERCENTILES, *needed.get(name, ())}), entries
        )
        for name, entries in sorted(trends.items())
    }
    return {
        "units_reporting": len(summaries),  # a count: the record stays O(1) in the units
        "units_missing": [u for u in units if u not in summaries],
        "duration_s": duration_s,
        "duration_source": source,
        "counters": merged_counters,
        "rates": merged_rates,
        "trends": merged_trends,
        "gauges": merged_gauges,
        "dropped": {u: n for u, s in summaries.items() if (n := _number(s.get("dropped")))},
    }


def _unit_percentile(stats: Mapping[str, object], fraction: float) -> int | float | None:
    """A unit's own k6 percentile from its compact trend (named, or in the grid)."""
    for key, value in stats.items():
        if _percentile_fraction(str(key)) == fraction and (n := _number(value)) is not None:
            return n
    grid = stats.get(GRID_KEY)
    if isinstance(grid, list) and len(grid) == len(GRID) and fraction in GRID:
        return _number(grid[GRID.index(fraction)])
    return None


def unit_line(summary: Mapping[str, object] | None) -> dict[str, int | float | None]:
    """One unit's short line for the last-run record: what its row of the results table shows.

    `{"requests": http_reqs, "iterations": iterations, "failed": failed requests, "p95":
    its own http_req_duration p(95) in ms}`, each None when the unit did not report it.
    """
    summary = summary if isinstance(summary, Mapping) else {}
    counters = _numbers(summary.get("counters"))
    failed = _mappings(summary.get("rates")).get("http_req_failed", {})
    duration = _mappings(summary.get("trends")).get("http_req_duration", {})
    return {
        "requests": counters.get("http_reqs"),
        "iterations": counters.get("iterations"),
        "failed": _number(failed.get("passes")),  # k6 counts a failed request as a pass
        "p95": _unit_percentile(duration, 0.95),
    }


# --- thresholds -------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
THRESHOLD_STATS = ("count", "rate", "value", "min", "max", "avg", "med", "p(N)")
_CONDITION = r"(?P<stat>[A-Za-z]\w*(?:\([^()]*\))?)\s*(?P<op><=|>=|==|<|>)\s*(?P<number>\S+)"
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
    op: str  # one of <, <=, >, >=, ==
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
        percent = _stat_percent(stat)
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
    "gauges": {"max": "max"},
}
_KIND_NAMES = {"counters": "counter", "rates": "rate", "trends": "trend", "gauges": "gauge"}


def rank_text(error: object) -> str:
    """`±0.41 % rank`: a rank error (a share, as in "rank_error") in %, rounded up to 2 digits."""
    number = _number(error)
    if number is None:
        return "rank error unknown"
    percent = _round_up(number, 2, scale=100)
    if percent == 0:
        return "±0 % rank"
    decimals = max(0, 1 - math.floor(math.log10(percent)))
    return f"±{percent:.{decimals}f} % rank"


def _judge(aggregate: Mapping[str, object], threshold: Threshold) -> str | None:
    """Why `threshold` fails against `aggregate`, or None when it holds."""
    for section, fields in _THRESHOLD_FIELDS.items():
        entry = _mappings(aggregate.get(section)).get(threshold.metric)
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
        value = _number(entry.get(field))
        if value is None:
            why = ""
            if section == "counters":
                why = ": run duration unknown"
            elif isinstance(unknown := entry.get("count_unknown_units"), list) and unknown:
                why = f": no sample count from {', '.join(map(str, unknown))}"
            elif entry.get("count") == 0 or entry.get("passes") == entry.get("fails") == 0:
                why = ": no samples"
            return f"{threshold}: {threshold.stat} of {threshold.metric} is unknown{why}"
        if _OPERATORS[threshold.op](value, threshold.value):
            return None
        if field.startswith("p("):
            errors = entry.get("rank_error")
            error = errors.get(field) if isinstance(errors, Mapping) else None
            return f"{threshold}: {threshold.stat} is {_fmt(value)} ({rank_text(error)})"
        return f"{threshold}: {threshold.stat} is {_fmt(value)}"
    return f"{threshold}: metric {threshold.metric} not reported"


def evaluate(aggregate: Mapping[str, object], thresholds: Sequence[Threshold]) -> list[str]:
    """Judge thresholds against an aggregate: one human-readable reason per failure, [] = pass.

    A threshold whose value cannot be computed (metric not reported, run duration or a unit's
    sample count unknown, no samples) fails: a run never passes on a number nobody measured.
    A percentile is judged on the merged estimate, even when the threshold lies within its rank
    error; a failure's reason shows that error (`p(95) is 231.4 (±0.41 % rank)`).
    """
    return [reason for t in thresholds if (reason := _judge(aggregate, t)) is not None]


# --- table ------------------------------------------------------------------------------------


def _fmt(value: object, spec: str = ".6g") -> str:
    """A number formatted with `spec` ("-" when there is none); ints in full, never 1.2e+07."""
    number = _number(value)
    if number is None:
        return "-"
    return f"{number:d}" if isinstance(number, int) and spec == ".6g" else format(number, spec)


def _fmt_value(value: object) -> str:
    """A merged trend value for reading: 12.1, 120.3, 0.302, 3.77 ("-" when unknown)."""
    number = _number(value)
    if number is None:
        return "-"
    return f"{number:.1f}" if abs(number) >= 10 else f"{number:.3g}"


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
    line = info.get("line")
    if not isinstance(line, Mapping):
        summary = info.get("summary")
        line = unit_line(summary if isinstance(summary, Mapping) else None)
    requests = _number(line.get("requests"))
    return (
        unit,
        exit_cell,
        _fmt(requests),
        _fmt(line.get("iterations")),
        _percent(_number(line.get("failed")), requests),
        _fmt(line.get("p95"), ".2f"),
    )


_LINE_PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (95.0, "p95"), (99.0, "p99"), (99.9, "p99.9"))


def _trend_line(name: str, width: int, entry: Mapping[str, object]) -> str:
    """`http_req_duration  p50 12.1  p90 30.2 ... max 120.3 ms  (±0.52 % rank)`."""
    cells = [
        f"{label} {_fmt_value(entry.get(percentile_key(p)))}" for p, label in _LINE_PERCENTILES
    ]
    unit = " ms" if name.split("{")[0] in _TIME_TRENDS else ""
    cells.append(f"max {_fmt_value(entry.get('max'))}{unit}")
    errors = _numbers(entry.get("rank_error"))
    shown = [errors.get(percentile_key(p)) for p, _ in _LINE_PERCENTILES]
    if all(e is not None for e in shown):
        cells.append(f"({rank_text(max(e for e in shown if e is not None))})")
    elif isinstance(unknown := entry.get("count_unknown_units"), list) and unknown:
        cells.append(f"(no sample count from {', '.join(map(str, unknown))})")
    return f"{name.ljust(width)}  " + "  ".join(cells)


def _trend_order(name: str) -> tuple[int, str]:
    """Merged trend lines: http_req_duration, iteration_duration, then by name."""
    first = ("http_req_duration", "iteration_duration")
    return (first.index(name), name) if name in first else (len(first), name)


def format_table(
    units: Mapping[str, Mapping[str, object]], aggregate: Mapping[str, object]
) -> str:
    """A fixed-width text table: one row per unit in unit order, a TOTAL row, run rates, trends.

    `units[unit]` may hold "exit_code" (int | None), "lost" and "line" (`unit_line()`), or,
    from records written before lines existed, "summary" (a compact dict) instead of "line".
    The TOTAL row's P95 is the merged p(95) of http_req_duration; then one line per merged
    trend with its p50, p90, p95, p99, p99.9, max and the largest of their rank errors.
    """
    header = ("UNIT", "EXIT", "REQUESTS", "ITERATIONS", "FAILED", "P95 MS")
    rows = [_unit_row(unit, units[unit]) for unit in sorted(units, key=unit_order)]
    counters = _mappings(aggregate.get("counters"))
    requests = counters.get("http_reqs", {})
    failed, total = _failed_requests(_mappings(aggregate.get("rates")).get("http_req_failed", {}))
    trends = _mappings(aggregate.get("trends"))
    totals = (
        "TOTAL",
        "",
        _fmt(requests.get("count")),
        _fmt(counters.get("iterations", {}).get("count")),
        _percent(failed, total),
        _fmt(trends.get("http_req_duration", {}).get("p(95)"), ".2f"),
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
    always = ("http_req_duration", "iteration_duration")
    names = [n for n in sorted(trends, key=_trend_order) if n in always or _precise(trends[n])]
    width = max((len(n) for n in names), default=0)
    lines.extend(_trend_line(name, width, trends[name]) for name in names)
    coarse = [n for n in sorted(trends, key=_trend_order) if n not in names]
    if coarse:
        lines.append(
            f"not shown, merged coarser than {TABLE_RANK_ERROR:.0%} rank (no grid from every "
            f"unit): {', '.join(coarse)}"
        )
    return "\n".join(lines)


TABLE_RANK_ERROR = 0.05  # the table shows merged trends certified at least this tight


def _precise(entry: Mapping[str, object]) -> bool:
    """Every percentile the table shows is certified within TABLE_RANK_ERROR (or unknown)."""
    errors = _numbers(entry.get("rank_error"))
    shown = [errors.get(percentile_key(p)) for p, _ in _LINE_PERCENTILES]
    return all(e is None or e <= TABLE_RANK_ERROR for e in shown)


def headline(aggregate: Mapping[str, object]) -> str:
    """One line for the app status: the merged p95 of http_req_duration with its bound."""
    entry = _mappings(aggregate.get("trends")).get("http_req_duration", {})
    p95 = _number(entry.get(percentile_key(95.0)))
    if p95 is None:
        return ""
    error = _numbers(entry.get("rank_error")).get(percentile_key(95.0))
    return f"p95 {_fmt_value(p95)} ms ({rank_text(error)})"
