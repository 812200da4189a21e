"""``scoring-gateway check --probe`` against a real broker, the emulator and loopback HTTP servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from gateway.commands.check import probe
from gateway.config import parse_config
from gateway.kafka.embedded import create_topics, free_port
from testkit.processes import EmulatorProcess
from testkit.topics import unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "probe-token-3c9e11"
QLIK_PATH = "/api/v1/ml/deployments/{id}/realtime-predictions/actions/run"
DATAROBOT_PATH = "/predApi/v1.0/deployments/{id}/predictions"


def pipeline(name: str, topic: str, kind: str, url: str, **backend: Any) -> dict[str, Any]:
    return {"name": name, "input_topic": topic, "backend": {"type": kind, "url": url, "token": TOKEN, **backend},
            "outputs": {"predictions": f"{name}-out", "dead_letter": f"{name}-dlq"}}


def config(bootstrap: str, *pipelines: dict[str, Any], **kafka: Any) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": bootstrap, **kafka}, "pipelines": list(pipelines)}


def run_check(tmp_path: Path, raw: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path), "--probe",
                           "--probe-timeout-s", "5"], cwd=ROOT, capture_output=True, text=True, timeout=120)


def probe_lines(stdout: str) -> list[str]:
    """The probe's lines: what follows the printed YAML."""
    return [line for line in stdout.splitlines() if ": ok" in line or ": FAILED: " in line]


@dataclass
class VendorServer:
    """A loopback HTTP server answering every POST with one status and body, recording what it got."""

    port: int = 0
    status: int = 200
    body: bytes = b'{"data": []}'
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, kind: str, deployment: str = "churn") -> str:
        path = (QLIK_PATH if kind == "qlik" else DATAROBOT_PATH).format(id=deployment)
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "query": dict(request.query),
                              "headers": dict(request.headers), "body": await request.read()})
        return web.Response(status=self.status, body=self.body, content_type="application/json")


@pytest.fixture
async def vendor() -> AsyncIterator[VendorServer]:
    server = VendorServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_probe_ok_against_the_broker_and_the_emulator(broker, emu, tmp_path: Path) -> None:
    topic = unique("probe-in")
    await create_topics(broker.bootstrap, {topic: 3})
    raw = config(broker.bootstrap,
                 pipeline("churn-qlik", topic, "qlik", emu.qlik_url()),
                 pipeline("churn-dr", topic, "datarobot", emu.datarobot_url(), max_explanations=3))
    result = run_check(tmp_path, raw)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = probe_lines(result.stdout)
    assert lines[0] == f"kafka {broker.bootstrap}: ok (via {broker.bootstrap}, 1 broker(s))"
    assert f"pipeline churn-qlik input topic {topic}: ok (3 partition(s))" in lines
    assert f"pipeline churn-dr input topic {topic}: ok (3 partition(s))" in lines
    assert any(line.startswith(f"pipeline churn-qlik backend qlik {emu.qlik_url()}: ok") for line in lines)
    assert any(line.startswith(f"pipeline churn-dr backend datarobot {emu.datarobot_url()}: ok") for line in lines)
    assert len(lines) == 5
    assert TOKEN not in result.stdout + result.stderr


async def test_probe_reports_closed_ports_with_the_reason(tmp_path: Path) -> None:
    broker_port, api_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}{QLIK_PATH.format(id='churn')}"
    result = run_check(tmp_path, config(f"127.0.0.1:{broker_port}", pipeline("churn", "in", "qlik", url)))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = probe_lines(result.stdout)
    assert lines[0].startswith(f"kafka 127.0.0.1:{broker_port}: FAILED: 127.0.0.1:{broker_port}: unreachable: ")
    assert "Connect call failed" in lines[0]
    assert lines[1].startswith(f"pipeline churn backend qlik {url}: FAILED: cannot connect: ")
    assert len(lines) == 2


