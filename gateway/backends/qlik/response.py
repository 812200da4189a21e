"""Reading a Qlik Predict response: the table (JSON or CSV), each column's role, and the rows
aligned back to the request (the decisions are listed in ``gateway.backends.qlik.codec``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeAlias, TypeGuard

from gateway.backends.codec import (
    Explanation,
    ScoredRow,
    ScoringRequest,
)
from gateway.backends.csvcodec import CsvError, read_csv
from gateway.backends.errors import ResponseDecodeError, json_object
from gateway.json_types import JsonValue

BACKEND = "qlik"
ROW_INDEX = "automl_row_index"
NOT_PREDICTED_REASON = "not_predicted_reason"
NO_PREDICTION = "no prediction returned"

# A row of the response table: JSON values (or CSV text, an empty field as None).
Cells: TypeAlias = Sequence[JsonValue]
# A cell read as a number (probability, SHAP strength): a JSON number, or a number in a string that
# ``float`` reads. Cells are checked per column (``_typed_numbers``), never one by one on the per-row
# path, so this stays what orjson returns (untyped); a cell ``float`` refuses fails the decode
# (``QlikCodec.decode`` turns its TypeError or ValueError into ResponseDecodeError).
NumberCell: TypeAlias = Any


def _fail(message: str) -> ResponseDecodeError:
    return ResponseDecodeError(BACKEND, message)


def read_table(content_type: str, body: bytes) -> tuple[list[str], list[JsonValue], list[list[JsonValue]]]:
    """Column names, declared column types (None when unknown) and row cells of a response."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        try:
            header, lines = read_csv(body)
        except CsvError as exc:
            raise _fail(str(exc)) from exc
        cells: list[list[JsonValue]] = [[cell if cell != "" else None for cell in line] for line in lines]
        return header, [None] * len(header), cells
    if media and "json" not in media:
        raise _fail(f"unexpected content type {content_type!r}: {body[:200]!r}")
    doc = json_object(BACKEND, body)
    table = doc
    if "data" in doc:
        data = doc["data"]
        if not isinstance(data, dict) or not isinstance(attributes := data.get("attributes"), dict):
            raise _fail("'data' has no 'attributes' object")
        if data.get("type", "realtime-prediction") != "realtime-prediction":
            raise _fail(f"unexpected data.type {data.get('type')!r}")
        table = attributes
    schema, rows = table.get("schema"), table.get("rows")
    if not isinstance(schema, list) or not isinstance(rows, list):
        raise _fail("response has no schema/rows table")
    columns = [column for column in schema if isinstance(column, dict)]
    if len(columns) != len(schema):
        raise _fail("malformed response: schema entries must be objects")
    names = [column["name"] for column in columns]
    texts = [name for name in names if isinstance(name, str)]
    if len(texts) != len(names):
        raise _fail("schema names must be strings")
    if not _lists(rows):
        raise _fail("malformed response: rows must be arrays")
    return texts, [column.get("type") for column in columns], rows


def _lists(rows: list[JsonValue]) -> TypeGuard[list[list[JsonValue]]]:
    """Whether every row is an array (one C pass)."""
    return set(map(type, rows)) <= {list}


def _ints(values: list[JsonValue]) -> TypeGuard[list[int]]:
    """Whether every value is an integer (one C pass; a bool is not one)."""
    return set(map(type, values)) <= {int}


def _key(value: object) -> object:
    """An index value in a form equal across typed and stringified cells (``"7"`` == ``7`` == ``7.0``)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return value
        return number if number == number else value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _position(value: JsonValue) -> int:
    """An ``automl_row_index`` cell as an int (typed, float-typed or stringified)."""
    if type(value) is int:
        return value
    if not isinstance(value, (str, int, float)):  # (float() refuses it)
        raise _fail(f"malformed response: {ROW_INDEX} {value!r} is not a number")
    number = float(value)
    if not number.is_integer():
        raise _fail(f"{ROW_INDEX} {value!r} is not a whole number")
    return int(number)


def _number(value: JsonValue) -> JsonValue:
    """A regression prediction as a float when it is a number in a string (or a bool, as float reads
    it); anything else as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if type(value) is bool:
        return float(value)
    return value


