"""The Kafka seam holds: only gateway/kafka/ imports aiokafka, so another client library plugs in
behind ``gateway.kafka.client`` without a change to the stream, delivery, scoring, backends or runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gateway

ROOT = Path(gateway.__file__).parent
SEALED = ("stream", "delivery", "scoring", "backends", "runtime")


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from … import`` names, anywhere in the module (functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def sealed_modules() -> list[Path]:
    return sorted(path for package in SEALED for path in (ROOT / package).rglob("*.py"))


def test_the_check_sees_every_form_of_import() -> None:
    source = "import aiokafka\nfrom aiokafka.errors import KafkaError\ndef f():\n    import aiokafka.structs as s\n"
    assert imported_modules(source) == {"aiokafka", "aiokafka.errors", "aiokafka.structs"}


def test_the_sealed_packages_are_there() -> None:
    assert {path.parent.name for path in sealed_modules()} >= set(SEALED)


@pytest.mark.parametrize("path", sealed_modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_outside_the_seam_imports_aiokafka(path: Path) -> None:
    names = imported_modules(path.read_text(encoding="utf-8"))
    assert not {name for name in names if name == "aiokafka" or name.startswith("aiokafka.")}, (
        f"gateway/{path.relative_to(ROOT)} imports aiokafka: reach the broker through gateway.kafka.client")
