"""The DataRobot codec's side of the four query keys: the query as the seed spells it, and what the
parameters add to a row (per-class explanations, prediction warnings, adjusted predictions, and
any field the gateway does not model) carried into the scored rows instead of being dropped."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from gateway.backends.codec import ScoredRow
from gateway.backends.csvcodec import encode_csv
from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.errors import ResponseDecodeError

URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/5f3c1b2a9d8e7f6a5b4c3d2e/predictions"
ROWS = [{"Channel": "phone", "OpenTickets": 3}, {"Channel": "web", "OpenTickets": 0}]


def codec(**options: Any) -> DataRobotCodec:
    return DataRobotCodec(url=URL, token="t", max_bytes=None, **options)


def raw_query(c: DataRobotCodec) -> str:
    return urlsplit(c.request_url).query


def test_each_parameter_is_spelled_as_the_seed_spells_it() -> None:
    assert raw_query(codec(max_explanations=3, explanation_num_top_classes=2, prediction_warning_enabled=True,
                           exclude_adjusted_predictions=False)) == (
        "maxExplanations=3&explanationNumTopClasses=2&predictionWarningEnabled=true&excludeAdjustedPredictions=false")
    assert raw_query(codec(max_explanations=3, explanation_class_names=("classA", "classB"))) == (
        "maxExplanations=3&explanationClassNames=classA&explanationClassNames=classB")
    assert raw_query(codec(prediction_warning_enabled=False, exclude_adjusted_predictions=True)) == (
        "predictionWarningEnabled=false&excludeAdjustedPredictions=true")


def test_class_names_are_percent_encoded_utf8() -> None:
    query = raw_query(codec(max_explanations=1, explanation_class_names=("très bas/ü", "a+b&c=d")))
    assert query == ("maxExplanations=1&explanationClassNames=tr%C3%A8s%20bas/%C3%BC"
                     "&explanationClassNames=a%2Bb%26c%3Dd")


def test_class_selectors_travel_only_with_explanations_and_never_both() -> None:
    assert raw_query(codec(explanation_num_top_classes=2, explanation_class_names=())) == ""
    assert raw_query(codec(max_explanations=0, explanation_class_names=("a",))) == ""
    with pytest.raises(ValueError, match="mutually exclusive"):
        codec(max_explanations=1, explanation_num_top_classes=2, explanation_class_names=("a",))
    with pytest.raises(ValueError, match="1 to 10"):
        codec(max_explanations=1, explanation_num_top_classes=11)


def decode_json(c: DataRobotCodec, rows: list[dict[str, Any]]) -> list[ScoredRow]:
    request = c.encode(None, ROWS)
    return c.decode(request, 200, "application/json", orjson.dumps({"data": rows}))


def multiclass_row(row_id: int, **more: Any) -> dict[str, Any]:
    return {"rowId": row_id, "prediction": "high",
            "predictionValues": [{"label": "high", "value": 0.6}, {"label": "low", "value": 0.1},
                                 {"label": "medium", "value": 0.3}], **more}


def test_multiclass_explanations_name_their_class() -> None:
    explained = [
        {"label": "high", "feature": "Channel", "featureValue": "phone", "strength": 0.4, "qualitativeStrength": "++"},
        {"label": "medium", "feature": "OpenTickets", "featureValue": 3, "strength": -0.9,
         "qualitativeStrength": "---"},
        {"label": "high", "feature": "OpenTickets", "featureValue": 3, "strength": 0.2, "qualitativeStrength": "+"}]
    rows = decode_json(codec(max_explanations=2, explanation_num_top_classes=2),
                       [multiclass_row(0, predictionExplanations=explained), multiclass_row(1)])
    first = rows[0]
    assert first.explanation_kind == "xemp"
    assert [(e["class"], e["feature"], e["strength"]) for e in first.explanations] == [
        ("medium", "OpenTickets", -0.9), ("high", "Channel", 0.4), ("high", "OpenTickets", 0.2)]
    assert first.explanations[0]["value"] == 3  # the row's own value, as for every explanation
    assert rows[1].explanations == [] and rows[1].prediction == "high"


def test_binary_explanations_keep_their_four_keys() -> None:
    row = {"rowId": 0, "prediction": 1, "predictionThreshold": 0.5,
           "predictionValues": [{"label": 1, "value": 0.7}, {"label": 0, "value": 0.3}],
           "predictionExplanations": [{"label": 1, "feature": "Channel", "featureValue": "phone", "strength": 0.3}]}
    rows = decode_json(codec(max_explanations=1), [row, {**row, "rowId": 1}])
    assert set(rows[0].explanations[0]) == {"feature", "value", "strength", "qualitative"}


def test_warning_adjusted_prediction_and_unmodelled_fields_are_kept() -> None:
    regression = {"predictionValues": [{"label": "Claims", "value": 120.5}], "prediction": 120.5,
                  "deploymentApprovalStatus": "APPROVED"}
    data = [{**regression, "rowId": 0, "isOutlierPrediction": True, "adjustedPrediction": 98.25,
             "adjustedPredictionValues": [{"label": "Claims", "value": 98.25}]},
            {**regression, "rowId": 1, "isOutlierPrediction": False, "humilityAction": "override"}]
    first, second = decode_json(codec(prediction_warning_enabled=True, exclude_adjusted_predictions=False), data)
    assert (first.prediction, first.prediction_warning, first.adjusted_prediction) == (120.5, True, 98.25)
    assert first.vendor_fields == {"adjustedPredictionValues": [{"label": "Claims", "value": 98.25}]}
    assert (second.prediction_warning, second.adjusted_prediction) == (False, None)
    assert second.vendor_fields == {"humilityAction": "override"}  # deploymentApprovalStatus: a constant


def test_rows_without_the_fields_are_unchanged() -> None:
    row = {"predictionValues": [{"label": "Claims", "value": 1.5}], "prediction": 1.5,
           "deploymentApprovalStatus": "APPROVED"}
    rows = decode_json(codec(), [{**row, "rowId": 0}, {**row, "rowId": 1}])
    assert rows == [ScoredRow(1.5), ScoredRow(1.5)]


def test_a_warning_that_is_not_a_boolean_is_a_decode_error() -> None:
    row = {"predictionValues": [{"label": "Claims", "value": 1.5}], "prediction": 1.5, "isOutlierPrediction": "maybe"}
    with pytest.raises(ResponseDecodeError, match="isOutlierPrediction 'maybe' is not a boolean"):
        decode_json(codec(), [{**row, "rowId": 0}, {**row, "rowId": 1}])


def test_csv_warning_column_and_unmodelled_columns() -> None:
    c = codec(response_format="csv", prediction_warning_enabled=True)
    request = c.encode(None, ROWS)
    header = ["Claims_PREDICTION", "IS_OUTLIER_PREDICTION", "HUMILITY_RULE", "DEPLOYMENT_APPROVAL_STATUS",
              "__gateway_row"]
    body = encode_csv(header, [[7.0, "true", "", "APPROVED", 1], [3.5, "False", "rule-2", "APPROVED", 0]])
    rows = c.decode(request, 200, "text/csv", body)
    assert [(r.prediction, r.prediction_warning, r.vendor_fields) for r in rows] == [
        (3.5, False, {"HUMILITY_RULE": "rule-2"}), (7.0, True, None)]
