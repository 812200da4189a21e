"""The batch files carry what DataRobot's query options add to a row: per-class explanations (each
naming its class) in both layouts, and the prediction warning, the adjusted prediction and the
unmodelled vendor fields in the predictions file; rows without them change nothing."""

from __future__ import annotations

import orjson
import pyarrow as pa

from gateway.backends.codec import Explanation, ScoredRow, explanation
from gateway.commands.batch.file_input import generated_index
from gateway.commands.batch.layout import Layout
from gateway.commands.batch.segments import Segment
from gateway.stream.records import Rejected

PROBABILITIES = {"high": 0.6, "low": 0.1, "medium": 0.3}


def segment(size: int) -> Segment:
    source = pa.table({"Channel": ["phone"] * size, "OpenTickets": [3] * size})
    return Segment(0, 0, source, [{} for _ in range(size)], generated_index(0, size))


def per_class(strength: float) -> list[Explanation]:
    return [{**explanation("OpenTickets", 3, strength, "++"), "class": "high"},  # type: ignore[typeddict-item]
            {**explanation("Channel", "phone", -0.2, "-"), "class": "medium"},
            {**explanation("OpenTickets", 3, 0.1, "+"), "class": "medium"}]


def rows() -> list[ScoredRow | Rejected]:
    return [ScoredRow("high", PROBABILITIES, None, per_class(0.5), "xemp", prediction_warning=True,
                      vendor_fields={"humilityRule": "r1"}),
            Rejected("score", "refused", 422, 1),
            ScoredRow("medium", PROBABILITIES, None, per_class(0.05), "xemp", prediction_warning=False,
                      adjusted_prediction=12.5)]


def test_datarobot_layout_names_each_explanations_class_and_adds_the_row_fields() -> None:
    tables = Layout("datarobot", "datarobot", "automl_row_index", False).tables(segment(3), rows())
    predictions = tables["predictions"]
    assert predictions.column_names == [
        "row_id", "high", "low", "medium",
        *(f"explanation_{n}_{part}" for n in (1, 2, 3) for part in ("feature", "strength", "qualitativeStrength",
                                                                     "class")),
        "prediction_warning", "adjusted_prediction", "vendor_fields"]
    first, second = predictions.to_pylist()
    assert (first["explanation_1_class"], first["explanation_1_feature"]) == ("high", "OpenTickets")
    assert (second["explanation_2_class"], second["explanation_2_feature"]) == ("medium", "Channel")
    assert (first["prediction_warning"], second["prediction_warning"]) == (True, False)
    assert (first["adjusted_prediction"], second["adjusted_prediction"]) == (None, 12.5)
    assert orjson.loads(first["vendor_fields"]) == {"humilityRule": "r1"} and second["vendor_fields"] is None


def test_qlik_layout_writes_one_column_per_class_and_feature_and_a_class_column() -> None:
    layout = Layout("qlik", "datarobot", "automl_row_index", False, feature_order=["Channel", "OpenTickets"],
                    target_override="Priority")
    tables = layout.tables(segment(3), rows())
    assert tables["predictions"].column_names == ["automl_row_index", "Priority_predicted", "Priority_high",
                                                  "Priority_low", "Priority_medium", "prediction_warning",
                                                  "adjusted_prediction", "vendor_fields"]
    assert tables["shap"].column_names == ["automl_row_index", "OpenTickets_high_XEMP", "Channel_medium_XEMP",
                                           "OpenTickets_medium_XEMP"]
    coord = tables["coord_shap"]
    assert coord.column_names == ["automl_row_index", "automl_feature", "automl_class", "XEMP_value",
                                  "qualitative_strength"]
    assert [(r["automl_row_index"], r["automl_class"], r["automl_feature"]) for r in coord.to_pylist()] == [
        (0, "high", "OpenTickets"), (0, "medium", "Channel"), (0, "medium", "OpenTickets"),
        (2, "high", "OpenTickets"), (2, "medium", "Channel"), (2, "medium", "OpenTickets")]


def test_rows_without_the_fields_add_no_columns() -> None:
    plain = [ScoredRow("yes", {"no": 0.4, "yes": 0.6}, None, [explanation("Channel", "phone", 0.2)], "shap")]
    for name in ("qlik", "datarobot"):
        tables = Layout(name, "datarobot", "automl_row_index", False, target_override="Churned").tables(
            segment(1), plain)
        assert not {"prediction_warning", "adjusted_prediction", "vendor_fields", "explanation_1_class"} & set(
            tables["predictions"].column_names)
        if "coord_shap" in tables:
            assert "automl_class" not in tables["coord_shap"].column_names
