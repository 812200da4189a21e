"""DataRobot's prediction route over real HTTP: bodies, auth, response shapes, explanations, CSV."""

from __future__ import annotations

import base64
import csv
import gzip
import io

import aiohttp
import orjson
import pytest

from gateway.emulator.attribution import base_values
from gateway.emulator.explain import QUALITATIVE_TABLE, xemp_explanations
from gateway.emulator.models import DEPLOYMENTS
from tests.emulator.conftest import datarobot_url, post
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, csv_text, datarobot_sample, random_rows

MODELS = {d.name: d.model for d in DEPLOYMENTS}
SEED_CSV = csv_text(CHURN_FEATURES, SEED_ROWS)
CSV = {"Content-Type": "text/csv"}


async def predict(http, emulator, params="", body=SEED_CSV, headers=CSV, deployment="churn"):
    url = datarobot_url(emulator, deployment) + (f"?{params}" if params else "")
    data = body.encode() if isinstance(body, str) else body
    return await post(http, url, data=data, headers=headers)


async def predict_ok(http, emulator, params="", body=SEED_CSV, headers=CSV, deployment="churn"):
    status, _, raw = await predict(http, emulator, params, body, headers, deployment)
    assert status == 200, raw
    return orjson.loads(raw)["data"]


async def test_every_body_format_gives_the_same_predictions(http, emulator):
    expected = await predict_ok(http, emulator)
    records = [dict(zip(CHURN_FEATURES, row, strict=False)) for row in SEED_ROWS]
    form = aiohttp.FormData()
    form.add_field("file", SEED_CSV.encode(), filename="data.csv", content_type="text/csv")
    form.add_field("value", "data.csv")
    variants = [
        ({"Content-Type": "text/csv; charset=UTF-8"}, SEED_CSV),
        ({"Content-Type": "text/csv; charset=utf8"}, SEED_CSV),
        ({"Content-Type": "text/plain; charset=UTF-8"}, SEED_CSV),
        ({"Content-Type": "text/csv"}, SEED_CSV.replace("\n", "\r\n")),
        ({"Content-Type": "text/csv"}, "\ufeff" + SEED_CSV),
        ({"Content-Type": "application/json"}, orjson.dumps(records)),
        ({"Content-Type": "application/json; charset=UTF-8"}, orjson.dumps(records)),
        ({"Content-Type": "text/csv", "Content-Encoding": "gzip"}, gzip.compress(SEED_CSV.encode(), 2)),
    ]
    for headers, body in variants:
        assert await predict_ok(http, emulator, body=body, headers=headers) == expected, headers
    async with http.post(datarobot_url(emulator), data=form) as response:
        assert response.status == 200
        assert orjson.loads(await response.read())["data"] == expected


async def test_binary_rows_have_the_documented_shape(http, emulator):
    status, headers, raw = await predict(http, emulator)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert float(headers["X-DataRobot-Execution-Time"]) >= 0
    assert headers["X-DataRobot-Model-Cache-Hit"] == "true"
    rows = orjson.loads(raw)["data"]
    assert [list(r) for r in rows] == [["predictionValues", "predictionThreshold", "prediction", "rowId",
                                        "deploymentApprovalStatus"]] * 2
    for i, row in enumerate(rows):
        assert row["rowId"] == i
        assert row["predictionThreshold"] == 0.5
        assert row["deploymentApprovalStatus"] == "APPROVED"
        positive, negative = row["predictionValues"]  # positive class first, as DataRobot lists it
        assert positive["label"] == "yes" and negative["label"] == "no"
        assert positive["value"] + negative["value"] == pytest.approx(1.0, abs=1e-12)
        assert row["prediction"] == ("yes" if positive["value"] >= 0.5 else "no")
    assert [r["prediction"] for r in rows] == ["no", "yes"]  # the tutorial's two customers


async def test_regression_and_multiclass_rows(http, emulator):
    for name in ("customer_value", "support_priority"):
        model = MODELS[name]
        features = list(model.features)
        rows = await predict_ok(http, emulator, body=csv_text(features, random_rows(model, 20)), deployment=name)
        assert len(rows) == 20
        for i, row in enumerate(rows):
            assert row["rowId"] == i and "predictionThreshold" not in row
            if model.kind == "regression":
                (value,) = row["predictionValues"]
                assert value == {"value": row["prediction"], "label": "LifetimeValue"}
            else:
                assert [v["label"] for v in row["predictionValues"]] == list(model.classes)
                best = max(row["predictionValues"], key=lambda v: v["value"])
                assert row["prediction"] == best["label"]
                assert sum(v["value"] for v in row["predictionValues"]) == pytest.approx(1.0)


