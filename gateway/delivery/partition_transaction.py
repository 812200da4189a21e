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

Where a partition stands is its :class:`Phase`; :data:`TRANSITIONS` lists every move it may make,
and any other raises :class:`IllegalTransition`. Beside the phase, ``in_transaction`` says whether
the producer has a transaction begun, which any phase but STARTING and CLOSED may have or not.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.errors import KafkaError
from gateway.kafka.client import BrokerRequestError, Message, ProducerFencedError, TopicPartition, TransactionalProducer
from gateway.kafka.sink import KafkaSink


class Phase(enum.Enum):
    STARTING = "starting"  # no producer yet: finished outputs are held
    READY = "ready"  # the done prefix goes into the transaction as it grows (begun by the first send)
    SEALED = "sealed"  # a round commits: only outputs below its offset go in; the rest waits
    FAILED = "failed"  # a step of the transaction failed (``failure``): nothing more goes in; abort next
    ABORTING = "aborting"  # the transaction is aborted; what it carried is held again
    CLOSED = "closed"  # fenced, revoked or stopped: holds and sends nothing, for good


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.READY, Phase.CLOSED}),
    Phase.READY: frozenset({Phase.SEALED, Phase.FAILED, Phase.ABORTING, Phase.STARTING, Phase.CLOSED}),
    Phase.SEALED: frozenset({Phase.READY, Phase.FAILED, Phase.ABORTING, Phase.CLOSED}),
    Phase.FAILED: frozenset({Phase.ABORTING, Phase.CLOSED}),
    Phase.ABORTING: frozenset({Phase.READY, Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class IllegalTransition(KafkaError):
    """A partition transaction was asked for a move its phase does not allow: a bug, said plainly."""


@dataclass(slots=True)
class Waiter:
    """A batch waiting until its outputs are committed, or abandoned, in every partition it has records in."""

    partitions: int
    abandoned: set[TopicPartition] = field(default_factory=set)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def partition_done(self, tp: TopicPartition, committed: bool) -> None:
        if not committed:
            self.abandoned.add(tp)
        self.partitions -= 1
        if self.partitions <= 0 and not self.done.done():
            self.done.set_result(None)


class PartitionTransaction:
    """One input partition's transactional producer, its open transaction and the outputs it holds."""

    def __init__(self, tp: TopicPartition, group_id: str, done_below: Callable[[], int | None]) -> None:
        self.tp = tp
        self.group_id = group_id
        self.done_below = done_below  # the offset tracker's contiguous done prefix of this partition
        self.phase = Phase.STARTING
        self.producer: TransactionalProducer | None = None  # set from STARTING to CLOSED
        self.sink: KafkaSink | None = None
        self.in_transaction = False  # the producer has a transaction begun: what an abort ends
        self.held: dict[int, list[Message]] = {}  # input offset -> its outputs, not sent yet
        self.sent: list[tuple[int, list[Message]]] = []  # in the open transaction: held again on abort
        self.waiters: list[tuple[int, Waiter]] = []  # (highest offset of the batch here, waiter)
        self.failure: BrokerRequestError | None = None  # why the phase is FAILED
        self.committed: int | None = None  # the group's offset for the partition as this member last knew it
        self._group_added: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # no send under way
        self._idle.set()

    def _to(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"partition {self.tp.topic}/{self.tp.partition}: "
                                    f"{self.phase.value} -> {phase.value} is not a legal transition")
        self.phase = phase

    def started(self, producer: TransactionalProducer) -> None:
        """The partition's producer started (fencing every earlier one with its id): sends may begin."""
        self._to(Phase.READY)
        self.producer, self.sink = producer, KafkaSink(producer)

    def replace(self) -> TransactionalProducer | None:
        """The producer is beyond aborting: hand it back to be stopped; outputs are held until a new one
        has :meth:`started`."""
        self._to(Phase.STARTING)
        old, self.producer, self.sink = self.producer, None, None
        return old

    def _fail(self, exc: BrokerRequestError) -> None:
        """A step of the open transaction failed: it takes nothing more and must be aborted. (After an
        abandon, or during an abort, a failure changes nothing.)"""
        if self.phase in (Phase.READY, Phase.SEALED):
            self.failure = exc
            self._to(Phase.FAILED)

    async def send_finished(self, limit: int | None = None) -> None:
        """Step 2: send the held outputs of the done prefix into the open transaction, beginning one.

        One send at a time: what finishes while a send is under way goes out with the next one, which
        the same call makes (the client has one produce request per broker in flight anyway, so a send
        per batch would only queue). ``limit`` (the round's offset) bounds what a sealed round sends."""
        if not self._idle.is_set():
            return  # the send under way picks these up
        self._idle.clear()
        try:
            while self.phase is (Phase.READY if limit is None else Phase.SEALED):
                chunk = self._take(limit if limit is not None else self.done_below())
                if not chunk:
                    return
                await self._send(chunk)
                if limit is not None:
                    return
        except BrokerRequestError as exc:
            self._fail(exc)
        except BaseException:
            # Cancelled with a send under way: whether it reached the broker is unknown, so this
            # transaction must not commit.
            self._fail(BrokerRequestError("a send of the open transaction was cancelled"))
            raise
        finally:
            self._idle.set()

    def _take(self, upto: int | None) -> list[tuple[int, list[Message]]]:
        if upto is None:
            return []
        held = self.held
        chunk = [(offset, held.pop(offset)) for offset in sorted(o for o in held if o < upto)]
        self.sent.extend(chunk)
        return chunk

    def _started(self) -> tuple[TransactionalProducer, KafkaSink]:
        producer, sink = self.producer, self.sink
        if producer is None or sink is None:
            raise IllegalTransition(f"partition {self.tp.topic}/{self.tp.partition}: no producer in {self.phase.value}")
        return producer, sink

    async def _send(self, chunk: list[tuple[int, list[Message]]]) -> None:
        producer, sink = self._started()
        if not self.in_transaction:
            await producer.begin_transaction()
            self.in_transaction = True
            # AddOffsetsToTxn now, with the offset already committed, so that the round itself
            # only commits the new offset (TxnOffsetCommit) and the transaction.
            self._group_added = asyncio.ensure_future(
                producer.send_offsets_to_transaction({self.tp: chunk[0][0]}, self.group_id))
        await sink.publish([message for _, messages in chunk for message in messages], retry=False)

    def seal(self) -> None:
        """A round begins: from now on only what it commits goes into the transaction. Called before
        the round's first await, so nothing finished after the round took its offset slips in."""
        if self.phase is Phase.READY:
            self._to(Phase.SEALED)

    async def commit(self, upto: int) -> int:
        """Step 3 for the records below ``upto``; returns how many were committed. Raises (with the
        transaction still open) when it fails: :meth:`abort` is the caller's next step."""
        self.seal()
        if self.phase is Phase.FAILED and self.failure is not None:
            raise self.failure
        if self.phase is not Phase.SEALED:
            raise IllegalTransition(f"partition {self.tp.topic}/{self.tp.partition}: cannot commit "
                                    f"while {self.phase.value}")
        producer, _ = self._started()
        await self._idle.wait()
        await self.send_finished(upto)
        await self._settle_group()
        if self.failure is not None:
            raise self.failure
        if not self.in_transaction:  # nothing to send (cannot happen while every record has an output)
            await producer.begin_transaction()
            self.in_transaction = True
        await producer.send_offsets_to_transaction({self.tp: upto}, self.group_id)
        await producer.commit_transaction()
        self.in_transaction = False
        self.committed = upto
        self._to(Phase.READY)
        committed = len(self.sent)
        self.sent = []
        self._release(upto, committed=True)
        return committed

    async def _settle_group(self) -> None:
        added, self._group_added = self._group_added, None
        if added is not None:
            try:
                await added
            except BrokerRequestError as exc:
                self._fail(exc)

    async def abort(self) -> None:
        """After a failure: abort the open transaction; what it carried is held again."""
        if self.phase in (Phase.STARTING, Phase.CLOSED):
            return  # nothing was sent: nothing to abort
        fenced = isinstance(self.failure, ProducerFencedError)
        self._to(Phase.ABORTING)
        try:
            await self._idle.wait()
            await self._settle_group()
            for offset, messages in self.sent:
                self.held[offset] = messages
            self.sent = []
            if self.in_transaction and self.producer is not None and not fenced:
                await self.producer.abort_transaction()
        finally:
            self.in_transaction = False
            self.failure = None
            if self.phase is Phase.ABORTING:
                self._to(Phase.READY)

    def _release(self, upto: int | None, *, committed: bool) -> None:
        """Waiters whose records here are all below ``upto`` (every waiter when None) are done."""
        keep = []
        for highest, waiter in self.waiters:
            if upto is None or highest < upto:
                waiter.partition_done(self.tp, committed)
            else:
                keep.append((highest, waiter))
        self.waiters = keep

    def abandon(self) -> int:
        """Fenced, revoked or stopped: nothing held here will be committed by this member; returns how
        many records it held. The producer is the caller's to stop."""
        if self.phase is Phase.CLOSED:
            return 0
        self._to(Phase.CLOSED)
        dropped = len(self.held) + len(self.sent)
        self.held.clear()
        self.sent = []
        self._release(None, committed=False)
        return dropped
