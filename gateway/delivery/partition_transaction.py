"""One input partition's side of ``delivery: exactly_once``: its transactional producer, the open
transaction and the outputs waiting for it (``gateway.delivery.exactly_once`` runs one per partition).

The protocol:
    1. batches finish out of order; a finished batch's outputs are held by input offset, and the
       offset tracker says how far the partition is done without a gap;
    2. that contiguous prefix is sent at once into the open transaction (begun by the first such
       send, which also adds the consumer group to it), in offset order, so the broker already has
       it when the commit comes. One send at a time: what finishes during a send goes with the
       next (the client has one produce request per broker in flight, so a send per batch would
       only queue);
    3. the commit seals the partition (what finishes meanwhile waits for the next transaction),
       sends what is left of the prefix, waits for the acks, adds the offset after the prefix
       (``send_offsets_to_transaction``) and commits. Only now are the outputs visible to
       ``read_committed`` readers and the input offsets committed.
A failed send or commit aborts the transaction; its outputs are held again and go out with the
next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced

from gateway.kafka.sink import KafkaSink, Message


@dataclass(slots=True)
class Waiter:
    """A batch waiting until its outputs are committed in every partition it has records in."""

    partitions: int
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def partition_done(self, committed: bool) -> None:
        self.partitions -= 1
        if (self.partitions <= 0 or not committed) and not self.done.done():
            self.done.set_result(committed)


class PartitionTransaction:
    """One input partition's transactional producer, its open transaction and the outputs it holds."""

    def __init__(self, tp: TopicPartition, group_id: str, done_below: Callable[[], int | None]) -> None:
        self.tp = tp
        self.group_id = group_id
        self.done_below = done_below  # the offset tracker's contiguous done prefix of this partition
        self.producer: AIOKafkaProducer | None = None  # None until started: outputs are held meanwhile
        self.sink: KafkaSink | None = None
        self.held: dict[int, list[Message]] = {}  # input offset -> its outputs, not sent yet
        self.sent: list[tuple[int, list[Message]]] = []  # in the open transaction: held again on abort
        self.waiters: list[tuple[int, Waiter]] = []  # (highest offset of the batch here, waiter)
        self.open = False  # a transaction is begun
        self.sealed = False  # a round is committing: what finishes now waits for the next transaction
        self.failure: Exception | None = None  # a step of the open transaction failed: abort it
        self._group_added: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # no send under way
        self._idle.set()

    async def send_finished(self, limit: int | None = None) -> None:
        """Step 2: send the held outputs of the done prefix into the open transaction, beginning one.

        One send at a time: what finishes while a send is under way goes out with the next one, which
        the same call makes (the client has one produce request per broker in flight anyway, so a send
        per batch would only queue). ``limit`` (the round's offset) bounds what a sealed round sends."""
        if not self._idle.is_set():
            return  # the send under way picks these up
        self._idle.clear()
        try:
            while self.failure is None and (limit is not None or not self.sealed):
                chunk = self._take(limit if limit is not None else self.done_below())
                if not chunk:
                    return
                await self._send(chunk)
                if limit is not None:
                    return
        except (KafkaError, IllegalOperation) as exc:
            self.failure = self.failure or exc
        except BaseException:
            # Cancelled with a send under way: whether it reached the broker is unknown, so this
            # transaction must not commit.
            self.failure = self.failure or KafkaError("a send of the open transaction was cancelled")
            raise
        finally:
            self._idle.set()

    def _take(self, upto: int | None) -> list[tuple[int, list[Message]]]:
        if upto is None or self.producer is None:
            return []
        held = self.held
        chunk = [(offset, held.pop(offset)) for offset in sorted(o for o in held if o < upto)]
        self.sent.extend(chunk)
        return chunk

    async def _send(self, chunk: list[tuple[int, list[Message]]]) -> None:
        producer, sink = self.producer, self.sink
        assert producer is not None and sink is not None
        if not self.open:
            await producer.begin_transaction()
            self.open = True
            # AddOffsetsToTxn now, with the offset already committed, so that the round itself
            # only commits the new offset (TxnOffsetCommit) and the transaction.
            self._group_added = asyncio.ensure_future(
                producer.send_offsets_to_transaction({self.tp: chunk[0][0]}, self.group_id))
        await sink.publish([message for _, messages in chunk for message in messages], retry=False)

    async def commit(self, upto: int) -> int:
        """Step 3 for the records below ``upto``; returns how many were committed. Raises (with the
        transaction still open) when it fails: :meth:`abort` is the caller's next step."""
        producer = self.producer
        assert producer is not None
        self.sealed = True  # until committed, or until abort() is done
        await self._idle.wait()
        await self.send_finished(upto)
        await self._settle_group()
        if self.failure is not None:
            raise self.failure
        if not self.open:  # nothing to send (cannot happen while every record has an output)
            await producer.begin_transaction()
            self.open = True
        await producer.send_offsets_to_transaction({self.tp: upto}, self.group_id)
        await producer.commit_transaction()
        self.sealed = False
        self.open = False
        committed = len(self.sent)
        self.sent = []
        self._release(upto, committed=True)
        return committed

    async def _settle_group(self) -> None:
        added, self._group_added = self._group_added, None
        if added is not None:
            try:
                await added
            except (KafkaError, IllegalOperation) as exc:
                self.failure = self.failure or exc

    async def abort(self) -> None:
        """After a failure: abort the open transaction; what it carried is held again."""
        self.sealed = True
        try:
            await self._idle.wait()
            await self._settle_group()
            for offset, messages in self.sent:
                self.held[offset] = messages
            self.sent = []
            if self.open and self.producer is not None and not isinstance(self.failure, ProducerFenced):
                await self.producer.abort_transaction()
        finally:
            self.open = False
            self.failure = None
            self.sealed = False

    def _release(self, upto: int | None, *, committed: bool) -> None:
        """Waiters whose records here are all below ``upto`` (every waiter when None) are done."""
        keep = []
        for highest, waiter in self.waiters:
            if upto is None or highest < upto:
                waiter.partition_done(committed)
            else:
                keep.append((highest, waiter))
        self.waiters = keep

    def abandon(self) -> int:
        """Fenced or revoked: nothing held here will be committed by this member; how many it held."""
        dropped = len(self.held) + len(self.sent)
        self.held.clear()
        self.sent = []
        self._release(None, committed=False)
        return dropped
