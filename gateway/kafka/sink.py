"""Kafka out: publish a batch's output records with the producer's batch API and wait for the acks.

One batch per output partition instead of one send per record: the per-record path costs 3-8x more
CPU on aiokafka. A publish that fails is retried with backoff until it is
acknowledged or the pipeline is cancelled; the offsets of its inputs are committed only after it
succeeds, so a failure can duplicate outputs (recognisable by ``id``) but never lose one. A failed
batch is sent again with the batches after it for the same partition (keeping key order), not the
batches before it. Library-independent: the seam's ``Producer`` does the talking.

A batch the broker has not acknowledged within ``stall_s`` (a partition without a leader, a broker
down) is reported through ``on_stall(reason)``; the next acknowledgement of that partition, with no
other partition still waiting, reports ``on_stall(None)``. Readiness follows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from operator import itemgetter

from gateway.kafka.client import BrokerRequestError, Producer, ProducerBatch
from gateway.kafka.client import Message as Message  # where the callers of the sink find it
from gateway.kafka.partitioner import partitions_of

log = logging.getLogger(__name__)

_KEY_CACHE_LIMIT = 100_000
_TOPIC = itemgetter(0)
_KEY = itemgetter(1)
# Acks on a healthy cluster take milliseconds; seconds without one means the partition has no
# leader (or the broker is gone), which is what readiness should say.
PUBLISH_STALL_S = 3.0

StallCallback = Callable[[str | None], None]


class KafkaSink:
    def __init__(self, producer: Producer, *, retry_backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, on_stall: StallCallback | None = None,
                 stall_s: float = PUBLISH_STALL_S) -> None:
        self._producer = producer
        self._on_stall = on_stall
        self._stall_s = stall_s
        self._stalled: dict[tuple[str, int], str] = {}
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[str, dict[bytes, int]] = {}  # per topic: a key's partition
        self._round_robin = random.Random()
        self._retry_backoff_s = retry_backoff_s
        self._max_backoff_s = max_backoff_s

    async def prepare(self, topics: Sequence[str]) -> None:
        """Learn the output topics' partitions before the first publish."""
        for topic in topics:
            await self._partitions_of(topic)

    async def _partitions_of(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            found = await self._producer.partitions_for(topic)
            partitions = self._partitions[topic] = sorted(found)
        return partitions

    def _group(self, topic: str, messages: Sequence[Message],
               groups: dict[tuple[str, int], list[Message]]) -> None:
        """Add ``messages`` (all for ``topic``) to ``groups`` by the partition Kafka's default
        partitioner picks for each key, in order within each partition. The keys a topic has not
        seen yet are hashed in one batch (``gateway.kafka.partitioner.partitions_of``): most keys of a
        high-cardinality stream are new. Unkeyed messages are spread at random."""
        partitions = self._partitions[topic]
        cache = self._key_partition.get(topic)
        if cache is None:
            cache = self._key_partition[topic] = {}
        keys = list(map(_KEY, messages))
        unknown = [key for key in keys if key is not None and key not in cache]
        if unknown:
            if len(cache) + len(unknown) > _KEY_CACHE_LIMIT:
                cache.clear()
                unknown = [key for key in keys if key is not None]
            cache.update(zip(unknown, [partitions[at] for at in partitions_of(unknown, len(partitions))],
                             strict=True))
        targets = {partition: (topic, partition) for partition in partitions}
        spread = self._round_robin.randrange
        for message, key in zip(messages, keys, strict=True):
            target = targets[cache[key] if key is not None else partitions[spread(len(partitions))]]
            group = groups.get(target)
            if group is None:
                groups[target] = [message]
            else:
                group.append(message)

    async def publish(self, messages: Sequence[Message], *, retry: bool = True) -> None:
        """Publish all messages; returns once the broker acknowledged every one of them.

        ``retry=False`` (inside a transaction, which must be aborted and redone as a whole instead)
        raises the first failure rather than sending the failed batches again."""
        topics = set(map(_TOPIC, messages))
        for topic in topics - self._partitions.keys():
            await self._partitions_of(topic)
        groups: dict[tuple[str, int], list[Message]] = {}
        if len(topics) == 1:
            self._group(next(iter(topics)), messages, groups)
        else:
            by_topic: dict[str, list[Message]] = {}
            for message in messages:
                found = by_topic.get(message[0])
                if found is None:
                    by_topic[message[0]] = [message]
                else:
                    found.append(message)
            for topic, some in by_topic.items():
                self._group(topic, some, groups)
        pending = list(groups.items())
        delay = self._retry_backoff_s
        while pending:
            pending = await self._send_groups(pending, retry)
            if not pending:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)

    async def _send_groups(self, groups: Sequence[tuple[tuple[str, int], list[Message]]], retry: bool = True
                           ) -> list[tuple[tuple[str, int], list[Message]]]:
        """Send every group as producer batches; returns the messages of the batches that failed."""
        chunks: list[tuple[tuple[str, int], list[Message]]] = []
        waits: list[Coroutine[object, object, None]] = []
        producer = self._producer
        for target, group in groups:
            batch = producer.create_batch()
            chunk: list[Message] = []
            for message in group:
                _, key, value, headers = message
                if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                    chunks.append((target, chunk))
                    waits.append(self._send_batch(batch, *target))
                    batch, chunk = producer.create_batch(), []
                    if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                        size = len(value or b"")
                        raise ValueError(f"a single record of {size} bytes exceeds the producer's batch size")
                chunk.append(message)
            chunks.append((target, chunk))
            waits.append(self._send_batch(batch, *target))
        results = await asyncio.gather(*waits, return_exceptions=True)
        failed: list[tuple[tuple[str, int], list[Message]]] = []
        broken: set[tuple[str, int]] = set()
        for (target, chunk), result in zip(chunks, results, strict=False):
            if isinstance(result, BaseException):
                if not isinstance(result, BrokerRequestError) or not retry:
                    raise result
                log.warning("publish_failed", extra={"topic": target[0], "partition": target[1],
                                                     "records": len(chunk), "error": repr(result)})
                broken.add(target)
                self._stall(target, f"publishing to {target[0]}[{target[1]}] failed: {type(result).__name__}")
            if target in broken:  # a failed batch and every later one of its partition, to keep key order
                failed.append((target, chunk))
        return failed

    async def _send_batch(self, batch: ProducerBatch, topic: str, partition: int) -> None:
        target = (topic, partition)
        timer = None
        if self._on_stall is not None:
            timer = asyncio.get_running_loop().call_later(
                self._stall_s, self._stall, target,
                f"outputs to {topic}[{partition}] not acknowledged by the broker for {self._stall_s:g}s")
        try:
            await self._producer.send(batch, topic, partition)
        except asyncio.CancelledError:  # abandoned (drain timeout): says nothing about the broker
            self._unstall(target)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if self._stalled:
            self._unstall(target)

    def _stall(self, target: tuple[str, int], reason: str) -> None:
        if self._on_stall is not None and target not in self._stalled:
            self._stalled[target] = reason
            self._on_stall(reason)

    def _unstall(self, target: tuple[str, int]) -> None:
        if self._stalled.pop(target, None) is not None and self._on_stall is not None:
            self._on_stall(next(iter(self._stalled.values()), None))
