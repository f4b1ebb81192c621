"""The merge: every unit's compact summary into one run result, percentiles with a rank bound.

Counters and rates sum exactly; trends merge through each unit's k6 percentiles on the GRID, the
merged percentile certified by a rank error (docs/results.md). The result's shape: `MergedResult`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict, TypeVar, cast

from charms.k6_k8s.v0.synchronized_task import unit_order

from results._numbers import (
    as_count,
    as_mappings,
    as_number,
    as_numbers,
    exact_sum,
    percentile_fraction,
    percentile_key,
    round_significant,
    round_up,
)
from results.summary import GRID, GRID_KEY
from results.thresholds import Threshold, threshold_percents

# What storing GRID_DIGITS costs the guarantee: every stored value is within this share of itself
# of k6's exact value (rho / (1 - rho) = 5.00025e-5 for rho = 5e-5, plus k6's last float bit), so
# the certified rank error of a merged percentile x counts the samples <= x + VALUE_TOLERANCE * |x|
# and < x - VALUE_TOLERANCE * |x|: a sample closer to x than that may be on the other side
# (docs/results.md, "What the certificate says").
VALUE_TOLERANCE = 5.0003e-5
# Merged percentiles every aggregate reports for every trend (thresholds may add more).
REPORTED_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


class _Missing(TypedDict, total=False):
    """A merged metric's optional key: the reporting units that lack the metric."""

    missing_from: list[str]


class MergedCounter(_Missing):
    """A counter over every unit: the exact sum and its per-second rate over the run."""

    count: int | float
    rate: float | None  # None when the run's duration is unknown or 0


class MergedRate(_Missing):
    """A Rate metric over every unit (for http_req_failed, passes are the failed requests)."""

    passes: int | float
    fails: int | float
    rate: float | None  # passes / (passes + fails); None without samples


class MergedGauge(_Missing):
    """A gauge over every unit: the largest unit's max, and the sum of the units' maxima."""

    max: int | float
    sum_of_unit_max: int | float


# A trend's merged stats, each None when unknown: exact min, max and count, the count-weighted
# avg and the REPORTED_PERCENTILES (any other "p(N)" a threshold names is there too: a TypedDict
# cannot list those).
_MergedTrendStats = TypedDict(
    "_MergedTrendStats",
    {
        "min": float | None,
        "max": float | None,
        "avg": float | None,
        "count": int | None,
        "p(50)": float | None,
        "p(90)": float | None,
        "p(95)": float | None,
        "p(99)": float | None,
        "p(99.9)": float | None,
    },
)


class MergedTrend(_MergedTrendStats, _Missing, total=False):
    """A trend over every unit: its stats, and each merged percentile's certified rank error."""

    rank_error: dict[str, float]  # "p(N)" -> rank error; absent when no percentile was merged
    count_unknown_units: list[str]  # units without a sample count (no percentile, no avg)


class MergedResult(TypedDict):
    """The merged run result the leader keeps in the last-run record: O(1) in the samples."""

    units_reporting: int  # a count: the record stays O(1) in the units
    units_missing: list[str]  # participants without a summary
    duration_s: float | None
    duration_source: Literal["run", "units"] | None
    counters: dict[str, MergedCounter]
    rates: dict[str, MergedRate]
    trends: dict[str, MergedTrend]
    gauges: dict[str, MergedGauge]
    dropped: dict[str, int | float]  # unit -> metrics `compact` left out


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
        count = as_count(stats.get("count"))
        low, high = as_number(stats.get("min")), as_number(stats.get("max"))
        if not count or low is None or high is None or low > high:
            return None
        points = {0.0: low, 1.0: high}
        grid = stats.get(GRID_KEY)
        if isinstance(grid, list) and len(grid) == len(GRID):
            points.update(
                (f, n) for f, v in zip(GRID, grid, strict=True) if (n := as_number(v)) is not None
            )
        for key, value in stats.items():
            fraction = percentile_fraction(str(key))
            number = as_number(value)
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
        value = round_significant(merged_quantile(distributions, fraction))
        key = percentile_key(percent)
        values[key] = value
        errors[key] = round_up(rank_error(distributions, value, fraction))
    return values, errors


def _merge_trend(
    per_unit: Mapping[str, Mapping[str, object]], percents: Iterable[float]
) -> MergedTrend:
    """Merge one trend: exact min, max, count, weighted avg; percentiles from the units' points."""
    # A trend with count 0 exists only because a threshold names it; k6 writes zeros for it.
    sampled = {u: s for u, s in per_unit.items() if s.get("count") != 0}
    unknown = [u for u, s in sampled.items() if as_count(s.get("count")) is None]
    mins = [n for s in sampled.values() if (n := as_number(s.get("min"))) is not None]
    maxes = [n for s in sampled.values() if (n := as_number(s.get("max"))) is not None]
    avgs = {u: n for u, s in sampled.items() if (n := as_number(s.get("avg"))) is not None}
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
        return cast(MergedTrend, merged)
    counts = {u: as_count(s.get("count")) or 0 for u, s in sampled.items()}
    total = exact_sum(counts.values())
    merged["count"] = total
    if total and len(avgs) == len(sampled):
        merged["avg"] = round_significant(math.fsum(avgs[u] * counts[u] for u in sampled) / total)
    distributions = [d for s in sampled.values() if (d := Distribution.from_compact(s))]
    if total and len(distributions) == len(sampled):
        values, errors = merge_percentiles(distributions, percents)
        merged.update(values)
        merged["rank_error"] = errors
    return cast(MergedTrend, merged)


