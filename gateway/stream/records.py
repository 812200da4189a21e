"""The records the gateway writes, exactly as PRODUCT.md §4 defines them (pure functions, no I/O).

Every input record yields one prediction record or one dead-letter record; ``id`` is the input's
``topic/partition/offset`` so consumers can drop the duplicates an at-least-once restart may cause.

Fields added after PRODUCT.md §4 appear only when they have a value, so records without them keep
their bytes: ``prediction_warning`` (DataRobot prediction warnings: true when the row's prediction is
outside the deployment's expected range), ``adjusted_prediction`` (DataRobot's exposure-adjusted
prediction) and ``vendor_fields`` (every per-row field of the vendor's answer the gateway does not
model, under the vendor's own name: never dropped). A multiclass explanation names its class in
``class``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from gateway.backends.codec import ScoredRow
from gateway.kafka.client import InputRecord as InputRecord  # the seam says what a consumed record offers

STAGE_DECODE = "decode"
STAGE_VALIDATE = "validate"
STAGE_SCORE = "score"
STAGE_NOT_PREDICTED = "not_predicted"

# The reason of a tombstone's dead letter: replay tells it by this text from an empty value.
TOMBSTONE_REASON = "record has no value (tombstone)"


@dataclass(slots=True)
class Rejected:
    """Why a record gets a dead-letter record instead of a prediction."""

    stage: str
    reason: str
    status: int | None = None
    attempts: int = 0


def record_id(record: InputRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def source_of(record: InputRecord) -> dict[str, object]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp_ms": record.timestamp}


def prediction_document(record: InputRecord, row: ScoredRow, *, pipeline: str, backend: str,
                        deployment: str, latency_ms: float, embed_explanations: bool) -> dict[str, object]:
    """``latency_ms`` is the batch's, rounded once by the caller (rounding costs more than the rest).

    One dict display per shape (a display is built in one step, item assignments are not), and the
    explanations as they are: each :class:`Explanation` is already the object the record writes."""
    topic, partition, offset = record.topic, record.partition, record.offset
    doc: dict[str, object]
    if embed_explanations:
        doc = {"id": f"{topic}/{partition}/{offset}", "pipeline": pipeline,
               "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": record.timestamp},
               "prediction": row.prediction, "probabilities": row.probabilities, "threshold": row.threshold,
               "explanation_kind": row.explanation_kind, "explanations": row.explanations,
               "backend": backend, "deployment": deployment, "latency_ms": latency_ms}
    else:
        doc = {"id": f"{topic}/{partition}/{offset}", "pipeline": pipeline,
               "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": record.timestamp},
               "prediction": row.prediction, "probabilities": row.probabilities, "threshold": row.threshold,
               "explanation_kind": row.explanation_kind, "backend": backend, "deployment": deployment,
               "latency_ms": latency_ms}
    if row.passthrough:
        doc["passthrough"] = row.passthrough
    if row.prediction_warning is not None:
        doc["prediction_warning"] = row.prediction_warning
    if row.adjusted_prediction is not None:
        doc["adjusted_prediction"] = row.adjusted_prediction
    if row.vendor_fields:
        doc["vendor_fields"] = row.vendor_fields
    return doc


def explanation_document(record: InputRecord, row: ScoredRow | None, *, pipeline: str,
                         error: str | None = None) -> dict[str, object]:
    """``row`` None with ``error``: the deferred explanation request for this record failed."""
    if row is None:
        return {"id": record_id(record), "pipeline": pipeline, "kind": None, "explanations": [],
                "base_value": None, "remaining_total": None, "error": error}
    return {"id": record_id(record), "pipeline": pipeline, "kind": row.explanation_kind,
            "explanations": row.explanations,
            "base_value": row.base_value, "remaining_total": row.remaining_total}


def dead_letter_document(record: InputRecord, rejected: Rejected, *, pipeline: str) -> dict[str, object]:
    doc: dict[str, object] = {
        "id": record_id(record),
        "pipeline": pipeline,
        "source": source_of(record),
        "stage": rejected.stage,
        "reason": rejected.reason,
        "status": rejected.status,
        "attempts": rejected.attempts,
    }
    raw = record.value or b""
    try:
        doc["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        doc["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return doc


def _literal(data: bytes) -> bytes:
    """``data`` as the constant part of a bytes ``%`` format."""
    return data.replace(b"%", b"%%")


class PredictionWriter:
    """Prediction records of one batch, as bytes: what :func:`prediction_document` and :func:`dumps`
    write, without a document per record.

    Everything but the offset, the timestamp and the row's own fields is the same for every record
    of a batch and partition, so it is serialised once into a ``%`` format; per record, orjson writes
    the row's fields as one small object whose braces are dropped (the keys keep their order, so the
    bytes are those of the whole document). A record whose offset or timestamp is not an integer
    takes the document path. ``tests/unit/test_output_golden.py`` holds both to the same bytes.
    """

    __slots__ = ("_embed", "_formats", "_names", "_pipeline", "_tail")

    def __init__(self, *, pipeline: str, backend: str, deployment: str, latency_ms: float,
                 embed_explanations: bool) -> None:
        self._embed = embed_explanations
        self._names = (pipeline, backend, deployment, latency_ms)
        self._pipeline = _literal(orjson.dumps(pipeline))
        self._tail = _literal(b',"backend":' + orjson.dumps(backend) + b',"deployment":' + orjson.dumps(deployment)
                              + b',"latency_ms":' + orjson.dumps(latency_ms))
        self._formats: dict[tuple[str, int], bytes] = {}

    def _format(self, topic: str, partition: int) -> bytes:
        found = self._formats[(topic, partition)] = (
            b'{"id":' + _literal(orjson.dumps(f"{topic}/{partition}/")[:-1]) + b'%d","pipeline":' + self._pipeline
            + b',"source":{"topic":' + _literal(orjson.dumps(topic)) + b',"partition":'
            + _literal(orjson.dumps(partition)) + b',"offset":%d,"timestamp_ms":%d},%b' + self._tail + b"%b}")
        return found

    def write(self, record: InputRecord, row: ScoredRow) -> bytes:
        topic, partition, offset, timestamp = record.topic, record.partition, record.offset, record.timestamp
        if type(offset) is not int or type(timestamp) is not int:
            name, backend, deployment, latency_ms = self._names
            return dumps(prediction_document(record, row, pipeline=name, backend=backend, deployment=deployment,
                                             latency_ms=latency_ms, embed_explanations=self._embed))
        form = self._formats.get((topic, partition)) or self._format(topic, partition)
        if self._embed:
            fields = dumps({"prediction": row.prediction, "probabilities": row.probabilities,
                            "threshold": row.threshold, "explanation_kind": row.explanation_kind,
                            "explanations": row.explanations})
        else:
            fields = dumps({"prediction": row.prediction, "probabilities": row.probabilities,
                            "threshold": row.threshold, "explanation_kind": row.explanation_kind})
        passthrough = row.passthrough
        extra = b',"passthrough":' + dumps(passthrough) if passthrough else b""
        if row.prediction_warning is not None or row.adjusted_prediction is not None or row.vendor_fields:
            extra += _vendor_extras(row)
        return form % (offset, offset, timestamp, fields[1:-1], extra)


def _vendor_extras(row: ScoredRow) -> bytes:
    """The optional DataRobot fields, in :func:`prediction_document`'s order (rare: off the fast path)."""
    extras: dict[str, object] = {}
    if row.prediction_warning is not None:
        extras["prediction_warning"] = row.prediction_warning
    if row.adjusted_prediction is not None:
        extras["adjusted_prediction"] = row.adjusted_prediction
    if row.vendor_fields:
        extras["vendor_fields"] = row.vendor_fields
    return b"," + dumps(extras)[1:-1]


def dumps(doc: dict[str, object]) -> bytes:
    """JSON bytes of an output record. Every key the decoders produce is a string; the option that
    also allows other keys costs 60 % more per record, so it is only the fallback."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
