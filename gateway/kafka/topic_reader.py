"""Reading a whole topic once, from a point in time to its end as it was when the read began:
what a report over an output topic (``scoring-gateway compare``) needs. No consumer group, no
commits: partitions are assigned directly, so the read disturbs no running gateway.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition  # untyped library: its objects stay in this module

from gateway.config import KafkaConfig
from gateway.errors import KafkaError
from gateway.kafka.connection import consumer_options, start_client, topic_partitions

FETCH_TIMEOUT_MS = 500


class TopicReadError(KafkaError):
    """The topic cannot be read: missing, or its partitions unknown."""


async def read_topic(kafka: KafkaConfig, topic: str, *, since_ms: int | None = None,
                     timeout_s: float = 30.0) -> AsyncIterator[list[bytes | None]]:
    """The values of ``topic`` written at or after ``since_ms`` (all when None), a fetch at a time,
    up to each partition's end at the start; gives up after ``timeout_s`` without progress."""
    options = consumer_options(kafka)
    options.update(group_id=None, enable_auto_commit=False)
    consumer = AIOKafkaConsumer(**options)
    try:
        await start_client(consumer.start(), kafka)
        partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        end = {tp: int(offset) for tp, offset in (await consumer.end_offsets(tps)).items()}
        await _seek(consumer, tps, since_ms)
        remaining = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=FETCH_TIMEOUT_MS)
            values: list[bytes | None] = []
            for tp, records in batches.items():
                values.extend(record.value for record in records if record.offset < end[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if values:
                progress = time.monotonic()
                yield values
            elif time.monotonic() - progress > timeout_s:
                raise TopicReadError(f"topic {topic!r}: no records for {timeout_s:g}s before its end")
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    found = await topic_partitions(consumer, topic)
    if not found:
        raise TopicReadError(f"topic {topic!r} does not exist (or these credentials may not read it)")
    return found


async def _seek(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int | None) -> None:
    if since_ms is None:
        await consumer.seek_to_beginning(*tps)
        return
    found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
    late = [tp for tp, at in found.items() if at is None]
    if late:
        await consumer.seek_to_end(*late)
    for tp, at in found.items():
        if at is not None:
            consumer.seek(tp, at.offset)
