"""Which dead-letter records a replay re-publishes, and what it publishes for them (no I/O).

A dead-letter record is first read as a document of the pipeline (README "Records on the wire"):
anything else (not JSON, the wrong shape, another pipeline's record, a ``raw_base64`` that is not
base64) is unreadable and never re-published. A readable one is then selected by stage and by the
dead-letter record's own timestamp (``since`` inclusive, ``until`` exclusive, so consecutive windows
neither overlap nor leave gaps).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from gateway.commands.replay.options import PROVENANCE_HEADER, STAGES
from gateway.json_types import JsonObject
from gateway.kafka.sink import Message
from gateway.stream.records import STAGE_DECODE, TOMBSTONE_REASON, InputRecord


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a replay needs of a dead-letter document: its stage and the original value."""

    id: str
    stage: str
    value: bytes | None  # None: the input was a tombstone


@dataclass(frozen=True, slots=True)
class Unreadable:
    reason: str


class Verdict(enum.Enum):
    SELECTED = "selected"
    OTHER_STAGE = "skipped_stage"
    OUTSIDE_TIME = "skipped_time"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class Selection:
    pipeline: str
    stages: frozenset[str]
    since_ms: int | None = None
    until_ms: int | None = None

    def judge(self, record: InputRecord) -> tuple[Verdict, DeadLetter | Unreadable]:
        found = read_dead_letter(record.value, self.pipeline)
        if isinstance(found, Unreadable):
            return Verdict.UNREADABLE, found
        if found.stage not in self.stages:
            return Verdict.OTHER_STAGE, found
        ts = record.timestamp
        if (self.since_ms is not None and ts < self.since_ms) or (self.until_ms is not None and ts >= self.until_ms):
            return Verdict.OUTSIDE_TIME, found
        return Verdict.SELECTED, found


def read_dead_letter(value: bytes | None, pipeline: str) -> DeadLetter | Unreadable:
    if value is None:
        return Unreadable("the record has no value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return Unreadable("not JSON")
    if type(doc) is not dict:
        return Unreadable("not a JSON object")
    problem = _shape_problem(doc)
    if problem:
        return Unreadable(problem)
    if doc["pipeline"] != pipeline:
        return Unreadable(f"a dead letter of pipeline {doc['pipeline']!r}, not {pipeline!r}")
    original = _original_value(doc)
    if isinstance(original, Unreadable):
        return original
    return DeadLetter(str(doc["id"]), str(doc["stage"]), original)  # both strings: _shape_problem


def _shape_problem(doc: JsonObject) -> str | None:
    for key in ("id", "pipeline", "stage", "reason"):
        if type(doc.get(key)) is not str:
            return f"no string field {key!r}"
    if type(doc.get("source")) is not dict:
        return "no object field 'source'"
    if doc["stage"] not in STAGES:
        return f"unknown stage {doc['stage']!r}"
    if ("raw" in doc) == ("raw_base64" in doc):
        return "needs exactly one of 'raw' and 'raw_base64'"
    return None


def _original_value(doc: JsonObject) -> bytes | Unreadable | None:
    if "raw_base64" in doc:
        encoded = doc["raw_base64"]
        if type(encoded) is not str:
            return Unreadable("'raw_base64' is not a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return Unreadable("'raw_base64' is not base64")
    raw = doc["raw"]
    if type(raw) is not str:
        return Unreadable("'raw' is not a string")
    if not raw and doc["stage"] == STAGE_DECODE and doc["reason"] == TOMBSTONE_REASON:
        return None
    return raw.encode("utf-8")


def provenance(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}/{partition}/{offset}".encode()


def replay_message(record: InputRecord, dead_letter: DeadLetter, input_topic: str) -> Message:
    """The original value, key and headers, plus the header naming this dead-letter record (replacing
    the one a record replayed before carries, so it always names the latest dead letter)."""
    headers: Iterable[tuple[str, bytes]] = record.headers or ()
    kept = [(name, value) for name, value in headers if name != PROVENANCE_HEADER]
    kept.append((PROVENANCE_HEADER, provenance(record.topic, record.partition, record.offset)))
    return input_topic, record.key, dead_letter.value, kept
