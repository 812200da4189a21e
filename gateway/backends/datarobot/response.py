"""Reading a DataRobot response: row ids, JSON explanations, and the CSV layout with its columns
(the decisions are listed in ``gateway.backends.datarobot.codec``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from gateway.backends.codec import (
    Explanation,
    ScoredRow,
    ScoringRequest,
)
from gateway.backends.errors import ResponseDecodeError

BACKEND = "datarobot"
ROW_COLUMN = "__gateway_row"
NO_PREDICTION = "no prediction returned"
EXPLANATION_COLUMN = re.compile(
    r"EXPLANATION_(\d+)_(FEATURE_NAME|STRENGTH|QUALITATIVE_STRENGTH|ACTUAL_VALUE)")


def strength(explanation: Explanation) -> float:
    return abs(explanation["strength"])


def fail(message: str) -> ResponseDecodeError:
    return ResponseDecodeError(BACKEND, message)


_ROW_ID = itemgetter("rowId")


def row_ids(data: list[Any], count: int) -> tuple[list[int], bool]:
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


def json_explanations(entries: Sequence[Mapping[str, Any]], source: Mapping[str, Any],
                       metadata: Mapping[str, Any] | None) -> tuple[list[Explanation], str | None]:
    """The row's explanations by |strength|, and their kind when the row itself shows it."""
    explanations: list[Explanation] = []
    xemp = False
    for entry in entries:
        feature = entry["feature"]
        qualitative = entry.get("qualitativeStrength")
        if qualitative is not None:
            xemp = True
        value = source[feature] if feature in source else entry.get("featureValue")
        explanations.append({"feature": feature, "value": value, "strength": float(entry["strength"]),
                             "qualitative": qualitative})
    explanations.sort(key=strength, reverse=True)
    if xemp:
        return explanations, "xemp"
    if metadata is not None or explanations:
        return explanations, "shap"
    return explanations, None


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
        self.threshold = self.base_value = self.remaining_total = None
        for at, name in enumerate(header):
            match = EXPLANATION_COLUMN.fullmatch(name)
            if at == self.row_key:
                continue
            if match:
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
        self.slots = [(slot["FEATURE_NAME"], slot["STRENGTH"], slot.get("QUALITATIVE_STRENGTH"),
                       slot.get("ACTUAL_VALUE")) for _, slot in sorted(slots.items())
                      if "FEATURE_NAME" in slot and "STRENGTH" in slot]
        self.prediction, self.classes = _prediction_columns(header, predictions)

    def scored_row(self, line: list[str], source: Mapping[str, Any]) -> ScoredRow:
        predicted = line[self.prediction]
        passthrough = {name: line[at] for name, at in self.passthrough} or None
        if predicted == "":
            return ScoredRow(passthrough=passthrough, not_predicted_reason=NO_PREDICTION)
        if self.classes:
            prediction: Any = predicted
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
            value = source[feature] if feature in source else (
                line[actual_at] if actual_at is not None else None)
            explanations.append({"feature": feature, "value": value, "strength": float(line[strength_at]),
                                 "qualitative": qualitative or None})
        explanations.sort(key=strength, reverse=True)
        kind = "xemp" if xemp else "shap" if explanations or self.base_value is not None else None
        return ScoredRow(prediction, probabilities, threshold, explanations, kind, passthrough,
                         _optional_float(line, self.base_value), _optional_float(line, self.remaining_total))


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
