"""Delivery at least once: publish a batch's outputs, then acknowledge its input offsets; commit behind.

How it keeps the contract (``gateway.delivery.contract``), in the order the pipeline runs it:
    1. ``publish`` the outputs and wait until the broker acknowledged every one (delivered);
    2. ``settle`` the records: the tracker marks their offsets done;
    3. every ``kafka.commit_interval_ms`` (and on revocation and shutdown) ``commit`` what the
       tracker says is contiguous and done, per partition.
A crash between 1 and 3 republishes outputs on restart (duplicates recognisable by ``id``), never
loses one. ``gateway.delivery.exactly_once`` is the exactly-once alternative.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from gateway.delivery.contract import NOTHING_ABANDONED
from gateway.delivery.offsets import OffsetTracker
from gateway.delivery.offsets import offsets_by_partition as offsets_by_partition  # the hot-path benchmark's
from gateway.kafka.client import BrokerRequestError, InputRecord, TopicPartition
from gateway.kafka.sink import KafkaSink
from gateway.kafka.source import KafkaSource
from gateway.runtime.metrics import PipelineMetrics
from gateway.stream.outputs import Published

log = logging.getLogger(__name__)


class AtLeastOnceDelivery:
    def __init__(self, *, pipeline: str, sink: KafkaSink, source: KafkaSource, tracker: OffsetTracker,
                 metrics: PipelineMetrics, commit_interval_s: float) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.source = source
        self.tracker = tracker
        self.metrics = metrics
        self.commit_interval_s = commit_interval_s
        self._commit_lock = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to check: every broker acknowledges writes."""

    async def publish(self, published: Published, records: Sequence[InputRecord]) -> None:
        """Step 1: returns once the broker acknowledged every message (retrying until it does)."""
        await self.sink.publish(published.messages)

    async def settle(self, records: Sequence[InputRecord]) -> frozenset[TopicPartition]:
        """Step 2: every output of these records is acknowledged; a partition the tracker no longer
        has was revoked meanwhile (its offsets are not committed here: abandoned)."""
        abandoned = [tp for tp, offsets in offsets_by_partition(records).items() if not self.tracker.ack(tp, offsets)]
        return frozenset(abandoned) if abandoned else NOTHING_ABANDONED

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Nothing to prepare: one producer serves every partition."""

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """Nothing to release: the tracker forgets the partitions."""

    async def close(self) -> None:
        """The pipeline stops the shared producer itself."""

    async def run(self, stop: asyncio.Event) -> None:
        """Step 3 on an interval, with the consumer lag reported alongside."""
        await commit_rounds(stop, self.commit_interval_s, self.commit, self._report_lag)

    async def commit(self) -> None:
        async with self._commit_lock:
            offsets = self.tracker.committable()
            if not offsets:
                return
            try:
                await self.source.commit(offsets)
            except BrokerRequestError as exc:
                # A rebalance is under way or the coordinator moved: the next commit (or the
                # revocation handler) retries; the records stay uncommitted, never lost.
                log.warning("commit_failed", extra={"pipeline": self.pipeline, "error": repr(exc)})
                return
            self.tracker.committed(offsets)

    async def _report_lag(self) -> None:
        await report_lag(self.source, self.metrics)


LAG_REPORT_INTERVAL_S = 0.5


async def commit_rounds(stop: asyncio.Event, interval_s: float, commit: Callable[[], Awaitable[None]],
                        lag: Callable[[], Awaitable[None]]) -> None:
    """``commit`` every ``interval_s`` and report the lag every ``LAG_REPORT_INTERVAL_S``, each at a
    fixed rate and one last time once ``stop`` is set. Two loops: the lag asks the broker, which
    now and then takes hundreds of milliseconds, and under exactly-once a round it held up is what
    every record waiting for its transaction waits for."""
    async with asyncio.TaskGroup() as group:
        group.create_task(_at_fixed_rate(stop, LAG_REPORT_INTERVAL_S, lag))
        await _at_fixed_rate(stop, interval_s, commit)


async def _at_fixed_rate(stop: asyncio.Event, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
    """A step's own time does not stretch the interval (under exactly-once, what a record waits for
    its transaction)."""
    loop = asyncio.get_running_loop()
    due = loop.time() + interval_s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
        due = max(due + interval_s, loop.time())
        await step()


async def report_lag(source: KafkaSource, metrics: PipelineMetrics) -> None:
    for tp in source.assignment():
        found = await source.lag(tp)
        if found is not None:
            metrics.lag(tp.topic, tp.partition, found)