async def test_deployment_answers_to_name_and_hex_id(http, emulator):
    deployment = DEPLOYMENTS[0]
    by_name = await predict_ok(http, emulator, deployment=deployment.name)
    by_id = await predict_ok(http, emulator, deployment=deployment.datarobot_id)
    assert by_name == by_id


@pytest.mark.parametrize("authorization", ["Bearer tok-1", "Token tok-1",
                                           "Basic " + base64.b64encode(b"user@example.com:tok-1").decode()])
async def test_all_three_auth_schemes_are_accepted(http, emulator, authorization):
    emulator.configure(token="tok-1", datarobot_key="dr-key")
    status, _, raw = await predict(http, emulator, headers={**CSV, "Authorization": authorization,
                                                            "DataRobot-Key": "dr-key"})
    assert status == 200, raw


def positive_value(row) -> float:
    return next(v["value"] for v in row["predictionValues"] if v["label"] == "yes")


def shap_total(row) -> float:
    meta = row["shapExplanationsMetadata"]
    return meta["baseValue"] + sum(e["strength"] for e in row["predictionExplanations"]) + meta["remainingTotal"]


async def test_shap_explanations_add_up_like_the_seed_example(http, emulator):
    # The documentation's own example: 0.3964 + 0.0535 − 0.0490 − 0.0897 = 0.3112, the positive
    # class's value (to the example's 10 decimals).
    (seed,) = datarobot_sample("binary_shap_response.seed.json")["data"]
    assert shap_total(seed) == pytest.approx(seed["predictionValues"][0]["value"], abs=1e-7)
    assert seed["predictionValues"][0]["label"] == seed["predictionExplanations"][0]["label"] == 1
    # The emulator's answer has the same shape and the same property, exactly.
    rows = await predict_ok(http, emulator, "maxExplanations=2&explanationAlgorithm=shap")
    for row in rows:
        assert set(row) == set(seed)
        assert set(row["shapExplanationsMetadata"]) == set(seed["shapExplanationsMetadata"])
        assert [set(e) for e in row["predictionExplanations"]] == [set(e) for e in seed["predictionExplanations"]]
        assert row["predictionValues"][0]["label"] == "yes"  # the positive class first, as in the example
        assert shap_total(row) == pytest.approx(row["predictionValues"][0]["value"], abs=1e-9)


async def test_shap_explanations_are_exact_for_every_max_explanations(http, emulator):
    model = MODELS["churn"]
    body = csv_text(CHURN_FEATURES, random_rows(model, 50, seed=9))
    (base,) = base_values(model)
    shown_by_limit = {}
    for limit in [*map(str, range(1, 9)), "20", "all"]:
        rows = await predict_ok(http, emulator, f"maxExplanations={limit}&explanationAlgorithm=shap", body)
        shown_by_limit[limit] = rows
        for row in rows:
            explanations = row["predictionExplanations"]
            assert len(explanations) == (8 if limit in ("20", "all") else int(limit))
            strengths = [e["strength"] for e in explanations]
            assert strengths == sorted(strengths, key=lambda s: -abs(s))
            assert all(e["qualitativeStrength"] is None and e["label"] == "yes" for e in explanations)
            assert all(isinstance(e["featureValue"], str) for e in explanations)
            meta = row["shapExplanationsMetadata"]
            assert meta["warnings"] is None and meta["baseValue"] == base
            assert shap_total(row) == pytest.approx(positive_value(row), abs=1e-9)
            if limit in ("8", "20", "all"):
                assert meta["remainingTotal"] == pytest.approx(0.0, abs=1e-12)
    # The top N are the first N of the full ranking: remainingTotal carries exactly the rest.
    for top, full in zip(shown_by_limit["3"], shown_by_limit["all"], strict=True):
        assert top["predictionExplanations"] == full["predictionExplanations"][:3]
        rest = sum(e["strength"] for e in full["predictionExplanations"][3:])
        assert top["shapExplanationsMetadata"]["remainingTotal"] == pytest.approx(rest, abs=1e-12)


async def test_shap_explanations_for_regression_are_exact(http, emulator):
    model = MODELS["customer_value"]
    body = csv_text(list(model.features), random_rows(model, 30, seed=2))
    rows = await predict_ok(http, emulator, "maxExplanations=2", body, deployment="customer_value")
    for row in rows:
        assert all(e["label"] == "LifetimeValue" for e in row["predictionExplanations"])
        assert shap_total(row) == pytest.approx(row["prediction"], abs=1e-9)


