"""The reference pages generated from the code are the ones committed: a key added to a config model,
an option added to a command, a metric or an alert rule added shows up in the docs, or this fails
and says how to regenerate them."""

from __future__ import annotations

import difflib
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from gateway.cli import build_parser
from gateway.config import json_schema
from gateway.runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("reference/configuration.md", "reference/cli.md", "reference/metrics.md", "reference/alerts.md")


@pytest.mark.parametrize("name", PAGES)
def test_the_committed_page_is_what_the_code_gives(generator: ModuleType, name: str) -> None:
    path = ROOT / "docs" / name
    expected = generator.PAGES[name]()
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    if committed != expected:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), expected.splitlines(True),
                                                 f"committed {name}", "generated", n=1))[:40])
        pytest.fail(f"docs/{name} is out of date: run `python docs/generate.py` (or `make docs`)\n{diff}")


def test_every_page_the_generator_writes_is_checked(generator: ModuleType) -> None:
    assert set(generator.PAGES) == set(PAGES)


def _keys(schema: dict, node: dict) -> set[str]:  # type: ignore[type-arg]
    found = set(node.get("properties", {}))
    for prop in node.get("properties", {}).values():
        refs = [prop.get("$ref"), prop.get("items", {}).get("$ref"), *(b.get("$ref") for b in prop.get("anyOf", []))]
        for ref in refs:
            if ref and not ref.endswith("/Reference"):
                found |= _keys(schema, schema["$defs"][ref.rsplit("/", 1)[1]])
    return found


def test_every_config_key_is_on_the_configuration_page(generator: ModuleType) -> None:
    page = generator.configuration_page()
    schema = json_schema()
    keys = _keys(schema, schema)
    assert len(keys) >= 55
    assert [key for key in sorted(keys) if f"| `{key}` |" not in page] == []
    assert "| `gzip` | datarobot | boolean | `false` | gzip request bodies |" in page
    assert "| `bootstrap_servers` | string or list of strings | **required** |" in page


def test_every_option_of_every_command_is_on_the_cli_page(generator: ModuleType) -> None:
    page = generator.cli_page()
    parser = build_parser()
    commands = generator._subcommands(parser)
    assert set(commands) >= {"run", "check", "schema", "emulate", "demo", "replay", "batch"}
    for name, command in commands.items():
        assert f"## `scoring-gateway {name}`" in page
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page, (name, option)


def test_every_metric_is_on_the_metrics_page(generator: ModuleType) -> None:
    page = generator.metrics_page()
    registry = CollectorRegistry()
    Metrics(registry)
    names = [family.name.removeprefix("scoring_gateway_") + ("_total" if family.type == "counter" else "")
             for family in registry.collect()]
    assert len(names) >= 20
    assert [name for name in names if f"| `{name}` |" not in page] == []
    assert "outcome (`predicted` \\| `dead_letter`)" in page


def test_check_names_the_command_when_a_page_is_stale(generator: ModuleType, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    monkeypatch.setattr(generator, "DOCS", tmp_path / "docs")
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    page = tmp_path / "docs" / "reference" / "metrics.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `build_info` |", "| `built_info` |"),
                    encoding="utf-8")
    capsys.readouterr()
    assert generator.main(["--check"]) == 1
    assert "docs/reference/metrics.md is out of date: run `python docs/generate.py`" in capsys.readouterr().err
