"""Exemplars: the latency histograms point to traces in the OpenMetrics exposition (and only there)."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.runtime.admin import AdminServer
from gateway.runtime.health import Health
from gateway.runtime.metrics import Metrics

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"


async def scrape(registry: CollectorRegistry, accept: str) -> str:
    server = AdminServer("127.0.0.1", 0, registry, Health(["churn"]))
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": accept}) as answer:
            return await answer.text()
    finally:
        await server.stop()


async def test_traced_observations_are_exemplars_of_their_buckets() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry).pipeline("churn")
    metrics.end_to_end_since(10_000.0, [9_700, 9_800])
    metrics.end_to_end_exemplar(0.3, TRACE_ID)
    metrics.request("qlik", "none", "200", 0.02, TRACE_ID)
    metrics.request("qlik", "none", "200", 0.002)
    text = await scrape(registry, OPENMETRICS)
    e2e = [line for line in text.splitlines() if "end_to_end_latency_seconds_bucket" in line and "trace_id" in line]
    assert len(e2e) == 1 and 'le="0.5"' in e2e[0] and f'# {{trace_id="{TRACE_ID}"}} 0.3' in e2e[0]
    assert 'end_to_end_latency_seconds_count{pipeline="churn"} 2.0' in text  # counted once, not again
    request = [line for line in text.splitlines() if "request_duration_seconds_bucket" in line and "trace_id" in line]
    assert len(request) == 1 and 'le="0.025"' in request[0]
    assert "trace_id" not in await scrape(registry, "text/plain")  # the Prometheus text format has no exemplars
