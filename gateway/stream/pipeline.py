"""One pipeline: input topic → batches → scoring → output topics, with offsets committed behind.

The flow, and where each step lives:
    intake.Intake                   fetch (paused under backpressure), decode, check, batch
    batcher.Batcher                 rows → ``Batch`` by max_rows / max_bytes / linger_ms
    ordering.KeyOrder               which earlier batches a batch must publish after
    lanes.make_lanes                the prediction lane (and the deferred explanation lane)
    dispatcher.Dispatcher.score     encode → HTTP → decode, with the breaker, retries, splits, pacing
    outputs.Outputs                 output records of PRODUCT.md §4, addressed to their topics
    delivery.AtLeastOnceDelivery    publish, wait for the broker's acks, acknowledge, commit behind
    transactions.ExactlyOnceDelivery  or: outputs and offsets in one Kafka transaction per partition
    offsets.OffsetTracker           commit only what is contiguous and acknowledged

One asyncio task group per pipeline owns every task: the intake loop, the commit loop and one task
per batch (or group of rejects). On stop, and before partitions are revoked, the pipeline stops
fetching, sends its partial batch, gives in-flight work ``shutdown_timeout_s`` to finish, publishes
and commits what finished and abandons the rest uncommitted (it is redelivered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine, Sequence
from operator import attrgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.config import KafkaConfig, PipelineConfig
from gateway.delivery.at_least_once import AtLeastOnceDelivery, Delivery
from gateway.delivery.exactly_once import ExactlyOnceDelivery
from gateway.delivery.offsets import OffsetTracker
from gateway.kafka.connection import consumer_options, producer_options, start_client
from gateway.kafka.sink import KafkaSink
from gateway.kafka.source import KafkaSource
from gateway.runtime.health import Health
from gateway.runtime.metrics import PipelineMetrics
from gateway.scoring.breaker import State, Transition
from gateway.scoring.lanes import Lanes, make_lanes, scoring_session
from gateway.stream.batcher import Batch, Batcher
from gateway.stream.intake import Intake, Rejects
from gateway.stream.ordering import KeyOrder, NoOrder
from gateway.stream.outputs import Outputs, Published
from gateway.stream.records import InputRecord, Rejected

log = logging.getLogger(__name__)
# Each closing step (the last commit, stopping the consumer, stopping the producer) gets this long
# after the drain: a coordinator that is gone (a broker just restarted) must not hold the exit past
# the pod's grace period. A commit cut short only means records read again (at least once).
CLOSE_STEP_TIMEOUT_S = 5.0
_TIMESTAMP = attrgetter("timestamp")


class Pipeline:
    def __init__(self, config: PipelineConfig, kafka: KafkaConfig, *, metrics: PipelineMetrics,
                 health: Health, shutdown_timeout_s: float) -> None:
        self.config = config
        self.name: str = config.name
        self.kafka = kafka
        self.metrics = metrics
        self.health = health
        self.shutdown_timeout_s = shutdown_timeout_s
        self.tracker = OffsetTracker()
        batching = config.batching
        self.batcher = Batcher(batching.max_rows, batching.max_bytes, batching.linger_ms)
        self.fixed_linger = batching.fixed_linger
        # Under exactly_once each input partition's outputs go out in offset order, which is key order.
        keyed = config.ordering == "key" and config.delivery != "exactly_once"
        self.order = KeyOrder() if keyed else NoOrder()
        self._generation = 0
        self._scoring = 0  # batches handed to the prediction lane and not yet scored
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsent: dict[asyncio.Task[None], Batch] = {}  # batch tasks, for the drain
        self._group: asyncio.TaskGroup | None = None
        self._lanes: Lanes | None = None
        self._outputs: Outputs | None = None
        self._intake: Intake | None = None
        self._delivery: Delivery | None = None
        self._source: KafkaSource | None = None
        self._failure: BaseException | None = None  # from a rebalance callback, raised by run()
        self._revoked_at: float | None = None  # when this member last gave its partitions up
        self._halt = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain: finish in-flight work, publish, commit."""
        cfg = self.config
        async with scoring_session(cfg) as session:
            lanes = self._lanes = make_lanes(cfg, session, metrics=self.metrics, on_circuit=self._on_circuit)
            codec, outputs = lanes.predict.codec, cfg.outputs
            self._outputs = Outputs(pipeline=self.name, backend=codec.backend, deployment=codec.deployment,
                                    predictions=outputs.predictions, dead_letter=outputs.dead_letter,
                                    explanations=outputs.explanations,
                                    explanations_with_predictions=lanes.explain is None)
            producer = AIOKafkaProducer(**producer_options(self.kafka))
            try:  # stop() also after a failed start(): it owns connections and tasks either way
                await start_client(producer.start(), self.kafka)
                sink = KafkaSink(producer, on_stall=self._on_publish_stall)
                await sink.prepare([t for t in (outputs.predictions, outputs.explanations, outputs.dead_letter) if t])
                exactly_once = cfg.delivery == "exactly_once"
                consumer = AIOKafkaConsumer(**consumer_options(self.kafka),
                                            isolation_level="read_committed" if exactly_once else "read_uncommitted")
                source = self._source = KafkaSource(consumer, cfg.input_topic)
                self._delivery = self._make_delivery(sink, source)
                if isinstance(self._delivery, ExactlyOnceDelivery):
                    await self._delivery.check()
                self._intake = Intake(source=source, batcher=self.batcher, codec=codec, tracker=self.tracker,
                                      metrics=self.metrics, max_in_flight=cfg.concurrency.max_in_flight_records,
                                      max_poll_records=self.kafka.max_poll_records, holding=self._holding,
                                      slot_free=self._slot_free, dispatch=self._dispatch, reject=self._reject)
                try:
                    await start_client(source.start(self._on_revoked, self._on_assigned), self.kafka)
                    await self._run_tasks(stop)
                finally:
                    await self._bounded(source.stop(), "stop_consumer")
                    await self._delivery.close()
            finally:
                await self._bounded(producer.stop(), "stop_producer")
        log.info("pipeline_stopped", extra={"pipeline": self.name})

    async def _bounded(self, step: Awaitable[None], name: str) -> None:
        """A closing step, given :data:`CLOSE_STEP_TIMEOUT_S`; past it the exit goes on without it."""
        try:
            await asyncio.wait_for(step, CLOSE_STEP_TIMEOUT_S)
        except TimeoutError:
            log.warning("close_step_timeout", extra={"pipeline": self.name, "step": name,
                                                     "timeout_s": CLOSE_STEP_TIMEOUT_S})

    def _make_delivery(self, sink: KafkaSink, source: KafkaSource) -> Delivery:
        cfg = self.config
        if cfg.delivery == "exactly_once":
            return ExactlyOnceDelivery(pipeline=self.name, kafka=self.kafka, source=source, tracker=self.tracker,
                                       metrics=self.metrics, interval_s=cfg.transaction_interval_ms / 1000.0)
        return AtLeastOnceDelivery(pipeline=self.name, sink=sink, source=source, tracker=self.tracker,
                                   metrics=self.metrics, commit_interval_s=self.kafka.commit_interval_ms / 1000.0)

    async def _run_tasks(self, stop: asyncio.Event) -> None:
        intake, delivery = self._intake, self._delivery
        assert intake is not None and delivery is not None
        committer_stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(delivery.run(committer_stop))
            following = group.create_task(self._follow(stop))
            try:
                await intake.run(self._halt)
                await self._drain(self.shutdown_timeout_s)
            finally:
                committer_stop.set()
                following.cancel()
        self._group = None
        await self._bounded(delivery.commit(), "commit")
        if self._failure is not None:
            raise self._failure

    async def _follow(self, stop: asyncio.Event) -> None:
        """The intake stops on the caller's stop, or on a failure inside a rebalance callback."""
        await stop.wait()
        self._halt.set()

    async def _drain(self, timeout_s: float) -> None:
        """Send the partial batch, give in-flight work ``timeout_s`` to finish, abandon the rest."""
        assert self._intake is not None and self._delivery is not None
        self._intake.send_pending()
        # Batches no request of which went out yet (waiting for a slot, the rate limiter or the
        # breaker) are abandoned at once: no backend worked on them, and they are redelivered.
        for task, batch in list(self._unsent.items()):
            if not batch.sent:
                task.cancel()
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout_s)
            for task in still:
                task.cancel()
            if still:
                log.warning("drain_timeout", extra={"pipeline": self.name, "abandoned_tasks": len(still)})
                await asyncio.wait(still)
        await self._delivery.commit()

    def _spawn(self, coro: Coroutine[Any, Any, None], batch: Batch | None = None) -> None:
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if batch is not None:
            self._unsent[task] = batch
            task.add_done_callback(self._forget_batch)

    def _forget_batch(self, task: asyncio.Task[None]) -> None:
        self._unsent.pop(task, None)

    # ---- batch → score → publish → acknowledge -----------------------------------------------

    def _slot_free(self) -> bool:
        """Adaptive batching: a partial batch goes out at once while a request slot is free (rows
        accumulate only while every slot is busy); with ``fixed_linger`` it waits ``linger_ms``."""
        lanes = self._lanes
        return not self.fixed_linger and lanes is not None and lanes.predict.has_capacity(self._scoring)

    def _dispatch(self, batch: Batch) -> None:
        self._scoring += 1
        batch.published = asyncio.get_running_loop().create_future()
        self.order.admit(batch)
        self.metrics.batch(len(batch.records))
        self._spawn(self._process(batch, self._generation), batch)

    def _reject(self, rejects: Rejects) -> None:
        self._spawn(self._publish_rejects(rejects, self._generation))

    async def _process(self, batch: Batch, generation: int) -> None:
        lanes, outputs, delivery, intake = self._lanes, self._outputs, self._delivery, self._intake
        assert lanes is not None and outputs is not None and delivery is not None and intake is not None
        records = batch.records
        try:
            try:
                outcomes, latency_ms = await lanes.predict.score(batch.rows, batch.sending)
            finally:
                self._scoring -= 1
            if len(self.batcher) and self._slot_free():
                intake.send_pending()  # a slot just freed: what waited for one goes now
            published = outputs.batch(records, outcomes, latency_ms)
            for earlier in batch.after:
                await earlier
            await delivery.publish(published, records)
            self._published(records, published, generation)
            self._release(batch)
            if lanes.explain is not None:
                await self._explain(batch, outcomes)
            if generation == self._generation:
                delivery.acknowledge(records)
        finally:
            self._release(batch)
            self._leave(len(records), generation)

    async def _explain(self, batch: Batch, outcomes: Sequence[object]) -> None:
        """The deferred lane: explain the batch's predicted (and sampled) rows, publish the records."""
        lanes, outputs, delivery = self._lanes, self._outputs, self._delivery
        assert lanes is not None and lanes.explain is not None and outputs is not None and delivery is not None
        lane = lanes.explain
        chosen = [i for i, outcome in enumerate(outcomes)
                  if not isinstance(outcome, Rejected) and lane.sampled(batch.records[i])]
        if not chosen:
            return
        explained = await lane.explain([batch.rows[i] for i in chosen])
        records = [batch.records[i] for i in chosen]
        await delivery.publish(outputs.explained(records, explained), records)

    async def _publish_rejects(self, rejects: Rejects, generation: int) -> None:
        outputs, delivery = self._outputs, self._delivery
        assert outputs is not None and delivery is not None
        records = [record for record, _ in rejects]
        try:
            published = outputs.rejects(rejects)
            await delivery.publish(published, records)
            self._published(records, published, generation)
            if generation == self._generation:
                delivery.acknowledge(records)
        finally:
            self._leave(len(rejects), generation)

    def _published(self, records: Sequence[InputRecord], published: Published, generation: int) -> None:
        """Counters and end-to-end latency once the broker has the batch's records."""
        if generation != self._generation:
            return  # the partitions were revoked meanwhile; their records are someone else's now
        metrics = self.metrics
        if published.predicted:
            metrics.published("predicted", published.predicted)
        for stage, n in published.dead_by_stage.items():
            metrics.dead_letters(stage, n)
        if published.dead:
            metrics.published("dead_letter", published.dead)
        metrics.end_to_end_since(time.time() * 1000.0, list(map(_TIMESTAMP, records)))

    def _release(self, batch: Batch) -> None:
        """Later batches sharing a key may publish now."""
        if batch.published is not None and not batch.published.done():
            self.order.release(batch)
            batch.published.set_result(None)

    def _leave(self, n: int, generation: int) -> None:
        if generation == self._generation and self._intake is not None:
            self._intake.leave(n)

    # ---- rebalances and the circuit ----------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go: finish (or abandon) in-flight work, commit, forget them."""
        if revoked:
            self._revoked_at = time.monotonic()
        if self._group is not None:
            await self._drain(self.shutdown_timeout_s)
        if self._delivery is not None:
            await self._delivery.revoked(revoked)
        self.tracker.forget(self.tracker.partitions())
        self._generation += 1
        if self._intake is not None:
            self._intake.forget()
        for tp in revoked:
            self.metrics.forget_partition(tp.topic, tp.partition)
        self.health.set_assigned(self.name, False)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._source is not None and self._delivery is not None
        # exactly_once: read nothing until the partitions' producers have fenced their last owner,
        # then start from the offsets its last transaction committed (see KafkaSource.seek_to_committed).
        settle = isinstance(self._delivery, ExactlyOnceDelivery)
        if settle:
            self._source.hold(assigned)
        try:
            await self._delivery.assigned(assigned)
            if settle:
                await self._source.seek_to_committed(assigned)
        except Exception as exc:  # aiokafka would only log it: stop the pipeline instead
            self._failure = exc
            self._halt.set()
            return
        if settle:
            self._source.release(assigned)
        self._source.reapply_pause(assigned)
        if self._revoked_at is not None:
            self.metrics.partitions_unowned(time.monotonic() - self._revoked_at)
            self._revoked_at = None
        self._share_the_rate(len(assigned))
        self.health.set_assigned(self.name, True, partitions=len(assigned))
        log.info("partitions_assigned", extra={"pipeline": self.name,
                                               "partitions": sorted(tp.partition for tp in assigned)})

    def _on_publish_stall(self, reason: str | None) -> None:
        self.health.set_broker_ok(self.name, reason is None, reason)

    def _share_the_rate(self, assigned: int) -> None:
        """``rate_limit_scope: group``: this replica's share of the group's budget is its share of the
        input partitions (no coordination service: fair when partitions carry similar traffic)."""
        backend, lanes, source = self.config.backend, self._lanes, self._source
        if backend.rate_limit_scope != "group" or lanes is None or source is None or not assigned:
            return
        limiter, total, budget = lanes.predict.limiter, source.partition_count(), backend.rate_limit_per_minute
        if limiter is None or not total or budget is None:
            return
        limiter.set_rate(budget * min(1.0, assigned / total))
        log.info("rate_limit_shared", extra={"pipeline": self.name, "partitions": assigned, "of": total,
                                             "per_minute": round(limiter.per_minute, 3)})

    def _holding(self) -> bool:
        return self._lanes is not None and self._lanes.predict.holding

    def _on_circuit(self, change: Transition) -> None:
        """The breaker moved: readiness says why, and consumption pauses while it holds requests."""
        state = change.after
        refused = state is State.OPEN and change.refused
        self.health.set_stopped(self.name, change.reason if refused else None)
        if state is State.CLOSED or refused:
            self.health.set_circuit(self.name, None)
        elif state is State.OPEN:
            self.health.set_circuit(self.name, f"circuit open: {change.reason}")
        else:
            self.health.set_circuit(self.name, "circuit half-open: traffic ramping back after a successful probe")
        intake = self._intake
        if intake is None:
            return
        if self._holding():
            intake.backpressure()  # pause now, not at the fetch loop's next turn
        else:
            intake.wake()
