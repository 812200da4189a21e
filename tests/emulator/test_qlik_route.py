"""Qlik's real-time route over real HTTP: the tutorial's own request, SHAP, options, CSV."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from gateway.emulator.attribution import base_values
from gateway.emulator.models import DEPLOYMENTS
from tests.emulator.conftest import post, qlik_url
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, qlik_body, random_rows, seed_request, seed_response

MODELS = {d.name: d.model for d in DEPLOYMENTS}
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


async def run(http, emulator, body, params="", deployment="churn", headers=JSON):
    url = qlik_url(emulator, deployment) + (f"?{params}" if params else "")
    status, response_headers, raw = await post(http, url, data=orjson.dumps(body), headers=headers)
    return status, response_headers, raw


async def run_ok(http, emulator, body, params="", deployment="churn"):
    status, _, raw = await run(http, emulator, body, params, deployment)
    assert status == 200, raw
    doc = orjson.loads(raw)
    assert doc["data"]["type"] == "realtime-prediction"
    attributes = doc["data"]["attributes"]
    names = [c["name"] for c in attributes["schema"]]
    return attributes, [dict(zip(names, row, strict=False)) for row in attributes["rows"]]


def seed_base_values(attributes) -> list[float]:
    """``Churned_yes − Σ SHAP`` per row of a response: the base value, if SHAP is in probability space."""
    names = [c["name"] for c in attributes["schema"]]
    rows = [dict(zip(names, row, strict=True)) for row in attributes["rows"]]
    return [row["Churned_yes"] - sum(row[f"{f}_SHAP"] for f in CHURN_FEATURES) for row in rows]


async def test_seed_request_returns_the_seed_response_shape(http, emulator):
    expected = seed_response()["data"]["attributes"]
    attributes, _ = await run_ok(http, emulator, seed_request(), "includeShap=true&includeNotPredictedReason=true")
    # Same columns, same order, same types as the tutorial's response.
    assert attributes["schema"] == expected["schema"]
    assert len(attributes["rows"]) == len(expected["rows"]) == 2
    for got, seed in zip(attributes["rows"], expected["rows"], strict=False):
        assert got[0] == seed[0]  # automl_row_index
        assert got[1] == seed[1]  # the tutorial's predicted class
        assert got[-1] is None  # not_predicted_reason
        assert all(type(v) is float for v in got[2:-1])  # typed numbers, not strings
        assert got[2] + got[3] == pytest.approx(1.0, abs=1e-12)
        assert got[3] == pytest.approx(seed[3], abs=0.01)  # plausible: near the tutorial's P(churn)


async def test_shap_is_in_probability_space_with_one_base_as_in_the_seed(http, emulator):
    # The tutorial's own rows: Churned_yes − Σ SHAP is the same 0.3329 for both customers.
    seed = seed_base_values(seed_response()["data"]["attributes"])
    assert seed[0] == pytest.approx(0.3329, abs=1e-4) and seed[1] == pytest.approx(seed[0], abs=1e-12)
    # The emulator's answer to the same request has the same property, with the deployment's base.
    attributes, _ = await run_ok(http, emulator, seed_request(), "includeShap=true&includeNotPredictedReason=true")
    (base,) = base_values(MODELS["churn"])
    assert seed_base_values(attributes) == pytest.approx([base, base], abs=1e-9)


async def test_shap_is_exact_for_the_binary_model(http, emulator):
    model = MODELS["churn"]
    rows = SEED_ROWS + random_rows(model, 200, seed=3)
    _, scored = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, rows), "includeShap=true")
    (base,) = base_values(model)
    assert 0.0 < base < 1.0
    for row in scored:
        shap = sum(row[f"{f}_SHAP"] for f in CHURN_FEATURES)
        assert base + shap == pytest.approx(row["Churned_yes"], abs=1e-9)
    # Base-free: the SHAP sums of two rows differ exactly by their P(yes) difference.
    first, second = scored[0], scored[1]
    delta_shap = sum(second[f"{f}_SHAP"] - first[f"{f}_SHAP"] for f in CHURN_FEATURES)
    assert delta_shap == pytest.approx(second["Churned_yes"] - first["Churned_yes"], abs=1e-9)


async def test_shap_is_exact_for_the_regression_model(http, emulator):
    model = MODELS["customer_value"]
    features = list(model.features)
    _, scored = await run_ok(http, emulator, qlik_body(features, random_rows(model, 100, seed=4)),
                             "includeShap=true", "customer_value")
    (base,) = base_values(model)
    assert base == model.base_values[0]  # target units: the link is the prediction
    for row in scored:
        total = base + sum(row[f"{f}_SHAP"] for f in features)
        assert total == pytest.approx(row["LifetimeValue_predicted"], abs=1e-9)


async def test_shap_is_exact_for_the_multiclass_model(http, emulator):
    model = MODELS["support_priority"]
    features = list(model.features)
    attributes, scored = await run_ok(http, emulator, qlik_body(features, random_rows(model, 100, seed=5)),
                                      "includeShap=true", "support_priority")
    names = [c["name"] for c in attributes["schema"]]
    assert names[:5] == ["automl_row_index", "Priority_predicted", "Priority_high", "Priority_low", "Priority_medium"]
    bases = dict(zip(model.classes, base_values(model), strict=True))
    explained = set()
    for row in scored:
        probabilities = {c: row[f"Priority_{c}"] for c in model.classes}
        predicted = row["Priority_predicted"]
        assert predicted == max(probabilities, key=probabilities.get)
        # The predicted class's probability = that class's base + Σ SHAP.
        total = bases[predicted] + sum(row[f"{f}_SHAP"] for f in features)
        assert total == pytest.approx(probabilities[predicted], abs=1e-9)
        explained.add(predicted)
    assert len(explained) >= 2  # more than one class's base was exercised


async def test_stringified_cells_score_like_typed_cells(http, emulator):
    def text(value):
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    typed = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, SEED_ROWS), "includeShap=true")
    strings = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, [[text(v) for v in r] for r in SEED_ROWS]),
                           "includeShap=true")
    assert strings == typed
    assert SEED_ROWS[0][3] == 50.0 and text(SEED_ROWS[0][3]) == "50.0"


async def test_name_uuid_and_alias_routes_agree(http, emulator):
    deployment = DEPLOYMENTS[0]
    body = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
    answers = []
    for path in (f"/api/v1/ml/deployments/{deployment.name}/realtime-predictions/actions/run",
                 f"/api/v1/ml/deployments/{deployment.qlik_id}/realtime-predictions/actions/run",
                 f"/api/v1/ml/deployments/{deployment.qlik_id}/aliases/champion/realtime-predictions/actions/run"):
        status, _, raw = await post(http, emulator.url + path, data=body, headers=JSON)
        assert status == 200
        answers.append(orjson.loads(raw))
    assert answers[0] == answers[1] == answers[2]
    # A DataRobot-format id is not a Qlik id.
    status, _, raw = await post(http, qlik_url(emulator, deployment.datarobot_id), data=body, headers=JSON)
    assert status == 404 and orjson.loads(raw)["errors"][0]["code"] == "HTTP-404"


async def test_features_are_matched_by_name_and_source_is_echoed(http, emulator):
    features = ["CustomerId", *reversed(CHURN_FEATURES), "Region"]
    rows = [["c-1", *reversed(SEED_ROWS[0]), "north"], ["c-2", *reversed(SEED_ROWS[1]), None]]
    baseline = (await run_ok(http, emulator, qlik_body(CHURN_FEATURES, SEED_ROWS)))[1]
    attributes, scored = await run_ok(http, emulator, qlik_body(features, rows),
                                      "includeSource=true&index=CustomerId&includeNotPredictedReason=false")
    schema = attributes["schema"]
    names = [c["name"] for c in schema]
    assert names == ["automl_row_index", "CustomerId", *reversed(CHURN_FEATURES), "Region",
                     "Churned_predicted", "Churned_no", "Churned_yes"]
    types = {c["name"]: c["type"] for c in schema}
    assert types["CustomerId"] == "categorical" and types["BaseFee"] == "numeric"
    assert types["PlanType"] == "categorical" and types["Region"] == "categorical"
    for row, source, base in zip(scored, rows, baseline, strict=False):
        assert row["CustomerId"] == source[0] and row["Region"] == source[-1]
        assert row["BaseFee"] == source[features.index("BaseFee")]  # echoed as sent
        assert row["Churned_yes"] == base["Churned_yes"]


async def test_index_without_source_is_the_second_column(http, emulator):
    features = [*CHURN_FEATURES, "AccountID"]
    rows = [[*SEED_ROWS[0], 1001], [*SEED_ROWS[1], 1002]]
    attributes, scored = await run_ok(http, emulator, qlik_body(features, rows), "index=AccountID")
    assert [c["name"] for c in attributes["schema"]][:2] == ["automl_row_index", "AccountID"]
    assert attributes["schema"][1]["type"] == "numeric"
    assert [r["AccountID"] for r in scored] == [1001, 1002]


async def test_unusable_value_gets_a_reason_and_null_cells(http, emulator):
    rows = [list(SEED_ROWS[0]), list(SEED_ROWS[1])]
    rows[1][CHURN_FEATURES.index("BaseFee")] = "abc"
    _, scored = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, rows),
                             "includeShap=true&includeNotPredictedReason=true")
    good, bad = scored
    assert good["not_predicted_reason"] is None and good["Churned_predicted"] == "no"
    assert "BaseFee" in bad["not_predicted_reason"] and "abc" in bad["not_predicted_reason"]
    assert bad["automl_row_index"] == 1
    for name, value in bad.items():
        if name not in ("automl_row_index", "not_predicted_reason"):
            assert value is None, name
    # Without includeNotPredictedReason the cells are simply null and there is no reason column.
    attributes, scored = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, rows))
    assert "not_predicted_reason" not in [c["name"] for c in attributes["schema"]]
    assert scored[1]["Churned_predicted"] is None and scored[1]["Churned_yes"] is None
    assert scored[0]["Churned_predicted"] == "no"


async def test_missing_values_are_imputed_with_zero_shap(http, emulator):
    rows = [list(SEED_ROWS[0])]
    rows[0][CHURN_FEATURES.index("ServiceRating")] = None
    rows[0][CHURN_FEATURES.index("HasRenewed")] = ""
    _, scored = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, rows),
                             "includeShap=true&includeNotPredictedReason=true")
    row = scored[0]
    assert row["not_predicted_reason"] is None
    assert row["ServiceRating_SHAP"] == 0.0 and row["HasRenewed_SHAP"] == 0.0
    assert row["BaseFee_SHAP"] != 0.0


async def test_csv_response_is_header_and_rows(http, emulator):
    rows = [list(SEED_ROWS[0]), list(SEED_ROWS[1])]
    rows[1][CHURN_FEATURES.index("BaseFee")] = "abc"
    params = "includeShap=true&includeNotPredictedReason=true"
    _, by_json = await run_ok(http, emulator, qlik_body(CHURN_FEATURES, rows), params)
    status, headers, raw = await run(http, emulator, qlik_body(CHURN_FEATURES, rows), params,
                                     headers={"Content-Type": "application/json", "Accept": "text/csv"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    assert raw.endswith(b"\r\n")
    header, lines = table[0], table[1:]
    assert header == list(by_json[0])
    assert len(lines) == 2
    for line, expected in zip(lines, by_json, strict=False):
        for name, cell in zip(header, line, strict=False):
            value = expected[name]
            if value is None:
                assert cell == ""
            elif isinstance(value, float):
                assert float(cell) == value
            else:
                assert cell == str(value)


async def test_csv_quotes_fields_per_rfc_4180(http, emulator):
    awkward = 'Smith, "Jr"\nline two'
    body = qlik_body([*CHURN_FEATURES, "Name"], [[*SEED_ROWS[0], awkward]])
    status, _, raw = await run(http, emulator, body, "includeSource=true",
                               headers={"Content-Type": "application/json",
                                        "Accept": "text/csv; q=0.9, application/xml"})
    assert status == 200
    assert b'"Smith, ""Jr""\nline two"' in raw
    header, line = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    assert line[header.index("Name")] == awkward
    assert line[header.index("HasRenewed")] == "true"
    # JSON is preferred when the client ranks it higher.
    status, headers, raw = await run(http, emulator, body, "",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "text/csv;q=0.5, application/json"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