def expected_symbol(strength: float, normaliser: float) -> str:
    """The DataRobot documentation's qualitativeStrength table, restated for the test."""
    score = abs(strength) / normaliser
    if score > 0.75:
        return "+++" if strength >= 0 else "---"
    if score > 0.25:
        return "++" if strength >= 0 else "--"
    if score > 0.001:
        return "+" if strength >= 0 else "-"
    return "<+" if strength >= 0 else "<-"


async def test_xemp_explanations_follow_the_qualitative_table(http, emulator):
    assert [row[1:] for row in QUALITATIVE_TABLE] == [("+++", "---"), ("++", "--"), ("+", "-"), ("<+", "<-")]
    model = MODELS["churn"]
    rows = random_rows(model, 60, seed=12)
    rows[1] = ["Enterprise", 0, True, 20.0, 0, 60.0, 5.0, True]  # strong effects in one direction
    all_rows = await predict_ok(http, emulator, "maxExplanations=50&explanationAlgorithm=xemp",
                                csv_text(CHURN_FEATURES, rows))
    seen: set[str] = set()
    for row in all_rows:
        explanations = row["predictionExplanations"]
        strengths = [e["strength"] for e in explanations]
        assert strengths == sorted(strengths, key=lambda s: -abs(s))
        normaliser = sum(sorted((abs(s) for s in strengths), reverse=True)[:10])
        for e in explanations:
            assert set(e) == {"label", "feature", "featureValue", "strength", "qualitativeStrength"}
            assert e["qualitativeStrength"] == expected_symbol(e["strength"], normaliser)
            seen.add(e["qualitativeStrength"])
    assert all(len(r["predictionExplanations"]) == len(CHURN_FEATURES) for r in all_rows)  # fewer than asked
    assert {"+", "-", "++", "--"} <= seen
    # XEMP shows numbers as numbers and limits to maxExplanations.
    limited = await predict_ok(http, emulator, "maxExplanations=2&explanationAlgorithm=xemp")
    assert all(len(r["predictionExplanations"]) == 2 for r in limited)
    values = {e["feature"]: e["featureValue"] for r in limited for e in r["predictionExplanations"]}
    assert all(not isinstance(v, str) for f, v in values.items() if f in ("BaseFee", "ServiceTickets"))
    assert "shapExplanationsMetadata" not in limited[0]


async def test_xemp_keeps_its_own_strengths(http, emulator):
    """XEMP is not SHAP: its strengths are the model's XEMP values (link space), unchanged by the
    probability-space SHAP, and its rows carry qualitativeStrength but no SHAP metadata."""
    model = MODELS["churn"]
    rows = random_rows(model, 20, seed=31)
    answered = await predict_ok(http, emulator, "maxExplanations=8&explanationAlgorithm=xemp",
                                csv_text(CHURN_FEATURES, rows))
    columns = {f: [r[i] for r in rows] for i, f in enumerate(model.features)}
    expected = xemp_explanations(model, model.score(columns, len(rows)), range(len(rows)), 8)
    (seed,) = datarobot_sample("binary_xemp_response.seed.json")["data"]
    for i, row in enumerate(answered):
        assert "shapExplanationsMetadata" not in row
        assert all(set(e) == set(seed["predictionExplanations"][0]) for e in row["predictionExplanations"])
        got = [(e["feature"], e["strength"], e["qualitativeStrength"]) for e in row["predictionExplanations"]]
        assert got == [(model.terms[t].name, strength, symbol) for t, strength, symbol in expected[i]]


async def test_default_algorithm_follows_the_option(http, emulator):
    rows = await predict_ok(http, emulator, "maxExplanations=3")
    assert "shapExplanationsMetadata" in rows[0]
    emulator.configure(explanation_algorithm="xemp")
    rows = await predict_ok(http, emulator, "maxExplanations=3")
    assert "shapExplanationsMetadata" not in rows[0]
    assert rows[0]["predictionExplanations"][0]["qualitativeStrength"] is not None
    rows = await predict_ok(http, emulator, "maxExplanations=0")
    assert "predictionExplanations" not in rows[0]


async def test_thresholds_select_the_rows_explained(http, emulator):
    model = MODELS["churn"]
    rows = await predict_ok(http, emulator, "maxExplanations=3&thresholdLow=0.3&thresholdHigh=0.6",
                            csv_text(CHURN_FEATURES, random_rows(model, 80, seed=21)))
    explained = quiet = 0
    for row in rows:
        p = row["predictionValues"][0]["value"]
        if p < 0.3 or p > 0.6:
            assert len(row["predictionExplanations"]) == 3
            explained += 1
        else:
            assert row["predictionExplanations"] == [] and "shapExplanationsMetadata" not in row
            quiet += 1
    assert explained and quiet


