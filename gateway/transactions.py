"""Delivery exactly once (``delivery: exactly_once``): outputs and input offsets in one Kafka transaction.

Scoring is a pure function of the input, so a repeated HTTP call is harmless; what must not repeat
is the output. Each input partition gets a transactional producer of its own, and every
``transaction_interval_ms`` the outputs of that partition's records go out with the offsets they
complete, atomically: a consumer reading with ``isolation_level=read_committed`` sees each input
record's outputs exactly once, whatever crashes, restarts or rebalances happen.

The protocol for one partition, as :meth:`_Partition.commit` runs it:
    1. the offset tracker says how far the records are done without a gap (batches finish out of
       order; a record is done when its outputs are built, not yet sent);
    2. begin a transaction; send the outputs of that contiguous prefix, in offset order, and wait
       for the broker's acks;
    3. add the offset after the prefix to the transaction (``send_offsets_to_transaction``);
    4. commit the transaction. Only now are the outputs visible to ``read_committed`` readers and
       the input offsets committed; the records leave the in-flight count.
Any failure in 2-4 aborts the transaction; the outputs stay held and go out with the next one.
What waits for a transaction counts against ``max_in_flight_records`` (the pipeline releases a
batch only when its outputs are committed), so holding is bounded.

Fencing: the transactional id is ``<group_id>.<pipeline>.<topic>.<partition>``. A producer with that
id starts (``InitProducerId``) when the partition is assigned here, which fences any earlier
producer with the same id: a member that lost the partition, say a process paused past its session
timeout, cannot commit outputs for it afterwards (its next commit fails as fenced, the held outputs
are dropped, the partition is no longer read here, and the rebalance under way hands this member
its new assignment, with new producers). One id per input partition, not per process,
because aiokafka's ``send_offsets_to_transaction`` carries no consumer group generation (KIP-447),
so only the transactional id can tell an old owner from the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from gateway.config import KafkaConfig
from gateway.delivery import commit_rounds, report_lag
from gateway.kafka import producer_options
from gateway.metrics import PipelineMetrics
from gateway.offsets import OffsetTracker
from gateway.outputs import Published
from gateway.records import InputRecord
from gateway.sink import KafkaSink, Message
from gateway.source import KafkaSource

log = logging.getLogger("gateway.transactions")


# Right after a commit the coordinator is still writing the transaction markers, and the next
# transaction's first step is refused with CONCURRENT_TRANSACTIONS until it is done (KAFKA-5477).
# aiokafka then waits retry_backoff_ms (100 ms by default) before asking again: once per round,
# that wait was most of a transaction's time. The markers take milliseconds; ask again sooner.
TRANSACTION_RETRY_BACKOFF_MS = 10


class TransactionsUnsupported(RuntimeError):
    """The broker cannot run Kafka transactions (``delivery: exactly_once`` needs them)."""


@dataclass(slots=True)
class _Waiter:
    """A batch waiting until its outputs are committed in every partition it has records in."""

    partitions: int
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def partition_done(self, committed: bool) -> None:
        self.partitions -= 1
        if (self.partitions <= 0 or not committed) and not self.done.done():
            self.done.set_result(committed)


class _Partition:
    """One input partition's transactional producer and the outputs it holds."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.producer: AIOKafkaProducer | None = None  # None until started: outputs are held meanwhile
        self.sink: KafkaSink | None = None
        self.held: dict[int, list[Message]] = {}  # input offset -> its outputs
        self.waiters: list[tuple[int, _Waiter]] = []  # (highest offset of the batch here, waiter)
        self.fenced = False

    async def commit(self, upto: int, group_id: str) -> int:
        """Steps 2-4 for the held records below ``upto``; returns how many were committed."""
        producer, sink = self.producer, self.sink
        assert producer is not None and sink is not None
        offsets = sorted(offset for offset in self.held if offset < upto)
        messages = [message for offset in offsets for message in self.held[offset]]
        async with producer.transaction():
            if messages:
                await sink.publish(messages, retry=False)
            await producer.send_offsets_to_transaction({self.tp: upto}, group_id)
        for offset in offsets:
            del self.held[offset]
        self._release(upto, committed=True)
        return len(offsets)

    def _release(self, upto: int | None, *, committed: bool) -> None:
        """Waiters whose records here are all below ``upto`` (every waiter when None) are done."""
        keep = []
        for highest, waiter in self.waiters:
            if upto is None or highest < upto:
                waiter.partition_done(committed)
            else:
                keep.append((highest, waiter))
        self.waiters = keep

    def abandon(self) -> None:
        """Fenced or revoked: nothing held here will be committed by this member."""
        self.held.clear()
        self._release(None, committed=False)


