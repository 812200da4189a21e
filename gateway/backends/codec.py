"""The types that cross the vendor boundary: a complete request, and one normalized result per row.

Encoders turn a batch of feature rows into a :class:`ScoringRequest`; decoders turn the response
into one :class:`ScoredRow` per input row, in input order. Nothing here knows about Kafka.

A feature or prediction value is a :data:`~gateway.json_types.JsonValue`: what orjson reads (or a
CSV cell's text). ``check_row`` refuses a row whose values have no place in a request body, so the
encoders take rows as typed, without looking at each value again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from math import isfinite
from operator import itemgetter
from typing import NotRequired, Protocol, TypedDict
from urllib.parse import quote, urlencode, urlsplit

from gateway.backends.errors import BackendSettingsError
from gateway.errors import InputError
from gateway.json_types import JsonValue, Row


@dataclass(slots=True)
class ScoringRequest:
    """Everything needed to send one HTTP request, plus what the decoder needs to align the answer."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    rows: int
    # Values of the index column in input order, when alignment uses a caller-chosen index
    # (Qlik ``index``); None when the API's own row ids are used.
    row_keys: list[object] | None = None
    # Explanations asked for: "shap", "xemp", "auto" (deployment default) or None.
    explanations: str | None = None
    # The column names sent, in body order.
    columns: tuple[str, ...] = ()
    # The caller's rows as given to ``encode`` (not copied): explanation values are read from them.
    source_rows: Sequence[Row] = ()
    # A column the decoder aligns on when the API has no row id of its own: the Qlik ``index``
    # column, or the row-number column a DataRobot CSV response echoes back as a passthrough.
    row_key_column: str | None = None
    # Names the vendor echoes back as passthrough columns (DataRobot ``passthroughColumns``);
    # None when nothing, ``columns`` when every column (``passthroughColumnsSet=all``).
    passthrough_columns: tuple[str, ...] | None = None


# One feature's contribution, in the order an output record writes its fields.
#
# A dict rather than a dataclass: a dict display is built in one step where a dataclass runs its
# ``__init__``, and orjson (3.13) writes dicts fastest (a slotted dataclass about six times
# slower). A SHAP prediction carries one per feature, so both are paid per feature of every row.
# ``class`` (multiclass only) names the class the explanation explains, DataRobot's ``label`` when a
# row's explanations cover classes (``explanation_num_top_classes``, ``explanation_class_names``);
# it is absent otherwise, so binary and regression explanations keep their four keys. (The
# functional form because ``class`` is a keyword.)
Explanation = TypedDict("Explanation", {
    "feature": str,
    "value": object,  # the row's feature value, as the row holds it
    "strength": float,
    "qualitative": str | None,
    "class": NotRequired[str],
})


def explanation(feature: str, value: object, strength: float, qualitative: str | None = None) -> Explanation:
    """An :class:`Explanation` where readability matters more than a display's speed."""
    return {"feature": feature, "value": value, "strength": strength, "qualitative": qualitative}


@dataclass(slots=True)
class ScoredRow:
    """One input row's outcome: a prediction, or the reason the model did not predict it."""

    prediction: JsonValue = None
    probabilities: dict[str, float] | None = None
    threshold: float | None = None
    explanations: list[Explanation] = field(default_factory=list)  # by |strength| descending
    explanation_kind: str | None = None  # "shap" | "xemp" | None
    passthrough: dict[str, object] | None = None  # echoed input values, only written out
    base_value: float | None = None
    remaining_total: float | None = None
    not_predicted_reason: str | None = None
    # DataRobot ``predictionWarningEnabled``: True when the prediction lies outside the range the
    # deployment expects (the batch output's ``IS_OUTLIER_PREDICTION``); None when not reported.
    prediction_warning: bool | None = None
    # DataRobot exposure-adjusted prediction (``adjustedPrediction``), when the model used exposure
    # and ``exclude_adjusted_predictions`` is false; None otherwise.
    adjusted_prediction: float | None = None
    # Per-row fields of the vendor's answer that the gateway does not model, as the vendor named
    # them: kept rather than dropped (JSON values, or CSV text, only written out). None when there are none.
    vendor_fields: dict[str, object] | None = None

    @property
    def predicted(self) -> bool:
        return self.not_predicted_reason is None


