"""Which keys hold secrets, and the configuration as plain data with them hidden.

A key is declared secret by the :data:`SECRET` marker on its type (``token: Annotated[Text | None,
SECRET]``); :func:`is_secret_key` also treats any key whose name says it holds one as secret, so a key
added later cannot leak by being forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

REDACTED = "***"
_SECRET_NAME = re.compile(r".*(password|token|secret).*|.*key", re.IGNORECASE)


class Secret:
    """Marks a key as secret: redacted in ``check`` output, scrubbed from logs and messages, and
    ``writeOnly`` in the JSON Schema."""

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["writeOnly"] = True
        return json_schema

    def __repr__(self) -> str:
        return "SECRET"


SECRET = Secret()


def is_secret_key(name: str, declared: bool = False) -> bool:
    """Declared secrets, plus any key whose name says it holds one (``*password*``, ``*token*``, ``*key``)."""
    return declared or bool(_SECRET_NAME.fullmatch(name))


def declared_secret(info: FieldInfo) -> bool:
    return any(isinstance(item, Secret) for item in info.metadata)


def redacted(section: BaseModel) -> dict[str, object]:
    """``section`` as plain data in key order: sections as mappings, tuples as lists, secrets as ``***``."""
    out: dict[str, object] = {}
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if value is not None and is_secret_key(name, declared_secret(info)):
            out[name] = REDACTED
        else:
            out[name] = _plain(value)
    return out


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return redacted(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def secret_values(value: object) -> Iterator[str]:
    """Every secret string in effect under ``value``."""
    if isinstance(value, tuple):
        for item in value:
            yield from secret_values(item)
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            item = getattr(value, name)
            if isinstance(item, str) and is_secret_key(name, declared_secret(info)):
                yield item
            else:
                yield from secret_values(item)
