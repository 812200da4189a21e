"""A traced batch through the dispatcher and the HTTP client to a real emulator: the request carries
its attempt span as ``traceparent``, the emulator records it, and the spans say where time went."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from gateway.backends.factory import make_codec
from gateway.config import PipelineConfig, parse_config
from gateway.emulator import EmulatorOptions, start_emulator
from gateway.runtime.metrics import Metrics
from gateway.scoring.lanes import make_dispatcher, scoring_session
from tests.unit.tracing.support import Recorded, parent_header, parse, record

ROW = {"PlanType": "Basic", "NumberOfPenalties": 0, "HasRenewed": True, "BaseFee": 20.0, "ServiceTickets": 1,
       "AdditionalFeatureSpend": 0.0, "ServiceRating": 4.0, "Promotion": "none"}


def pipeline(url: str, **retry: Any) -> PipelineConfig:
    return parse_config({
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "pipelines": [{"name": "churn", "input_topic": "features", "outputs": {"predictions": "p", "dead_letter": "d"},
                       "retry": {"initial_backoff_ms": 1, "max_backoff_ms": 2, **retry},
                       "backend": {"type": "qlik", "token": "t",
                                   "url": f"{url}/api/v1/ml/deployments/churn/realtime-predictions/actions/run"}}],
    }, environ={}).pipelines[0]


async def score(url: str, records: list[Any], recorded: Recorded, registry: CollectorRegistry,
                **retry: Any) -> list[Any]:
    config = pipeline(url, **retry)
    metrics = Metrics(registry).pipeline("churn")
    async with scoring_session(config) as session:
        dispatcher = make_dispatcher(config, make_codec(config, explain=True), session, metrics=metrics,
                                     on_circuit=lambda change: None)
        trace = recorded.tracing.start(records)
        outcomes, _ = await dispatcher.score([dict(ROW) for _ in records], None, trace)
    assert trace is not None
    trace.published()
    return outcomes


async def test_the_request_carries_its_attempt_span_and_the_emulator_records_it() -> None:
    recorded, registry = Recorded(), CollectorRegistry()
    records = [record(i, [parent_header(0x100 + i, 0x200 + i)]) for i in range(3)]
    async with await start_emulator(EmulatorOptions(latency_ms=0, per_row_ms=0, seed=1)) as emulator:
        outcomes = await score(emulator.url, records, recorded, registry)
        async with aiohttp.ClientSession() as http, http.get(emulator.url + "/_emulator/traces") as answer:
            received = await answer.json()
    assert all(getattr(o, "prediction", None) is not None for o in outcomes)
    assert received["with_traceparent"] == 1 and received["without_traceparent"] == 0
    trace_id, span_id, sampled = parse(received["recent"][0]["traceparent"].encode())
    (http_span,) = recorded.spans("HTTP POST")
    (post,) = recorded.spans("POST")
    (root,) = recorded.spans("score churn")
    assert (trace_id, span_id, sampled) == (http_span.context.trace_id, http_span.context.span_id, True)
    assert http_span.parent.span_id == post.context.span_id and post.parent.span_id == root.context.span_id
    assert http_span.attributes["http.response.status_code"] == 200
    assert sorted(link.context.span_id for link in post.links) == [0x200, 0x201, 0x202]
    assert post.attributes["scoring_gateway.outcome"] == "scored" and post.attributes["scoring_gateway.rows"] == 3
    (decode,) = recorded.spans("decode")
    assert decode.context.trace_id == trace_id and decode.parent.span_id == http_span.context.span_id
    assert recorded.spans("request slot wait") == []  # a free slot is not worth a span
    # the request histogram's bucket points to this trace (OpenMetrics exposition)
    exposition = generate_latest(registry).decode()
    assert f'trace_id="{trace_id:032x}"' in exposition
    assert "scoring_gateway_request_duration_seconds_bucket" in exposition


async def test_retries_are_attempt_spans_with_backoffs_between_them() -> None:
    recorded, registry = Recorded(), CollectorRegistry()
    records = [record(0, [parent_header(0x1, 0x2)])]
    options = EmulatorOptions(latency_ms=0, per_row_ms=0, seed=1, error_rate={500: 1.0})
    async with await start_emulator(options) as emulator:
        outcomes = await score(emulator.url, records, recorded, registry, max_attempts=2)
        received = emulator.traces.snapshot()
    assert getattr(outcomes[0], "stage", None) == "score"
    attempts = sorted(recorded.spans("HTTP POST"), key=lambda s: s.start_time)
    assert [s.attributes["http.request.resend_count"] for s in attempts] == [0, 1]
    assert all(s.attributes["error.type"] == "500" for s in attempts)
    assert len(recorded.spans("backoff")) == 1
    (post,) = recorded.spans("POST")
    assert post.attributes["scoring_gateway.outcome"] == "gave_up" and post.attributes["scoring_gateway.attempts"] == 2
    sent = {parse(entry["traceparent"].encode())[1] for entry in received["recent"]}
    assert sent == {s.context.span_id for s in attempts}  # each attempt its own traceparent


async def test_untraced_batches_send_no_traceparent() -> None:
    config_records = [record(0, [("traceparent", b"00-zz")])]  # malformed, no ratio: not traced
    recorded = Recorded()
    assert recorded.tracing.start(config_records) is None
    async with await start_emulator(EmulatorOptions(latency_ms=0, per_row_ms=0, seed=1)) as emulator:
        config = pipeline(emulator.url)
        async with scoring_session(config) as session:
            dispatcher = make_dispatcher(config, make_codec(config, explain=True), session,
                                         metrics=Metrics(CollectorRegistry()).pipeline("churn"),
                                         on_circuit=lambda change: None)
            outcomes, _ = await dispatcher.score([dict(ROW)], None, None)
        assert getattr(outcomes[0], "prediction", None) is not None  # the record is scored all the same
        assert emulator.traces.snapshot() == {"with_traceparent": 0, "without_traceparent": 1, "recent": []}


async def test_a_busy_request_slot_is_a_span_of_its_own() -> None:
    recorded, registry = Recorded(), CollectorRegistry()
    records = [record(i, [parent_header(0x100 + i, 0x200 + i)]) for i in range(2)]
    async with await start_emulator(EmulatorOptions(latency_ms=30, per_row_ms=0, seed=1)) as emulator:
        config = pipeline(emulator.url)
        async with scoring_session(config) as session:
            dispatcher = make_dispatcher(config, make_codec(config, explain=True), session,
                                         metrics=Metrics(registry).pipeline("churn"), on_circuit=lambda change: None)
            dispatcher.client.slots.limit = 1  # one request at a time: the second waits for the first
            traces = [recorded.tracing.start([r]) for r in records]
            await asyncio.gather(*(dispatcher.score([dict(ROW)], None, t) for t in traces))
    waits = recorded.spans("request slot wait")
    assert len(waits) == 1 and waits[0].end_time - waits[0].start_time >= 10_000_000


async def test_a_slow_xemp_call_is_marked_on_its_span() -> None:
    recorded, registry = Recorded(), CollectorRegistry()
    async with await start_emulator(EmulatorOptions(latency_ms=30, per_row_ms=0, seed=1)) as emulator:
        config = parse_config({
            "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
            "pipelines": [{"name": "churn", "input_topic": "features", "explanations": {"slow_threshold_ms": 5},
                           "outputs": {"predictions": "p", "dead_letter": "d"},
                           "backend": {"type": "datarobot", "token": "t", "max_explanations": 2,
                                       "explanation_algorithm": "xemp",
                                       "url": f"{emulator.url}/predApi/v1.0/deployments/churn/predictions"}}],
        }, environ={}).pipelines[0]
        async with scoring_session(config) as session:
            dispatcher = make_dispatcher(config, make_codec(config, explain=True), session,
                                         metrics=Metrics(registry).pipeline("churn"), on_circuit=lambda change: None)
            trace = recorded.tracing.start([record(0, [parent_header(0x1, 0x2)])])
            outcomes, _ = await dispatcher.score([dict(ROW)], None, trace)
    assert getattr(outcomes[0], "explanation_kind", None) == "xemp"
    (http_span,) = recorded.spans("HTTP POST")
    assert http_span.attributes["scoring_gateway.slow_explanation"] == "xemp"
    (event,) = http_span.events
    assert event.name == "slow_xemp_call" and event.attributes["threshold_ms"] == 5.0
