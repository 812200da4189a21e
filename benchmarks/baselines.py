"""What the gateway is measured against, run in the runner's own process on the same broker.

``passthrough_ceiling``: the fastest honest consume → rewrite → produce → commit loop aiokafka
allows (orjson decode, one field added, encode; ``create_batch``/``send_batch`` per partition; wait
for the acks, commit, next poll). No gateway that parses and rewrites records can beat it here.

``hand_written_consumer``: what a user writes without the gateway: for each record one HTTP
request to the Qlik route (one row), then ``send_and_wait`` of the result (the form aiokafka's own
examples use, and the simplest that is at-least-once: the record is acknowledged before the next is
consumed), offsets auto-committed (aiokafka's default). Bounded by a time budget.

Both write their outputs to a topic; throughput is read from the output's timestamps exactly as for
the gateway, so the three are measured the same way.

``consumer_latency``: the end-to-end latency of a bare consumer at a given pace, the part of the
gateway's latency that the broker and the Kafka client account for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.workload import RunTopics

SESSION_TIMEOUT_MS = 6000


@dataclass
class LoopResult:
    """What a client loop did: records handled and the CPU it spent doing so (this process)."""

    records: int
    wall_s: float
    cpu_s: float
    complete: bool


def _consumer(bootstrap: str, topics: RunTopics, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topics.input, bootstrap_servers=bootstrap, group_id=topics.group,
                            auto_offset_reset="earliest", session_timeout_ms=SESSION_TIMEOUT_MS,
                            heartbeat_interval_ms=SESSION_TIMEOUT_MS // 3, **options)


async def passthrough_ceiling(bootstrap: str, topics: RunTopics, expected: int,
                              budget_s: float) -> LoopResult:
    consumer = _consumer(bootstrap, topics, enable_auto_commit=False, max_poll_records=2000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=262144,
                                max_request_size=4 * 1048576, acks="all")
    await producer.start()
    await consumer.start()
    done, first, cpu0 = 0, 0.0, 0.0
    deadline = time.monotonic() + budget_s
    loads, dumps = orjson.loads, orjson.dumps
    try:
        while done < expected and time.monotonic() < deadline:
            data = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not data:
                continue
            if not done:
                first, cpu0 = time.monotonic(), time.process_time()
            acks = []
            for tp, records in data.items():
                batch = producer.create_batch()
                for r in records:
                    doc = loads(r.value)
                    doc["scored"] = True
                    value = dumps(doc)
                    if batch.append(key=r.key, value=value, timestamp=None) is None:
                        acks.append(await producer.send_batch(batch, topics.predictions, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=r.key, value=value, timestamp=None)
                acks.append(await producer.send_batch(batch, topics.predictions, partition=tp.partition))
                done += len(records)
            await asyncio.gather(*acks)
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in data.items()})
    finally:
        await consumer.stop()
        await producer.stop()
    return LoopResult(done, time.monotonic() - first if done else 0.0,
                      time.process_time() - cpu0 if done else 0.0, done >= expected)


def _qlik_body(features: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema": [{"name": name} for name in features], "rows": [list(features.values())]})


async def hand_written_consumer(bootstrap: str, topics: RunTopics, qlik_url: str, backlog: int,
                                budget_s: float, join_timeout_s: float = 60.0) -> LoopResult:
    """One record at a time, for ``budget_s`` seconds from the first record or until the
    ``backlog`` is consumed.

    ``complete`` is False when the budget was not spent on records (the backlog ran dry, or no record
    came within ``join_timeout_s``).
    """
    consumer = _consumer(bootstrap, topics)  # enable_auto_commit=True: aiokafka's default
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await consumer.start()
    done, first, cpu0 = 0, 0.0, 0.0
    deadline = None
    complete = True
    headers = {"Content-Type": "application/json", "Authorization": "Bearer benchmark"}
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(budget_s + join_timeout_s):
            async for msg in consumer:
                if deadline is None:
                    first, cpu0 = time.monotonic(), time.process_time()
                    deadline = first + budget_s
                features = orjson.loads(msg.value)
                async with http.post(qlik_url, data=_qlik_body(features), headers=headers) as resp:
                    resp.raise_for_status()
                    answer = orjson.loads(await resp.read())
                attributes = answer["data"]["attributes"]
                names = [column["name"] for column in attributes["schema"]]
                result = dict(zip(names, attributes["rows"][0], strict=True))
                out = {"id": f"{msg.topic}/{msg.partition}/{msg.offset}", "prediction": result}
                await producer.send_and_wait(topics.predictions, orjson.dumps(out), key=msg.key)
                done += 1
                if time.monotonic() >= deadline:
                    break
                if done >= backlog:
                    complete = False
                    break
    except TimeoutError:
        complete = False
    finally:
        await consumer.stop()
        await producer.stop()
    return LoopResult(done, time.monotonic() - first if done else 0.0,
                      time.process_time() - cpu0 if done else 0.0, complete)


def since_timestamp(record: Any, now_ms: float) -> float | None:
    return now_ms - record.timestamp


async def consumer_latency(bootstrap: str, topics: RunTopics, expected: int, timeout_s: float,
                           ready: asyncio.Event, topic: str | None = None,
                           latency_of: Callable[[Any, float], float | None] = since_timestamp,
                           **options: Any) -> list[float]:
    """Receive time - record timestamp (ms) for a bare aiokafka consumer (``options`` on top of the
    client's defaults): the latency the broker and the client add before any processing. ``ready``
    is set once the consumer is positioned, so the producer can start. ``topic`` (default the
    input) and ``latency_of`` (a record's latency at a receive time, None to leave it out) let it
    time another topic by another clock."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", **options)
    await consumer.start()
    latencies: list[float] = []
    try:
        partitions = [TopicPartition(topic or topics.input, p) for p in range(topics.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ready.set()
        deadline = time.monotonic() + timeout_s
        while len(latencies) < expected and time.monotonic() < deadline:
            data = await consumer.getmany(timeout_ms=100, max_records=2000)
            now_ms = time.time() * 1000.0
            for records in data.values():
                for record in records:
                    latency = latency_of(record, now_ms)
                    if latency is not None:
                        latencies.append(latency)
    finally:
        ready.set()
        await consumer.stop()
    return latencies
