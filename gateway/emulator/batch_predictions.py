"""Qlik's batch-prediction API (the ``ml`` spec's ``batch-predictions`` paths), on the emulator.

Routes, under ``/api/v1/ml/deployments/{deploymentId}``:

* ``GET|POST /batch-predictions``: list (``limit`` ≤ 100, default 32, ``offset``) / create (201,
  status ``modified``; ``writeback`` needs ``spaceId``, ``format`` and ``dstName``, and each
  ``dst*Name`` without the format's extension gets it, as Qlik answers);
* ``GET|PATCH|DELETE /batch-predictions/{id}``: read / JSON-patch ``replace`` of the documented
  paths (204) / delete (204);
* ``POST /batch-predictions/{id}/actions/predict``: 202 with the job object; the status goes
  ``pending`` → ``ready``, or ``error`` with ``errorMessage`` (unknown dataset, missing feature,
  duplicate index value, …);
* ``GET|PUT|PATCH|DELETE /batch-predictions/{id}/schedule``: the schedule is stored and returned
  (nothing runs on its RRULE);

and ``POST /api/v1/ml/jobs/batch-prediction/{id}/actions/cancel`` (204). Jobs run in the
emulator's process (:mod:`gateway.emulator.batch_jobs`) and are owned by :class:`BatchPredictionApi`,
which cancels and awaits them on stop. Authentication is the real-time route's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.commands.batch.options import WRITEBACK_FIELDS as NAME_FIELDS
from gateway.commands.batch.options import writeback_names
from gateway.emulator.batch_documents import OWNER, Job, new_job
from gateway.emulator.models import Deployment, DeploymentCatalog
from gateway.emulator.qlik import QlikApi, failure
from gateway.emulator.settings import EmulatorOptions
from gateway.json_types import JsonObject, JsonValue

BASE = "/api/v1/ml/deployments/{deployment}/batch-predictions"
ONE = BASE + "/{prediction}"
CANCEL = "/api/v1/ml/jobs/{corr_type}/{corr_id}/actions/cancel"
ATTRIBUTES = frozenset({"name", "aliasId", "schedule", "dataSetId", "writeback", "description", "indexColumn",
                        "deploymentId"})
WRITEBACK_FIELDS = frozenset({"format", "dstName", "spaceId", "dstShapName", "dstSourceName", "dstCoordShapName",
                              "dstNotPredictedName"})
PATCH_PATHS = frozenset({"/name", "/description", "/dataSetId", "/indexColumn", "/applyDatasetChangeOnly",
                         "/ownerId", *(f"/writeback/{f}" for f in WRITEBACK_FIELDS - {"format"}),
                         "/writeback/format"})
SCHEDULE_FIELDS = frozenset({"startDateTime", "endDateTime", "timezone", "recurrence", "applyDatasetChangeOnly"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


class BadInput(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class BatchPrediction:
    id: str
    deployment: Deployment
    attributes: JsonObject
    status: str = "modified"
    error_message: str | None = None
    job: Job | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def document(self) -> JsonObject:
        public = {k: v for k, v in self.attributes.items() if k != "description"}
        attributes = {"id": self.id, **public, "deploymentId": self.deployment.qlik_id, "status": self.status,
                      "errorMessage": self.error_message, "ownerId": OWNER, "createdBy": OWNER}
        return {"id": self.id, "type": "batch-prediction", "attributes": attributes}


class BatchPredictionApi:
    def __init__(self, catalog: DeploymentCatalog, options: Callable[[], EmulatorOptions]) -> None:
        self._catalog = catalog
        self._options = options
        self._auth = QlikApi(catalog)
        self._predictions: dict[str, BatchPrediction] = {}

    def add_routes(self, app: web.Application) -> None:
        routes = [("GET", BASE, self._list), ("POST", BASE, self._create), ("GET", ONE, self._get),
                  ("PATCH", ONE, self._patch), ("DELETE", ONE, self._delete),
                  ("POST", ONE + "/actions/predict", self._predict), ("*", ONE + "/schedule", self._schedule),
                  ("POST", CANCEL, self._cancel)]
        for method, path, handler in routes:
            app.router.add_route(method, path, _answering(handler))

    async def close(self) -> None:
        """Cancel and await every job still running."""
        tasks = [p.task for p in self._predictions.values() if p.task is not None and not p.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- the resource routes --------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        deployment = self._deployment(request)
        try:
            limit = int(request.query.get("limit", "32"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return failure(400, "limit and offset must be integers")
        if not 1 <= limit <= 100 or offset < 0:
            return failure(400, "limit must be between 1 and 100 and offset at least 0")
        mine = [p for p in self._predictions.values() if p.deployment is deployment]
        page = mine[offset:offset + limit]
        return _json({"data": [p.document() for p in page], "links": {"self": {"href": str(request.url)}},
                      "meta": {"count": len(mine)}})

    async def _create(self, request: web.Request) -> web.Response:
        deployment = self._deployment(request)
        try:
            doc = orjson.loads(await request.read())
            data = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(data, dict) or data.get("type", "batch-prediction") != "batch-prediction":
                raise BadInput("the body must be {\"data\": {\"type\": \"batch-prediction\", \"attributes\": {…}}}")
            attributes = _attributes(data.get("attributes"))
        except orjson.JSONDecodeError as exc:
            return failure(400, f"The request body is not valid JSON: {exc}")
        except BadInput as exc:
            return failure(400, exc.detail)
        now = _now()
        identifier = str(uuid.uuid4())
        attributes.update(createdAt=now, updatedAt=now, dataSetId=attributes.get("dataSetId"),
                          indexColumn=attributes.get("indexColumn"), schedule=attributes.get("schedule"))
        prediction = BatchPrediction(identifier, deployment, attributes)
        self._predictions[identifier] = prediction
        return _json({"data": prediction.document()}, 201)

    async def _get(self, request: web.Request) -> web.Response:
        return _json({"data": self._prediction(request).document()})

    async def _patch(self, request: web.Request) -> web.Response:
        prediction = self._prediction(request)
        try:
            operations = orjson.loads(await request.read())
            if not isinstance(operations, list) or not operations:
                raise BadInput("the body must be a non-empty JSON-patch array")
            changed: JsonObject = {k: (dict(v) if isinstance(v, dict) else v) for k, v in prediction.attributes.items()}
            for operation in operations:
                _apply(changed, operation)
            changed["writeback"] = _writeback(changed.get("writeback"))
        except orjson.JSONDecodeError as exc:
            return failure(400, f"The request body is not valid JSON: {exc}")
        except BadInput as exc:
            return failure(400, exc.detail)
        changed["updatedAt"] = _now()
        prediction.attributes = changed
        prediction.status = "modified"
        return web.Response(status=204)

    async def _delete(self, request: web.Request) -> web.Response:
        prediction = self._prediction(request)
        self._predictions.pop(prediction.id, None)
        if prediction.task is not None and not prediction.task.done():
            prediction.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prediction.task
        return web.Response(status=204)

    async def _schedule(self, request: web.Request) -> web.Response:
        prediction = self._prediction(request)
        if request.method == "GET":
            if prediction.attributes.get("schedule") is None:
                return failure(404, f"Batch prediction '{prediction.id}' has no schedule")
            return _json(_schedule_document(prediction))
        if request.method == "DELETE":
            prediction.attributes["schedule"] = None
            return web.Response(status=204)
        try:
            body = orjson.loads(await request.read())
            if request.method == "PUT":
                data = body.get("data") if isinstance(body, dict) else None
                schedule = _schedule_input(data.get("attributes") if isinstance(data, dict) else None)
                prediction.attributes["schedule"] = schedule
                return _json(_schedule_document(prediction), 201)
            if request.method == "PATCH" and isinstance(body, list):
                current = prediction.attributes.get("schedule")  # an object, or None when there is none
                schedule = dict(current) if isinstance(current, dict) else {}
                for operation in body:
                    if not isinstance(operation, dict) or operation.get("op") != "replace" or \
                            str(operation.get("path", "")).lstrip("/") not in SCHEDULE_FIELDS:
                        raise BadInput(f"unsupported schedule patch {operation!r}")
                    schedule[str(operation["path"]).lstrip("/")] = operation.get("value")
                prediction.attributes["schedule"] = schedule
                return web.Response(status=204)
        except orjson.JSONDecodeError as exc:
            return failure(400, f"The request body is not valid JSON: {exc}")
        except BadInput as exc:
            return failure(400, exc.detail)
        return failure(405, f"{request.method} is not allowed on a schedule")

    # ---- jobs -------------------------------------------------------------------------------

    async def _predict(self, request: web.Request) -> web.Response:
        prediction = self._prediction(request)
        if prediction.task is not None and not prediction.task.done():
            return failure(409, f"Batch prediction '{prediction.id}' is already running")
        now = _now()
        prediction.job = new_job(prediction.id, prediction.attributes.get("name", ""), prediction.deployment,
                                 _space_id(prediction.attributes), now)
        prediction.status, prediction.error_message = "pending", None
        prediction.task = asyncio.create_task(self._run(prediction, self._options()))
        return _json({"data": {"id": prediction.job["id"], "type": "job", "attributes": prediction.job}}, 202)

    async def _run(self, prediction: BatchPrediction, options: EmulatorOptions) -> None:
        # Imports pyarrow: on first use.
        from gateway.emulator.batch_jobs import JobFailed, LocalScorer, run_batch_prediction

        job = prediction.job
        assert job is not None
        scorer = LocalScorer(prediction.deployment, options.latency_ms, options.per_row_ms, options.shap_multiplier)
        try:
            result = await run_batch_prediction(prediction.deployment, {"id": prediction.id, **prediction.attributes},
                                                options.datasets, options.spaces, scorer)
        except JobFailed as exc:
            prediction.status, prediction.error_message = "error", str(exc)
            job.update({"status": "error", "success": False, "updatedAt": _now()})
            return
        except asyncio.CancelledError:
            prediction.status = "cancelled"
            job.update({"status": "cancelled", "success": False, "updatedAt": _now()})
            raise
        space = _space_id(prediction.attributes)
        job["details"]["outputFiles"] = [
            {"key": name, "path": str(result.folder / name), "spaceId": space, "fileName": name,
             "fileType": name.rsplit(".", 1)[-1]} for name in result.files]
        job.update({"status": "completed", "success": True, "rowsPredicted": result.predicted, "updatedAt": _now()})
        prediction.status = "ready"
        prediction.attributes["updatedAt"] = _now()

    async def _cancel(self, request: web.Request) -> web.Response:
        self._authorize(request)
        corr_type, corr_id = request.match_info["corr_type"], request.match_info["corr_id"]
        if corr_type not in ("batch-prediction", "experiment-version"):
            return failure(400, f"corrType must be batch-prediction or experiment-version, not '{corr_type}'")
        prediction = self._predictions.get(corr_id)
        if corr_type != "batch-prediction" or prediction is None:
            return failure(404, f"No job of {corr_type} '{corr_id}' was found")
        if prediction.task is not None and not prediction.task.done():
            prediction.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prediction.task
        return web.Response(status=204)

    # ---- lookups ------------------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> None:
        denied = self._auth.unauthorized(request, self._options())
        if denied is not None:
            raise _Answer(denied)

    def _deployment(self, request: web.Request) -> Deployment:
        self._authorize(request)
        ref = request.match_info["deployment"]
        deployment = self._catalog.qlik(ref)
        if deployment is None:
            raise _Answer(failure(404, f"Deployment '{ref}' was not found"))
        return deployment

    def _prediction(self, request: web.Request) -> BatchPrediction:
        deployment = self._deployment(request)
        ref = request.match_info["prediction"]
        prediction = self._predictions.get(ref)
        if prediction is None or prediction.deployment is not deployment:
            raise _Answer(failure(404, f"Batch prediction '{ref}' was not found"))
        return prediction


class _Answer(Exception):
    """A finished error response, raised from a lookup and returned by :func:`_answering`."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _answering(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Answer as answered:
            return answered.response
    return answer


