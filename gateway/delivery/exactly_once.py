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

The contract (``gateway.delivery.contract``): ``publish`` holds a batch's outputs by input offset
(placed: each partition's outputs go out in offset order); ``settle`` acknowledges the records,
which grows the done prefix, and returns once their transactions committed (delivered) or their
partitions were revoked or fenced (abandoned: dropped, and not counted as published).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from functools import partial

from gateway.delivery.at_least_once import commit_rounds, report_lag
from gateway.delivery.contract import NOTHING_ABANDONED
from gateway.delivery.offsets import OffsetTracker, offsets_by_partition
from gateway.delivery.partition_transaction import PartitionTransaction, Phase, Waiter
from gateway.errors import KafkaError
from gateway.kafka.client import (
    BrokerRequestError,
    InputRecord,
    KafkaClients,
    ProducerFencedError,
    TopicPartition,
    TransactionalProducer,
)
from gateway.kafka.source import KafkaSource
from gateway.runtime.metrics import PipelineMetrics
from gateway.stream.outputs import Published

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class TransactionsUnsupported(KafkaError):
    """The broker cannot run Kafka transactions (``delivery: exactly_once`` needs them)."""


class ExactlyOnceDelivery:
    def __init__(self, *, pipeline: str, group_id: str, clients: KafkaClients, source: KafkaSource,
                 tracker: OffsetTracker, metrics: PipelineMetrics, interval_s: float) -> None:
        self.pipeline = pipeline
        self.group_id = group_id
        self.clients = clients
        self.source = source
        self.tracker = tracker
        self.metrics = metrics
        self.interval_s = interval_s
        self._partitions: dict[TopicPartition, PartitionTransaction] = {}
        self._lock = asyncio.Lock()  # one commit round at a time
        self._held = 0

    # ---- assignment: one transactional producer per input partition -----------------------------

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.group_id}.{self.pipeline}.{tp.topic}.{tp.partition}"

    async def start(self) -> None:
        """At start-up: can this broker run transactions at all? (One clear error, not a stall later.)"""
        await _stop_producer(await self._start(TopicPartition(f"{self.pipeline}.start-up-check", 0)))

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Every assigned partition is known at once, so outputs of its records are held even while
        its producer starts (records may be fetched before the start finishes; the pipeline holds
        their fetching until this returns). Once the producers started, reading starts at the
        offsets the group committed, final by then (:meth:`KafkaSource.seek_to_committed`)."""
        tps = set(tps)
        new = [tp for tp in tps if tp not in self._partitions]
        for tp in new:
            self._partitions[tp] = PartitionTransaction(tp, self.group_id, partial(self.tracker.done_below, tp))
        producers = await asyncio.gather(*(self._start(tp) for tp in new), return_exceptions=True)
        failure = next((p for p in producers if isinstance(p, BaseException)), None)
        for tp, producer in zip(new, producers, strict=True):
            if isinstance(producer, BaseException):
                continue
            partition = self._partitions.get(tp)
            if partition is None:  # revoked while starting
                await _stop_producer(producer)
            else:
                partition.started(producer)
        if failure is not None:
            raise failure
        found = await self.source.seek_to_committed(tps)
        for tp in new:  # what a restart compares with (see _restart)
            partition = self._partitions.get(tp)
            if partition is not None:
                partition.committed = found[tp]

    async def _start(self, tp: TopicPartition) -> TransactionalProducer:
        producer = self.clients.transactional_producer(self.transactional_id(tp))
        try:
            await producer.start()  # InitProducerId: fences every earlier producer with this id
        except BrokerRequestError as exc:
            await _stop_producer(producer)
            raise TransactionsUnsupported(
                f"pipeline {self.pipeline!r}: delivery exactly_once needs a broker with Kafka transactions "
                f"(the transactional producer for {tp.topic}/{tp.partition} could not start: {exc})") from None
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
        with contextlib.suppress(BrokerRequestError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await partition.abort()  # else its output partitions stay unreadable until then
        self._held -= partition.abandon()
        await _stop_producer(partition.producer)

    async def close(self) -> None:
        await self.revoked(list(self._partitions))

    # ---- the pipeline's side ---------------------------------------------------------------------

    async def publish(self, published: Published, records: Sequence[InputRecord]) -> None:
        """Hold the outputs by input record, in the partition's transaction-to-be (placed: a
        partition's outputs go out in offset order). A partition revoked or fenced meanwhile is
        not held for: its new owner produces these."""
        messages, owners, partitions = published.messages, published.owners, self._partitions
        added = 0
        for message, owner in zip(messages, owners, strict=True):
            record = records[owner]
            partition = partitions.get(TopicPartition(record.topic, record.partition))
            if partition is None:
                continue
            outputs = partition.held.get(record.offset)
            if outputs is None:
                partition.held[record.offset] = [message]
                added += 1
            else:
                outputs.append(message)
        if added:
            self._held += added
            self.metrics.transaction_held(self._held)

    async def settle(self, records: Sequence[InputRecord]) -> frozenset[TopicPartition]:
        """The records' outputs are all held: acknowledge them (the done prefix grows), send what it
        allows, and wait until every partition committed them, or abandoned them."""
        partitions = self._partitions
        highest: dict[TopicPartition, int] = {}
        gone: list[TopicPartition] = []
        for tp, offsets in offsets_by_partition(records).items():
            if tp in partitions and self.tracker.ack(tp, offsets):
                highest[tp] = max(offsets)
            else:
                gone.append(tp)
        if not highest:
            return frozenset(gone)
        waiter = Waiter(len(highest))
        for tp, top in highest.items():
            partitions[tp].waiters.append((top, waiter))
        for tp in highest:
            partition = partitions.get(tp)
            if partition is not None:
                await partition.send_finished()
        await waiter.done
        if gone or waiter.abandoned:
            return frozenset(gone).union(waiter.abandoned)
        return NOTHING_ABANDONED

    async def run(self, stop: asyncio.Event) -> None:
        await commit_rounds(stop, self.interval_s, self.commit, self._report_lag)

    async def commit(self) -> None:
        """One round: a transaction for every partition with a contiguous done prefix."""
        async with self._lock:
            due = {tp: upto for tp, upto in self.tracker.committable().items()
                   if tp in self._partitions and self._partitions[tp].phase is not Phase.STARTING}
            for tp in due:
                self._partitions[tp].seal()  # before any await: nothing done after ``upto`` slips in
            await asyncio.gather(*(self._commit_partition(tp, upto) for tp, upto in due.items()))

    async def _commit_partition(self, tp: TopicPartition, upto: int) -> None:
        partition = self._partitions.get(tp)
        if partition is None:  # revoked or fenced since the round began
            return
        started = time.monotonic()
        try:
            committed = await partition.commit(upto)
        except ProducerFencedError:
            self.metrics.transaction("aborted", time.monotonic() - started)
            await self._fenced(partition)
            return
        except BrokerRequestError as exc:
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
        except ProducerFencedError:
            await self._fenced(partition)
        except BrokerRequestError as exc:
            await self._restart(partition, exc)

    async def _restart(self, partition: PartitionTransaction, exc: BrokerRequestError) -> None:
        """The producer is beyond aborting (a fatal error): a new one with the same id takes over,
        fencing it, and the held outputs go out with its first transaction. Unless the group's
        offset moved since this member last committed: then another member owns the partition (this
        one was paused past its session, say, and its abort met the new owner's fencing), and the
        new producer, which fenced that owner too, is stopped; the rebalance under way settles who
        reads the partition, from the offset committed."""
        tp = partition.tp
        producer = await self._start(tp)
        try:
            ours = await self.source.group_committed(tp) == partition.committed
        except (BrokerRequestError, TimeoutError):
            ours = False  # cannot tell: do not send what another owner may have sent
        if not ours:
            await _stop_producer(producer)
            await self._fenced(partition)
            return
        log.warning("transactional_producer_restarted", extra={
            "pipeline": self.pipeline, "partition": tp.partition, "error": repr(exc)})
        await _stop_producer(partition.replace())
        partition.started(producer)

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


async def _stop_producer(producer: TransactionalProducer | None) -> None:
    """Bounded, and quiet about a broker that is gone: the producer is finished with either way."""
    if producer is not None:
        with contextlib.suppress(BrokerRequestError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await producer.stop()