class BodyTooLarge(InputError):
    """The encoded body exceeds the byte cap: the caller splits the batch (or dead-letters a lone row)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes exceeds the {limit}-byte cap")
        self.size = size
        self.limit = limit


class Codec(Protocol):
    """One vendor's wire format for one deployment: rows in, request out; response in, rows out."""

    backend: str  # "qlik" | "datarobot"
    deployment: str  # deployment id parsed from the URL
    explanations: str | None  # "shap" | "xemp" | "auto" | None

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers every request carries, credentials included (so messages can mask them)."""
        ...

    def check_row(self, row: Mapping[str, object]) -> str | None:
        """None when the row can be sent; else why not (the gateway dead-letters it, stage ``validate``)."""
        ...

    def check_json_row(self, row: Mapping[str, object]) -> str | None:
        """:meth:`check_row` for a row straight from ``orjson.loads`` (cheaper: see ``json_row_problem``)."""
        ...

    def encode(self, features: Sequence[str] | None,
               rows: Sequence[Row]) -> ScoringRequest:
        """Build the request; raises :class:`BodyTooLarge` so the caller can split the batch."""
        ...

    def decode(self, request: ScoringRequest, status: int, content_type: str,
               body: bytes) -> list[ScoredRow]:
        """One row per input row in input order, or ``ResponseDecodeError`` for the whole batch."""
        ...


# -- helpers shared by the encoders ------------------------------------------------------------

_DEPLOYMENT_IN_PATH = re.compile(r"/(?:automl-)?deployments/([^/]+)(?:/|$)")
_JSON_INT_MIN = -(2**63)
_JSON_INT_MAX = 2**64 - 1


def deployment_from_url(url: str) -> str:
    """The deployment id in a Qlik or DataRobot endpoint URL (the segment after ``deployments/``)."""
    match = _DEPLOYMENT_IN_PATH.search(urlsplit(url).path)
    if match is None:
        raise BackendSettingsError(f"no deployments/<id> segment in URL {url!r}")
    return match.group(1)


def with_query(url: str, params: Sequence[tuple[str, str]], *, strict: bool = False) -> str:
    """``url`` with ``params`` appended to whatever query it already has (repeated names allowed).

    ``strict`` percent-encodes every byte of the UTF-8 form that is not unreserved (a space is
    ``%20``, never ``+``; ``&``, ``=`` and ``+`` are escaped): what DataRobot asks of class names.
    ``/`` stays as it is: a query may hold it literally (RFC 3986 §3.4), and the HTTP client writes
    it literally whatever it is given, so the URL built here is the one that goes on the wire."""
    if not params:
        return url
    encoded = urlencode(params, safe="/", quote_via=quote) if strict else urlencode(params)
    return url + ("&" if urlsplit(url).query else "?") + encoded


def request_columns(features: Sequence[str] | None, rows: Sequence[Mapping[str, object]]) -> tuple[str, ...]:
    """The body's columns: the configured features, else every row key in first-seen order.

    Rows of one topic usually share their keys, so the union costs one dict insert per cell.
    """
    if features is not None:
        return tuple(features)
    return tuple(dict.fromkeys(chain.from_iterable(rows)))


def row_tuples(columns: Sequence[str], rows: Sequence[Row]) -> list[tuple[object, ...]]:
    """Each row's values in column order, a missing key as None.

    One C-level ``itemgetter`` call per row when every row has every column (the common case);
    the per-key ``get`` path runs only for batches with gaps.
    """
    if not columns:
        return [() for _ in rows]
    if len(columns) == 1:
        name = columns[0]
        return [(row.get(name),) for row in rows]
    getter = itemgetter(*columns)
    try:
        return list(map(getter, rows))
    except KeyError:
        return [tuple(map(row.get, columns)) for row in rows]


_NESTED = frozenset((dict, list))


def json_row_problem(row: Mapping[str, object]) -> str | None:
    """:func:`row_problem` for a row straight from ``orjson.loads``, which already refuses what else
    it looks for (NaN and Infinity, numbers that overflow a double, lone surrogates) and reads
    integers beyond 64 bits as floats: only nested values are left to refuse. One pass in C."""
    if _NESTED.isdisjoint(map(type, row.values())):
        return None
    return row_problem(row)


def row_problem(row: object) -> str | None:
    """Why a row's values cannot go into a request body, or None.

    Both vendors take flat rows of scalars: nested values have no column form, non-finite floats
    have no JSON form (and no model reads them), lone surrogates have no UTF-8 form, and JSON
    integers beyond 64 bits are not portable. Exact types only: rows come from JSON documents.
    (A plain loop: cheaper per row than serialising the row to find out.)
    """
    if not isinstance(row, Mapping):
        return f"row is a {type(row).__name__}, not a JSON object"
    for name, value in row.items():
        kind = type(value)
        if kind is float:
            if not isfinite(value):
                return f"feature {name!r}: non-finite number {value!r}"
        elif kind is str:
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return f"feature {name!r}: text is not valid Unicode (lone surrogate)"
        elif kind is int:
            if not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
                return f"feature {name!r}: integer {value} does not fit in 64 bits"
        elif value is not None and kind is not bool:
            return f"feature {name!r}: a {kind.__name__} is not a scalar feature value"
    return None
