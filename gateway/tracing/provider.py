"""The process's tracer provider, built from the ``tracing:`` section, and each pipeline's tracing.

One provider per gateway process (never OpenTelemetry's global one): a resource naming the service,
a sampler that follows the parent's decision (the ratio for records without context is drawn by
:class:`~gateway.tracing.batch.PipelineTracing`, once per record, without a span), and with
``exporter: otlp`` a batching processor that exports over OTLP/HTTP from its own thread, off the
event loop. :meth:`Tracing.shutdown` flushes what is queued.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from gateway import __version__
from gateway.config import PipelineConfig
from gateway.config.tracing import TracingConfig
from gateway.runtime.metrics import PipelineMetrics
from gateway.tracing.batch import PipelineTracing

TRACES_PATH = "/v1/traces"
EXPORT_TIMEOUT_S = 10.0
# OpenTelemetry's default of 128 links would cut a request's links to its rows' records short.
MIN_LINKS = 128
# Where the SDK's batching processor says it dropped a span because its queue was full.
_QUEUE_LOGGER = "opentelemetry.sdk._shared_internal"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector address (``http://collector:4318``)."""
    path = urlsplit(endpoint).path.rstrip("/")
    return endpoint if path.endswith(TRACES_PATH) else endpoint.rstrip("/") + TRACES_PATH


class _OncePerMinute(logging.Filter):
    """Lets one of the exporter's "queue full, dropping" warnings through per minute: at a high
    ``sample_ratio`` it would otherwise log once per span dropped."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval_s
        return True


class Tracing:
    """The gateway's tracer provider; :meth:`pipeline` hands each pipeline its :class:`PipelineTracing`."""

    def __init__(self, config: TracingConfig, *, max_links: int = MIN_LINKS,
                 exporter: SpanExporter | None = None) -> None:
        """``exporter`` replaces the OTLP exporter ``config`` names (the benchmarks count its CPU)."""
        self.config = config
        resource = Resource.create({**config.resource_attributes, "service.name": config.service_name,
                                    "service.version": __version__})
        # No exit hook: the gateway flushes on its own shutdown, bounded (a collector that is gone
        # must not hold the exit past the pod's grace period).
        self.provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON), shutdown_on_exit=False,
                                       span_limits=SpanLimits(max_links=max(MIN_LINKS, max_links)))
        if config.exporter == "otlp":
            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(endpoint=traces_url(config.endpoint), headers=dict(config.headers),
                                            timeout=EXPORT_TIMEOUT_S)
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._quiet = _OncePerMinute()
        logging.getLogger(_QUEUE_LOGGER).addFilter(self._quiet)
        self.tracer = self.provider.get_tracer("scoring-gateway", __version__)

    def pipeline(self, config: PipelineConfig, metrics: PipelineMetrics | None = None) -> PipelineTracing:
        return PipelineTracing(self.tracer, pipeline=config.name, input_topic=config.input_topic,
                               sample_ratio=self.config.sample_ratio, metrics=metrics)

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread (blocking: call it off the event loop)."""
        self.provider.shutdown()
        logging.getLogger(_QUEUE_LOGGER).removeFilter(self._quiet)
