"""The delivery contract (gateway.delivery.contract): only delivered outputs count as published.

A member fenced out of a partition (another member's producer took its transactional id) drops what
it held for that partition; those outputs never reach a read_committed reader, so they must not
appear in ``records_published_total`` either, while the same batch's outputs for a partition it
still owns are committed and counted."""

from __future__ import annotations

import asyncio

import pytest

from gateway.delivery.at_least_once import AtLeastOnceDelivery
from gateway.delivery.offsets import OffsetTracker
from gateway.kafka.client import TopicPartition
from gateway.runtime.health import Health
from gateway.stream.pipeline import Pipeline
from tests.unit.kafka.fakes import (
    IN,
    FakeClients,
    FakeConsumer,
    FakeLane,
    Record,
    config,
    lanes_of,
    pipeline_metrics,
    published,
    until,
)

pytestmark = pytest.mark.timeout(10)

TP0, TP1 = TopicPartition(IN, 0), TopicPartition(IN, 1)


@pytest.mark.parametrize("fenced", [False, True], ids=["owner", "fenced"])
async def test_a_fenced_members_abandoned_outputs_are_not_counted_as_published(fenced: bool) -> None:
    cfg = config(delivery="exactly_once")
    events: list[str] = []
    consumer = FakeConsumer(events)
    clients = FakeClients(consumer, events, fence=lambda tid: fenced and tid.endswith(f".{IN}.0"))
    registry, metrics = pipeline_metrics()
    pipeline = Pipeline(cfg.pipelines[0], cfg.kafka, metrics=metrics, health=Health(["p"]), shutdown_timeout_s=2.0,
                        clients=clients, lanes=lanes_of(FakeLane()))
    consumer.rebalance(assign={TP0, TP1})
    consumer.produce(TP0, b'{"a": 1}', b'{"a": 2}')
    consumer.produce(TP1, b'{"a": 3}')  # one batch: two records of partition 0, one of partition 1
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await until(lambda: f"scoring-gateway.p.{IN}.1" in clients.transactional, "partition 1's producer")
    owner = clients.transactional[f"scoring-gateway.p.{IN}.1"]
    await until(lambda: owner.committed, "partition 1's transaction committed")
    if not fenced:
        await until(lambda: clients.transactional[f"scoring-gateway.p.{IN}.0"].committed, "partition 0's")
    await until(lambda: published(registry) == (1 if fenced else 3), "the count of delivered outputs")
    stop.set()
    await asyncio.wait_for(task, 5)
    assert clients.read_committed is True
    assert [len(outputs) for outputs in owner.committed] == [1]
    assert published(registry) == (1 if fenced else 3)  # not 3: partition 0's two were dropped
    if fenced:
        assert not clients.transactional[f"scoring-gateway.p.{IN}.0"].committed
        assert TP0 in consumer.paused  # no longer read here: another member owns it
        labels = {"pipeline": "p", "outcome": "aborted"}
        assert (registry.get_sample_value("scoring_gateway_transactions_total", labels) or 0) >= 1


async def test_at_least_once_settles_a_revoked_partitions_records_as_abandoned() -> None:
    tracker = OffsetTracker()
    tracker.track(TP0, [0])
    tracker.track(TP1, [0])
    tracker.forget([TP0])
    _, metrics = pipeline_metrics()
    delivery = AtLeastOnceDelivery(pipeline="p", sink=None, source=None, tracker=tracker,  # type: ignore[arg-type]
                                   metrics=metrics, commit_interval_s=1.0)
    records = [Record(IN, 0, 0, 0, None, b"{}"), Record(IN, 1, 0, 0, None, b"{}")]
    assert await delivery.settle(records) == {TP0}
    assert tracker.committable() == {TP1: 1}
