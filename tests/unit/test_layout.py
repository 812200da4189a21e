"""Who may import whom: the product stands alone, and the tests and the benchmarks share only testkit.

``gateway`` imports none of ``testkit``, ``tests`` or ``benchmarks`` (the wheel holds ``gateway``
alone); ``testkit`` imports neither ``tests`` nor ``benchmarks``; ``tests`` never import
``benchmarks`` (a test of a benchmark runs it as a process) and ``benchmarks`` never import
``tests``. Every import statement counts, those inside functions included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "gateway": {"testkit", "tests", "benchmarks"},
    "testkit": {"tests", "benchmarks"},
    "tests": {"benchmarks"},
    "benchmarks": {"tests"},
}


def imported_packages(source: str) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, imported in imported_packages(path.read_text(encoding="utf-8")):
            if imported in FORBIDDEN[package]:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_import(package: str) -> None:
    assert (ROOT / package).is_dir()
    assert violations(package) == []


def test_the_check_sees_every_form_of_import() -> None:
    """Control: plain, dotted, from-imports and imports inside a function are all found."""
    source = ("import benchmarks\nimport tests.kafka as k\nfrom benchmarks.run import main\n"
              "def f():\n    from tests import x\n    import gateway\nfrom . import sibling\n")
    assert sorted(imported_packages(source)) == [(1, "benchmarks"), (2, "tests"), (3, "benchmarks"),
                                               (5, "tests"), (6, "gateway")]
