"""The report: what the leader records and shows of a run, from the merged result.

Each unit's short line, the results table, the status headline, and `aggregate_run`, the
library's aggregate callback that puts the merge, the thresholds' verdict and these together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from charms.k6_k8s.v0.synchronized_task import Aggregate, Run, UnitReport, unit_order

from results import merge
from results._numbers import (
    as_mappings,
    as_number,
    as_numbers,
    fmt,
    percentile_fraction,
    percentile_key,
    rank_text,
)
from results.summary import GRID, GRID_KEY, TIME_TRENDS
from results.thresholds import Threshold, evaluate, parse_thresholds, script_thresholds


def _unit_percentile(stats: Mapping[str, object], fraction: float) -> int | float | None:
    """A unit's own k6 percentile from its compact trend (named, or in the grid)."""
    for key, value in stats.items():
        if percentile_fraction(str(key)) == fraction and (n := as_number(value)) is not None:
            return n
    grid = stats.get(GRID_KEY)
    if isinstance(grid, list) and len(grid) == len(GRID) and fraction in GRID:
        return as_number(grid[GRID.index(fraction)])
    return None


def unit_line(summary: Mapping[str, object] | None) -> dict[str, int | float | None]:
    """One unit's short line for the last-run record: what its row of the results table shows.

    `{"requests": http_reqs, "iterations": iterations, "failed": failed requests, "p95":
    its own http_req_duration p(95) in ms}`, each None when the unit did not report it.
    """
    summary = summary if isinstance(summary, Mapping) else {}
    counters = as_numbers(summary.get("counters"))
    failed = as_mappings(summary.get("rates")).get("http_req_failed", {})
    duration = as_mappings(summary.get("trends")).get("http_req_duration", {})
    return {
        "requests": counters.get("http_reqs"),
        "iterations": counters.get("iterations"),
        "failed": as_number(failed.get("passes")),  # k6 counts a failed request as a pass
        "p95": _unit_percentile(duration, 0.95),
    }


def _fmt_value(value: object) -> str:
    """A merged trend value for reading: 12.1, 120.3, 0.302, 3.77 ("-" when unknown)."""
    number = as_number(value)
    if number is None:
        return "-"
    return f"{number:.1f}" if abs(number) >= 10 else f"{number:.3g}"


def _failed_requests(entry: Mapping[str, object]) -> tuple[float | None, float | None]:
    """(failed, total) requests from an http_req_failed entry: k6 counts a failure as a pass."""
    passes, fails = as_number(entry.get("passes")), as_number(entry.get("fails"))
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
    requests = as_number(line.get("requests"))
    return (
        unit,
        exit_cell,
        fmt(requests),
        fmt(line.get("iterations")),
        _percent(as_number(line.get("failed")), requests),
        fmt(line.get("p95"), ".2f"),
    )


_LINE_PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (95.0, "p95"), (99.0, "p99"), (99.9, "p99.9"))


def _trend_line(name: str, width: int, entry: Mapping[str, object]) -> str:
    """`http_req_duration  p50 12.1  p90 30.2 ... max 120.3 ms  (±0.52 % rank)`."""
    cells = [
        f"{label} {_fmt_value(entry.get(percentile_key(p)))}" for p, label in _LINE_PERCENTILES
    ]
    unit = " ms" if name.split("{")[0] in TIME_TRENDS else ""
    cells.append(f"max {_fmt_value(entry.get('max'))}{unit}")
    errors = as_numbers(entry.get("rank_error"))
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
    counters = as_mappings(aggregate.get("counters"))
    requests = counters.get("http_reqs", {})
    rates = as_mappings(aggregate.get("rates"))
    failed, total = _failed_requests(rates.get("http_req_failed", {}))
    trends = as_mappings(aggregate.get("trends"))
    totals = (
        "TOTAL",
        "",
        fmt(requests.get("count")),
        fmt(counters.get("iterations", {}).get("count")),
        _percent(failed, total),
        fmt(trends.get("http_req_duration", {}).get("p(95)"), ".2f"),
    )
    widths = [max(len(row[i]) for row in (header, *rows, totals)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    duration = as_number(aggregate.get("duration_s"))
    lines = [line(header), rule, *(line(row) for row in rows), rule, line(totals)]
    over = "duration unknown" if duration is None else f"over {fmt(duration)} s"
    lines.append(f"req/s: {fmt(requests.get('rate'), '.2f')} ({over})")
    lines.append(
        f"error rate: {_percent(failed, total)} ({fmt(failed)} of {fmt(total)} requests failed)"
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
    errors = as_numbers(entry.get("rank_error"))
    shown = [errors.get(percentile_key(p)) for p, _ in _LINE_PERCENTILES]
    return all(e is None or e <= TABLE_RANK_ERROR for e in shown)


def headline(aggregate: Mapping[str, object]) -> str:
    """One line for the app status: the merged p95 of http_req_duration with its bound."""
    entry = as_mappings(aggregate.get("trends")).get("http_req_duration", {})
    p95 = as_number(entry.get(percentile_key(95.0)))
    if p95 is None:
        return ""
    error = as_numbers(entry.get("rank_error")).get(percentile_key(95.0))
    return f"p95 {_fmt_value(p95)} ms ({rank_text(error)})"


THRESHOLDS_FAILED = "thresholds failed"  # how the failure of the run's thresholds starts


def run_thresholds(run: Run) -> tuple[list[Threshold], list[Threshold]]:
    """The run's thresholds: the charm's (config or action) and the script's own."""
    return parse_thresholds(str(run.info.get("thresholds", ""))), script_thresholds(run.prepared)


def aggregate_run(run: Run, reports: Mapping[str, UnitReport], ended: float) -> Aggregate:
    """The library's aggregate callback: merge the units' summaries, judge the run's thresholds.

    The script's own thresholds are judged as one `k6 run` judges them (`like_k6`), the charm's
    strictly (a metric nobody measured fails).
    """
    summaries = {p: (r.result or {}).get("summary") for p, r in reports.items()}
    started = run.started
    charm, script = run_thresholds(run)
    duration = ended - started if started else None
    merged = merge.aggregate(summaries, duration, [*charm, *script])
    failures = evaluate(merged, charm) + evaluate(merged, script, like_k6=True)
    lines = {
        p: {**unit_line(summaries[p]), "report": bool((r.result or {}).get("report"))}
        for p, r in reports.items()
    }
    return Aggregate(
        data=merged,
        failures=[f"{THRESHOLDS_FAILED}: " + "; ".join(failures)] if failures else [],
        lines=lines,
        headline=headline(merged),
    )
