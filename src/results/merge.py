"""The merge: every unit's compact summary into one run result, percentiles with a rank bound.

Counters and rates sum exactly; trends merge through each unit's k6 percentiles on the GRID, each
merged percentile certified by a rank error (results.quantiles, docs/results.md). The result's
shape: `MergedResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Literal, TypedDict, TypeVar, cast

from charms.k6_k8s.v0.synchronized_task import unit_order

from results._numbers import (
    as_count,
    as_mappings,
    as_number,
    as_numbers,
    exact_sum,
    percentile_key,
    round_significant,
)
from results.quantiles import trend_percentiles, trend_points
from results.thresholds import Threshold, threshold_percents

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


def _merge_trend(
    per_unit: Mapping[str, Mapping[str, object]], percents: Iterable[float]
) -> MergedTrend:
    """Merge one trend: exact min, max, count, weighted avg; percentiles from the units' points."""
    # A trend with count 0 exists only because a threshold names it; k6 writes zeros for it.
    sampled = {u: s for u, s in per_unit.items() if s.get("count") != 0}
    # Each unit's count, min, max and avg, read once.
    read = [
        (as_count(s.get("count")), as_number(s.get("min")), as_number(s.get("max")))
        for s in sampled.values()
    ]
    counts = [count for count, _, _ in read]
    unknown = [u for u, count in zip(sampled, counts, strict=True) if count is None]
    mins = [low for _, low, _ in read if low is not None]
    maxes = [high for _, _, high in read if high is not None]
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
    total = exact_sum(count or 0 for count in counts)
    merged["count"] = total
    if total and len(avgs) == len(sampled):
        weighted = (avgs[u] * (count or 0) for u, count in zip(sampled, counts, strict=True))
        merged["avg"] = round_significant(math.fsum(weighted) / total)
    points = [p for s, r in zip(sampled.values(), read, strict=True) if (p := trend_points(s, *r))]
    if total and len(points) == len(sampled):
        values, errors = trend_percentiles(points, percents)
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
