"""The pipeline's lifecycle against the in-memory seam (tests/unit/kafka/fakes.py): start, drain on
revoke, stop, and a failed start, each in well under a second."""

from __future__ import annotations

import asyncio

import pytest

from gateway.kafka.client import TopicPartition
from gateway.kafka.connection import KafkaStartError
from gateway.runtime.health import Health
from gateway.stream.pipeline import Pipeline
from tests.unit.kafka.fakes import (
    IN,
    FakeClients,
    FakeConsumer,
    FakeLane,
    config,
    lanes_of,
    pipeline_metrics,
    published,
    until,
)

pytestmark = pytest.mark.timeout(10)

TP0, TP1 = TopicPartition(IN, 0), TopicPartition(IN, 1)


class Running:
    """A pipeline over fakes, its run() a task of the test."""

    def __init__(self, *, shutdown_timeout_s: float = 2.0, max_rows: int = 100) -> None:
        cfg = config(max_rows=max_rows)
        self.events: list[str] = []
        self.consumer = FakeConsumer(self.events)
        self.clients = FakeClients(self.consumer, self.events)
        self.lane = FakeLane()
        self.registry, metrics = pipeline_metrics()
        self.health = Health(["p"])
        self.pipeline = Pipeline(cfg.pipelines[0], cfg.kafka, metrics=metrics, health=self.health,
                                 shutdown_timeout_s=shutdown_timeout_s, clients=self.clients,
                                 lanes=lanes_of(self.lane))
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.pipeline.run(self.stop))

    async def finish(self) -> None:
        assert self.task is not None
        self.stop.set()
        await asyncio.wait_for(self.task, 5)

    @property
    def outputs(self) -> list[bytes | None]:
        return [value for producer in self.clients.producers for _, _, values in producer.sent for value in values]


async def test_start_joins_scores_publishes_and_commits() -> None:
    run = Running()
    run.consumer.rebalance(assign={TP0, TP1})
    run.consumer.produce(TP0, *[b'{"a": %d}' % i for i in range(3)])
    run.consumer.produce(TP1, *[b'{"a": %d}' % i for i in range(2)])
    run.start()
    await until(lambda: run.consumer.commits == {TP0: 3, TP1: 2}, "the offsets after every record committed")
    assert run.events[:3] == ["producer.start", "consumer.start", "assigned"]
    assert run.clients.read_committed is False
    assert len(run.outputs) == 5 and published(run.registry) == 5
    assert run.health.ready()[1]["p"]["partitions"] == 2
    await run.finish()


async def test_a_revocation_drains_in_flight_work_and_commits_before_the_partitions_go() -> None:
    run = Running()
    run.lane.gate = asyncio.Event()
    run.consumer.rebalance(assign={TP0})
    run.consumer.produce(TP0, b'{"a": 1}', b'{"a": 2}')
    run.start()
    await asyncio.wait_for(run.lane.scoring.wait(), 2)  # the batch is with the backend
    run.consumer.rebalance(revoke={TP0})
    await asyncio.wait_for(run.consumer.revoking.wait(), 2)
    assert "revoked" not in run.events  # the revocation waits for the batch...
    run.lane.gate.set()
    await asyncio.wait_for(run.consumer.rebalanced.wait(), 2)
    assert run.consumer.commits_at_revoke == {TP0: 2}  # ...which was published and committed first
    assert len(run.outputs) == 2 and published(run.registry) == 2
    assert run.health.ready()[1]["p"]["partitions"] is None
    await run.finish()


async def test_a_revocation_abandons_what_does_not_finish_in_time_uncounted_and_uncommitted() -> None:
    run = Running(shutdown_timeout_s=0.05)
    run.lane.gate = asyncio.Event()  # never opened: the backend does not answer
    run.consumer.rebalance(assign={TP0})
    run.consumer.produce(TP0, b'{"a": 1}')
    run.start()
    await asyncio.wait_for(run.lane.scoring.wait(), 2)
    run.consumer.rebalance(revoke={TP0})
    await asyncio.wait_for(run.consumer.rebalanced.wait(), 2)
    assert run.consumer.commits_at_revoke == {} and run.outputs == [] and published(run.registry) == 0
    await run.finish()


async def test_stop_drains_then_commits_then_closes_consumer_before_producer() -> None:
    run = Running()
    run.lane.gate = asyncio.Event()
    run.consumer.rebalance(assign={TP0})
    run.consumer.produce(TP0, b'{"a": 1}', b'{"a": 2}', b'{"a": 3}')
    run.start()
    await asyncio.wait_for(run.lane.scoring.wait(), 2)
    run.stop.set()
    await asyncio.sleep(0.01)
    assert run.task is not None and not run.task.done()  # draining: the batch is still with the backend
    run.lane.gate.set()
    await run.finish()
    assert run.consumer.commits == {TP0: 3} and published(run.registry) == 3
    assert run.events[-2:] == ["consumer.stop", "producer.stop"]


async def test_a_producer_that_cannot_start_stops_the_pipeline_and_is_closed() -> None:
    run = Running()
    original = run.clients.producer

    def failing():  # type: ignore[no-untyped-def]
        producer = original()
        producer.fail_start = KafkaStartError("kafka 127.0.0.1:9: unreachable")
        return producer

    run.clients.producer = failing  # type: ignore[method-assign]
    run.start()
    assert run.task is not None
    with pytest.raises(KafkaStartError, match="unreachable"):
        await asyncio.wait_for(run.task, 2)
    assert run.events == ["producer.start", "producer.stop"]
