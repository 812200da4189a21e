"""Between Arrow tables (what files hold) and the rows of plain values the codecs send.

* :func:`rows_of` turns columns into one ``dict`` per row, with the values both vendors can carry:
  dates and times become ISO-8601 text (Qlik: "Date features must be in ISO 8601 format"),
  decimals become floats, dictionary-encoded columns their values. Anything else that is not a
  scalar (lists, structs, bytes) is left as it is, so the codec's own check refuses that row with
  the reason instead of the whole file failing.
* :func:`column` builds one Arrow column from Python values that may mix types (a JSON field that
  is a number in one record and text in another): the natural type when there is one, else text.
* :func:`unify` and :func:`conform` give the parts of one output file one schema, whatever each
  part could tell on its own (a column that was all null in one part, ints in one and floats in
  another, a SHAP column a part never saw).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

MAX_DISPLAY_COLUMNS = 200


def rows_of(table: pa.Table, names: Sequence[str]) -> list[dict[str, object]]:
    """One dict per row of ``table``, holding ``names`` in that order."""
    columns = [_python_values(table.column(name)) for name in names]
    if not columns:
        return [{} for _ in range(table.num_rows)]
    return list(map(_row_maker(tuple(names)), *columns))


def _row_maker(names: tuple[str, ...]) -> Callable[..., dict[str, object]]:
    """A function of one value per column returning the row's dict. Built as a dict display
    (``{'a': a0, 'b': a1}``): half the cost of ``dict(zip(names, values))``, and it runs once per
    input row. The names enter the source only as string literals (``repr``)."""
    if len(names) > MAX_DISPLAY_COLUMNS or len(set(names)) != len(names):
        return lambda *values: dict(zip(names, values, strict=True))
    parameters = ", ".join(f"a{i}" for i in range(len(names)))
    entries = ", ".join(f"{name!r}: a{i}" for i, name in enumerate(names))
    maker: Callable[..., dict[str, object]] = eval(f"lambda {parameters}: {{{entries}}}", {"__builtins__": {}})
    return maker


def row_problems(table: pa.Table, names: Sequence[str]) -> dict[int, str]:
    """Why rows cannot be sent, worked out per typed column: the same reasons, for the same
    values, as :func:`gateway.backends.codec.row_problem` finds cell by cell (text read from a
    file is valid Unicode and 64-bit integers always fit, so non-finite floats and values that
    are not scalars are what is left)."""
    problems: dict[int, str] = {}
    for name in names:
        data = table.column(name)
        kind = data.type
        if pa.types.is_floating(kind):
            bad = pc.and_kleene(pc.invert(pc.is_finite(data)), pc.is_valid(data))
            if pc.any(bad).as_py():
                values = data.to_pylist()
                for row in pc.indices_nonzero(bad.combine_chunks()).to_pylist():
                    problems.setdefault(row, f"feature {name!r}: non-finite number {values[row]!r}")
        elif pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind) \
                or pa.types.is_fixed_size_binary(kind):
            what = "bytes" if "binary" in str(kind) else "dict" if pa.types.is_struct(kind) else "list"
            for row in pc.indices_nonzero(pc.is_valid(data).combine_chunks()).to_pylist():
                problems.setdefault(row, f"feature {name!r}: a {what} is not a scalar feature value")
    return problems


def _python_values(chunked: pa.ChunkedArray) -> list[object]:
    kind = chunked.type
    if pa.types.is_dictionary(kind):
        chunked = chunked.cast(kind.value_type)
        kind = chunked.type
    if pa.types.is_decimal(kind):
        return chunked.cast(pa.float64()).to_pylist()  # type: ignore[no-any-return]
    values = chunked.to_pylist()
    if pa.types.is_temporal(kind):
        return [_iso(v) for v in values]
    return values  # type: ignore[no-any-return]


def _iso(value: object) -> object:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def column(values: Sequence[object]) -> pa.Array:
    """An Arrow column of ``values``: their own type when they share one, else their text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_text(v) for v in values], pa.string())


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def unify(schemas: Sequence[pa.Schema], order: Sequence[str] = ()) -> pa.Schema:
    """One schema for every part: columns in first-seen order (``order`` first, for the names it
    lists), null columns typed by the parts that have values, mixed types widened to text."""
    fields: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for item in schema:
            fields.setdefault(item.name, []).append(item.type)
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(fields, key=lambda n: (rank.get(n, len(rank)), list(fields).index(n)))
    return pa.schema([pa.field(name, _common_type(fields[name])) for name in names])


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    typed = [t for t in types if not pa.types.is_null(t)]
    if not typed:
        return pa.string()
    first = typed[0]
    if all(t.equals(first) for t in typed):
        return first
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in typed):
        return pa.float64()
    return pa.string()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order: missing ones null, others cast."""
    arrays = []
    for item in schema:
        if item.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, item.type))
            continue
        data = table.column(item.name)
        if not data.type.equals(item.type):
            data = _cast(data, item.type)
        arrays.append(data)
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(data: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    try:
        return pc.cast(data, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.chunked_array([pa.array([_text(v) for v in data.to_pylist()], target)], target)


def text_only(table: pa.Table) -> pa.Table:
    """``table`` with nested and binary columns as JSON text: what a CSV file can hold."""
    arrays = []
    changed = False
    for data in table.columns:
        kind = data.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind) \
                or pa.types.is_dictionary(kind):
            data = pa.chunked_array([pa.array([_text(v) for v in data.to_pylist()], pa.string())],
                                    pa.string())
            changed = True
        arrays.append(data)
    if not changed:
        return table
    return pa.Table.from_arrays(arrays, names=table.column_names)
