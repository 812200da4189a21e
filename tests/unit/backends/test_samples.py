"""Every recorded prediction response in the vendor contracts decodes to the values it holds.

Expected values come from the samples themselves, read independently with the standard ``json`` and
``csv`` modules (and, for DataRobot's fixtures, from the CSV that DataRobot's own batch client wrote
for the same response), never from the codecs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.errors import ResponseDecodeError
from gateway.backends.qlik.codec import QlikCodec
from tests.vendor_samples import DATAROBOT as DR
from tests.vendor_samples import QLIK

DR_URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/5f3c1b2a9d8e7f6a5b4c3d2e/predictions"
QLIK_URL = ("https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/c35f4b70-3ce4-4a30-b62b-2aef16943bc4"
            "/realtime-predictions/actions/run")

DECODED = {
    DR / "binary_response_real_dru_readmissions.json", DR / "binary_response_fixture_temperatura.json",
    DR / "binary_xemp_response_fixture_10kdiabetes_5explanations.json",
    DR / "binary_xemp_response_fixture_10kdiabetes_mixed_explanations.json",
    DR / "multiclass_response_fixture_iris.json",
    DR / "multiclass_response_real_iris_with_deploymentApprovalStatus.json",
    DR / "regression_response_fixture.json",
    QLIK / "realtime-response.ml.migration-guide.json",
    QLIK / "realtime-response.automl-deprecated.migration-guide.json",
}
REJECTED = {DR / "legacy_api_v1_response_fixture_temperatura.json",
            QLIK / "realtime-response.ml.reference-example.json"}
NOT_PREDICTION_RESPONSES = {  # error bodies (see test_errors), requests, client output, seed excerpts
    *DR.glob("error_*.json"), *DR.glob("batch_scoring_client_output_*.csv"), DR / "SOURCES.md",
    *DR.glob("seed-*.json"), *DR.glob("*.seed.json"), *QLIK.glob("*.tutorial.json"),
    *QLIK.glob("batch-prediction-*"),
    *QLIK.glob("openapi-*.json"), QLIK / "error-429-rate-limit.qlik-dev.txt", QLIK / "SOURCES.md",
}


def test_every_sample_is_accounted_for() -> None:
    """A sample added later must be placed in one of the sets above (and so decoded or rejected)."""
    on_disk = {p for p in (*DR.iterdir(), *QLIK.iterdir()) if p.is_file()}
    assert on_disk - (DECODED | REJECTED | NOT_PREDICTION_RESPONSES) == set()
    assert on_disk >= (DECODED | REJECTED)


def datarobot(path: Path, **options) -> tuple[list, list[dict]]:
    raw = path.read_bytes()
    data = json.loads(raw)["data"]
    codec = DataRobotCodec(url=DR_URL, token="t", max_bytes=None, **options)
    request = codec.encode(None, [{} for _ in data])
    return codec.decode(request, 200, "application/json", raw), data


def text(label: object) -> str:
    return label if isinstance(label, str) else repr(label)


def by_row_id(data: list[dict]) -> dict[int, dict]:
    return {item["rowId"]: item for item in data}


@pytest.mark.parametrize("name", ["binary_response_real_dru_readmissions.json",
                                  "binary_response_fixture_temperatura.json"])
def test_binary_responses(name: str) -> None:
    rows, data = datarobot(DR / name)
    assert len(rows) == len(data)
    if name.startswith("binary_response_real"):
        assert len(rows) == 100
    for row_id, item in by_row_id(data).items():
        row = rows[row_id]
        assert row.prediction == text(item["prediction"]) and row.threshold == item["predictionThreshold"]
        assert row.probabilities == {text(v["label"]): v["value"] for v in item["predictionValues"]}
        assert row.explanation_kind is None and row.predicted
    assert {r.prediction for r in rows} <= {"1.0", "0.0"}


def test_temperatura_matches_the_batch_clients_output() -> None:
    rows, _ = datarobot(DR / "binary_response_fixture_temperatura.json")
    with open(DR / "batch_scoring_client_output_binary_with_decision.csv", newline="") as f:
        decided = list(csv.DictReader(f))
    with open(DR / "batch_scoring_client_output_binary_pred_name_threshold.csv", newline="") as f:
        named = list(csv.DictReader(f))
    for row, decision, name in zip(rows, decided, named, strict=False):  # the client's first 10 rows are this response
        assert row.probabilities == {"0.0": float(decision["0.0"]), "1.0": float(decision["1.0"])}
        assert row.prediction == decision["label"]
        assert row.probabilities["1.0"] == float(name["healthy"]) and row.threshold == float(name["threshold"])


@pytest.mark.parametrize("name, client_csv", [
    ("binary_xemp_response_fixture_10kdiabetes_5explanations.json", "batch_scoring_client_output_5explanations.csv"),
    ("binary_xemp_response_fixture_10kdiabetes_mixed_explanations.json",
     "batch_scoring_client_output_mixed_explanations.csv"),
])
def test_xemp_fixtures_match_the_batch_clients_output(name: str, client_csv: str) -> None:
    rows, data = datarobot(DR / name, max_explanations=5)
    with open(DR / client_csv, newline="") as f:
        expected = list(csv.DictReader(f))
    assert len(rows) == len(data) == len(expected)
    for row, want, item in zip(rows, expected, data, strict=False):
        assert row.probabilities == {"0": float(want["0"]), "1": float(want["1"])}
        assert row.prediction == text(item["prediction"]) and row.threshold is None
        features = [(want[f"explanation_{n}_feature"], want[f"explanation_{n}_strength"]) for n in range(1, 6)]
        features = [(f, float(s)) for f, s in features if f]
        assert [(e["feature"], e["strength"]) for e in row.explanations] == features
        assert [e["value"] for e in row.explanations] == [e["featureValue"] for e in item["predictionExplanations"]]
        assert [e["qualitative"] for e in row.explanations] == [
            e["qualitativeStrength"] for e in item["predictionExplanations"]]
        assert row.explanation_kind == "xemp"
        magnitudes = [abs(e["strength"]) for e in row.explanations]
        assert magnitudes == sorted(magnitudes, reverse=True)
    if "mixed" in name:
        assert sorted({len(r.explanations) for r in rows}) == [0, 3, 4, 5]


@pytest.mark.parametrize("name", ["multiclass_response_fixture_iris.json",
                                  "multiclass_response_real_iris_with_deploymentApprovalStatus.json"])
def test_multiclass_responses(name: str) -> None:
    rows, data = datarobot(DR / name)
    for row_id, item in by_row_id(data).items():
        assert rows[row_id].prediction == item["prediction"]
        assert rows[row_id].probabilities == {v["label"]: v["value"] for v in item["predictionValues"]}
        assert len(rows[row_id].probabilities) == 3 and rows[row_id].threshold is None


def test_regression_response() -> None:
    rows, data = datarobot(DR / "regression_response_fixture.json")
    for row_id, item in by_row_id(data).items():
        assert rows[row_id].prediction == item["prediction"] == item["predictionValues"][0]["value"]
        assert isinstance(rows[row_id].prediction, float) and rows[row_id].probabilities is None


def test_legacy_api_v1_response_is_rejected() -> None:
    raw = (DR / "legacy_api_v1_response_fixture_temperatura.json").read_bytes()
    codec = DataRobotCodec(url=DR_URL, token="t", max_bytes=None)
    request = codec.encode(None, [{} for _ in json.loads(raw)["predictions"]])
    with pytest.raises(ResponseDecodeError, match="legacy api/v1"):
        codec.decode(request, 200, "application/json", raw)


def seed_json(folder: Path, name: str) -> str:
    """A JSON example of a vendor document, as copied into the fixtures (see SOURCES.md there)."""
    return (folder / name).read_text(encoding="utf-8")


def test_datarobot_seed_xemp_and_shap_examples() -> None:
    raw = seed_json(DR, "binary_xemp_response.seed.json")
    codec = DataRobotCodec(url=DR_URL, token="t", max_bytes=None, max_explanations=3)
    (row,) = codec.decode(codec.encode(None, [{}]), 200, "application/json", raw.encode())
    assert row.prediction == "0" and row.probabilities == {"1": 0.07836511, "0": 0.92163489}
    assert [(e["feature"], e["value"], e["qualitative"]) for e in row.explanations] == [
        ("Sex", "male", "---"), ("Age", 62, "---"), ("Fare", 9.6875, "--")]
    assert row.explanation_kind == "xemp"

    raw = seed_json(DR, "binary_shap_response.seed.json")
    codec = DataRobotCodec(url=DR_URL, token="t", max_bytes=None, max_explanations="all", explanation_algorithm="shap")
    source = [{"number_diagnoses": 9, "number_inpatient": 0}]
    (row,) = codec.decode(codec.encode(None, source), 200, "application/json", raw.encode())
    assert row.prediction == "0.0" and row.probabilities == {"1": 0.3111782477, "0.0": 0.6888217523}
    assert [(e["feature"], e["value"], e["strength"], e["qualitative"]) for e in row.explanations] == [
        ("number_diagnoses", 9, 0.0534648234, None), ("number_inpatient", 0, -0.0490243586, None)]
    assert (row.explanation_kind, row.base_value, row.remaining_total) == ("shap", 0.3964062631, -0.089668474)


# -- Qlik -----------------------------------------------------------------------------------------

MIGRATION_REQUEST = [{"feature_1": 0, "feature_2": "France", "feature_3": 5},
                     {"feature_1": 1, "feature_2": "Germany", "feature_3": 20}]


@pytest.mark.parametrize("name", ["realtime-response.ml.migration-guide.json",
                                  "realtime-response.automl-deprecated.migration-guide.json"])
def test_qlik_migration_guide_responses(name: str) -> None:
    """Its first column is the request's ``feature_1``: an index column (the example has no automl_row_index)."""
    raw = (QLIK / name).read_bytes()
    doc = json.loads(raw)
    table = doc["data"]["attributes"] if "data" in doc else doc
    codec = QlikCodec(url=QLIK_URL, token="t", max_bytes=None, index_column="feature_1",
                      include_not_predicted_reason=True)
    rows = codec.decode(codec.encode(["feature_1", "feature_2", "feature_3"], MIGRATION_REQUEST), 200,
                        "application/json", raw)
    for cells in table["rows"]:
        row = rows[cells[0]]
        assert row.prediction == cells[1] and row.probabilities == {"no": cells[2], "yes": cells[3]}
        assert row.passthrough == {"feature_1": cells[0]} and row.not_predicted_reason is None


