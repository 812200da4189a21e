"""Qlik Predict codec: the request as the API documents it, and every way a response can go wrong."""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from gateway.backends.codec import BodyTooLarge, ScoredRow
from gateway.backends.csvcodec import encode_csv
from gateway.backends.errors import DataError, FatalError, ResponseDecodeError, RetryableError
from gateway.backends.qlik.codec import QlikCodec
from gateway.backends.qlik.response import NO_PREDICTION

TENANT = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments"
URL = f"{TENANT}/c35f4b70-3ce4-4a30-b62b-2aef16943bc4/realtime-predictions/actions/run"
ALIAS_URL = f"{TENANT}/dep-9/aliases/canary/realtime-predictions/actions/run"
FEATURES = ["PlanType", "NumberOfPenalties", "HasRenewed", "BaseFee", "ServiceTickets",
            "AdditionalFeatureSpend", "ServiceRating", "Promotion"]
CUSTOMERS = [
    {"PlanType": "Standard", "NumberOfPenalties": 1, "HasRenewed": True, "BaseFee": 50.0, "ServiceTickets": 5,
     "AdditionalFeatureSpend": 15.5, "ServiceRating": 4.2, "Promotion": True},
    {"PlanType": "Premium", "NumberOfPenalties": 3, "HasRenewed": False, "BaseFee": 80.0, "ServiceTickets": 2,
     "AdditionalFeatureSpend": 25.0, "ServiceRating": 3.8, "Promotion": False},
]


def codec(**options) -> QlikCodec:
    options.setdefault("url", URL)
    options.setdefault("token", "secret-key")
    options.setdefault("max_bytes", 4_000_000)
    return QlikCodec(**options)


def response(schema: list[tuple[str, str | None]], rows: list[list], envelope: bool = True) -> bytes:
    table = {"schema": [{"name": n, "type": t} if t else {"name": n} for n, t in schema], "rows": rows}
    return orjson.dumps({"data": {"type": "realtime-prediction", "attributes": table}} if envelope else table)


BINARY = [("automl_row_index", "numeric"), ("Churned_predicted", "categorical"), ("Churned_no", "numeric"),
          ("Churned_yes", "numeric"), ("not_predicted_reason", "categorical")]


# -- encoding -------------------------------------------------------------------------------------

def test_request_as_the_tutorial_sends_it() -> None:
    c = codec(include_shap=True, include_not_predicted_reason=True)
    request = c.encode(FEATURES, CUSTOMERS)
    assert request.method == "POST"
    assert request.url.startswith(URL + "?")
    assert dict(parse_qsl(urlsplit(request.url).query)) == {"includeShap": "true",
                                                            "includeNotPredictedReason": "true"}
    assert request.headers == {"Content-Type": "application/json", "Accept": "application/json",
                               "Authorization": "Bearer secret-key"}
    assert orjson.loads(request.body) == {
        "schema": [{"name": name} for name in FEATURES],
        "rows": [["Standard", 1, True, 50.0, 5, 15.5, 4.2, True], ["Premium", 3, False, 80.0, 2, 25.0, 3.8, False]]}
    assert request.rows == 2 and request.columns == tuple(FEATURES)
    assert request.source_rows is CUSTOMERS
    assert request.explanations == "shap" and c.explanations == "shap"
    assert c.backend == "qlik" and c.deployment == "c35f4b70-3ce4-4a30-b62b-2aef16943bc4"


def test_off_flags_are_not_sent_and_index_is() -> None:
    c = codec(include_source=True, index_column="customer_id")
    request = c.encode(FEATURES, [dict(CUSTOMERS[0], customer_id="a1")])
    assert parse_qsl(urlsplit(request.url).query) == [("includeSource", "true"), ("index", "customer_id")]
    assert c.explanations is None
    # the index column was not among the features: it is added so Qlik can echo it
    assert [s["name"] for s in orjson.loads(request.body)["schema"]][-1] == "customer_id"
    assert request.row_keys == ["a1"] and request.row_key_column == "customer_id"


def test_stringify_values() -> None:
    request = codec(stringify_values=True).encode(["a", "b", "c", "d", "e"],
                                                   [{"a": 1, "b": 0.1, "c": True, "d": None, "e": "x"},
                                                    {"a": -7, "b": 1e20, "c": False, "e": ""}])
    assert orjson.loads(request.body)["rows"] == [["1", "0.1", "true", None, "x"], ["-7", "1e+20", "false", None, ""]]


