"""Kafka in: the pipeline's consumer-group member (over the seam's ``Consumer``), and the decoding
of record values.

A value must be a JSON object of feature -> value. Anything else (invalid UTF-8, invalid JSON,
NaN/Infinity, a JSON array or scalar) is not the gateway's to guess at: it is rejected at stage
``decode`` with the original bytes kept in the dead-letter record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import orjson

from gateway.kafka.client import BrokerRequestError, Consumer, InputRecord, PartitionsCallback, TopicPartition
from gateway.stream.records import STAGE_DECODE, TOMBSTONE_REASON, Rejected


def decode_value(value: bytes | None) -> dict[str, object] | Rejected:
    if value is None:
        return Rejected(STAGE_DECODE, TOMBSTONE_REASON)
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejected(STAGE_DECODE, f"value is not valid JSON: {exc}")
    if type(doc) is not dict:
        return Rejected(STAGE_DECODE, f"value is a JSON {_json_type(doc)}, expected an object")
    return doc


def _json_type(doc: object) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(doc), type(doc).__name__)


# End offsets are asked for all assigned partitions at once, at most this often (one ListOffsets
# per broker), and a question the broker does not answer in time falls back to the high watermark
# of the last fetch rather than holding up the commit loop.
END_OFFSETS_MAX_AGE_S = 0.5
LAG_QUERY_TIMEOUT_S = 2.0


class KafkaSource:
    """The input topic's consumer as the pipeline uses it: pausing as a whole, committing, and the
    lag per partition. Library-independent: the :class:`Consumer` does the talking."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        # The consumer's own fetch, not a wrapper: called once per fetch loop turn.
        self.fetch: Callable[[float, int], Awaitable[Mapping[TopicPartition, Sequence[InputRecord]]]] = consumer.fetch
        self._paused = False
        self._committed: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        self._ends_at = -1e9

    async def start(self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        async def revoked(partitions: set[TopicPartition]) -> None:
            await on_revoked(partitions)  # drains and commits first
            for tp in partitions:  # another member commits them from now on
                self._committed.pop(tp, None)
                self._ends.pop(tp, None)

        await self.consumer.start(self.topic, revoked, on_assigned)

    async def stop(self) -> None:
        await self.consumer.stop()

    def partition_count(self) -> int | None:
        """Partitions of the input topic, from the consumer's metadata (None before it knows)."""
        partitions = self.consumer.partitions_for(self.topic)
        return len(partitions) if partitions else None

    def assignment(self) -> set[TopicPartition]:
        return self.consumer.assignment()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        if not self._paused:
            assigned = self.assignment()
            if assigned:
                self.consumer.pause(assigned)
            self._paused = True

    def resume(self) -> None:
        if self._paused:
            assigned = self.assignment()
            if assigned:
                self.consumer.resume(assigned)
            self._paused = False

    def pause_partition(self, tp: TopicPartition) -> None:
        """Stop reading one partition until the next assignment (it was taken over elsewhere)."""
        if tp in self.assignment():
            self.consumer.pause((tp,))

    def hold(self, tps: set[TopicPartition]) -> None:
        """Fetch nothing from these partitions until :meth:`release`: their position is not settled."""
        if tps:
            self.consumer.pause(tps)

    def release(self, tps: set[TopicPartition]) -> None:
        """After :meth:`hold`: fetch again, unless the whole source is paused (backpressure)."""
        if tps and not self._paused:
            self.consumer.resume(tps)

    async def seek_to_committed(self, tps: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Start each partition at the group's committed offset as the broker gives it now.

        The consumer asks for committed offsets the moment a partition is assigned. A previous
        owner's last transaction may be committed but its markers not yet written then, and the
        offset it committed not readable yet: reading from the older one would repeat outputs.
        Once this member's transactional producer for the partition has started (which waits for
        the previous owner's transaction to complete), the offset read here is the final one.
        Returns the offsets found (None: the group has none for the partition yet)."""
        partitions = sorted(tps)
        found = await asyncio.gather(*(self.consumer.committed(tp) for tp in partitions))
        for tp, offset in zip(partitions, found, strict=True):
            if offset is not None:
                self.consumer.seek(tp, offset)
        return dict(zip(partitions, found, strict=True))

    async def group_committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp`` as the broker gives it now (None: none yet);
        raises :class:`BrokerRequestError` when the coordinator cannot say."""
        return await self.consumer.committed(tp)

    def reapply_pause(self, assigned: set[TopicPartition]) -> None:
        """Newly assigned partitions start unpaused; keep them paused if the pipeline is."""
        if self._paused and assigned:
            self.consumer.pause(assigned)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Raises :class:`BrokerRequestError` when the group coordinator refuses or is away."""
        await self.consumer.commit(offsets)
        self._committed.update(offsets)

    def note_committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Offsets committed for the group by someone else (a transaction): lag counts from them."""
        self._committed.update(offsets)

    async def lag(self, tp: TopicPartition) -> int | None:
        """The partition's end offset minus the group's committed offset: the records not yet done.

        Before the group has committed anything for the partition, every retained record counts
        (end minus the log start offset). None when the broker cannot say right now.
        """
        end = await self._end_offset(tp)
        committed = await self._committed_offset(tp) if end is not None else None
        if end is None or committed is None:
            return None
        return max(0, end - committed)

    async def _end_offset(self, tp: TopicPartition) -> int | None:
        now = time.monotonic()
        if tp not in self._ends or now - self._ends_at > END_OFFSETS_MAX_AGE_S:
            self._ends_at = now  # also after a failure: ask again only after the max age
            assigned = self.assignment() | {tp}
            try:
                found = await asyncio.wait_for(self.consumer.end_offsets(list(assigned)), LAG_QUERY_TIMEOUT_S)
            except (TimeoutError, BrokerRequestError):
                found = {}
            self._ends = found
        end = self._ends.get(tp)
        if end is None:
            return self.consumer.highwater(tp)  # from the last fetch response
        return end

    async def _committed_offset(self, tp: TopicPartition) -> int | None:
        found: int | None = self._committed.get(tp)
        if found is not None:
            return found
        try:
            found = await asyncio.wait_for(self.consumer.committed(tp), LAG_QUERY_TIMEOUT_S)
            if found is not None:
                self._committed[tp] = found
                return found
            start = await asyncio.wait_for(self.consumer.beginning_offsets([tp]), LAG_QUERY_TIMEOUT_S)
        except (TimeoutError, BrokerRequestError):
            return None
        return start.get(tp)
