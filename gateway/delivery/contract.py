"""The delivery contract: one promise, whichever ``delivery`` mode keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from gateway.kafka.client import InputRecord, TopicPartition
from gateway.stream.outputs import Published

# What ``settle`` returns when every output was delivered (the common case: nothing to subtract).
NOTHING_ABANDONED: frozenset[TopicPartition] = frozenset()


class Delivery(Protocol):
    """How a pipeline's outputs reach their topics and its input offsets get committed.

    For each group of input records (a batch, or the refused records of a fetch) the pipeline calls:

    1. ``publish(outputs, records)``, once or more (a deferred explanation lane publishes again
       later): hands the outputs over and returns once they are *placed*, so that outputs handed
       over afterwards for the same keys cannot overtake them;
    2. ``settle(records)``, once, after their last ``publish``: returns once the fate of every output
       published for these records is known, as the input partitions whose outputs were
       *abandoned* (empty: all delivered).

    *Delivered* outputs are durable and visible to their readers, ``read_committed`` ones included,
    and the records' input offsets are committed with them or by a later ``commit``: the offset
    tracker acknowledges a record only once every output of it is delivered or goes out atomically
    with its offset. *Abandoned* outputs never will be from this member (its partition was revoked,
    or it was fenced): they count for nothing, and the partition's owner reads the records again.
    Only delivered outputs count as published (``records_published_total``, end-to-end latency).

    The rest is the group membership and the commit loop: ``start`` once before the first
    assignment, ``assigned`` / ``revoked`` inside the rebalance callbacks, ``run`` (the commit rounds,
    until its stop is set), ``commit`` (one round now: the drain and the exit), ``close``.
    """

    async def start(self) -> None:
        """Check what the mode needs of the broker; raises a ``KafkaError`` naming the setting."""

    async def publish(self, published: Published, records: Sequence[InputRecord]) -> None: ...

    async def settle(self, records: Sequence[InputRecord]) -> frozenset[TopicPartition]: ...

    async def assigned(self, tps: Iterable[TopicPartition]) -> None: ...

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """After the drain and its commit: whatever is still held for ``tps`` is abandoned."""

    async def run(self, stop: asyncio.Event) -> None: ...

    async def commit(self) -> None: ...

    async def close(self) -> None: ...
