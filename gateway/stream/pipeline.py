"""One pipeline: input topic → batches → scoring → output topics, with offsets committed behind.

The flow, and where each step lives:
    intake.Intake                   fetch (paused under backpressure), decode, check, batch
    batcher.Batcher                 rows → ``Batch`` by max_rows / max_bytes / linger_ms
    ordering.KeyOrder               which earlier batches a batch must publish after
    scoring.lanes.make_lanes        the prediction lane (and the deferred explanation lane)
    scoring.dispatcher.Dispatcher   encode → HTTP → decode, with the breaker, retries, splits, pacing
    outputs.Outputs                 output records of PRODUCT.md §4, addressed to their topics
    delivery.contract.Delivery      publish, settle, commit: at least once or exactly once
    delivery.offsets.OffsetTracker  commit only what is contiguous and settled
    kafka.client                    the consumer and producers, behind the Kafka seam
    scoring.challenger              with ``challenger``: a sample scored again, for comparison only

:class:`Pipeline` builds the collaborators in one place (:meth:`Pipeline.run`), in the order each
needs the others, hands them to a :class:`~gateway.stream.flow.Flow` that does the work, and closes
them in reverse order, each closing step bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from gateway.config import KafkaConfig, PipelineConfig
from gateway.delivery.at_least_once import AtLeastOnceDelivery
from gateway.delivery.contract import Delivery
from gateway.delivery.exactly_once import ExactlyOnceDelivery
from gateway.delivery.offsets import OffsetTracker
from gateway.kafka.client import KafkaClients
from gateway.kafka.library import make_clients
from gateway.kafka.sink import KafkaSink
from gateway.kafka.source import KafkaSource
from gateway.runtime.comparison_metrics import ComparisonFamilies
from gateway.runtime.health import Health
from gateway.runtime.metrics import PipelineMetrics
from gateway.scoring.breaker import State, Transition
from gateway.scoring.challenger import Challenger, challenger_settings, make_challenger
from gateway.scoring.lanes import Lanes, make_lanes, scoring_session
from gateway.stream.comparisons import Side
from gateway.stream.flow import Flow, bounded
from gateway.stream.outputs import Outputs

log = logging.getLogger(__name__)

CircuitCallback = Callable[[Transition], None]
# The scoring lanes for a pipeline, open for as long as the context lasts.
LanesFactory = Callable[[PipelineConfig, PipelineMetrics, CircuitCallback], AbstractAsyncContextManager[Lanes]]


@contextlib.asynccontextmanager
async def http_lanes(config: PipelineConfig, metrics: PipelineMetrics, on_circuit: CircuitCallback
                     ) -> AsyncIterator[Lanes]:
    """The lanes over one HTTP session to the pipeline's backend."""
    async with scoring_session(config) as session:
        yield make_lanes(config, session, metrics=metrics, on_circuit=on_circuit)


def _no_flow() -> None:
    """Before the flow runs, a circuit change has no intake to pause or wake."""


class Pipeline:
    def __init__(self, config: PipelineConfig, kafka: KafkaConfig, *, metrics: PipelineMetrics,
                 health: Health, shutdown_timeout_s: float, clients: KafkaClients | None = None,
                 lanes: LanesFactory = http_lanes, comparisons: ComparisonFamilies | None = None) -> None:
        self.config = config
        self.name: str = config.name
        self.kafka = kafka
        self.metrics = metrics
        self.health = health
        self.shutdown_timeout_s = shutdown_timeout_s
        self.clients = clients if clients is not None else make_clients(kafka)
        self._make_lanes = lanes
        self._comparisons = comparisons  # the comparison metrics, when a challenger is configured
        self.tracker = OffsetTracker()
        self._circuit_moved: Callable[[], None] = _no_flow  # the running flow's, once there is one

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain: finish in-flight work, publish, commit."""
        cfg = self.config
        async with self._make_lanes(cfg, self.metrics, self._on_circuit) as lanes:
            producer = self.clients.producer()
            try:  # stop() also after a failed start(): it owns connections and tasks either way
                await producer.start()
                sink = KafkaSink(producer, on_stall=self._on_publish_stall)
                outputs = self._outputs(lanes)
                await sink.prepare([t for t in (outputs.predictions, outputs.explanations, outputs.dead_letter,
                                                cfg.outputs.comparisons) if t])
                source = KafkaSource(self.clients.consumer(read_committed=cfg.delivery == "exactly_once"),
                                     cfg.input_topic)
                delivery = self._delivery(sink, source)
                await delivery.start()
                async with self._challenger(sink, outputs) as challenger:
                    flow = Flow(cfg, max_poll_records=self.kafka.max_poll_records, metrics=self.metrics,
                                health=self.health, shutdown_timeout_s=self.shutdown_timeout_s,
                                tracker=self.tracker, lanes=lanes, outputs=outputs, source=source,
                                delivery=delivery, challenger=challenger)
                    self._circuit_moved = flow.circuit_moved
                    try:
                        await source.start(flow.on_revoked, flow.on_assigned)
                        await flow.run(stop)
                    finally:
                        self._circuit_moved = _no_flow
                        await self._bounded(source.stop(), "stop_consumer")
                        await delivery.close()
            finally:
                await self._bounded(producer.stop(), "stop_producer")
        log.info("pipeline_stopped", extra={"pipeline": self.name})

    @contextlib.asynccontextmanager
    async def _challenger(self, sink: KafkaSink, outputs: Outputs) -> AsyncIterator[Challenger | None]:
        """With ``challenger`` configured: its own HTTP session and lane, for as long as the run lasts."""
        cfg, families = self.config, self._comparisons
        if cfg.challenger is None or families is None:
            yield None
            return
        async with scoring_session(challenger_settings(cfg, cfg.challenger)) as session:
            challenger = make_challenger(cfg, session, families=families, publish=sink.publish,
                                         champion=Side(outputs.backend, outputs.deployment, 0.0))
            async with challenger.running():
                yield challenger

    async def _bounded(self, step: Awaitable[None], name: str) -> None:
        await bounded(step, name, self.name)

    def _outputs(self, lanes: Lanes) -> Outputs:
        codec, outputs = lanes.predict.codec, self.config.outputs
        return Outputs(pipeline=self.name, backend=codec.backend, deployment=codec.deployment,
                       predictions=outputs.predictions, dead_letter=outputs.dead_letter,
                       explanations=outputs.explanations, explanations_with_predictions=lanes.explain is None)

    def _delivery(self, sink: KafkaSink, source: KafkaSource) -> Delivery:
        cfg = self.config
        if cfg.delivery == "exactly_once":
            return ExactlyOnceDelivery(pipeline=self.name, group_id=self.kafka.group_id, clients=self.clients,
                                       source=source, tracker=self.tracker, metrics=self.metrics,
                                       interval_s=cfg.transaction_interval_ms / 1000.0)
        return AtLeastOnceDelivery(pipeline=self.name, sink=sink, source=source, tracker=self.tracker,
                                   metrics=self.metrics, commit_interval_s=self.kafka.commit_interval_ms / 1000.0)

    # ---- health ------------------------------------------------------------------------------

    def _on_publish_stall(self, reason: str | None) -> None:
        self.health.set_broker_ok(self.name, reason is None, reason)

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
        self._circuit_moved()
