"""A pipeline's tracing: trace context from its input records, spans for its batches, context into its outputs.

Batching breaks parent-child: one request carries rows of many traces. As the OpenTelemetry
messaging conventions do for batches, each sampled input record gets a ``process <topic>`` span, a
child of its own context (or the root of a new trace when the record had none and the ratio drew
it); the batch gets a trace of its own, rooted at ``score <pipeline>``, whose ``POST`` spans link to
the input contexts of their rows, and each record's span links to that root. Each output record's
``traceparent`` is its record's span (or, for an input whose context is not sampled, a fresh span
id under that context, flags unsampled), so a consumer of the outputs continues the input's trace.

Cost: nothing happens per record unless ``tracing`` is configured; then :meth:`PipelineTracing.start`
reads each record's headers once per batch, and spans are made only for sampled records. The ratio
is drawn once per batch for the batch's records without context (see :meth:`PipelineTracing.start`).
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from gateway.tracing.context import ODD_DIGITS, TRACEPARENT, Parent, extract, find, traceparent, with_context
from gateway.tracing.request import MIN_WAIT_NS, RequestTrace
from gateway.tracing.spans import Pending, Spans

if TYPE_CHECKING:
    from gateway.kafka.sink import Message
    from gateway.runtime.metrics import PipelineMetrics
    from gateway.stream.records import InputRecord


class PipelineTracing:
    """Reads context from one pipeline's input records and starts their batches' traces."""

    def __init__(self, spans: Spans, *, pipeline: str, input_topic: str, sample_ratio: float,
                 metrics: PipelineMetrics | None = None, rng: random.Random | None = None) -> None:
        self.spans = spans
        self.pipeline = pipeline
        self.input_topic = input_topic
        self.sample_ratio = sample_ratio
        self.metrics = metrics
        self.rng = rng or random.Random()

    def start(self, records: Sequence[InputRecord], opened: float | None = None, *,
              scored: bool = True) -> BatchTrace | None:
        """The trace of a batch (``opened``: when its first record arrived, ``time.monotonic()``), or
        None when none of its records has context or is sampled. ``scored`` False: dead letters of
        records refused before scoring, which get record spans but no batch trace."""
        ratio = self.sample_ratio
        # One draw for the whole batch: its records without context are traced together or not at
        # all. The share of records traced is the ratio either way, and the batch's own spans (a
        # half-dozen) are paid once per traced batch instead of for nearly every batch.
        drawn = bool(ratio) and self.rng.random() < ratio
        carriers: dict[int, bytes] = {}
        sampled: list[tuple[int, Parent | None]] = []
        ids = b""  # fresh span ids, 16 hex digits each, drawn at once for the whole batch
        odd = ODD_DIGITS
        for i, record in enumerate(records):
            headers = record.headers
            value = find(headers) if headers else None
            if value is None:
                if drawn:
                    sampled.append((i, None))
            elif value[54] in odd:  # sampled (is_sampled, inline: this loop sees every record)
                sampled.append((i, extract(headers)))
            else:  # propagated, not recorded: a span id of its own under the input's context (child)
                if not ids:
                    ids = self.rng.randbytes(8 * len(records)).hex().encode()
                carriers[i] = value[:36] + ids[16 * i:16 * i + 16] + value[52:]
        if not sampled and not carriers:
            return None
        return BatchTrace(self, records, carriers, sampled, opened, scored)


def _remote(parent: Parent) -> SpanContext:
    state = None
    if parent.tracestate is not None:
        state = TraceState.from_header([parent.tracestate.decode("ascii")])
    return SpanContext(parent.trace_id, parent.span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED),
                       trace_state=state)


def _epoch_ns(monotonic: float | None, now_ns: int) -> int:
    return now_ns if monotonic is None else now_ns - max(0, int((time.monotonic() - monotonic) * 1e9))


class BatchTrace:
    """The trace of one batch, from the batcher to the broker's acknowledgement."""

    __slots__ = ("_committing", "_done", "_index", "_links", "_owner", "_publishing", "_records", "_root",
                 "_spans", "carriers")

    def __init__(self, owner: PipelineTracing, records: Sequence[InputRecord], carriers: dict[int, bytes],
                 sampled: list[tuple[int, Parent | None]], opened: float | None, scored: bool) -> None:
        self._owner = owner
        self._records = records
        self.carriers = carriers
        now = time.time_ns()
        start = _epoch_ns(opened, now)
        self._spans: dict[int, Pending] = {}
        self._links: list[tuple[int, Link]] = []
        self._root: Pending | None = None
        self._publishing = self._committing = 0
        self._done = False
        self._index: dict[int, int] | None = None
        if sampled and scored:
            self._start_root(start, now)
        if sampled:
            self._record_spans(sampled, start)

    def _start_root(self, start: int, now: int) -> None:
        owner = self._owner
        root = self._root = owner.spans.start(f"score {owner.pipeline}", start=start,
                                              attributes={"messaging.batch.message_count": len(self._records)})
        if now - start >= MIN_WAIT_NS:
            owner.spans.interval("batch wait", root, start, now)

    def _record_spans(self, sampled: list[tuple[int, Parent | None]], start: int) -> None:
        owner, records, root = self._owner, self._records, self._root
        spans, name, topic = owner.spans, f"process {owner.input_topic}", owner.input_topic
        anchor = () if root is None else (Link(root.context),)
        for i, parent in sampled:
            record = records[i]
            remote = None if parent is None else _remote(parent)
            span = spans.start(name, parent=remote, kind=SpanKind.CONSUMER, start=start, links=anchor, attributes={
                "messaging.destination.name": topic, "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset})
            own = span.context
            self._spans[i] = span
            self.carriers[i] = traceparent(own.trace_id, own.span_id, True)
            self._links.append((i, Link(remote if remote is not None else own)))

    # ---- scoring --------------------------------------------------------------------------------

    def request(self, lo: int, hi: int, *, backend: str, deployment: str) -> RequestTrace | None:
        """The span of a request carrying rows ``lo..hi`` of the batch, linked to their inputs' contexts."""
        return self._request(range(lo, hi), backend=backend, deployment=deployment)

    def rows(self, indices: Sequence[int], lane: str) -> RowsTrace | None:
        """The requests of some of the batch's rows (``indices``, in the order they are sent), on
        another ``lane``: the deferred explanations. None when the batch's trace is not recorded."""
        return None if self._root is None else RowsTrace(self, indices, lane)

    def _request(self, rows: Collection[int], *, backend: str, deployment: str,
                 lane: str | None = None) -> RequestTrace | None:
        """The ``POST`` span of a request carrying the batch's ``rows`` (their batch indices)."""
        if self._root is None:
            return None
        links = [link for i, link in self._links if i in rows]
        return RequestTrace(self._owner.spans, self._root, links, rows=len(rows), backend=backend,
                            deployment=deployment, lane=lane)

    # ---- outputs ------------------------------------------------------------------------------

    def stamp(self, messages: list[Message], owners: Sequence[int], outcomes: Sequence[object] | None = None) -> None:
        """Gives each output message its record's ``traceparent`` (``owners``: the batch index of each
        message's record, in ascending order); marks the spans of records that became dead letters."""
        carriers, count = self.carriers, len(owners)
        if len(carriers) * 8 < count:  # few traced records: find their messages (owners ascend)
            for owner, parent in carriers.items():
                j = bisect_left(owners, owner)
                while j < count and owners[j] == owner:
                    topic, key, value, headers = messages[j]
                    messages[j] = (topic, key, value, with_context(headers, parent))
                    j += 1
        else:  # with_context, inline: this loop sees every message of a batch whose inputs carry context
            get, name = carriers.get, TRACEPARENT
            for j, owner in enumerate(owners):
                carrier = get(owner)
                if carrier is not None:
                    topic, key, value, headers = messages[j]
                    kept = [header for header in headers or () if header[0] != name]
                    kept.append((name, carrier))
                    messages[j] = (topic, key, value, kept)
        if outcomes is not None:
            for i, span in self._spans.items():
                stage = getattr(outcomes[i], "stage", None)
                if stage is not None:
                    span.set_attribute("scoring_gateway.dead_letter_stage", stage)
                    span.set_status(Status(StatusCode.ERROR, getattr(outcomes[i], "reason", stage)))
        self._publishing = time.time_ns()

    def stamp_records(self, messages: list[Message], owners: Sequence[int], records: Sequence[InputRecord]) -> None:
        """:meth:`stamp` for messages of some of the batch's records (the deferred explanations)."""
        index = self._index
        if index is None:
            index = self._index = {id(record): i for i, record in enumerate(self._records)}
        carriers = self.carriers
        for j, owner in enumerate(owners):
            carrier = carriers.get(index.get(id(records[owner]), -1))
            if carrier is not None:
                topic, key, value, headers = messages[j]
                messages[j] = (topic, key, value, with_context(headers, carrier))

    def committing(self) -> None:
        """Under exactly_once: the outputs are in the transaction; what follows is the wait for its commit."""
        self._committing = time.time_ns()

    def published(self) -> None:
        """The broker has every output: the batch's spans end."""
        if self._done:
            return
        self._done = True
        end = time.time_ns()
        spans, root = self._owner.spans, self._root
        if root is not None and self._publishing:
            committing = self._committing
            spans.interval("publish", root, self._publishing, committing or end)
            if committing:
                spans.interval("transaction wait", root, committing, end)
        for span in self._spans.values():
            span.end(end_time=end)
        if self._root is not None:
            self._root.end(end_time=end)
        self._exemplar(end)

    def _exemplar(self, end_ns: int) -> None:
        """One sampled record's end-to-end latency, with its trace id, for the histogram's exemplar."""
        metrics = self._owner.metrics
        if metrics is None or not self._spans:
            return
        i, span = next(iter(self._spans.items()))
        timestamp = self._records[i].timestamp
        if type(timestamp) is int and timestamp > 0:
            metrics.end_to_end_exemplar(max(0.0, end_ns / 1e9 - timestamp / 1000.0),
                                        f"{span.context.trace_id:032x}")


class RowsTrace:
    """Requests that carry some of a batch's rows (its deferred explanations): ``POST`` spans in the
    batch's trace, linked to the input contexts of the rows each carries."""

    __slots__ = ("_batch", "_indices", "_lane")

    def __init__(self, batch: BatchTrace, indices: Sequence[int], lane: str) -> None:
        self._batch = batch
        self._indices = indices
        self._lane = lane

    def part(self, lo: int, hi: int) -> RowsTrace:
        """The rows ``lo..hi`` of these (one request's share of them)."""
        return RowsTrace(self._batch, self._indices[lo:hi], self._lane)

    def request(self, lo: int, hi: int, *, backend: str, deployment: str) -> RequestTrace | None:
        return self._batch._request(set(self._indices[lo:hi]), backend=backend, deployment=deployment,
                                    lane=self._lane)


__all__ = ["BatchTrace", "PipelineTracing", "RowsTrace"]
