"""Kafka security end to end on Apache Kafka: the gateway consumes and produces through SASL/PLAIN,
SASL/SCRAM-SHA-256, SCRAM-SHA-512 (over TLS), TLS with a CA made here, and mutual TLS; a wrong
password, an untrusted broker certificate or a missing client certificate stops ``run`` and fails
``check --probe`` with one readable line naming the listener and the mechanism, and the secret
appears in none of what the gateway wrote (stdout, stderr, /metrics).

One broker serves every listener: PLAINTEXT (set-up and reading the outputs), SASL_PLAINTEXT with
all three mechanisms, SSL, SSL requiring a client certificate, and SASL_SSL. SCRAM users are
created when its storage is formatted (``--add-scram``); PLAIN users live in the listener's JAAS
settings.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from gateway.app import serve
from gateway.config import parse_config
from gateway.kafka.embedded import free_port
from testkit.brokers.choice import start_broker
from testkit.brokers.cluster import KafkaCluster, Listener
from testkit.processes import InProcessGateway
from testkit.topics import Topics, churn_features, gateway_config, ids_of
from tests.integration.test_security import make_ca, make_server_cert

# One worker runs this module: its broker with security listeners starts once (make test's loadgroup).
pytestmark = [pytest.mark.integration, pytest.mark.kafka_only, pytest.mark.xdist_group("kafka-security")]

ROOT = Path(__file__).resolve().parents[2]
USER = "gateway"
PASSWORDS = {"PLAIN": "plain-pw-5e1b7c", "SCRAM-SHA-256": "scram256-pw-8d2f4a", "SCRAM-SHA-512": "scram512-pw-3a9e6b"}
WRONG = "wrong-pw-0f7e2d1c"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _sasl_settings() -> dict[str, str]:
    plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'user_{USER}="{PASSWORDS["PLAIN"]}";')
    return {"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", "plain.sasl.jaas.config": plain,
            "scram-sha-256.sasl.jaas.config": _SCRAM_MODULE, "scram-sha-512.sasl.jaas.config": _SCRAM_MODULE}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaCluster, dict[str, Path]]]:
    folder = tmp_path_factory.mktemp("kafka-pki")
    ca = make_ca(folder, "kafka-test-ca")
    other = make_ca(folder, "untrusted-ca")
    cert, key = make_server_cert(folder, ca, "broker")
    client_cert, client_key = make_server_cert(folder, ca, "client")
    keystore = folder / "broker-keystore.pem"  # Kafka's PEM key store: the key, then the certificate
    keystore.write_text(key.read_text() + cert.read_text())
    tls = {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore),
           "ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca[0])}
    listeners = [Listener("SASL", "SASL_PLAINTEXT", _sasl_settings()), Listener("TLS", "SSL", tls),
                 Listener("MTLS", "SSL", {**tls, "ssl.client.auth": "required"}),
                 Listener("SASLTLS", "SASL_SSL", {**_sasl_settings(), **tls})]
    users = [(mechanism, USER, PASSWORDS[mechanism]) for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")]
    cluster = KafkaCluster(listeners=listeners, scram_users=users, workdir=tmp_path_factory.mktemp("kafka-secure"))
    start_broker(cluster)
    try:
        yield cluster, {"ca": ca[0], "other_ca": other[0], "client_cert": client_cert, "client_key": client_key}
    finally:
        cluster.stop()


def settings(case: str, cluster: KafkaCluster, pki: dict[str, Path], *, wrong: bool = False) -> dict[str, Any]:
    """The ``kafka`` section for one way in; ``wrong`` breaks its credential or its trust."""
    if case in ("PLAIN", "SCRAM-SHA-256"):
        return {"bootstrap_servers": cluster.address("SASL"), "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": case, "sasl_username": USER, "sasl_password": WRONG if wrong else PASSWORDS[case]}
    if case == "SCRAM-SHA-512":
        return {"bootstrap_servers": cluster.address("SASLTLS"), "security_protocol": "SASL_SSL",
                "sasl_mechanism": case, "sasl_username": USER, "ssl_cafile": str(pki["ca"]),
                "sasl_password": WRONG if wrong else PASSWORDS[case]}
    if case == "SSL":
        return {"bootstrap_servers": cluster.address("TLS"), "security_protocol": "SSL",
                "ssl_cafile": str(pki["other_ca" if wrong else "ca"])}
    assert case == "mTLS"
    found = {"bootstrap_servers": cluster.address("MTLS"), "security_protocol": "SSL", "ssl_cafile": str(pki["ca"])}
    return found if wrong else {**found, "ssl_certfile": str(pki["client_cert"]), "ssl_keyfile": str(pki["client_key"])}


CASES = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "SSL", "mTLS"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES)
async def test_the_gateway_consumes_and_produces_through_each_listener(secure, emu, case: str) -> None:
    cluster, pki = secure
    topics = Topics(cluster.bootstrap)  # set-up and read-back through the plaintext listener
    await topics.create()
    n = 300
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)], [b"k%d" % i for i in range(n)])
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "t"},
                         kafka=settings(case, cluster, pki), batching={"max_rows": 50, "linger_ms": 5})
    async with InProcessGateway(doc):
        preds = await topics.read(topics.predictions, lambda r: len(set(ids_of(r))) >= n, timeout_s=90)

        async def committed_to_end() -> bool:
            return sum(v or 0 for v in (await topics.committed()).values()) == n

        deadline = asyncio.get_running_loop().time() + 30
        while not await committed_to_end():
            assert asyncio.get_running_loop().time() < deadline, "offsets not committed through the listener"
            await asyncio.sleep(0.2)
    assert len(set(ids_of(preds))) == n


REFUSALS = {
    "PLAIN": "authentication failed (SASL_PLAINTEXT PLAIN as 'gateway'): SaslAuthenticationFailed:",
    "SCRAM-SHA-256": "authentication failed (SASL_PLAINTEXT SCRAM-SHA-256 as 'gateway'): SaslAuthenticationFailed:",
    "SCRAM-SHA-512": "authentication failed (SASL_SSL SCRAM-SHA-512 as 'gateway'): SaslAuthenticationFailed:",
    "SSL": "TLS handshake failed (SSL): the broker's certificate is not trusted:",
    "mTLS": "the broker closed the connection during the handshake (SSL): it may require a client certificate",
}


def _config_file(folder: Path, kafka: dict[str, Any], admin_port: int) -> tuple[Path, dict[str, str]]:
    """A config whose password comes from the environment, as deployments pass it."""
    env = dict(os.environ)
    if "sasl_password" in kafka:
        env["KAFKA_SASL_PASSWORD"] = kafka["sasl_password"]
        kafka = {**kafka, "sasl_password": "${KAFKA_SASL_PASSWORD}"}
    doc = {"kafka": {**kafka, "session_timeout_ms": 6000}, "admin": {"host": "127.0.0.1", "port": admin_port},
           "pipelines": [{"name": "p", "input_topic": "secure-in", "outputs": {"predictions": "o", "dead_letter": "d"},
                          "backend": {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/d/"
                                                             "realtime-predictions/actions/run"}}]}
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, env


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", CASES)
async def test_a_refused_login_or_untrusted_broker_stops_the_gateway_in_one_line(secure, tmp_path, case: str) -> None:
    cluster, pki = secure
    kafka = settings(case, cluster, pki, wrong=True)
    server = kafka["bootstrap_servers"]
    expected = f"kafka {server}: {REFUSALS[case]}"
    path, env = _config_file(tmp_path, kafka, free_port())

    run = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "run", "--config", str(path)],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr[-3000:]
    failed = [orjson.loads(line) for line in run.stderr.splitlines() if '"pipeline_failed"' in line]
    assert len(failed) == 1 and expected in failed[0]["error"], run.stderr[-3000:]
    assert "KeyError" not in failed[0]["error"] and "Unable to bootstrap" not in failed[0]["error"]

    check = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "check", "--config", str(path),
                                                     "--probe", "--probe-timeout-s", "10"],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in check.stdout.splitlines() if line.startswith("kafka ")]
    assert check.returncode == 1 and lines, check.stdout[-2000:]
    assert lines[0].startswith(f"kafka {server}: FAILED: {server}: {REFUSALS[case]}"), lines[0]

    registry = CollectorRegistry()  # what /metrics would have served, from an in-process run
    config = parse_config(yaml.safe_load(path.read_text()), env)
    assert await asyncio.wait_for(serve(config, registry=registry, handle_signals=False), 60) == 1
    metrics = generate_latest(registry).decode()
    assert 'scoring_gateway_pipeline_ready{pipeline="p"} 0.0' in metrics
    for output in (run.stdout, run.stderr, check.stdout, check.stderr, metrics):
        for secret in (WRONG, *PASSWORDS.values()):
            assert secret not in output