class ExactlyOnceDelivery:
    def __init__(self, *, pipeline: str, kafka: KafkaConfig, source: KafkaSource, tracker: OffsetTracker,
                 metrics: PipelineMetrics, interval_s: float) -> None:
        self.pipeline = pipeline
        self.kafka = kafka
        self.source = source
        self.tracker = tracker
        self.metrics = metrics
        self.interval_s = interval_s
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._lock = asyncio.Lock()  # one commit round at a time
        self._held = 0

    # ---- assignment: one transactional producer per input partition -----------------------------

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.kafka.group_id}.{self.pipeline}.{tp.topic}.{tp.partition}"

    async def check(self) -> None:
        """At start-up: can this broker run transactions at all? (One clear error, not a stall later.)"""
        await (await self._start(TopicPartition(f"{self.pipeline}.start-up-check", 0))).stop()

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Every assigned partition is known at once, so outputs of its records are held even while
        its producer starts (records may be fetched before the start finishes)."""
        new = [tp for tp in tps if tp not in self._partitions]
        for tp in new:
            self._partitions[tp] = _Partition(tp)
        producers = await asyncio.gather(*(self._start(tp) for tp in new), return_exceptions=True)
        failure = next((p for p in producers if isinstance(p, BaseException)), None)
        for tp, producer in zip(new, producers, strict=True):
            if isinstance(producer, BaseException):
                continue
            partition = self._partitions.get(tp)
            if partition is None:  # revoked while starting
                await producer.stop()
            else:
                partition.producer, partition.sink = producer, KafkaSink(producer)
        if failure is not None:
            raise failure

    async def _start(self, tp: TopicPartition) -> AIOKafkaProducer:
        options = producer_options(self.kafka)
        options.update(transactional_id=self.transactional_id(tp), enable_idempotence=True,
                       retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS)
        producer = AIOKafkaProducer(**options)
        try:
            await producer.start()  # InitProducerId: fences every earlier producer with this id
        except KafkaError as exc:
            await producer.stop()
            raise TransactionsUnsupported(
                f"pipeline {self.pipeline!r}: delivery exactly_once needs a broker with Kafka transactions "
                f"(the transactional producer for {tp.topic}/{tp.partition} could not start: {exc!r})") from None
        return producer

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """After the drain and the last commit round: stop the revoked partitions' producers."""
        for tp in tps:
            partition = self._partitions.pop(tp, None)
            if partition is not None:
                self._held -= len(partition.held)
                partition.abandon()
                if partition.producer is not None:
                    with contextlib.suppress(KafkaError):
                        await partition.producer.stop()
        self.metrics.transaction_held(self._held)

    async def close(self) -> None:
        await self.revoked(list(self._partitions))

    # ---- the pipeline's side ---------------------------------------------------------------------

    async def publish(self, published: Published, records: Sequence[InputRecord]) -> None:
        """Step 1: hold the outputs by input record, and wait until they are committed."""
        per_partition: dict[TopicPartition, int] = {}
        messages, owners, partitions = published.messages, published.owners, self._partitions
        for message, owner in zip(messages, owners, strict=True):
            record = records[owner]
            partition = partitions.get(TopicPartition(record.topic, record.partition))
            if partition is not None:  # else revoked meanwhile: the new owner produces these
                partition.held.setdefault(record.offset, []).append(message)
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp not in partitions:
                continue  # never acknowledged, so never committed here
            highest = per_partition.get(tp)
            if highest is None or record.offset > highest:
                per_partition[tp] = record.offset
            self.tracker.ack(tp, (record.offset,))
            self._held += 1
        self.metrics.transaction_held(self._held)
        waiter = _Waiter(len(per_partition))
        for tp, highest in per_partition.items():
            partitions[tp].waiters.append((highest, waiter))
        if per_partition:
            await waiter.done

    def acknowledge(self, records: Iterable[InputRecord]) -> None:
        """Done in :meth:`publish`: the offsets are committed with the outputs, not after them."""

    async def run(self, stop: asyncio.Event) -> None:
        await commit_rounds(stop, self.interval_s, self.commit, self._report_lag)

    async def commit(self) -> None:
        """One round: a transaction for every partition with a contiguous done prefix."""
        async with self._lock:
            due = self.tracker.committable()
            await asyncio.gather(*(self._commit_partition(tp, upto) for tp, upto in due.items()
                                   if tp in self._partitions and self._partitions[tp].producer is not None))

    async def _commit_partition(self, tp: Any, upto: int) -> None:
        partition = self._partitions[tp]
        started = time.monotonic()
        try:
            committed = await partition.commit(upto, self.kafka.group_id)
        except ProducerFenced:
            log.warning("transaction_fenced", extra={"pipeline": self.pipeline, "partition": tp.partition})
            self.metrics.transaction("aborted", time.monotonic() - started)
            self._held -= len(partition.held)
            partition.abandon()
            self.tracker.forget([tp])
            self._partitions.pop(tp, None)
            # Another member owns it now; the rebalance that tells this one is under way. Until
            # then nothing more is read from it here (a new producer would fence the new owner).
            self.source.pause_partition(tp)
            if partition.producer is not None:
                with contextlib.suppress(KafkaError):
                    await partition.producer.stop()
            return
        except KafkaError as exc:
            log.warning("transaction_aborted", extra={"pipeline": self.pipeline, "partition": tp.partition,
                                                      "error": repr(exc)})
            self.metrics.transaction("aborted", time.monotonic() - started)
            return  # held: the next round tries again
        self.tracker.committed({tp: upto})
        self.source.note_committed({tp: upto})
        self._held -= committed
        self.metrics.transaction("committed", time.monotonic() - started)
        self.metrics.transaction_held(self._held)

    async def _report_lag(self) -> None:
        await report_lag(self.source, self.metrics)
