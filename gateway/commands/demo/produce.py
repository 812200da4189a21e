"""Step 3: producing the sample churn records, all at once or paced."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from gateway.commands.demo.options import (
    INPUT_TOPIC,
    PACED_TICK_S,
    PARTITIONS,
    PRODUCE_CHUNK,
    PRODUCER_BATCH_BYTES,
    TOPICS_S,
)
from gateway.commands.demo.sample_data import SampleRecord
from gateway.commands.demo.waits import _bounded
from gateway.kafka.partitioner import partition_of


async def produce(bootstrap: str, records: list[SampleRecord], produced: list[int], rate: float = 0.0) -> None:
    """Produce with the batch API, keyed by customer id onto Kafka's default partition (murmur2).

    Chunk by chunk, so the gateway starts scoring while later records are still on their way; with a
    ``rate``, one small chunk per tick on a fixed schedule (a late tick is caught up, not skipped).
    ``produced[0]`` counts what the broker has acknowledged.
    """
    chunk_size = max(1, int(rate * PACED_TICK_S)) if rate else PRODUCE_CHUNK
    started = time.monotonic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=PRODUCER_BATCH_BYTES,
                                max_request_size=4 * 1_048_576, client_id="scoring-gateway-demo-producer")
    try:
        await _bounded(producer.start(), TOPICS_S, "cannot connect the producer to the broker")
        for start in range(0, len(records), chunk_size):
            if rate:
                await asyncio.sleep(max(0.0, started + start / rate - time.monotonic()))
            chunk = records[start:start + chunk_size]
            by_partition: dict[int, list[SampleRecord]] = {}
            for record in chunk:
                partition = partition_of(record.key, PARTITIONS)
                by_partition.setdefault(partition, []).append(record)
            acks = []
            for partition, records_of in by_partition.items():
                batch = producer.create_batch()
                for record in records_of:
                    if batch.append(key=record.key, value=record.value, timestamp=None, headers=[]) is None:
                        acks.append(await producer.send_batch(batch, INPUT_TOPIC, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=record.key, value=record.value, timestamp=None, headers=[])
                acks.append(await producer.send_batch(batch, INPUT_TOPIC, partition=partition))
            await asyncio.gather(*acks)
            produced[0] += len(chunk)
    finally:
        await producer.stop()
