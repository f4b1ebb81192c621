"""Benchmarks for k6-k8s (`python -m bench [section ...]`, or `tox -e bench`).

Importing this package puts the repository's src/ and lib/ first on sys.path (the charm's
modules, e.g. k6_client, and its charm libraries, e.g. charms.k6_k8s.v0.synchronized_task), so
that `python -m bench` works without PYTHONPATH.
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