def _merge_counter(per_unit: Mapping[str, int | float], duration_s: float | None) -> MergedCounter:
    """A counter's exact sum and its per-second rate over `duration_s` (None when unknown)."""
    count = exact_sum(per_unit.values())
    rate = round_significant(count / duration_s) if duration_s and duration_s > 0 else None
    return {"count": count, "rate": rate}


def _merge_rate(per_unit: Mapping[str, Mapping[str, object]]) -> MergedRate:
    """A Rate metric's summed passes and fails, and their rate (None without samples)."""
    passes = exact_sum(as_number(e.get("passes")) or 0 for e in per_unit.values())
    fails = exact_sum(as_number(e.get("fails")) or 0 for e in per_unit.values())
    total = passes + fails
    return {"passes": passes, "fails": fails, "rate": passes / total if total else None}


def _merge_gauge(per_unit: Mapping[str, int | float]) -> MergedGauge:
    """A gauge's largest unit max, and the sum of the units' maxima."""
    return {"max": max(per_unit.values()), "sum_of_unit_max": exact_sum(per_unit.values())}


_Metric = TypeVar("_Metric")
_Merged = TypeVar("_Merged", MergedCounter, MergedRate, MergedGauge, MergedTrend)


def _by_metric(
    summaries: Mapping[str, Mapping[str, object]],
    section: str,
    read: Callable[[object], Mapping[str, _Metric]],
) -> dict[str, dict[str, _Metric]]:
    """Name -> unit -> entry of one section over every summary, in the summaries' order."""
    found: dict[str, dict[str, _Metric]] = {}
    for unit, summary in summaries.items():
        for name, entry in read(summary.get(section)).items():
            found.setdefault(name, {})[unit] = entry
    return found


def _noting_missing(merged: _Merged, present: Collection[str], units: Iterable[str]) -> _Merged:
    """`merged` with "missing_from": the reporting units not in `present`, when there are any."""
    missing = [u for u in units if u not in present]
    if missing:
        merged["missing_from"] = missing
    return merged


def _run_duration(
    duration_s: float | None, summaries: Mapping[str, Mapping[str, object]]
) -> tuple[float | None, Literal["run", "units"] | None]:
    """The run's duration and where it comes from: the run, else the longest unit's own."""
    if duration_s is not None:
        return duration_s, "run"
    durations = [n for s in summaries.values() if (n := as_number(s.get("duration_s")))]
    return (max(durations), "units") if durations else (None, None)


def aggregate(
    per_unit: Mapping[str, Mapping[str, object] | None],
    duration_s: float | None,
    thresholds: Sequence[Threshold] = (),
) -> MergedResult:
    """Merge every unit's compact summary into one run result, O(1) in the number of samples.

    Counters are summed exactly and their per-second rate recomputed from `duration_s` (or, when
    it is None, the longest unit's own duration; no rate when neither is known or it is 0). Rate
    metrics merge passes and fails. For `http_req_failed` k6 adds `true` for a *failed* request,
    so its passes are the failed requests and its "rate" is the error rate, as k6 prints it.
    Trends get exact min/max/count, a count-weighted avg and merged percentiles (REPORTED_
    PERCENTILES plus those `thresholds` name), each with its certified rank error. Nothing per
    unit is copied in: the units' own numbers stay in their summaries.

    A merged percentile is None (and "rank_error" absent) when some unit's sample count is
    unknown ("count_unknown_units": [unit], avg None too unless a single unit reported) or no
    unit has samples. A metric that some reporting units lack also has "missing_from": [unit].
    """
    units = sorted(per_unit, key=unit_order)
    summaries = {u: s for u in units if isinstance(s := per_unit[u], Mapping)}
    duration_s, source = _run_duration(duration_s, summaries)
    counters = _by_metric(summaries, "counters", as_numbers)
    rates = _by_metric(summaries, "rates", as_mappings)
    trends = _by_metric(summaries, "trends", as_mappings)
    gauges = _by_metric(summaries, "gauges", as_numbers)
    needed = threshold_percents(thresholds)
    return {
        "units_reporting": len(summaries),  # a count: the record stays O(1) in the units
        "units_missing": [u for u in units if u not in summaries],
        "duration_s": duration_s,
        "duration_source": source,
        "counters": {
            name: _noting_missing(_merge_counter(values, duration_s), values, summaries)
            for name, values in sorted(counters.items())
        },
        "rates": {
            name: _noting_missing(_merge_rate(entries), entries, summaries)
            for name, entries in sorted(rates.items())
        },
        "trends": {
            name: _noting_missing(
                _merge_trend(entries, {*REPORTED_PERCENTILES, *needed.get(name, ())}),
                entries,
                summaries,
            )
            for name, entries in sorted(trends.items())
        },
        "gauges": {
            name: _noting_missing(_merge_gauge(values), values, summaries)
            for name, values in sorted(gauges.items())
        },
        "dropped": {u: n for u, s in summaries.items() if (n := as_number(s.get("dropped")))},
    }