def test_qlik_seed_response() -> None:
    raw = seed_json(QLIK, "realtime-response-shap.tutorial.json")
    table = json.loads(raw)["data"]["attributes"]
    sent = [{"PlanType": "Standard", "NumberOfPenalties": 1, "HasRenewed": True, "BaseFee": 50.0, "ServiceTickets": 5,
             "AdditionalFeatureSpend": 15.5, "ServiceRating": 4.2, "Promotion": True},
            {"PlanType": "Premium", "NumberOfPenalties": 3, "HasRenewed": False, "BaseFee": 80.0, "ServiceTickets": 2,
             "AdditionalFeatureSpend": 25.0, "ServiceRating": 3.8, "Promotion": False}]
    codec = QlikCodec(url=QLIK_URL, token="t", max_bytes=None, include_shap=True, include_not_predicted_reason=True)
    rows = codec.decode(codec.encode(None, sent), 200, "application/json", raw.encode())
    names = [c["name"] for c in table["schema"]]
    for cells in table["rows"]:
        row = rows[cells[0]]
        values = dict(zip(names, cells, strict=False))
        assert row.prediction == values["Churned_predicted"]
        assert row.probabilities == {"no": values["Churned_no"], "yes": values["Churned_yes"]}
        shap = {n[:-5]: v for n, v in values.items() if n.endswith("_SHAP")}
        assert {e["feature"]: e["strength"] for e in row.explanations} == shap and len(row.explanations) == 8
        assert all(e["value"] == sent[cells[0]][e["feature"]] for e in row.explanations)
        assert [e["feature"] for e in row.explanations] == sorted(shap, key=lambda f: -abs(shap[f]))
        assert row.explanation_kind == "shap"


def test_qlik_reference_placeholder_is_rejected() -> None:
    raw = (QLIK / "realtime-response.ml.reference-example.json").read_bytes()
    codec = QlikCodec(url=QLIK_URL, token="t", max_bytes=None)
    with pytest.raises(ResponseDecodeError, match="_predicted"):
        codec.decode(codec.encode(["string"], [{"string": "x"}]), 200, "application/json", raw)
