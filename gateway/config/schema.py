"""The configuration's JSON Schema (draft 2020-12), generated from the section models.

Editors validate and complete a config file with it (yaml-language-server's ``$schema`` modeline).
Every key has its description and, unless required, its default. Because a ``${...}`` reference is
a string in the file, every key that takes a number, a boolean, one of a set of words or a patterned
name also accepts a string containing ``${``: the schema cannot know the value, ``check`` does. So
the schema may accept a file that ``check`` refuses (an unset variable, a value known only once
resolved, a rule that compares two values), but never refuses one that ``check`` accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic.json_schema import GenerateJsonSchema

from ..json_types import JsonObject, JsonValue
from .models import Config
from .section import REFERENCE, REFERENCE_NAME, REFERENCE_SCHEMA, Section, keys_of

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "writeOnly", "readOnly"})


class _Generator(GenerateJsonSchema):
    schema_dialect = DIALECT


def json_schema() -> JsonObject:
    schema: JsonObject = Config.model_json_schema(mode="validation", schema_generator=_Generator)
    definitions = schema.setdefault("$defs", {})
    if isinstance(definitions, dict):
        for cls in _sections(Section):
            definition = definitions.get(cls.__name__)
            if isinstance(definition, dict):
                _complete(definition, cls)
        definitions[REFERENCE_NAME] = dict(REFERENCE_SCHEMA)
    _complete(schema, Config)
    schema.pop("title", None)
    return {
        "$schema": DIALECT,
        "title": "scoring-gateway configuration",
        "description": "The YAML file given to `scoring-gateway run --config` and `check --config`. "
                       "Strings containing ${VAR}, ${VAR:-default} or ${file:PATH} are accepted wherever a "
                       "value is: they are resolved, and converted to the key's type, when the file is loaded.",
        **schema,
    }


def _sections(cls: type[Section]) -> Iterator[type[Section]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _sections(sub)


def _objects(value: JsonValue) -> Iterator[JsonObject]:
    """The objects among the items of a JSON array (pydantic writes nothing else where it is read)."""
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _complete(schema: JsonObject, cls: type[Section]) -> None:
    """Completes pydantic's schema of a section: no per-key titles (the key is its own title), a
    ``${...}`` string accepted wherever the key's own type would refuse one, null accepted for a
    section that has defaults, and the rules that JSON Schema can say."""
    keys = keys_of(cls)
    properties = schema.get("properties", {})
    for name, prop in properties.items() if isinstance(properties, dict) else ():
        if not isinstance(prop, dict):
            continue
        prop.pop("title", None)
        key = keys[name]
        if key.sections and key.has_default and not key.nullable:
            _widen(prop, {"type": "null"})
        elif not key.sections and not _takes_reference(prop):
            _widen(prop, REFERENCE)
    rules: list[JsonValue] = [dict(rule.schema) for rule in cls.rules if rule.schema is not None]
    if rules:
        schema["allOf"] = rules


def _widen(prop: JsonObject, alternative: JsonObject) -> None:
    """``prop`` also accepting ``alternative``; its annotations (description, default) stay on top."""
    kept = {key: prop.pop(key) for key in list(prop) if key in _ANNOTATIONS}
    branches = list(_objects(prop["anyOf"])) if list(prop) == ["anyOf"] else [dict(prop)]
    prop.clear()
    prop.update(kept, anyOf=[*branches, dict(alternative)])


def _takes_reference(schema: JsonObject) -> bool:
    """Whether ``schema`` already accepts a string like ``${VAR}``."""
    if "anyOf" in schema:
        return any(_takes_reference(branch) for branch in _objects(schema["anyOf"]))
    pattern = schema.get("pattern")
    return (schema.get("type") == "string" and not {"enum", "const", "format"} & schema.keys()
            and (not isinstance(pattern, str) or re.search(pattern, "${VAR}") is not None))
