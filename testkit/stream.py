"""A steady stream of records for tests and benchmarks: churn records at a fixed rate, on a clock."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaProducer

from gateway.commands.demo.sample_data import churn_records
from testkit.topics import Topics

TICK_S = 0.1  # the stream produces what is due every tick


class PacedStream:
    """Churn records at ``rate``/s from one open producer, keyed by customer, on a clock: a slow
    send is made up at the next tick, so the count follows ``rate × elapsed``."""

    def __init__(self, topics: Topics, rate: float, seed: int) -> None:
        self.topics = topics
        self.rate = rate
        self.sent = 0  # acknowledged by the broker
        self.ends: dict[int, int] = {}  # partition -> one past the highest acknowledged offset
        self._records = churn_records(10**9, seed=seed, malformed_share=0.0, customers=2000)

    async def run(self, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.topics.bootstrap, linger_ms=5)
        await producer.start()
        try:
            started = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - started) * self.rate) - self.sent
                if due > 0:
                    batch = [next(self._records) for _ in range(due)]
                    sends = [await producer.send(self.topics.input, r.value, key=r.key) for r in batch]
                    for meta in await asyncio.gather(*sends):
                        self.ends[meta.partition] = max(self.ends.get(meta.partition, 0), meta.offset + 1)
                    self.sent += due
                with contextlib.suppress(TimeoutError):  # the pacing itself: wake at the next tick
                    await asyncio.wait_for(stop.wait(), TICK_S)
        finally:
            await producer.stop()
