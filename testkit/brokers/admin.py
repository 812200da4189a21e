"""Questions to a running cluster through the Kafka protocol (aiokafka's admin client and consumer).

Synchronous entry points (``registered_brokers``) run their own event loop: call them from a
thread when an event loop is already running (``KafkaCluster.wait_ready`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def registered_brokers(bootstrap: str, timeout_s: float) -> set[int]:
    """Node ids the cluster's metadata lists (registered and unfenced); empty when nothing answers."""
    async def ask() -> set[int]:
        async with admin_client(bootstrap, timeout_s) as admin:
            found = await admin.describe_cluster()
            return {int(broker["node_id"]) for broker in found["brokers"]}

    try:
        return asyncio.run(asyncio.wait_for(ask(), timeout_s * 2))
    except Exception:  # not listening yet, or still electing a controller: ask again later
        return set()


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str, timeout_s: float = 10.0) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_led_topics(bootstrap: str, names: Sequence[str], partitions: int, leader: int,
                            nodes: Sequence[int]) -> None:
    """Topics replicated to every node with ``leader`` the preferred leader of every partition."""
    followers = [n for n in nodes if n != leader]
    assignment = {p: [leader, *followers] for p in range(partitions)}
    async with admin_client(bootstrap) as admin:
        await admin.create_topics([NewTopic(name, -1, -1, replica_assignments=assignment) for name in names])


async def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> leader node id (-1 while none is elected), from fresh metadata."""
    async with admin_client(bootstrap) as admin:
        (found,) = await admin.describe_topics([topic])
    return {int(p["partition"]): int(p["leader"]) for p in found["partitions"]}


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The broker's end offset (next offset to be written) of every partition: ListOffsets(latest)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        found = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: int(offset) for tp, offset in found.items()}


async def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets for ``topic`` (OffsetFetch through the admin API)."""
    async with admin_client(bootstrap) as admin:
        found = await admin.list_consumer_group_offsets(group)
    return {tp.partition: int(meta.offset) for tp, meta in found.items() if tp.topic == topic}