def _attributes(raw: JsonValue) -> JsonObject:
    if not isinstance(raw, dict):
        raise BadInput("data.attributes must be an object")
    unknown = sorted(set(raw) - ATTRIBUTES)
    if unknown:
        raise BadInput(f"Unknown property '{unknown[0]}' in data.attributes")
    attributes = dict(raw)
    attributes["writeback"] = _writeback(raw.get("writeback"))
    if raw.get("schedule") is not None:
        attributes["schedule"] = _schedule_input(raw["schedule"])
    return attributes


def _writeback(raw: JsonValue) -> JsonObject:
    if not isinstance(raw, dict):
        raise BadInput("writeback must be an object with spaceId, format and dstName")
    unknown = sorted(set(raw) - WRITEBACK_FIELDS)
    if unknown:
        raise BadInput(f"Unknown property '{unknown[0]}' in writeback")
    missing = [name for name in ("spaceId", "format", "dstName") if name not in raw]
    if missing:
        raise BadInput(f"writeback.{missing[0]} is required")
    if raw["format"] not in ("qvd", "parquet", "csv"):
        raise BadInput(f"writeback.format must be qvd, parquet or csv, not {raw['format']!r}")
    if not all(isinstance(raw.get(name, ""), str) for name in WRITEBACK_FIELDS):
        raise BadInput("writeback fields must be strings")
    writeback = dict(raw)
    if raw["format"] != "qvd":
        try:
            named = writeback_names(dict(raw))
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        for kind, name in named.items():
            writeback[NAME_FIELDS[kind]] = name
    return writeback


