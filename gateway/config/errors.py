"""Configuration problems: one line each, starting with the key path it is about.

Inside validation every problem, whatever found it (a key's type, a value check, a cross-key rule, a
``${...}`` reference), travels as a pydantic error of type ``config`` whose message is already in our
words; :func:`message` translates pydantic's own error types into them. Outside, :class:`ConfigError`
carries the finished lines. Messages describe a secret key's wrong value by its kind, never its text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from gateway.errors import SettingsError

PROBLEM = "config"
NOT_NULL = "must not be null (leave the key out to use the default)"

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class ConfigError(SettingsError, ValueError):
    """An invalid configuration; ``errors`` holds one line per problem, each naming its key path."""

    def __init__(self, errors: list[str] | tuple[str, ...]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))

    def report(self, path: object) -> str:
        """What every command prints on stderr before it exits 2: ``invalid config FILE:``, then
        each problem on a line of its own."""
        return "\n".join([f"invalid config {path}:", *(f"  {line}" for line in self.errors)])


class UnknownPipeline(SettingsError, LookupError):
    """A command named a pipeline the configuration does not have; the message lists those it has."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown pipeline {name!r} (the config has: {', '.join(known)})")
        self.name = name


def problem(message: str) -> PydanticCustomError:
    """A problem with the value being validated, worded as it will be shown."""
    return PydanticCustomError(PROBLEM, "{message}", {"message": message})


def problems(title: str, found: Iterable[Problem]) -> ValidationError:
    """Several problems at once, each at its location relative to the value being validated."""
    details = [InitErrorDetails(type=problem(text), loc=loc, input=None) for loc, text in found]
    return ValidationError.from_exception_data(title, details, hide_input=True)


def lines(exc: ValidationError) -> list[str]:
    return [f"{key_path(error['loc'])}: {error['msg']}" for error in exc.errors()]


def key_path(loc: Sequence[str | int]) -> str:
    """``('pipelines', 0, 'batching', 'max_rows')`` as ``pipelines[0].batching.max_rows``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def describe(value: object, *, secret: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, (int, float)):
        return "a number" if secret else repr(value)
    if isinstance(value, str):
        return "a string" if secret else repr(str(value))
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


_TYPE_ERRORS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def message(error: ErrorDetails, *, secret: bool, choices: tuple[str, ...], sections: bool) -> str:
    """Our wording for one of pydantic's errors about a key: ``secret`` keeps its value out, ``choices``
    are the key's allowed words, ``sections`` says whether it holds sections (``pipelines``)."""
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == PROBLEM:
        return error["msg"]
    if kind == "missing":
        return "required"
    if value is None and (kind in _TYPE_ERRORS or kind == "literal_error"):
        return NOT_NULL
    if kind == "literal_error" and isinstance(value, str) and not value.strip():
        return "must not be empty"
    if kind == "literal_error" and isinstance(value, str):
        return f"must be one of {', '.join(choices)}, got {value!r}"
    if kind in _TYPE_ERRORS or kind == "literal_error":
        expected = _TYPE_ERRORS.get(kind, "a string")
        quote = expected == "a string" and not secret and isinstance(value, (int, float))
        return f"expected {expected}, got {describe(value, secret=secret)}" + (" (quote it)" if quote else "")
    if kind in _BOUNDS:
        limit = next(iter(ctx.values()))
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # "must be > 0", as the key was declared, for a number key too
        return f"must be {_BOUNDS[kind]} {limit}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "too_short":
        return "must have at least one entry" if sections else "must not be empty"
    if kind in ("tuple_type", "list_type"):
        return f"expected {'a list' if sections else 'a list of names'}, got {describe(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {describe(value)}"
    return error["msg"]
