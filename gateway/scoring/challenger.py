"""The challenger lane: a share of the champion's scored batches scored again on a second
deployment, and the two answers published side by side as comparison records.

Nothing here can slow the champion down: :meth:`Challenger.offer` is synchronous and returns at
once. The sampled records of several champion batches are gathered into one request of up to
``batching.max_rows`` rows, sent when full or ``challenger.linger_ms`` after its first record came
(a sample of a tenth would otherwise cost as many requests as the champion's, each a tenth as full).
A request goes out only when a challenger slot is free and its breaker is not open; otherwise its
records are skipped (counted by reason), never queued. Challenger requests go out once, without
retries, through a dispatcher of their own (own HTTP session, breaker and slots), and a row the
challenger refuses is a comparison with ``refused`` set, never a dead letter. Comparison records
are published with the pipeline's producer but are not part of any input offset's commit: a crash
may lose the comparisons of batches in flight or waiting to fill a request (they are a measurement,
not an output anyone waits for); it never delays or repeats a champion output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from gateway.backends.factory import make_codec
from gateway.config import PipelineConfig
from gateway.config.models import ChallengerConfig
from gateway.json_types import Row
from gateway.kafka.sink import Message
from gateway.runtime.comparison_metrics import ComparisonFamilies, ComparisonMetrics
from gateway.scoring.breaker import State, Transition
from gateway.scoring.dispatcher import Dispatcher, Outcome
from gateway.scoring.lanes import make_dispatcher, request_limit
from gateway.stream.comparisons import Compared, Side, comparisons, sampled_by_key
from gateway.stream.records import STAGE_NOT_PREDICTED, InputRecord, Rejected

log = logging.getLogger(__name__)

# A refusal that is the row's own (the model cannot score it) rather than the challenger being
# unavailable: compared, with ``refused`` set.
_DATA_STATUSES = frozenset((400, 413, 422))

Publish = Callable[[Sequence[Message]], Awaitable[None]]


def challenger_settings(pipeline: PipelineConfig, challenger: ChallengerConfig) -> PipelineConfig:
    """The pipeline as the challenger's dispatcher sees it: the challenger's backend, slots and
    breaker; one attempt with the challenger's timeout; outages answered, never waited out."""
    retry = pipeline.retry.model_copy(update={
        "max_attempts": 1, "on_backend_outage": "dead_letter", "request_timeout_s": challenger.request_timeout_s})
    return pipeline.model_copy(update={
        "backend": challenger.backend, "concurrency": challenger.concurrency,
        "circuit_breaker": challenger.circuit_breaker, "retry": retry,
        "explanations": pipeline.explanations.model_copy(update={"mode": "inline"})})


class RequestLatency:
    """The dispatcher's metrics seam for the challenger: only request latency is kept (by status);
    retries, slots and circuit changes of the challenger are not the pipeline's."""

    def __init__(self, metrics: ComparisonMetrics) -> None:
        self._metrics = metrics

    def request(self, backend: str, explanations: str, status: str, seconds: float,
                trace_id: str | None = None) -> None:
        self._metrics.request(status, seconds)

    def retry(self, reason: str) -> None:
        return None

    def requests_in_flight(self, delta: int) -> None:
        return None

    def slow_explanation(self, kind: str) -> None:
        return None

    def concurrency_limit(self, limit: int) -> None:
        return None

    def circuit(self, state: str, changed: bool = True) -> None:
        return None


def quiet_circuit(change: Transition) -> None:
    """The challenger's breaker moving changes nothing of the pipeline's readiness or consumption."""
    log.info("challenger_circuit", extra={"state": change.after.name.lower(), "reason": change.reason})


def unavailable(outcome: Outcome) -> bool:
    """A refusal that says the challenger could not answer (timeouts, 429, 5xx, retries out), not
    that the row is unusable."""
    if not isinstance(outcome, Rejected) or outcome.stage == STAGE_NOT_PREDICTED:
        return False
    return outcome.status not in _DATA_STATUSES


@dataclass(slots=True)
class Sampled:
    """The sampled records of one champion batch, waiting for a challenger request."""

    records: list[InputRecord]
    rows: list[Row]
    champion: list[Outcome]
    champion_ms: float


