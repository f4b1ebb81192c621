"""The synchronized-task library as a file: its header, and no k6 in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ops
import pytest
from charms.k6_k8s.v0 import synchronized_task as lib

# ============================================================ a library with no k6 in it


COPYRIGHT = "Copyright 2026 k6-k8s contributors"


def test_the_library_imports_nothing_of_k6_and_names_k6_only_in_its_own_import_path():
    code = (
        "import sys, charms.k6_k8s.v0.synchronized_task; "
        "print(sorted(m for m in sys.modules if 'k6' in m.lower()))"
    )
    lib_dir = Path(lib.__file__).resolve().parents[3]

    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(lib_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert (
        out.strip()
        == "['charms.k6_k8s', 'charms.k6_k8s.v0', 'charms.k6_k8s.v0.synchronized_task']"
    )
    text = Path(lib.__file__).read_text()
    assert text.startswith(f"# {COPYRIGHT}\n")
    text = text.replace(COPYRIGHT, "").replace("charms.k6_k8s.v0.synchronized_task", "")
    assert "k6" not in text.lower()


def test_the_library_header_is_one_charmcraft_reads_with_a_minimum_ops_it_runs_on():
    charmlibs = pytest.importorskip("charmcraft.utils.charmlibs")
    requirement = pytest.importorskip("packaging.requirements").Requirement

    internals = charmlibs.get_lib_internals(Path(lib.__file__))

    assert (internals.lib_id, internals.api, internals.patch) == (
        lib.LIBID,
        lib.LIBAPI,
        lib.LIBPATCH,
    )
    assert internals.pydeps == ["ops>=2.18"]
    (ops_requirement,) = (requirement(d) for d in internals.pydeps)
    assert ops.__version__ in ops_requirement.specifier
    assert "Licensed under the Apache License, Version 2.0" in internals.content
