"""Step 5: reading the output topics back, every input matched by id."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.commands.demo.options import (
    DEAD_LETTER_TOPIC,
    INPUT_TOPIC,
    PARTITIONS,
    PREDICTIONS_TOPIC,
    TOPICS_S,
)
from gateway.commands.demo.waits import _bounded
from gateway.json_types import JsonObject
from gateway.stream.records import InputRecord


@dataclass(slots=True)
class Outputs:
    """What the topics hold, by record ``id``."""

    inputs: dict[str, int] = field(default_factory=dict)  # id -> input timestamp (ms)
    predictions: dict[str, int] = field(default_factory=dict)  # id -> prediction record timestamp (ms)
    dead_letters: dict[str, str] = field(default_factory=dict)  # id -> stage
    duplicates: int = 0
    last_output_ms: int = 0  # timestamp of the latest output record of either kind
    prediction_samples: dict[str, JsonObject] = field(default_factory=dict)  # first per label
    dead_letter_samples: dict[str, JsonObject] = field(default_factory=dict)  # first per stage

    def complete(self, expected: int) -> bool:
        return len(self.inputs) >= expected and len(self.predictions) + len(self.dead_letters) >= expected

    def add_input(self, record: InputRecord) -> None:
        self.inputs[f"{record.topic}/{record.partition}/{record.offset}"] = record.timestamp

    def add_prediction(self, record: InputRecord) -> None:
        doc = _document(record)
        identifier = str(doc["id"])
        if identifier in self.predictions:
            self.duplicates += 1
            return
        self.predictions[identifier] = record.timestamp
        self.last_output_ms = max(self.last_output_ms, record.timestamp)
        label = str(doc.get("prediction"))
        if label not in self.prediction_samples and len(self.prediction_samples) < 2:
            self.prediction_samples[label] = doc

    def add_dead_letter(self, record: InputRecord) -> None:
        doc = _document(record)
        identifier = str(doc["id"])
        if identifier in self.dead_letters:
            self.duplicates += 1
            return
        stage = str(doc.get("stage", "?"))
        self.dead_letters[identifier] = stage
        self.last_output_ms = max(self.last_output_ms, record.timestamp)
        self.dead_letter_samples.setdefault(stage, doc)


def _document(record: InputRecord) -> JsonObject:
    """An output record's JSON object (the gateway writes every output value as one)."""
    doc = orjson.loads(record.value or b"null")
    if not isinstance(doc, dict):
        raise ValueError(f"output record {record.topic}/{record.partition}/{record.offset} is not a JSON object")
    return doc


async def read_outputs(bootstrap: str, expected: int, timeout_s: float) -> Outputs:
    """Read all three topics from the beginning (partitions assigned, no group) until every input
    has an output or the deadline passes; what is still missing then shows in the summary."""
    outputs = Outputs()
    route = {INPUT_TOPIC: outputs.add_input, PREDICTIONS_TOPIC: outputs.add_prediction,
             DEAD_LETTER_TOPIC: outputs.add_dead_letter}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="scoring-gateway-demo-reader")
    try:
        await _bounded(consumer.start(), TOPICS_S, "cannot read the topics back")
        partitions = [TopicPartition(t, p) for t in route for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while not outputs.complete(expected) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, records in batch.items():
                add = route[tp.topic]
                for record in records:
                    add(record)
    finally:
        await consumer.stop()
    return outputs
