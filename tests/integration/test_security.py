"""Security: secrets never leak, TLS to the scoring API, Kafka security settings, the admin surface.

Kafka SASL and TLS end to end (PLAIN, SCRAM-SHA-256/512, SSL, mutual TLS, refusals) run on Apache
Kafka in ``test_kafka_security.py``. Here: the settings where they are made
(``gateway.kafka.connection.client_options`` and the aiokafka clients built from them, for every protocol and
mechanism), and the embedded tansu broker's refusal of a SCRAM login (it ends the exchange in a way
aiokafka reports as ``KeyError('v')``), which must still stop the gateway with one readable line
and keep the password out of what it prints.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.config import parse_config
from gateway.kafka.connection import client_options, consumer_options, producer_options
from gateway.kafka.embedded import broker_binary, free_port
from testkit.ledger import end_offsets, read_outputs, tally
from testkit.processes import GatewayProcess
from testkit.stage import DATAROBOT_KEY_VAR, TOKEN_VAR, Stage, feed_churn
from testkit.topics import churn_features, gateway_config, write_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


# ---- certificates (openssl CLI) -------------------------------------------------------------

def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return folder / f"{name}.pem", folder / f"{name}.key"


def make_server_cert(folder: Path, ca: tuple[Path, Path], name: str = "server") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (as an IP subject alternative name) signed by ``ca``."""
    (folder / f"{name}.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", f"{name}.key", "-out", f"{name}.csr")
    _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext")
    return folder / f"{name}.pem", folder / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "scoring-test-ca")
    other = make_ca(folder, "some-other-ca")
    cert, key = make_server_cert(folder, ca)
    return {"ca": ca[0], "other_ca": other[0], "cert": cert, "key": key}


async def _until(condition: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


# ---- TLS to the scoring API -----------------------------------------------------------------

@pytest.mark.timeout(240)
async def test_tls_backend_wrong_ca_halts_without_loss_and_right_ca_predicts_everything(tmp_path, pki):
    async with aiohttp.ClientSession() as session, \
            Stage(session, tmp_path / "tls", "tls", tls=(pki["cert"], pki["key"])) as stage:
        assert stage.emulator.url.startswith("https://")
        inputs = await feed_churn(stage, 2000, seed=31)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))

        wrong = stage.gateway(stage.config(stage.qlik(ca_file=str(pki["other_ca"])), shutdown_timeout_s=3,
                                           retry={"max_backoff_ms": 500}), "wrong-ca")

        async def tls_not_ready() -> Any:
            found = await wrong.readyz()
            if found and found[0] == 503:
                reasons = " ".join(r for p in found[1]["pipelines"].values() for r in p["reasons"])
                return reasons if "certificate" in reasons else None
            return None

        reason = await _until(tls_not_ready, 60, "/readyz 503 naming the TLS failure")
        assert "TLS certificate verification failed" in reason
        halted = [orjson.loads(line) for line in wrong.log_path.read_text().splitlines()
                  if '"pipeline_halted"' in line]
        assert halted and "TLS certificate verification failed" in halted[0]["reason"]
        for _ in range(10):  # it stays stopped: not ready, consuming nothing, committing nothing
            status, _ = await wrong.readyz() or (None, None)
            assert status == 503
            assert await wrong.metric("scoring_gateway_consumer_paused") == 1.0
            await asyncio.sleep(0.3)  # observing a steady state over time is the point here
        assert await progress.committed() == {p: 0 for p in range(stage.t.partitions)}
        assert await wrong.terminate(30) == 0
        assert await stage.t.read_all(stage.t.dead_letter) == []
        assert await stage.t.read_all(stage.t.predictions) == []

        right = stage.gateway(stage.config(stage.qlik(ca_file=str(pki["ca"]))), "right-ca")
        assert await progress.wait_done(time.monotonic() + 90), right.log_tail()
        await progress.close()
        counts = tally(inputs, await read_outputs(stage.t))
        assert (counts.predicted, counts.dead_lettered, counts.lost, counts.duplicates) == (2000, 0, 0, 0)
        assert (await right.readyz() or (None,))[0] == 200
        assert await right.terminate() == 0


# ---- secrets --------------------------------------------------------------------------------

class LeakyBackend:
    """A DataRobot-shaped server that quotes the caller's credentials back in every error body,
    as careless APIs do: the gateway must not pass them on."""

    def __init__(self) -> None:
        self.status = 401
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        headers = request.headers
        quoted = f"Authorization={headers.get('Authorization')} DataRobot-Key={headers.get('DataRobot-Key')}"
        text = {401: f"Invalid API token: {quoted}", 503: f"Overloaded, retry later ({quoted})",
                422: f"Invalid value in row 0; the request carried {quoted}"}[self.status]
        return web.json_response({"message": text}, status=self.status)


