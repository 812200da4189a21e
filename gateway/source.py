"""Kafka in: a consumer-group member with manual commits, and the decoding of record values.

A value must be a JSON object of feature -> value. Anything else (invalid UTF-8, invalid JSON,
NaN/Infinity, a JSON array or scalar) is not the gateway's to guess at: it is rejected at stage
``decode`` with the original bytes kept in the dead-letter record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from gateway.records import STAGE_DECODE, TOMBSTONE_REASON, Rejected


def decode_value(value: bytes | None) -> dict[str, Any] | Rejected:
    if value is None:
        return Rejected(STAGE_DECODE, TOMBSTONE_REASON)
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejected(STAGE_DECODE, f"value is not valid JSON: {exc}")
    if type(doc) is not dict:
        return Rejected(STAGE_DECODE, f"value is a JSON {_json_type(doc)}, expected an object")
    return doc


def _json_type(doc: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(doc), type(doc).__name__)


PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._on_assigned(set(assigned))


class KafkaSource:
    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self._paused = False

    async def start(self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(on_revoked, on_assigned))
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def fetch(self, timeout_s: float, max_records: int) -> dict[TopicPartition, list[Any]]:
        batches: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return batches

    def partition_count(self) -> int | None:
        """Partitions of the input topic, from the consumer's metadata (None before it knows)."""
        partitions = self.consumer.partitions_for_topic(self.topic)
        return len(partitions) if partitions else None

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        if not self._paused:
            assigned = self.assignment()
            if assigned:
                self.consumer.pause(*assigned)
            self._paused = True

    def resume(self) -> None:
        if self._paused:
            assigned = self.assignment()
            if assigned:
                self.consumer.resume(*assigned)
            self._paused = False

    def reapply_pause(self, assigned: set[TopicPartition]) -> None:
        """Newly assigned partitions start unpaused; keep them paused if the pipeline is."""
        if self._paused and assigned:
            self.consumer.pause(*assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})

    async def lag(self, tp: TopicPartition) -> int | None:
        """High watermark minus position: right on Apache Kafka; tansu reports the watermark
        differently (see the README), so treat the figure as indicative there."""
        highwater = self.consumer.highwater(tp)
        if highwater is None:
            return None
        try:
            position = await self.consumer.position(tp)
        except Exception:  # not assigned any more, or no position yet
            return None
        return max(0, int(highwater) - int(position))
