"""Inputs for the results tests: real k6 summary exports, and trends built as k6 builds them.

Real k6 v1.1.0 summary exports live in tests/unit/data/ next to the scripts that produced them.
`k6_percentile` is k6's TrendSink.P, checked bit for bit against the real binary
(docs/results.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import results

DATA = Path(__file__).resolve().parents[1] / "unit" / "data"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def split_compacts() -> dict[str, dict]:
    """The three units of one real run split with --execution-segment (iterations 4, 3, 3)."""
    return {unit: results.compact(export) for unit, export in load_split().items()}


def load_split() -> dict[str, dict]:
    return load("summary_split_3_units.json")


def load_grid() -> dict[str, dict]:
    """Two units of one real run with `results.trend_stats()`: cart_time is 1..200 over both."""
    return load("summary_grid_split_2_units.json")


def grid_compacts() -> dict[str, dict]:
    return {unit: results.compact(export) for unit, export in load_grid().items()}


def unit_summary(
    *,
    iterations: int = 0,
    requests: int = 0,
    failed: int = 0,
    duration: dict | None = None,
    duration_s: float | None = None,
) -> dict:
    """A compact summary as compact() returns it, built by hand."""
    summary: dict = {
        "duration_s": duration_s,
        "counters": {"iterations": iterations, "http_reqs": requests},
        "rates": {"http_req_failed": {"passes": failed, "fails": requests - failed}},
        "trends": {},
        "gauges": {},
        "dropped": 0,
    }
    if duration is not None:
        summary["trends"]["http_req_duration"] = duration
    return summary


def k6_percentile(ordered: Sequence[float], fraction: float) -> float:
    """k6's TrendSink.P: interpolate the sorted samples at position fraction * (n - 1)."""
    if len(ordered) == 1:
        return ordered[0]
    position = fraction * (len(ordered) - 1.0)
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    return low + (high - low) * (position - math.floor(position))


def k6_trend(samples: Sequence[float]) -> dict:
    """The trend k6 writes to --summary-export when run with `results.trend_stats()`."""
    ordered = sorted(samples)
    entry = {
        "avg": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "count": len(ordered),
    }
    for percent, fraction in zip(results.GRID_PERCENTS, results.GRID, strict=True):
        entry[f"p({percent})"] = k6_percentile(ordered, fraction)
    return entry


def trend_summary(samples: Sequence[float], name: str = "t") -> dict:
    """A unit's compact summary holding one trend of these samples, through compact()."""
    return results.compact({"metrics": {name: k6_trend(samples)}})


def tiny(samples: Sequence[float]) -> dict:
    """A hand-built compact trend of 1 or 2 samples (all k6 needs: min, max, avg, count)."""
    return {
        "min": min(samples),
        "max": max(samples),
        "avg": sum(samples) / len(samples),
        "count": len(samples),
    }