def test_feature_union_in_first_seen_order_and_missing_as_null() -> None:
    request = codec().encode(None, [{"b": 1, "a": 2}, {"c": 3, "a": 4}])
    body = orjson.loads(request.body)
    assert [s["name"] for s in body["schema"]] == ["b", "a", "c"]
    assert body["rows"] == [[1, 2, None], [None, 4, 3]]


def test_configured_features_fix_order_and_drop_extras() -> None:
    body = orjson.loads(codec().encode(["y", "x"], [{"x": 1, "y": 2, "z": 3}]).body)
    assert body == {"schema": [{"name": "y"}, {"name": "x"}], "rows": [[2, 1]]}


def test_csv_accept_and_no_token() -> None:
    request = codec(response_format="csv", token=None).encode(FEATURES, CUSTOMERS)
    assert request.headers == {"Content-Type": "application/json", "Accept": "text/csv"}


def test_alias_and_deprecated_urls_give_the_deployment() -> None:
    assert codec(url=ALIAS_URL).deployment == "dep-9"
    assert codec(url="https://t/api/v1/automl-deployments/old-1/realtime-predictions").deployment == "old-1"
    with pytest.raises(ValueError):
        codec(url="https://t/api/v1/ml/predict")
    with pytest.raises(ValueError):
        codec(response_format="parquet")


def test_body_too_large_reports_size_and_limit() -> None:
    c = codec(max_bytes=300)
    rows = [dict(CUSTOMERS[0]) for _ in range(10)]
    with pytest.raises(BodyTooLarge) as caught:
        c.encode(FEATURES, rows)
    assert caught.value.limit == 300 and caught.value.size > 300
    assert len(c.encode(FEATURES, rows[:1]).body) <= 300


def test_empty_batch_encodes() -> None:
    request = codec().encode(None, [])
    assert orjson.loads(request.body) == {"schema": [], "rows": []} and request.rows == 0


@pytest.mark.parametrize("row, problem", [
    ({"a": {"nested": 1}}, "dict"),
    ({"a": [1, 2]}, "list"),
    ({"a": math.nan}, "non-finite"),
    ({"a": -math.inf}, "non-finite"),
    ({"a": 2**70}, "64 bits"),
    ({"a": "bad \ud800 text"}, "surrogate"),
    ({"a": b"bytes"}, "bytes"),
])
def test_check_row_refuses_unsendable_values(row: dict, problem: str) -> None:
    reason = codec().check_row(row)
    assert reason is not None and problem in reason and "'a'" in reason


def test_check_row_accepts_scalars_and_requires_the_index() -> None:
    assert codec().check_row({"a": 1, "b": 2.5, "c": "é", "d": None, "e": True}) is None
    c = codec(index_column="id")
    assert "index column 'id'" in c.check_row({"a": 1})
    assert "index column 'id'" in c.check_row({"a": 1, "id": None})
    assert c.check_row({"a": 1, "id": 0}) is None
    assert "not a JSON object" in codec().check_row(["a"])  # type: ignore[arg-type]


# -- decoding -------------------------------------------------------------------------------------

def test_typed_binary_response_aligned_by_row_index() -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    body = response(BINARY, [[1, "yes", 0.42, 0.58, None], [0, "no", 0.57, 0.43, None]])  # out of order
    first, second = c.decode(request, 200, "application/json", body)
    assert first == ScoredRow(prediction="no", probabilities={"no": 0.57, "yes": 0.43})
    assert second.prediction == "yes" and second.probabilities == {"no": 0.42, "yes": 0.58}
    assert second.explanations == [] and second.explanation_kind is None and second.predicted


def test_stringified_cells_are_read_as_numbers() -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    body = response([(n, None) for n, _ in BINARY],
                    [["0", "no", "0.57", "0.43", None], ["1.0", "yes", "0.42", "0.58", None]])
    rows = c.decode(request, 200, "application/json; charset=utf-8", body)
    assert rows[0].probabilities == {"no": 0.57, "yes": 0.43} and rows[1].prediction == "yes"