def _none(row: Cells) -> None:
    return None


def _dict_maker(keys: list[str], columns: list[int],
                convert: bool = False) -> Callable[[Cells], dict[str, NumberCell]]:
    """A function building ``{key: row[column]}`` for one row; a dict display for the common widths.

    Building a two-entry dict with a display is several times cheaper than ``dict(zip(...))``, and
    this runs once per row. ``convert`` reads every cell with ``float`` (stringified numbers).
    """
    if convert:
        getter = itemgetter(*columns) if len(columns) > 1 else itemgetter(slice(columns[0], columns[0] + 1))
        return lambda row: dict(zip(keys, map(float, getter(row)), strict=False))
    if len(keys) == 1:
        (k0,), (c0,) = keys, columns
        return lambda row: {k0: row[c0]}
    if len(keys) == 2:
        (k0, k1), (c0, c1) = keys, columns
        return lambda row: {k0: row[c0], k1: row[c1]}
    if len(keys) == 3:
        (k0, k1, k2), (c0, c1, c2) = keys, columns
        return lambda row: {k0: row[c0], k1: row[c1], k2: row[c2]}
    getter = itemgetter(*columns)
    return lambda row: dict(zip(keys, getter(row), strict=False))


def _cells(columns: list[int]) -> Callable[[Cells], Sequence[NumberCell]]:
    """A row's cells at ``columns``, as one C call (``itemgetter`` of one column is no sequence)."""
    if len(columns) > 1:
        return itemgetter(*columns)
    return lambda row: [row[at] for at in columns]


