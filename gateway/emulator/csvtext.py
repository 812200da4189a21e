"""CSV as both vendors' bodies use it: RFC 4180 quoting, a header line, empty field = null.

Reading takes a split-based fast path when the text has no quotes (the usual machine-written
body), which is several times faster than :mod:`csv`; anything quoted goes through :mod:`csv`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

_NEEDS_QUOTES = frozenset(',"\r\n')


class CsvError(ValueError):
    pass


def read_csv(text: str) -> list[list[str]]:
    """All non-blank records of ``text``, header included."""
    if '"' not in text:
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if "\r" not in text:
            return [line.split(",") for line in text.split("\n") if line]
    try:
        return [record for record in csv.reader(io.StringIO(text, newline=""), strict=True) if record]
    except csv.Error as exc:
        raise CsvError(f"malformed CSV: {exc}") from None


def field(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is str:
        text = value
    elif value is None:
        return ""
    elif kind is bool:
        return "true" if value else "false"
    elif kind is int:
        return str(value)
    elif kind is list or kind is dict:
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    if _NEEDS_QUOTES.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    lines = [",".join(map(field, header))]
    lines.extend([",".join(map(field, row)) for row in rows])
    lines.append("")
    return "\r\n".join(lines).encode()
