"""Qlik Predict's real-time route: ``POST …/realtime-predictions/actions/run`` (and the alias form).

Request ``{"schema": [{"name"}], "rows": [[…]]}``, cells typed or stringified; features are found
by name, extra columns ride along. Response, as the tutorial shows it::

    {"data": {"type": "realtime-prediction",
              "attributes": {"schema": [{"name", "type"}], "rows": [[…]]}}}

with columns ``automl_row_index, [index], [source…], <target>_predicted, <target>_<class>…,
<feature>_SHAP…, [not_predicted_reason]``; or, for ``Accept: text/csv``, a header line and one
line per row. Errors are ``Failure`` bodies ``{"errors": [{code, title, detail}], "traceId"}``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import orjson
from aiohttp import web
from multidict import MultiMapping

from gateway.backends.csvcodec import encode_csv
from gateway.emulator.attribution import shap_columns
from gateway.emulator.bodies import BodyError, read_body
from gateway.emulator.faults import ModelCrash, check_crash
from gateway.emulator.models import Column, Deployment, DeploymentCatalog, Model, Scores
from gateway.emulator.settings import EmulatorOptions
from gateway.emulator.vendor import Answer, Refusal, reason_phrase, wants_csv, whole_seconds
from gateway.json_types import JsonValue

BOOLEAN_PARAMS = {"includeShap": "include_shap", "includeSource": "include_source",
                  "includeNotPredictedReason": "include_reason"}
INDEX_PARAM = "index"
RESPONSE_TYPE = "realtime-prediction"
JSON = "application/json"
CSV = "text/csv"
# A response column: name, Qlik type (numeric | categorical) and one value per row.
OutputColumn = tuple[str, str, Sequence[JsonValue]]


def failure(status: int, detail: str, *, title: str | None = None) -> web.Response:
    """A Qlik ``Failure`` response."""
    body = {"errors": [{"code": f"HTTP-{status}", "title": title or reason_phrase(status), "detail": detail}],
            "traceId": secrets.token_hex(16)}
    return web.json_response(body, status=status, dumps=_dumps)


def rate_limit_failure(wait_s: float) -> web.Response:
    """429 exactly as qlik.dev documents it: ``Retry-After`` and the same wait in the detail."""
    wait = whole_seconds(wait_s)
    body = {"errors": [{"code": "HTTP-429", "title": "API rate limit reached.",
                        "detail": f"You need to wait {wait} seconds until limit is lifted."}]}
    return web.json_response(body, status=429, headers={"Retry-After": str(wait)}, dumps=_dumps)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


class QlikQuery:
    """The run route's query: three booleans and an optional index column."""

    __slots__ = ("include_reason", "include_shap", "include_source", "index")

    def __init__(self, query: MultiMapping[str]) -> None:
        self.include_shap = self.include_source = self.include_reason = False
        self.index: str | None = None
        seen: set[str] = set()
        for key, value in query.items():
            if key in seen:
                raise Refusal(failure(400, f"Query parameter '{key}' is given more than once"))
            seen.add(key)
            if key == INDEX_PARAM:
                if not value:
                    raise Refusal(failure(400, "Query parameter 'index' must name a column"))
                self.index = value
            elif key in BOOLEAN_PARAMS:
                if value not in ("true", "false"):
                    raise Refusal(failure(400, f"Query parameter '{key}' must be true or false, got '{value}'"))
                setattr(self, BOOLEAN_PARAMS[key], value == "true")
            else:
                known = ", ".join([*BOOLEAN_PARAMS, INDEX_PARAM])
                raise Refusal(failure(400, f"Unknown query parameter '{key}'; known parameters: {known}"))


