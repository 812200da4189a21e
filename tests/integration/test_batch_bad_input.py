"""Bad input stops ``scoring-gateway batch`` before it sends anything: one line naming the problem,
exit status 2, and the emulator's own counters show no request."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from gateway.commands.demo.sample_data import CHURN_FEATURES
from tests.integration.batch_support import batch_config, churn_table, run_batch

pytestmark = pytest.mark.integration


def unreadable(tmp_path):
    path = tmp_path / "customers.parquet"
    path.write_bytes(b"PAR1 this is not really a parquet file")
    return path, []


def missing(tmp_path):
    return tmp_path / "nowhere.csv", []


def missing_feature(tmp_path):
    table, _ = churn_table(50)
    path = tmp_path / "customers.csv"
    pa_csv.write_csv(table.drop_columns(["ServiceRating"]), path)
    return path, []


def duplicate_index(tmp_path):
    table, _ = churn_table(50)
    ids = table.column("customer_id").to_pylist()
    ids[40] = ids[7]
    path = tmp_path / "customers.csv"
    pa_csv.write_csv(table.set_column(0, "customer_id", pa.array(ids)), path)
    return path, ["--index-column", "customer_id"]


def unknown_pipeline(tmp_path):
    table, _ = churn_table(50)
    path = tmp_path / "customers.csv"
    pa_csv.write_csv(table, path)
    return path, ["--pipeline-name-is-checked-below"]


CASES = {
    "unreadable file": (unreadable, "cannot read", "customers.parquet"),
    "missing file": (missing, "no such file", "nowhere.csv"),
    "missing feature column": (missing_feature, "no column 'ServiceRating'", "customers.csv"),
    "duplicate index value": (duplicate_index, "repeats 'C0000007' (rows 7 and 40)", "customer_id"),
    "unknown pipeline": (unknown_pipeline, "unknown pipeline 'nope'", "churn"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_before_any_request(emu, tmp_path, case):
    make, expected, named = CASES[case]
    path, extra = make(tmp_path)
    pipeline = "churn"
    if extra == ["--pipeline-name-is-checked-below"]:
        extra, pipeline = [], "nope"
    config = batch_config(tmp_path, {"type": "qlik", "url": emu.qlik_url()}, features=CHURN_FEATURES)
    before = emu.get("/_emulator/stats")["requests"]
    done = run_batch(config, "--input", str(path), "--writeback", str(tmp_path / "out"), *extra,
                     pipeline=pipeline)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0] and named in lines[0], lines[0]
    assert lines[0].startswith("scoring-gateway batch: ")
    assert emu.get("/_emulator/stats")["requests"] == before, "a request was sent"
    assert not list((tmp_path / "out").glob("*.parquet")) if (tmp_path / "out").exists() else True


def test_a_good_input_does_send_requests(emu, tmp_path):
    """Control: the same command with nothing wrong reaches the emulator, so the check above can fail."""
    table, _ = churn_table(50)
    path = tmp_path / "customers.csv"
    pa_csv.write_csv(table, path)
    config = batch_config(tmp_path, {"type": "qlik", "url": emu.qlik_url()})
    before = emu.get("/_emulator/stats")["requests"]
    done = run_batch(config, "--input", str(path), "--writeback", str(tmp_path / "out"),
                     "--index-column", "customer_id")
    assert done.returncode == 0, done.stderr
    assert emu.get("/_emulator/stats")["requests"] > before