@dataclass(slots=True)
class ResponseLayout:
    """What each response column means; worked out once per response from the column names."""

    width: int
    target: str
    prediction: int
    numeric_prediction: bool
    classes: list[str]
    class_columns: list[int]
    shap: list[tuple[str, int]]
    row_index: int | None
    key: int | None
    reason: int | None
    passthrough_names: list[str]
    passthrough_columns: list[int]

    @classmethod
    def of(cls, names: list[str], types: Sequence[JsonValue], request: ScoringRequest) -> ResponseLayout:
        sent = set(request.columns)
        index_column = request.row_key_column
        row_index = key = reason = None
        predicted: list[int] = []
        shap: list[tuple[str, int]] = []
        rest: list[int] = []
        passthrough: list[int] = []
        for at, name in enumerate(names):
            if name == ROW_INDEX:
                row_index = at
            elif name == NOT_PREDICTED_REASON:
                reason = at
            elif name == index_column:
                key = at
                passthrough.append(at)
            elif name in sent:
                passthrough.append(at)
            elif name.endswith("_predicted"):
                predicted.append(at)
            elif name.endswith("_SHAP"):
                shap.append((name[:-5], at))
            else:
                rest.append(at)
        if len(predicted) != 1:
            found = [names[at] for at in predicted]
            raise _fail(f"expected one <target>_predicted column, found {found or 'none'}")
        prediction = predicted[0]
        target = names[prediction][: -len("_predicted")]
        prefix = target + "_"
        classes, class_columns = [], []
        for at in rest:
            if names[at].startswith(prefix):
                classes.append(names[at][len(prefix):])
                class_columns.append(at)
            else:
                passthrough.append(at)
        passthrough.sort()
        numeric = not classes and types[prediction] != "categorical"
        return cls(len(names), target, prediction, numeric, classes, class_columns, shap, row_index,
                   key, reason, [names[at] for at in passthrough], passthrough)

    def positions(self, rows: Sequence[Cells], request: ScoringRequest) -> list[int]:
        """The input position of every response row; an error when any row cannot be placed."""
        count = request.rows
        if len(rows) != count:
            raise _fail(f"response has {len(rows)} rows, the request had {count}")
        if self.row_index is not None:
            at = self.row_index
            cells = [row[at] for row in rows]
            positions = cells if _ints(cells) else list(map(_position, cells))
            where = ROW_INDEX
        elif self.key is not None and request.row_keys is not None:
            lookup = {_key(value): place for place, value in enumerate(request.row_keys)}
            if len(lookup) != count:
                raise _fail(f"index column {request.row_key_column!r} repeats a value within the "
                            "batch and the response has no automl_row_index: rows cannot be aligned")
            at = self.key
            try:
                positions = [lookup[_key(row[at])] for row in rows]
            except KeyError as exc:
                raise _fail(f"index value {exc.args[0]!r} in the response was not sent") from exc
            where = f"index column {request.row_key_column!r}"
        else:
            raise _fail("response has neither automl_row_index nor the index column: rows cannot "
                        "be aligned to the request")
        if sorted(positions) != list(range(count)):
            _explain_bad_positions(positions, count, where)
        return positions

    def scored_rows(self, rows: Sequence[Cells], request: ScoringRequest) -> list[ScoredRow]:
        widths = set(map(len, rows))
        if widths - {self.width}:
            raise _fail(f"rows of {sorted(widths - {self.width})} cells, the schema has {self.width}")
        positions = self.positions(rows, request)
        prediction_at, reason_at = self.prediction, self.reason
        classes = self.classes
        class_set = set(classes)
        probabilities_of = None
        if classes:
            probabilities_of = _dict_maker(classes, self.class_columns,
                                           convert=not self._typed_numbers(rows, self.class_columns))
        passthrough_of = (_dict_maker(self.passthrough_names, self.passthrough_columns)
                          if self.passthrough_names else _none)
        shap = self.shap
        features = [feature for feature, _ in shap]
        shap_cells = _cells([at for _, at in shap])
        sources = request.source_rows
        numeric = self.numeric_prediction
        out: list[ScoredRow | None] = [None] * len(rows)
        for row, position in zip(rows, positions, strict=False):
            predicted = row[prediction_at]
            if predicted is None or (reason_at is not None and row[reason_at]):
                reason = row[reason_at] if reason_at is not None else None
                out[position] = ScoredRow(passthrough=passthrough_of(row),
                                          not_predicted_reason=str(reason) if reason else NO_PREDICTION)
                continue
            probabilities: dict[str, float] | None
            if probabilities_of is not None:
                probabilities = probabilities_of(row)
                if type(predicted) is not str:
                    predicted = _label(predicted, class_set)
            else:
                probabilities = None
                if numeric:
                    predicted = _number(predicted)
            if shap:
                source = sources[position] if sources else {}
                # by |strength| descending, ties in column order: tuples sort without a key call
                ranked = sorted([(-abs(strength := float(cell)), k, strength)
                                 for k, cell in enumerate(shap_cells(row)) if cell is not None])
                explanations: list[Explanation] = [
                    {"feature": (feature := features[k]), "value": source.get(feature), "strength": strength,
                     "qualitative": None} for _, k, strength in ranked]
                out[position] = ScoredRow(predicted, probabilities, None, explanations, "shap",
                                          passthrough_of(row))
            else:
                out[position] = ScoredRow(predicted, probabilities, None, [], None, passthrough_of(row))
        return out  # type: ignore[return-value]  # every slot filled: positions are a permutation

    @staticmethod
    def _typed_numbers(rows: Sequence[Cells], columns: list[int]) -> bool:
        """Whether these columns hold JSON numbers (or nulls) only, so no conversion is needed."""
        allowed = {float, int, type(None)}
        return all(set(map(type, [row[at] for row in rows])) <= allowed for at in columns)


def _explain_bad_positions(positions: list[int], count: int, where: str) -> None:
    seen: set[int] = set()
    for position in positions:
        if not 0 <= position < count:
            raise _fail(f"{where} value {position} is outside the {count} rows sent")
        if position in seen:
            raise _fail(f"{where} value {position} appears twice")
        seen.add(position)
    raise _fail(f"{where} values do not cover the rows sent")  # unreachable with len == count


def _label(value: JsonValue, classes: set[str]) -> str:
    """A typed class label spelled as its probability column spells it."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        return text if text in classes else str(value)
    text = str(value)
    if text not in classes and isinstance(value, float) and value.is_integer():
        whole = str(int(value))
        if whole in classes:
            return whole
    return text
