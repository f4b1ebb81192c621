"""Merged percentiles of one trend: the units' k6 percentiles into one, with a rank bound.

Each unit's compact trend is a `Distribution` (its points); `merged_quantile` is the union's
quantile they imply and `rank_error` certifies it (docs/results.md). Pure stdlib, no sorting of
the units' points: a merge at N = 300 stays within one leader hook's budget (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress, islice, repeat
from operator import getitem, gt, itemgetter, le, mul, not_, sub

from results._numbers import (
    as_count,
    as_number,
    percentile_fraction,
    percentile_key,
    round_significant,
    round_up,
)
from results.summary import GRID, GRID_KEY

# What storing GRID_DIGITS costs the guarantee: every stored value is within this share of itself
# of k6's exact value (rho / (1 - rho) = 5.00025e-5 for rho = 5e-5, plus k6's last float bit), so
# the certified rank error of a merged percentile x counts the samples <= x + VALUE_TOLERANCE * |x|
# and < x - VALUE_TOLERANCE * |x|: a sample closer to x than that may be on the other side
# (docs/results.md, "What the certificate says").
VALUE_TOLERANCE = 5.0003e-5

# One unit's trend as points of its CDF: (sample count, fractions, values), Distribution's fields.
Points = tuple[int, tuple[float, ...], tuple[float, ...]]
# The fractions of a full trend's points: min, the GRID, max.
_FULL_FRACTIONS: tuple[float, ...] = (0.0, *GRID, 1.0)


@lru_cache(maxsize=256)
def _layout(keys: tuple[object, ...]) -> tuple[tuple[object, ...], tuple[float, ...]] | None:
    """A compact trend's percentile keys in rising order, and its fractions (0 and 1 around).

    None when two keys name one fraction: only `_repaired` knows which of them counts.
    """
    by_fraction: dict[float, object] = {}
    for key in keys:
        fraction = percentile_fraction(str(key))
        if fraction is not None and 0 < fraction < 1:
            if fraction in by_fraction:
                return None
            by_fraction[fraction] = key
    order = sorted(by_fraction)
    return tuple(by_fraction[f] for f in order), (0.0, *order, 1.0)


def _in_order(low: float, values: list[object], high: float) -> bool:
    """Every value a finite number within [low, high], none below the one before it.

    For values as JSON gives them: numbers, strings, null, lists, objects and booleans.
    """
    try:
        if not math.isfinite(sum(values)):  # type: ignore[arg-type]
            return False
    except (TypeError, OverflowError):  # not a number, or an int too large for a float
        return False
    if not (low <= values[0] and values[-1] <= high and sorted(values) == values):  # type: ignore
        return False
    # A boolean sums and sorts as 0 or 1: it can only be among the values equal to those.
    first, last = bisect_left(values, 0), bisect_right(values, 1)  # type: ignore[arg-type]
    return first == last or bool not in map(type, islice(values, first, last))


def _repaired(stats: Mapping[str, object], count: int, low: float, high: float) -> Points:
    """The points of any compact trend: its grid and named percentiles, made non-decreasing."""
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
    return count, fractions, tuple(values)


def trend_points(
    stats: Mapping[str, object], count: int | None, low: float | None, high: float | None
) -> Points | None:
    """The points of a compact trend with these count, min and max (Distribution.from_compact)."""
    if not count or low is None or high is None or low > high:
        return None
    layout = _layout(tuple(stats))
    grid = stats.get(GRID_KEY)
    if layout is not None and isinstance(grid, list) and len(grid) == len(GRID):
        if not layout[0] and _in_order(low, grid, high):  # a full trend, as compact writes it
            return count, _FULL_FRACTIONS, (low, *grid, high)
    elif layout is not None:  # a small trend
        keys, fractions = layout
        named = [stats[key] for key in keys]  # type: ignore[index]
        if not named or _in_order(low, named, high):
            return count, fractions, (low, *named, high)  # type: ignore[arg-type]
    # A damaged or unusual trend (a value missing, out of order, a key named twice).
    return _repaired(stats, count, low, high)


def _mid_rank(
    values: Sequence[float], fractions: Sequence[float], count: int, j: int, x: float
) -> float:
    """c(x) on piece j of a unit's points, values[j - 1] <= x <= values[j] (0 < j < len)."""
    low, high = values[j - 1], values[j]
    fraction = fractions[j - 1] + (fractions[j] - fractions[j - 1]) * (x - low) / (high - low)
    return (count - 1) * fraction + 0.5


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
        with a rank error that says how coarse it is. Values out of order (a damaged databag)
        are raised to the one before them and kept within [min, max].
        """
        count = as_count(stats.get("count"))
        points = trend_points(
            stats, count, as_number(stats.get("min")), as_number(stats.get("max"))
        )
        return None if points is None else cls(*points)

    def mid_rank(self, x: float, *, left: bool = False) -> float:
        """c(x): samples at or below x, estimated; `left=True` gives the limit from below.

        c(x) = (n - 1) F(x) + 1/2 inside [min, max), 0 below min, n from max on, where F is the
        piecewise-linear CDF through the points: the mid-rank k6's own interpolation implies.
        """
        values = self.values
        if (x <= values[0]) if left else (x < values[0]):
            return 0.0
        if (x > values[-1]) if left else (x >= values[-1]):
            return float(self.count)
        j = bisect_left(values, x) if left else bisect_right(values, x)
        # left: values[j-1] < x <= values[j]; right: values[j-1] <= x < values[j]; 1 <= j <= m.
        return _mid_rank(values, self.fractions, self.count, j, x)

    def count_bounds(self, x: float) -> tuple[int, int]:
        """(at least this many samples are <= x, at most this many are < x): exact for k6 data.

        k6's p(q) lies between the sorted samples s[floor(i)] and s[ceil(i)], i = q * (n - 1)
        computed in floats exactly as here. So a point q with value <= x puts floor(i) + 1
        samples at or below x; a point with value >= x leaves at most ceil(i) samples below x.
        """
        values = self.values
        unit = _Units([(self.count, self.fractions, values)])
        return _count_bounds(unit, [bisect_right(values, x)], [bisect_left(values, x)])


def _count_bounds(
    units: _Units, at_or_below: Iterable[int], above: Iterable[int]
) -> tuple[int, int]:
    """Distribution.count_bounds summed over the units, from where x falls in each one's points.

    For each unit: the number of its points at or below x (`bisect_right`) and the index of its
    first point at or above x (`bisect_left`). Summed in C loops: a unit with no point at or
    below x reads its last fraction (1.0: n samples) and is taken back; one with no point
    at or above x reads it too (n - 1 samples below) and gets its last sample back.
    """
    n1, fractions, ends = units.n1, units.fractions, units.ends
    at_or_below, above = list(at_or_below), list(above)
    last_at_or_below = map(getitem, fractions, map(sub, at_or_below, repeat(1)))
    low = sum(map(math.floor, map(mul, last_at_or_below, n1))) + len(n1)
    low -= sum(compress(units.counts, map(not_, at_or_below)))
    first_at_or_above = map(getitem, fractions, map(min, above, ends))
    high = sum(map(math.ceil, map(mul, first_at_or_above, n1))) + sum(map(gt, above, ends))
    return low, high


# A decision C(y) >= target is read from the units' lines when they put C(y) farther from the
# target than _LINE_TOLERANCE * (k + 8) * (N + 2 B M), for k units, B the lines' summed slope
# and M the largest |point|: 100 times what rounding can move either way of computing C (a plain
# sum of k lines, or k terms summed exactly, each within a few float steps: below 1.2e-16 (k + 12)
# (N + 2 B M)). Closer than that, C(y) is summed exactly: every decision is the exact sums' own.
_LINE_TOLERANCE = 3e-14


class _Cell:
    """Every unit's piece of its points around a probe x, and C on the cell [d, u) around x.

    d is the last point at or below x, u the next point of any unit. On the cell each unit's
    c_i is a line, so C(y) = A + B y there, up to rounding that `tolerance` bounds.
    """

    def __init__(self, units: _Units) -> None:
        self.units = units
        size = len(units.counts)
        self.piece = [0] * size  # j: values[j - 1] <= x < values[j]
        self.low = [math.inf] * size  # values[j - 1] (-inf below min): no piece holds x yet
        self.high = [-math.inf] * size  # values[j] (+inf from max on)
        self.intercept = [0.0] * size  # c_i(y) = intercept + slope * y on the piece
        self.slope = [0.0] * size
        self.line = (math.nan, math.nan)  # A, B
        self.tolerance = math.nan
        self.x: float | None = None  # the last probe
        self.bounds = (math.nan, math.nan)  # its cell (d, u)

    def move(self, x: float) -> tuple[float, float]:
        """Put every unit on its piece holding x (re-reading only those that left it); (d, u)."""
        if self.bounds[0] <= x < self.bounds[1]:
            return self.bounds  # the same cell: the same pieces
        low, high = self.low, self.high
        if self.x is None:  # every unit
            self._read(range(len(low)), x)
        elif x > self.x:  # the units whose piece ends at or before x
            self._read(compress(range(len(high)), map(le, high, repeat(x))), x)
        elif x < self.x:  # the units whose piece starts after x
            self._read(compress(range(len(low)), map(gt, low, repeat(x))), x)
        self.x = x
        self.line = sum(self.intercept), sum(self.slope)  # inf or nan: a piece too narrow
        units = self.units
        scale = units.total + 2 * self.line[1] * units.magnitude
        self.tolerance = _LINE_TOLERANCE * (len(low) + 8) * scale
        self.bounds = max(low), min(high)  # each the first unit's in unit order, as a set keeps it
        return self.bounds

    def _read(self, moved: Iterable[int], x: float) -> None:
        """Put these units on their piece holding x."""
        all_values, all_fractions, counts = (
            self.units.values,
            self.units.fractions,
            self.units.counts,
        )
        piece, low, high, intercept, slope = (
            self.piece,
            self.low,
            self.high,
            self.intercept,
            self.slope,
        )
        for i in moved:
            values = all_values[i]
            j = piece[i] = bisect_right(values, x)
            if 0 < j < len(values):
                fractions, n1 = all_fractions[i], counts[i] - 1
                below, above, at_below = values[j - 1], values[j], fractions[j - 1]
                rise = slope[i] = n1 * (fractions[j] - at_below) / (above - below)
                intercept[i] = n1 * at_below + 0.5 - rise * below
                low[i], high[i] = below, above
            elif j:  # from max on
                low[i], high[i], intercept[i], slope[i] = values[-1], math.inf, counts[i], 0.0
            else:  # below min
                low[i], high[i], intercept[i], slope[i] = -math.inf, values[0], 0.0, 0.0

    def reaches(self, y: float, target: float) -> bool:
        """C(y) >= target, y a point of the cell: from the line unless too close to call."""
        intercept, slope = self.line
        estimate = intercept + slope * y
        if estimate - target > self.tolerance:
            return True
        if target - estimate > self.tolerance:
            return False
        return self.exact(y) >= target

    def exact(self, y: float) -> float:
        """C(y) as merged_quantile sums it, y in the cell or at its end (the limit from below)."""
        units = self.units
        return math.fsum(
            0.0
            if j == 0
            else float(count)
            if j == len(values)
            else _mid_rank(values, fractions, count, j, y)
            for values, fractions, count, j in zip(
                units.values, units.fractions, units.counts, self.piece, strict=True
            )
        )

    def interpolate(self, start: float, end: float, target: float) -> float:
        """merged_quantile's value on the cell [start, end): exact sums of C at both ends."""
        at_start, before_end = self.exact(start), self.exact(end)
        if before_end < target or before_end <= at_start:
            return end  # C jumps over the target at `end` (ties in some unit, or its min/max)
        x = start + (end - start) * (target - at_start) / (before_end - at_start)
        return min(max(x, start), end)

    def rounded(self, start: float, end: float, target: float) -> float | None:
        """round_significant(interpolate(...)) from the line, or None when it is not certain.

        The line puts C(start) and C(end) within `tolerance` of the exact sums; the value they
        give moves by at most the slack below, so when both ends of that range round alike,
        the exact value rounds the same (rounding never decreases).
        """
        intercept, slope = self.line
        at_start, before_end = intercept + slope * start, intercept + slope * end
        tolerance = self.tolerance
        if before_end + tolerance < target:
            return round_significant(end)
        if not at_start + tolerance < target <= before_end - tolerance:
            return None  # too close to call (or no usable line)
        rise = before_end - at_start
        x = start + (end - start) * (target - at_start) / rise
        slack = (end - start) * tolerance / rise + 1e-13 * (abs(start) + abs(end))
        low, high = x - slack, x + slack  # not at an end, where clamping could return `end`
        certain = start < low and high < end and round_significant(low) == round_significant(high)
        return round_significant(low) if certain else None

    def count_bounds(self) -> tuple[int, int]:
        """Summed Distribution.count_bounds(x) for any x strictly inside the cell."""
        return _count_bounds(self.units, self.piece, self.piece)


