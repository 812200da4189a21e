"""The books of a stream: every input ``id`` against what reached the output topics.

An input's ``id`` is ``topic/partition/offset``, the key PRODUCT.md §4 gives consumers to drop
duplicates. After a run (a chaos scenario, a crash or a rebalance test) every input id must appear
on the predictions or the dead-letter topic (else it is *lost*); an id seen more than once is a
*duplicate* (allowed after a crash or a rebalance, never after a graceful restart); an id on both
topics has *conflicting* outcomes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from testkit.topics import Topics


def record_id(record: Any) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


@dataclass(frozen=True, slots=True)
class Tally:
    records_in: int
    predicted: int  # distinct input ids with a prediction
    dead_lettered: int  # distinct input ids with a dead-letter record
    lost: int
    duplicates: int  # output records beyond one per input id
    conflicting: int  # ids with both a prediction and a dead-letter record
    strangers: int  # output ids that match no input record

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class Outputs:
    """The decoded output topics, plus their raw bytes for the secret sweep."""

    predictions: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    raw: list[tuple[str, bytes]]
    prediction_headers: dict[str, list[tuple[str, bytes]]]
    dead_letter_headers: dict[str, list[tuple[str, bytes]]]


async def read_inputs(topics: Topics, produced: int = 0) -> dict[str, Any]:
    """Every input record by id (the broker's own view: offsets are assigned on produce);
    ``produced``, when known, is how many to wait for."""
    return {record_id(r): r for r in await topics.read_all(topics.input, quiet_s=1.0, at_least=produced)}


def end_offsets(inputs: Mapping[str, Any], partitions: int) -> dict[int, int]:
    ends = {p: 0 for p in range(partitions)}
    for record in inputs.values():
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
    return ends


async def read_outputs(topics: Topics, committed_only: bool = False) -> Outputs:
    """``committed_only``: as a ``read_committed`` consumer sees them (``delivery: exactly_once``)."""
    predictions: list[dict[str, Any]] = []
    dead_letters: list[dict[str, Any]] = []
    raw: list[tuple[str, bytes]] = []
    headers: dict[str, dict[str, list[tuple[str, bytes]]]] = {"p": {}, "d": {}}
    for topic, sink, kind in ((topics.predictions, predictions, "p"), (topics.dead_letter, dead_letters, "d"),
                              (topics.explanations, None, "e")):
        for record in await topics.read_all(topic, quiet_s=1.0, committed_only=committed_only):
            raw.append((topic, _record_bytes(record)))
            if sink is None:
                continue
            doc = orjson.loads(record.value)
            sink.append(doc)
            headers[kind][doc["id"]] = list(record.headers or ())
    return Outputs(predictions, dead_letters, raw, headers["p"], headers["d"])


def _record_bytes(record: Any) -> bytes:
    parts = [record.key or b"", record.value or b""]
    for name, value in record.headers or ():
        parts += [name.encode(), value or b""]
    return b"\x00".join(parts)


def tally(input_ids: Iterable[str], outputs: Outputs) -> Tally:
    expected = set(input_ids)
    predicted = Counter(doc["id"] for doc in outputs.predictions)
    dead = Counter(doc["id"] for doc in outputs.dead_letters)
    seen = set(predicted) | set(dead)
    total = sum(predicted.values()) + sum(dead.values())
    return Tally(
        records_in=len(expected),
        predicted=len(expected & set(predicted)),
        dead_lettered=len(expected & set(dead)),
        lost=len(expected - seen),
        duplicates=total - len(seen),
        conflicting=len(set(predicted) & set(dead)),
        strangers=len(seen - expected))
