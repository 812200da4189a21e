"""A live stream for the campaign: records arriving at a steady rate, and how far the predictions got.

The outage scenarios (:mod:`benchmarks.chaos_outages`) keep records arriving before, during and
after the API is out, and time the recovery by the prediction topic itself: when does every record
that arrived before the heal have its prediction? Both run as tasks of the scenario's task group
until its ``stop`` event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.commands.demo.sample_data import churn_records
from testkit.topics import Topics

TICK_S = 0.1  # the stream produces what is due every tick


class PacedStream:
    """Churn records at ``rate``/s from one open producer, keyed by customer, on a clock: a slow
    send is made up at the next tick, so the count follows ``rate × elapsed``."""

    def __init__(self, topics: Topics, rate: float, seed: int) -> None:
        self.topics = topics
        self.rate = rate
        self.sent = 0  # acknowledged by the broker
        self.ends: dict[int, int] = {}  # partition -> one past the highest acknowledged offset
        self._records = churn_records(10**9, seed=seed, malformed_share=0.0, customers=2000)

    async def run(self, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.topics.bootstrap, linger_ms=5)
        await producer.start()
        try:
            started = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - started) * self.rate) - self.sent
                if due > 0:
                    batch = [next(self._records) for _ in range(due)]
                    sends = [await producer.send(self.topics.input, r.value, key=r.key) for r in batch]
                    for meta in await asyncio.gather(*sends):
                        self.ends[meta.partition] = max(self.ends.get(meta.partition, 0), meta.offset + 1)
                    self.sent += due
                with contextlib.suppress(TimeoutError):  # the pacing itself: wake at the next tick
                    await asyncio.wait_for(stop.wait(), TICK_S)
        finally:
            await producer.stop()


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
