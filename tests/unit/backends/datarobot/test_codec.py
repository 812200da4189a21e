"""DataRobot codec: request bodies, query and headers as the Prediction API documents them; decoding."""

from __future__ import annotations

import base64
import csv
import gzip
import io
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from gateway.backends.codec import BodyTooLarge
from gateway.backends.csvcodec import encode_csv
from gateway.backends.datarobot.codec import NO_PREDICTION, REALTIME_LIMIT_BYTES, ROW_COLUMN, DataRobotCodec, label_text
from gateway.backends.errors import DataError, FatalError, ResponseDecodeError

URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/5f3c1b2a9d8e7f6a5b4c3d2e/predictions"
FEATURES = ["PlanType", "BaseFee", "HasRenewed", "Note"]
ROWS = [{"PlanType": "Standard", "BaseFee": 50.0, "HasRenewed": True, "Note": 'said "no", twice'},
        {"PlanType": "Premium", "BaseFee": 80.25, "HasRenewed": False, "Note": None}]


def codec(**options) -> DataRobotCodec:
    options.setdefault("url", URL)
    options.setdefault("token", "api-key")
    options.setdefault("max_bytes", 4_000_000)
    return DataRobotCodec(**options)


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def binary_item(row_id: int, yes: float, label_yes=1.0, label_no=0.0, **extra) -> dict:
    item = {"predictionValues": [{"value": yes, "label": label_yes}, {"value": round(1 - yes, 10), "label": label_no}],
            "predictionThreshold": 0.5, "prediction": label_yes if yes >= 0.5 else label_no, "rowId": row_id}
    item.update(extra)
    return item


# -- encoding -------------------------------------------------------------------------------------

def test_csv_request() -> None:
    c = codec(datarobot_key="dr-key")
    request = c.encode(FEATURES, ROWS)
    assert request.method == "POST" and request.url == URL  # nothing asked for: no query at all
    assert request.headers == {"Content-Type": "text/csv; charset=UTF-8", "Accept": "application/json",
                               "Authorization": "Bearer api-key", "DataRobot-Key": "dr-key"}
    assert list(csv.reader(io.StringIO(request.body.decode()))) == [
        FEATURES, ["Standard", "50.0", "True", 'said "no", twice'], ["Premium", "80.25", "False", ""]]
    assert request.rows == 2 and request.source_rows is ROWS and request.explanations is None
    assert c.backend == "datarobot" and c.deployment == "5f3c1b2a9d8e7f6a5b4c3d2e"


def test_json_request_body() -> None:
    request = codec(body_format="json").encode(["BaseFee", "PlanType"], ROWS)
    assert request.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert orjson.loads(request.body) == [{"BaseFee": 50.0, "PlanType": "Standard"},
                                          {"BaseFee": 80.25, "PlanType": "Premium"}]
    rows = [{"a": 1, "b": "y"}, {"b": "x", "a": 2}]
    assert orjson.loads(codec(body_format="json").encode(None, rows).body) == rows
    gaps = [{"a": 1}, {"b": "x"}]  # a missing value is sent as null, as in the CSV body
    assert orjson.loads(codec(body_format="json").encode(None, gaps).body) == [{"a": 1, "b": None},
                                                                             {"a": None, "b": "x"}]


def test_explanation_query() -> None:
    c = codec(max_explanations=5, explanation_algorithm="xemp", threshold_low=0.15, threshold_high=0.5,
              passthrough_columns=["id", "region"])
    assert query(c.encode(FEATURES, ROWS).url) == [
        ("maxExplanations", "5"), ("explanationAlgorithm", "xemp"), ("thresholdLow", "0.15"),
        ("thresholdHigh", "0.5"), ("passthroughColumns", "id"), ("passthroughColumns", "region")]
    assert c.explanations == "xemp"
    c = codec(max_explanations="all", explanation_algorithm="shap", passthrough_columns="all")
    assert query(c.encode(FEATURES, ROWS).url) == [
        ("maxExplanations", "all"), ("explanationAlgorithm", "shap"), ("passthroughColumnsSet", "all")]
    assert codec(max_explanations=3).explanations == "auto"


