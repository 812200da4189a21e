"""Spans of one scoring request: the ``POST`` (every attempt of one body) and each HTTP attempt in it.

The dispatcher opens a :class:`RequestTrace` per request it sends for a traced batch, with links to
the input records whose rows the body carries; the client turns each attempt into an
:class:`AttemptTrace`, whose span context is the ``traceparent`` header of that HTTP request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from gateway.tracing.context import TRACEPARENT, traceparent
from gateway.tracing.spans import Pending, Spans

# A wait shorter than this (a free slot, a closed breaker, a rate limiter with tokens to spare) is not
# worth a span of its own: every exported span costs the gateway tens of microseconds.
MIN_WAIT_NS = 1_000_000


class RequestSpans(Protocol):
    """What the dispatcher asks of a traced batch (or of some of its rows): the span of a request
    that carries rows ``lo..hi`` of what it was given, None when nothing is recorded."""

    def request(self, lo: int, hi: int, *, backend: str, deployment: str) -> RequestTrace | None: ...


class RequestTrace:
    """The ``POST`` span of one request body: its rows, backend, deployment, attempts and outcome."""

    __slots__ = ("_span", "_spans", "trace_id")

    def __init__(self, spans: Spans, parent: Pending, links: Sequence[Link], *, rows: int, backend: str,
                 deployment: str, lane: str | None = None) -> None:
        self._spans = spans
        attributes: dict[str, AttributeValue] = {
            "scoring_gateway.rows": rows, "scoring_gateway.backend": backend, "scoring_gateway.deployment": deployment}
        if lane is not None:  # the deferred explanations' lane (the predictions' lane is the default)
            attributes["scoring_gateway.lane"] = lane
        self._span = spans.start("POST", parent=parent.context, links=links, attributes=attributes)
        self.trace_id = f"{self._span.context.trace_id:032x}"

    @staticmethod
    def now() -> int:
        return time.time_ns()

    def waited(self, name: str, since: int, minimum_ns: int = 0) -> None:
        """A span for a wait that began at ``since`` (ns) and ended now, when it lasted ``minimum_ns``."""
        now = time.time_ns()
        if now - since >= minimum_ns:
            self._spans.interval(name, self._span, since, now)

    def held(self, since: int) -> None:
        """The circuit breaker held this request back (a span only when it did, for a millisecond or more)."""
        self.waited("circuit breaker wait", since, MIN_WAIT_NS)

    def limited(self, since: int) -> None:
        """The rate limiter made this request wait (a span when it did, for a millisecond or more)."""
        self.waited("rate limiter wait", since, MIN_WAIT_NS)

    def backed_off(self, since: int) -> None:
        """The back-off before the next attempt."""
        self.waited("backoff", since)

    def attempt(self, number: int) -> AttemptTrace:
        return AttemptTrace(self._spans, self._span, number, self.trace_id)

    def finish(self, attempts: int, outcome: str) -> None:
        """``outcome``: scored, data_error, split, gave_up, cancelled or failed."""
        span = self._span
        span.set_attribute("scoring_gateway.attempts", attempts)
        span.set_attribute("scoring_gateway.outcome", outcome)
        if outcome not in ("scored", "split"):
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()


class AttemptTrace:
    """One HTTP attempt: the wait for a request slot, the exchange, the decoding of the answer."""

    __slots__ = ("_number", "_parent", "_since", "_span", "_spans", "trace_id")

    def __init__(self, spans: Spans, parent: Pending, number: int, trace_id: str) -> None:
        self._spans = spans
        self._parent = parent
        self._number = number
        self._since = time.time_ns()  # the wait for a request slot starts now
        self._span: Pending | None = None
        self.trace_id = trace_id

    @staticmethod
    def now() -> int:
        return time.time_ns()

    def sending(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The slot is taken: the exchange starts; returns the request headers with its ``traceparent``."""
        now = time.time_ns()
        if now - self._since >= MIN_WAIT_NS:
            self._spans.interval("request slot wait", self._parent, self._since, now)
        span = self._span = self._spans.start(
            "HTTP POST", parent=self._parent.context, kind=SpanKind.CLIENT, start=now,
            attributes={"http.request.method": "POST", "http.request.resend_count": self._number - 1})
        own = span.context
        return {**headers, TRACEPARENT: traceparent(own.trace_id, own.span_id, True).decode("ascii")}

    def decoded(self, since: int) -> None:
        if self._span is not None:
            self._spans.interval("decode", self._span, since, time.time_ns())

    def slow(self, kind: str, seconds: float, threshold_s: float) -> None:
        """A slow explanation call, as ``slow_explanation_requests_total`` counts it."""
        if self._span is not None:
            self._span.set_attribute("scoring_gateway.slow_explanation", kind)
            self._span.add_event("slow_xemp_call" if kind == "xemp" else "slow_explanation_call", {
                "duration_ms": round(seconds * 1000.0, 1), "threshold_ms": round(threshold_s * 1000.0, 1)})

    def answered(self, status: int) -> None:
        span = self._span
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            span.end()

    def failed(self, reason: str, status: int | None = None) -> None:
        span = self._span
        if span is None:
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        span.set_attribute("error.type", reason)
        span.set_status(Status(StatusCode.ERROR, reason))
        span.end()
