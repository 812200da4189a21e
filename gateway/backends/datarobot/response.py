"""Reading a DataRobot response: row ids, JSON explanations, and the CSV layout with its columns
(the decisions are listed in ``gateway.backends.datarobot.codec``).

Per-row fields beyond the prediction and its explanations (decided here; see
``docs/vendors/datarobot-parameters.md``). The public documentation gives no JSON example of a
prediction warning or of an exposure-adjusted prediction, so the fields follow what the vendor's
batch output documents and its JSON naming habit (the CSV's ``UPPER_SNAKE`` column in camelCase,
as ``DEPLOYMENT_APPROVAL_STATUS`` is ``deploymentApprovalStatus``):

* prediction warning: JSON ``isOutlierPrediction`` / CSV ``IS_OUTLIER_PREDICTION`` (a boolean; CSV
  ``true``/``false``, any case, or ``1``/``0``) → the record's ``prediction_warning``;
* adjusted prediction: JSON ``adjustedPrediction`` (the name the vendor's modelling API uses) →
  ``adjusted_prediction``;
* multiclass explanations: each entry's ``label`` is the class it explains → the explanation's
  ``class``;
* anything else on a row that the gateway does not model → ``vendor_fields``, under the vendor's
  own name (a JSON value as sent, a CSV cell as text; empty CSV cells are left out), so that a
  shape guessed wrong loses nothing. Deployment-wide constants repeated on every row
  (``deploymentApprovalStatus``, ``POSITIVE_CLASS``) are not row data and are not copied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Final, NotRequired, TypedDict, TypeGuard

from gateway.backends.codec import (
    Explanation,
    ScoredRow,
    ScoringRequest,
)
from gateway.backends.errors import ResponseDecodeError
from gateway.json_types import JsonScalar, JsonValue, Row

BACKEND = "datarobot"
ROW_COLUMN = "__gateway_row"
NO_PREDICTION = "no prediction returned"
EXPLANATION_COLUMN = re.compile(
    r"EXPLANATION_(\d+)_(FEATURE_NAME|STRENGTH|QUALITATIVE_STRENGTH|ACTUAL_VALUE)")
WARNING_KEY: Final = "isOutlierPrediction"
WARNING_COLUMN = "IS_OUTLIER_PREDICTION"
ADJUSTED_KEY: Final = "adjustedPrediction"
# Row keys the JSON decoder reads, or deliberately leaves out (deployment-wide constants).
ROW_FIELD_KEYS = frozenset({WARNING_KEY, ADJUSTED_KEY})
KNOWN_ROW_KEYS = frozenset({"predictionValues", "prediction", "rowId", "predictionThreshold", "passthroughValues",
                            "predictionExplanations", "reasonCodes", "shapExplanationsMetadata",
                            "deploymentApprovalStatus"}) | ROW_FIELD_KEYS
# CSV columns that are deployment-wide constants, not row data.
CONSTANT_COLUMNS = frozenset({"POSITIVE_CLASS", "DEPLOYMENT_APPROVAL_STATUS"})
_TRUE_TEXT = frozenset({"true", "1"})
_FALSE_TEXT = frozenset({"false", "0"})


# The JSON response's rows as the vendor documents them. Rows are checked to be objects once per
# response (:func:`prediction_rows`), not field by field on the per-row path: a field of another
# shape fails the decode there (``DataRobotCodec.decode`` turns the KeyError or TypeError into
# ResponseDecodeError), or is passed along as sent.
class PredictionValue(TypedDict):
    label: JsonScalar  # a class name, or the target's name for a regression
    value: float


class ExplanationEntry(TypedDict):
    feature: str
    strength: float
    qualitativeStrength: NotRequired[str | None]  # XEMP only
    featureValue: NotRequired[JsonValue]
    label: NotRequired[JsonScalar]  # multiclass: the class explained


class ShapMetadata(TypedDict, total=False):
    baseValue: float
    remainingTotal: float


class PredictionRow(TypedDict):
    rowId: int
    prediction: JsonScalar
    predictionValues: list[PredictionValue]
    predictionThreshold: NotRequired[float | None]
    passthroughValues: NotRequired[dict[str, object] | None]  # echoed input values, only written out
    predictionExplanations: NotRequired[list[ExplanationEntry] | None]
    reasonCodes: NotRequired[list[ExplanationEntry] | None]  # the legacy name
    shapExplanationsMetadata: NotRequired[ShapMetadata | None]
    isOutlierPrediction: NotRequired[JsonScalar]
    adjustedPrediction: NotRequired[float | None]


def prediction_rows(data: list[JsonValue]) -> TypeGuard[list[PredictionRow]]:
    """Whether every row of a response's ``data`` is an object (one C pass)."""
    return set(map(type, data)) <= {dict}


