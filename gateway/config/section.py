"""The base of every configuration section: a frozen pydantic model whose fields are the YAML keys.

A key is one field declaration: its type (which carries the constraints), its default and its
description; the JSON Schema and the README's reference tables come from the same declaration.
What pydantic cannot know is added here, around pydantic's own validation of each section:

- unknown keys are reported with a suggestion (``unknown key (did you mean 'token'?)``), or with
  :meth:`Section.misplaced`'s reason when the key belongs to a sibling section type;
- ``${...}`` references are resolved key by key (when a :class:`Resolver` is the validation
  context) and the result converted to the key's type; secrets are remembered for scrubbing;
- a null or missing section means one with every key at its default;
- cross-key :class:`Rule` s run on every key that is valid even when others are not, and all the
  problems of a document are reported at once: pydantic alone would skip a section's rules as soon
  as one of its keys failed.
"""

from __future__ import annotations

import difflib
import functools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Self, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ..json_types import JsonObject, JsonValue
from .errors import PROBLEM, Loc, Problem, describe, message, problem, problems
from .secrets import Secret, declared_secret
from .substitution import Resolver, Unresolved, typed

_T = TypeVar("_T")

# What the JSON Schema accepts, besides a key's own type, wherever a ${...} string would be refused
# (``schema.json_schema`` defines it once, under this name); rules' schemas use it too.
REFERENCE_NAME = "Reference"
REFERENCE: JsonObject = {"$ref": f"#/$defs/{REFERENCE_NAME}"}
REFERENCE_SCHEMA: JsonObject = {
    "type": "string", "pattern": r"\$\{",
    "description": "a ${VAR}, ${VAR:-default} or ${file:PATH} reference, converted to the key's type when "
                   "the config is loaded",
}
NULL_OR_REFERENCE: JsonObject = {"anyOf": [{"type": "null"}, REFERENCE]}


