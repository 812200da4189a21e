"""``scoring-gateway batch`` file to file against the emulator over HTTP: the files, their names and
columns, every row exactly once, SHAP additivity (the suite runs a few thousand rows; the
benchmark runs 20 000)."""

from __future__ import annotations

import orjson
import pytest

from gateway.commands.demo.sample_data import CHURN_FEATURES
from gateway.emulator.attribution import base_values
from gateway.emulator.models import CHURN
from tests.integration.batch_support import (
    batch_config,
    output_files,
    read_table,
    run_batch,
    write_input,
)

pytestmark = pytest.mark.integration

ROWS = 3000


def summary_of(stdout: str) -> dict:
    line = next(line for line in reversed(stdout.splitlines()) if line.startswith("summary: "))
    return orjson.loads(line[len("summary: "):])


def test_qlik_shap_csv_to_parquet(emu, tmp_path):
    data = write_input(tmp_path, ROWS, "csv")
    config = batch_config(tmp_path, {"type": "qlik", "url": emu.qlik_url(), "include_shap": True})
    out = tmp_path / "out"
    done = run_batch(config, "--input", str(data.path), "--writeback", str(out), "--name", "customer_predictions",
                     "--index-column", "customer_id")
    assert done.returncode == 0, done.stderr
    assert output_files(out) == {f"customer_predictions{s}.parquet" for s in
                                 ("", "_shap", "_source", "_coord_shap", "_not_predicted")}
    predictions = read_table(out / "customer_predictions.parquet")
    shap = read_table(out / "customer_predictions_shap.parquet")
    coord = read_table(out / "customer_predictions_coord_shap.parquet")
    source = read_table(out / "customer_predictions_source.parquet")
    refused = read_table(out / "customer_predictions_not_predicted.parquet")
    assert predictions.column_names == ["customer_id", "Churned_predicted", "Churned_no", "Churned_yes"]
    assert shap.column_names == ["customer_id", *(f"{f}_SHAP" for f in CHURN_FEATURES)]
    assert coord.column_names == ["customer_id", "automl_feature", "SHAP_value"]
    assert source.column_names == ["customer_id", *CHURN_FEATURES]
    assert refused.column_names == ["customer_id", "not_predicted_reason"]

    predicted_ids = predictions.column("customer_id").to_pylist()
    refused_ids = refused.column("customer_id").to_pylist()
    everyone = {f"C{i:07d}" for i in range(ROWS)}
    assert len(predicted_ids) + len(refused_ids) == ROWS, "a row is missing or written twice"
    assert set(predicted_ids) | set(refused_ids) == everyone
    assert set(refused_ids) == data.refused and len(data.refused) == ROWS // 100
    assert all("BaseFee" in reason for reason in refused.column("not_predicted_reason").to_pylist())
    assert sorted(source.column("customer_id").to_pylist()) == sorted(everyone)
    assert coord.num_rows == len(CHURN_FEATURES) * len(predicted_ids)
    assert summary_of(done.stdout)["predicted"] == len(predicted_ids)

    # The emulator's churn SHAP values are in probability space, as Qlik's are (one base value per
    # deployment, gateway/emulator/attribution.py): base value + Σ SHAP = P(yes), to float rounding.
    yes = dict(zip(predicted_ids, predictions.column("Churned_yes").to_pylist(), strict=True))
    base = base_values(CHURN)[0]
    for row in shap.to_pylist():
        total = base + sum(row[f"{f}_SHAP"] for f in CHURN_FEATURES)
        assert total == pytest.approx(yes[row["customer_id"]], abs=1e-9)


@pytest.mark.parametrize("layout", ["datarobot", "qlik"])
def test_datarobot_xemp_parquet_to_csv(emu, tmp_path, layout):
    data = write_input(tmp_path, ROWS, "parquet")
    config = batch_config(tmp_path, {"type": "datarobot", "url": emu.datarobot_url(), "max_explanations": 3,
                                     "explanation_algorithm": "xemp"})
    out = tmp_path / "out"
    done = run_batch(config, "--input", str(data.path), "--writeback", str(out), "--format", "csv",
                     "--layout", layout, "--target", "Churned")
    assert done.returncode == 0, done.stderr
    ids = read_table(out / "churn_source.csv").column("customer_id").to_pylist()
    refused_rows = {i for i, customer in enumerate(ids) if customer in data.refused}
    predictions = read_table(out / "churn.csv")
    refused = read_table(out / "churn_not_predicted.csv")
    if layout == "datarobot":
        assert output_files(out) == {"churn.csv", "churn_source.csv", "churn_not_predicted.csv"}
        slots = [f"explanation_{n}_{part}" for n in (1, 2, 3) for part in ("feature", "strength",
                                                                           "qualitativeStrength")]
        assert predictions.column_names == ["row_id", "no", "yes", *slots]
        assert set(predictions.column("explanation_1_qualitativeStrength").to_pylist()) <= {
            "+++", "++", "+", "<+", "---", "--", "-", "<-"}
        key = "row_id"
    else:
        assert output_files(out) == {f"churn{s}.csv" for s in ("", "_shap", "_source", "_coord_shap",
                                                               "_not_predicted")}
        assert predictions.column_names == ["automl_row_index", "Churned_predicted", "Churned_no", "Churned_yes"]
        shap = read_table(out / "churn_shap.csv")
        assert shap.column_names[0] == "automl_row_index"
        assert set(shap.column_names[1:]) <= {f"{f}_XEMP" for f in CHURN_FEATURES}
        coord = read_table(out / "churn_coord_shap.csv")
        assert coord.column_names == ["automl_row_index", "automl_feature", "XEMP_value", "qualitative_strength"]
        assert coord.num_rows <= 3 * predictions.num_rows
        key = "automl_row_index"
    assert refused.column_names == [key, "not_predicted_reason", "stage", "status", "vendor_message"]
    assert set(refused.column("status").to_pylist()) == {422}
    predicted_rows = predictions.column(key).to_pylist()
    refused_ids = refused.column(key).to_pylist()
    assert len(predicted_rows) + len(refused_ids) == ROWS
    assert set(predicted_rows) | set(refused_ids) == set(range(ROWS))
    assert set(refused_ids) == refused_rows
