"""The docs name tests as evidence: every `tests/...py::test_name` they cite must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import k6_workload

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])
# `unit/test_charm.py::test_x`, `e2e/test_faults.py::test_y`, `tests/unit/...`; an emu/k8s
# abbreviation in docs/juju-k8s.md is expanded below.
CITATION = re.compile(r"(?:tests/)?(?:(unit|e2e|integration)/)?(test_\w+\.py)::(test_\w+)")
SHORT = {"emu": "e2e/test_emulator.py", "k8s": "e2e/test_k8s_network.py"}
NAMED = re.compile(r"`(test_\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def _where(folder: str | None, file: str) -> str:
    """`folder/file` as cited, or the first test folder holding a bare `file`."""
    if folder:
        return f"{folder}/{file}"
    found = [
        f"{d}/{file}"
        for d in ("unit", "e2e", "integration")
        if (ROOT / "tests" / d / file).exists()
    ]
    return found[0] if found else f"unit/{file}"


def _citations(doc: Path) -> list[tuple[str, str]]:
    text = doc.read_text()
    found = [(_where(m[1], m[2]), m[3]) for m in CITATION.finditer(text)]
    for line in text.splitlines():
        marks = list(re.finditer(r"\b(emu|k8s) `", line))
        for mark, after in zip(marks, [*marks[1:], None], strict=False):
            segment = line[mark.start(1) : after.start() if after else len(line)]
            found += [(SHORT[mark[1]], name) for name in NAMED.findall(segment)]
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_test_a_doc_cites_exists(doc: Path):
    missing = []
    for file, name in _citations(doc):
        path = ROOT / "tests" / file
        if not path.exists() or name not in _tests_in(path):
            missing.append(f"{file}::{name}")

    assert missing == []


def test_the_citation_check_sees_the_citations():
    cited = {c for doc in DOCS for c in _citations(doc)}

    assert (
        "e2e/test_emulator.py",
        "test_nothing_serves_the_k6_port_on_the_service_address",
    ) in cited
    assert len(cited) > 30


def test_the_protocol_gives_the_arm_wait_the_workload_uses():
    text = (ROOT / "docs" / "protocol.md").read_text()
    diagram = re.findall(r"until status 4 \(<= (\d+) s\)", text)
    steps = re.findall(r"for up to (\d+) s \(`k6_workload.ARM_WAIT_SECONDS`\)", text)
    recheck = re.findall(r"probes again for (\d+) s \(`Recheck`\)", text)

    assert diagram and steps and recheck
    assert {float(s) for s in diagram + steps} == {k6_workload.ARM_WAIT_SECONDS}
    assert {float(s) for s in recheck} == {k6_workload.RECHECK_WAIT_SECONDS}


def _layout() -> str:
    """The README's "Development" layout block."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Development") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


def test_every_path_the_readme_layout_names_exists():
    named = re.findall(
        r"(?<![\w/])((?:lib|src|tests|examples|docs|bench|\.ci)/[\w./-]*)", _layout()
    )

    assert len(named) > 15
    assert [path for path in named if not (ROOT / path).exists()] == []


def test_the_readme_layout_names_every_module_library_and_test_level():
    layout = _layout()
    tree = [
        *(ROOT / "src").glob("*.py"),
        *(ROOT / "lib").rglob("*.py"),
        *(p for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"),
    ]

    unnamed = [str(p.relative_to(ROOT)) for p in tree if str(p.relative_to(ROOT)) not in layout]

    assert unnamed == []
