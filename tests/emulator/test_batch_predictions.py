"""The emulator's Qlik batch-prediction API over real HTTP: the tutorial's own create body, predict,
poll until ``ready``, the writeback files in the space folder (readable with pyarrow); an unknown
dataset ends in ``error`` with a message; the resource routes (list, patch, delete, schedule, cancel)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pyarrow.parquet as pq
import pytest

from gateway.commands.demo.sample_data import CHURN_FEATURES
from gateway.emulator import Emulator, EmulatorOptions, start_emulator
from tests.integration.batch_support import churn_table

FIXTURE = Path(__file__).parent / "fixtures" / "qlik_batch_prediction_create.json"
DATASET = "6749ddb8bf86ce46d48fe0a3"
SPACE = "6745f737f536738170dfe82f"
ROWS = 2000


@pytest.fixture
async def batch_emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    datasets, spaces = tmp_path / "datasets", tmp_path / "spaces"
    datasets.mkdir()
    table, _ = churn_table(ROWS)
    pq.write_table(table, datasets / f"{DATASET}.parquet")
    emu = await start_emulator(EmulatorOptions(seed=7, datasets=str(datasets), spaces=str(spaces)))
    try:
        yield emu
    finally:
        await emu.stop()


def create_body(**attributes: Any) -> dict[str, Any]:
    body = orjson.loads(FIXTURE.read_bytes())
    body = copy.deepcopy(body)
    body["data"]["attributes"].update(attributes)
    return body


def base(emu: Emulator, deployment: str = "churn") -> str:
    return f"{emu.url}/api/v1/ml/deployments/{deployment}/batch-predictions"


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    async with http.request(method, url, data=data, headers={"Authorization": "Bearer t",
                                                            "Content-Type": "application/json"}) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw else None


async def until_done(http: aiohttp.ClientSession, url: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, doc = await call(http, "GET", url)
        assert status == 200
        attributes = doc["data"]["attributes"]
        if attributes["status"] in ("ready", "error", "cancelled"):
            return attributes
        assert time.monotonic() < deadline, f"still {attributes['status']} after {timeout_s}s"
        await asyncio.sleep(0.05)


async def test_the_tutorials_job_runs_to_ready_and_writes_its_files(batch_emulator, http, tmp_path):
    status, created = await call(http, "POST", base(batch_emulator), create_body())
    assert status == 201
    prediction = created["data"]
    assert prediction["type"] == "batch-prediction"
    attributes = prediction["attributes"]
    assert attributes["status"] == "modified"
    assert attributes["writeback"] == {  # as the tutorial's response shows it: dstName gets its extension
        "spaceId": SPACE, "format": "parquet", "dstName": "customer_predictions.parquet",
        "dstShapName": "customer_predictions_shap.parquet", "dstSourceName": "customer_predictions_source.parquet",
        "dstCoordShapName": "customer_predictions_coord_shap.parquet",
        "dstNotPredictedName": "customer_predictions_not_predicted.parquet"}
    one = f"{base(batch_emulator)}/{prediction['id']}"
    status, job = await call(http, "POST", f"{one}/actions/predict")
    assert status == 202
    assert job["data"]["type"] == "job"
    assert job["data"]["attributes"]["status"] == "pending"
    assert job["data"]["attributes"]["corrId"] == prediction["id"]
    final = await until_done(http, one)
    assert final["status"] == "ready", final["errorMessage"]
    folder = tmp_path / "spaces" / SPACE
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert names == {"customer_predictions.parquet", "customer_predictions_shap.parquet",
                     "customer_predictions_source.parquet", "customer_predictions_coord_shap.parquet",
                     "customer_predictions_not_predicted.parquet"}
    predictions = pq.read_table(folder / "customer_predictions.parquet")
    refused = pq.read_table(folder / "customer_predictions_not_predicted.parquet")
    assert predictions.column_names == ["automl_row_index", "Churned_predicted", "Churned_no", "Churned_yes"]
    assert pq.read_table(folder / "customer_predictions_shap.parquet").column_names == [
        "automl_row_index", *(f"{f}_SHAP" for f in CHURN_FEATURES)]
    assert sorted(predictions.column(0).to_pylist() + refused.column(0).to_pylist()) == list(range(ROWS))
    assert refused.num_rows == ROWS // 100
    assert pq.read_table(folder / "customer_predictions_source.parquet").num_rows == ROWS


async def test_only_the_named_files_are_written(batch_emulator, http, tmp_path):
    body = create_body(indexColumn="customer_id")
    body["data"]["attributes"]["writeback"] = {"spaceId": "", "format": "csv", "dstName": "scored"}
    status, created = await call(http, "POST", base(batch_emulator), body)
    assert status == 201
    one = f"{base(batch_emulator)}/{created['data']['id']}"
    await call(http, "POST", f"{one}/actions/predict")
    assert (await until_done(http, one))["status"] == "ready"
    folder = tmp_path / "spaces" / "personal"
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {"scored.csv"}
    assert (folder / "scored.csv").read_text().splitlines()[0] == \
        "customer_id,Churned_predicted,Churned_no,Churned_yes"


async def test_an_unknown_dataset_ends_in_error_with_a_message(batch_emulator, http):
    status, created = await call(http, "POST", base(batch_emulator), create_body(dataSetId="no-such-dataset"))
    assert status == 201
    one = f"{base(batch_emulator)}/{created['data']['id']}"
    status, _ = await call(http, "POST", f"{one}/actions/predict")
    assert status == 202
    final = await until_done(http, one)
    assert final["status"] == "error"
    assert "no-such-dataset" in final["errorMessage"] and "not found" in final["errorMessage"]


async def test_a_duplicate_index_value_ends_in_error(batch_emulator, http):
    status, created = await call(http, "POST", base(batch_emulator), create_body(indexColumn="PlanType"))
    assert status == 201
    one = f"{base(batch_emulator)}/{created['data']['id']}"
    await call(http, "POST", f"{one}/actions/predict")
    final = await until_done(http, one)
    assert final["status"] == "error" and "must be unique" in final["errorMessage"]


async def test_list_patch_schedule_delete_and_refusals(batch_emulator, http):
    url = base(batch_emulator)
    schedule = {"timezone": "America/Toronto", "startDateTime": "2035-12-25T00:00:00",
                "endDateTime": "2035-12-31T23:59:00",
                "recurrence": ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=16;BYMINUTE=30;BYSECOND=0"],
                "applyDatasetChangeOnly": True}
    status, created = await call(http, "POST", url, create_body(schedule=schedule))
    assert status == 201
    identifier = created["data"]["id"]
    one = f"{url}/{identifier}"
    assert created["data"]["attributes"]["schedule"]["recurrence"] == schedule["recurrence"]
    status, listed = await call(http, "GET", url)
    assert status == 200 and listed["meta"]["count"] == 1 and listed["data"][0]["id"] == identifier
    status, _ = await call(http, "PATCH", one, [{"op": "replace", "path": "/name", "value": "renamed"},
                                               {"op": "replace", "path": "/writeback/dstName", "value": "x"}])
    assert status == 204
    status, doc = await call(http, "GET", one)
    assert doc["data"]["attributes"]["name"] == "renamed"
    assert doc["data"]["attributes"]["writeback"]["dstName"] == "x.parquet"
    status, stored = await call(http, "GET", f"{one}/schedule")
    assert status == 200 and stored["data"]["attributes"]["timezone"] == "America/Toronto"
    status, error = await call(http, "PATCH", one, [{"op": "remove", "path": "/name"}])
    assert status == 400 and error["errors"][0]["code"] == "HTTP-400"
    status, error = await call(http, "POST", url, create_body(unknown=1))
    assert status == 400 and "unknown" in error["errors"][0]["detail"]
    status, _ = await call(http, "POST", f"{batch_emulator.url}/api/v1/ml/jobs/batch-prediction/{identifier}"
                                         "/actions/cancel")
    assert status == 204
    status, _ = await call(http, "DELETE", one)
    assert status == 204
    status, error = await call(http, "GET", one)
    assert status == 404 and error["errors"][0]["code"] == "HTTP-404"
    status, _ = await call(http, "GET", base(batch_emulator, "no-such-deployment"))
    assert status == 404


async def test_the_bearer_token_is_required_when_set(tmp_path, http):
    emu = await start_emulator(EmulatorOptions(token="secret-token", datasets=str(tmp_path), spaces=str(tmp_path)))
    try:
        async with http.get(base(emu)) as r:
            assert r.status == 401
    finally:
        await emu.stop()
