"""The offset tracker: which input offsets may be committed without losing a record.

Invariant: the committed offset of a partition is always ``o + 1`` where every tracked record at or
below ``o`` is acknowledged: each of its outputs is delivered before that commit (at least once) or
in the same transaction (exactly once). Records are tracked in fetch order (which is offset order
within a partition); acknowledgements may arrive in any order.

The commit protocol, as the pipeline and its delivery (``gateway.delivery.contract``) run it:
    1. ``track`` every fetched record's offset before it enters a batch;
    2. the delivery settles a batch's records: ``ack`` their offsets;
    3. ``committable`` yields, per partition, the offset below which everything is acknowledged;
       the delivery commits exactly those, then calls ``committed``.
No I/O happens here, so every step can be tested in isolation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.errors import KafkaError
from gateway.kafka.client import InputRecord, TopicPartition


class OffsetOrderError(KafkaError):
    """An offset was tracked out of order for its partition: the commit invariant would break."""


@dataclass(slots=True)
class _PartitionState:
    pending: deque[int] = field(default_factory=deque)  # tracked, in offset order
    done: set[int] = field(default_factory=set)  # acknowledged but not yet at the head
    next_commit: int | None = None  # offset to commit next (last contiguous done + 1)
    committed: int | None = None
    last_tracked: int = -1


class OffsetTracker:
    """Per-partition bookkeeping of tracked and acknowledged offsets."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}

    def track(self, partition: TopicPartition, offsets: Iterable[int]) -> None:
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = _PartitionState()
        before = len(state.pending)
        state.pending.extend(offsets)
        if len(state.pending) > before:
            first = state.pending[before]
            if first <= state.last_tracked:
                raise OffsetOrderError(
                    f"{partition}: offset {first} tracked after {state.last_tracked}")
            state.last_tracked = state.pending[-1]

    def ack(self, partition: TopicPartition, offsets: Iterable[int]) -> bool:
        """False when the partition is not tracked (revoked meanwhile: its records are redelivered)."""
        state = self._partitions.get(partition)
        if state is None:
            return False
        state.done.update(offsets)
        pending, done = state.pending, state.done
        while pending and pending[0] in done:
            head = pending.popleft()
            done.discard(head)
            state.next_commit = head + 1
        return True

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets that advanced since the last commit, partition -> offset to commit."""
        return {p: s.next_commit for p, s in self._partitions.items()
                if s.next_commit is not None and s.next_commit != s.committed}

    def done_below(self, partition: TopicPartition) -> int | None:
        """The offset below which every tracked record of ``partition`` is acknowledged, if any."""
        state = self._partitions.get(partition)
        return state.next_commit if state is not None else None

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = offset

    def outstanding(self, partition: TopicPartition | None = None) -> int:
        """Records tracked but not yet contiguous-acknowledged (for one partition or all)."""
        if partition is not None:
            state = self._partitions.get(partition)
            return len(state.pending) if state else 0
        return sum(len(s.pending) for s in self._partitions.values())

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop revoked partitions: whatever was not committed will be redelivered elsewhere."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._partitions)


def offsets_by_partition(records: Iterable[InputRecord]) -> dict[TopicPartition, list[int]]:
    """The records' offsets by input partition, in record order."""
    found: dict[tuple[str, int], list[int]] = {}
    for record in records:
        tp = (record.topic, record.partition)  # a plain tuple per record; named once per partition
        offsets = found.get(tp)
        if offsets is None:
            found[tp] = [record.offset]
        else:
            offsets.append(record.offset)
    return {TopicPartition._make(tp): offsets for tp, offsets in found.items()}
