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
import codecs
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from itertools import count
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

from gateway.backends.csvcodec import CsvError, encode_csv, read_csv
from gateway.emulator.bodies import BodyError, read_body
from gateway.emulator.explain import shap_explanations, xemp_explanations
from gateway.emulator.models import Deployment, DeploymentCatalog, Model, Scores
from gateway.emulator.settings import EmulatorOptions
from gateway.emulator.vendor import Answer, Refusal, reason_phrase, wants_csv, whole_seconds

DEPLOYMENT_ID = re.compile(r"[0-9a-f]{24}")
APPROVAL_STATUS = "APPROVED"
ALLOWED_PARAMS = frozenset({
    "passthroughColumns", "passthroughColumnsSet", "maxExplanations", "maxCodes", "thresholdLow",
    "thresholdHigh", "explanationAlgorithm", "maxNgramExplanations", "explanationNumTopClasses",
    "explanationClassNames", "predictionWarningEnabled", "excludeAdjustedPredictions"})
TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})
INJECTED_MESSAGES = {
    400: "Requested failure",
    401: "Invalid API token",
    404: "Not found",
    413: "Request Entity Too Large",
    422: "Predictions are not available because: the prediction server refused the request",
}


def message(status: int, text: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"message": text}), content_type="application/json")


def _data_error(field: str, problem: str) -> Refusal:
    return Refusal(message(422, f"{{'{field}': DataError({problem})}}"))


@dataclass(slots=True)
class ExplanationRequest:
    algorithm: str  # "shap" | "xemp"
    limit: int | None  # None = all features
    threshold_low: float | None
    threshold_high: float | None

    def wanted(self, value: float) -> bool:
        """Whether a row's prediction lies outside [thresholdLow, thresholdHigh] (or no threshold is set)."""
        if self.threshold_low is None and self.threshold_high is None:
            return True
        return ((self.threshold_low is not None and value < self.threshold_low)
                or (self.threshold_high is not None and value > self.threshold_high))


@dataclass(slots=True)
class DataRobotQuery:
    passthrough: list[str]
    passthrough_all: bool
    max_explanations: int | str  # a count, or "all"
    threshold_low: float | None
    threshold_high: float | None
    algorithm: str | None

    @classmethod
    def parse(cls, query: MultiMapping[str]) -> DataRobotQuery:
        for key in query:
            if key not in ALLOWED_PARAMS:
                raise Refusal(message(422, f"'{key}': {key} is not allowed key"))
        passthrough = query.getall("passthroughColumns", [])
        if any(not name.strip() for name in passthrough):
            raise Refusal(message(422, "'passthroughColumns': blank value is not allowed"))
        passthrough_set = query.get("passthroughColumnsSet")
        if passthrough_set is not None and passthrough_set != "all":
            raise Refusal(message(422, "'passthroughColumnsSet': value is not exactly 'all'"))
        max_explanations = _max_explanations(query.get("maxExplanations", query.get("maxCodes")))
        low = _threshold("threshold_low", query.get("thresholdLow"))
        high = _threshold("threshold_high", query.get("thresholdHigh"))
        algorithm = query.get("explanationAlgorithm")
        if algorithm is not None:
            algorithm = algorithm.strip().lower()
            if algorithm not in ("shap", "xemp"):
                raise _data_error("explanation_algorithm", "value doesn't match any variant")
        _check_multiclass_params(query)
        _boolean(query.get("predictionWarningEnabled"),
                 lambda: Refusal(message(422, "'predictionWarningEnabled': value can't be converted to Bool")))
        _boolean(query.get("excludeAdjustedPredictions"),
                 lambda: _data_error("exclude_adjusted_predictions", "value can't be converted to Bool"))
        return cls(passthrough, passthrough_set == "all", max_explanations, low, high, algorithm)

    def explanations(self, model: Model, default_algorithm: str) -> ExplanationRequest | None:
        algorithm = self.algorithm or default_algorithm
        if self.max_explanations == "all" and algorithm != "shap":
            raise _data_error("max_codes", "value can't be converted to int")
        if self.max_explanations == 0:
            return None
        if model.kind == "multiclass":
            raise Refusal(message(422, "Multiclass models cannot be used for Prediction Explanations"))
        limit = None if self.max_explanations == "all" else int(self.max_explanations)
        return ExplanationRequest(algorithm, limit, self.threshold_low, self.threshold_high)


