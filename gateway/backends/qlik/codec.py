"""Qlik Predict real-time predictions: ``POST …/realtime-predictions/actions/run``.

Decisions (the README's vendor notes summarise these):

* **URL**: the configured full endpoint, default alias or ``…/aliases/{alias}/…``; the deprecated
  ``/api/v1/automl-deployments/{id}/realtime-predictions`` works too. The deployment id is the
  path segment after ``deployments/``.
* **Request body** ``{"schema":[{"name":…}],"rows":[[…]]}`` with JSON-native cells (numbers,
  booleans, strings, null), as the Qlik tutorial sends. ``stringify_values`` sends every cell as a
  string for deployments that insist on the spec's ``string[][]``: numbers in their shortest
  round-trip form, booleans as ``"true"``/``"false"`` (JSON's spelling, which the typed form sends
  too), and ``None`` stays ``null`` (an empty string would be a value, not a missing one).
* **Query**: ``includeShap``, ``includeSource``, ``includeNotPredictedReason`` are sent as ``true``
  only when on and left out when off: the spec declares no default, absent means off, and
  fewer parameters means fewer chances to trip a strict validator. ``index=<column>`` when an
  index column is configured; that column is added to the body when the feature list lacks it,
  because Qlik can only echo a column it was sent.
* **Headers**: ``Content-Type: application/json``, ``Accept: application/json`` (or ``text/csv``
  with ``response_format: csv``), ``Authorization: Bearer <token>`` when a token is set.
* **Response**: ``{"data":{"type":"realtime-prediction","attributes":{schema,rows}}}``, or the
  deprecated endpoint's root-level ``{schema,rows}``, or CSV (a header of the schema names, then one
  line per row, RFC 4180, empty field = null). Cells may be typed or strings; numbers in strings
  are read as floats.
* **Column roles**, from names, decided once per response: ``automl_row_index``; the configured
  index column; names that were sent (``includeSource`` echoes them); ``not_predicted_reason``;
  ``<target>_predicted`` (exactly one); ``<feature>_SHAP``; ``<target>_<class>`` probability
  columns. Every other column is kept in ``passthrough`` rather than dropped.
* **Alignment**: by ``automl_row_index`` (0-based position in the request) when present, else by the
  index column's values (compared as numbers when both sides read as numbers, so ``"7"``, ``7``
  and ``7.0`` match). Neither present, a key missing, repeated or out of range, or a row count
  different from the request's: ``ResponseDecodeError`` for the whole batch, never a guess.
* **Rows without a prediction**: Qlik's ``not_predicted_reason`` when present; a null prediction
  without a reason (``includeNotPredictedReason`` off) gets ``"no prediction returned"``, so no
  row is ever published with a silent null prediction.
* **Predictions**: with probability columns the prediction is the class label as a string (a
  typed number is written as its class column spells it, e.g. ``1`` → ``"1"``) and
  ``probabilities`` maps each class to a float; without them a numeric ``_predicted`` column is
  a regression value (float).
* **Explanations**: every non-null ``<feature>_SHAP`` cell, ``value`` = the row's input value for
  that feature (from the request rows), sorted by |strength| descending, kind ``shap``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
from gateway.backends.errors import BackendSettingsError, ResponseDecodeError, from_status
from gateway.backends.qlik.response import BACKEND, ResponseLayout, read_table
from gateway.json_types import Row


def _stringify(value: object) -> object:
    """A cell for ``stringify_values``: the spec's string form, None kept as a missing value."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return "true" if value else "false"
    return repr(value)


class QlikCodec:
    """Encoder and decoder for one Qlik Predict deployment."""

    backend = BACKEND

    def __init__(self, *, url: str, token: str | None, max_bytes: int | None,
                 include_shap: bool = False, include_source: bool = False,
                 include_not_predicted_reason: bool = False, index_column: str | None = None,
                 stringify_values: bool = False, response_format: str = "json") -> None:
        if response_format not in ("json", "csv"):
            raise BackendSettingsError(f"response_format must be json or csv, not {response_format!r}")
        self.url = url
        self.deployment = deployment_from_url(url)
        self.explanations: str | None = "shap" if include_shap else None
        self.max_bytes = max_bytes
        self.index_column = index_column or None
        self.stringify_values = stringify_values
        params = [(name, "true") for name, on in (("includeShap", include_shap),
                                                   ("includeSource", include_source),
                                                   ("includeNotPredictedReason",
                                                    include_not_predicted_reason)) if on]
        if self.index_column:
            params.append(("index", self.index_column))
        self.request_url = with_query(url, params)
        self.headers = {"Content-Type": "application/json",
                        "Accept": "text/csv" if response_format == "csv" else "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    # -- encoding ---------------------------------------------------------------------------

    def check_row(self, row: Mapping[str, object]) -> str | None:
        return self._index_missing(row) if (problem := row_problem(row)) is None else problem

    def check_json_row(self, row: Mapping[str, object]) -> str | None:
        problem = json_row_problem(row)  # once per record: no second call without an index column
        if problem is None and self.index_column:
            return self._index_missing(row)
        return problem

    def _index_missing(self, row: Mapping[str, object]) -> str | None:
        if self.index_column and row.get(self.index_column) is None:
            return f"index column {self.index_column!r} is missing or null"
        return None

    def encode(self, features: Sequence[str] | None,
               rows: Sequence[Row]) -> ScoringRequest:
        columns = request_columns(features, rows)
        if self.index_column and self.index_column not in columns:
            columns += (self.index_column,)
        values = row_tuples(columns, rows)
        if self.stringify_values:
            values = [tuple(map(_stringify, row)) for row in values]
        body = orjson.dumps({"schema": [{"name": name} for name in columns], "rows": values})
        if self.max_bytes is not None and len(body) > self.max_bytes:
            raise BodyTooLarge(len(body), self.max_bytes)
        row_keys = None
        if self.index_column:
            row_keys = [row.get(self.index_column) for row in rows]
        return ScoringRequest("POST", self.request_url, dict(self.headers), body, len(rows),
                              row_keys=row_keys, explanations=self.explanations, columns=columns,
                              source_rows=rows, row_key_column=self.index_column)

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, request: ScoringRequest, status: int, content_type: str,
               body: bytes) -> list[ScoredRow]:
        if not 200 <= status < 300:
            raise from_status(BACKEND, status, {}, body)
        try:
            names, types, rows = read_table(content_type, body)
            return ResponseLayout.of(names, types, request).scored_rows(rows, request)
        except ResponseDecodeError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ResponseDecodeError(BACKEND, f"malformed response: {type(exc).__name__}: {exc}") from exc
