"""Readiness follows the broker's acknowledgements: KafkaSink reports a batch left unacknowledged
past its stall threshold, and clears the report once that partition is acknowledged again."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.kafka.sink import KafkaSink
from gateway.runtime.health import Health


class Batch:
    def append(self, **_: Any) -> object:
        return object()


class Producer:
    """send waits for a future the test resolves: the broker's acknowledgement."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[None]] = []

    def create_batch(self) -> Batch:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send(self, batch: Batch, topic: str, partition: int) -> None:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        await ack


async def until(condition: Any, what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_an_unacknowledged_batch_makes_the_pipeline_not_ready_until_acknowledged() -> None:
    health = Health(["p"])
    producer = Producer()
    reports: list[str | None] = []

    def on_stall(reason: str | None) -> None:
        reports.append(reason)
        health.set_broker_ok("p", reason is None, reason)

    sink = KafkaSink(producer, on_stall=on_stall, stall_s=0.05)  # type: ignore[arg-type]
    health.set_assigned("p", True, partitions=1)
    publish = asyncio.create_task(sink.publish([("out", b"k", b"v", [])]))
    await until(lambda: producer.acks, "the batch to be sent")
    assert health.ready()[0]  # not yet past the threshold
    await until(lambda: reports, "the stall report")
    ready, report = health.ready()
    assert not ready and report["p"]["reasons"] == [
        "broker: outputs to out[0] not acknowledged by the broker for 0.05s"]
    producer.acks[0].set_result(None)
    await asyncio.wait_for(publish, 5)
    assert reports[-1] is None and health.ready()[0]


async def test_a_prompt_acknowledgement_reports_nothing() -> None:
    producer = Producer()
    reports: list[str | None] = []
    sink = KafkaSink(producer, on_stall=reports.append, stall_s=0.5)  # type: ignore[arg-type]
    publish = asyncio.create_task(sink.publish([("out", None, b"v", [])]))
    await until(lambda: producer.acks, "the batch to be sent")
    producer.acks[0].set_result(None)
    await asyncio.wait_for(publish, 5)
    await asyncio.sleep(0.6)  # past the threshold: the cancelled timer must not fire
    assert reports == []