def test_no_explanations_means_no_explanation_parameters() -> None:
    c = codec(max_explanations=0, explanation_algorithm="shap", threshold_low=0.2)
    assert query(c.encode(FEATURES, ROWS).url) == [] and c.explanations is None


@pytest.mark.parametrize("options", [
    {"max_explanations": "all", "explanation_algorithm": "xemp"},
    {"max_explanations": -1},
    {"max_explanations": "5"},
    {"explanation_algorithm": "lime"},
    {"body_format": "parquet"},
    {"response_format": "xml"},
    {"auth_scheme": "basic"},  # basic needs a username
    {"auth_scheme": "digest"},
    {"url": "https://example.com/predApi/v1.0/predictions"},
])
def test_bad_options(options: dict) -> None:
    with pytest.raises(ValueError):
        codec(**options)


def test_authorization_schemes() -> None:
    assert codec(auth_scheme="token").headers["Authorization"] == "Token api-key"
    basic = codec(auth_scheme="basic", username="me@example.com").headers["Authorization"]
    assert basic == "Basic " + base64.b64encode(b"me@example.com:api-key").decode()
    assert "Authorization" not in codec(token=None).headers
    assert codec(url="https://app.datarobot.com/api/v2/deployments/abc123/predictions").deployment == "abc123"


def test_gzip_caps_the_bytes_sent() -> None:
    rows = [dict(ROWS[0]) for _ in range(2000)]
    raw = codec().encode(FEATURES, rows).body
    c = codec(gzip=True, max_bytes=len(raw) // 4)  # the plain body would not fit, the compressed one does
    request = c.encode(FEATURES, rows)
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.body) == raw and len(request.body) <= len(raw) // 4
    with pytest.raises(BodyTooLarge) as caught:
        codec(gzip=True, max_bytes=100).encode(FEATURES, rows)
    assert caught.value.limit == 100 and caught.value.size == len(request.body)
    with pytest.raises(BodyTooLarge) as caught:
        codec(max_bytes=len(raw) - 1).encode(FEATURES, rows)
    assert caught.value.size == len(raw)


def test_the_uncompressed_body_stays_under_the_realtime_limit() -> None:
    huge = [{"text": "x" * (1024 * 1024)} for _ in range(51)]
    with pytest.raises(BodyTooLarge) as caught:
        codec(gzip=True, max_bytes=None).encode(None, huge)
    assert caught.value.limit == REALTIME_LIMIT_BYTES


def test_csv_responses_get_a_row_column_to_align_by() -> None:
    c = codec(response_format="csv", passthrough_columns=["PlanType"])
    request = c.encode(FEATURES, ROWS)
    assert request.headers["Accept"] == "text/csv"
    assert query(request.url) == [("passthroughColumns", "PlanType"), ("passthroughColumns", ROW_COLUMN)]
    table = list(csv.reader(io.StringIO(request.body.decode())))
    assert table[0] == [*FEATURES, ROW_COLUMN] and [r[-1] for r in table[1:]] == ["0", "1"]
    assert request.row_key_column == ROW_COLUMN and request.columns == tuple(FEATURES)
    json_request = codec(response_format="csv", body_format="json").encode(["BaseFee"], ROWS)
    assert orjson.loads(json_request.body) == [{"BaseFee": 50.0, ROW_COLUMN: 0}, {"BaseFee": 80.25, ROW_COLUMN: 1}]


def test_check_row() -> None:
    c = codec()
    assert c.check_row(ROWS[0]) is None
    assert "dict" in c.check_row({"a": {"b": 1}})
    assert "non-finite" in c.check_row({"a": float("nan")})


# -- decoding JSON --------------------------------------------------------------------------------

