"""The leader's tally when every unit has reported: coconuts eaten, shares checked, start skew.

Plain arithmetic on the units' reports (`{"eaten": n, "started": t}`): the library's `aggregate`.
"""

from __future__ import annotations

from collections.abc import Mapping

from charms.k6_k8s.v0.synchronized_task import Aggregate, Run, UnitReport


def start_skew_ms(starts: list[float]) -> float | None:
    """How far apart the units started eating, in milliseconds (None: nobody started)."""
    if not starts:
        return None
    return round((max(starts) - min(starts)) * 1000, 3)


def tally(run: Run, reports: Mapping[str, UnitReport], ended: float) -> Aggregate:
    """Merge the units' counts; a share not eaten exactly once fails the run."""
    requested = int(run.info.get("coconuts", 0))
    results = {unit: report.result or {} for unit, report in reports.items()}
    eaten = {unit: int(result.get("eaten") or 0) for unit, result in results.items()}
    started = {unit: result.get("started") for unit, result in results.items()}
    starts = [float(t) for t in started.values() if t is not None]
    total = sum(eaten.values())
    failures = [
        f"{unit} ate {eaten[unit]} of its {run.share_of(unit).split(requested)}"
        for unit in run.participants
        if unit in eaten and eaten[unit] != run.share_of(unit).split(requested)
    ]
    if total != requested:
        failures.append(f"{total} of {requested} coconuts eaten")
    skew = start_skew_ms(starts)
    late = None
    if starts and run.start_at is not None:
        late = round((max(starts) - run.start_at) * 1000, 3)
    return Aggregate(
        data={
            "requested": requested,
            "eaten": total,
            "start_skew_ms": skew,
            "last_start_after_instant_ms": late,
        },
        failures=failures,
        lines={u: {"eaten": eaten[u], "started": started[u]} for u in reports},
        headline=f"{total}/{requested} coconuts eaten, start skew {skew} ms",
    )