@pytest.fixture
async def leaky() -> AsyncIterator[tuple[LeakyBackend, str]]:
    backend = LeakyBackend()
    app = web.Application()
    app.router.add_post("/predApi/v1.0/deployments/{deployment}/predictions", backend.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield backend, f"http://127.0.0.1:{port}/predApi/v1.0/deployments/{'a1' * 12}/predictions"
    finally:
        await runner.cleanup()


@pytest.mark.timeout(240)
async def test_credentials_echoed_by_the_backend_never_leave_the_gateway(tmp_path, leaky):
    """401, 503 and 422 bodies quoting the token and the DataRobot key: nothing the gateway writes
    (log, /metrics, /readyz, check output, dead-letter records) may hold either secret."""
    backend, url = leaky
    async with aiohttp.ClientSession() as session, Stage(session, tmp_path / "leak", "leak") as stage:
        secrets = stage.creds.values()
        config = stage.config({"type": "datarobot", "url": url, "token": f"${{{TOKEN_VAR}}}",
                               "datarobot_key": f"${{{DATAROBOT_KEY_VAR}}}"},
                              batching={"max_rows": 10, "linger_ms": 5},
                              # dead_letter: 503s run out of retries instead of pausing the pipeline,
                              # so the vendor's words reach the dead-letter reasons
                              retry={"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 200,
                                     "on_backend_outage": "dead_letter"})
        code, check_output = await stage.check(config)
        assert code == 1 and "401" in check_output

        values = [orjson.dumps(churn_features(i)) for i in range(10)]
        await stage.t.produce(values, [b"k%d" % i for i in range(10)])
        gateway = stage.gateway(config, "gateway")

        async def halted() -> bool:
            found = await gateway.readyz()
            return bool(found and found[0] == 503 and "401" in orjson.dumps(found[1]).decode())

        await _until(halted, 60, "the 401 to stop the pipeline")
        await gateway.scrape()
        backend.status = 503  # retries run out: all 10 rows are dead-lettered with the vendor's words

        async def dead_letters(n: int) -> Any:
            found = await stage.t.read_all(stage.t.dead_letter, quiet_s=0.3)
            return found if len(found) >= n else None

        await _until(lambda: dead_letters(10), 60, "10 dead letters after the 503s")
        backend.status = 422  # the data's fault: bisected down to single rows, each dead-lettered
        await stage.t.produce(values, [b"k%d" % i for i in range(10)])
        records = await _until(lambda: dead_letters(20), 60, "20 dead letters after the 422s")
        await gateway.scrape()
        await gateway.readyz()
        assert await gateway.terminate() == 0

        reasons = [orjson.loads(r.value)["reason"] for r in records]
        assert any("Overloaded" in reason for reason in reasons) and any("Invalid value" in r for r in reasons)
        outputs = [(f"dead letter {r.offset}", r.value) for r in records]
        evidence = [(str(p.name), p.read_bytes()) for p in stage.evidence.files] + stage.evidence.blobs + outputs
        assert len(evidence) >= 25
        leaks = [label for label, data in evidence for s in secrets if s.encode() in data]
        assert not leaks, f"secrets found in: {sorted(set(leaks))}"


# ---- Kafka security settings ----------------------------------------------------------------

def _kafka(environ: dict[str, str] | None = None, **kafka: Any) -> Any:
    doc = {"kafka": {"bootstrap_servers": "127.0.0.1:9092", **kafka},
           "pipelines": [{"name": "p", "input_topic": "in",
                          "backend": {"type": "qlik", "url": "https://h/api/v1/ml/deployments/d/realtime-predictions/actions/run"},
                          "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}
    return parse_config(doc, environ or {}).kafka


def test_plaintext_sets_no_security_options() -> None:
    options = client_options(_kafka())
    assert options["security_protocol"] == "PLAINTEXT"
    assert not {"ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"} & set(options)


def test_ssl_trusts_the_configured_ca_verifies_host_names_and_presents_the_client_certificate(pki) -> None:
    kafka = _kafka(security_protocol="SSL", ssl_cafile=str(pki["ca"]), ssl_certfile=str(pki["cert"]),
                   ssl_keyfile=str(pki["key"]))
    options = client_options(kafka)
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL" and isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(pair[0] for pair in cert["subject"]) for cert in context.get_ca_certs()]
    assert {"commonName": "scoring-test-ca"} in subjects
    assert not {"sasl_mechanism", "sasl_plain_password"} & set(options)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_settings_reach_the_aiokafka_clients(pki, protocol: str, mechanism: str) -> None:
    extra = {"ssl_cafile": str(pki["ca"])} if protocol == "SASL_SSL" else {}
    kafka = _kafka({"KAFKA_PASSWORD": "pw-from-the-environment"}, security_protocol=protocol,
                   sasl_mechanism=mechanism, sasl_username="gateway", sasl_password="${KAFKA_PASSWORD}", **extra)
    options = client_options(kafka)
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == (protocol, mechanism, "gateway", "pw-from-the-environment")
    assert ("ssl_context" in options) == (protocol == "SASL_SSL")
    consumer = AIOKafkaConsumer("in", **consumer_options(kafka))
    producer = AIOKafkaProducer(**producer_options(kafka))
    for client in (consumer._client, producer.client):  # what aiokafka will use on every connection
        assert (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username,
                client._sasl_plain_password) == (protocol, mechanism, "gateway", "pw-from-the-environment")
        assert (client._ssl_context is not None) == (protocol == "SASL_SSL")
    await consumer.stop()
    await producer.stop()


@pytest.fixture
def authenticating_broker(tmp_path: Path) -> Iterator[str]:
    """tansu with ``--authentication``, stopped by its PID."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(tmp_path / "tansu.log", "wb") as log:
        proc = subprocess.Popen([broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                 "--storage-engine", "memory://tansu/", "--authentication"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("tansu --authentication did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(120)
def test_a_refused_scram_handshake_keeps_the_password_out_of_every_output(tmp_path, authenticating_broker):
    password = "sasl-password-7f3a9c2e5b"
    doc = {"kafka": {"bootstrap_servers": authenticating_broker, "security_protocol": "SASL_PLAINTEXT",
                     "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "gateway",
                     "sasl_password": "${KAFKA_SASL_PASSWORD}", "session_timeout_ms": 6000},
           "admin": {"host": "127.0.0.1", "port": free_port()},
           "pipelines": [{"name": "p", "input_topic": "in", "outputs": {"predictions": "out", "dead_letter": "dlq"},
                          "backend": {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/d/"
                                                             "realtime-predictions/actions/run"}}]}
    path = tmp_path / "sasl.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = dict(os.environ, KAFKA_SASL_PASSWORD=password)
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path), "--probe",
                            "--probe-timeout-s", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    kafka_line = next(line for line in check.stdout.splitlines() if line.startswith("kafka "))
    assert check.returncode == 1 and "FAILED" in kafka_line, check.stdout[-2000:]
    assert "sasl_password: '***'" in check.stdout
    run = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1  # the handshake was attempted and refused: the process does not run unauthenticated
    failed = [orjson.loads(line) for line in run.stderr.splitlines() if '"pipeline_failed"' in line]
    assert len(failed) == 1, run.stderr[-3000:]
    assert (f"kafka {authenticating_broker}: authentication failed (SASL_PLAINTEXT SCRAM-SHA-512 as 'gateway')"
            in failed[0]["error"]), failed[0]["error"]
    assert "KeyError" not in failed[0]["error"]
    for output in (check.stdout, check.stderr, run.stdout, run.stderr):
        assert password not in output


# ---- the admin port -------------------------------------------------------------------------

def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    """One request as bytes on a socket (HTTP clients normalise the paths under test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.timeout(180)
async def test_the_admin_port_answers_only_its_three_paths(tmp_path, topics, emu):
    port = free_port()
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "admin-test-token"},
                         admin_port=port)
    gateway = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log").start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"

            async def up() -> bool:
                try:
                    async with session.get(base + "/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await _until(up, 60, "the admin port")
            for path in ("/metrics", "/healthz", "/readyz"):
                async with session.get(base + path) as r:
                    assert r.status in (200, 503) and "Server" not in r.headers
            for path in ("/", "/admin", "/metrics/", "/healthz/", "/HEALTHZ", "/readyz.json", "/favicon.ico",
                         "/debug/pprof", "/.env", "/metrics.bak", "/static/app.js", "/healthz%00"):
                async with session.get(base + path) as r:
                    assert (r.status, await r.text()) == (404, "not found"), path
                    assert "Server" not in r.headers
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"):
                for path in ("/metrics", "/healthz", "/readyz", "/"):
                    async with session.request(method, base + path, data=b"x") as r:
                        assert r.status == 404, (method, path)
        for target in (b"/../../../../etc/passwd", b"/metrics/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd",
                       b"/..%2f..%2f..%2fetc%2fpasswd", b"//etc/passwd", b"/healthz/..%2f..%2fetc%2fpasswd",
                       b"/%2e%2e%5c%2e%2e%5cwindows%5cwin.ini", b"/readyz/%2e%2e/%2e%2e/proc/self/environ"):
            status, body = await asyncio.to_thread(
                _raw, port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert status == 404, (target, body[:200])
            assert b"root:" not in body and b"Server:" not in body
    finally:
        gateway.stop()