def test_binary_rows_aligned_by_row_id() -> None:
    c = codec()
    request = c.encode(FEATURES, ROWS)
    body = orjson.dumps({"data": [binary_item(1, 0.7), binary_item(0, 0.2)]})
    first, second = c.decode(request, 200, "application/json", body)
    assert first.prediction == "0.0" and first.probabilities == {"1.0": 0.2, "0.0": 0.8}
    assert first.threshold == 0.5 and first.explanation_kind is None and first.explanations == []
    assert second.prediction == "1.0"


def test_labels_keep_their_json_spelling() -> None:
    assert [label_text(v) for v in (1.0, 1, "1", "yes", 0.25, True)] == ["1.0", "1", "1", "yes", "0.25", "true"]
    c = codec()
    request = c.encode(FEATURES, ROWS)
    body = orjson.dumps({"data": [binary_item(0, 0.9, 1, 0), binary_item(1, 0.1, 1, 0)]})
    rows = c.decode(request, 200, "application/json", body)
    assert rows[0].probabilities == {"1": 0.9, "0": 0.1} and rows[0].prediction == "1" and rows[1].prediction == "0"
    # The vendor mixes 1 and 0.0 in one row (the SHAP example): the prediction takes its key's spelling.
    body = orjson.dumps({"data": [{"predictionValues": [{"value": 0.3, "label": 1}, {"value": 0.7, "label": 0.0}],
                                   "prediction": 0, "rowId": 0}, binary_item(1, 0.6, 1.0, 0)]})
    rows = c.decode(request, 200, "application/json", body)
    assert rows[0].probabilities == {"1": 0.3, "0.0": 0.7} and rows[0].prediction == "0.0"
    assert rows[1].probabilities == {"1": 0.6, "0.0": 0.4} and rows[1].prediction == "1"


def test_regression_and_multiclass() -> None:
    c = codec()
    request = c.encode(FEATURES, ROWS)
    body = orjson.dumps({"data": [{"predictionValues": [{"value": 5.5, "label": "z"}], "prediction": 5.5, "rowId": 0},
                                  {"predictionValues": [{"value": 9, "label": "z"}], "prediction": 9, "rowId": 1}]})
    rows = c.decode(request, 200, "application/json", body)
    assert [(r.prediction, r.probabilities, r.threshold) for r in rows] == [(5.5, None, None), (9, None, None)]
    values = [{"label": "setosa", "value": 0.1}, {"label": "versicolor", "value": 0.8},
              {"label": "virginica", "value": 0.1}]
    body = orjson.dumps({"data": [{"rowId": i, "prediction": "versicolor", "predictionValues": values,
                                   "deploymentApprovalStatus": "APPROVED"} for i in (1, 0)]})
    rows = c.decode(request, 200, "application/json", body)
    assert rows[0].prediction == "versicolor" and rows[0].probabilities == {"setosa": 0.1, "versicolor": 0.8,
                                                                            "virginica": 0.1}


def test_xemp_explanations() -> None:
    c = codec(max_explanations=3)
    request = c.encode(FEATURES, ROWS)
    entries = [
        {"featureValue": "Standard", "strength": -0.2, "feature": "PlanType", "qualitativeStrength": "--", "label": 1},
        {"featureValue": 50, "strength": 0.9, "feature": "BaseFee", "qualitativeStrength": "+++", "label": 1},
        {"featureValue": "c9", "strength": 0.05, "feature": "Unsent", "qualitativeStrength": "+", "label": 1}]
    body = orjson.dumps({"data": [binary_item(0, 0.6, predictionExplanations=entries),
                                  binary_item(1, 0.1, predictionExplanations=[])]})
    first, second = c.decode(request, 200, "application/json", body)
    assert first.explanation_kind == "xemp"
    assert [(e["feature"], e["value"], e["strength"], e["qualitative"]) for e in first.explanations] == [
        ("BaseFee", 50.0, 0.9, "+++"), ("PlanType", "Standard", -0.2, "--"), ("Unsent", "c9", 0.05, "+")]
    assert second.explanations == [] and second.explanation_kind == "xemp"  # the response's kind
    # no row tells the kind and the deployment's default was asked for: unknown
    body = orjson.dumps({"data": [binary_item(0, 0.6, predictionExplanations=[]),
                                  binary_item(1, 0.1, predictionExplanations=[])]})
    assert [r.explanation_kind for r in c.decode(request, 200, "application/json", body)] == [None, None]