def test_csv_response() -> None:
    c = codec(response_format="csv", include_shap=True, include_not_predicted_reason=True)
    request = c.encode(["PlanType", "BaseFee"], CUSTOMERS)
    columns = ["automl_row_index", "Churned_predicted", "Churned_no", "Churned_yes", "PlanType_SHAP",
               "BaseFee_SHAP", "not_predicted_reason"]
    body = encode_csv(columns, [(1, None, None, None, None, None, "value 'x, y' not usable"),
                                (0, "no", 0.6, 0.4, -0.1, 0.3, None)])
    first, second = c.decode(request, 200, "text/csv; charset=utf-8", body)
    assert first.prediction == "no" and first.probabilities == {"no": 0.6, "yes": 0.4}
    assert [(e["feature"], e["value"], e["strength"]) for e in first.explanations] == [("BaseFee", 50.0, 0.3),
                                                                                ("PlanType", "Standard", -0.1)]
    assert second.not_predicted_reason == "value 'x, y' not usable" and not second.predicted


def test_deprecated_root_level_table() -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    rows = c.decode(request, 200, "application/json", response(BINARY, [[0, "no", 0.5, 0.5, None],
                                                                         [1, "yes", 0.1, 0.9, None]], envelope=False))
    assert [r.prediction for r in rows] == ["no", "yes"]


def test_shap_explanations_carry_input_values_sorted_by_magnitude() -> None:
    c = codec(include_shap=True)
    request = c.encode(FEATURES, CUSTOMERS)
    schema = BINARY[:4] + [(f"{f}_SHAP", "numeric") for f in ("PlanType", "BaseFee", "Promotion")]
    body = response(schema, [[0, "no", 0.6, 0.4, -0.05, 0.3, -0.2], [1, "yes", 0.3, 0.7, 0.01, None, 0.02]])
    first, second = c.decode(request, 200, "application/json", body)
    assert first.explanation_kind == "shap"
    assert [(e["feature"], e["value"], e["strength"], e["qualitative"]) for e in first.explanations] == [
        ("BaseFee", 50.0, 0.3, None), ("Promotion", True, -0.2, None), ("PlanType", "Standard", -0.05, None)]
    assert [e["feature"] for e in second.explanations] == ["Promotion", "PlanType"]  # null SHAP cell skipped


def test_rows_without_prediction_are_never_silent() -> None:
    c = codec(include_not_predicted_reason=True)
    request = c.encode(FEATURES, [*CUSTOMERS, CUSTOMERS[0]])
    body = response(BINARY, [[0, None, None, None, "BaseFee: 'abc' is not numeric"],
                             [1, None, None, None, None], [2, "no", 0.9, 0.1, None]])
    rows = c.decode(request, 200, "application/json", body)
    assert rows[0].not_predicted_reason == "BaseFee: 'abc' is not numeric" and rows[0].prediction is None
    assert rows[1].not_predicted_reason == NO_PREDICTION
    assert rows[2].predicted
    # includeNotPredictedReason off: no reason column at all
    body = response(BINARY[:4], [[0, None, None, None], [1, "yes", 0.2, 0.8], [2, "no", 0.9, 0.1]])
    assert c.decode(request, 200, "application/json", body)[0].not_predicted_reason == NO_PREDICTION


def test_regression_and_multiclass() -> None:
    c = codec()
    request = c.encode(["x"], [{"x": 1}, {"x": 2}])
    body = response([("automl_row_index", "numeric"), ("price_predicted", "numeric")], [[0, 12.5], [1, "7.25"]])
    assert [(r.prediction, r.probabilities) for r in c.decode(request, 200, "application/json", body)] == \
        [(12.5, None), (7.25, None)]
    schema = [("automl_row_index", "numeric"), ("species_predicted", "categorical"), ("species_setosa", "numeric"),
              ("species_versicolor", "numeric"), ("species_virginica", "numeric")]
    body = response(schema, [[1, "setosa", 0.8, 0.1, 0.1], [0, "virginica", 0.1, 0.2, 0.7]])
    rows = c.decode(request, 200, "application/json", body)
    assert rows[0].probabilities == {"setosa": 0.1, "versicolor": 0.2, "virginica": 0.7}
    assert rows[1].prediction == "setosa"


