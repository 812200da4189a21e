"""DataRobot real-time predictions: ``POST …/predApi/v1.0/deployments/{id}/predictions``.

Decisions (the README's vendor notes summarise these):

* **URL**: the configured full endpoint (``/predApi/v1.0/deployments/{id}/predictions``, or the
  serverless ``/api/v2/deployments/{id}/predictions``); the deployment id is the segment after
  ``deployments/``. The query is fixed per codec and built once.
* **Body**: CSV by default (RFC 4180 via :mod:`.csvcodec`, header of the feature names, ``None`` →
  empty field, booleans ``True``/``False`` as pandas and so DataRobot's own Python client write
  them), ``Content-Type: text/csv; charset=UTF-8``; or ``body_format: json``, an array of row
  objects, ``Content-Type: application/json; charset=UTF-8``.
* **gzip**: ``Content-Encoding: gzip`` (level 1: most of the size win for a fraction of the CPU).
  ``max_bytes`` caps the bytes *sent*, the compressed body: that is what travels, what proxies and
  ``Content-Length`` limit, and what the cap exists to bound. The uncompressed body is separately
  held under DataRobot's documented 50 MB real-time limit, because a server may apply it after
  inflating.
* **Auth**: ``Authorization: Bearer <token>`` (default), ``Token <token>`` or
  ``Basic base64(username:token)``, chosen by ``auth_scheme``; ``DataRobot-Key`` when configured.
* **Explanations**: ``max_explanations`` of 0 means none, and then neither ``maxExplanations`` nor
  ``explanationAlgorithm`` nor the thresholds are sent (with SHAP a missing or zero
  ``maxExplanations`` asks for *all* explanations). Otherwise ``maxExplanations=<n>|all``, plus
  ``explanationAlgorithm`` when set (else the deployment's default: the codec reports ``auto``) and
  ``thresholdLow``/``thresholdHigh`` when set.
* **Passthrough**: ``passthroughColumns`` repeated once per name, or ``passthroughColumnsSet=all``.
* **Class selectors, warnings, adjusted predictions**: see :mod:`.request` (query) and
  :mod:`.response` (the row fields they add).
* **Response**: ``Accept: application/json`` by default; rows are placed by ``rowId``. With
  ``response_format: csv`` the CSV rows carry no ``rowId``, so the encoder adds a column of its own,
  ``__gateway_row`` (0-based position), to the body and asks for it back as a passthrough column;
  rows are placed by it and it is removed from ``passthrough``. Deployments ignore columns they were
  not trained on.
* **Labels**: ``probabilities`` keys and classification predictions are the label as the JSON
  showed it: strings unchanged, numbers in Python's round-trip spelling, so ``1.0`` → ``"1.0"`` and
  ``1`` → ``"1"`` stay distinct, as the vendor sent them. Within one response numerically equal
  labels share the spelling first seen in ``predictionValues``, so a prediction is always spelled
  like its probabilities key (the vendor's own SHAP example mixes ``1`` and ``0.0``). Probability
  values are the JSON numbers as sent. Regression (one ``predictionValues`` entry) keeps the numeric
  prediction and has no probabilities; a null prediction becomes ``not_predicted_reason``
  ``"no prediction returned"``.
* **Explanations decoded**: ``predictionExplanations`` (legacy ``reasonCodes``) sorted by |strength|
  descending; kind ``xemp`` when an entry carries a ``qualitativeStrength``, else ``shap`` (entries
  with a null/absent one, or the row has ``shapExplanationsMetadata``, whose ``baseValue`` and
  ``remainingTotal`` are kept). ``value`` is the row's input value for the feature (the same typed
  value the Qlik decoder reports), DataRobot's ``featureValue`` when the input row lacks it.
* **Rejected**: the legacy ``api/v1`` body (``predictions``/``class_probabilities``) and anything
  whose rows cannot be aligned one to one with the rows sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TypeAlias

import orjson

from gateway.backends.codec import (
    BodyTooLarge,
    ScoredRow,
    ScoringRequest,
    deployment_from_url,
    json_row_problem,
    request_columns,
    row_problem,
    row_tuples,
    with_query,
)
from gateway.backends.csvcodec import CsvError, encode_csv, read_csv
from gateway.backends.datarobot.request import authorization, extra_query
from gateway.backends.datarobot.response import (
    BACKEND,
    KNOWN_ROW_KEYS,
    NO_PREDICTION,
    ROW_COLUMN,
    ROW_FIELD_KEYS,
    CsvLayout,
    carry_row_fields,
    fail,
    json_explanations,
    prediction_rows,
    row_ids,
)
from gateway.backends.errors import BackendSettingsError, ResponseDecodeError, from_status, json_object
from gateway.json_types import JsonScalar, Row

REALTIME_LIMIT_BYTES = 50 * 1024 * 1024
_GZIP_LEVEL = 1
# Row keys beyond the prediction itself; a response without any of them takes the short path.
_OPTIONAL_KEYS = frozenset({"passthroughValues", "predictionExplanations", "reasonCodes",
                            "shapExplanationsMetadata"}) | ROW_FIELD_KEYS
# A response's labels (``label`` of ``predictionValues``, predictions) → their text, see _add_label.
LabelTexts: TypeAlias = dict[JsonScalar, str]


def label_text(label: JsonScalar) -> str:
    """A class label as a string, spelled as the JSON response spelled it."""
    if isinstance(label, str):
        return label
    if type(label) is bool:
        return "true" if label else "false"
    return repr(label)


def _add_label(texts: LabelTexts, label: JsonScalar) -> str:
    """``label``'s text from the response's label table, adding it on first sight.

    Numerically equal labels (``1`` and ``1.0``) share one entry, so within one response a label
    keeps the spelling it first had in ``predictionValues`` and the prediction is always spelled
    like its own probabilities key. Strings never equal numbers, so they never mix with them.
    (A plain dict: subscripting a dict subclass is not specialised and costs more per row.)
    """
    text = texts.get(label)
    if text is None:
        text = texts[label] = label_text(label)
    return text


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip container
    return compressor.compress(data) + compressor.flush()


class DataRobotCodec:
    """Encoder and decoder for one DataRobot deployment."""

    backend = BACKEND

    def __init__(self, *, url: str, token: str | None, max_bytes: int | None,
                 datarobot_key: str | None = None, auth_scheme: str = "bearer",
                 username: str | None = None, body_format: str = "csv", gzip: bool = False,
                 max_explanations: int | str | None = 0, explanation_algorithm: str | None = None,
                 threshold_low: float | None = None, threshold_high: float | None = None,
                 passthrough_columns: Sequence[str] | str | None = (),
                 response_format: str = "json", explanation_num_top_classes: int | None = None,
                 explanation_class_names: Sequence[str] = (), exclude_adjusted_predictions: bool | None = None,
                 prediction_warning_enabled: bool | None = None) -> None:
        if body_format not in ("csv", "json"):
            raise BackendSettingsError(f"body_format must be csv or json, not {body_format!r}")
        if response_format not in ("json", "csv"):
            raise BackendSettingsError(f"response_format must be json or csv, not {response_format!r}")
        if explanation_algorithm not in (None, "shap", "xemp"):
            raise BackendSettingsError("explanation_algorithm must be shap, xemp or null, "
                             f"not {explanation_algorithm!r}")
        if max_explanations == "all" and explanation_algorithm == "xemp":
            raise BackendSettingsError("max_explanations 'all' is only valid for SHAP explanations")
        if max_explanations not in (None, "all") and (type(max_explanations) is not int
                                                       or max_explanations < 0):
            raise BackendSettingsError(f"max_explanations must be an integer >= 0 or 'all', "
                             f"not {max_explanations!r}")
        if explanation_num_top_classes is not None and explanation_class_names:
            raise BackendSettingsError("explanation_num_top_classes and explanation_class_names are mutually exclusive")
        if explanation_num_top_classes is not None and (type(explanation_num_top_classes) is not int
                                                        or not 1 <= explanation_num_top_classes <= 10):
            raise BackendSettingsError(f"explanation_num_top_classes must be an integer from 1 to 10, "
                             f"not {explanation_num_top_classes!r}")
        self.url = url
        self.deployment = deployment_from_url(url)
        self.max_bytes = max_bytes
        self.body_format = body_format
        self.gzip = gzip
        self.csv_response = response_format == "csv"
        explaining = bool(max_explanations)
        self.explanations: str | None = (explanation_algorithm or "auto") if explaining else None
        self.passthrough_all = passthrough_columns == "all"
        self.passthrough = () if self.passthrough_all else tuple(passthrough_columns or ())
        self.request_url = with_query(url, self._query(max_explanations if explaining else None,
                                                       explanation_algorithm, threshold_low,
                                                       threshold_high))
        self.request_url = with_query(self.request_url, extra_query(
            explaining, explanation_num_top_classes, explanation_class_names, prediction_warning_enabled,
            exclude_adjusted_predictions), strict=True)
        self.headers = {
            "Content-Type": "text/csv; charset=UTF-8" if body_format == "csv"
            else "application/json; charset=UTF-8",
            "Accept": "text/csv" if self.csv_response else "application/json",
        }
        if gzip:
            self.headers["Content-Encoding"] = "gzip"
        if token:
            self.headers["Authorization"] = authorization(auth_scheme, token, username)
        if datarobot_key:
            self.headers["DataRobot-Key"] = datarobot_key

    def _query(self, max_explanations: int | str | None, algorithm: str | None,
               low: float | None, high: float | None) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if max_explanations is not None:
            params.append(("maxExplanations", str(max_explanations)))
            if algorithm:
                params.append(("explanationAlgorithm", algorithm))
            if low is not None:
                params.append(("thresholdLow", repr(float(low))))
            if high is not None:
                params.append(("thresholdHigh", repr(float(high))))
        if self.passthrough_all:
            params.append(("passthroughColumnsSet", "all"))
        else:
            names = self.passthrough + ((ROW_COLUMN,) if self.csv_response else ())
            params.extend(("passthroughColumns", name) for name in names)
        return params

    # -- encoding ---------------------------------------------------------------------------

    def check_row(self, row: Mapping[str, object]) -> str | None:
        return row_problem(row)

    def check_json_row(self, row: Mapping[str, object]) -> str | None:
        return json_row_problem(row)

    def encode(self, features: Sequence[str] | None,
               rows: Sequence[Row]) -> ScoringRequest:
        columns = request_columns(features, rows)
        raw = self._csv_body(columns, rows) if self.body_format == "csv" else self._json_body(features, columns, rows)
        if len(raw) > REALTIME_LIMIT_BYTES:
            raise BodyTooLarge(len(raw), REALTIME_LIMIT_BYTES)
        body = _gzip(raw) if self.gzip else raw
        if self.max_bytes is not None and len(body) > self.max_bytes:
            raise BodyTooLarge(len(body), self.max_bytes)
        passthrough = columns if self.passthrough_all else (self.passthrough or None)
        return ScoringRequest("POST", self.request_url, dict(self.headers), body, len(rows),
                              explanations=self.explanations, columns=columns, source_rows=rows,
                              row_key_column=ROW_COLUMN if self.csv_response else None,
                              passthrough_columns=passthrough)

    def _csv_body(self, columns: tuple[str, ...], rows: Sequence[Row]) -> bytes:
        values = row_tuples(columns, rows)
        if self.csv_response:
            columns += (ROW_COLUMN,)
            values = [(*row, position) for position, row in enumerate(values)]
        return encode_csv(columns, values)

    def _json_body(self, features: Sequence[str] | None, columns: tuple[str, ...],
                   rows: Sequence[Row]) -> bytes:
        width = len(columns)
        if features is None and not self.csv_response and all(type(row) is dict and len(row) == width
                                                              for row in rows):
            return orjson.dumps(rows)  # every row has every column: the rows are the body as they are
        objects = [dict(zip(columns, values, strict=False)) for values in row_tuples(columns, rows)]
        if self.csv_response:
            for position, item in enumerate(objects):
                item[ROW_COLUMN] = position
        return orjson.dumps(objects)

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, request: ScoringRequest, status: int, content_type: str,
               body: bytes) -> list[ScoredRow]:
        if not 200 <= status < 300:
            raise from_status(BACKEND, status, {}, body)
        media = content_type.split(";", 1)[0].strip().lower()
        try:
            if media == "text/csv":
                return self._decode_csv(request, body)
            if media and "json" not in media:
                raise fail(f"unexpected content type {content_type!r}: {body[:200]!r}")
            return self._decode_json(request, body)
        except ResponseDecodeError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise fail(f"malformed response: {type(exc).__name__}: {exc}") from exc

    def _decode_json(self, request: ScoringRequest, body: bytes) -> list[ScoredRow]:
        doc = json_object(BACKEND, body)
        data = doc.get("data")
        if not isinstance(data, list):
            if "predictions" in doc:
                raise fail("legacy api/v1 response (predictions/class_probabilities) is not supported: "
                            "use the /predApi/v1.0/deployments/{id}/predictions endpoint")
            raise fail("response has no 'data' array")
        if not prediction_rows(data):
            raise fail("malformed response: rows must be JSON objects")
        count = request.rows
        if len(data) != count:
            raise fail(f"response has {len(data)} rows, the request had {count}")
        ids, in_order = row_ids(data, count)
        sources = request.source_rows
        own_column = request.row_key_column  # only echoed when the server ignored Accept: text/csv
        texts: LabelTexts = {}
        label0: JsonScalar = None  # the binary label pair last seen, and its texts
        label1: JsonScalar = None
        text0 = text1 = ""
        probabilities: dict[str, float] | None
        keys = set().union(*data)  # one C pass instead of 4 gets a row
        unknown = keys - KNOWN_ROW_KEYS  # per-row fields the gateway does not model: kept, not dropped
        carried = bool(unknown) or not ROW_FIELD_KEYS.isdisjoint(keys)
        extras = carried or not _OPTIONAL_KEYS.isdisjoint(keys)
        undecided: list[ScoredRow] = []  # rows with an empty explanation list: their kind is the response's
        seen_kind = None
        scored: list[ScoredRow] = []  # in response order
        add = scored.append
        for item in data:
            values = item["predictionValues"]
            prediction = item["prediction"]
            if len(values) == 2 and prediction is not None:  # binary: the common case, unrolled
                first, second = values
                if first["label"] != label0 or second["label"] != label1:
                    label0, label1 = first["label"], second["label"]
                    text0, text1 = _add_label(texts, label0), _add_label(texts, label1)
                probabilities = {text0: first["value"], text1: second["value"]}
                prediction = (text0 if prediction == label0 else text1 if prediction == label1
                              else _add_label(texts, prediction))
            elif len(values) == 1 or prediction is None:  # regression: one entry named after the target
                probabilities = None
            else:
                probabilities = {_add_label(texts, entry["label"]): entry["value"] for entry in values}
                prediction = _add_label(texts, prediction)
            if not extras:
                if prediction is None:
                    add(ScoredRow(not_predicted_reason=NO_PREDICTION))
                else:
                    add(ScoredRow(prediction, probabilities, item.get("predictionThreshold")))
                continue
            passthrough = item.get("passthroughValues")
            if passthrough is not None and own_column in passthrough:
                passthrough = {name: value for name, value in passthrough.items()
                               if name != own_column} or None
            explained = item.get("predictionExplanations")
            if explained is None:
                explained = item.get("reasonCodes")
            metadata = item.get("shapExplanationsMetadata")
            if prediction is None:
                row = ScoredRow(passthrough=passthrough, not_predicted_reason=NO_PREDICTION)
            elif explained is None and metadata is None:
                row = ScoredRow(prediction, probabilities, item.get("predictionThreshold"), [], None, passthrough)
            else:
                source = sources[item["rowId"]] if sources else {}
                multiclass = probabilities is not None and len(probabilities) > 2
                explanations, kind = json_explanations(
                    explained or (), source, metadata, partial(_add_label, texts) if multiclass else None)
                row = ScoredRow(prediction, probabilities, item.get("predictionThreshold"), explanations,
                                kind, passthrough, metadata.get("baseValue") if metadata else None,
                                metadata.get("remainingTotal") if metadata else None)
                if kind is None:
                    undecided.append(row)
                else:
                    seen_kind = kind
            if carried:
                carry_row_fields(row, item, unknown)
            add(row)
        kind = seen_kind or (self.explanations if self.explanations in ("shap", "xemp") else None)
        for row in undecided:
            row.explanation_kind = kind
        if in_order:
            return scored
        out: list[ScoredRow] = [None] * count  # type: ignore[list-item]  # ids are a permutation
        for position, row in zip(ids, scored, strict=False):
            out[position] = row
        return out

    def _decode_csv(self, request: ScoringRequest, body: bytes) -> list[ScoredRow]:
        try:
            header, lines = read_csv(body)
        except CsvError as exc:
            raise fail(str(exc)) from exc
        layout = CsvLayout(header, request)
        count = request.rows
        if len(lines) != count:
            raise fail(f"response has {len(lines)} rows, the request had {count}")
        fallback_kind = self.explanations if self.explanations in ("shap", "xemp") else None
        out: list[ScoredRow | None] = [None] * count
        undecided: list[ScoredRow] = []
        seen_kind = None
        for line in lines:
            position = int(line[layout.row_key])
            if not 0 <= position < count:
                raise fail(f"{ROW_COLUMN} {position} is outside the {count} rows sent")
            if out[position] is not None:
                raise fail(f"{ROW_COLUMN} {position} appears twice")
            source = request.source_rows[position] if request.source_rows else {}
            row = out[position] = layout.scored_row(line, source)
            if row.explanation_kind is not None:
                seen_kind = row.explanation_kind
            elif layout.slots and row.predicted:
                undecided.append(row)
        kind = seen_kind or fallback_kind
        for row in undecided:
            row.explanation_kind = kind
        return out  # type: ignore[return-value]
