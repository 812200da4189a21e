"""The exactly-once partition protocol against a recording fake producer: what goes into which
transaction, in which order, and what happens after a failure. The same protocol runs against
Apache Kafka in tests/integration/test_exactly_once.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.delivery.offsets import OffsetTracker
from gateway.delivery.partition_transaction import PartitionTransaction
from gateway.kafka.client import BrokerRequestError, Message, TopicPartition

pytestmark = pytest.mark.timeout(30)

TP = TopicPartition("in", 0)
OUT = "predictions"


class _Batch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: None, headers: Any) -> object:
        self.values.append(value)
        return object()


class RecordingProducer:
    """Records transaction steps as ``(step, detail)``; sends can be held at a gate or made to fail."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []
        self.send_gate: asyncio.Event | None = None
        self.commit_gate: asyncio.Event | None = None
        self.fail_sends = False
        self.committing = asyncio.Event()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send(self, batch: _Batch, topic: str, partition: int) -> None:
        if self.send_gate is not None:
            await self.send_gate.wait()
        self.steps.append(("send", [v.decode() for v in batch.values if v is not None]))
        if self.fail_sends:
            raise BrokerRequestError("broker refused the batch")

    async def begin_transaction(self) -> None:
        self.steps.append(("begin", None))

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        self.steps.append(("offsets", offsets[TP]))

    async def commit_transaction(self) -> None:
        self.committing.set()
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        self.steps.append(("commit", None))

    async def abort_transaction(self) -> None:
        self.steps.append(("abort", None))


def partition_with(producer: RecordingProducer) -> tuple[PartitionTransaction, OffsetTracker]:
    tracker = OffsetTracker()
    partition = PartitionTransaction(TP, "group", lambda: tracker.done_below(TP))
    partition.started(producer)  # type: ignore[arg-type]
    return partition, tracker


def finish(partition: PartitionTransaction, tracker: OffsetTracker, *offsets: int) -> None:
    """What the pipeline does when a batch with these records is scored: hold and acknowledge."""
    for offset in offsets:
        message: Message = (OUT, b"k", f"out-{offset}".encode(), ())
        partition.held[offset] = [message]
    tracker.ack(TP, offsets)


async def test_the_done_prefix_is_sent_before_the_round_and_in_offset_order() -> None:
    producer = RecordingProducer()
    partition, tracker = partition_with(producer)
    tracker.track(TP, range(4))
    finish(partition, tracker, 2, 3)  # the later batch finishes first: no prefix yet
    await partition.send_finished()
    assert producer.steps == []
    finish(partition, tracker, 0, 1)
    await partition.send_finished()
    assert producer.steps[0] == ("begin", None)
    assert ("send", ["out-0", "out-1", "out-2", "out-3"]) in producer.steps
    done_before_the_round = len(producer.steps)
    assert await partition.commit(4) == 4
    assert ("offsets", 0) in producer.steps  # the group was added early, by a task of its own
    assert producer.steps[-2:] == [("offsets", 4), ("commit", None)]  # all the round has left to do
    assert done_before_the_round >= 2
    assert partition.held == {} and partition.sent == []


async def test_a_failed_send_aborts_and_the_next_transaction_carries_everything_again() -> None:
    producer = RecordingProducer()
    partition, tracker = partition_with(producer)
    tracker.track(TP, range(3))
    producer.fail_sends = True
    finish(partition, tracker, 0, 1)
    await partition.send_finished()
    finish(partition, tracker, 2)
    await partition.send_finished()  # a failed transaction takes no more outputs
    with pytest.raises(BrokerRequestError):
        await partition.commit(3)
    assert ("commit", None) not in producer.steps
    await partition.abort()
    assert producer.steps[-1] == ("abort", None)
    assert sorted(partition.held) == [0, 1, 2]
    producer.fail_sends, producer.steps = False, []
    assert await partition.commit(3) == 3
    assert producer.steps[0] == ("begin", None)
    assert sorted(producer.steps[1:3], key=str) == [("offsets", 0), ("send", ["out-0", "out-1", "out-2"])]
    assert producer.steps[3:] == [("offsets", 3), ("commit", None)]


async def test_what_finishes_while_a_round_commits_waits_for_the_next_transaction() -> None:
    producer = RecordingProducer()
    partition, tracker = partition_with(producer)
    tracker.track(TP, range(4))
    finish(partition, tracker, 0, 1)
    await partition.send_finished()
    producer.commit_gate = asyncio.Event()
    committing = asyncio.create_task(partition.commit(2))
    await producer.committing.wait()
    finish(partition, tracker, 2, 3)
    await partition.send_finished()  # sealed: offsets 2-3 must not join the transaction of 0-1
    assert [s for s in producer.steps if s[0] == "send"] == [("send", ["out-0", "out-1"])]
    producer.commit_gate.set()
    assert await committing == 2
    await partition.send_finished()
    after = producer.steps[producer.steps.index(("commit", None)) + 1:]
    assert after[0] == ("begin", None) and ("send", ["out-2", "out-3"]) in after


async def test_one_send_at_a_time_and_what_finished_meanwhile_goes_in_the_next() -> None:
    producer = RecordingProducer()
    partition, tracker = partition_with(producer)
    tracker.track(TP, range(6))
    producer.send_gate = asyncio.Event()
    finish(partition, tracker, 0, 1)
    first = asyncio.create_task(partition.send_finished())
    await asyncio.sleep(0)
    finish(partition, tracker, 2, 3)
    await partition.send_finished()  # returns at once: the send under way takes these next
    finish(partition, tracker, 4, 5)
    await partition.send_finished()
    producer.send_gate.set()
    await first
    sends = [detail for step, detail in producer.steps if step == "send"]
    assert sends == [["out-0", "out-1"], ["out-2", "out-3", "out-4", "out-5"]]
