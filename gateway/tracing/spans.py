"""The gateway's spans, made the cheap way: ids drawn here, attributes kept in a plain dict, and the
finished span handed to the SDK's span processor (which batches it for the OTLP exporter) as the
SDK's own ``ReadableSpan``.

The SDK's tracer would do the same with a sampler call, a lock per attribute and a context object
per span: five times the CPU per span for nothing the gateway needs. Sampling is decided once per
record by :class:`~gateway.tracing.batch.PipelineTracing` (parent-based, the ratio for records without
context), so every span made here is sampled. With no processor (``exporter: none``) spans get ids,
which the output records and requests carry, and are not recorded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from gateway import __version__

SCOPE = "scoring-gateway"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class Spans:
    """Makes spans for one gateway process; ``processor`` None records none of them."""

    def __init__(self, processor: SpanProcessor | None, resource: Resource | None = None,
                 rng: random.Random | None = None) -> None:
        self.processor = processor
        self._resource = resource or Resource.get_empty()
        self._scope = InstrumentationScope(SCOPE, __version__)
        self._bits = (rng or random.Random()).getrandbits

    def start(self, name: str, *, parent: SpanContext | None = None, kind: SpanKind = SpanKind.INTERNAL,
              start: int | None = None, attributes: dict[str, AttributeValue] | None = None,
              links: Sequence[Link] = ()) -> Pending:
        """A span from ``start`` (ns since the epoch, now by default), the child of ``parent`` or the
        root of a new trace."""
        bits = self._bits
        if parent is None:
            context = SpanContext(bits(128) or 1, bits(64) or 1, False, _SAMPLED)
        else:
            context = SpanContext(parent.trace_id, bits(64) or 1, False, _SAMPLED, parent.trace_state)
        return Pending(self, name, context, parent, kind, time.time_ns() if start is None else start,
                       attributes, links)

    def interval(self, name: str, parent: Pending, start: int, end: int) -> None:
        """A span already over: ``name`` from ``start`` to ``end``, a child of ``parent``."""
        if self.processor is not None:
            self.start(name, parent=parent.context, start=start).end(end)

    def emit(self, span: Pending, end: int) -> None:
        processor = self.processor
        if processor is not None:
            processor.on_end(ReadableSpan(
                span.name, context=span.context, parent=span.parent, resource=self._resource,
                attributes=span.attributes, events=span.events, links=span.links, kind=span.kind,
                status=span.status, start_time=span.start, end_time=end, instrumentation_scope=self._scope))


class Pending:
    """A span under way: what the SDK's ``Span`` offers that the gateway uses, nothing more."""

    __slots__ = ("_spans", "attributes", "context", "events", "kind", "links", "name", "parent", "start", "status")

    def __init__(self, spans: Spans, name: str, context: SpanContext, parent: SpanContext | None, kind: SpanKind,
                 start: int, attributes: dict[str, AttributeValue] | None, links: Sequence[Link]) -> None:
        self._spans = spans
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start = start
        self.attributes = attributes if attributes is not None else {}
        self.links = links
        self.events: list[Event] = []
        self.status = Status(StatusCode.UNSET)

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_status(self, status: Status) -> None:
        self.status = status

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue]) -> None:
        self.events.append(Event(name, attributes))

    def end(self, end_time: int | None = None) -> None:
        self._spans.emit(self, time.time_ns() if end_time is None else end_time)
