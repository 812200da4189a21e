"""One pipeline: input topic → batches → scoring → output topics, with offsets committed behind.

The flow, and where each step lives:
    source.KafkaSource.fetch        records from the input topic (paused under backpressure)
    source.decode_value             JSON object or ``Rejected`` (stage decode)
    codec.check_row                 sendable, or ``Rejected`` (stage validate)
    batcher.Batcher                 rows → ``Batch`` by max_rows / max_bytes / linger_ms
    ordering.KeyOrder               which earlier batches a batch must publish after
    dispatcher.Dispatcher.score     encode → HTTP → decode, with retries, splits, pacing
    records.*_document              output records of PRODUCT.md §4
    sink.KafkaSink.publish          batch produce, wait for the broker's acks
    offsets.OffsetTracker           ack → commit what is contiguous and acknowledged

Backpressure: at most ``max_in_flight_records`` records are between fetch and acknowledgement;
the consumer is paused at that mark and resumed below half of it, and also while the backend
refuses the configuration (401/403/404/409), so a stalled backend never grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from gateway.backends.factory import make_codec
from gateway.backends.scoring import Codec
from gateway.batcher import Batch, Batcher
from gateway.dispatcher import Dispatcher, Outcome, make_dispatcher, scoring_session
from gateway.kafka import consumer_options, producer_options, start_client
from gateway.offsets import OffsetTracker
from gateway.ordering import KeyOrder, NoOrder
from gateway.records import (
    STAGE_VALIDATE,
    Rejected,
    dead_letter_document,
    dumps,
    explanation_document,
    prediction_document,
)
from gateway.sink import KafkaSink, Message
from gateway.source import KafkaSource, decode_value

log = logging.getLogger("gateway.pipeline")

POLL_IDLE_S = 0.1


class Pipeline:
    def __init__(self, config: Any, kafka: Any, *, metrics: Any, health: Any,
                 shutdown_timeout_s: float) -> None:
        self.config = config
        self.name: str = config.name
        self.kafka = kafka
        self.metrics = metrics
        self.health = health
        self.shutdown_timeout_s = shutdown_timeout_s
        self.commit_interval_s = getattr(kafka, "commit_interval_ms", 1000) / 1000.0
        self.max_poll_records = int(getattr(kafka, "max_poll_records", 2000))
        self.max_in_flight = int(config.concurrency.max_in_flight_records)
        self.low_water = self.max_in_flight // 2
        outputs = config.outputs
        self.predictions_topic: str = outputs.predictions
        self.explanations_topic: str | None = outputs.explanations
        self.dead_letter_topic: str = outputs.dead_letter
        self.codec: Codec = make_codec(config)
        self.tracker = OffsetTracker()
        self.batcher = Batcher(config.batching.max_rows, config.batching.max_bytes,
                               config.batching.linger_ms)
        self.order = KeyOrder() if config.ordering == "key" else NoOrder()
        self._inflight = 0
        self._generation = 0
        self._halted: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._source: KafkaSource | None = None
        self._sink: KafkaSink | None = None
        self._dispatcher: Dispatcher | None = None
        self._commit_lock = asyncio.Lock()
        # Set when a paused consumer may resume (in-flight fell to the low-water mark, or the
        # backend accepts again), so the fetch loop wakes at once instead of at its next poll.
        self._may_resume = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain: finish in-flight work, publish, commit."""
        cfg = self.config
        async with scoring_session(cfg) as session:
            producer = AIOKafkaProducer(**producer_options(self.kafka))
            try:  # stop() also after a failed start(): it owns connections and tasks either way
                await start_client(producer.start(), self.kafka)
                self._sink = KafkaSink(producer, on_stall=self._on_publish_stall)
                await self._sink.prepare([t for t in (self.predictions_topic, self.explanations_topic,
                                                      self.dead_letter_topic) if t])
                self._dispatcher = make_dispatcher(cfg, self.codec, session, metrics=self.metrics,
                                                   health=self.health, on_halt=self._on_halt)
                self._source = KafkaSource(AIOKafkaConsumer(**consumer_options(self.kafka)), cfg.input_topic)
                try:
                    await start_client(self._source.start(self._on_revoked, self._on_assigned), self.kafka)
                    await self._run_tasks(stop)
                finally:
                    await self._source.stop()
            finally:
                await producer.stop()
        log.info("pipeline_stopped", extra={"pipeline": self.name})

    async def _run_tasks(self, stop: asyncio.Event) -> None:
        committer_stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._commit_loop(committer_stop))
            try:
                await self._fetch_loop(stop)
                await self._drain(self.shutdown_timeout_s)
            finally:
                committer_stop.set()
        self._group = None
        await self._commit()

    async def _drain(self, timeout_s: float) -> None:
        """Send the partial batch, give in-flight work ``timeout_s`` to finish, abandon the rest."""
        batch = self.batcher.take()
        if batch is not None:
            self._dispatch(batch)
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout_s)
            for task in still:
                task.cancel()
            if still:
                log.warning("drain_timeout", extra={"pipeline": self.name, "abandoned_tasks": len(still)})
                await asyncio.wait(still)
        await self._commit()

    # ---- fetch → batch ---------------------------------------------------------------------

    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        source = self._source
        assert source is not None
        batcher = self.batcher
        check_row = self.codec.check_row
        while not stop.is_set():
            room = self._backpressure()
            if source.paused:
                await self._wait_for_room()
                continue
            deadline = batcher.deadline()
            wait = POLL_IDLE_S if deadline is None else max(0.0, min(POLL_IDLE_S, deadline - time.monotonic()))
            data = await source.fetch(wait, max(1, min(self.max_poll_records, room)))
            if stop.is_set() and not data:
                break
            rejects: list[tuple[Any, Rejected]] = []
            count = 0
            for tp, records in data.items():
                self.tracker.track(tp, [r.offset for r in records])
                count += len(records)
                for record in records:
                    row = decode_value(record.value)
                    if type(row) is dict:
                        reason = check_row(row)
                        if reason is None:
                            batch = batcher.add(record, row)
                            if batch is not None:
                                self._dispatch(batch)
                            continue
                        rejects.append((record, Rejected(STAGE_VALIDATE, reason)))
                    else:
                        rejects.append((record, row))  # type: ignore[arg-type]
            if count:
                self._inflight += count
                self.metrics.consumed(count)
                self.metrics.inflight_records(self._inflight)
            if rejects:
                self._spawn(self._publish_rejects(rejects, self._generation))
            if batcher.due():
                batch = batcher.take()
                if batch is not None:
                    self._dispatch(batch)

    async def _wait_for_room(self) -> None:
        """While paused: send a lingering partial batch when due, else sleep until woken."""
        deadline = self.batcher.deadline()
        if deadline is not None and time.monotonic() >= deadline:
            batch = self.batcher.take()
            if batch is not None:
                self._dispatch(batch)
            return
        timeout = POLL_IDLE_S if deadline is None else max(0.0, min(POLL_IDLE_S, deadline - time.monotonic()))
        self._may_resume.clear()
        if self._halted is None and self._inflight <= self.low_water:
            return  # room was made just before the clear
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._may_resume.wait(), timeout)

    def _backpressure(self) -> int:
        """Pause or resume the consumer; returns how many more records may be fetched now."""
        source = self._source
        assert source is not None
        room = self.max_in_flight - self._inflight
        if self._halted is not None or room <= 0:
            if not source.paused:
                source.pause()
                self.metrics.paused(True)
        elif source.paused and self._inflight <= self.low_water:
            source.resume()
            self.metrics.paused(False)
        return room

    def _dispatch(self, batch: Batch) -> None:
        batch.published = asyncio.get_running_loop().create_future()
        self.order.admit(batch)
        self.metrics.batch(len(batch.records))
        self._spawn(self._process(batch, self._generation))

    def _spawn(self, coro: Any) -> None:
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- score → publish → ack -------------------------------------------------------------

    async def _process(self, batch: Batch, generation: int) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None and self._sink is not None
        try:
            outcomes, latency_ms = await dispatcher.score(batch.rows)
            messages, predicted, dead = self._messages(batch.records, outcomes, latency_ms)
            for earlier in batch.after:
                await earlier
            await self._sink.publish(messages)
            self._acknowledge(batch.records, generation, predicted, dead)
        finally:
            self.order.release(batch)
            if batch.published is not None and not batch.published.done():
                batch.published.set_result(None)
            self._leave(len(batch.records), generation)

    async def _publish_rejects(self, rejects: list[tuple[Any, Rejected]], generation: int) -> None:
        assert self._sink is not None
        try:
            topic, name = self.dead_letter_topic, self.name
            messages: list[Message] = [
                (topic, record.key, dumps(dead_letter_document(record, rejected, pipeline=name)),
                 record.headers) for record, rejected in rejects]
            await self._sink.publish(messages)
            records = [record for record, _ in rejects]
            self._acknowledge(records, generation, 0, len(records))
            self._count_dead_letters(r for _, r in rejects)
        finally:
            self._leave(len(rejects), generation)

    def _messages(self, records: list[Any], outcomes: list[Outcome],
                  latency_ms: float) -> tuple[list[Message], int, int]:
        name, codec = self.name, self.codec
        backend, deployment = codec.backend, codec.deployment
        predictions, explanations, dead_letter = (self.predictions_topic, self.explanations_topic,
                                                  self.dead_letter_topic)
        embed = explanations is None
        latency_ms = round(latency_ms, 3)
        messages: list[Message] = []
        append = messages.append
        dead: list[Rejected] = []
        for record, outcome in zip(records, outcomes, strict=False):
            key, headers = record.key, record.headers
            if isinstance(outcome, Rejected):
                dead.append(outcome)
                append((dead_letter, key, dumps(dead_letter_document(record, outcome, pipeline=name)),
                        headers))
                continue
            append((predictions, key, dumps(prediction_document(
                record, outcome, pipeline=name, backend=backend, deployment=deployment,
                latency_ms=latency_ms, embed_explanations=embed)), headers))
            if explanations is not None and outcome.explanations:
                append((explanations, key, dumps(explanation_document(record, outcome, pipeline=name)),
                        headers))
        if dead:
            self._count_dead_letters(dead)
        return messages, len(records) - len(dead), len(dead)

    def _count_dead_letters(self, rejected: Any) -> None:
        stages: dict[str, int] = {}
        for r in rejected:
            stages[r.stage] = stages.get(r.stage, 0) + 1
        for stage, n in stages.items():
            self.metrics.dead_letters(stage, n)

    def _acknowledge(self, records: list[Any], generation: int, predicted: int, dead: int) -> None:
        if generation != self._generation:
            return  # the partitions were revoked meanwhile; their records are someone else's now
        by_partition: dict[tuple[str, int], list[int]] = {}
        now_ms = time.time() * 1000.0
        latencies = []
        for record in records:
            tp = (record.topic, record.partition)
            offsets = by_partition.get(tp)
            if offsets is None:
                by_partition[tp] = [record.offset]
            else:
                offsets.append(record.offset)
            latencies.append(max(0.0, (now_ms - record.timestamp) / 1000.0))
        for tp, offsets in by_partition.items():
            self.tracker.ack(TopicPartition(*tp), offsets)
        if predicted:
            self.metrics.published("predicted", predicted)
        if dead:
            self.metrics.published("dead_letter", dead)
        self.metrics.end_to_end(latencies)

    def _leave(self, n: int, generation: int) -> None:
        if generation == self._generation:
            self._inflight -= n
            self.metrics.inflight_records(self._inflight)
            if self._inflight <= self.low_water and self._halted is None:
                self._may_resume.set()

    # ---- commits, rebalances, halts -------------------------------------------------------

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.commit_interval_s)
            await self._commit()
            await self._report_lag()

    async def _commit(self) -> None:
        source = self._source
        if source is None:
            return
        async with self._commit_lock:
            offsets = self.tracker.committable()
            if not offsets:
                return
            try:
                await source.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance is under way or the coordinator moved: the next commit (or the
                # revocation handler) retries; the records stay uncommitted, never lost.
                log.warning("commit_failed", extra={"pipeline": self.name, "error": repr(exc)})
                return
            self.tracker.committed(offsets)

    async def _report_lag(self) -> None:
        source = self._source
        if source is None:
            return
        for tp in source.assignment():
            lag = await source.lag(tp)
            if lag is not None:
                self.metrics.lag(tp.topic, tp.partition, lag)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go: finish (or abandon) in-flight work, commit, forget them."""
        if self._group is not None:
            await self._drain(self.shutdown_timeout_s)
        self.tracker.forget(self.tracker.partitions())
        self._generation += 1
        self._inflight = 0
        self.metrics.inflight_records(0)
        for tp in revoked:
            self.metrics.forget_partition(tp.topic, tp.partition)
        self.health.set_assigned(self.name, False)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._source is not None
        self._source.reapply_pause(assigned)
        self.health.set_assigned(self.name, True, partitions=len(assigned))
        log.info("partitions_assigned", extra={"pipeline": self.name,
                                               "partitions": sorted(tp.partition for tp in assigned)})

    def _on_publish_stall(self, reason: str | None) -> None:
        self.health.set_broker_ok(self.name, reason is None, reason)

    def _on_halt(self, reason: str | None) -> None:
        self._halted = reason
        self.health.set_stopped(self.name, reason)
        if reason is None:
            self._may_resume.set()
        else:
            self._backpressure()  # pause now, not at the fetch loop's next turn

