"""The admin server over real HTTP on 127.0.0.1, and the readiness rules behind ``/readyz``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.runtime.admin import AdminServer
from gateway.runtime.health import Health
from gateway.runtime.metrics import Metrics


class Admin:
    def __init__(self, server: AdminServer, health: Health, metrics: Metrics, session: aiohttp.ClientSession) -> None:
        self.server, self.health, self.metrics, self.session = server, health, metrics, session

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health(["churn", "fraud"], metrics)
    server = AdminServer("127.0.0.1", 0, registry, health)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield Admin(server, health, metrics, session)
    await server.stop()


async def test_binds_a_free_loopback_port(admin: Admin) -> None:
    assert admin.server.port > 0
    async with admin.session.get(admin.url("/healthz")) as response:
        assert response.status == 200


async def test_metrics_renders_the_registry_as_prometheus_text(admin: Admin) -> None:
    admin.metrics.pipeline("churn").consumed(1234)
    admin.metrics.pipeline("churn").end_to_end([0.01, 0.2])
    async with admin.session.get(admin.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        body = await response.text()
    parsed = {f.name: f for f in text_string_to_metric_families(body)}
    consumed = parsed["scoring_gateway_records_consumed"].samples
    totals = {s.labels["pipeline"]: s.value for s in consumed if s.name.endswith("_total")}
    assert totals == {"churn": 1234.0, "fraud": 0.0}  # every known pipeline's series exists from the start
    e2e = {s.name: s.value for s in parsed["scoring_gateway_end_to_end_latency_seconds"].samples
           if not s.name.endswith("_bucket") and s.labels["pipeline"] == "churn"}
    assert e2e["scoring_gateway_end_to_end_latency_seconds_count"] == 2
    assert e2e["scoring_gateway_end_to_end_latency_seconds_sum"] == pytest.approx(0.21)


async def test_metrics_speaks_openmetrics_when_asked(admin: Admin) -> None:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"}
    async with admin.session.get(admin.url("/metrics"), headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


async def test_healthz_ok_until_the_process_has_failed(admin: Admin) -> None:
    async with admin.session.get(admin.url("/healthz")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"status": "ok"}
    admin.health.set_failed("pipeline churn task died: RuntimeError")
    async with admin.session.get(admin.url("/healthz")) as response:
        assert response.status == 503
        assert await response.json() == {"status": "failed", "reason": "pipeline churn task died: RuntimeError"}


async def readyz(admin: Admin) -> tuple[int, dict]:
    async with admin.session.get(admin.url("/readyz")) as response:
        return response.status, orjson.loads(await response.read())


async def test_readyz_reports_each_pipeline_and_why(admin: Admin) -> None:
    status, body = await readyz(admin)
    assert status == 503 and body["status"] == "not_ready"
    assert body["pipelines"]["churn"] == {"ready": False, "reasons": ["waiting for a partition assignment"],
                                          "partitions": None}

    admin.health.set_assigned("churn", True, partitions=3)
    admin.health.set_assigned("fraud", True, partitions=0)  # more members than partitions: still ready
    status, body = await readyz(admin)
    assert status == 200 and body["status"] == "ready"
    assert body["pipelines"]["churn"] == {"ready": True, "reasons": [], "partitions": 3}

    admin.health.set_stopped("fraud", "HTTP 401: invalid API key")
    admin.health.set_circuit("churn", "circuit open: qlik: cannot connect: connection refused")
    status, body = await readyz(admin)
    assert status == 503
    assert body["pipelines"]["fraud"]["reasons"] == ["stopped: HTTP 401: invalid API key"]
    assert body["pipelines"]["churn"]["reasons"] == ["circuit open: qlik: cannot connect: connection refused"]

    admin.health.set_stopped("fraud", None)
    admin.health.set_circuit("churn", None)
    assert (await readyz(admin))[0] == 200
    admin.health.set_assigned("churn", False)  # revoked, rebalance in progress
    assert (await readyz(admin))[0] == 503


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/metrics/"), ("GET", "/metricsx"), ("GET", "/static/"), ("GET", "/admin"),
    ("GET", "/%2e%2e/etc/passwd"), ("POST", "/metrics"), ("PUT", "/healthz"), ("DELETE", "/readyz"),
    ("HEAD", "/healthz"), ("OPTIONS", "/metrics"), ("PATCH", "/nothing/here"),
])
async def test_everything_else_is_404_without_a_banner(admin: Admin, method: str, path: str) -> None:
    async with admin.session.request(method, admin.url(path)) as response:
        assert response.status == 404
        assert "Server" not in response.headers
        if method != "HEAD":
            assert await response.text() == "not found"


async def test_no_server_banner_on_answers_either(admin: Admin) -> None:
    for path in ("/metrics", "/healthz", "/readyz"):
        async with admin.session.get(admin.url(path)) as response:
            assert "Server" not in response.headers
            assert not any("aiohttp" in v.lower() or "python" in v.lower() for v in response.headers.values())



async def test_start_stop_lifecycle() -> None:
    registry = CollectorRegistry()
    server = AdminServer("127.0.0.1", 0, registry, Health(["churn"]))
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.start()
    port = server.port
    with pytest.raises(RuntimeError):
        await server.start()
    await server.stop()
    await server.stop()  # idempotent
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            async with session.get(f"http://127.0.0.1:{port}/healthz"):
                pass


async def test_a_taken_port_fails_start_cleanly() -> None:
    registry = CollectorRegistry()
    first = AdminServer("127.0.0.1", 0, registry, Health(["churn"]))
    await first.start()
    try:
        second = AdminServer("127.0.0.1", first.port, registry, Health(["churn"]))
        with pytest.raises(OSError):
            await second.start()
        with pytest.raises(RuntimeError):
            _ = second.port
    finally:
        await first.stop()


def test_health_without_pipelines_is_not_ready_and_rejects_unknown_names() -> None:
    assert Health([]).ready() == (False, {})
    with pytest.raises(KeyError, match="nope"):
        Health(["churn"]).set_assigned("nope", True)


def test_long_reasons_are_truncated() -> None:
    health = Health(["churn"])
    health.set_assigned("churn", True)
    health.set_circuit("churn", "x" * 5000)
    _, report = health.ready()
    assert len(report["churn"]["reasons"][0]) < 250