class _Units:
    """The units of one trend as parallel lists: what each merged percentile searches."""

    def __init__(self, points: Iterable[Points]) -> None:
        counts, fractions, values = zip(*points, strict=True)
        self.counts: list[int] = list(counts)
        self.fractions: list[tuple[float, ...]] = list(fractions)
        self.values: list[tuple[float, ...]] = list(values)
        self.total = sum(counts)
        self.n1 = list(map(sub, map(float, counts), repeat(1.0)))  # as count_bounds multiplies
        self.ends = list(map(sub, map(len, values), repeat(1)))  # each one's last point
        self.first = min(map(itemgetter(0), values))  # the first unit's, in unit order
        self.last = max(map(itemgetter(-1), values))
        self.magnitude = max(abs(self.first), abs(self.last))
        shared = fractions[0]  # every unit's fractions, when they are the same (all gridded)
        self.shared = shared if fractions.count(shared) == len(fractions) else None

    @classmethod
    def of(cls, distributions: Iterable[Distribution]) -> _Units:
        """The units of these distributions."""
        return cls((d.count, d.fractions, d.values) for d in distributions)

    def guess(self, fraction: float) -> float:
        """Where the `fraction` quantile should be: the units' own, weighted by their counts."""
        if self.shared is not None:  # every unit has these fractions (every one gridded)
            own = map(itemgetter(bisect_left(self.shared, fraction)), self.values)
        else:
            own = map(getitem, self.values, map(bisect_left, self.fractions, repeat(fraction)))
        try:
            return math.fsum(map(mul, self.counts, own)) / self.total
        except (OverflowError, ValueError):  # values near the largest float
            return math.nan

    def search(
        self, fraction: float, cell: _Cell | None = None
    ) -> tuple[float | None, float, _Cell, float]:
        """(start, end, the cell [start, end), target) of merged_quantile; start None: end first.

        Finds the points a binary search over all of them would (C(start) < target <= C(end),
        consecutive; the same ones while the exact sums of C never decrease from one point to
        the next), without sorting them: a probe x gives the cell [d, u) around it, C(d)
        and C(u) narrow [low, high], the points that can still be `end`, and Newton's step on
        the cell's line picks the next probe. Near the answer few units change piece; a `cell`
        left by another percentile of the trend is a start (only the units whose piece differs
        are read again).
        """
        target = fraction * (self.total - 1) + 0.5
        cell = cell or _Cell(self)
        start: float | None = None  # the last point known to have C < target
        low, high = self.first, self.last  # C(last) = N >= target
        x = self.guess(fraction)
        while low < high:
            if not low <= x < high:  # Newton left [low, high), or there was no slope
                x = low + (high - low) / 2
                x = x if low <= x < high else low
            d, u = cell.move(x)
            intercept, slope = cell.line
            if cell.reaches(d, target):
                high = d
            else:
                start, low = d, u
                if intercept + slope * u - target > cell.tolerance:  # C(u-) >= target
                    high = u
            x = (target - intercept) / slope if slope > 0 else math.nan
        if start is None:
            return None, self.first, cell, target  # C(first) >= target
        start, end = cell.move(start)  # `end` as a set of the points keeps it: its first copy
        return start, end, cell, target

    def quantile(self, fraction: float) -> float:
        """merged_quantile."""
        start, end, cell, target = self.search(fraction)
        return end if start is None else cell.interpolate(start, end, target)

    def percentile(self, fraction: float, cell: _Cell) -> tuple[float, float]:
        """merged_quantile rounded to SIGNIFICANT_DIGITS, and that value's rank_error."""
        start, end, cell, target = self.search(fraction, cell)
        if start is None:
            return round_significant(end), self.rank_error(end, fraction)
        value = cell.rounded(start, end, target)
        if value is None:
            value = round_significant(cell.interpolate(start, end, target))
        inside = cell if start < value < end else None
        return value, self.rank_error(value, fraction, inside)

    def rank_error(self, x: float, fraction: float, cell: _Cell | None = None) -> float:
        """rank_error; from the cell's pieces when given (x strictly inside it)."""
        if cell is not None:
            at_or_below, below = cell.count_bounds()
        else:
            at_or_below, below = _count_bounds(
                self,
                map(bisect_right, self.values, repeat(x)),
                map(bisect_left, self.values, repeat(x)),
            )
        total = self.total
        return max(fraction - at_or_below / total, below / total - fraction, 0.0)