class QlikApi:
    route = "qlik"

    def __init__(self, catalog: DeploymentCatalog) -> None:
        self._catalog = catalog

    def unauthorized(self, request: web.Request, options: EmulatorOptions) -> web.Response | None:
        """Qlik Cloud refuses a request without a bearer token (an API key or OAuth token); any
        token is accepted unless the emulator was given one."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return failure(401, "A bearer token is required in the Authorization header")
        if options.token is not None and token.strip() != options.token:
            return failure(401, "The bearer token is not valid")
        return None

    def rate_limited(self, wait_s: float) -> web.Response:
        return rate_limit_failure(wait_s)

    def injected(self, status: int, options: EmulatorOptions) -> web.Response:
        if status == 429:
            return rate_limit_failure(options.retry_after_s)
        response = failure(status, "The prediction service could not process the request")
        if status == 503:
            response.headers["Retry-After"] = str(whole_seconds(options.retry_after_s))
        return response

    def error(self, status: int, message: str) -> web.Response:
        return failure(status, message)

    def finish(self, response: web.Response, elapsed_s: float) -> None:
        return None

    async def predict(self, request: web.Request, options: EmulatorOptions) -> Answer:
        try:
            deployment = self._deployment(request.match_info["deployment"])
            query = QlikQuery(request.query)
            try:
                body = await read_body(request)
            except BodyError as exc:
                raise Refusal(failure(exc.status, exc.message)) from None
            names, rows = parse_input(body)
            response = respond(deployment.model, query, names, rows, wants_csv(request.headers.get("Accept", "")),
                               options.crash_value)
        except Refusal as refusal:
            return Answer(refusal.response)
        except ModelCrash:
            return Answer(self.injected(500, options), fault="crash")
        model = deployment.model
        compared = model.disagreements(dict(zip(names, zip(*rows, strict=False), strict=False)), len(rows)) \
            if model.champion is not None and rows else None
        return Answer(response, len(rows), "shap" if query.include_shap else None, disagreements=compared)

    def _deployment(self, ref: str) -> Deployment:
        deployment = self._catalog.qlik(ref)
        if deployment is None:
            raise Refusal(failure(404, f"Deployment '{ref}' was not found"))
        return deployment


def parse_input(body: bytes) -> tuple[list[str], list[list[JsonValue]]]:
    """``RealtimePredictionInput``: column names and rows, checked for shape (not for values)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(failure(400, f"The request body is not valid JSON: {exc}")) from None
    if type(doc) is not dict:
        raise Refusal(failure(400, "The request body must be a JSON object with 'schema' and 'rows'"))
    extra = sorted(set(doc) - {"schema", "rows"})
    if extra:
        raise Refusal(failure(400, f"Unknown property '{extra[0]}' in the request body"))
    schema, rows = doc.get("schema"), doc.get("rows")
    if type(schema) is not list or not schema:
        raise Refusal(failure(400, "'schema' must be a non-empty array of {\"name\": <feature>}"))
    names: list[str] = []
    for i, entry in enumerate(schema):
        if type(entry) is not dict or set(entry) != {"name"} or type(entry["name"]) is not str or not entry["name"]:
            raise Refusal(failure(400, f"schema[{i}] must be an object with a non-empty string 'name' only"))
        names.append(entry["name"])
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise Refusal(failure(400, f"Column '{duplicate}' appears more than once in the schema"))
    if type(rows) is not list:
        raise Refusal(failure(400, "'rows' must be an array of arrays"))
    width = len(names)
    if rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {width}):
        i, row = next((i, r) for i, r in enumerate(rows) if type(r) is not list or len(r) != width)
        got = f"{len(row)} values" if type(row) is list else f"a {type(row).__name__}"
        raise Refusal(failure(400, f"rows[{i}] has {got} but the schema has {width} columns"))
    return names, rows


def respond(model: Model, query: QlikQuery, names: Sequence[str], rows: Sequence[Sequence[JsonValue]], csv: bool,
            crash_value: str | None = None) -> web.Response:
    positions = {name: i for i, name in enumerate(names)}
    missing = [f for f in model.features if f not in positions]
    if missing:
        raise Refusal(failure(400, f"Missing required feature(s): {', '.join(missing)}"))
    if query.index is not None and query.index not in positions:
        raise Refusal(failure(400, f"The index column '{query.index}' is not in the schema"))
    count = len(rows)
    columns: list[Column] = list(zip(*rows, strict=False)) if count else [() for _ in names]
    check_crash((columns[positions[f]] for f in model.features), crash_value)
    scores = model.score({f: columns[positions[f]] for f in model.features}, count)

    output: list[OutputColumn] = [("automl_row_index", "numeric", range(count))]
    if query.index is not None:
        output.append((query.index, _column_type(model, query.index, columns[positions[query.index]]),
                       columns[positions[query.index]]))
    if query.include_source:
        output.extend((name, _column_type(model, name, columns[i]), columns[i])
                      for i, name in enumerate(names) if name != query.index)
    output.extend(_prediction_columns(model, scores))
    if query.include_shap:
        output.extend(_shap_columns(model, scores))
    if query.include_reason:
        reasons: list[str | None] = [None] * count
        for row, (feature, why) in scores.faults.items():
            reasons[row] = f"Feature '{feature}': {why}"
        output.append(("not_predicted_reason", "categorical", reasons))

    table = list(zip(*(values for _, _, values in output), strict=False))
    if csv:
        body = encode_csv([name for name, _, _ in output], table, true_text="true", false_text="false")
        return web.Response(body=body, content_type=CSV, charset="utf-8")
    doc = {"data": {"type": RESPONSE_TYPE, "attributes": {
        "schema": [{"name": name, "type": kind} for name, kind, _ in output], "rows": table}}}
    return web.Response(body=orjson.dumps(doc), content_type=JSON)


def _prediction_columns(model: Model, scores: Scores) -> list[OutputColumn]:
    kind = "numeric" if model.kind == "regression" else "categorical"
    columns: list[OutputColumn] = [(f"{model.target}_predicted", kind, scores.predictions)]
    if model.classes and scores.probabilities is not None:
        columns.extend((f"{model.target}_{label}", "numeric", probabilities)
                       for label, probabilities in zip(model.classes, scores.probabilities, strict=False))
    return columns


def _shap_columns(model: Model, scores: Scores) -> list[OutputColumn]:
    """One column per feature in model order, in probability space (target units for regression):
    ``<target>_<class> = base + Σ SHAP`` per row; a multiclass row explains its predicted class."""
    values: Sequence[Sequence[float | None]] = shap_columns(model, scores)
    if scores.faults:  # rows the model could not read show no values
        faults = scores.faults
        values = [[None if row in faults else v for row, v in enumerate(column)] for column in values]
    return [(f"{term.name}_SHAP", "numeric", column) for term, column in zip(model.terms, values, strict=False)]


def _column_type(model: Model, name: str, values: Sequence[JsonValue]) -> str:
    term = next((t for t in model.terms if t.name == name), None)
    if term is not None:
        return term.qlik_type
    present = [v for v in values if v is not None]
    numeric = bool(present) and all(type(v) is int or type(v) is float for v in present)
    return "numeric" if numeric else "categorical"
