"""Delivery exactly once (``delivery: exactly_once``): outputs and input offsets in one Kafka transaction.

Scoring is a pure function of the input, so a repeated HTTP call is harmless; what must not repeat
is the output. Each input partition gets a transactional producer of its own; its records' outputs
go out inside that producer's open transaction, and every ``transaction_interval_ms`` the
transaction is committed together with the input offset its outputs complete, atomically: a
consumer reading with ``isolation_level=read_committed`` sees each input record's outputs exactly
once, whatever crashes, restarts or rebalances happen.

How one partition's outputs reach its transaction is :mod:`gateway.delivery.partition_transaction`; every
``transaction_interval_ms`` a round commits each partition with a contiguous done prefix. What
waits for a commit counts against ``max_in_flight_records`` (the pipeline releases a batch only
when its outputs are committed), so holding is bounded.

Outputs of one partition are sent in offset order, so same-key records (a key lives in one input
partition) are published in input order without the cross-batch wait of ``ordering: key``.

Fencing: the transactional id is ``<group_id>.<pipeline>.<topic>.<partition>``. A producer with that
id starts (``InitProducerId``) when the partition is assigned here, which fences any earlier
producer with the same id and aborts its open transaction: a member that lost the partition, say a
process paused past its session timeout, cannot commit outputs for it afterwards (its next send or
commit fails as fenced, the held outputs are dropped, the partition is no longer read here, and the
rebalance under way hands this member its new assignment, with new producers). One id per input
partition, not per process, because aiokafka's ``send_offsets_to_transaction`` carries no consumer
group generation (KIP-447), so only the transactional id can tell an old owner from the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced

from gateway.config import KafkaConfig
from gateway.delivery.at_least_once import commit_rounds, report_lag
from gateway.delivery.offsets import OffsetTracker
from gateway.delivery.partition_transaction import PartitionTransaction, Waiter
from gateway.kafka.connection import producer_options
from gateway.kafka.sink import KafkaSink
from gateway.kafka.source import KafkaSource
from gateway.runtime.metrics import PipelineMetrics
from gateway.stream.outputs import Published
from gateway.stream.records import InputRecord

log = logging.getLogger(__name__)


# Right after a commit the coordinator is still writing the transaction markers, and the next
# transaction's first step is refused with CONCURRENT_TRANSACTIONS until it is done (KAFKA-5477).
# aiokafka then waits retry_backoff_ms (100 ms by default) before asking again: once per round,
# that wait was most of a transaction's time. The markers take milliseconds; ask again sooner.
TRANSACTION_RETRY_BACKOFF_MS = 10
STOP_TIMEOUT_S = 5.0


class TransactionsUnsupported(RuntimeError):
    """The broker cannot run Kafka transactions (``delivery: exactly_once`` needs them)."""


class ExactlyOnceDelivery:
    def __init__(self, *, pipeline: str, kafka: KafkaConfig, source: KafkaSource, tracker: OffsetTracker,
                 metrics: PipelineMetrics, interval_s: float) -> None:
        self.pipeline = pipeline
        self.kafka = kafka
        self.source = source
        self.tracker = tracker
        self.metrics = metrics
        self.interval_s = interval_s
        self._partitions: dict[TopicPartition, PartitionTransaction] = {}
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
            self._partitions[tp] = PartitionTransaction(tp, self.kafka.group_id, partial(self.tracker.done_below, tp))
        producers = await asyncio.gather(*(self._start(tp) for tp in new), return_exceptions=True)
        failure = next((p for p in producers if isinstance(p, BaseException)), None)
        for tp, producer in zip(new, producers, strict=True):
            if isinstance(producer, BaseException):
                continue
            partition = self._partitions.get(tp)
            if partition is None:  # revoked while starting
                await _stop_producer(producer)
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
        """After the drain and the last commit round: abort what is still open, stop the producers."""
        async with self._lock:  # not under a round's feet
            for tp in tps:
                partition = self._partitions.pop(tp, None)
                if partition is not None:
                    await self._stop(partition)
        self.metrics.transaction_held(self._held)

    async def _stop(self, partition: PartitionTransaction) -> None:
        """Bounded: a broker that does not answer must not hold up a shutdown or a rebalance (an
        open transaction it could not abort is aborted by the next owner's producer, or times out)."""
        with contextlib.suppress(KafkaError, IllegalOperation, AssertionError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await partition.abort()  # else its output partitions stay unreadable until then
        self._held -= partition.abandon()
        await _stop_producer(partition.producer)

    async def close(self) -> None:
        await self.revoked(list(self._partitions))

    # ---- the pipeline's side ---------------------------------------------------------------------

    async def publish(self, published: Published, records: Sequence[InputRecord]) -> None:
        """Steps 1-2: hold the outputs by input record, send what became a contiguous prefix, and
        wait until they are committed."""
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
        waiter = Waiter(len(per_partition))
        for tp, highest in per_partition.items():
            partitions[tp].waiters.append((highest, waiter))
        if not per_partition:
            return
        for tp in per_partition:
            await partitions[tp].send_finished()
        if published.trace is not None:
            published.trace.committing()
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
        partition = self._partitions.get(tp)
        if partition is None:  # revoked or fenced since the round began
            return
        started = time.monotonic()
        try:
            committed = await partition.commit(upto)
        except ProducerFenced:
            self.metrics.transaction("aborted", time.monotonic() - started)
            await self._fenced(partition)
            return
        except (KafkaError, IllegalOperation) as exc:
            log.warning("transaction_aborted", extra={"pipeline": self.pipeline, "partition": tp.partition,
                                                      "error": repr(exc)})
            self.metrics.transaction("aborted", time.monotonic() - started)
            await self._abort(partition)
            return  # held: the next round tries again
        self.tracker.committed({tp: upto})
        self.source.note_committed({tp: upto})
        self._held -= committed
        self.metrics.transaction("committed", time.monotonic() - started)
        self.metrics.transaction_held(self._held)

    async def _abort(self, partition: PartitionTransaction) -> None:
        try:
            await partition.abort()
        except ProducerFenced:
            await self._fenced(partition)
        except (KafkaError, IllegalOperation, AssertionError) as exc:
            # The producer is beyond aborting (a fatal error): a new one with the same id takes
            # over, fencing this one, and the held outputs go out with its first transaction.
            log.warning("transactional_producer_restarted", extra={
                "pipeline": self.pipeline, "partition": partition.tp.partition, "error": repr(exc)})
            old, partition.producer, partition.sink = partition.producer, None, None
            await _stop_producer(old)
            producer = await self._start(partition.tp)
            partition.producer, partition.sink = producer, KafkaSink(producer)

    async def _fenced(self, partition: PartitionTransaction) -> None:
        tp = partition.tp
        log.warning("transaction_fenced", extra={"pipeline": self.pipeline, "partition": tp.partition})
        self._held -= partition.abandon()
        self.tracker.forget([tp])
        self._partitions.pop(tp, None)
        # Another member owns it now; the rebalance that tells this one is under way. Until
        # then nothing more is read from it here (a new producer would fence the new owner).
        self.source.pause_partition(tp)
        await _stop_producer(partition.producer)
        self.metrics.transaction_held(self._held)

    async def _report_lag(self) -> None:
        await report_lag(self.source, self.metrics)


async def _stop_producer(producer: AIOKafkaProducer | None) -> None:
    """Bounded, and quiet about a broker that is gone: the producer is finished with either way."""
    if producer is not None:
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await producer.stop()
