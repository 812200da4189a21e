"""The seam's implementation with aiokafka: the only module of the pipeline's path that imports it.

Each client holds the aiokafka object and passes its data through: fetched records and producer
batches are aiokafka's own, and the partitions it hands back are named tuples equal to
:class:`~gateway.kafka.client.TopicPartition`. Partitions going in are converted (aiokafka checks
their type), once per call, never per record. aiokafka's failures become the seam's:
``BrokerRequestError``, ``ProducerFencedError``; a failed start is diagnosed by
``gateway.kafka.connection.start_client``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as NativePartition
from aiokafka import errors as kafka_errors
from aiokafka.structs import OffsetAndMetadata

from gateway.config import KafkaConfig
from gateway.kafka.client import (
    BrokerRequestError,
    InputRecord,
    PartitionsCallback,
    ProducerBatch,
    ProducerFencedError,
    TopicPartition,
)
from gateway.kafka.connection import consumer_options, producer_options, start_client

# Right after a commit the coordinator is still writing the transaction markers, and the next
# transaction's first step is refused with CONCURRENT_TRANSACTIONS until it is done (KAFKA-5477).
# aiokafka then waits retry_backoff_ms (100 ms by default) before asking again: once per round,
# that wait was most of a transaction's time. The markers take milliseconds; ask again sooner.
TRANSACTION_RETRY_BACKOFF_MS = 10

# aiokafka's own failures of a request; IllegalOperation (a transaction step out of turn, as after
# a failed one) is not a KafkaError there, but calls for the same remedy: abort and redo.
_REQUEST_ERRORS = (kafka_errors.KafkaError, kafka_errors.IllegalOperation)
# aiokafka's transaction manager refuses a step out of turn with an AssertionError (an invalid state
# transition): for a transactional producer that is one more failed step, to abort or restart.
_TRANSACTION_ERRORS = (*_REQUEST_ERRORS, AssertionError)


def _failure(exc: BaseException) -> BrokerRequestError:
    """aiokafka's exception as the seam's, keeping aiokafka's name and text for the logs."""
    kind = ProducerFencedError if isinstance(exc, kafka_errors.ProducerFenced) else BrokerRequestError
    return kind(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _native(tp: TopicPartition) -> Any:  # Any: aiokafka's TopicPartition is untyped
    return NativePartition(tp.topic, tp.partition)


class AiokafkaClients:
    """:class:`~gateway.kafka.client.KafkaClients` from the ``kafka`` settings."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self._kafka = kafka

    def consumer(self, *, read_committed: bool) -> AiokafkaConsumer:
        options = consumer_options(self._kafka)
        options["isolation_level"] = "read_committed" if read_committed else "read_uncommitted"
        return AiokafkaConsumer(self._kafka, AIOKafkaConsumer(**options))

    def producer(self) -> AiokafkaProducer:
        return AiokafkaProducer(self._kafka, AIOKafkaProducer(**producer_options(self._kafka)))

    def transactional_producer(self, transactional_id: str) -> AiokafkaTransactionalProducer:
        options = producer_options(self._kafka)
        options.update(transactional_id=transactional_id, enable_idempotence=True,
                       retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS)
        return AiokafkaTransactionalProducer(self._kafka, AIOKafkaProducer(**options))


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's listener calling two coroutines; aiokafka awaits them inside the rebalance."""

    def __init__(self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._on_assigned(set(assigned))


class AiokafkaConsumer:
    """:class:`~gateway.kafka.client.Consumer` over an ``AIOKafkaConsumer`` with manual commits."""

    def __init__(self, kafka: KafkaConfig, consumer: AIOKafkaConsumer) -> None:
        self._kafka = kafka
        self._consumer = consumer

    async def start(self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self._consumer.subscribe([topic], listener=RebalanceListener(on_revoked, on_assigned))
        await start_client(self._consumer.start(), self._kafka)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def fetch(self, timeout_s: float, max_records: int) -> Mapping[TopicPartition, Sequence[InputRecord]]:
        found: Mapping[TopicPartition, Sequence[InputRecord]] = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return found

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._consumer.pause(*map(_native, partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._consumer.resume(*map(_native, partitions))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(_native(tp), offset)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit({_native(tp): OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        except _REQUEST_ERRORS as exc:
            raise _failure(exc) from exc

    def partitions_for(self, topic: str) -> set[int] | None:
        found = self._consumer.partitions_for_topic(topic)
        return None if found is None else set(found)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            found = await self._consumer.end_offsets([_native(tp) for tp in partitions])
        except (*_REQUEST_ERRORS, ValueError) as exc:  # ValueError: a partition no longer assigned
            raise _failure(exc) from exc
        return {tp: int(offset) for tp, offset in found.items()}

    async def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            found = await self._consumer.beginning_offsets([_native(tp) for tp in partitions])
        except (*_REQUEST_ERRORS, ValueError) as exc:
            raise _failure(exc) from exc
        return {tp: int(offset) for tp, offset in found.items()}

    async def committed(self, tp: TopicPartition) -> int | None:
        try:
            found = await self._consumer.committed(_native(tp))
        except (*_REQUEST_ERRORS, ValueError) as exc:
            raise _failure(exc) from exc
        return None if found is None else int(found)

    def highwater(self, tp: TopicPartition) -> int | None:
        found = self._consumer.highwater(_native(tp))
        return None if found is None else int(found)


class AiokafkaProducer:
    """:class:`~gateway.kafka.client.Producer` over an ``AIOKafkaProducer``, batch API.

    Batches for one partition are handed to aiokafka one at a time. aiokafka queues at most one
    batch per partition and makes every other ``send_batch`` wait for it, deducting the *total* time
    waited so far from its timeout on every wake-up (aiokafka 0.14 ``MessageAccumulator.add_batch``):
    with a few dozen concurrent batches for one partition, waiters fail with ``KafkaTimeoutError``
    within a second, and the retry duplicates outputs of a healthy run. Waiting our turn on a lock
    keeps a single waiter inside the producer, which then waits for one drain at most.
    """

    def __init__(self, kafka: KafkaConfig, producer: AIOKafkaProducer) -> None:
        self._kafka = kafka
        self._producer = producer
        self._turns: dict[tuple[str, int], asyncio.Lock] = {}

    async def start(self) -> None:
        await start_client(self._producer.start(), self._kafka)

    async def stop(self) -> None:
        try:
            await self._producer.stop()
        except _REQUEST_ERRORS as exc:
            raise _failure(exc) from exc

    async def partitions_for(self, topic: str) -> set[int]:
        try:
            found = await self._producer.partitions_for(topic)
        except _REQUEST_ERRORS as exc:
            raise _failure(exc) from exc
        return set(found)

    def create_batch(self) -> ProducerBatch:
        batch: ProducerBatch = self._producer.create_batch()
        return batch

    async def send(self, batch: ProducerBatch, topic: str, partition: int) -> None:
        target = (topic, partition)
        lock = self._turns.get(target)
        if lock is None:
            lock = self._turns[target] = asyncio.Lock()
        try:
            async with lock:  # one waiter per partition inside the producer (see the class docstring)
                acknowledged = await self._producer.send_batch(batch, topic, partition=partition)
            await acknowledged
        except _REQUEST_ERRORS as exc:
            raise _failure(exc) from exc


class AiokafkaTransactionalProducer(AiokafkaProducer):
    """:class:`~gateway.kafka.client.TransactionalProducer`: the same, with a transactional id."""

    async def start(self) -> None:
        """``InitProducerId``: fences every earlier producer with this id. A broker that refuses
        is the caller's to explain (it knows what needed transactions), so no diagnosis here."""
        try:
            await self._producer.start()
        except _TRANSACTION_ERRORS as exc:
            raise _failure(exc) from exc

    async def begin_transaction(self) -> None:
        try:
            await self._producer.begin_transaction()
        except _TRANSACTION_ERRORS as exc:
            raise _failure(exc) from exc

    async def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        try:
            await self._producer.send_offsets_to_transaction(
                {_native(tp): offset for tp, offset in offsets.items()}, group_id)
        except _TRANSACTION_ERRORS as exc:
            raise _failure(exc) from exc

    async def commit_transaction(self) -> None:
        try:
            await self._producer.commit_transaction()
        except _TRANSACTION_ERRORS as exc:
            raise _failure(exc) from exc

    async def abort_transaction(self) -> None:
        try:
            await self._producer.abort_transaction()
        except _TRANSACTION_ERRORS as exc:
            raise _failure(exc) from exc
