"""``scoring-gateway qlik-batch`` end to end: the command as its own process, the emulator's Qlik
batch-prediction API over real HTTP. A job that runs to ``ready`` (created, then updated by a second
run), one that fails with its ``errorMessage``, one cancelled by SIGTERM to the command, one that
runs out of time, refused credentials, and retries of a 503 as the real-time path retries."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pyarrow.parquet as pq
import pytest
import yaml
from aiohttp import web

from gateway.emulator import Emulator, EmulatorOptions, start_emulator
from gateway.kafka.embedded import free_port
from tests.integration.batch_support import churn_table

ROOT = Path(__file__).resolve().parents[2]
DATASET = "6749ddb8bf86ce46d48fe0a3"
SPACE = "6745f737f536738170dfe82f"
ROWS = 2000
TOKEN = "qlik-batch-token-7f1"
RUN_PATH = "/api/v1/ml/deployments/{}/realtime-predictions/actions/run"


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    pq.write_table(churn_table(ROWS)[0], datasets / f"{DATASET}.parquet")
    emu = await start_emulator(EmulatorOptions(seed=3, latency_ms=0, per_row_ms=0, token=TOKEN,
                                               datasets=str(datasets), spaces=str(tmp_path / "spaces")))
    try:
        yield emu
    finally:
        await emu.stop()


def write_config(tmp_path: Path, base_url: str, token: str = TOKEN, deployment: str = "churn") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": "127.0.0.1:9"},
        "pipelines": [{"name": "churn", "input_topic": "churn-features",
                       "backend": {"type": "qlik", "url": base_url + RUN_PATH.format(deployment), "token": token},
                       "retry": {"max_attempts": 4, "initial_backoff_ms": 10, "max_backoff_ms": 50},
                       "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}))
    return path


class Command:
    """``python -m gateway qlik-batch …`` as a child process, with its output collected."""

    def __init__(self, config: Path, *options: str) -> None:
        self.args = [sys.executable, "-m", "gateway", "qlik-batch", "--config", str(config), "--pipeline", "churn",
                     "--poll-interval-s", "0.1", *options]
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = b""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    async def wait_for_stderr(self, text: bytes, timeout_s: float = 30.0) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async with asyncio.timeout(timeout_s):
            while text not in self.stderr:
                line = await self.proc.stderr.readline()
                assert line, f"the command ended before writing {text!r}: {self.stderr!r}"
                self.stderr += line

    async def finish(self, timeout_s: float = 60.0) -> tuple[int, dict[str, Any] | None, str]:
        assert self.proc is not None
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout_s)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        self.stderr += err
        report = orjson.loads(out) if out.strip() else None
        return self.proc.returncode or 0, report, self.stderr.decode()

    async def run(self) -> tuple[int, dict[str, Any] | None, str]:
        await self.start()
        return await self.finish()


async def test_a_job_runs_to_ready_and_a_second_run_updates_it(emulator: Emulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, emulator.url)
    name = ("--name", "Churn_predictions")
    code, report, err = await Command(config, "--dataset-id", DATASET, "--space-id", SPACE, *name,
                                      "--dst-shap-name", "churn_shap", "--dst-not-predicted-name", "churn_refused",
                                      "--index-column", "customer_id").run()
    assert code == 0, err
    assert report is not None and report["outcome"] == "ready"
    assert report["batchPrediction"]["action"] == "created" and report["batchPrediction"]["status"] == "ready"
    assert report["batchPrediction"]["writeback"] == {
        "format": "parquet", "dstName": "Churn_predictions.parquet", "spaceId": SPACE,
        "dstShapName": "churn_shap.parquet", "dstNotPredictedName": "churn_refused.parquet"}
    assert [f["fileName"] for f in report["outputFiles"]] == [
        "Churn_predictions.parquet", "churn_shap.parquet", "churn_refused.parquet"]
    assert report["job"]["corrId"] == report["batchPrediction"]["id"] and report["job"]["jobType"] == "prediction"
    assert "qlik-batch Churn_predictions: ready" in err
    folder = tmp_path / "spaces" / SPACE
    predicted = pq.read_table(folder / "Churn_predictions.parquet")
    refused = pq.read_table(folder / "churn_refused.parquet")
    assert predicted.column_names[:2] == ["customer_id", "Churned_predicted"]
    assert predicted.num_rows + refused.num_rows == ROWS
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {
        "Churn_predictions.parquet", "churn_shap.parquet", "churn_refused.parquet"}

    code, report, err = await Command(config, "--dataset-id", DATASET, "--space-id", SPACE, *name,
                                      "--format", "csv").run()
    assert code == 0, err
    assert report is not None and report["batchPrediction"]["action"] == "updated"
    assert report["batchPrediction"]["id"] == report["job"]["corrId"]
    assert report["batchPrediction"]["writeback"] == {
        "format": "csv", "dstName": "Churn_predictions.csv", "spaceId": SPACE, "dstShapName": "",
        "dstNotPredictedName": ""}  # the names this run does not give are cleared
    assert [f["fileName"] for f in report["outputFiles"]] == ["Churn_predictions.csv"]
    assert (folder / "Churn_predictions.csv").read_text().splitlines()[0].startswith("automl_row_index,")


async def test_a_failing_job_exits_1_with_its_error_message(emulator: Emulator, tmp_path: Path) -> None:
    code, report, err = await Command(write_config(tmp_path, emulator.url), "--dataset-id", "no-such-dataset",
                                      "--space-id", SPACE).run()
    assert code == 1
    assert "scoring-gateway qlik-batch: job failed: dataset 'no-such-dataset' was not found" in err
    assert report is not None and report["outcome"] == "error" and report["outputFiles"] == []
    assert report["batchPrediction"]["errorMessage"] == "dataset 'no-such-dataset' was not found"


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signal_cancels_the_job_through_the_cancel_route(emulator: Emulator, tmp_path: Path,
                                                                signum: signal.Signals, status: int) -> None:
    emulator.configure(per_row_ms=5.0)  # 2.5 s a batch of 500 rows: the job runs for about 10 s
    command = Command(write_config(tmp_path, emulator.url), "--dataset-id", DATASET, "--space-id", SPACE)
    await command.start()
    await command.wait_for_stderr(b"qlik-batch churn: pending")
    assert command.proc is not None
    command.proc.send_signal(signum)
    code, report, err = await command.finish()
    assert code == status, err
    assert f"stopped by {signum.name}; the job was cancelled" in err
    assert report is not None and report["outcome"] == "stopped" and report["cancelled"] is True
    assert report["batchPrediction"]["status"] == "cancelled"
    assert not (tmp_path / "spaces" / SPACE / "churn.parquet").exists()


async def test_a_job_not_ready_in_time_is_cancelled_and_exits_3(emulator: Emulator, tmp_path: Path) -> None:
    emulator.configure(per_row_ms=5.0)
    code, report, err = await Command(write_config(tmp_path, emulator.url), "--dataset-id", DATASET,
                                      "--space-id", SPACE, "--timeout-s", "1").run()
    assert code == 3, err
    assert "not ready within 1 s; the job was cancelled" in err
    assert report is not None and report["batchPrediction"]["status"] == "cancelled"


async def test_refused_credentials_exit_4_with_the_vendors_message(emulator: Emulator, tmp_path: Path) -> None:
    code, report, err = await Command(write_config(tmp_path, emulator.url, token="wrong-token"),
                                      "--dataset-id", DATASET, "--space-id", SPACE).run()
    assert code == 4 and report is None
    assert "list the batch predictions: qlik: HTTP 401" in err and "wrong-token" not in err


async def test_bad_options_exit_2_before_anything_is_sent(emulator: Emulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, emulator.url)
    code, _, err = await Command(config, "--dataset-id", " ", "--space-id", SPACE).run()
    assert code == 2 and "--dataset-id must not be empty" in err
    code, _, err = await Command(config, "--dataset-id", DATASET, "--space-id", SPACE, "--timeout-s", "0").run()
    assert code == 2 and "--timeout-s" in err
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
            http.get(f"{emulator.url}/api/v1/ml/deployments/churn/batch-predictions") as response:
        assert (await response.json())["meta"]["count"] == 0


async def test_503s_are_retried_with_the_pipelines_retry_policy(tmp_path: Path) -> None:
    """A loopback server that answers 503 (with Retry-After: 0) twice to every route, then as Qlik."""
    seen: list[str] = []
    failures: dict[str, int] = {}

    async def answer(request: web.Request) -> web.Response:
        key = f"{request.method} {request.path}"
        seen.append(key)
        if failures.get(key, 0) < 2:
            failures[key] = failures.get(key, 0) + 1
            return web.json_response({"errors": [{"code": "HTTP-503", "title": "busy"}]}, status=503,
                                     headers={"Retry-After": "0"})
        if request.method == "GET" and request.path.endswith("batch-predictions"):
            return web.json_response({"data": [], "links": {}, "meta": {"count": 0}})
        if request.method == "POST" and request.path.endswith("batch-predictions"):
            return web.json_response({"data": {"id": "bp1", "type": "batch-prediction",
                                               "attributes": {"status": "modified"}}}, status=201)
        if request.path.endswith("/actions/predict"):
            return web.json_response({"data": {"id": "job1", "type": "job",
                                               "attributes": {"corrId": "bp1", "status": "pending"}}}, status=202)
        return web.json_response({"data": {"id": "bp1", "type": "batch-prediction",
                                            "attributes": {"status": "ready", "writeback": {"dstName": "x.parquet",
                                                                                          "spaceId": ""}}}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port("127.0.0.1")
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        code, report, err = await Command(write_config(tmp_path, f"http://127.0.0.1:{port}", deployment="d1"),
                                          "--dataset-id", DATASET, "--space-id", "").run()
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert report is not None and report["outputFiles"] == [{"field": "dstName", "fileName": "x.parquet",
                                                             "spaceId": ""}]
    base = "/api/v1/ml/deployments/d1/batch-predictions"
    assert seen == [f"GET {base}"] * 3 + [f"POST {base}"] * 3 + [f"POST {base}/bp1/actions/predict"] * 3 + \
        [f"GET {base}/bp1"] * 3