def test_shap_explanations_with_metadata() -> None:
    c = codec(max_explanations="all", explanation_algorithm="shap")
    request = c.encode(FEATURES, ROWS)
    entries = [{"featureValue": "9", "strength": 0.05, "qualitativeStrength": None, "feature": "BaseFee", "label": 1},
               {"featureValue": "0", "strength": -0.4, "feature": "HasRenewed", "label": 1}]
    meta = {"warnings": None, "remainingTotal": -0.089668474, "baseValue": 0.3964062631}
    body = orjson.dumps({"data": [binary_item(0, 0.3, predictionExplanations=entries, shapExplanationsMetadata=meta),
                                  binary_item(1, 0.3, predictionExplanations=[])]})
    first, second = c.decode(request, 200, "application/json", body)
    assert first.explanation_kind == "shap"
    assert [(e["feature"], e["value"], e["strength"], e["qualitative"]) for e in first.explanations] == [
        ("HasRenewed", True, -0.4, None), ("BaseFee", 50.0, 0.05, None)]
    assert first.base_value == 0.3964062631 and first.remaining_total == -0.089668474
    assert second.explanation_kind == "shap"  # asked for SHAP; an empty list is still SHAP's answer


def test_legacy_reason_codes_and_passthrough() -> None:
    c = codec(max_explanations=1, passthrough_columns=["id"])
    request = c.encode(FEATURES, ROWS)
    body = orjson.dumps({"data": [
        binary_item(0, 0.6, reasonCodes=[{"feature": "BaseFee", "featureValue": 50, "strength": 0.4,
                                          "qualitativeStrength": "++", "label": 1}], passthroughValues={"id": "a"}),
        binary_item(1, 0.2, passthroughValues={"id": "b"})]})
    first, second = c.decode(request, 200, "application/json", body)
    assert first.explanations[0]["feature"] == "BaseFee" and first.explanation_kind == "xemp"
    assert first.passthrough == {"id": "a"} and second.passthrough == {"id": "b"}


def test_null_prediction_is_not_silent() -> None:
    c = codec()
    request = c.encode(FEATURES, ROWS[:1])
    body = orjson.dumps({"data": [{"predictionValues": [], "prediction": None, "rowId": 0}]})
    (row,) = c.decode(request, 200, "application/json", body)
    assert row.not_predicted_reason == NO_PREDICTION and row.prediction is None


@pytest.mark.parametrize("data, message", [
    ([binary_item(0, 0.5)], "1 rows, the request had 2"),
    ([binary_item(0, 0.5), binary_item(0, 0.5)], "rowId 0 appears twice"),
    ([binary_item(0, 0.5), binary_item(2, 0.5)], "rowId 2 is outside"),
    ([binary_item(0, 0.5), binary_item(-1, 0.5)], "rowId -1 is outside"),
    ([binary_item(0, 0.5), binary_item(1.5, 0.5)], "rowId 1.5 is outside"),
    ([binary_item(0, 0.5), binary_item(True, 0.5)], "rowId True is outside"),
    ([binary_item(0, 0.5), {"prediction": 1.0, "predictionValues": []}], "no rowId"),
    ([binary_item(0, 0.5), "row"], "malformed"),
])
def test_unalignable_rows_fail_the_whole_batch(data: list, message: str) -> None:
    c = codec()
    request = c.encode(FEATURES, ROWS)
    with pytest.raises(ResponseDecodeError, match=message) as caught:
        c.decode(request, 200, "application/json", orjson.dumps({"data": data}))
    assert caught.value.backend == "datarobot"


