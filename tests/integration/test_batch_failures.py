"""A backend that refuses the credentials, or keeps failing, stops a batch run (exit 1) without
writing its rows as not predicted; healed, the same command finishes the run."""

from __future__ import annotations

import pytest

from tests.integration.batch_support import batch_config, output_files, read_table, run_batch, write_input

pytestmark = pytest.mark.integration

ROWS = 2000


@pytest.mark.parametrize(("status", "said"), [(401, "refused the request (HTTP 401)"),
                                              (503, "the scoring API kept failing")])
def test_a_failing_backend_stops_the_run_and_the_rerun_completes_it(emu, tmp_path, status, said):
    data = write_input(tmp_path, ROWS, "csv")
    config = batch_config(tmp_path, {"type": "qlik", "url": emu.qlik_url()},
                          retry={"max_attempts": 2, "initial_backoff_ms": 1, "max_backoff_ms": 20})
    out = tmp_path / "out"
    command = ("--input", str(data.path), "--writeback", str(out), "--index-column", "customer_id")
    emu.configure(error_rate={str(status): 1.0})
    stopped = run_batch(config, *command)
    assert stopped.returncode == 1, stopped.stderr
    assert said in stopped.stderr and "the same command continues" in stopped.stderr
    assert output_files(out) == set(), "nothing is written as final, least of all as not predicted"
    emu.reset()
    done = run_batch(config, *command)
    assert done.returncode == 0, done.stderr
    predicted = read_table(out / "churn.parquet").num_rows
    refused = read_table(out / "churn_not_predicted.parquet")
    assert predicted + refused.num_rows == ROWS
    assert set(refused.column("customer_id").to_pylist()) == data.refused
