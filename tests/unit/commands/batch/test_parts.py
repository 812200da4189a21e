"""The batch command's pieces without a network: names, CSV typing, column checks, layouts, parts,
state and progress."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import io
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from gateway.backends.codec import ScoredRow, explanation, row_problem
from gateway.commands.batch.arrow_rows import conform, row_problems, rows_of, unify
from gateway.commands.batch.file_input import FileInput
from gateway.commands.batch.layout import Layout, vendor_message
from gateway.commands.batch.options import BatchInputError, file_names, input_format, writeback_names
from gateway.commands.batch.progress import Progress
from gateway.commands.batch.run import segment_rows
from gateway.commands.batch.segments import Segment, cut, generated_index
from gateway.commands.batch.state import RunState
from gateway.commands.batch.topic_input import parse_bound
from gateway.commands.batch.writeback import assemble, write_parts
from gateway.config import parse_config
from gateway.stream.records import Rejected


def test_file_names_default_from_the_name_and_gain_the_extension():
    names = file_names("parquet", "customers", {"shap": "explained", "source": "src.parquet"})
    assert names == {"predictions": "customers.parquet", "shap": "explained.parquet", "source": "src.parquet",
                     "coord_shap": "customers_coord_shap.parquet",
                     "not_predicted": "customers_not_predicted.parquet"}
    assert file_names("csv", "x", {})["not_predicted"] == "x_not_predicted.csv"
    with pytest.raises(BatchInputError, match="plain file name"):
        file_names("csv", "x", {"shap": "../elsewhere"})
    with pytest.raises(BatchInputError, match="would both be"):
        file_names("csv", "x", {"shap": "x_source"})
    assert writeback_names({"format": "csv", "dstName": "a", "dstShapName": "b.csv"}) == {
        "predictions": "a.csv", "shap": "b.csv"}
    assert input_format(Path("a.PARQUET"), None) == "parquet"
    with pytest.raises(BatchInputError, match="--input-format"):
        input_format(Path("a.json"), None)


def test_csv_columns_are_typed_over_the_whole_file(tmp_path):
    """A text value in the last block makes the column text everywhere; the read does not fail."""
    rows = 60_000
    fees = [f"{20 + i % 50}.5" for i in range(rows)]
    fees[-1] = "$80.00"
    table = pa.table({"id": [f"C{i}" for i in range(rows)], "n": list(range(rows)), "fee": fees,
                      "flag": ["true" if i % 2 else "false" for i in range(rows)],
                      "empty": [None] * rows, "x": [1.5 if i else None for i in range(rows)]})
    path = tmp_path / "in.csv"
    pa_csv.write_csv(table, path)
    source = FileInput(path, "csv", index_column="id", features=None)
    info = asyncio.run(source.inspect())
    assert info.rows == rows and info.send == ["n", "fee", "flag", "empty", "x"]

    async def read():
        return [s async for s in source.segments(25_000, {1})]
    segments = asyncio.run(read())
    assert [(s.number, s.first_row, s.size) for s in segments] == [(0, 0, 25_000), (2, 50_000, 10_000)]
    types = dict(zip(segments[0].source.column_names, segments[0].source.schema.types, strict=True))
    assert types == {"id": pa.string(), "n": pa.int64(), "fee": pa.string(), "flag": pa.bool_(),
                     "empty": pa.string(), "x": pa.float64()}
    assert segments[0].rows[1] == {"n": 1, "fee": "21.5", "flag": True, "empty": None, "x": 1.5}
    assert segments[0].rows[0]["x"] is None
    assert segments[1].index.to_pylist()[-1] == f"C{rows - 1}"


def test_column_checks_find_what_the_cell_check_finds():
    table = pa.table({"a": [1.0, math.nan, 2.0, math.inf, None], "b": [[1], None, [2], None, None],
                      "c": ["x", "y", "z", "w", "v"], "d": [1, 2, 3, 4, 5]})
    expected = {i: problem for i, row in enumerate(rows_of(table, table.column_names))
                if (problem := row_problem(row)) is not None}
    assert row_problems(table, table.column_names) == expected
    assert set(expected) == {0, 1, 2, 3}


def test_rows_carry_values_both_vendors_can_send():
    table = pa.table({"when": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5)]), "day": pa.array([dt.date(2026, 1, 2)]),
                      "amount": pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)),
                      "plan": pa.array(["Basic"]).dictionary_encode()})
    assert rows_of(table, ["when", "day", "amount", "plan"]) == [
        {"when": "2026-01-02T03:04:05", "day": "2026-01-02", "amount": 1.25, "plan": "Basic"}]


def test_parts_of_one_file_get_one_schema():
    first = pa.table({"i": [0], "a": pa.array([None], pa.null())})
    second = pa.table({"i": [1], "a": ["text"], "b": [1.5]})
    third = pa.table({"i": [2], "b": [2]})
    schema = unify([first.schema, second.schema, third.schema])
    assert schema == pa.schema([("i", pa.int64()), ("a", pa.string()), ("b", pa.float64())])
    assert conform(third, schema).to_pylist() == [{"i": 2, "a": None, "b": 2.0}]
    mixed = unify([pa.schema([("v", pa.int64())]), pa.schema([("v", pa.string())])])
    assert mixed.field("v").type == pa.string()


def segment(size: int, first: int = 0) -> Segment:
    source = pa.table({"PlanType": ["Basic"] * size, "BaseFee": [50.0] * size})
    return Segment(0, first, source, [{} for _ in range(size)], generated_index(first, size))


def outcomes() -> list[ScoredRow | Rejected]:
    shap = [explanation("BaseFee", 50.0, 0.2), explanation("PlanType", "Basic", -0.1)]
    return [ScoredRow("yes", {"no": 0.4, "yes": 0.6}, None, shap, "shap"),
            Rejected("score", "Invalid value in row 0: BaseFee", 422, 1),
            ScoredRow("no", {"yes": 0.3, "no": 0.7}, None, shap[:1], "shap"),
            Rejected("validate", "feature 'BaseFee': non-finite number nan")]


def test_qlik_layout_columns_and_every_row_once():
    layout = Layout("qlik", "datarobot", "automl_row_index", False, feature_order=["PlanType", "BaseFee"],
                    target_override="Churned")
    tables = layout.tables(segment(4, first=10), outcomes())
    predictions = tables["predictions"].to_pylist()
    assert predictions == [{"automl_row_index": 10, "Churned_predicted": "yes", "Churned_no": 0.4, "Churned_yes": 0.6},
                           {"automl_row_index": 12, "Churned_predicted": "no", "Churned_no": 0.7, "Churned_yes": 0.3}]
    assert tables["shap"].column_names == ["automl_row_index", "PlanType_SHAP", "BaseFee_SHAP"]
    assert tables["shap"].to_pylist()[1] == {"automl_row_index": 12, "PlanType_SHAP": None, "BaseFee_SHAP": 0.2}
    assert tables["coord_shap"].to_pylist() == [
        {"automl_row_index": 10, "automl_feature": "PlanType", "SHAP_value": -0.1},
        {"automl_row_index": 10, "automl_feature": "BaseFee", "SHAP_value": 0.2},
        {"automl_row_index": 12, "automl_feature": "BaseFee", "SHAP_value": 0.2}]
    refused = tables["not_predicted"]
    assert refused.column_names == ["automl_row_index", "not_predicted_reason", "stage", "status", "vendor_message"]
    assert refused.column("automl_row_index").to_pylist() == [11, 13]
    assert refused.column("vendor_message").to_pylist() == ["Invalid value in row 0: BaseFee", None]
    assert tables["source"].column_names == ["automl_row_index", "PlanType", "BaseFee"]


def test_datarobot_layout_is_the_batch_scoring_clients():
    xemp = [explanation("BaseFee", 50.0, 0.3, "++"), explanation("PlanType", "Basic", -0.1, "-")]
    rows = [ScoredRow("yes", {"yes": 0.6, "no": 0.4}, 0.5, xemp, "xemp"), ScoredRow("no", {"yes": 0.2, "no": 0.8})]
    tables = Layout("datarobot", "datarobot", "automl_row_index", False).tables(segment(2), rows)
    assert set(tables) == {"predictions", "source"}
    assert tables["predictions"].to_pylist() == [
        {"row_id": 0, "no": 0.4, "yes": 0.6, "explanation_1_feature": "BaseFee", "explanation_1_strength": 0.3,
         "explanation_1_qualitativeStrength": "++", "explanation_2_feature": "PlanType",
         "explanation_2_strength": -0.1, "explanation_2_qualitativeStrength": "-"},
        {"row_id": 1, "no": 0.8, "yes": 0.2, "explanation_1_feature": None, "explanation_1_strength": None,
         "explanation_1_qualitativeStrength": None, "explanation_2_feature": None, "explanation_2_strength": None,
         "explanation_2_qualitativeStrength": None}]
    regression = Layout("datarobot", "datarobot", "id", True, target_override="LifetimeValue")
    assert regression.tables(segment(1), [ScoredRow(1234.5)])["predictions"].column_names == [
        "row_id", "id", "LifetimeValue"]
    assert vendor_message(Rejected("score", "gave up after 6 attempts: Service Unavailable", 503, 6)) == \
        "Service Unavailable"


def test_parts_assemble_in_input_order_and_only_files_with_rows(tmp_path):
    parts, out = tmp_path / "parts", tmp_path / "out"
    out.mkdir()
    names = file_names("csv", "x", {})
    layout = Layout("qlik", "qlik", "automl_row_index", False, target_override="t")
    for number, first in ((1, 4), (0, 0)):
        write_parts(parts, number, layout.tables(segment(4, first), [ScoredRow("a", {"a": 1.0})] * 4))
    written = assemble(parts, out, names, "csv", [1, 0])
    assert written == ["x.csv", "x_source.csv"]
    lines = (out / "x.csv").read_text().splitlines()
    assert lines[0] == "automl_row_index,t_predicted,t_a"
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(8))


def test_state_resumes_the_same_run_and_refuses_another(tmp_path):
    state = RunState.open(tmp_path, "x.parquet", {"input": "a.csv"}, 100)
    state.record(0, {"rows": 100, "predicted": 99, "not_predicted": 1})
    again = RunState.open(tmp_path, "x.parquet", {"input": "a.csv"}, 999)
    assert again.done == {0: {"rows": 100, "predicted": 99, "not_predicted": 1}} and again.segment_rows == 100
    with pytest.raises(BatchInputError, match=re.escape("its input was 'a.csv', now 'b.csv'")):
        RunState.open(tmp_path, "x.parquet", {"input": "b.csv"}, 100)
    again.finish(["x.parquet"])
    assert RunState.open(tmp_path, "x.parquet", {"input": "a.csv"}, 100).complete


def test_topic_bounds():
    assert parse_bound("earliest", [0, 1]) == {0: "earliest", 1: "earliest"}
    assert parse_bound("42", [0, 1]) == {0: 42, 1: 42}
    assert parse_bound("1:7", [0, 1]) == {0: "earliest", 1: 7}
    assert parse_bound("2026-11-01T00:00:00", [0])[0] == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with pytest.raises(BatchInputError, match="no partition 5"):
        parse_bound("5:1", [0, 1])
    with pytest.raises(BatchInputError, match="not earliest, latest"):
        parse_bound("yesterday", [0])


def test_cut_gives_exact_segments_whatever_the_reads():
    tables = (pa.table({"v": list(range(a, b))}) for a, b in ((0, 3), (3, 3), (3, 11), (11, 12)))
    assert [(n, first, t.column(0).to_pylist()) for n, first, t in cut(tables, 5)] == [
        (0, 0, [0, 1, 2, 3, 4]), (1, 5, [5, 6, 7, 8, 9]), (2, 10, [10, 11])]


def test_progress_lines_off_a_terminal():
    stream = io.StringIO()
    progress = Progress(1000, stream=stream, terminal=False)
    progress.add(1000, 990, 10)
    assert stream.getvalue().startswith("progress: 1,000/1,000 rows (100%), 990 predicted, 10 not predicted, ")
    bar = io.StringIO()
    shown = Progress(10, stream=bar, terminal=True)
    shown.add(10, 10, 0)
    shown.close()
    assert "10/10" in bar.getvalue()


@pytest.mark.parametrize(("concurrency", "rows"), [
    ({"max_in_flight_requests": 4}, 400),
    ({"max_in_flight_requests": "auto", "max_in_flight_requests_limit": 8}, 800),  # sized for auto's ceiling
    ({"max_in_flight_requests": "auto", "max_in_flight_records": 1000}, 500),  # at most half of the records
])
def test_segments_fill_the_requests_in_flight(concurrency: dict[str, object], rows: int) -> None:
    qlik = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/d1/realtime-predictions/actions/run"
    pipeline = {"name": "churn", "input_topic": "in", "backend": {"type": "qlik", "url": qlik},
                "outputs": {"predictions": "out", "dead_letter": "dead"},
                "batching": {"max_rows": 100}, "concurrency": concurrency}
    config = parse_config({"kafka": {"bootstrap_servers": "broker:9092"}, "pipelines": [pipeline]}, {})
    assert segment_rows(config.pipelines[0]) == rows