@pytest.mark.parametrize("content_type, body, message", [
    ("application/json", orjson.dumps({"data": [binary_item(0, 0.5), binary_item(1, 0.5)]})[:-20], "truncated"),
    ("application/json", b"null", "expected a JSON object"),
    ("application/json", b'{"message": "ok"}', "no 'data' array"),
    ("application/json", b'{"code": 200, "predictions": []}', "legacy api/v1"),
    ("text/html; charset=utf-8", b"<html>502</html>", "unexpected content type"),
])
def test_malformed_bodies(content_type: str, body: bytes, message: str) -> None:
    c = codec()
    with pytest.raises(ResponseDecodeError, match=message):
        c.decode(c.encode(FEATURES, ROWS), 200, content_type, body)


def test_non_2xx_is_classified() -> None:
    c = codec()
    request = c.encode(FEATURES, ROWS)
    with pytest.raises(DataError, match="wd is not allowed key"):
        c.decode(request, 422, "application/json", b"{\"message\": \"'wd': wd is not allowed key\"}")
    with pytest.raises(FatalError, match="Invalid API token"):
        c.decode(request, 401, "application/json", b'{"message": "Invalid API token"}')


# -- decoding CSV ---------------------------------------------------------------------------------

def test_csv_binary_response_with_explanations() -> None:
    c = codec(response_format="csv", max_explanations=2, passthrough_columns=["PlanType"])
    request = c.encode(FEATURES, ROWS)
    header = ["Churned_yes_PREDICTION", "Churned_no_PREDICTION", "Churned_PREDICTION", "THRESHOLD", "POSITIVE_CLASS",
              "EXPLANATION_1_FEATURE_NAME", "EXPLANATION_1_STRENGTH", "EXPLANATION_1_QUALITATIVE_STRENGTH",
              "EXPLANATION_1_ACTUAL_VALUE", "EXPLANATION_2_FEATURE_NAME", "EXPLANATION_2_STRENGTH",
              "EXPLANATION_2_QUALITATIVE_STRENGTH", "EXPLANATION_2_ACTUAL_VALUE", "DEPLOYMENT_APPROVAL_STATUS",
              "PlanType", ROW_COLUMN]
    body = encode_csv(header, [
        (0.2, 0.8, "no", 0.5, "yes", "BaseFee", -0.3, "--", "80.25", "", "", "", "", "APPROVED", "Premium", 1),
        (0.7, 0.3, "yes", 0.5, "yes", "PlanType", 0.1, "+", "Standard", "BaseFee", 0.6, "++", "50", "APPROVED",
         "Standard", 0)])
    first, second = c.decode(request, 200, "text/csv; charset=utf-8", body)
    assert first.prediction == "yes" and first.probabilities == {"yes": 0.7, "no": 0.3} and first.threshold == 0.5
    assert [(e["feature"], e["value"], e["strength"], e["qualitative"]) for e in first.explanations] == [
        ("BaseFee", 50.0, 0.6, "++"), ("PlanType", "Standard", 0.1, "+")]
    assert first.explanation_kind == "xemp" and first.passthrough == {"PlanType": "Standard"}
    assert second.prediction == "no" and [e["feature"] for e in second.explanations] == ["BaseFee"]


