"""RFC 4180 CSV for request bodies (DataRobot) and CSV responses (both vendors).

Writing CSV is the most expensive thing the gateway does per row: the standard ``csv.writer``
spends most of its time formatting floats with ``repr``. :func:`encode_csv` gets the same text
(as far as any CSV reader can tell) several times faster by working on whole batches:

1. **JSON transliteration** (any batch of JSON scalars). ``orjson`` formats every value of the
   batch in one C call (shortest round-trip floats, like ``repr``). JSON string escapes are turned
   into their CSV form first (``\\"`` → ``""``, ``\\n`` → a raw LF, …), after which every JSON
   string literal is a valid quoted CSV field, and the JSON text becomes CSV by a few byte
   replacements: ``],[`` → CRLF, ``null`` → empty, ``true``/``false`` → the boolean spelling.
   Those replacements run on the whole text when no string literal contains a token they touch;
   otherwise only on the text between the literals (split at the quotes and put back together).
2. **Column by column**, for values that are not JSON scalars (integers beyond 64 bits, nested
   values, other types). A column of strings is checked with one regex over the column joined by
   NUL; if any field needs quotes, the whole column is quoted in one pass. Numeric columns go
   through ``orjson`` as in step 1; anything else is formatted value by value.

Quoting a field that did not need it is allowed by RFC 4180 and reads back unchanged, so both
paths quote generously: step 1 quotes every string, step 2 every string of a column that has one
needing it. Measured on 500-row, 10-column mixed batches (``benchmarks/bench_codecs.py``): about
3.3× ``csv.writer`` fed the same dict rows, and 4× and more as the share of floats grows.

Format (both paths): CRLF line ends; a header row; ``None`` → empty field; a string is quoted at
least when it holds ``"``, ``,``, CR or LF or starts/ends with whitespace;
booleans as ``True``/``False`` by default (what pandas writes, and therefore what DataRobot's
own Python client sends); a lone empty field is written ``""`` so the row does not read back as
a blank line. Non-finite floats are written empty (callers reject them earlier, see
:func:`~gateway.backends.codec.row_problem`).

:func:`read_csv` parses response bodies with the C ``csv`` reader in strict mode and checks that
every row has the header's width, so a truncated or garbled body is an error, not short rows.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from typing import TypeGuard

import orjson

from gateway.errors import InputError

CRLF = b"\r\n"
# One field: needs quotes when it holds a quote, comma, CR or LF, or starts/ends with whitespace.
_FIELD_NEEDS_QUOTES = re.compile(r'[",\r\n]|\A\s|\s\Z')
# A column joined by NUL: the same test for every field at once (field edges sit next to a NUL).
_COLUMN_NEEDS_QUOTES = re.compile(r'[",\r\n]|\A\s|\s\Z|\s\x00|\x00\s')
_SEP = "\x00"
# What the JSON path rewrites or counts outside string literals: none may occur inside one.
_STRUCTURE_TOKENS = (b"null", b"true", b"false", b"[", b"]", b"{")


class CsvError(InputError, ValueError):
    """A CSV body that does not parse as RFC 4180 or whose rows do not match its header."""


def quote_field(text: str) -> str:
    """``text`` as one CSV field: quoted (inner quotes doubled) only when it has to be."""
    if _FIELD_NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace('"', '""') + '"'


def format_value(value: object, true_text: str = "True", false_text: str = "False") -> str:
    """One value as a CSV field, by its exact type (a subclass is formatted with ``str``); the slow
    path's per-value dispatch."""
    if type(value) is str:
        return quote_field(value)
    if type(value) is float:
        return repr(value) if math.isfinite(value) else ""
    kind = type(value)
    if kind is int:
        return repr(value)
    if value is None:
        return ""
    if kind is bool:
        return true_text if value else false_text
    return quote_field(str(value))


def encode_csv(columns: Sequence[str], rows: Sequence[Sequence[object]], *,
               true_text: str = "True", false_text: str = "False") -> bytes:
    """UTF-8 CSV: a header of ``columns``, then one CRLF-terminated line per row of values."""
    header = ",".join(map(quote_field, columns)).encode()
    if len(columns) == 1 and header == b"":
        header = b'""'
    if not rows:
        return header + CRLF
    if set(map(len, rows)) != {len(columns)}:
        raise ValueError(f"every row must have {len(columns)} values, one per column")
    if not columns:
        return header + CRLF + CRLF * len(rows)
    body = _via_json(rows, len(columns), true_text.encode(), false_text.encode())
    if body is None:
        body = _via_columns(rows, len(columns), true_text, false_text)
    return header + CRLF + body + CRLF


def _via_json(rows: Sequence[Sequence[object]], width: int, true_b: bytes, false_b: bytes) -> bytes | None:
    """The batch's JSON text rewritten as CSV, or None when a value is not a JSON scalar."""
    try:
        data = orjson.dumps(rows)
    except (orjson.JSONEncodeError, TypeError):
        return None
    if b"\\" in data:  # (a one-byte search: memchr)
        data = _unescape(data)
    if b'"' not in data:
        return _rewrite_structure(data, len(rows), width, true_b, false_b)
    # Split on quotes: odd pieces are string contents, even pieces the JSON structure between them.
    # A doubled quote inside a literal yields an empty even piece, which every rewrite leaves empty.
    pieces = data.split(b'"')
    inside = b"\x00".join(pieces[1::2])
    if not any(token in inside for token in _STRUCTURE_TOKENS):
        return _rewrite_structure(data, len(rows), width, true_b, false_b)  # no string can be hit
    structure = _rewrite_structure(b"\x01".join(pieces[0::2]), len(rows), width, true_b, false_b)
    if structure is None:
        return None
    pieces[0::2] = structure.split(b"\x01")
    return b'"'.join(pieces)


