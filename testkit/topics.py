"""One test's topics on a shared broker, the records fed to them, and gateway configs that use them.

Every name is unique per test (``unique``), so tests sharing a broker never see each other's
records; every read polls with a deadline, nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from gateway.kafka.embedded import create_topics
from testkit.brokers.choice import idempotent

SESSION_TIMEOUT_MS = 6000  # a group join takes about half of it on tansu; Apache Kafka accepts it too

PLAN_TYPES = ["Standard", "Premium", "Basic"]


def churn_features(i: int, rng: random.Random | None = None) -> dict[str, Any]:
    rng = rng or random.Random(i)
    return {
        "PlanType": rng.choice(PLAN_TYPES),
        "NumberOfPenalties": rng.randint(0, 5),
        "HasRenewed": rng.random() < 0.5,
        "BaseFee": round(rng.uniform(20, 120), 2),
        "ServiceTickets": rng.randint(0, 10),
        "AdditionalFeatureSpend": round(rng.uniform(0, 60), 2),
        "ServiceRating": round(rng.uniform(1, 5), 1),
        "Promotion": rng.random() < 0.3,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- topics ---------------------------------------------------------------------------------

class Topics:
    """One test's topics on the shared broker (unique names, so tests never see each other)."""

    def __init__(self, bootstrap: str, partitions: int = 4) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.input = unique("in")
        self.predictions = unique("pred")
        self.explanations = unique("expl")
        self.dead_letter = unique("dlq")
        self.group = unique("group")

    async def create(self) -> None:
        await create_topics(self.bootstrap, {self.input: self.partitions, self.predictions: self.partitions,
                                             self.explanations: self.partitions,
                                             self.dead_letter: self.partitions})

    async def produce(self, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None,
                      headers: Sequence[Sequence[tuple[str, bytes]]] | None = None) -> None:
        """Produce in key-partitioned batches (murmur2 like Kafka's default partitioner)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_batch_size=262144,
                                    max_request_size=4 * 1048576, linger_ms=0)
        await producer.start()
        try:
            keys = keys or [None] * len(values)
            by_partition: dict[int, list[int]] = {}
            for i, key in enumerate(keys):
                p = (murmur2(key) & 0x7FFFFFFF) % self.partitions if key is not None else i % self.partitions
                by_partition.setdefault(p, []).append(i)
            waits = []
            for p, idxs in by_partition.items():
                batch = producer.create_batch()
                for i in idxs:
                    h = list(headers[i]) if headers else []
                    if batch.append(key=keys[i], value=values[i], timestamp=None, headers=h) is None:
                        waits.append(await producer.send_batch(batch, self.input, partition=p))
                        batch = producer.create_batch()
                        batch.append(key=keys[i], value=values[i], timestamp=None, headers=h)
                waits.append(await producer.send_batch(batch, self.input, partition=p))
            await asyncio.gather(*waits)
        finally:
            await producer.stop()

    @contextlib.asynccontextmanager
    async def _from_beginning(self, topic: str, committed_only: bool = False) -> Any:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                    isolation_level="read_committed" if committed_only else "read_uncommitted")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            yield consumer
        finally:
            await consumer.stop()

    async def read(self, topic: str, until: Callable[[list[Any]], bool], timeout_s: float = 60.0,
                   settle_s: float = 0.0, committed_only: bool = False) -> list[Any]:
        """Every record of ``topic`` from the beginning, read until ``until(records)`` holds
        (then ``settle_s`` more, to catch records that should NOT be there)."""
        records: list[Any] = []
        async with self._from_beginning(topic, committed_only) as consumer:
            deadline = time.monotonic() + timeout_s
            settle_deadline = None
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=10000)
                for rs in batch.values():
                    records.extend(rs)
                now = time.monotonic()
                if settle_deadline is None and until(records):
                    settle_deadline = now + settle_s
                if settle_deadline is not None and now >= settle_deadline:
                    return records
                if now > deadline:
                    raise AssertionError(f"timed out reading {topic}: {len(records)} records")

    async def read_all(self, topic: str, quiet_s: float = 0.5, committed_only: bool = False,
                       at_least: int = 0, patience_s: float = 60.0) -> list[Any]:
        """Everything in ``topic`` now: read until a fetch of ``quiet_s`` brings nothing new
        (the broker's end offsets cannot be trusted on tansu); ``committed_only`` reads as a
        ``read_committed`` consumer (outputs of committed transactions only). With ``at_least``,
        quiet fetches do not end the read before that many records, for up to ``patience_s``: on a
        fresh three-node cluster a partition can fetch nothing for more than a second."""
        records: list[Any] = []
        deadline = time.monotonic() + patience_s
        async with self._from_beginning(topic, committed_only) as consumer:
            while True:
                batch = await consumer.getmany(timeout_ms=int(quiet_s * 1000), max_records=50000)
                if not batch and (len(records) >= at_least or time.monotonic() >= deadline):
                    return records
                for rs in batch.values():
                    records.extend(rs)

    async def committed(self) -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(self.input, p))
                    for p in range(self.partitions)}
        finally:
            await consumer.stop()


def values_of(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def ids_of(records: Iterable[Any]) -> list[str]:
    return [orjson.loads(r.value)["id"] for r in records]


# ---- gateway configs ------------------------------------------------------------------------

def gateway_config(topics: Topics, backend: dict[str, Any], **pipeline: Any) -> dict[str, Any]:
    kafka = {"bootstrap_servers": topics.bootstrap, "group_id": topics.group,
             "session_timeout_ms": SESSION_TIMEOUT_MS, "commit_interval_ms": 200,
             "enable_idempotence": idempotent()}
    kafka.update(pipeline.pop("kafka", {}))
    doc = {
        "kafka": kafka,
        "admin": {"host": "127.0.0.1", "port": pipeline.pop("admin_port", 0)},
        "shutdown_timeout_s": pipeline.pop("shutdown_timeout_s", 10),
        "pipelines": [{
            "name": pipeline.pop("name", "churn"),
            "input_topic": topics.input,
            "backend": backend,
            "outputs": {"predictions": topics.predictions, "dead_letter": topics.dead_letter,
                        "explanations": pipeline.pop("explanations_topic", None)},
            **pipeline,
        }],
    }
    return doc


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path
