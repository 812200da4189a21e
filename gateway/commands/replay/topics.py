"""The dead-letter topic as it is when a replay starts: its partitions, first offsets and end offsets.

End offsets are the last stable offsets a fetch response reports (the high watermark when no
transaction is open), not the answer to a ListOffsets request: on Apache Kafka the two agree, but
the embedded tansu broker answers ListOffsets with the base offset of a partition's last batch plus
one (9 969 for a partition holding 10 000 records, measured), which would end a replay before the
last batch. So the layout seeks each partition to that answer and reads one fetch response of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.commands.replay.options import END_OFFSETS_TIMEOUT_S, FETCH_TIMEOUT_S
from gateway.errors import CommandError
from gateway.kafka.connection import topic_partitions


class ReplayError(CommandError, RuntimeError):
    """A runtime failure that ends the replay; its text is the line printed after ``replay: `` (exit 1)."""


@dataclass(frozen=True, slots=True)
class Layout:
    topic: str
    beginning: dict[int, int]
    end: dict[int, int]

    def partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in sorted(self.end)]

    def start_of(self, tp: TopicPartition, committed: int | None) -> int:
        return committed if committed is not None else self.beginning.get(tp.partition, 0)

    def end_of(self, tp: TopicPartition) -> int:
        """Partitions created after the start have nothing to replay."""
        return self.end.get(tp.partition, 0)


async def require_topics(consumer: AIOKafkaConsumer, wanted: Mapping[str, str]) -> None:
    """``wanted``: topic -> how to name it in the error (which config key it comes from)."""
    present = await consumer.topics()
    for topic, what in wanted.items():
        if topic not in present:
            raise ReplayError(f"{what} {topic!r} does not exist (or these credentials may not read it)")


async def read_layout(consumer: AIOKafkaConsumer, topic: str) -> Layout:
    """Assigns every partition of ``topic`` to ``consumer`` (no group membership) and leaves each
    positioned at or near its end."""
    found = await topic_partitions(consumer, topic)
    if not found:
        raise ReplayError(f"the broker lists no partitions for topic {topic!r}")
    tps = [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(tps)
    beginning = await consumer.beginning_offsets(tps)
    await consumer.seek_to_end(*tps)
    deadline = time.monotonic() + END_OFFSETS_TIMEOUT_S
    while any(_end_seen(consumer, tp) is None for tp in tps):
        if time.monotonic() > deadline:
            raise ReplayError(f"the broker reported no end offsets for {topic!r} within {END_OFFSETS_TIMEOUT_S:g}s")
        await consumer.getmany(*tps, timeout_ms=int(FETCH_TIMEOUT_S * 1000))  # only the offsets matter
        await asyncio.sleep(0)
    end: dict[int, int] = {}
    for tp in tps:
        seen = _end_seen(consumer, tp)
        assert seen is not None
        end[tp.partition] = seen
    return Layout(topic, {tp.partition: int(beginning[tp]) for tp in tps}, end)


def _end_seen(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    stable = consumer.last_stable_offset(tp)
    if stable is not None and stable >= 0:
        return int(stable)
    highwater = consumer.highwater(tp)
    return None if highwater is None else int(highwater)
