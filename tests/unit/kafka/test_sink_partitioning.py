"""KafkaSink puts each keyed output where Kafka's default partitioner would, whether its key is
hashed alone or with a publish's other new keys, and keeps each partition's records in order."""

from __future__ import annotations

from typing import Any

from gateway.kafka.partitioner import VECTOR_MIN_KEYS, partition_of
from gateway.kafka.sink import KafkaSink


class Batch:
    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    def append(self, *, key: bytes | None, **_: Any) -> object:
        self.keys.append(key)
        return object()


class Producer:
    """Acknowledges every batch at once and remembers where each went."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.sent: list[tuple[str, int, list[bytes | None]]] = []

    def create_batch(self) -> Batch:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send(self, batch: Batch, topic: str, partition: int) -> None:
        self.sent.append((topic, partition, batch.keys))


async def test_keys_land_on_the_default_partitioners_partition_in_order() -> None:
    producer = Producer(partitions=7)
    sink = KafkaSink(producer)  # type: ignore[arg-type]
    small = [b"k-%d" % i for i in range(VECTOR_MIN_KEYS - 1)]  # hashed one by one
    large = [b"customer-%d" % (i * 7919) for i in range(5 * VECTOR_MIN_KEYS)]  # hashed as one batch
    for keys in (small, large, large + small + [b"new-%d" % i for i in range(40)]):
        producer.sent.clear()
        await sink.publish([("out", key, b"v", []) for key in keys])
        placed = {(topic, partition): sent for topic, partition, sent in producer.sent}
        for key in keys:
            assert key in placed[("out", partition_of(key, 7))]
        for (_, partition), sent in placed.items():
            assert sent == [key for key in keys if partition_of(key, 7) == partition]  # input order kept