def _max_explanations(value: str | None) -> int | str:
    if value is None:
        return 0
    if value.strip() == "all":
        return "all"
    try:
        number = int(value.strip())
    except ValueError:
        raise _data_error("max_codes", "value can't be converted to int") from None
    if number < 0:
        raise _data_error("max_codes", "value is less than 0")
    return number


def _threshold(field: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _data_error(field, "value can't be converted to float")
    return number


def _check_multiclass_params(query: MultiMapping[str]) -> None:
    """The multiclass selectors are checked even though explanations then refuse multiclass."""
    top = query.get("explanationNumTopClasses")
    names = query.getall("explanationClassNames", [])
    if top is not None:
        try:
            number = int(top.strip())
        except ValueError:
            raise _data_error("explanation_num_top_classes", "value can't be converted to int") from None
        if not 1 <= number <= 10:
            raise _data_error("explanation_num_top_classes", "value is not between 1 and 10")
    if any(not name.strip() for name in names):
        raise Refusal(message(422, "'explanationClassNames': blank value is not allowed"))
    if top is not None and names:
        raise Refusal(message(422, "explanationNumTopClasses and explanationClassNames are mutually exclusive"))
    ngrams = query.get("maxNgramExplanations")
    if ngrams is not None and ngrams.strip() != "all":
        try:
            if int(ngrams.strip()) < 0:
                raise ValueError
        except ValueError:
            raise _data_error("max_ngram_explanations", "value can't be converted to int") from None


def _boolean(value: str | None, refusal: Any) -> bool | None:
    if value is None:
        return None
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise refusal()


# ---- request bodies -------------------------------------------------------------------------

@dataclass(slots=True)
class Table:
    names: list[str]
    columns: list[Sequence[Any]]
    rows: int


async def read_table(request: web.Request) -> Table:
    try:
        body = await read_body(request)
    except BodyError as exc:
        raise Refusal(message(exc.status, exc.message)) from None
    media, charset = request.content_type, request.charset
    if media == "multipart/form-data":
        body, media, charset = _file_part(request.headers.get("Content-Type", ""), body)
    if media in ("application/json", "text/json"):
        return _json_table(body)
    return _csv_table(_decode(body, charset))


def _file_part(content_type: str, body: bytes) -> tuple[bytes, str, str | None]:
    """The ``file`` field of a multipart/form-data body, with its own media type and charset."""
    try:
        parsed = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1")
                                                     + b"\r\n\r\n" + body)
        parts = list(parsed.iter_parts()) if isinstance(parsed, EmailMessage) and parsed.is_multipart() else []
    except (ValueError, TypeError, UnicodeError) as exc:
        raise Refusal(message(400, f"The multipart body cannot be read: {exc}")) from None
    for part in parts:
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                break
            media = part.get_content_type() if part.get("Content-Type") else "text/csv"
            return payload, media, part.get_content_charset()
    raise Refusal(message(400, "The multipart body has no 'file' field with the data to predict"))


def _decode(body: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").strip().strip('"')
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise Refusal(message(400, f"Unsupported charset '{name}'")) from None
    try:
        return body.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        raise Refusal(message(400, f"The body is not valid {name}: {exc.reason} at byte {exc.start}")) from None


def _csv_table(text: str) -> Table:
    if not text.strip():
        raise Refusal(message(400, "No data provided: the body must be CSV with a header line"))
    try:
        header, data = read_csv(text)
    except CsvError as exc:
        raise Refusal(message(400, str(exc))) from None
    _check_unique(header)
    return Table(header, list(zip(*data, strict=False)) if data else [() for _ in header], len(data))


def _json_table(body: bytes) -> Table:
    try:
        records = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(message(400, f"The body is not valid JSON: {exc}")) from None
    if type(records) is not list:
        raise Refusal(message(400, "A JSON body must be an array of objects, one per row"))
    if any(type(record) is not dict for record in records):
        row = next(i for i, record in enumerate(records) if type(record) is not dict)
        raise Refusal(message(400, f"Row {row} of the JSON body is not an object"))
    if not records:
        return Table([], [], 0)
    first = records[0].keys()
    if all(record.keys() == first for record in records):
        names = list(first)
    else:
        names = list(dict.fromkeys(name for record in records for name in record))
    return Table(names, [[record.get(name) for record in records] for name in names], len(records))


def _check_unique(names: list[str]) -> None:
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise Refusal(message(400, f"Column '{duplicate}' appears more than once in the header"))


# ---- the route ------------------------------------------------------------------------------

class DataRobotApi:
    route = "datarobot"

    def __init__(self, catalog: DeploymentCatalog) -> None:
        self._catalog = catalog

    def unauthorized(self, request: web.Request, options: EmulatorOptions) -> web.Response | None:
        if options.token is not None:
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
                               wants_csv(request.headers.get("Accept", "")))
        except Refusal as refusal:
            return Answer(refusal.response)
        return Answer(response, table.rows, explanations.algorithm if explanations else None)

    def _deployment(self, ref: str) -> Deployment:
        deployment = self._catalog.datarobot(ref)
        if deployment is None:
            raise Refusal(message(404, "Not found" if DEPLOYMENT_ID.fullmatch(ref) else "Bad request"))
        return deployment


