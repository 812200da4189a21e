"""Running one Qlik batch-prediction job inside the emulator.

The job is the gateway's own batch job (:func:`gateway.commands.batch.job.run_job`): the same file reader,
layout and writeback code as ``scoring-gateway batch`` write the same files. Only the scorer
differs: instead of HTTP, each batch is encoded by the gateway's Qlik codec, answered by the
real-time route's own functions (:func:`gateway.emulator.qlik.respond`, so the rows, SHAP values
and ``not_predicted_reason`` are what the real-time API would return) and decoded by the codec.

Each batch takes the real-time route's modelled latency (``latency_ms + per_row_ms × rows``, the
SHAP multiplier included), so a job lasts as long as scoring its dataset through the real-time API
would, and a test can slow it down to cancel it midway.

The apply dataset is ``<datasets>/<dataSetId>.parquet`` (or ``.csv``); the files go to
``<spaces>/<spaceId>/`` (``personal`` for an empty ``spaceId``). Only the writeback files the job
names are written.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from multidict import MultiDict

from gateway.backends.qlik.codec import QlikCodec
from gateway.commands.batch.file_input import FileInput
from gateway.commands.batch.job import JobSpec, run_job
from gateway.commands.batch.layout import ModelFacts
from gateway.commands.batch.options import BatchInputError, writeback_names
from gateway.commands.batch.scorer import Outcome
from gateway.commands.batch.scoring_loop import BatchStopped, StopRequest
from gateway.emulator.models import Deployment
from gateway.emulator.qlik import QlikQuery, parse_input, respond
from gateway.emulator.vendor import Refusal
from gateway.json_types import JsonValue, Row
from gateway.stream.records import STAGE_NOT_PREDICTED, STAGE_SCORE, Rejected

PERSONAL_SPACE = "personal"
BATCH_ROWS = 500


class JobFailed(Exception):
    """The job cannot run or complete; the message becomes the batch prediction's errorMessage."""


@dataclass
class JobResult:
    rows: int
    predicted: int
    files: list[str]
    folder: Path
    seconds: float


class LocalScorer:
    """Scores rows as the real-time route would answer them, without the network."""

    def __init__(self, deployment: Deployment, latency_ms: float = 0.0, per_row_ms: float = 0.0,
                 multiplier: float = 1.0) -> None:
        self.model = deployment.model
        self._latency = (latency_ms / 1000.0, per_row_ms / 1000.0, multiplier)
        self.codec = QlikCodec(url=f"http://emulator/api/v1/ml/deployments/{deployment.qlik_id}"
                                   "/realtime-predictions/actions/run", token=None, max_bytes=None,
                               include_shap=True, include_not_predicted_reason=True)
        self._query = QlikQuery(MultiDict({"includeShap": "true", "includeNotPredictedReason": "true"}))

    async def score(self, rows: Sequence[Row]) -> tuple[list[Outcome], float]:
        started = time.monotonic()
        request = self.codec.encode(list(self.model.features), rows)
        try:
            names, table = parse_input(request.body)
            response = respond(self.model, self._query, names, table, False)
        except Refusal as refusal:
            reason = f"refused: HTTP {refusal.response.status}"
            outcomes: list[Outcome] = [Rejected(STAGE_SCORE, reason, refusal.response.status, 1) for _ in rows]
            return outcomes, 0.0
        assert isinstance(response.body, bytes)
        scored = self.codec.decode(request, 200, "application/json", response.body)
        base_s, per_row_s, multiplier = self._latency
        # The modelled latency, or at least a turn for the emulator's other requests between batches.
        await asyncio.sleep(max(0.0, (base_s + per_row_s * len(rows)) * multiplier - (time.monotonic() - started)))
        outcomes = [row if row.predicted else Rejected(STAGE_NOT_PREDICTED, str(row.not_predicted_reason), 200, 1)
                    for row in scored]
        return outcomes, (time.monotonic() - started) * 1000.0


def dataset_path(datasets: str | None, dataset_id: JsonValue) -> Path:
    """The apply dataset's file; ``dataset_id`` is the attribute as given (it only names the file)."""
    if not datasets:
        raise JobFailed("the emulator has no datasets folder (start it with --datasets DIR)")
    if not dataset_id:
        raise JobFailed("the batch prediction has no dataSetId")
    for suffix in (".parquet", ".csv"):
        path = Path(datasets) / f"{dataset_id}{suffix}"
        if path.is_file() and path.parent.resolve() == Path(datasets).resolve():
            return path
    raise JobFailed(f"dataset '{dataset_id}' was not found")


async def run_batch_prediction(deployment: Deployment, attributes: Mapping[str, JsonValue], datasets: str | None,
                               spaces: str | None, scorer: LocalScorer | None = None) -> JobResult:
    """Score the job's dataset and write its files; raises JobFailed with the reason."""
    started = time.monotonic()
    writeback = _writeback(attributes)
    fmt = writeback.get("format", "parquet")
    if fmt not in ("parquet", "csv"):
        raise JobFailed(f"writeback format '{fmt}' is not supported by the emulator (parquet or csv)")
    if not spaces:
        raise JobFailed("the emulator has no spaces folder (start it with --spaces DIR)")
    path = dataset_path(datasets, attributes.get("dataSetId"))
    folder = Path(spaces) / (writeback.get("spaceId") or PERSONAL_SPACE)
    index_column = attributes.get("indexColumn") or None
    if index_column is not None and not isinstance(index_column, str):
        raise JobFailed(f"indexColumn must be a column name, not {index_column!r}")
    try:
        names = writeback_names(dict(writeback))
        source = FileInput(path, "parquet" if path.suffix == ".parquet" else "csv", index_column=index_column,
                           features=list(deployment.model.features))
        spec = JobSpec(folder, names, fmt, "qlik", "qlik", index_column or "automl_row_index",
                       index_column is not None, {"job": attributes.get("id")}, BATCH_ROWS, BATCH_ROWS * 16,
                       overwrite=True)
        scorer = scorer or LocalScorer(deployment)
        summary = await run_job(spec, source, scorer, scorer.codec.check_row,
                                ModelFacts(deployment.model.target), StopRequest(), stream=io.StringIO(),
                                terminal=False)
    except (BatchInputError, BatchStopped, OSError) as exc:
        raise JobFailed(str(exc)) from None
    return JobResult(summary.rows, summary.predicted, summary.files, folder, time.monotonic() - started)


def _writeback(attributes: Mapping[str, JsonValue]) -> dict[str, str]:
    """The job's ``writeback`` object; the API checked that its values are strings when the batch
    prediction was created and after each patch."""
    writeback = attributes.get("writeback")
    if not isinstance(writeback, dict):
        return {}
    return {name: value for name, value in writeback.items() if isinstance(value, str)}