def rank_error(distributions: Sequence[Distribution], x: float, fraction: float) -> float:
    """The certified rank error of x as the `fraction` quantile of the union of the units.

    With G(x) = share of all samples <= x and G-(x) = share < x, the result e guarantees
    G(x') >= fraction - e and G-(x'') <= fraction + e (docs/results.md, Theorem 1) for
    x' = x + VALUE_TOLERANCE * |x| and x'' = x - VALUE_TOLERANCE * |x|; at x itself when the
    points are k6's exact values.
    """
    return _Units.of(distributions).rank_error(x, fraction)


def merged_quantile(distributions: Sequence[Distribution], fraction: float) -> float:
    """The `fraction` quantile (0..1) of the union of the units' samples, from their points.

    The smallest x whose summed mid-rank C(x) = sum of c_i(x) reaches fraction * (N - 1) + 1/2,
    the position k6 would interpolate at in the union: exact on C's piecewise-linear pieces,
    independent of the units' order. With one unit it is that unit's own interpolation.
    """
    return _Units.of(distributions).quantile(fraction)


def trend_percentiles(
    points: Iterable[Points], percents: Iterable[float]
) -> tuple[dict[str, float], dict[str, float]]:
    """merge_percentiles over the units' points (`trend_points`) of one trend."""
    units = _Units(points)
    cell = _Cell(units)  # each percentile starts where the one below it ended
    values: dict[str, float] = {}
    errors: dict[str, float] = {}
    for percent in sorted(set(percents)):
        value, error = units.percentile(percent / 100, cell)
        key = percentile_key(percent)
        values[key] = value
        errors[key] = round_up(error)
    return values, errors


def merge_percentiles(
    distributions: Sequence[Distribution], percents: Iterable[float]
) -> tuple[dict[str, float], dict[str, float]]:
    """({"p(95)": merged value}, {"p(95)": rank error}) for each percent (0..100).

    Each value is rounded to SIGNIFICANT_DIGITS first and its rank error certified for the
    rounded value itself, then rounded up to 3 significant digits.
    """
    return trend_percentiles(((d.count, d.fractions, d.values) for d in distributions), percents)
