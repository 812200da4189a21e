"""A broker that refuses idempotent producers (``InitProducerId``), as the embedded tansu broker does,
stops the gateway with one line that says so and names ``kafka.enable_idempotence``, instead of
aiokafka's bare ``UnknownError``. Against a real tansu broker, in both passes of the suite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.kafka.aiokafka_client import AiokafkaClients
from gateway.kafka.connection import KafkaStartError
from gateway.kafka.embedded import EmbeddedBroker
from testkit.processes import GatewayProcess
from testkit.topics import Topics, gateway_config, write_config

pytestmark = [pytest.mark.integration, pytest.mark.tansu]

QLIK = {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/d/realtime-predictions/actions/run",
        "token": "t"}


@pytest.fixture(scope="module")
def tansu() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


async def test_the_producers_start_says_the_broker_refused_an_idempotent_producer(tansu: EmbeddedBroker) -> None:
    doc = {"kafka": {"bootstrap_servers": tansu.bootstrap},
           "pipelines": [{"name": "p", "input_topic": "in", "backend": QLIK,
                          "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}
    producer = AiokafkaClients(parse_config(doc, {}).kafka).producer()
    try:
        with pytest.raises(KafkaStartError) as caught:
            await asyncio.wait_for(producer.start(), 60)
    finally:
        await producer.stop()
    assert str(caught.value) == (
        f"kafka {tansu.bootstrap}: the broker refused an idempotent producer (InitProducerId: UnknownError): "
        "set kafka.enable_idempotence to false for a broker without idempotent producers")


async def test_the_gateway_stops_with_that_one_line(tansu: EmbeddedBroker, tmp_path: Path) -> None:
    topics = Topics(tansu.bootstrap)
    await topics.create()
    doc = gateway_config(topics, QLIK, kafka={"enable_idempotence": True})
    proc = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log").start()
    code = proc.wait(60)
    log = (tmp_path / "gw.log").read_text()
    assert code == 1, log[-2000:]
    failures = [line for line in log.splitlines() if '"pipeline_failed"' in line]
    assert len(failures) == 1, log[-2000:]
    assert "refused an idempotent producer" in failures[0] and "kafka.enable_idempotence" in failures[0], failures[0]
    assert "UnknownError (PLAINTEXT)" not in log
