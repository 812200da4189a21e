"""A live stream for the campaign: records arriving at a steady rate, and how far the predictions got.

The outage scenarios (:mod:`benchmarks.chaos_outages`) keep records arriving before, during and
after the API is out, and time the recovery by the prediction topic itself: when does every record
that arrived before the heal have its prediction? Both run as tasks of the scenario's task group
until its ``stop`` event is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from testkit.stream import PacedStream
from testkit.topics import Topics

__all__ = ["PacedStream", "Predicted"]  # the stream itself lives in testkit, shared with the tests


class Predicted:
    """The prediction topic read as it fills: per input partition, the offset below which every
    input record has a prediction (a prediction's ``id`` is ``topic/partition/offset``)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self._low: dict[int, int] = {}
        self._above: dict[int, set[int]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.topics.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=50)
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topics.predictions, p) for p in range(self.topics.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=5000)
                for records in batch.values():
                    for record in records:
                        self._add(orjson.loads(record.value)["id"])
        finally:
            await consumer.stop()

    def _add(self, record_id: str) -> None:
        _, partition, offset = record_id.rsplit("/", 2)
        p = int(partition)
        above = self._above.setdefault(p, set())
        above.add(int(offset))
        low = self._low.get(p, 0)
        while low in above:
            above.discard(low)
            low += 1
        self._low[p] = low

    def covers(self, ends: Mapping[int, int]) -> bool:
        """Whether every input offset below ``ends`` has a prediction."""
        return all(self._low.get(p, 0) >= end for p, end in ends.items())