def _schedule_input(raw: JsonValue) -> JsonObject:
    if not isinstance(raw, dict):
        raise BadInput("schedule must be an object")
    unknown = sorted(set(raw) - SCHEDULE_FIELDS)
    if unknown:
        raise BadInput(f"Unknown property '{unknown[0]}' in schedule")
    missing = [name for name in ("startDateTime", "timezone") if not raw.get(name)]
    if missing:
        raise BadInput(f"schedule.{missing[0]} is required")
    return {"applyDatasetChangeOnly": True, **raw, "status": "pending"}


def _apply(attributes: JsonObject, operation: JsonValue) -> None:
    if not isinstance(operation, dict) or operation.get("op") != "replace" or "value" not in operation:
        raise BadInput("every patch operation must be {\"op\": \"replace\", \"path\": …, \"value\": …}")
    path = operation.get("path")
    if path not in PATCH_PATHS:
        raise BadInput(f"path {path!r} cannot be patched")
    parts = str(path).strip("/").split("/")
    if parts[0] == "writeback":
        writeback = attributes.get("writeback")  # an object: checked when created and after each patch
        if not isinstance(writeback, dict):
            writeback = attributes["writeback"] = {}
        writeback[parts[1]] = operation["value"]
    elif parts[0] == "applyDatasetChangeOnly":
        schedule = attributes.get("schedule")  # an object, or None when there is none
        attributes["schedule"] = {**(schedule if isinstance(schedule, dict) else {}),
                                  "applyDatasetChangeOnly": operation["value"]}
    else:
        attributes[parts[0]] = operation["value"]


def _schedule_document(prediction: BatchPrediction) -> JsonObject:
    return {"data": {"id": prediction.id, "type": "batch-prediction-schedule",
                     "attributes": prediction.attributes.get("schedule")}}


def _space_id(attributes: Mapping[str, JsonValue]) -> str:
    """The writeback's ``spaceId``: a string, as the writeback was checked when created and patched."""
    writeback = attributes.get("writeback")
    space = writeback.get("spaceId", "") if isinstance(writeback, dict) else ""
    return space if isinstance(space, str) else ""


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")
