"""Arithmetic on k6 results: shrink one unit's summary export, merge all units, judge thresholds.

Pure data in, pure data out (stdlib, and the library's unit order); every dict produced here is
JSON-serializable. Trends merge through k6's own percentiles on a fixed grid, with a certified
rank error: docs/results.md. One job per module:

- `results.summary`: one unit's summary (`trend_stats` for k6, `compact` for its databag);
- `results.merge`: every unit's summary into one result (`aggregate`), its trends' percentiles
  merged by `results.quantiles` (`Distribution`, `merged_quantile`, `rank_error`);
- `results.thresholds`: k6's threshold syntax, judged on the merge (`parse_thresholds`,
  `evaluate`);
- `results.report`: what the leader records and shows (`aggregate_run`, the library's
  aggregate callback; `unit_line`, `format_table`, `headline`).
"""

from results._numbers import SIGNIFICANT_DIGITS, percentile_key, rank_text
from results.merge import (
    REPORTED_PERCENTILES,
    MergedCounter,
    MergedGauge,
    MergedRate,
    MergedResult,
    MergedTrend,
    aggregate,
)
from results.quantiles import (
    VALUE_TOLERANCE,
    Distribution,
    merge_percentiles,
    merged_quantile,
    rank_error,
)
from results.report import (
    TABLE_RANK_ERROR,
    THRESHOLDS_FAILED,
    aggregate_run,
    format_table,
    headline,
    run_thresholds,
    unit_line,
)
from results.summary import (
    CORE_METRICS,
    GRID,
    GRID_DIGITS,
    GRID_KEY,
    GRID_PERCENTS,
    GRID_STEPS,
    MAX_COMPACT_BYTES,
    TREND_STATS,
    CompactSummary,
    CompactTrend,
    FullTrend,
    RateCounts,
    SmallTrend,
    compact,
    trend_stats,
)
from results.thresholds import (
    THRESHOLD_STATS,
    Threshold,
    evaluate,
    parse_thresholds,
    script_thresholds,
)

__all__ = [
    "CORE_METRICS",
    "GRID",
    "GRID_DIGITS",
    "GRID_KEY",
    "GRID_PERCENTS",
    "GRID_STEPS",
    "MAX_COMPACT_BYTES",
    "REPORTED_PERCENTILES",
    "SIGNIFICANT_DIGITS",
    "TABLE_RANK_ERROR",
    "THRESHOLDS_FAILED",
    "THRESHOLD_STATS",
    "TREND_STATS",
    "VALUE_TOLERANCE",
    "CompactSummary",
    "CompactTrend",
    "Distribution",
    "FullTrend",
    "MergedCounter",
    "MergedGauge",
    "MergedRate",
    "MergedResult",
    "MergedTrend",
    "RateCounts",
    "SmallTrend",
    "Threshold",
    "aggregate",
    "aggregate_run",
    "compact",
    "evaluate",
    "format_table",
    "headline",
    "merge_percentiles",
    "merged_quantile",
    "parse_thresholds",
    "percentile_key",
    "rank_error",
    "rank_text",
    "run_thresholds",
    "script_thresholds",
    "trend_stats",
    "unit_line",
]
