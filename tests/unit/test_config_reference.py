"""The README's configuration reference tables say what the schema says: every key, its default, its
meaning (the field's description) and, for backend keys, which vendor it belongs to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gateway.config import json_schema

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# README heading -> the key path its table's keys are under.
TABLES = {"### `kafka`": "kafka.", "### `admin` and top level": "", "### `pipelines[]`": "pipelines[].",
          "### `pipelines[].backend`": "pipelines[].backend."}
# Sections documented on a page of their own: page, its reference heading, heading -> key path.
PAGES = {"docs/operations/tracing.md": ("## Configuration", {"### `tracing`": "tracing."})}


def documented() -> dict[str, tuple[str, ...]]:
    """key path -> (default, meaning) or (vendor, default, meaning), from the README's tables and the pages'."""
    rows = _rows(README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0], TABLES)
    for page, (heading, tables) in PAGES.items():
        text = (ROOT / page).read_text(encoding="utf-8")
        for path, row in _rows(text.split(heading + "\n", 1)[1].split("\n## ", 1)[0], tables).items():
            assert path not in rows, f"{path} is documented twice"
            rows[path] = row
    return rows


def _rows(section: str, tables: dict[str, str]) -> dict[str, tuple[str, ...]]:
    rows: dict[str, tuple[str, ...]] = {}
    for heading, prefix in tables.items():
        table = section.split(heading + "\n", 1)[1].split("\n### ", 1)[0]
        for line in table.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            if not line.startswith("| `") or len(cells) < 3:
                continue
            key = cells[0].strip("`")
            assert prefix + key not in rows, f"{prefix + key} is documented twice"
            rows[prefix + key] = tuple(cells[1:])
    return rows


def render_default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    return f"`{prop['default'] if isinstance(prop['default'], str) else json.dumps(prop['default'])}`"


def keys(schema: dict[str, Any], node: dict[str, Any], prefix: str, vendor: str = "") -> dict[str, tuple[str, ...]]:
    """key path -> the README row the schema calls for, for every key that is not a section."""
    rows: dict[str, tuple[str, ...]] = {}
    for name, prop in node["properties"].items():
        refs = [ref for ref in [prop.get("$ref"), *(b.get("$ref") for b in prop.get("anyOf", []))]
                if ref and not ref.endswith("/Reference")]
        items = prop.get("items", {}).get("$ref")
        row = (render_default(prop, name in node.get("required", [])), prop["description"])
        if items:  # pipelines: a row of its own, and its items' keys under pipelines[]
            rows[prefix + name] = row
            rows |= keys(schema, definition(schema, items), f"{prefix}{name}[].")
        elif len(refs) > 1:  # the backend: each vendor's keys, marked with the vendors that have them
            vendors = [definition(schema, ref) for ref in refs]
            found = [keys(schema, d, f"{prefix}{name}.", d["properties"]["type"]["anyOf"][0]["const"])
                     for d in vendors]
            for path in dict.fromkeys(path for rows_of in found for path in rows_of):
                having = [rows_of[path] for rows_of in found if path in rows_of]
                assert all(row[1:] == having[0][1:] for row in having), f"{path} differs between vendors"
                rows[path] = ("both" if len(having) == len(found) else having[0][0], *having[0][1:])
        elif refs:
            rows |= keys(schema, definition(schema, refs[0]), f"{prefix}{name}.", vendor)
        else:
            rows[prefix + name] = (vendor, *row) if vendor else row
    return rows


def definition(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    return schema["$defs"][ref.rsplit("/", 1)[1]]


def test_readme_tables_match_the_schema() -> None:
    schema = json_schema()
    expected = keys(schema, schema, "")
    rows = documented()
    assert sorted(expected) == sorted(rows), "keys missing from the README / documented but not in the schema"
    for path, row in expected.items():
        shown = "| `" + path.rsplit(".", 1)[-1] + "` | " + " | ".join(row) + " |"
        assert rows[path] == row, f"README row for {path} should read:\n{shown}"


def test_every_key_is_found() -> None:
    rows = documented()
    assert len(rows) >= 55
    assert rows["pipelines[].backend.gzip"] == ("datarobot", "`false`", "gzip request bodies")
    assert re.fullmatch(r"\*\*required\*\*", rows["kafka.bootstrap_servers"][0])
