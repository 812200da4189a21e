"""The configuration's JSON Schema (draft 2020-12), generated from the section models.

Editors validate and complete a config file with it (yaml-language-server's ``$schema`` modeline).
Every key has its description and, unless required, its default. Because a ``${...}`` reference is
a string in the file, every key that takes a number, a boolean, one of a set of words or a patterned
name also accepts a string containing ``${``: the schema cannot know the value, ``check`` does. So
the schema may accept a file that ``check`` refuses (an unset variable, a value known only once
resolved, a rule that compares two values), but never refuses one that ``check`` accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from .models import Config
from .section import REFERENCE_NAME, REFERENCE_SCHEMA

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    schema_dialect = DIALECT


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(mode="validation", schema_generator=_Generator)
    schema.pop("title", None)
    schema.setdefault("$defs", {})[REFERENCE_NAME] = REFERENCE_SCHEMA
    return {
        "$schema": DIALECT,
        "title": "scoring-gateway configuration",
        "description": "The YAML file given to `scoring-gateway run --config` and `check --config`. "
                       "Strings containing ${VAR}, ${VAR:-default} or ${file:PATH} are accepted wherever a "
                       "value is: they are resolved, and converted to the key's type, when the file is loaded.",
        **schema,
    }