def _check_token(header: str | None, token: str) -> str | None:
    """Why the Authorization header does not carry ``token``, or None when it does.
    Accepts ``Bearer``, ``Token`` and ``Basic base64(user:token)``."""
    if not header or not header.strip():
        return "Invalid API token"
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        if not credentials:
            return "Invalid Authorization header. No credentials provided."
        return None if credentials == token else "Invalid API token"
    if scheme == "basic":
        try:
            _, _, secret = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "Invalid API token"
        return None if secret == token else "Invalid API token"
    return "Invalid API token"


# ---- responses ------------------------------------------------------------------------------

def respond(model: Model, query: DataRobotQuery, explanations: ExplanationRequest | None, table: Table,
            csv: bool) -> web.Response:
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
    scores = model.score(features, table.rows)
    if scores.faults:
        row = min(scores.faults)
        feature, why = scores.faults[row]
        raise Refusal(message(422, f"Invalid value in row {row} (rowId {row}), column '{feature}': {why}"))
    explained = _explain(model, scores, features, explanations)
    carried = [(name, table.columns[positions[name]]) for name in passthrough]
    if csv:
        body = _csv_body(model, scores, explanations, explained, carried)
        return web.Response(body=body, content_type="text/csv", charset="utf-8")
    rows = _json_rows(model, scores, explained, carried)
    return web.Response(body=orjson.dumps({"data": rows}), content_type="application/json")


@dataclass(slots=True)
class RowExplanation:
    entries: list[dict[str, Any]]  # as the JSON shows them, strongest first
    base_value: float | None = None  # SHAP only
    remaining_total: float | None = None  # SHAP only


def _explain(model: Model, scores: Scores, features: dict[str, Sequence[Any]],
             request: ExplanationRequest | None) -> dict[int, RowExplanation] | None:
    if request is None:
        return None
    label = model.positive_class or model.target
    measured = scores.probabilities[1] if scores.probabilities is not None else scores.predictions
    rows = [row for row, value in enumerate(measured) if request.wanted(value)]
    terms = model.terms
    explained: dict[int, RowExplanation] = {row: RowExplanation([]) for row in range(scores.rows)}
    if request.algorithm == "shap":
        base = model.base_values[0]
        for row, (shown, remaining) in shap_explanations(scores, rows, request.limit).items():
            entries = [{"label": label, "feature": terms[i].name,
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


def _as_text(cell: Any) -> str:
    """SHAP's ``featureValue`` is the value as text, as DataRobot shows it."""
    if cell is None:
        return ""
    if cell is True or cell is False:
        return "true" if cell else "false"
    return cell if isinstance(cell, str) else repr(cell) if isinstance(cell, float) else str(cell)


def _prediction_values(model: Model, scores: Scores) -> list[list[dict[str, Any]]]:
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
               carried: list[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
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
              explained: dict[int, RowExplanation] | None, carried: list[tuple[str, Sequence[Any]]]) -> bytes:
    """The batch-output columns: predictions, explanations, SHAP metadata, passthrough, approval."""
    target = model.target
    header: list[str] = []
    columns: list[Sequence[Any]] = []
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
    rows: list[list[Any]] = [list(row) for row in zip(*columns, strict=False)] if columns else []
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
    header.append("DEPLOYMENT_APPROVAL_STATUS")
    for row in rows:
        row.append(APPROVAL_STATUS)
    return encode_csv(header, rows, true_text="true", false_text="false")
