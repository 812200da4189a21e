"""``scoring-gateway batch`` with a DataRobot pipeline that asks for prediction warnings: the emulator's
``customer_value`` deployment flags the rows outside its range, and the flag lands in the
predictions file of either layout, row for row; the query the emulator received is the seed's."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.emulator.models import CUSTOMER_VALUE
from tests.integration.batch_support import batch_config, read_table, run_batch

pytestmark = pytest.mark.integration

ROWS = 400
FEATURES = list(CUSTOMER_VALUE.features)


def customers(path: Path) -> set[str]:
    """Customers with ordinary tenures, and every tenth one with a tenure of ten years or more
    (their lifetime value is far beyond the 0–4000 the model expects); returns those ids."""
    rng = random.Random(5)
    rows, outliers = [], set()
    for i in range(ROWS):
        far = i % 10 == 0
        rows.append({"customer_id": f"V{i:05d}", "PlanType": rng.choice(["Basic", "Standard", "Premium"]),
                     "TenureMonths": 120 + i % 7 if far else rng.randint(1, 24),
                     "BaseFee": round(rng.uniform(30, 60), 2), "AdditionalFeatureSpend": round(rng.uniform(0, 20), 2),
                     "ServiceRating": round(rng.uniform(3, 4.5), 1), "HasRenewed": rng.random() < 0.5})
        if far:
            outliers.add(rows[-1]["customer_id"])
    pq.write_table(pa.Table.from_pylist(rows), path)
    return outliers


@pytest.mark.parametrize("layout", ["qlik", "datarobot"])
def test_prediction_warnings_reach_the_predictions_file(emu, tmp_path, layout):
    data = tmp_path / "customers.parquet"
    outliers = customers(data)
    config = batch_config(tmp_path, {"type": "datarobot", "url": emu.datarobot_url("customer_value"),
                                     "prediction_warning_enabled": True, "max_explanations": 2,
                                     "explanation_algorithm": "shap"},
                          features=FEATURES, name="value")
    out = tmp_path / "out"
    done = run_batch(config, "--input", str(data), "--writeback", str(out), "--name", "values",
                     "--index-column", "customer_id", "--layout", layout, "--target", "LifetimeValue",
                     pipeline="value")
    assert done.returncode == 0, done.stderr
    predictions = read_table(out / "values.parquet").to_pylist()
    assert len(predictions) == ROWS
    flagged = {row["customer_id"] for row in predictions if row["prediction_warning"]}
    assert flagged == outliers
    assert all(row["prediction_warning"] is False for row in predictions if row["customer_id"] not in outliers)
    value = "LifetimeValue_predicted" if layout == "qlik" else "LifetimeValue"
    assert all((row[value] > 4000) == (row["customer_id"] in outliers) for row in predictions)
    deployment = emu.datarobot_url("customer_value").rsplit("/deployments/", 1)[1]
    received = [path for path in emu.requests() if f"/deployments/{deployment}" in path]
    assert received and all(path.endswith("?maxExplanations=2&explanationAlgorithm=shap"
                                          "&predictionWarningEnabled=true") for path in received)
