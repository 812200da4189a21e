"""A batch's trace: record spans under their inputs' contexts, the batch's own trace with links, and
the output records' ``traceparent`` (a child of the input's context)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from opentelemetry.trace import StatusCode

from gateway.backends.codec import ScoredRow
from gateway.stream.outputs import Outputs
from gateway.stream.records import STAGE_DECODE, STAGE_SCORE, Rejected
from tests.unit.tracing.support import TOPIC, Recorded, parent_header, parse, record

OUTPUTS = dict(pipeline="churn", backend="qlik", deployment="churn", predictions="preds", dead_letter="dead",
               explanations=None)


def row() -> ScoredRow:
    return ScoredRow(prediction="yes", probabilities={"yes": 0.7, "no": 0.3}, threshold=None,
                     explanation_kind=None, explanations=None)


def headers_of(message: Any) -> dict[str, bytes]:
    return dict(message[3])


def test_no_context_and_no_ratio_means_no_trace() -> None:
    recorded = Recorded(sample_ratio=0.0)
    assert recorded.tracing.start([record(0), record(1, [("trace", b"t")])]) is None


def test_an_unsampled_context_is_propagated_without_spans() -> None:
    recorded = Recorded()
    records = [record(0, [parent_header(0xAB, 0xCD, sampled=False), ("keep", b"me")])]
    trace = recorded.tracing.start(records)
    assert trace is not None
    out = Outputs(**OUTPUTS).batch(records, [row()], 5.0, trace)
    headers = headers_of(out.messages[0])
    trace_id, span_id, sampled = parse(headers["traceparent"])
    assert (trace_id, sampled) == (0xAB, False) and span_id not in (0, 0xCD)
    assert headers["keep"] == b"me"
    assert trace.request(0, 1, backend="qlik", deployment="churn") is None  # nothing is recorded
    trace.published()
    assert recorded.spans() == []


def test_sampled_inputs_get_child_spans_and_the_outputs_continue_them() -> None:
    recorded = Recorded()
    records = [record(i, [parent_header(0x100 + i, 0x200 + i), ("tracestate", b"v=%d" % i)]) for i in range(3)]
    records.append(record(3, [("other", b"x")]))  # no context, ratio 0: untouched
    trace = recorded.tracing.start(records, opened=time.monotonic() - 0.05)  # the batch filled for 50 ms
    assert trace is not None
    published = Outputs(**OUTPUTS).batch(records, [row()] * 4, 5.0, trace)
    trace.published()
    spans = {span.context.span_id: span for span in recorded.spans(f"process {TOPIC}")}
    assert len(spans) == 3
    for i, message in enumerate(published.messages[:3]):
        headers = headers_of(message)
        trace_id, span_id, sampled = parse(headers["traceparent"])
        span = spans[span_id]  # the output's parent is the record's span ...
        assert trace_id == 0x100 + i and sampled
        assert span.parent is not None and span.parent.span_id == 0x200 + i  # ... a child of the input's
        assert span.parent.trace_id == 0x100 + i and span.parent.is_remote
        assert headers["tracestate"] == b"v=%d" % i  # the input's, passed on
        assert span.attributes["messaging.kafka.offset"] == i
    assert headers_of(published.messages[3]) == {"other": b"x"}
    (root,) = recorded.spans("score churn")
    assert root.parent is None and root.context.trace_id not in (0x100, 0x101, 0x102)
    for span in spans.values():  # each record's span links to the batch's trace
        assert [link.context.span_id for link in span.links] == [root.context.span_id]
    (wait,) = recorded.spans("batch wait")
    assert wait.parent is not None and wait.parent.span_id == root.context.span_id
    assert wait.context.trace_id == root.context.trace_id and wait.end_time - wait.start_time >= 50_000_000
    assert root.start_time == wait.start_time == spans[parse(headers_of(published.messages[0])["traceparent"])[1]
                                                       ].start_time


def test_a_request_span_links_to_the_inputs_of_its_rows() -> None:
    recorded = Recorded()
    records = [record(i, [parent_header(0x100 + i, 0x200 + i)]) for i in range(4)]
    trace = recorded.tracing.start(records)
    assert trace is not None
    for lo, hi in ((0, 2), (2, 4)):
        request = trace.request(lo, hi, backend="qlik", deployment="churn")
        assert request is not None
        attempt = request.attempt(1)
        headers = attempt.sending({"Authorization": "Bearer t"})
        attempt.answered(200)
        request.finish(1, "scored")
        trace_id, span_id, sampled = parse(headers["traceparent"].encode())
        (http,) = [s for s in recorded.spans("HTTP POST") if s.context.span_id == span_id]
        assert sampled and trace_id == http.context.trace_id and headers["Authorization"] == "Bearer t"
    posts = recorded.spans("POST")
    assert [sorted(link.context.span_id for link in post.links) for post in posts] == [[0x200, 0x201],
                                                                                       [0x202, 0x203]]
    for post in posts:
        assert post.attributes["scoring_gateway.rows"] == 2
        assert post.attributes["scoring_gateway.attempts"] == 1
        assert post.attributes["scoring_gateway.outcome"] == "scored"
        assert post.attributes["scoring_gateway.backend"] == "qlik"
    (root,) = [s for s in recorded.exporter.get_finished_spans() if s.name == "score churn"] or [None]
    assert root is None  # the batch's root ends when it is published


def test_a_ratio_starts_traces_for_records_without_context() -> None:
    recorded = Recorded(sample_ratio=1.0)
    records = [record(0), record(1, [("traceparent", b"garbage")])]  # a malformed context is no context
    trace = recorded.tracing.start(records)
    assert trace is not None
    published = Outputs(**OUTPUTS).batch(records, [row(), row()], 5.0, trace)
    trace.published()
    spans = recorded.spans(f"process {TOPIC}")
    assert len(spans) == 2 and all(span.parent is None for span in spans)
    ids = {parse(headers_of(m)["traceparent"])[:2] for m in published.messages}
    assert ids == {(span.context.trace_id, span.context.span_id) for span in spans}
    assert all(sum(1 for name, _ in m[3] if name == "traceparent") == 1 for m in published.messages)


def test_dead_letters_mark_their_record_span() -> None:
    recorded = Recorded()
    records = [record(0, [parent_header(0x1, 0x2)]), record(1, [parent_header(0x3, 0x4)])]
    trace = recorded.tracing.start(records)
    assert trace is not None
    published = Outputs(**OUTPUTS).batch(records, [Rejected(STAGE_SCORE, "gave up", 503, 6), row()], 5.0, trace)
    assert published.messages[0][0] == "dead" and parse(headers_of(published.messages[0])["traceparent"])[0] == 1
    trace.published()
    by_trace = {span.context.trace_id: span for span in recorded.spans(f"process {TOPIC}")}
    assert by_trace[1].status.status_code is StatusCode.ERROR
    assert by_trace[1].attributes["scoring_gateway.dead_letter_stage"] == STAGE_SCORE
    assert by_trace[3].status.status_code is StatusCode.UNSET


def test_records_refused_before_scoring_carry_context_on_their_dead_letters() -> None:
    recorded = Recorded()
    outputs = Outputs(**OUTPUTS, tracing=recorded.tracing)
    bad = record(0, [parent_header(0x5, 0x6)])
    published = outputs.rejects([(bad, Rejected(STAGE_DECODE, "not JSON"))])
    trace_id, span_id, _ = parse(headers_of(published.messages[0])["traceparent"])
    assert published.trace is not None
    published.trace.published()
    (span,) = recorded.spans(f"process {TOPIC}")
    assert (trace_id, span_id) == (0x5, span.context.span_id) and span.status.status_code is StatusCode.ERROR
    assert recorded.spans("score churn") == []  # no batch was scored


def test_publish_and_the_transaction_wait_are_spans_of_the_batch() -> None:
    recorded = Recorded()
    records = [record(0, [parent_header(0x1, 0x2)])]
    trace = recorded.tracing.start(records)
    assert trace is not None
    Outputs(**OUTPUTS).batch(records, [row()], 5.0, trace)
    trace.committing()
    trace.published()
    trace.published()  # a second call changes nothing
    (root,) = recorded.spans("score churn")
    assert recorded.spans("batch wait") == []  # a batch sent as it opened did not wait
    (publish,) = recorded.spans("publish")
    (wait,) = recorded.spans("transaction wait")
    assert publish.parent.span_id == wait.parent.span_id == root.context.span_id
    assert publish.end_time <= wait.start_time <= wait.end_time <= root.end_time


class Exemplars:
    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []

    def end_to_end_exemplar(self, seconds: float, trace_id: str) -> None:
        self.seen.append((seconds, trace_id))


def test_a_published_batch_gives_the_end_to_end_histogram_an_exemplar() -> None:
    metrics = Exemplars()
    recorded = Recorded(metrics=metrics)
    records = [record(0, [parent_header(0xABC, 0x2)], timestamp=1_000)]
    trace = recorded.tracing.start(records)
    assert trace is not None
    Outputs(**OUTPUTS).batch(records, [row()], 5.0, trace)
    trace.published()
    ((seconds, trace_id),) = metrics.seen
    assert trace_id == f"{0xABC:032x}" and seconds > 1e9


def test_few_traced_records_among_many_still_get_their_context() -> None:
    recorded = Recorded()
    records = [record(i, [("n", b"%d" % i)]) for i in range(40)]
    records[17] = record(17, [("n", b"17"), parent_header(0x9, 0x8)])
    records[30] = record(30, [("n", b"30"), parent_header(0x7, 0x6, sampled=False)])
    trace = recorded.tracing.start(records)
    assert trace is not None
    published = Outputs(**OUTPUTS).batch(records, [row()] * 40, 5.0, trace)
    traced = {published.owners[j]: parse(headers_of(m)["traceparent"])[0]
              for j, m in enumerate(published.messages) if "traceparent" in headers_of(m)}
    assert traced == {17: 0x9, 30: 0x7}
    assert [headers_of(m)["n"] for m in published.messages] == [b"%d" % o for o in published.owners]


def test_deferred_explanations_continue_their_record_trace() -> None:
    recorded = Recorded()
    records = [record(i, [parent_header(0x10 + i, 0x20 + i, sampled=i == 0)]) for i in range(3)]
    trace = recorded.tracing.start(records)
    assert trace is not None
    outputs = Outputs(**{**OUTPUTS, "explanations": "explained"}, explanations_with_predictions=False)
    predictions = outputs.batch(records, [row()] * 3, 5.0, trace)
    explained_row = ScoredRow(prediction="yes", explanations=[{"feature": "PlanType", "value": "Basic",
                                                               "strength": 0.2}], explanation_kind="shap")
    chosen = [records[2], records[0]]  # the lane explains some of the batch's records, in its own order
    explained = outputs.explained(chosen, [explained_row, explained_row], trace)
    assert [headers_of(m)["traceparent"] for m in explained.messages] == [
        headers_of(predictions.messages[2])["traceparent"], headers_of(predictions.messages[0])["traceparent"]]
    assert [parse(headers_of(m)["traceparent"])[::2] for m in explained.messages] == [(0x12, False), (0x10, True)]


def test_a_record_without_headers_still_gets_a_traceparent_when_the_ratio_draws_it() -> None:
    recorded = Recorded(sample_ratio=1.0)
    bare = dataclasses.replace(record(0), headers=None)
    trace = recorded.tracing.start([bare])
    assert trace is not None
    published = Outputs(**OUTPUTS).batch([bare], [row()], 5.0, trace)
    assert [name for name, _ in published.messages[0][3]] == ["traceparent"]


def test_the_ratio_is_drawn_once_per_batch_for_its_records_without_context() -> None:
    """A quarter of the batches, and so about a quarter of the records, are traced; a batch's records
    without context are traced together or not at all, its sampled inputs always."""
    recorded = Recorded(sample_ratio=0.25)
    batches, traced = 400, 0
    for n in range(batches):
        records = [record(10 * n + i) for i in range(10)]
        records.append(record(10 * n + 10, [parent_header(0x300 + n, 0x400 + n)]))  # sampled upstream
        trace = recorded.tracing.start(records)
        assert trace is not None  # the sampled input is always traced
        drawn = [i for i in range(10) if i in trace.carriers]
        assert drawn in ([], list(range(10)))
        traced += bool(drawn)
        assert 10 in trace.carriers
    assert 0.18 * batches <= traced <= 0.32 * batches


def test_deferred_explanation_requests_are_spans_of_the_batch_linked_to_their_own_rows() -> None:
    recorded = Recorded()
    records = [record(i, [parent_header(0x10 + i, 0x20 + i)]) for i in range(5)]
    trace = recorded.tracing.start(records)
    assert trace is not None
    rows = trace.rows([4, 1, 3], "explanations")  # the lane explains three of them, in its own order
    assert rows is not None
    requests = [rows.part(0, 2).request(0, 2, backend="datarobot", deployment="churn"),
                rows.part(2, 3).request(0, 1, backend="datarobot", deployment="churn")]
    for request in requests:
        assert request is not None
        request.finish(1, "scored")
    trace.published()
    (root,) = recorded.spans("score churn")
    posts = recorded.spans("POST")
    assert [{link.context.trace_id for link in post.links} for post in posts] == [{0x14, 0x11}, {0x13}]
    for post in posts:
        assert post.parent is not None and post.parent.span_id == root.context.span_id
        assert post.attributes["scoring_gateway.lane"] == "explanations"
    assert Recorded().tracing.start([record(0)]) is None  # nothing traced: no lane trace to ask for
