"""Traces end to end: records with ``traceparent`` headers through a real gateway process, real Kafka
and the emulator, spans exported to a real OpenTelemetry Collector (built from the Go module proxy,
``testkit/otelcol``) whose file output is read back."""

from __future__ import annotations

import asyncio
import random
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from testkit.otelcol.collector import Collector
from testkit.otelcol.runtime import CollectorUnavailable
from testkit.processes import EmulatorProcess, GatewayProcess
from testkit.topics import Topics, churn_features, gateway_config, write_config
from testkit.waits import async_wait_until

# The first test may build the collector (modules from the Go module proxy, then a compile: minutes
# on a fresh machine), inside its fixture's setup.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("otelcol"), pytest.mark.timeout(900)]

SERVICE = "sg-tracing-test"
HOSTILE = [b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01-and-more", b"ff-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01",
           "00-é".encode() + b"a" * 51, b"00-" + b"a" * 600]


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """A real collector on loopback, built into the test cache on first use."""
    try:
        running = Collector(tmp_path_factory.mktemp("otelcol"))
    except CollectorUnavailable as exc:
        pytest.fail(f"the OpenTelemetry Collector cannot be built: {exc}")
    try:
        yield running
    finally:
        running.stop()


def clear_traces(emu: EmulatorProcess) -> None:
    request = urllib.request.Request(emu.url + "/_emulator/traces", method="DELETE")
    urllib.request.urlopen(request, timeout=5).close()


def traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def parse(value: bytes) -> tuple[str, str, bool]:
    _, trace, span, flags = value.decode().split("-")
    return trace, span, flags == "01"