def test_csv_shap_regression_and_multiclass() -> None:
    c = codec(response_format="csv", max_explanations=1, explanation_algorithm="shap")
    request = c.encode(FEATURES, ROWS)
    header = ["price_PREDICTION", "EXPLANATION_1_FEATURE_NAME", "EXPLANATION_1_STRENGTH",
              "EXPLANATION_1_QUALITATIVE_STRENGTH", "EXPLANATION_1_ACTUAL_VALUE", "SHAP_BASE_VALUE",
              "SHAP_REMAINING_TOTAL", ROW_COLUMN]
    body = encode_csv(header, [(12.5, "BaseFee", 2.0, None, "50", 10.0, 0.5, 0), (7.0, "", "", "", "", 10.0, -3.0, 1)])
    first, second = c.decode(request, 200, "text/csv", body)
    assert (first.prediction, first.probabilities, first.base_value, first.remaining_total) == (12.5, None, 10.0, 0.5)
    assert first.explanation_kind == "shap" and first.explanations[0]["value"] == 50.0
    assert second.explanations == [] and second.explanation_kind == "shap"
    c = codec(response_format="csv")
    header = ["species_PREDICTION", "species_setosa_PREDICTION", "species_versicolor_PREDICTION", ROW_COLUMN]
    rows = c.decode(c.encode(FEATURES, ROWS), 200, "text/csv",
                    encode_csv(header, [("setosa", 0.9, 0.1, 1), ("versicolor", 0.2, 0.8, 0)]))
    assert rows[0].prediction == "versicolor" and rows[0].probabilities == {"setosa": 0.2, "versicolor": 0.8}


@pytest.mark.parametrize("header, rows, message", [
    (["y_PREDICTION"], [(1.0,), (2.0,)], f"no {ROW_COLUMN} column"),
    (["y_PREDICTION", ROW_COLUMN], [(1.0, 0), (2.0, 0)], "appears twice"),
    (["y_PREDICTION", ROW_COLUMN], [(1.0, 0), (2.0, 5)], "outside"),
    (["y_PREDICTION", ROW_COLUMN], [(1.0, 0)], "1 rows, the request had 2"),
    (["a_PREDICTION", "b_PREDICTION", ROW_COLUMN], [(1, 2, 0), (1, 2, 1)], "cannot tell"),
])
def test_csv_failures(header: list, rows: list, message: str) -> None:
    c = codec(response_format="csv")
    with pytest.raises(ResponseDecodeError, match=message):
        c.decode(c.encode(FEATURES, ROWS), 200, "text/csv", encode_csv(header, rows))


# -- speed ------------------------------------------------------------------------------------------


# -- make_codec -----------------------------------------------------------------------------------

def test_make_codec_from_a_pipeline_config() -> None:
    from gateway.backends.factory import make_codec
    from gateway.config import PipelineConfig

    def pipeline_with(**backend: object) -> PipelineConfig:
        return PipelineConfig.model_validate({
            "name": "churn", "input_topic": "in", "outputs": {"predictions": "out", "dead_letter": "dlq"},
            "backend": {"type": "datarobot", "url": URL, "token": "k", **backend},
            "batching": {"max_rows": 500, "max_bytes": 4_000_000, "linger_ms": 10}})

    pipeline = pipeline_with(datarobot_key="drk", body_format="json", gzip=True, max_explanations="all",
                             explanation_algorithm="shap", threshold_low=0.1, threshold_high=0.9,
                             passthrough_columns="all", response_format="json", auth_scheme="basic", username="me")
    c = make_codec(pipeline)
    assert isinstance(c, DataRobotCodec) and c.explanations == "shap" and c.deployment == "5f3c1b2a9d8e7f6a5b4c3d2e"
    request = c.encode(None, ROWS)
    assert query(request.url) == [("maxExplanations", "all"), ("explanationAlgorithm", "shap"),
                                  ("thresholdLow", "0.1"), ("thresholdHigh", "0.9"), ("passthroughColumnsSet", "all")]
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"me:k").decode()
    assert request.headers["DataRobot-Key"] == "drk" and request.headers["Content-Encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(request.body)) == ROWS
    assert request.passthrough_columns == tuple(FEATURES)
    assert make_codec(pipeline, explain=False).explanations is None
    pipeline = pipeline_with(passthrough_columns=["PlanType"])  # max_explanations and auth_scheme: the defaults
    c = make_codec(pipeline)
    assert query(c.encode(None, ROWS).url) == [("passthroughColumns", "PlanType")] and c.explanations is None
    assert c.headers["Authorization"] == "Bearer k"