def _rewrite_structure(text: bytes, rows: int, width: int, true_b: bytes, false_b: bytes) -> bytes | None:
    """JSON of a list of row lists → CSV lines.

    No string literal in ``text`` may hold a token rewritten or counted here.
    """
    # Exactly one "[" per row plus the outer one, and no "{": every row is a flat list of scalars.
    if text.count(b"[") != rows + 1 or b"{" in text:
        return None
    text = CRLF.join(text[2:-2].split(b"],["))
    if b"n" in text:  # (cheap memchr guards; a split/join beats replace for removal)
        text = (b'""' if width == 1 else b"").join(text.split(b"null"))
    if b"t" in text:
        text = text.replace(b"true", true_b)
    if b"f" in text:
        text = text.replace(b"false", false_b)
    return text


# JSON string escapes orjson emits (the character after the backslash), as text inside a quoted CSV field.
_CSV_FOR_ESCAPE = {b'"': b'""', b"/": b"/", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}


def _unescape(data: bytes) -> bytes:
    """Turn JSON string escapes into their quoted-CSV form (``\\"`` → ``""``, ``\\n`` → LF, …).

    Escapes are rare, so the text is split at backslashes (one C pass) and only the pieces after
    one are looked at. An empty piece is the first half of an escaped backslash.
    """
    pieces = data.split(b"\\")
    out = [pieces[0]]
    at, end = 1, len(pieces)
    while at < end:
        piece = pieces[at]
        if not piece:  # "\\\\": a literal backslash; the next piece follows it unescaped
            out.append(b"\\")
            out.append(pieces[at + 1])
            at += 2
            continue
        lead = piece[:1]
        if lead == b"u":
            out.append(chr(int(piece[1:5], 16)).encode())
            out.append(piece[5:])
        else:
            out.append(_CSV_FOR_ESCAPE[lead])
            out.append(piece[1:])
        at += 1
    return b"".join(out)


def _via_columns(rows: Sequence[Sequence[object]], width: int, true_text: str, false_text: str) -> bytes:
    """The general path: format column by column, then stitch the lines together once."""
    cells = [_column_cells(column, true_text, false_text) for column in zip(*rows, strict=False)]
    if width == 1:
        cells[0] = ['""' if cell == "" else cell for cell in cells[0]]
    return "\r\n".join(map(",".join, zip(*cells, strict=False))).encode()


def _texts(column: Sequence[object]) -> TypeGuard[Sequence[str]]:
    """Whether every value of the column is exactly a string (one C pass)."""
    return set(map(type, column)) <= {str}


def _column_cells(column: Sequence[object], true_text: str, false_text: str) -> Sequence[str]:
    if _texts(column):
        joined = _SEP.join(column)
        if _COLUMN_NEEDS_QUOTES.search(joined) is None:
            return column
        if joined.count(_SEP) == len(column) - 1:
            quoted = '"' + joined.replace('"', '""').replace(_SEP, '"\x00"') + '"'
            return quoted.split(_SEP)
        return [quote_field(value) for value in column]
    numbers = _numeric_cells(column, true_text, false_text)
    if numbers is not None:
        return numbers
    return [format_value(value, true_text, false_text) for value in column]


def _numeric_cells(column: Sequence[object], true_text: str, false_text: str) -> list[str] | None:
    """A column of numbers, booleans and None formatted by orjson; None if it holds anything else."""
    try:
        data = orjson.dumps(column)
    except (orjson.JSONEncodeError, TypeError):
        return None
    inner = data[1:-1]
    if b'"' in inner or b"[" in inner or b"{" in inner:
        return None
    text = inner.decode("ascii")
    if "null" in text:
        text = text.replace("null", "")
    if "true" in text:
        text = text.replace("true", true_text)
    if "false" in text:
        text = text.replace("false", false_text)
    return text.split(",")


def read_csv(body: bytes | str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV body; every row must be as wide as the header.

    Empty fields stay ``""``: what an empty field means is the caller's business. Blank lines are
    skipped. Text without a quote character (what machines usually write) is split directly,
    several times faster than :mod:`csv`; anything quoted goes through :mod:`csv`.
    """
    try:
        text = body.decode("utf-8-sig") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise CsvError(f"CSV body is not UTF-8: {exc}") from exc
    table = _split_unquoted(text) if '"' not in text else None
    if table is None:
        try:
            table = [record for record in csv.reader(io.StringIO(text, newline=""), strict=True) if record]
        except csv.Error as exc:
            raise CsvError(f"malformed CSV: {exc}") from exc
    if not table or not table[0]:
        raise CsvError("CSV body has no header row")
    header, rows = table[0], table[1:]
    width = len(header)
    for number, row in enumerate(rows, start=2):
        if len(row) != width:
            raise CsvError(f"CSV line {number} has {len(row)} fields, the header has {width}")
    return header, rows


def _split_unquoted(text: str) -> list[list[str]] | None:
    """Records of quote-free CSV text; None when a lone CR makes the line structure ambiguous."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    return [line.split(",") for line in text.split("\n") if line]