def inputs(n: int, rng: random.Random) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """Sampled contexts, unsampled ones, hostile values and no context, in turn."""
    out = []
    for i in range(n):
        headers = [("origin", b"payments-%d" % i)]
        kind = i % 4
        if kind in (0, 1):
            headers.append(("traceparent", traceparent(rng.getrandbits(128) | 1, rng.getrandbits(64) | 1,
                                                       sampled=kind == 0)))
            headers.append(("tracestate", b"pay=%d" % i))
        elif kind == 2:
            headers.append(("traceparent", HOSTILE[(i // 4) % len(HOSTILE)]))
        out.append((orjson.dumps({**churn_features(i), "seq": i}), headers))
    return out


async def run_traced(tmp_path: Path, topics: Topics, emu: EmulatorProcess, collector: Collector, n: int,
                     **pipeline: Any) -> tuple[list[tuple[bytes, list[tuple[str, bytes]]]], list[Any]]:
    sent = inputs(n, random.Random(11))
    await topics.produce([value for value, _ in sent], [b"k%d" % i for i in range(n)], [h for _, h in sent])
    backend = {"type": "qlik", "url": emu.qlik_url(), "token": "t"}
    doc = gateway_config(topics, backend, batching={"max_rows": 16, "linger_ms": 5}, **pipeline)
    doc["tracing"] = {"endpoint": collector.endpoint, "sample_ratio": 0.0, "service_name": SERVICE,
                      "resource_attributes": {"deployment.environment.name": "test"}}
    gateway = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log").start()
    try:
        outputs = await topics.read(topics.predictions, lambda got: len(got) >= n, timeout_s=90)
    finally:
        gateway.stop()  # a clean stop flushes the spans still queued
    assert gateway.proc.returncode == 0, (tmp_path / "gw.log").read_text()[-3000:]
    return sent, outputs


def by_input(sent: list[Any], outputs: list[Any]) -> dict[int, dict[str, bytes]]:
    """Each output's headers, by the index of its input (outputs name their source offset only)."""
    found = {}
    for record in outputs:
        headers = dict(record.headers)
        found[int(headers["origin"].split(b"-")[1])] = headers
    assert sorted(found) == list(range(len(sent)))  # every record scored, hostile context or not
    return found


async def test_every_sampled_trace_holds_the_gateway_spans_and_the_outputs_continue_it(tmp_path, topics, emu,
                                                                                      collector):
    clear_traces(emu)
    n = 96
    sent, outputs = await run_traced(tmp_path, topics, emu, collector, n)
    out = by_input(sent, outputs)
    sampled: dict[str, tuple[str, str]] = {}  # input trace id -> (input span id, output span id)
    for i, (_, headers) in enumerate(sent):
        given = dict(headers)
        got = out[i]
        assert got["origin"] == given["origin"]  # other headers pass through
        if i % 4 in (0, 1):
            trace, span, flag = parse(given["traceparent"])
            out_trace, out_span, out_flag = parse(got["traceparent"])
            assert (out_trace, out_flag) == (trace, flag) and out_span != span
            assert got["tracestate"] == given["tracestate"]
            if flag:
                sampled[trace] = (span, out_span)
        elif i % 4 == 2:
            assert got["traceparent"] == given["traceparent"]  # hostile: ignored, passed on untouched
        else:
            assert "traceparent" not in got  # no context, ratio 0: no trace started

    def complete() -> list[dict[str, Any]] | None:
        spans = collector.spans()
        names = {s["name"] for s in spans}
        seen = {s["traceId"] for s in spans}
        return spans if set(sampled) <= seen and "POST" in names else None

    spans = await async_wait_until(complete, 30, "the sampled traces in the collector's file", interval_s=0.3)
    ours = [s for s in spans if s["resource"].get("service.name") == SERVICE]
    assert ours and all(s["resource"].get("deployment.environment.name") == "test" for s in ours)
    by_id = {(s["traceId"], s["spanId"]): s for s in ours}
    posts = [s for s in ours if s["name"] == "POST"]
    linked = {(link["traceId"], link["spanId"]) for post in posts for link in post.get("links", [])}
    for trace, (input_span, output_span) in sampled.items():
        # the input's trace holds the gateway's record span, a child of the input's span, which is the
        # parent the output record names ...
        record_span = by_id[(trace, output_span)]
        assert record_span["name"] == f"process {topics.input}" and record_span["parentSpanId"] == input_span
        # ... linked to the batch's trace, whose POST span links back to the input's context
        (root_link,) = record_span["links"]
        root = by_id[(root_link["traceId"], root_link["spanId"])]
        assert root["name"] == "score churn"
        assert (trace, input_span) in linked
        post = next(p for p in posts if {"traceId": trace, "spanId": input_span} in
                    [{"traceId": link["traceId"], "spanId": link["spanId"]} for link in p.get("links", [])])
        assert post["traceId"] == root["traceId"] and post["attributes"]["scoring_gateway.outcome"] == "scored"
        assert post["attributes"]["scoring_gateway.backend"] == "qlik"
    unsampled = {parse(dict(h)["traceparent"])[0] for i, (_, h) in enumerate(sent) if i % 4 == 1}
    assert not unsampled & {s["traceId"] for s in ours}  # a context not sampled is not recorded
    batch_traces = {s["traceId"] for s in ours if s["name"] == "score churn"}
    names = {s["name"] for s in ours if s["traceId"] in batch_traces}
    assert {"POST", "HTTP POST", "decode", "publish"} <= names  # waits under a millisecond get no span
    # the scoring requests carried the HTTP attempt spans' context, and the emulator saw it
    received = await asyncio.to_thread(emu.get, "/_emulator/traces")
    attempts = {(s["traceId"], s["spanId"]) for s in ours if s["name"] == "HTTP POST"}
    assert received["with_traceparent"] > 0
    assert {parse(entry["traceparent"].encode())[:2] for entry in received["recent"]} == attempts


@pytest.mark.kafka_only
async def test_exactly_once_shows_the_wait_for_the_transaction(tmp_path, topics, emu, collector):
    n = 32
    sent, outputs = await run_traced(tmp_path, topics, emu, collector, n, delivery="exactly_once",
                                     transaction_interval_ms=200)
    out = by_input(sent, outputs)
    traces = {parse(out[i]["traceparent"])[0] for i in range(0, n, 4)}

    def waits() -> list[dict[str, Any]] | None:
        spans = [s for s in collector.spans() if s["resource"].get("service.name") == SERVICE]
        found = [s for s in spans if s["name"] == "transaction wait"]
        seen = {s["traceId"] for s in spans}
        return found if found and traces <= seen else None

    found = await async_wait_until(waits, 30, "transaction wait spans", interval_s=0.3)
    assert all(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) for s in found)