def test_numeric_class_labels_are_spelled_like_their_columns() -> None:
    c = codec()
    request = c.encode(["x"], [{"x": 1}, {"x": 2}])
    schema = [("automl_row_index", "numeric"), ("is_churn_predicted", "categorical"), ("is_churn_0", "numeric"),
              ("is_churn_1", "numeric")]
    rows = c.decode(request, 200, "application/json", response(schema, [[0, 1, 0.3, 0.7], [1, 0.0, 0.9, 0.1]]))
    assert [r.prediction for r in rows] == ["1", "0"]
    assert rows[0].probabilities == {"0": 0.3, "1": 0.7}


def test_index_column_alignment_and_source_passthrough() -> None:
    c = codec(index_column="customer_id", include_source=True)
    batch = [dict(CUSTOMERS[0], customer_id=7), dict(CUSTOMERS[1], customer_id=8)]
    request = c.encode(["PlanType", "BaseFee"], batch)
    schema = [("customer_id", "numeric"), ("PlanType", "categorical"), ("BaseFee", "numeric"), *BINARY[1:4],
              ("model_version", None)]
    body = response(schema, [["8", "Premium", 80.0, "yes", 0.3, 0.7, "v3"],
                             [7.0, "Standard", 50.0, "no", 0.8, 0.2, "v3"]])
    first, second = c.decode(request, 200, "application/json", body)
    assert first.passthrough == {"customer_id": 7.0, "PlanType": "Standard", "BaseFee": 50.0, "model_version": "v3"}
    assert second.prediction == "yes" and second.passthrough["customer_id"] == "8"


def test_the_third_party_column_layout() -> None:
    """automl_row_index, source columns (incl. non-features and the target), prediction, classes, SHAP, reason."""
    names = ["automl_row_index", "age", "country", "customer_id", "is_churn", "is_churn_predicted", "is_churn_0",
             "is_churn_1", "country_SHAP", "age_SHAP", "not_predicted_reason"]
    c = codec(include_source=True, include_shap=True, include_not_predicted_reason=True)
    sent = [{"age": 40, "country": "France", "customer_id": "c1", "is_churn": 0}]
    request = c.encode(None, sent)
    body = response([(n, None) for n in names], [[0, 40, "France", "c1", 0, "0", 0.8, 0.2, 0.05, -0.25, None]])
    (row,) = c.decode(request, 200, "application/json", body)
    assert row.prediction == "0" and row.probabilities == {"0": 0.8, "1": 0.2}
    assert row.passthrough == {"age": 40, "country": "France", "customer_id": "c1", "is_churn": 0}
    assert [(e["feature"], e["value"]) for e in row.explanations] == [("age", 40), ("country", "France")]


@pytest.mark.parametrize("rows, message", [
    ([[0, "no", 0.5, 0.5, None]], "1 rows, the request had 2"),
    ([[0, "no", 0.5, 0.5, None], [0, "no", 0.5, 0.5, None]], "appears twice"),
    ([[0, "no", 0.5, 0.5, None], [2, "no", 0.5, 0.5, None]], "outside the 2 rows"),
    ([[0, "no", 0.5, 0.5, None], [-1, "no", 0.5, 0.5, None]], "outside the 2 rows"),
    ([[0, "no", 0.5, 0.5, None], [0.5, "no", 0.5, 0.5, None]], "not a whole number"),
    ([[0, "no", 0.5, 0.5, None], [1, "no", 0.5, 0.5]], "schema has 5"),
    ([[0, "no", 0.5, 0.5, None], [None, "no", 0.5, 0.5, None]], "malformed"),
])
def test_unalignable_rows_fail_the_whole_batch(rows: list, message: str) -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    with pytest.raises(ResponseDecodeError, match=message) as caught:
        c.decode(request, 200, "application/json", response(BINARY, rows))
    assert caught.value.backend == "qlik"


def test_index_alignment_failures() -> None:
    c = codec(index_column="id")
    schema = [("id", "numeric"), *BINARY[1:4]]
    request = c.encode(["x"], [{"x": 1, "id": 5}, {"x": 2, "id": 6}])
    with pytest.raises(ResponseDecodeError, match="index value 9"):
        c.decode(request, 200, "application/json", response(schema, [[5, "no", 0.5, 0.5], [9, "no", 0.5, 0.5]]))
    with pytest.raises(ResponseDecodeError, match="appears twice"):
        c.decode(request, 200, "application/json", response(schema, [[5, "no", 0.5, 0.5], ["5", "no", 0.5, 0.5]]))
    repeated = c.encode(["x"], [{"x": 1, "id": 5}, {"x": 2, "id": 5}])
    with pytest.raises(ResponseDecodeError, match="repeats a value"):
        c.decode(repeated, 200, "application/json", response(schema, [[5, "no", 0.5, 0.5], [5, "no", 0.5, 0.5]]))
    # automl_row_index wins over a repeated index column
    schema = [("automl_row_index", "numeric"), *schema]
    rows = c.decode(repeated, 200, "application/json",
                    response(schema, [[1, 5, "yes", 0.1, 0.9], [0, 5, "no", 0.9, 0.1]]))
    assert [r.prediction for r in rows] == ["no", "yes"]


