"""DataRobot's real-time route: ``POST /predApi/v1.0/deployments/{id}/predictions``.

Bodies: CSV (``text/csv`` or ``text/plain``, any charset), JSON (an array of row objects), or a
multipart ``file`` field; optionally gzip-encoded. The query is validated strictly, with the
documented 422/400 messages. Responses are ``{"data": [row…]}`` (``Accept: application/json``, the
default) or the batch-output CSV columns (``Accept: text/csv``), always with
``X-DataRobot-Execution-Time`` and ``X-DataRobot-Model-Cache-Hit``. A value the model cannot read
fails the whole request with 422, as the real server does. Error bodies are ``{"message": …}``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import TypedDict

import orjson
from aiohttp import web

from gateway.backends.csvcodec import encode_csv
from gateway.emulator.attribution import base_values, shap_columns
from gateway.emulator.datarobot_query import DataRobotQuery, ExplanationRequest, message
from gateway.emulator.datarobot_table import Table, read_table
from gateway.emulator.explain import shap_explanations, xemp_explanations
from gateway.emulator.faults import ModelCrash, check_crash
from gateway.emulator.models import Column, Deployment, DeploymentCatalog, Model, Prediction, Scores
from gateway.emulator.settings import EmulatorOptions
from gateway.emulator.vendor import Answer, Refusal, reason_phrase, wants_csv, whole_seconds
from gateway.json_types import JsonValue

DEPLOYMENT_ID = re.compile(r"[0-9a-f]{24}")
APPROVAL_STATUS = "APPROVED"
INJECTED_MESSAGES = {
    400: "Requested failure",
    401: "Invalid API token",
    404: "Not found",
    413: "Request Entity Too Large",
    422: "Predictions are not available because: the prediction server refused the request",
}
INVALID_TOKEN = "Invalid API token"
NO_CREDENTIALS = "Invalid Authorization header. No credentials provided."


# ---- the route ------------------------------------------------------------------------------

class DataRobotApi:
    route = "datarobot"

    def __init__(self, catalog: DeploymentCatalog) -> None:
        self._catalog = catalog

    def unauthorized(self, request: web.Request, options: EmulatorOptions) -> web.Response | None:
        denied = _check_token(request.headers.get("Authorization"), options.token)
        if denied is not None:
            return message(401, denied)
        if options.datarobot_key is not None and request.headers.get("DataRobot-Key") != options.datarobot_key:
            return message(401, "The datarobot-key header is missing")
        return None

    def rate_limited(self, wait_s: float) -> web.Response:
        wait = whole_seconds(wait_s)
        response = message(429, f"Too many requests: retry in {wait} seconds")
        response.headers["Retry-After"] = str(wait)
        return response

    def injected(self, status: int, options: EmulatorOptions) -> web.Response:
        if status == 403:
            response = web.Response(status=403, body=orjson.dumps({"status": "API token not valid", "code": 403}),
                                    content_type="application/json")
        else:
            response = message(status, INJECTED_MESSAGES.get(status, reason_phrase(status)))
        if status in (429, 503):
            response.headers["Retry-After"] = str(whole_seconds(options.retry_after_s))
        return response

    def error(self, status: int, text: str) -> web.Response:
        return message(status, text)

    def finish(self, response: web.Response, elapsed_s: float) -> None:
        response.headers["X-DataRobot-Execution-Time"] = str(round(elapsed_s * 1000.0))
        response.headers["X-DataRobot-Model-Cache-Hit"] = "true"

    async def predict(self, request: web.Request, options: EmulatorOptions) -> Answer:
        try:
            deployment = self._deployment(request.match_info["deployment"])
            query = DataRobotQuery.parse(request.query)
            explanations = query.explanations(deployment.model, options.explanation_algorithm)
            table = await read_table(request)
            response = respond(deployment.model, query, explanations, table,
                               wants_csv(request.headers.get("Accept", "")), options.crash_value)
        except Refusal as refusal:
            return Answer(refusal.response)
        except ModelCrash:
            return Answer(self.injected(500, options), fault="crash")
        model = deployment.model
        compared = model.disagreements(dict(zip(table.names, table.columns, strict=True)), table.rows) \
            if model.champion is not None else None
        return Answer(response, table.rows, explanations.algorithm if explanations else None, disagreements=compared)

    def _deployment(self, ref: str) -> Deployment:
        deployment = self._catalog.datarobot(ref)
        if deployment is None:
            raise Refusal(message(404, "Not found" if DEPLOYMENT_ID.fullmatch(ref) else "Bad request"))
        return deployment


def _check_token(header: str | None, token: str | None) -> str | None:
    """Why the Authorization header is refused, or None when it carries ``token`` (any credentials
    when ``token`` is None). Accepts ``Bearer``, ``Token`` and ``Basic base64(user:token)``.

    The messages are the Prediction API's own: no header or an unreadable one is "Invalid API
    token" ("provided an invalid or no API token key"); a scheme without credentials is "No
    credentials provided".
    """
    if not header or not header.strip():
        return INVALID_TOKEN
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        if not credentials:
            return NO_CREDENTIALS
        return None if token is None or credentials == token else INVALID_TOKEN
    if scheme == "basic":
        try:
            _user, colon, secret = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return INVALID_TOKEN
        if not colon or not secret:
            return INVALID_TOKEN
        return None if token is None or secret == token else INVALID_TOKEN
    return INVALID_TOKEN


# ---- responses ------------------------------------------------------------------------------

def respond(model: Model, query: DataRobotQuery, explanations: ExplanationRequest | None, table: Table,
            csv: bool, crash_value: str | None = None) -> web.Response:
    positions = {name: i for i, name in enumerate(table.names)}
    passthrough = table.names if query.passthrough_all else query.passthrough
    absent = [name for name in passthrough if name not in positions]
    if absent:
        listed = ", ".join(f"u'{name}'" for name in absent)
        raise Refusal(message(
            400, f"passthroughColumns do not match columns, columns expected but not found: [{listed}]"))
    missing = [f for f in model.features if f not in positions]
    if missing:
        raise Refusal(message(422, f"Columns expected by the model but not found in the data: {missing}"))
    features = {f: table.columns[positions[f]] for f in model.features}
    check_crash(features.values(), crash_value)
    scores = model.score(features, table.rows)
    if scores.faults:
        row = min(scores.faults)
        feature, why = scores.faults[row]
        raise Refusal(message(422, f"Invalid value in row {row} (rowId {row}), column '{feature}': {why}"))
    explained = _explain(model, scores, features, explanations)
    carried = [(name, table.columns[positions[name]]) for name in passthrough]
    outliers = _outliers(model, scores) if query.prediction_warnings else None
    if csv:
        body = _csv_body(model, scores, explanations, explained, carried, outliers)
        return web.Response(body=body, content_type="text/csv", charset="utf-8")
    rows = _json_rows(model, scores, explained, carried, outliers)
    return web.Response(body=orjson.dumps({"data": rows}), content_type="application/json")


def _outliers(model: Model, scores: Scores) -> list[bool] | None:
    """Prediction warnings, for a deployment that has them: whether each row's prediction lies
    outside the range its model saw in training. The real-time JSON names it ``isOutlierPrediction``
    and the CSV ``IS_OUTLIER_PREDICTION`` (the batch output's column; see the gateway's decoder)."""
    if model.prediction_range is None:
        return None
    low, high = model.prediction_range
    return [isinstance(value, float) and not low <= value <= high for value in scores.predictions]


class ExplanationEntry(TypedDict):
    """One ``predictionExplanations`` entry, as the JSON shows it."""

    label: str
    feature: str
    featureValue: JsonValue
    strength: float
    qualitativeStrength: str | None


class PredictionValue(TypedDict):
    """One ``predictionValues`` entry: a class's probability, or the regression value."""

    value: Prediction
    label: str