def strength(explanation: Explanation) -> float:
    return abs(explanation["strength"])


def fail(message: str) -> ResponseDecodeError:
    return ResponseDecodeError(BACKEND, message)


_ROW_ID = itemgetter("rowId")


def row_ids(data: Sequence[PredictionRow], count: int) -> tuple[list[int], bool]:
    """Every row's ``rowId``, and whether they are simply 0..n-1 (as DataRobot sends them).

    Otherwise they must be a permutation of the positions sent: anything else cannot be aligned.
    """
    try:
        ids = list(map(_ROW_ID, data))
    except KeyError:
        raise fail("a row has no rowId") from None
    expected = list(range(count))
    if ids == expected and set(map(type, ids)) <= {int}:
        return ids, True
    seen = bytearray(count)
    for position in ids:
        if type(position) is not int or not 0 <= position < count:
            raise fail(f"rowId {position!r} is outside the {count} rows sent")
        if seen[position]:
            raise fail(f"rowId {position} appears twice")
        seen[position] = 1
    return ids, False


def json_explanations(entries: Sequence[ExplanationEntry], source: Row, metadata: ShapMetadata | None,
                       class_text: Callable[[JsonScalar], str] | None = None) -> tuple[list[Explanation], str | None]:
    """The row's explanations by |strength|, and their kind when the row itself shows it.

    ``class_text`` (multiclass rows): each explanation names the class it explains, its ``label``
    spelled as the row's probabilities spell it. The sort is stable, so among equal strengths the
    server's order (its top class first) stays."""
    explanations: list[Explanation] = []
    append = explanations.append
    xemp = False
    for entry in entries:  # one display per entry: the per-feature cost of every explained row
        feature = entry["feature"]
        qualitative = entry.get("qualitativeStrength")
        if qualitative is not None:
            xemp = True
        value = source[feature] if feature in source else entry.get("featureValue")
        append({"feature": feature, "value": value, "strength": float(entry["strength"]), "qualitative": qualitative})
    if class_text is not None:  # multiclass rows only, off the binary path's loop
        for explanation, entry in zip(explanations, entries, strict=True):
            label = entry.get("label")
            if label is not None:
                explanation["class"] = class_text(label)
    explanations.sort(key=strength, reverse=True)
    if xemp:
        return explanations, "xemp"
    if metadata is not None or explanations:
        return explanations, "shap"
    return explanations, None


def carry_row_fields(row: ScoredRow, item: PredictionRow, unknown: set[str]) -> None:
    """The warning, the adjusted prediction and the unmodelled fields of one JSON row onto ``row``."""
    warning = item.get(WARNING_KEY)
    if warning is not None:
        row.prediction_warning = _flag(warning)
    adjusted = item.get(ADJUSTED_KEY)
    if adjusted is not None:
        row.adjusted_prediction = float(adjusted)
    if unknown:
        kept = {name: item.get(name) for name in unknown if name in item}
        row.vendor_fields = kept or None


def _flag(value: JsonScalar) -> bool:
    if type(value) is bool:
        return value
    text = str(value).strip().lower()
    if text in _TRUE_TEXT:
        return True
    if text in _FALSE_TEXT:
        return False
    raise fail(f"{WARNING_KEY} {value!r} is not a boolean")