def test_no_key_to_align_by_is_an_error() -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    with pytest.raises(ResponseDecodeError, match="cannot be aligned"):
        c.decode(request, 200, "application/json", response(BINARY[1:], [["no", 0.5, 0.5, None]] * 2))


@pytest.mark.parametrize("content_type, body, message", [
    ("application/json", b'{"data": {"type": "realtime-prediction", "attributes": {"schema": [{"na', "truncated"),
    ("application/json", b"", "truncated"),
    ("application/json", b"[]", "expected a JSON object"),
    ("application/json", b'{"data": {"type": "job", "attributes": {}}}', "unexpected data.type"),
    ("application/json", b'{"data": {"attributes": {"schema": [], "rows": {}}}}', "no schema/rows"),
    ("application/json", b'{"errors": []}', "no schema/rows"),
    ("text/html", b"<html>bad gateway</html>", "unexpected content type"),
    ("text/csv", b'automl_row_index,Churned_predicted\r\n0,"no\r\n', "malformed CSV"),
    ("text/csv", b"automl_row_index,Churned_predicted\r\n0\r\n", "1 fields"),
])
def test_malformed_bodies(content_type: str, body: bytes, message: str) -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    with pytest.raises(ResponseDecodeError, match=message):
        c.decode(request, 200, content_type, body)


def test_two_prediction_columns_are_ambiguous() -> None:
    c = codec()
    request = c.encode(["x"], [{"x": 1}])
    body = response([("automl_row_index", None), ("a_predicted", None), ("b_predicted", None)], [[0, 1, 2]])
    with pytest.raises(ResponseDecodeError, match="one <target>_predicted"):
        c.decode(request, 200, "application/json", body)


def test_non_2xx_is_classified_not_decoded() -> None:
    c = codec()
    request = c.encode(FEATURES, CUSTOMERS)
    body = b'{"errors":[{"code":"HTTP-429","title":"API rate limit reached.","detail":"Wait."}]}'
    with pytest.raises(RetryableError):
        c.decode(request, 429, "application/json", body)
    with pytest.raises(DataError):
        c.decode(request, 400, "application/json", body)
    with pytest.raises(FatalError):
        c.decode(request, 401, "application/json", body)


# -- speed ------------------------------------------------------------------------------------------


# -- make_codec -----------------------------------------------------------------------------------

def test_make_codec_from_a_pipeline_config() -> None:
    from gateway.backends.factory import make_codec
    from gateway.config import PipelineConfig

    pipeline = PipelineConfig.model_validate({
        "name": "churn", "input_topic": "in", "features": ["a"],
        "outputs": {"predictions": "out", "dead_letter": "dlq"},
        "backend": {"type": "qlik", "url": ALIAS_URL, "token": "k", "include_source": False, "index_column": "id",
                    "rate_limit_per_minute": 100, "stringify_values": True, "response_format": "csv"},
        "batching": {"max_rows": 500, "max_bytes": 123, "linger_ms": 10}})
    c = make_codec(pipeline)
    assert isinstance(c, QlikCodec) and c.deployment == "dep-9" and c.explanations == "shap"
    request = c.encode(pipeline.features, [{"a": 1.5, "id": 3}])
    assert parse_qsl(urlsplit(request.url).query) == [("includeShap", "true"), ("includeNotPredictedReason", "true"),
                                                      ("index", "id")]
    assert request.headers["Accept"] == "text/csv" and request.headers["Authorization"] == "Bearer k"
    assert c.headers == {k: v for k, v in request.headers.items()}
    assert orjson.loads(request.body)["rows"] == [["1.5", "3"]]
    with pytest.raises(BodyTooLarge):
        c.encode(pipeline.features, [{"a": "x" * 200, "id": 1}])
    assert make_codec(pipeline, explain=False).explanations is None
