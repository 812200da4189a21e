"""A range of the pipeline's input topic as the input of a batch run.

The topic is read with ``assign()`` by a consumer without a group: it never joins the pipeline's
consumer group and never commits its offsets, so a running gateway is not disturbed. Each of
``--start`` and ``--end`` is ``earliest``, ``latest`` (the end of each partition when the run
began, as a fetch reports it), an offset (the same on every partition, or ``P:N,P:N`` per partition) or an ISO-8601 time
(a time without a zone is UTC): the first offset whose record timestamp is at or after it, as
Kafka's ``offsets_for_times`` defines it. The range is ``[start, end)`` on each partition. A
broker whose time index answers an offset whose record is older than asked (the embedded tansu
broker does) is checked by reading that record, and the offset is then found by scanning.

The offsets resolved when the run began are kept in its state, so a resumed run reads the same
records. Rows are the records in partition order, then offset order; ``automl_row_index`` counts
them. The source file carries ``kafka_partition``, ``kafka_offset`` and ``kafka_timestamp_ms``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.commands.batch.arrow_rows import column
from gateway.commands.batch.options import BatchInputError, TopicRange
from gateway.commands.batch.segments import InputInfo, Segment, first_duplicate, generated_index
from gateway.config import KafkaConfig
from gateway.kafka.client import InputRecord
from gateway.kafka.connection import client_options, topic_partitions
from gateway.kafka.source import decode_value
from gateway.stream.records import Rejected

FETCH_TIMEOUT_MS = 500
MAX_IDLE_FETCHES = 60  # empty fetches in a row (30 s) below the range's end: the read fails, it never truncates
COORDINATES = ("kafka_partition", "kafka_offset", "kafka_timestamp_ms")


def parse_bound(text: str, partitions: list[int]) -> dict[int, int | str | dt.datetime]:
    """A ``--start``/``--end`` value per partition: ``"earliest"``, ``"latest"``, an offset or a time."""
    word = text.strip()
    if word in ("earliest", "latest"):
        return dict.fromkeys(partitions, word)
    if word.lstrip("-").isdigit():
        return dict.fromkeys(partitions, int(word))
    if ":" in word and all(part.split(":")[0].strip().isdigit() for part in word.split(",")):
        try:
            given = {int(p): int(o) for p, o in (part.split(":") for part in word.split(","))}
        except ValueError:
            given = {}
        if given:
            unknown = sorted(set(given) - set(partitions))
            if unknown:
                raise BatchInputError(f"{text!r}: the topic has no partition {unknown[0]}")
            return {p: given.get(p, "earliest") for p in partitions}
    try:
        when = dt.datetime.fromisoformat(word)
    except ValueError:
        raise BatchInputError(f"{text!r} is not earliest, latest, an offset or an ISO-8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return dict.fromkeys(partitions, when)


def _stored_ranges(resolved: Mapping[str, object]) -> dict[int, tuple[int, int]]:
    """The ``[start, end)`` offsets per partition a resumed run kept in its state."""
    partitions = resolved.get("partitions", {})
    if not isinstance(partitions, dict):
        raise BatchInputError(f"the run state's topic offsets are unreadable ({partitions!r}): use --overwrite")
    ranges: dict[int, tuple[int, int]] = {}
    for partition, bounds in partitions.items():
        match bounds:
            case [int() as start, int() as end]:
                ranges[int(partition)] = (start, end)
            case _:
                raise BatchInputError(f"the run state's offsets of partition {partition} are unreadable "
                                      f"({bounds!r}): use --overwrite")
    return ranges


class TopicInput:
    def __init__(self, kafka: KafkaConfig, topic: str, bounds: TopicRange, *, index_column: str | None,
                 features: list[str] | None, resolved: Mapping[str, object] | None = None) -> None:
        self.kafka = kafka
        self.topic = topic
        self.bounds = bounds
        self.index_column = index_column
        self.features = features
        self.ranges = _stored_ranges(resolved or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._columns: list[str] = []

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**client_options(self.kafka), group_id=None, enable_auto_commit=False,
                                        auto_offset_reset="earliest", fetch_max_wait_ms=100)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def inspect(self) -> InputInfo:
        consumer = await self._open()
        if not self.ranges:
            await self._resolve(consumer)
        keys: dict[str, None] = {}
        index: list[object] = []
        rows = 0
        async for tp, records in self._records(consumer):
            for record in records:
                rows += 1
                doc = decode_value(record.value)
                if isinstance(doc, Rejected):
                    if self.index_column is not None:
                        raise BatchInputError(f"record {tp.partition}/{record.offset} of {self.topic} has no "
                                              f"index column {self.index_column!r}: {doc.reason}")
                    continue
                keys.update(dict.fromkeys(doc))
                if self.index_column is not None:
                    value = doc.get(self.index_column)
                    if value is None:
                        raise BatchInputError(f"record {tp.partition}/{record.offset} of {self.topic} has no "
                                              f"index column {self.index_column!r}")
                    index.append(value)
        duplicate = first_duplicate(index) if self.index_column is not None else None
        if duplicate is not None:
            value, first, second = duplicate
            raise BatchInputError(f"index column {self.index_column!r} repeats {value!r} (rows {first} and "
                                  f"{second} of the range); it must be unique")
        self._columns = list(keys)
        index_type = column(index).type if index else pa.int64()
        spans = ", ".join(f"{p}:[{s},{e})" for p, (s, e) in sorted(self.ranges.items()))
        return InputInfo(rows, self._columns, self.features, index_type, f"topic {self.topic} {spans}",
                         {"partitions": {str(p): list(r) for p, r in sorted(self.ranges.items())}})

    async def _resolve(self, consumer: AIOKafkaConsumer) -> None:
        found = await topic_partitions(consumer, self.topic)
        if not found:
            raise BatchInputError(f"topic {self.topic!r} does not exist (or has no partitions)")
        partitions = sorted(found)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        first = await consumer.beginning_offsets(tps)
        last = await consumer.end_offsets(tps)
        starts = parse_bound(self.bounds.start, partitions)
        ends = parse_bound(self.bounds.end, partitions)
        for tp in tps:
            begin, end = first[tp], await self._high_watermark(consumer, tp, first[tp], last[tp])
            start = await self._offset(consumer, tp, starts[tp.partition], begin, end)
            stop = await self._offset(consumer, tp, ends[tp.partition], begin, end)
            self.ranges[tp.partition] = (start, max(start, stop))

    async def _high_watermark(self, consumer: AIOKafkaConsumer, tp: TopicPartition, begin: int,
                              reported: int) -> int:
        """The partition's end as a fetch reports it: the embedded tansu broker's offset listing
        answers less than the end, its fetch responses the true high watermark."""
        consumer.assign([tp])
        consumer.seek(tp, max(begin, reported - 1))
        await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=1)
        high = consumer.highwater(tp)
        return max(reported, int(high)) if high is not None else reported

    async def _offset(self, consumer: AIOKafkaConsumer, tp: TopicPartition, bound: int | str | dt.datetime,
                      begin: int, end: int) -> int:
        if bound == "earliest":
            return begin
        if bound == "latest":
            return end
        if isinstance(bound, int):
            return min(max(bound, begin), end)
        assert isinstance(bound, dt.datetime)
        wanted = int(bound.timestamp() * 1000)
        answer = (await consumer.offsets_for_times({tp: wanted})).get(tp)
        if answer is None:
            return end
        record = await self._record_at(consumer, tp, answer.offset, end)
        if record is not None and record.timestamp >= wanted:
            return int(answer.offset)
        async for _, records in self._read(consumer, tp, begin, end):  # the broker's index is wrong: scan
            for record in records:
                if record.timestamp >= wanted:
                    return int(record.offset)
        return end

    async def _record_at(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int,
                         end: int) -> InputRecord | None:
        async for _, records in self._read(consumer, tp, offset, min(end, offset + 1)):
            return records[0] if records else None
        return None

    async def _records(self, consumer: AIOKafkaConsumer) -> AsyncIterator[tuple[TopicPartition, list[InputRecord]]]:
        for partition, (start, end) in sorted(self.ranges.items()):
            async for item in self._read(consumer, TopicPartition(self.topic, partition), start, end):
                yield item

    async def _read(self, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int,
                    end: int) -> AsyncIterator[tuple[TopicPartition, list[InputRecord]]]:
        if start >= end:
            return
        consumer.assign([tp])
        consumer.seek(tp, start)
        position, idle = start, 0
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=10000)
            records = batch.get(tp, [])
            if not records:
                idle += 1
                high = consumer.highwater(tp)  # from the fetch: offset listings may be wrong (tansu)
                if high is None:
                    high = (await consumer.end_offsets([tp]))[tp]
                if await consumer.position(tp) >= min(end, high):
                    return
                if idle >= MAX_IDLE_FETCHES:
                    raise BatchInputError(
                        f"topic {tp.topic} partition {tp.partition}: nothing could be read from offset {position} "
                        f"towards {end} for {idle * FETCH_TIMEOUT_MS / 1000:.0f} s")
                continue
            idle = 0
            position = records[-1].offset + 1
            yield tp, [r for r in records if start <= r.offset < end]

    async def segments(self, segment_rows: int, skip: set[int]) -> AsyncIterator[Segment]:
        consumer = await self._open()
        pending: list[tuple[int, InputRecord]] = []
        number = first = 0
        async for tp, records in self._records(consumer):
            pending.extend((tp.partition, record) for record in records)
            while len(pending) >= segment_rows:
                chunk, pending = pending[:segment_rows], pending[segment_rows:]
                if number not in skip:
                    yield self._segment(number, first, chunk)
                number, first = number + 1, first + segment_rows
        if pending and number not in skip:
            yield self._segment(number, first, pending)

    def _segment(self, number: int, first: int, chunk: list[tuple[int, InputRecord]]) -> Segment:
        docs = [decode_value(record.value) for _, record in chunk]
        rows: Sequence[dict[str, object] | Rejected] = docs
        plain = [d if isinstance(d, dict) else {} for d in docs]
        if self.index_column is not None and self.features is None:
            name = self.index_column
            rows = [d if isinstance(d, Rejected) else {k: v for k, v in d.items() if k != name} for d in docs]
        source = {"kafka_partition": pa.array([p for p, _ in chunk], pa.int32()),
                  "kafka_offset": pa.array([r.offset for _, r in chunk], pa.int64()),
                  "kafka_timestamp_ms": pa.array([r.timestamp for _, r in chunk], pa.int64())}
        for name in self._columns:
            if name not in source:
                source[name] = column([d.get(name) for d in plain])
        index = (column([d.get(self.index_column) for d in plain]) if self.index_column is not None
                 else generated_index(first, len(chunk)))
        return Segment(number, first, pa.table(source), rows, index)