class CsvLayout:
    """Column roles of a DataRobot CSV response (contract §3.8), worked out once per response."""

    def __init__(self, header: list[str], request: ScoringRequest) -> None:
        if request.row_key_column is None or request.row_key_column not in header:
            raise fail(f"CSV response has no {ROW_COLUMN} column to align rows by (rows carry no "
                        "rowId in CSV; ask for JSON or let the codec add its row column)")
        self.row_key = header.index(request.row_key_column)
        echoed = set(request.passthrough_columns or ())
        slots: dict[int, dict[str, int]] = {}
        predictions: list[int] = []
        self.passthrough: list[tuple[str, int]] = []
        self.threshold = self.base_value = self.remaining_total = self.warning = None
        self.unknown: list[tuple[str, int]] = []  # unmodelled columns: their cells go to vendor_fields
        for at, name in enumerate(header):
            match = EXPLANATION_COLUMN.fullmatch(name)
            if at == self.row_key or name in CONSTANT_COLUMNS:
                continue
            if name == WARNING_COLUMN:
                self.warning = at
            elif match:
                slots.setdefault(int(match.group(1)), {})[match.group(2)] = at
            elif name == "THRESHOLD":
                self.threshold = at
            elif name == "SHAP_BASE_VALUE":
                self.base_value = at
            elif name == "SHAP_REMAINING_TOTAL":
                self.remaining_total = at
            elif name in echoed:
                self.passthrough.append((name, at))
            elif name.endswith("_PREDICTION"):
                predictions.append(at)
            else:
                self.unknown.append((name, at))
        self.slots = [(slot["FEATURE_NAME"], slot["STRENGTH"], slot.get("QUALITATIVE_STRENGTH"),
                       slot.get("ACTUAL_VALUE")) for _, slot in sorted(slots.items())
                      if "FEATURE_NAME" in slot and "STRENGTH" in slot]
        self.prediction, self.classes = _prediction_columns(header, predictions)

    def scored_row(self, line: list[str], source: Row) -> ScoredRow:
        predicted = line[self.prediction]
        passthrough: dict[str, object] | None = {name: line[at] for name, at in self.passthrough} or None
        if predicted == "":
            return ScoredRow(passthrough=passthrough, not_predicted_reason=NO_PREDICTION)
        prediction: str | float
        probabilities: dict[str, float] | None
        if self.classes:
            prediction = predicted
            probabilities = {label: float(line[at]) for label, at in self.classes}
        else:
            prediction, probabilities = float(predicted), None
        threshold = _optional_float(line, self.threshold)
        explanations: list[Explanation] = []
        xemp = False
        for feature_at, strength_at, qualitative_at, actual_at in self.slots:
            feature = line[feature_at]
            if not feature:
                continue
            qualitative = line[qualitative_at] if qualitative_at is not None else ""
            xemp = xemp or bool(qualitative)
            value: object = source[feature] if feature in source else (
                line[actual_at] if actual_at is not None else None)
            explanations.append({"feature": feature, "value": value, "strength": float(line[strength_at]),
                                 "qualitative": qualitative or None})
        explanations.sort(key=strength, reverse=True)
        kind = "xemp" if xemp else "shap" if explanations or self.base_value is not None else None
        row = ScoredRow(prediction, probabilities, threshold, explanations, kind, passthrough,
                        _optional_float(line, self.base_value), _optional_float(line, self.remaining_total))
        if self.warning is not None and line[self.warning] != "":
            row.prediction_warning = _flag(line[self.warning])
        if self.unknown:
            row.vendor_fields = {name: line[at] for name, at in self.unknown if line[at] != ""} or None
        return row


def _optional_float(line: list[str], at: int | None) -> float | None:
    if at is None or line[at] == "":
        return None
    return float(line[at])


def _prediction_columns(header: list[str], columns: list[int]) -> tuple[int, list[tuple[str, int]]]:
    """The ``<target>_PREDICTION`` column and the ``<target>_<class>_PREDICTION`` ones.

    The target column is the one whose prefix every other prediction column shares.
    """
    names = {at: header[at][: -len("_PREDICTION")] for at in columns}
    targets = [at for at, stem in names.items()
               if all(other == at or names[other].startswith(stem + "_") for other in columns)]
    if len(targets) != 1:
        raise fail(f"cannot tell the <target>_PREDICTION column among {[header[at] for at in columns]}")
    target = targets[0]
    skip = len(names[target]) + 1
    return target, [(names[at][skip:], at) for at in columns if at != target]
