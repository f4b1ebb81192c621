"""Numbers as the results read and write them: JSON numbers, counts, percentile names, rounding.

Shared by every module of the package; nothing here knows k6's metrics or the merge.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal

# Significant digits kept for trend statistics (ms) and durations; counts are never rounded.
SIGNIFICANT_DIGITS = 6

_PERCENTILE_RE = re.compile(r"^p\(\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*\)$")


_FLOAT_MAX = sys.float_info.max


def as_number(value: object) -> int | float | None:
    """A finite JSON number, or None.

    Booleans, strings, NaN, infinities and integers too large for a float are not numbers.
    """
    kind = type(value)
    if kind is float:  # the common cases first: every merge reads thousands
        return value if math.isfinite(value) else None  # type: ignore[arg-type,return-value]
    if kind is int:  # one beyond float range would raise OverflowError in the float maths
        return value if -_FLOAT_MAX <= value <= _FLOAT_MAX else None  # type: ignore[operator]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def round_significant(value: float) -> float:
    """Round a float to SIGNIFICANT_DIGITS; ints stay exact."""
    if isinstance(value, int):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def as_count(value: object) -> int | None:
    """A sample count: a non-negative integral number (k6 writes it as an integer)."""
    number = as_number(value)
    if number is None or number < 0 or not float(number).is_integer():
        return None
    return int(number)


def stat_percent(stat: str) -> float | None:
    """The percent of a `p(<x>)` stat (`med` is 50), or None when it is no percentile."""
    if stat == "med":
        return 50.0
    match = _PERCENTILE_RE.match(stat)
    if match is None:
        return None
    percent = float(match[1])
    return percent if 0 <= percent <= 100 else None


def percentile_fraction(stat: str) -> float | None:
    """The quantile fraction of `p(<x>)` exactly as k6 computes it (x / 100), or of `med`."""
    percent = stat_percent(stat)
    return None if percent is None else percent / 100


def _number_text(value: float) -> str:
    """Shortest plain text of a number: `95`, `99.9`, `0.00001` (a percentile key's number)."""
    return format(Decimal(repr(float(value))).normalize(), "f")


def percentile_key(percent: float) -> str:
    """The aggregate's key of a merged percentile: `p(95)`, `p(99.9)`."""
    return f"p({_number_text(percent)})"


def exact_sum(values: Iterable[int | float]) -> int | float:
    """Exact sum: ints stay ints (Python ints do not overflow), floats go through math.fsum."""
    values = list(values)
    if all(isinstance(v, int) for v in values):
        return sum(values)
    return math.fsum(values)


def as_numbers(section: object) -> dict[str, int | float]:
    """The name -> number items of a compact section (anything else is ignored)."""
    if not isinstance(section, Mapping):
        return {}
    return {k: n for k, v in section.items() if (n := as_number(v)) is not None}


def as_mappings(section: object) -> dict[str, Mapping[str, object]]:
    """The name -> mapping items of a compact section (anything else is ignored)."""
    if not isinstance(section, Mapping):
        return {}
    return {k: v for k, v in section.items() if type(v) is dict or isinstance(v, Mapping)}


def round_up(value: float, digits: int = 3, scale: int = 1) -> float:
    """`value * scale` (non-negative) rounded up to `digits` significant digits, never below."""
    if value <= 0:
        return 0.0
    exact = Decimal(repr(float(value))) * scale  # the decimal that reads back as `value`, scaled
    step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    return float(exact.quantize(step, rounding=ROUND_CEILING))


def fmt(value: object, spec: str = ".6g") -> str:
    """A number formatted with `spec` ("-" when there is none); ints in full, never 1.2e+07."""
    number = as_number(value)
    if number is None:
        return "-"
    return f"{number:d}" if isinstance(number, int) and spec == ".6g" else format(number, spec)


def rank_text(error: object) -> str:
    """`±0.41 % rank`: a rank error (a share, as in "rank_error") in %, rounded up to 2 digits."""
    number = as_number(error)
    if number is None:
        return "rank error unknown"
    percent = round_up(number, 2, scale=100)
    if percent == 0:
        return "±0 % rank"
    decimals = max(0, 1 - math.floor(math.log10(percent)))
    return f"±{percent:.{decimals}f} % rank"
