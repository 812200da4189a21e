"""A pipeline at work: its collaborators, built, and every task that moves a batch along.

One asyncio task group owns every task: the intake loop, the commit loop and one task per batch
(or group of rejects). A batch goes: scored by the prediction lane → its output records
(``outputs.Outputs``) → ``publish`` → explained by the deferred lane, if any → ``settle`` (the
delivery contract, ``gateway.delivery.contract``) → counted, when its outputs were delivered.

On stop, and before partitions are revoked, the flow stops fetching, sends its partial batch, gives
in-flight work ``shutdown_timeout_s`` to finish, publishes and commits what finished and abandons
the rest uncommitted (it is redelivered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from gateway.config import PipelineConfig
from gateway.delivery.contract import Delivery
from gateway.delivery.offsets import OffsetTracker
from gateway.kafka.client import TopicPartition
from gateway.kafka.source import KafkaSource
from gateway.runtime.health import Health
from gateway.runtime.metrics import PipelineMetrics
from gateway.scoring.challenger import Challenger
from gateway.scoring.dispatcher import Outcome
from gateway.scoring.lanes import Lanes
from gateway.stream.batcher import Batch, Batcher
from gateway.stream.intake import Intake, Rejects
from gateway.stream.ordering import KeyOrder, NoOrder
from gateway.stream.outputs import Outputs, Published, tally
from gateway.stream.records import InputRecord, Rejected

if TYPE_CHECKING:
    from gateway.tracing import PipelineTracing

log = logging.getLogger(__name__)
# Each closing step (the last commit, stopping the consumer, stopping the producer) gets this long
# after the drain: a coordinator that is gone (a broker just restarted) must not hold the exit past
# the pod's grace period. A commit cut short only means records read again (at least once).
CLOSE_STEP_TIMEOUT_S = 5.0
_TIMESTAMP = attrgetter("timestamp")


async def bounded(step: Awaitable[None], name: str, pipeline: str) -> None:
    """A closing step, given :data:`CLOSE_STEP_TIMEOUT_S`; past it the exit goes on without it."""
    try:
        await asyncio.wait_for(step, CLOSE_STEP_TIMEOUT_S)
    except TimeoutError:
        log.warning("close_step_timeout", extra={"pipeline": pipeline, "step": name,
                                                 "timeout_s": CLOSE_STEP_TIMEOUT_S})


class Flow:
    """The running pipeline; ``gateway.stream.pipeline.Pipeline`` builds what it is given."""

    def __init__(self, config: PipelineConfig, *, max_poll_records: int, metrics: PipelineMetrics, health: Health,
                 shutdown_timeout_s: float, tracker: OffsetTracker, lanes: Lanes, outputs: Outputs,
                 source: KafkaSource, delivery: Delivery, challenger: Challenger | None = None,
                 tracing: PipelineTracing | None = None) -> None:
        self.config = config
        self.name = config.name
        self.metrics = metrics
        self.health = health
        self.shutdown_timeout_s = shutdown_timeout_s
        self.tracker = tracker
        self.lanes = lanes
        self.outputs = outputs
        self.source = source
        self.delivery = delivery
        self.challenger = challenger
        self.tracing = tracing
        self._transactional = config.delivery == "exactly_once"
        batching = config.batching
        self.batcher = Batcher(batching.max_rows, batching.max_bytes, batching.linger_ms)
        self.fixed_linger = batching.fixed_linger
        # Under exactly_once each input partition's outputs go out in offset order, which is key order.
        keyed = config.ordering == "key" and config.delivery != "exactly_once"
        self.order = KeyOrder() if keyed else NoOrder()
        self.intake = Intake(source=source, batcher=self.batcher, codec=lanes.predict.codec, tracker=tracker,
                             metrics=metrics, max_in_flight=config.concurrency.max_in_flight_records,
                             max_poll_records=max_poll_records, holding=self._holding,
                             slot_free=self._slot_free, dispatch=self._dispatch, reject=self._reject)
        self._generation = 0
        self._scoring = 0  # batches handed to the prediction lane and not yet scored
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsent: dict[asyncio.Task[None], Batch] = {}  # batch tasks, for the drain
        self._group: asyncio.TaskGroup | None = None  # while run() runs: None means nothing to drain
        self._failure: BaseException | None = None  # from a rebalance callback, raised by run()
        self._revoked_at: float | None = None  # when this member last gave its partitions up
        self._halt = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch until ``stop`` is set, then drain and commit one last time."""
        committer_stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.delivery.run(committer_stop))
            following = group.create_task(self._follow(stop))
            try:
                await self.intake.run(self._halt)
                deadline = time.monotonic() + self.shutdown_timeout_s
                if self.challenger is not None:
                    self.challenger.stopping()
                await self._drain(self.shutdown_timeout_s)
            finally:
                committer_stop.set()
                following.cancel()
        self._group = None
        await bounded(self.delivery.commit(), "commit", self.name)
        if self._failure is not None:
            raise self._failure
        if self.challenger is not None:  # the champion's work is committed: comparisons get what is left
            await self.challenger.settle(deadline - time.monotonic())

    async def _follow(self, stop: asyncio.Event) -> None:
        """The intake stops on the caller's stop, or on a failure inside a rebalance callback."""
        await stop.wait()
        self._halt.set()

    async def _drain(self, timeout_s: float) -> None:
        """Send the partial batch, give in-flight work ``timeout_s`` to finish, abandon the rest."""
        self.intake.send_pending()
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
        await self.delivery.commit()

    def _spawn(self, coro: Coroutine[object, object, None], batch: Batch | None = None) -> None:
        group = self._group
        if group is None:  # the intake hands work on only while run() runs
            coro.close()
            raise RuntimeError(f"pipeline {self.name!r}: work handed on outside run()")
        task = group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if batch is not None:
            self._unsent[task] = batch
            task.add_done_callback(self._forget_batch)

    def _forget_batch(self, task: asyncio.Task[None]) -> None:
        self._unsent.pop(task, None)

    # ---- batch → score → publish → settle ------------------------------------------------------

    def _slot_free(self) -> bool:
        """Adaptive batching: a partial batch goes out at once while a request slot is free (rows
        accumulate only while every slot is busy); with ``fixed_linger`` it waits ``linger_ms``."""
        return not self.fixed_linger and self.lanes.predict.has_capacity(self._scoring)

    def _dispatch(self, batch: Batch) -> None:
        self._scoring += 1
        batch.published = asyncio.get_running_loop().create_future()
        if self.tracing is not None:
            batch.trace = self.tracing.start(batch.records, batch.opened)
        self.order.admit(batch)
        self.metrics.batch(len(batch.records))
        self._spawn(self._process(batch, self._generation), batch)

    def _reject(self, rejects: Rejects) -> None:
        self._spawn(self._publish_rejects(rejects, self._generation))

    async def _process(self, batch: Batch, generation: int) -> None:
        lanes, delivery = self.lanes, self.delivery
        records = batch.records
        try:
            try:
                outcomes, latency_ms = await lanes.predict.score(batch.rows, batch.sending, batch.trace)
            finally:
                self._scoring -= 1
            if self.challenger is not None:
                self.challenger.offer(records, batch.rows, outcomes, latency_ms)
            if len(self.batcher) and self._slot_free():
                self.intake.send_pending()  # a slot just freed: what waited for one goes now
            published = self.outputs.batch(records, outcomes, latency_ms, batch.trace)
            for earlier in batch.after:
                await earlier
            await delivery.publish(published, records)
            if self._transactional and published.trace is not None:
                published.trace.committing()  # in the transaction: what follows is the wait for its commit
            self._release(batch)
            if lanes.explain is not None:
                await self._explain(batch, outcomes)
            if generation == self._generation:
                self._count(records, published, outcomes, await delivery.settle(records), generation)
        finally:
            self._release(batch)
            self._leave(len(records), generation)

    async def _explain(self, batch: Batch, outcomes: Sequence[Outcome]) -> None:
        """The deferred lane: explain the batch's predicted (and sampled) rows, publish the records."""
        lane = self.lanes.explain
        if lane is None:
            return
        chosen = [i for i, outcome in enumerate(outcomes)
                  if not isinstance(outcome, Rejected) and lane.sampled(batch.records[i])]
        if not chosen:
            return
        trace = None if batch.trace is None else batch.trace.rows(chosen, "explanations")
        explained = await lane.explain([batch.rows[i] for i in chosen], trace)
        records = [batch.records[i] for i in chosen]
        await self.delivery.publish(self.outputs.explained(records, explained, batch.trace), records)

    async def _publish_rejects(self, rejects: Rejects, generation: int) -> None:
        records = [record for record, _ in rejects]
        try:
            published = self.outputs.rejects(rejects)
            await self.delivery.publish(published, records)
            if generation == self._generation:
                abandoned = await self.delivery.settle(records)
                self._count(records, published, [rejected for _, rejected in rejects], abandoned, generation)
        finally:
            self._leave(len(rejects), generation)

    def _count(self, records: Sequence[InputRecord], published: Published, outcomes: Sequence[Outcome],
               abandoned: frozenset[TopicPartition], generation: int) -> None:
        """Counters and end-to-end latency of the delivered outputs, and of those only."""
        if published.trace is not None:
            published.trace.published()
        if generation != self._generation:
            return  # the partitions were revoked meanwhile; their records are someone else's now
        if abandoned:
            kept = [i for i, record in enumerate(records) if (record.topic, record.partition) not in abandoned]
            if not kept:
                return
            records = [records[i] for i in kept]
            published = tally(outcomes[i] for i in kept)
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
        if generation == self._generation:
            self.intake.leave(n)

    # ---- rebalances and the circuit ----------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go: finish (or abandon) in-flight work, commit, forget them."""
        if revoked:
            self._revoked_at = time.monotonic()
        if self._group is not None:
            await self._drain(self.shutdown_timeout_s)
        await self.delivery.revoked(revoked)
        self.tracker.forget(self.tracker.partitions())
        self._generation += 1
        self.intake.forget()
        for tp in revoked:
            self.metrics.forget_partition(tp.topic, tp.partition)
        self.health.set_assigned(self.name, False)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        # exactly_once: read nothing until the partitions' producers have fenced their last owner
        # and the delivery has moved them to the offsets its last transaction committed.
        settle = self.config.delivery == "exactly_once"
        if settle:
            self.source.hold(assigned)
        try:
            await self.delivery.assigned(assigned)
        except Exception as exc:  # the consumer would only log it: stop the pipeline instead
            self._failure = exc
            self._halt.set()
            return
        if settle:
            self.source.release(assigned)
        self.source.reapply_pause(assigned)
        if self._revoked_at is not None:
            self.metrics.partitions_unowned(time.monotonic() - self._revoked_at)
            self._revoked_at = None
        self._share_the_rate(len(assigned))
        self.health.set_assigned(self.name, True, partitions=len(assigned))
        log.info("partitions_assigned", extra={"pipeline": self.name,
                                               "partitions": sorted(tp.partition for tp in assigned)})

    def _share_the_rate(self, assigned: int) -> None:
        """``rate_limit_scope: group``: this replica's share of the group's budget is its share of the
        input partitions (no coordination service: fair when partitions carry similar traffic)."""
        backend = self.config.backend
        if backend.rate_limit_scope != "group" or not assigned:
            return
        limiter, budget = self.lanes.predict.limiter, backend.rate_limit_per_minute
        total = self.source.partition_count()
        if limiter is None or not total or budget is None:
            return
        limiter.set_rate(budget * min(1.0, assigned / total))
        log.info("rate_limit_shared", extra={"pipeline": self.name, "partitions": assigned, "of": total,
                                             "per_minute": round(limiter.per_minute, 3)})

    def _holding(self) -> bool:
        return self.lanes.predict.holding

    def circuit_moved(self) -> None:
        """The breaker moved: consumption pauses while it holds requests, and resumes at once after."""
        if self._holding():
            self.intake.backpressure()  # pause now, not at the fetch loop's next turn
        else:
            self.intake.wake()
