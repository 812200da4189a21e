"""The process's span pipeline, built from the ``tracing:`` section, and each pipeline's tracing.

One per gateway process (never OpenTelemetry's global provider): a resource naming the service and,
with ``exporter: otlp``, the SDK's batching span processor and OTLP/HTTP exporter, which export from
their own thread, off the event loop. Sampling is parent-based and decided per record by
:class:`~gateway.tracing.batch.PipelineTracing` (the ratio for records without context).
:meth:`Tracing.shutdown` flushes what is queued.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from gateway import __version__
from gateway.config import PipelineConfig
from gateway.config.tracing import TracingConfig
from gateway.runtime.metrics import PipelineMetrics
from gateway.tracing.batch import PipelineTracing
from gateway.tracing.spans import Spans

TRACES_PATH = "/v1/traces"
EXPORT_TIMEOUT_S = 10.0
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
    """The gateway's span pipeline: one resource, one batching processor and exporter; :meth:`pipeline`
    hands each pipeline its :class:`PipelineTracing`."""

    def __init__(self, config: TracingConfig, *, exporter: SpanExporter | None = None) -> None:
        """``exporter`` replaces the OTLP exporter ``config`` names (the benchmarks count its CPU)."""
        self.config = config
        resource = Resource.create({**config.resource_attributes, "service.name": config.service_name,
                                    "service.version": __version__})
        self.processor: BatchSpanProcessor | None = None
        if config.exporter == "otlp":
            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(endpoint=traces_url(config.endpoint), headers=dict(config.headers),
                                            timeout=EXPORT_TIMEOUT_S)
            self.processor = BatchSpanProcessor(exporter)
        self._quiet = _OncePerMinute()
        logging.getLogger(_QUEUE_LOGGER).addFilter(self._quiet)
        self.spans = Spans(self.processor, resource)

    def pipeline(self, config: PipelineConfig, metrics: PipelineMetrics | None = None) -> PipelineTracing:
        return PipelineTracing(self.spans, pipeline=config.name, input_topic=config.input_topic,
                               sample_ratio=self.config.sample_ratio, metrics=metrics)

    def flush(self) -> None:
        """Export what is queued now (blocking)."""
        if self.processor is not None:
            self.processor.force_flush()

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread (blocking: call it off the event loop)."""
        if self.processor is not None:
            self.processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        logging.getLogger(_QUEUE_LOGGER).removeFilter(self._quiet)
