"""The load: churn feature records in, and the output topics read back with their timestamps.

Records are the eight features of the emulator's ``churn`` deployment, drawn by the product's own
generator (:func:`gateway.commands.demo.sample_data.churn_features`, ~165 bytes of JSON, near the 200-byte values
the baselines were measured with), keyed by customer so that key ordering matters as it would in
production. Values come from a pool encoded once, so producing a million-record backlog costs the
broker's time, not the generator's.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.commands.demo.sample_data import churn_features
from gateway.kafka.embedded import create_topics
from gateway.kafka.partitioner import partition_of

PARTITIONS = 4
CUSTOMERS = 50_000
POOL_SIZE = 4096
# send_batch futures allowed outstanding while producing a backlog: bounds the client's memory.
MAX_PENDING_BATCHES = 64


churn_row = churn_features  # one customer's features; the name the emulator benchmark draws rows by


def value_pool(seed: int = 7, size: int = POOL_SIZE) -> list[bytes]:
    rng = random.Random(seed)
    return [orjson.dumps(churn_features(rng)) for _ in range(size)]


def customer_key(i: int) -> bytes:
    return b"customer-%d" % (i % CUSTOMERS)


@dataclass(frozen=True)
class RunTopics:
    """One repetition's topics and consumer group: fresh names, so no run sees another's data."""

    input: str
    predictions: str
    dead_letter: str
    group: str
    partitions: int = PARTITIONS

    @classmethod
    def fresh(cls, label: str, partitions: int = PARTITIONS) -> RunTopics:
        tag = f"{label}-{uuid.uuid4().hex[:8]}"
        return cls(f"in-{tag}", f"pred-{tag}", f"dlq-{tag}", f"group-{tag}", partitions)

    async def create(self, bootstrap: str) -> None:
        await create_topics(bootstrap, {self.input: self.partitions, self.predictions: self.partitions,
                                        self.dead_letter: self.partitions})


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=262144,
                            max_request_size=4 * 1048576, acks="all")


async def produce_backlog(bootstrap: str, topics: RunTopics, count: int, pool: Sequence[bytes],
                          start: int = 0) -> float:
    """Produce ``count`` records with the batch API before the consumer under test starts.

    Returns the records/s achieved (informative: the backlog's own cost is not measured).
    """
    producer = _producer(bootstrap)
    await producer.start()
    began = time.monotonic()
    try:
        builders: dict[int, Any] = {}
        pending: list[asyncio.Future[Any]] = []
        for i in range(start, start + count):
            key = customer_key(i)
            p = partition_of(key, topics.partitions)
            batch = builders.get(p)
            if batch is None:
                batch = builders[p] = producer.create_batch()
            value = pool[i % len(pool)]
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topics.input, partition=p))
                batch = builders[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
                if len(pending) >= MAX_PENDING_BATCHES:
                    await asyncio.gather(*pending)
                    pending.clear()
        for p, batch in builders.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topics.input, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count / max(1e-9, time.monotonic() - began)


async def produce_paced(bootstrap: str, topics: RunTopics, rate_per_s: float, duration_s: float,
                        pool: Sequence[bytes], start: int = 0, tick_s: float = 0.005) -> int:
    """Produce at a steady ``rate_per_s`` for ``duration_s`` (one small batch per partition per tick).

    Each record's timestamp is taken when it is appended, i.e. when it "happens": the end-to-end
    latency of a record is measured from there.
    """
    producer = _producer(bootstrap)
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        began = time.monotonic()
        limit = int(rate_per_s * duration_s)
        while sent < limit:
            elapsed = time.monotonic() - began
            if elapsed > duration_s * 1.5 + 5:  # the client itself cannot keep the pace: stop
                break
            due = min(limit, int(rate_per_s * elapsed)) - sent
            if due > 0:
                builders: dict[int, Any] = {}
                for i in range(start + sent, start + sent + due):
                    key = customer_key(i)
                    p = partition_of(key, topics.partitions)
                    batch = builders.get(p)
                    if batch is None:
                        batch = builders[p] = producer.create_batch()
                    batch.append(key=key, value=pool[i % len(pool)], timestamp=None)
                for p, batch in builders.items():
                    pending.append(await producer.send_batch(batch, topics.input, partition=p))
                sent += due
                if len(pending) >= MAX_PENDING_BATCHES:
                    done = [f for f in pending if f.done()]
                    pending = [f for f in pending if not f.done()]
                    for f in done:
                        f.result()
            await asyncio.sleep(tick_s)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


@dataclass
class TopicContents:
    """What a topic held when read: every record's timestamp (ms), and the values when asked for."""

    timestamps: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.timestamps)

    def rate(self) -> float | None:
        """Records/s from the first to the last record: (n - 1) intervals over their span."""
        if len(self.timestamps) < 2:
            return None
        span_s = (max(self.timestamps) - min(self.timestamps)) / 1000.0
        return (len(self.timestamps) - 1) / span_s if span_s > 0 else None


async def read_topic(bootstrap: str, topic: str, partitions: int, *, expected: int | None,
                     timeout_s: float, keep_values: bool = False, idle_s: float = 1.0) -> TopicContents:
    """Read ``topic`` from the beginning until ``expected`` records (or ``idle_s`` without any).

    The end of a partition is established by reading it: the broker's end offsets are not trusted
    (tansu reports the last batch's first offset + 1).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1048576,
                                fetch_max_bytes=16 * 1048576)
    await consumer.start()
    contents = TopicContents()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last_seen = time.monotonic()
        while time.monotonic() < deadline:
            data = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for records in data.values():
                contents.timestamps.extend(r.timestamp for r in records)
                if keep_values:
                    contents.values.extend(r.value for r in records)
            now = time.monotonic()
            if data:
                last_seen = now
            if expected is not None and len(contents) >= expected:
                break
            if now - last_seen > idle_s and (expected is None or len(contents) > 0):
                break
    finally:
        await consumer.stop()
    return contents