class Challenger:
    def __init__(self, *, pipeline: str, config: ChallengerConfig, dispatcher: Dispatcher, slots: int,
                 metrics: ComparisonMetrics, publish: Publish, topic: str, champion: Side,
                 challenger: Side, max_rows: int) -> None:
        self.pipeline = pipeline
        self.config = config
        self.dispatcher = dispatcher
        self.slots = slots
        self.max_rows = max_rows
        self.metrics = metrics
        self._publish = publish
        self._topic = topic
        self._champion = champion
        self._challenger = challenger
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._pending: list[Sampled] = []  # the next request's records, by champion batch
        self._pending_rows = 0
        self._linger: asyncio.TimerHandle | None = None
        self._stopping = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Challenger]:
        """The scope in which comparisons run; leaving it cancels those still in flight."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                yield self
            finally:
                self._group = None
                self._flush()  # counted as skipped at shutdown: no request starts any more
                for task in list(self._tasks):
                    task.cancel()

    def stopping(self) -> None:
        """The pipeline is stopping: what waits to fill a request goes now, and so does every later sample."""
        self._stopping = True
        self._flush()

    async def settle(self, timeout_s: float) -> None:
        """At shutdown, once the champion's work is committed: the comparisons in flight get what is
        left of the drain's time; those still out when the scope ends are cancelled."""
        if self._tasks and timeout_s > 0:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    def offer(self, records: Sequence[InputRecord], rows: Sequence[Row], outcomes: Sequence[Outcome],
              latency_ms: float) -> None:
        """A champion batch was scored: its sampled records join the next challenger request."""
        rate = self.config.sample_rate
        chosen = range(len(records)) if rate >= 1.0 else [
            i for i, record in enumerate(records) if sampled_by_key(record, rate)]
        if not chosen:
            return
        if self._pending_rows + len(chosen) > self.max_rows:
            self._flush()  # no request carries more rows than the champion's
        self._pending.append(Sampled([records[i] for i in chosen], [rows[i] for i in chosen],
                                     [outcomes[i] for i in chosen], latency_ms))
        self._pending_rows += len(chosen)
        linger_s = self.config.linger_ms / 1000.0
        if self._pending_rows >= self.max_rows or not linger_s or self._stopping or self._group is None:
            self._flush()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(linger_s, self._flush)

    def _flush(self) -> None:
        """Send the pending records in one request if the challenger can take it now, else skip them."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        parts, rows = self._pending, self._pending_rows
        if not parts:
            return
        self._pending, self._pending_rows = [], 0
        group = self._group
        if group is None:
            self.metrics.skipped("shutdown", rows)
        elif self.dispatcher.breaker.state is State.OPEN:
            self.metrics.skipped("circuit_open", rows)
        elif len(self._tasks) >= self.slots:
            self.metrics.skipped("busy", rows)
        else:
            task = group.create_task(self._compare(parts, rows))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _compare(self, parts: list[Sampled], count: int) -> None:
        try:
            theirs, latency_ms = await self.dispatcher.score([row for part in parts for row in part.rows])
        except asyncio.CancelledError:
            self.metrics.skipped("shutdown", count)
            raise
        other = Side(self._challenger.backend, self._challenger.deployment, round(latency_ms, 3))
        compared: list[Compared] = []
        start = 0
        for part in parts:
            compared.append(self._compared(part, theirs[start:start + len(part.rows)], other))
            start += len(part.rows)
        kept = sum(len(c.messages) for c in compared)
        if kept < count:
            self.metrics.skipped("unavailable", count - kept)
        if not kept:
            return
        try:
            await self._publish([message for c in compared for message in c.messages])
        except asyncio.CancelledError:
            self.metrics.skipped("shutdown", kept)
            raise
        except Exception as exc:  # the broker refused: the champion's own publishes will say so
            log.warning("comparisons_not_published", extra={"pipeline": self.pipeline, "error": repr(exc)})
            self.metrics.skipped("publish_failed", kept)
            return
        for c in compared:
            self.metrics.compared(c.both, c.agreed, c.differences)

    def _compared(self, part: Sampled, theirs: Sequence[Outcome], other: Side) -> Compared:
        """One champion batch's share of a challenger answer, as comparison records (the rows the
        challenger could not answer left out)."""
        keep = [i for i, outcome in enumerate(theirs) if not unavailable(outcome)]
        ours = Side(self._champion.backend, self._champion.deployment, round(part.champion_ms, 3))
        return comparisons([part.records[i] for i in keep], [part.champion[i] for i in keep],
                           [theirs[i] for i in keep], pipeline=self.pipeline, topic=self._topic,
                           sides=(ours, other), tolerance=self.config.tolerance)


def make_challenger(pipeline: PipelineConfig, session: aiohttp.ClientSession, *, families: ComparisonFamilies,
                    publish: Publish, champion: Side) -> Challenger:
    """The challenger of ``pipeline`` (which must have one), publishing through ``publish``."""
    config = pipeline.challenger
    assert config is not None and pipeline.outputs.comparisons is not None
    settings = challenger_settings(pipeline, config)
    codec = make_codec(settings, explain=False)
    metrics = ComparisonMetrics(families, pipeline.name, champion.deployment, codec.deployment)
    dispatcher = make_dispatcher(settings, codec, session, metrics=RequestLatency(metrics), on_circuit=quiet_circuit)
    return Challenger(pipeline=pipeline.name, config=config, dispatcher=dispatcher, slots=request_limit(settings),
                      metrics=metrics, publish=publish, topic=pipeline.outputs.comparisons, champion=champion,
                      challenger=Side(codec.backend, codec.deployment, 0.0), max_rows=pipeline.batching.max_rows)
