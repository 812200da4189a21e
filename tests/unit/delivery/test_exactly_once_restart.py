"""A transactional producer beyond aborting (its commit and then its abort fail with a fatal error) is
replaced by a new one with the same id, and the held outputs go out with that one's first
transaction, but only while nobody else committed for the partition: a member paused past its
session meets exactly this when it wakes (the new owner's producer fenced it mid-transaction), and
sending its held outputs then would repeat what the new owner already committed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.kafka.client import TopicPartition
from gateway.runtime.health import Health
from gateway.stream.pipeline import Pipeline
from tests.unit.kafka.fakes import (
    IN,
    FakeClients,
    FakeConsumer,
    FakeLane,
    FakeTransactionalProducer,
    config,
    lanes_of,
    pipeline_metrics,
    published,
    until,
)

pytestmark = pytest.mark.timeout(10)

TP0 = TopicPartition(IN, 0)
TID = f"scoring-gateway.p.{IN}.0"


@pytest.mark.parametrize("taken_over", [False, True], ids=["still-the-owner", "taken-over-meanwhile"])
async def test_a_producer_beyond_aborting_is_replaced_only_while_nobody_else_committed(taken_over: bool) -> None:
    events: list[str] = []
    consumer = FakeConsumer(events)
    clients = FakeClients(consumer, events)
    first: list[FakeTransactionalProducer] = []
    make = clients.transactional_producer

    def producer(transactional_id: str) -> FakeTransactionalProducer:
        made = make(transactional_id)
        if transactional_id == TID and not first:
            made.fatal = True
            if taken_over:  # another member committed both records while this one's commit failed
                made.meanwhile = lambda: consumer.commits.__setitem__(TP0, 2)
            first.append(made)
        return made

    clients.transactional_producer = producer  # type: ignore[method-assign]
    registry, metrics = pipeline_metrics()
    pipeline = Pipeline(config(delivery="exactly_once").pipelines[0], config().kafka, metrics=metrics,
                        health=Health(["p"]), shutdown_timeout_s=2.0, clients=clients, lanes=lanes_of(FakeLane()))
    consumer.rebalance(assign={TP0})
    consumer.produce(TP0, b'{"a": 1}', b'{"a": 2}')
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await until(lambda: first and clients.transactional[TID] is not first[0], "a second producer for partition 0")
    replacement = clients.transactional[TID]
    if taken_over:
        await until(lambda: TP0 in consumer.paused, "partition 0 no longer read here")
    else:
        await until(lambda: replacement.committed, "the replacement's transaction")
    stop.set()
    await asyncio.wait_for(task, 5)
    if taken_over:
        assert replacement.committed == [] and replacement.open is None  # nothing sent: the new owner did
        assert events.count(f"{replacement.name}.stop") >= 1
        assert published(registry) == 0
    else:
        assert [len(outputs) for outputs in replacement.committed] == [2]  # the held outputs, once
        assert TP0 not in consumer.paused
        assert published(registry) == 2