@dataclass(frozen=True, slots=True)
class Keys:
    """A section's keys as a cross-key rule sees them: the values of the valid ones, and the section
    as written (for rules that must work even while a key they read is invalid)."""

    values: Mapping[str, object]
    written: Mapping[object, object]

    def ok(self, *names: str) -> bool:
        return all(name in self.values for name in names)

    def __getitem__(self, name: str) -> object:
        return self.values[name]

    def of(self, name: str, kind: type[_T]) -> _T:
        """The valid value of ``name``, which its declaration makes a ``kind`` (a rule that reads an
        attribute or compares by order needs the type, not just the object)."""
        value = self.values[name]
        if not isinstance(value, kind):
            raise TypeError(f"{name} is {type(value).__name__}, not {kind.__name__}")
        return value


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule across keys of one section; ``schema`` is the same rule in JSON Schema when JSON Schema
    can say it (it is added to the section's ``allOf``), None when only ``check`` can."""

    check: Callable[[Keys], Iterable[Problem]]
    schema: Mapping[str, JsonValue] | None = None


@dataclass(frozen=True, slots=True)
class Key:
    """What the loader needs to know about one key, read off its declaration."""

    position: int
    secret: bool
    nullable: bool
    scalar: bool  # takes a number or a boolean: a substituted value is read as a YAML scalar
    choices: tuple[str, ...]
    sections: bool  # holds sections: resolved by them, key by key
    has_default: bool


@dataclass(frozen=True, slots=True)
class _Choice:
    value: str


def _parts(annotation: object) -> Iterator[object]:
    """The types, literal values and markers an annotation is made of, outside any container."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from get_args(annotation)[1:]
        yield from _parts(get_args(annotation)[0])
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _parts(arg)
    elif origin is Literal:
        yield from (_Choice(value) for value in get_args(annotation))
    elif origin in (tuple, list):
        yield from (part for part in _parts(get_args(annotation)[0]) if isinstance(part, type) and
                    issubclass(part, Section))
    else:
        yield annotation


@functools.cache
def keys_of(cls: type[Section]) -> Mapping[str, Key]:
    keys = {}
    for position, (name, info) in enumerate(cls.model_fields.items()):
        parts = list(_parts(info.annotation))
        keys[name] = Key(
            position=position,
            secret=declared_secret(info) or any(isinstance(part, Secret) for part in parts),
            nullable=type(None) in parts,
            scalar=any(part in (int, float, bool) for part in parts),
            choices=tuple(part.value for part in parts if isinstance(part, _Choice)),
            sections=any(isinstance(part, type) and issubclass(part, Section) for part in parts),
            has_default=not info.is_required(),
        )
    return keys


@functools.cache
def _adapter(cls: type[Section], name: str) -> TypeAdapter[object]:
    return TypeAdapter(cls.model_fields[name].rebuild_annotation())


class _Findings:
    """A section's problems, put in the order they are reported: unknown keys as written, then each
    key's problems in declaration order, then the rules'."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[int, int], Problem]] = []

    def add(self, group: int, position: int, loc: Loc, text: str) -> None:
        self.items.append(((group, position), (loc, text)))

    def error(self, title: str) -> ValidationError:
        return problems(title, (found for _, found in sorted(self.items, key=lambda item: item[0])))


def _unknown_key(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


class Section(BaseModel):
    """A mapping of the config file: frozen, unknown keys refused, validated as the module says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Cross-key rules, run after each key of the section is validated.
    rules: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def misplaced(cls, key: str) -> str | None:
        """Why ``key`` is refused when it is a key, but of another kind of section (None: unknown)."""
        return None

    @classmethod
    def secret_keys(cls) -> frozenset[str]:
        return frozenset(name for name, key in keys_of(cls).items() if key.secret)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_section(cls, data: object, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo) -> Self:
        if isinstance(data, cls):
            return handler(data)
        written = {} if data is None else data
        if not isinstance(written, Mapping):
            raise problem(f"expected a mapping, got {describe(written)}")
        resolver = info.context if isinstance(info.context, Resolver) else None
        findings = _Findings()
        prepared, failed = cls._prepare(written, resolver, findings)
        section: Self | None = None
        try:
            section = handler(prepared)
            values = {name: getattr(section, name) for name in cls.model_fields}
        except ValidationError as exc:
            failed |= cls._collect(exc, failed, findings)
            values = cls._valid_values(prepared, failed, info.context)
        for position, rule in enumerate(cls.rules):
            for loc, text in rule.check(Keys(values, written)):
                findings.add(2, position, loc, text)
        if findings.items or section is None:
            raise findings.error(cls.__name__)
        return section

    @classmethod
    def _prepare(cls, written: Mapping[object, object], resolver: Resolver | None,
                 findings: _Findings) -> tuple[dict[str, object], set[str]]:
        """The section's known keys with references resolved and converted; the keys that failed."""
        keys = keys_of(cls)
        prepared: dict[str, object] = {}
        failed: set[str] = set()
        for position, (name, value) in enumerate(written.items()):
            key = keys.get(name) if isinstance(name, str) else None
            if key is None or not isinstance(name, str):
                findings.add(0, position, (str(name),), cls.misplaced(str(name)) or _unknown_key(str(name), keys))
            elif key.sections or resolver is None:
                prepared[name] = value
            else:
                try:
                    resolved = resolver.resolve(value, secret=key.secret)
                except Unresolved as exc:
                    findings.add(1, key.position, (name,), str(exc))
                    failed.add(name)
                    continue
                prepared[name] = typed(resolved, nullable=key.nullable, scalar=key.scalar)
        for name, key in keys.items():
            if key.sections and not key.nullable and name not in written and name not in failed \
                    and _single_section(cls, name):
                prepared[name] = {}  # reports the section's own required keys, not the section
        return prepared, failed

    @classmethod
    def _collect(cls, exc: ValidationError, failed: set[str], findings: _Findings) -> set[str]:
        """Adds pydantic's errors about this section's keys, in our words; returns the keys they are about."""
        keys = keys_of(cls)
        about: set[str] = set()
        for error in exc.errors():
            name = error["loc"][0] if error["loc"] else ""
            key = keys.get(str(name))
            if key is None:  # not about one key: pass it on as it is
                findings.add(1, len(keys), tuple(error["loc"]), error["msg"])
                continue
            if error["type"] == "missing" and name in failed:
                continue  # its reference failed, and that was reported
            if error["type"] == "too_short" and len(error["input"]) >= error["ctx"]["min_length"]:
                continue  # counts only the valid items: the invalid ones are reported
            text = error["msg"] if error["type"] == PROBLEM else message(
                error, secret=key.secret, choices=key.choices, sections=key.sections)
            findings.add(1, key.position, tuple(error["loc"]), text)
            about.add(str(name))
        return about

    @classmethod
    def _valid_values(cls, prepared: Mapping[str, object], failed: set[str], context: object) -> dict[str, object]:
        """The values of the keys that passed, for the rules, when others did not."""
        values: dict[str, object] = {}
        for name, info in cls.model_fields.items():
            if name in failed:
                continue
            if name not in prepared:
                if not info.is_required():
                    values[name] = info.get_default(call_default_factory=True)
                continue
            try:
                values[name] = _adapter(cls, name).validate_python(prepared[name], context=context)
            except ValidationError:
                continue
        return values


def _single_section(cls: type[Section], name: str) -> bool:
    origin = get_origin(cls.model_fields[name].annotation)
    return origin not in (tuple, list)
