"""PartitionTransaction's phases: the legal moves happen as the protocol runs, and any other move is
refused with IllegalTransition rather than leaving the partition in a state no step expects."""

from __future__ import annotations

import itertools

import pytest

from gateway.delivery.offsets import OffsetTracker
from gateway.delivery.partition_transaction import TRANSITIONS, IllegalTransition, PartitionTransaction, Phase
from gateway.kafka.client import BrokerRequestError, Message, TopicPartition
from tests.unit.kafka.fakes import FakeTransactionalProducer

pytestmark = pytest.mark.timeout(10)

TP = TopicPartition("in", 0)


def partition() -> tuple[PartitionTransaction, OffsetTracker, FakeTransactionalProducer]:
    tracker = OffsetTracker()
    part = PartitionTransaction(TP, "group", lambda: tracker.done_below(TP))
    return part, tracker, FakeTransactionalProducer([], "t")


def finish(part: PartitionTransaction, tracker: OffsetTracker, *offsets: int) -> None:
    for offset in offsets:
        message: Message = ("out", None, b"%d" % offset, ())
        part.held[offset] = [message]
    tracker.ack(TP, offsets)


def test_every_phase_has_its_moves_listed_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.CLOSED] == frozenset()
    assert all(Phase.CLOSED in moves for phase, moves in TRANSITIONS.items() if phase is not Phase.CLOSED)


ILLEGAL = [(a, b) for a, b in itertools.product(Phase, Phase) if b not in TRANSITIONS[a]]


@pytest.mark.parametrize(("before", "after"), ILLEGAL, ids=[f"{a.value}->{b.value}" for a, b in ILLEGAL])
def test_a_move_not_listed_is_refused(before: Phase, after: Phase) -> None:
    part, _, _ = partition()
    part.phase = before
    with pytest.raises(IllegalTransition, match=f"{before.value} -> {after.value}"):
        part._to(after)
    assert part.phase is before


async def test_the_protocol_walks_starting_ready_sealed_ready_then_closed() -> None:
    part, tracker, producer = partition()
    assert part.phase is Phase.STARTING
    tracker.track(TP, range(2))
    finish(part, tracker, 0, 1)
    await part.send_finished()  # no producer yet: held
    assert producer.open is None and sorted(part.held) == [0, 1]
    part.started(producer)  # type: ignore[arg-type]
    assert part.phase is Phase.READY
    await part.send_finished()
    assert part.in_transaction and producer.open == [b"0", b"1"]
    part.seal()
    assert part.phase is Phase.SEALED
    assert await part.commit(2) == 2
    assert part.phase is Phase.READY and not part.in_transaction and producer.committed == [[b"0", b"1"]]
    assert part.abandon() == 0
    assert part.phase is Phase.CLOSED
    with pytest.raises(IllegalTransition):
        part.started(producer)  # type: ignore[arg-type]


async def test_a_failed_send_fails_the_transaction_which_only_an_abort_leaves() -> None:
    part, tracker, producer = partition()
    part.started(producer)  # type: ignore[arg-type]
    tracker.track(TP, range(1))

    async def refuse(*_: object) -> None:
        raise BrokerRequestError("refused")

    producer.send = refuse  # type: ignore[method-assign]
    finish(part, tracker, 0)
    await part.send_finished()
    assert part.phase is Phase.FAILED and isinstance(part.failure, BrokerRequestError)
    part.seal()  # a failed transaction is not sealed: the round finds the failure instead
    with pytest.raises(BrokerRequestError):
        await part.commit(1)
    assert part.phase is Phase.FAILED
    await part.abort()
    assert part.phase is Phase.READY and part.failure is None and sorted(part.held) == [0]


async def test_commit_before_the_producer_started_is_refused() -> None:
    part, _, _ = partition()
    with pytest.raises(IllegalTransition, match="cannot commit while starting"):
        await part.commit(1)


async def test_abandon_during_a_send_is_final_even_if_the_send_then_fails() -> None:
    part, tracker, producer = partition()
    part.started(producer)  # type: ignore[arg-type]
    tracker.track(TP, range(1))

    async def abandoned_meanwhile(*_: object) -> None:
        part.abandon()
        raise BrokerRequestError("fenced meanwhile")

    producer.send = abandoned_meanwhile  # type: ignore[method-assign]
    finish(part, tracker, 0)
    await part.send_finished()
    assert part.phase is Phase.CLOSED and part.failure is None
