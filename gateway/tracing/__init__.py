"""OpenTelemetry traces through the gateway: W3C trace context from the input record, through the
scoring request, to the output record. Every use of OpenTelemetry is in this package; the rest of the
gateway holds a ``PipelineTracing`` or a ``BatchTrace`` that is None when ``tracing`` is absent, and
checks it once per batch or request."""

from gateway.tracing.batch import BatchTrace, PipelineTracing, RowsTrace
from gateway.tracing.provider import Tracing
from gateway.tracing.request import AttemptTrace, RequestSpans, RequestTrace

__all__ = ["AttemptTrace", "BatchTrace", "PipelineTracing", "RequestSpans", "RequestTrace", "RowsTrace", "Tracing"]
