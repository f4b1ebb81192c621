"""The synchronized-task library as a file: its header, no k6 in it, its docstring's example.

The example must be examples/coconut's charm, with only the differences the docstring states.
"""

from __future__ import annotations

import ast
import re
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


# ============================================================ the docstring's example is coconut


COCONUT = Path(__file__).resolve().parents[2] / "examples" / "coconut" / "src"
# What the docstring says examples/coconut adds to its example, in the docstring's own words.
ADDED_SENTENCE = (
    "without what coconut adds to it: the `stop` and `results` actions (`_on_stop_action`, "
    "`_on_results_action`, `_text`) and `aggregate=tally` (src/tally.py)."
)
ADDED_DEFINITIONS = {"_on_stop_action", "_on_results_action", "_text"}
ADDED_ACTIONS = {"stop_action", "results_action"}
ADDED_KEYWORDS = {"aggregate"}
OWN_MODULES = {"eater", "tally"}  # the example's own files, imported by src/charm.py


def docstring_example() -> ast.Module:
    (code,) = re.findall(r"```python\n(.*?)```", lib.__doc__ or "", re.S)
    return ast.parse(code)


def without_docstrings(tree: ast.AST) -> ast.AST:
    """The tree with every module, class and function docstring left out."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def without_coconuts_additions(tree: ast.AST) -> ast.AST:
    """The tree with the definitions, action observers and keywords coconut adds left out."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [  # type: ignore[attr-defined]
                s
                for s in body
                if not (isinstance(s, ast.FunctionDef) and s.name in ADDED_DEFINITIONS)
                and not (isinstance(s, ast.Expr) and _observes(s.value) & ADDED_ACTIONS)
            ]
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if k.arg not in ADDED_KEYWORDS]
    return tree


def _observes(call: ast.expr) -> set[str]:
    """The events a `framework.observe(self.on.<event>, ...)` call observes."""
    if isinstance(call, ast.Call) and ast.unparse(call.func) == "framework.observe":
        return {a.attr for a in call.args[:1] if isinstance(a, ast.Attribute)}
    return set()


def definitions(tree: ast.Module) -> list[str]:
    """Every top-level statement but the imports, in order, as comparable text."""
    return [ast.dump(s) for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom)]


def imported_names(tree: ast.Module) -> set[str]:
    """What the module imports, by name (its own modules' names and `__future__` aside)."""
    return {
        alias.name
        for s in tree.body
        if isinstance(s, ast.Import | ast.ImportFrom)
        and getattr(s, "module", None) not in OWN_MODULES | {"__future__"}
        for alias in s.names
    }


def coconut(file: str) -> ast.Module:
    return ast.parse((COCONUT / file).read_text())


def test_the_docstring_example_is_coconuts_eater_and_charm_without_what_it_says_coconut_adds():
    example = without_docstrings(docstring_example())
    eater, charm = (without_docstrings(coconut(f)) for f in ("eater.py", "charm.py"))
    charm = without_coconuts_additions(charm)

    assert isinstance(example, ast.Module)
    assert isinstance(eater, ast.Module) and isinstance(charm, ast.Module)
    assert definitions(example) == definitions(eater) + definitions(charm)
    assert imported_names(example) == imported_names(eater) | imported_names(charm)


def test_the_docstring_names_everything_coconut_adds_to_its_example():
    doc = " ".join((lib.__doc__ or "").split())
    charm = coconut("charm.py")
    added_here = {n.name for n in ast.walk(charm) if isinstance(n, ast.FunctionDef)} - {
        n.name for n in ast.walk(docstring_example()) if isinstance(n, ast.FunctionDef)
    }

    assert ADDED_SENTENCE in doc
    assert added_here == ADDED_DEFINITIONS
    named = set(re.findall(r"`(\w+)", ADDED_SENTENCE))
    assert ADDED_DEFINITIONS <= named
    assert {a.removesuffix("_action") for a in ADDED_ACTIONS} <= named
    assert {f"{k}=tally" for k in ADDED_KEYWORDS} <= set(re.findall(r"`([\w=]+)`", doc))


def test_the_comparison_sees_a_difference_in_the_example():
    example = docstring_example()
    changed = ast.parse(ast.unparse(example).replace("share.items(", "share.split("))
    eater, charm = (without_docstrings(coconut(f)) for f in ("eater.py", "charm.py"))
    charm = without_coconuts_additions(charm)

    assert isinstance(eater, ast.Module) and isinstance(charm, ast.Module)
    assert definitions(changed) != definitions(eater) + definitions(charm)


SECTIONS = (
    "records (databag models)",
    "the workload side",
    "release mechanisms",
    "the one-shot service",
    "the charm side",
    "decisions",
    "outcome and statuses",
    "the release fan-out",
)


def test_the_library_reads_top_down_in_its_sections_order():
    text = Path(lib.__file__).read_text()

    found = [line.split(" ", 2)[2] for line in text.splitlines() if line.startswith("# ------")]

    assert tuple(found) == SECTIONS


def test_no_module_of_the_charm_is_over_700_lines_nor_a_function_over_60():
    root = Path(__file__).resolve().parents[2]
    modules = [*(root / "src").rglob("*.py"), *(root / "lib").rglob("*.py")]
    library = Path(lib.__file__).resolve()

    long_files = [
        str(p) for p in modules if p.resolve() != library and p.read_text().count("\n") > 700
    ]
    long_functions = [
        f"{p.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for p in modules
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or 0) - node.lineno + 1 > 60
    ]

    assert (long_files, long_functions) == ([], [])