@dataclass(slots=True)
class RowExplanation:
    entries: list[ExplanationEntry]  # strongest first
    base_value: float | None = None  # SHAP only
    remaining_total: float | None = None  # SHAP only


def _explain(model: Model, scores: Scores, features: Mapping[str, Column],
             request: ExplanationRequest | None) -> dict[int, RowExplanation] | None:
    if request is None:
        return None
    label = model.positive_class or model.target
    measured = scores.probabilities[1] if scores.probabilities is not None else scores.predictions
    # Every row has its value: a request with an unreadable row was refused before this.
    rows = [row for row, value in enumerate(measured) if isinstance(value, float) and request.wanted(value)]
    terms = model.terms
    explained: dict[int, RowExplanation] = {row: RowExplanation([]) for row in range(scores.rows)}
    if request.algorithm == "shap":
        base = base_values(model)[0]
        for row, (shown, remaining) in shap_explanations(shap_columns(model, scores), rows, request.limit).items():
            entries: list[ExplanationEntry] = [{"label": label, "feature": terms[i].name,
                        "featureValue": _as_text(features[terms[i].name][row]),
                        "strength": strength, "qualitativeStrength": None} for i, strength in shown]
            explained[row] = RowExplanation(entries, base, remaining)
    else:
        for row, ranked in xemp_explanations(model, scores, rows, request.limit).items():
            explained[row] = RowExplanation([
                {"label": label, "feature": terms[i].name,
                 "featureValue": terms[i].display_value(features[terms[i].name][row]),
                 "strength": strength, "qualitativeStrength": qualitative} for i, strength, qualitative in ranked])
    return explained


def _as_text(cell: JsonValue) -> str:
    """SHAP's ``featureValue`` is the value as text, as DataRobot shows it."""
    if cell is None:
        return ""
    if cell is True or cell is False:
        return "true" if cell else "false"
    return cell if isinstance(cell, str) else repr(cell) if isinstance(cell, float) else str(cell)


def _prediction_values(model: Model, scores: Scores) -> list[list[PredictionValue]]:
    if model.kind == "regression":
        target = model.target
        return [[{"value": v, "label": target}] for v in scores.predictions]
    assert model.classes is not None and scores.probabilities is not None
    if model.kind == "binary":
        negative, positive = model.classes
        return [[{"value": p, "label": positive}, {"value": q, "label": negative}]
                for q, p in zip(*scores.probabilities, strict=False)]
    classes = model.classes
    return [[{"value": p, "label": c} for c, p in zip(classes, ps, strict=True)]
            for ps in zip(*scores.probabilities, strict=True)]


