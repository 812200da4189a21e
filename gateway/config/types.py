"""The value types of configuration keys: strict scalars, names, topics, URLs and broker lists.

Types are strict: a value written in the file must already have the key's type (``port: "9400"`` is
an error, not 9400; ``true`` is not an integer). Values produced by ``${...}`` substitution are
converted before they get here (see ``substitution.typed``). Each type that checks more than its
kind carries the check and its JSON Schema together, so the two cannot drift apart: where a regex
decides, the same regex is the schema's ``pattern``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import (
    AllowInfNan,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from .errors import describe, problem, problems

PositiveInt = Annotated[int, Strict(), Gt(0)]
NonNegativeInt = Annotated[int, Strict(), Ge(0)]
Port = Annotated[int, Strict(), Ge(0), Le(65535)]


def _as_written(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """A number key keeps an integer as the integer it was written as (``check`` shows ``60``, not
    ``60.0``); either is a ``float`` to the code that reads it."""
    number = handler(value)
    return value if type(value) is int else number


_WRITTEN = WrapValidator(_as_written)
PositiveNumber = Annotated[float, Strict(), AllowInfNan(False), Gt(0), _WRITTEN]
NonNegativeNumber = Annotated[float, Strict(), AllowInfNan(False), Ge(0), _WRITTEN]
Fraction = Annotated[float, Strict(), AllowInfNan(False), Ge(0), Le(1), _WRITTEN]
Flag = Annotated[bool, Strict()]


def _after(check: core_schema.NoInfoValidatorFunction, handler: GetCoreSchemaHandler, source: object) -> CoreSchema:
    return core_schema.no_info_after_validator_function(check, handler(source))


@dataclass(frozen=True, slots=True)
class NonBlank:
    """A string with something in it besides spaces."""

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        return _after(_non_blank, handler, source)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "minLength": 1, "pattern": r"\S"}


def _non_blank(value: str) -> str:
    if not value.strip():
        raise problem("must not be empty")
    return str(value)


@dataclass(frozen=True, slots=True)
class Matching:
    """A non-blank string matched in full by ``pattern``; ``help`` says what a valid one looks like."""

    pattern: str
    help: str

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        regex = re.compile(self.pattern)

        def check(value: str) -> str:
            text = _non_blank(value)
            if not regex.fullmatch(text):
                raise problem(f"{text!r} is not valid: {self.help}")
            return text
        return _after(check, handler, source)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "pattern": f"^(?:{self.pattern})$"}


@dataclass(frozen=True, slots=True)
class Unique:
    """A list whose items are all different (feature and column names)."""

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        return _after(_unique, handler, source)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "uniqueItems": True}


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise problems("names", [((i,), f"duplicate name {name!r}")])
        seen.add(name)
    return names


Text = Annotated[str, Strict(), NonBlank()]
Names = Annotated[tuple[Text, ...], MinLen(1), Unique()]

_TOPIC = r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,249}"
Topic = Annotated[str, Strict(), Matching(_TOPIC, "a Kafka topic name has 1-249 letters, digits, '.', '_' or '-'")]
Name = Annotated[str, Strict(), Matching(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}",
                                         "use letters, digits, '.', '_' or '-' (at most 100, starting with a "
                                         "letter or digit)")]


# --- URLs --------------------------------------------------------------------------------------------

_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}|0)"
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[^\s/?#@:\[\]]+)"
_ORIGIN = rf"[Hh][Tt][Tt][Pp][Ss]?://{_HOST}(?::{_PORT}?)?"
_ANY_PATH = r"(?:/[^\s?#]*)?"


@dataclass(frozen=True, slots=True)
class HttpUrl:
    """An http(s) URL with a host and no credentials, query or fragment (the backend options set the
    query). ``path``, when given, is the regex its path must match: ``kind`` names such a path and
    ``expected`` shows one; ``withdrawn`` maps paths of retired endpoints to what to use instead."""

    path: str = _ANY_PATH
    kind: str = ""
    expected: str = ""
    withdrawn: tuple[tuple[str, str], ...] = ()

    @property
    def pattern(self) -> str:
        return f"^{_ORIGIN}{self.path}$"

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        return _after(self._check, handler, source)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "pattern": self.pattern}

    def _check(self, value: str) -> str:
        text = _non_blank(value)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise problem(f"is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise problem(f"invalid URL scheme {parts.scheme or '(none)'!r}: expected https or http")
        if not parts.hostname:
            raise problem("has no host")
        if parts.username is not None or parts.password is not None:
            raise problem("must not carry credentials: use backend.token")
        if parts.query or parts.fragment:
            raise problem("must not carry a query string or fragment: the backend options set the query parameters")
        if self.kind and not re.fullmatch(self.path, parts.path):
            for retired, instead in self.withdrawn:
                if re.fullmatch(retired, parts.path):
                    raise problem(instead)
            raise problem(f"path {parts.path!r} is not {self.kind} (expected {self.expected})")
        if not re.fullmatch(self.pattern[1:-1], text):
            raise problem("is not a valid URL")
        return text


# --- broker addresses --------------------------------------------------------------------------------

_BROKER_PORT = rf"(?=\d{{1,5}}(?!\d))0*(?:{_PORT})"
_ENTRY = rf"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::{_BROKER_PORT})?"
_ENTRIES = rf"^\s*{_ENTRY}\s*(?:,\s*{_ENTRY}\s*)*$"


@dataclass(frozen=True, slots=True)
class HostPorts:
    """``host:port`` entries, comma-separated or as a list; the value is the comma-joined string."""

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(_host_ports)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        text = {"type": "string", "pattern": _ENTRIES}
        return {"anyOf": [text, {"type": "array", "minItems": 1, "items": text}]}


def _host_ports(value: object) -> str:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise problem(f"expected 'host:port[,host:port...]', got {describe(value)}")
    entries = [entry.strip() for entry in value.split(",")]
    if not any(entries):
        raise problem("must not be empty")
    for entry in entries:
        if not re.fullmatch(_ENTRY, entry):
            raise problem(f"{entry!r} is not a host:port address")
    return ",".join(entries)


BootstrapServers = Annotated[str, HostPorts()]


# --- a count or "all", names or "all" ----------------------------------------------------------------

_COUNT: TypeAdapter[int] = TypeAdapter(NonNegativeInt)
_NAMES: TypeAdapter[tuple[str, ...]] = TypeAdapter(Annotated[tuple[Text, ...], Unique()])


def _count_or_all(value: object, handler: ValidatorFunctionWrapHandler) -> int | str:
    if value == "all":
        return "all"
    if isinstance(value, int) and not isinstance(value, bool):
        return _COUNT.validate_python(value)
    raise problem(f'expected an integer >= 0 or "all", got {describe(value)}')


def _names_or_all(value: object, handler: ValidatorFunctionWrapHandler) -> tuple[str, ...] | str:
    if value == "all":
        return "all"
    if isinstance(value, (list, tuple)):
        return _NAMES.validate_python(value)
    raise problem(f'expected a list of column names or "all", got {describe(value)}')


_POSITIVE: TypeAdapter[int] = TypeAdapter(PositiveInt)


def _count_or_auto(value: object, handler: ValidatorFunctionWrapHandler) -> int | str:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool):
        return _POSITIVE.validate_python(value)
    raise problem(f'expected an integer > 0 or "auto", got {describe(value)}')


CountOrAll = Annotated[NonNegativeInt | Literal["all"], WrapValidator(_count_or_all)]
CountOrAuto = Annotated[PositiveInt | Literal["auto"], WrapValidator(_count_or_auto)]
NamesOrAll = Annotated[tuple[Text, ...] | Literal["all"], WrapValidator(_names_or_all)]
