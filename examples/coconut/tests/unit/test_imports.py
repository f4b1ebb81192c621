"""The example stands on the library alone: nothing from the k6 charm's own modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MAIN_SRC = Path(__file__).resolve().parents[4] / "src"
LIBRARY = "charms.k6_k8s.v0.synchronized_task"


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (absolute, dotted)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import of {node.module}"
            found.add(node.module or "")
    return found


def test_the_example_imports_only_stdlib_ops_the_library_and_its_own_modules():
    own = {p.stem for p in SRC.glob("*.py")}
    imports = {m for p in SRC.glob("*.py") for m in imported_modules(p)}

    allowed = set(sys.stdlib_module_names) | {"ops", LIBRARY} | own
    assert {m for m in imports if m.split(".")[0] not in allowed and m not in allowed} == set()
    assert {m for m in imports if m.startswith("charms")} == {LIBRARY}
    assert LIBRARY in imports


def test_nothing_is_imported_from_the_main_charm_source():
    main_modules = {p.stem for p in MAIN_SRC.glob("*.py")} - {"charm"}  # charm: the own one
    imports = {m.split(".")[0] for p in SRC.glob("*.py") for m in imported_modules(p)}

    assert main_modules, f"no main source found at {MAIN_SRC}"
    assert imports & main_modules == set()