def _json_rows(model: Model, scores: Scores, explained: dict[int, RowExplanation] | None,
               carried: list[tuple[str, Column]], outliers: list[bool] | None = None) -> list[dict[str, object]]:
    if outliers is not None:
        rows = _json_rows(model, scores, explained, carried)
        for row, outlier in zip(rows, outliers, strict=True):
            row["isOutlierPrediction"] = outlier
        return rows
    if model.kind == "binary":
        threshold = model.threshold
        if explained is None and not carried:  # the hot path: one comprehension, no intermediate lists
            negative, positive = model.classes  # type: ignore[misc]
            p_negative, p_positive = scores.probabilities  # type: ignore[misc]
            return [{"predictionValues": [{"value": p, "label": positive}, {"value": q, "label": negative}],
                     "predictionThreshold": threshold, "prediction": prediction, "rowId": i,
                     "deploymentApprovalStatus": APPROVAL_STATUS}
                    for i, q, p, prediction in zip(count(), p_negative, p_positive, scores.predictions)]
        values = _prediction_values(model, scores)
        rows = [{"predictionValues": v, "predictionThreshold": threshold, "prediction": p, "rowId": i}
                for i, v, p in zip(count(), values, scores.predictions)]
    else:
        values = _prediction_values(model, scores)
        if explained is None and not carried:
            return [{"predictionValues": v, "prediction": p, "rowId": i, "deploymentApprovalStatus": APPROVAL_STATUS}
                    for i, v, p in zip(count(), values, scores.predictions)]
        rows = [{"predictionValues": v, "prediction": p, "rowId": i}
                for i, v, p in zip(count(), values, scores.predictions)]
    for i, row in enumerate(rows):
        if explained is not None:
            explanation = explained[i]
            row["predictionExplanations"] = explanation.entries
            if explanation.base_value is not None:
                row["shapExplanationsMetadata"] = {"baseValue": explanation.base_value,
                                                   "remainingTotal": explanation.remaining_total,
                                                   "warnings": None}
        if carried:
            row["passthroughValues"] = {name: column[i] for name, column in carried}
        row["deploymentApprovalStatus"] = APPROVAL_STATUS
    return rows


def _csv_body(model: Model, scores: Scores, request: ExplanationRequest | None,
              explained: dict[int, RowExplanation] | None, carried: list[tuple[str, Column]],
              outliers: list[bool] | None = None) -> bytes:
    """The batch-output columns: predictions, explanations, SHAP metadata, passthrough, warnings, approval."""
    target = model.target
    header: list[str] = []
    columns: list[Sequence[JsonValue]] = []
    if model.kind == "regression":
        header.append(f"{target}_PREDICTION")
        columns.append(scores.predictions)
    else:
        assert model.classes is not None and scores.probabilities is not None
        ordered = list(zip(model.classes, scores.probabilities, strict=False))
        if model.kind == "binary":
            ordered.reverse()  # positive class first, as DataRobot lists it
        for label, probabilities in ordered:
            header.append(f"{target}_{label}_PREDICTION")
            columns.append(probabilities)
        header.append(f"{target}_PREDICTION")
        columns.append(scores.predictions)
        if model.kind == "binary":
            header += ["THRESHOLD", "POSITIVE_CLASS"]
            columns += [[model.threshold] * scores.rows, [model.positive_class] * scores.rows]
    rows: list[list[JsonValue]] = [list(row) for row in zip(*columns, strict=False)] if columns else []
    if request is not None and explained is not None:
        slots = request.limit if request.limit is not None else len(model.terms)
        for n in range(1, slots + 1):
            header += [f"EXPLANATION_{n}_FEATURE_NAME", f"EXPLANATION_{n}_STRENGTH",
                       f"EXPLANATION_{n}_QUALITATIVE_STRENGTH", f"EXPLANATION_{n}_ACTUAL_VALUE"]
        shap = request.algorithm == "shap"
        if shap:
            header += ["SHAP_BASE_VALUE", "SHAP_REMAINING_TOTAL"]
        for i, row in enumerate(rows):
            explanation = explained[i]
            for entry in explanation.entries:
                row += [entry["feature"], entry["strength"], entry["qualitativeStrength"], entry["featureValue"]]
            row += [None] * (4 * (slots - len(explanation.entries)))
            if shap:
                row += [explanation.base_value, explanation.remaining_total]
    for name, column in carried:
        header.append(name)
        for row, value in zip(rows, column, strict=False):
            row.append(value)
    if outliers is not None:
        header.append("IS_OUTLIER_PREDICTION")
        for row, outlier in zip(rows, outliers, strict=True):
            row.append(outlier)
    header.append("DEPLOYMENT_APPROVAL_STATUS")
    for row in rows:
        row.append(APPROVAL_STATUS)
    return encode_csv(header, rows, true_text="true", false_text="false")
