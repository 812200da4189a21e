"""An in-memory tracer and consumed records for the tracing unit tests."""

from __future__ import annotations

import random
from typing import Any

from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from gateway.tracing import PipelineTracing
from gateway.tracing.spans import Spans

TOPIC = "features"


class Recorded:
    """A pipeline's tracing whose finished spans are kept in memory."""

    def __init__(self, sample_ratio: float = 0.0, metrics: Any = None) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
        processor = SimpleSpanProcessor(self.exporter)
        provider.add_span_processor(processor)
        spans = Spans(processor, provider.resource)  # as the gateway's
        self.tracing = PipelineTracing(spans, pipeline="churn", input_topic=TOPIC, sample_ratio=sample_ratio,
                                       metrics=metrics, rng=random.Random(7))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


def record(offset: int, headers: list[tuple[str, bytes]] | None = None, timestamp: int = 1_763_800_000_000) -> Any:
    value = b'{"PlanType": "Basic"}'
    return ConsumerRecord(TOPIC, 0, offset, timestamp, 0, b"k%d" % offset, value, None, len(value), 2,
                          headers or [])


def parent_header(trace_id: int, span_id: int, sampled: bool = True) -> tuple[str, bytes]:
    return ("traceparent", b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00"))


def parse(value: bytes) -> tuple[int, int, bool]:
    version, trace, span, flags = value.decode().split("-")
    assert version == "00"
    return int(trace, 16), int(span, 16), flags == "01"