async def test_passthrough_columns(http, emulator):
    body = csv_text(["CustomerId", *CHURN_FEATURES], [["c-1", *SEED_ROWS[0]], ["c-2", *SEED_ROWS[1]]])
    rows = await predict_ok(http, emulator, "passthroughColumns=CustomerId&passthroughColumns=BaseFee", body)
    assert [r["passthroughValues"] for r in rows] == [{"CustomerId": "c-1", "BaseFee": "50.0"},
                                                     {"CustomerId": "c-2", "BaseFee": "80.0"}]
    assert list(rows[0])[-2:] == ["passthroughValues", "deploymentApprovalStatus"]
    rows = await predict_ok(http, emulator, "passthroughColumnsSet=all", body)
    assert list(rows[0]["passthroughValues"]) == ["CustomerId", *CHURN_FEATURES]


async def test_csv_response_has_the_batch_output_columns(http, emulator):
    body = csv_text(["CustomerId", *CHURN_FEATURES], [["c-1", *SEED_ROWS[0]], ["c-2", *SEED_ROWS[1]]])
    by_json = await predict_ok(http, emulator, "maxExplanations=2&passthroughColumns=CustomerId", body)
    status, headers, raw = await predict(http, emulator, "maxExplanations=2&passthroughColumns=CustomerId", body,
                                         {**CSV, "Accept": "text/csv"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    header, *lines = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    explanation_columns = [f"EXPLANATION_{n}_{part}" for n in (1, 2)
                           for part in ("FEATURE_NAME", "STRENGTH", "QUALITATIVE_STRENGTH", "ACTUAL_VALUE")]
    assert header == ["Churned_yes_PREDICTION", "Churned_no_PREDICTION", "Churned_PREDICTION", "THRESHOLD",
                      "POSITIVE_CLASS", *explanation_columns, "SHAP_BASE_VALUE", "SHAP_REMAINING_TOTAL",
                      "CustomerId", "DEPLOYMENT_APPROVAL_STATUS"]
    for line, row in zip(lines, by_json, strict=False):
        cells = dict(zip(header, line, strict=False))
        assert float(cells["Churned_yes_PREDICTION"]) == row["predictionValues"][0]["value"]
        assert cells["Churned_PREDICTION"] == row["prediction"] and cells["POSITIVE_CLASS"] == "yes"
        assert cells["EXPLANATION_1_FEATURE_NAME"] == row["predictionExplanations"][0]["feature"]
        assert float(cells["EXPLANATION_2_STRENGTH"]) == row["predictionExplanations"][1]["strength"]
        assert cells["EXPLANATION_1_QUALITATIVE_STRENGTH"] == ""
        assert float(cells["SHAP_BASE_VALUE"]) == row["shapExplanationsMetadata"]["baseValue"]
        assert cells["CustomerId"] == row["passthroughValues"]["CustomerId"]
        assert cells["DEPLOYMENT_APPROVAL_STATUS"] == "APPROVED"


async def test_csv_headers_for_regression_and_multiclass(http, emulator):
    for name, expected in (("customer_value", ["LifetimeValue_PREDICTION", "DEPLOYMENT_APPROVAL_STATUS"]),
                           ("support_priority", ["Priority_high_PREDICTION", "Priority_low_PREDICTION",
                                                 "Priority_medium_PREDICTION", "Priority_PREDICTION",
                                                 "DEPLOYMENT_APPROVAL_STATUS"])):
        model = MODELS[name]
        status, _, raw = await predict(http, emulator, body=csv_text(list(model.features), random_rows(model, 3)),
                                       headers={**CSV, "Accept": "text/csv"}, deployment=name)
        assert status == 200
        header, *lines = list(csv.reader(io.StringIO(raw.decode(), newline="")))
        assert header == expected and len(lines) == 3


async def test_unreadable_value_fails_the_whole_request_naming_row_and_column(http, emulator):
    rows = [list(SEED_ROWS[0]), list(SEED_ROWS[1]), list(SEED_ROWS[0])]
    rows[2][CHURN_FEATURES.index("BaseFee")] = "abc"
    status, _, raw = await predict(http, emulator, body=csv_text(CHURN_FEATURES, rows))
    assert status == 422
    text = orjson.loads(raw)["message"]
    assert "row 2" in text and "'BaseFee'" in text and "abc" in text
    records = [dict(zip(CHURN_FEATURES, row, strict=False)) for row in rows]
    records[2]["BaseFee"] = 80.0
    records[1]["HasRenewed"] = "maybe"
    status, _, raw = await predict(http, emulator, body=orjson.dumps(records),
                                   headers={"Content-Type": "application/json"})
    assert status == 422 and "row 1" in orjson.loads(raw)["message"] and "HasRenewed" in orjson.loads(raw)["message"]