@pytest.mark.parametrize(("kind", "body", "message"), [
    ("datarobot", b'{"message": "Invalid API token"}', "Invalid API token"),
    ("qlik", b'{"errors": [{"code": "HTTP-401", "title": "Unauthorized", "detail": "Verify your API credentials."}]}',
     "Unauthorized: Verify your API credentials."),
])
async def test_probe_shows_the_vendor_message_on_401(broker, vendor: VendorServer, kind: str, body: bytes,
                                                     message: str) -> None:
    topic = unique("probe-in")
    await create_topics(broker.bootstrap, {topic: 1})
    vendor.status, vendor.body = 401, body
    results = await probe(parse_config(config(broker.bootstrap, pipeline("churn", topic, kind, vendor.url(kind))), {}),
                          timeout_s=5)
    assert [r.ok for r in results] == [True, True, False]
    assert results[2].line() == f"pipeline churn backend {kind} {vendor.url(kind)}: FAILED: HTTP 401: {message}"
    # the request was the pipeline's own: its URL and its credentials, zero rows
    (request,) = vendor.requests
    assert request["path"] == vendor.url(kind).split(str(vendor.port), 1)[1]
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("status", [200, 400, 422, 429])
async def test_answers_that_prove_reachability_are_ok(broker, vendor: VendorServer, status: int) -> None:
    topic = unique("probe-in")
    await create_topics(broker.bootstrap, {topic: 1})
    vendor.status, vendor.body = status, b'{"message": "no rows"}' if status != 200 else b'{"data": []}'
    results = await probe(parse_config(config(broker.bootstrap,
                                              pipeline("churn", topic, "datarobot", vendor.url("datarobot"))), {}),
                          timeout_s=5)
    assert results[2].ok, results[2].line()
    assert f"HTTP {status}" in results[2].detail


@pytest.mark.parametrize("status", [403, 404, 503])
async def test_answers_that_block_scoring_fail(broker, vendor: VendorServer, status: int) -> None:
    topic = unique("probe-in")
    await create_topics(broker.bootstrap, {topic: 1})
    vendor.status, vendor.body = status, b'{"message": "deployment says no"}'
    results = await probe(parse_config(config(broker.bootstrap,
                                              pipeline("churn", topic, "datarobot", vendor.url("datarobot"))), {}),
                          timeout_s=5)
    assert results[2].line().endswith(f"FAILED: HTTP {status}: deployment says no")


async def test_probe_reports_a_missing_input_topic_without_creating_it(broker, vendor: VendorServer) -> None:
    present, absent = unique("probe-in"), unique("probe-missing")
    await create_topics(broker.bootstrap, {present: 2})
    raw = config(broker.bootstrap, pipeline("a", present, "qlik", vendor.url("qlik")),
                 pipeline("b", absent, "qlik", vendor.url("qlik")))
    results = await probe(parse_config(raw, {}), timeout_s=5)
    lines = [r.line() for r in results]
    assert lines[1] == f"pipeline a input topic {present}: ok (2 partition(s))"
    assert lines[2] == f"pipeline b input topic {absent}: FAILED: the topic does not exist"
    again = await probe(parse_config(raw, {}), timeout_s=5)
    assert again[2].line() == lines[2]  # the first probe did not create it


async def test_probe_reports_a_sasl_rejection(broker, vendor: VendorServer) -> None:
    raw = config(broker.bootstrap, pipeline("churn", "in", "qlik", vendor.url("qlik")),
                 security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", sasl_username="gateway",
                 sasl_password="kafka-pw-0d1e")
    results = await probe(parse_config(raw, {}), timeout_s=5)
    expected = (f"kafka {broker.bootstrap}: FAILED: {broker.bootstrap}: authentication failed "
                "(SASL_PLAINTEXT SCRAM-SHA-256 as 'gateway'): ")
    assert results[0].line().startswith(expected)
    assert len(results) == 2  # no topic lines without a broker connection


def test_probe_against_an_emulator_that_wants_another_token(tmp_path: Path) -> None:
    emulator = EmulatorProcess("--token", "the-right-token").start()
    try:
        url = emulator.datarobot_url()
        result = run_check(tmp_path, config(f"127.0.0.1:{free_port()}", pipeline("churn", "in", "datarobot", url)))
    finally:
        emulator.stop()
    assert result.returncode == 1
    backend_line = probe_lines(result.stdout)[1]
    assert backend_line.startswith(f"pipeline churn backend datarobot {url}: FAILED: HTTP 401: ")
    assert TOKEN not in result.stdout + result.stderr and "the-right-token" not in result.stdout
