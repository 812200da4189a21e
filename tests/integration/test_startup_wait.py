"""A gateway started before its broker: it waits (alive, not ready), then scores everything once the
broker comes up; a broker that never comes ends start-up after ``kafka.startup_timeout_s`` in one line."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.kafka.embedded import free_port
from testkit.brokers.choice import start_broker
from testkit.brokers.cluster import KafkaCluster
from testkit.processes import GatewayProcess
from testkit.topics import Topics, churn_features, gateway_config, ids_of, write_config
from testkit.waits import async_wait_until

pytestmark = [pytest.mark.integration]

RECORDS = 3_000


def status(port: int, path: str) -> tuple[int, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return None


def waiting_lines(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [orjson.loads(line) for line in lines if '"kafka_waiting"' in line]


@pytest.mark.kafka_only
@pytest.mark.timeout(600)
async def test_a_gateway_started_before_its_broker_scores_everything_once_it_comes(
        emu: Any, tmp_path: Path) -> None:
    cluster = KafkaCluster(settings={"num.partitions": "4"}, workdir=tmp_path / "kafka").plan()
    topics = Topics(cluster.bootstrap)
    port = free_port()
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "t"}, admin_port=port,
                         kafka={"startup_timeout_s": 480}, batching={"max_rows": 100})
    log = tmp_path / "gw.log"
    gateway = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), log).start()
    try:
        # Nobody listens on the bootstrap port yet: alive, not ready, one line per attempt.
        await async_wait_until(lambda: len(waiting_lines(log)) >= 2, 60, "two start-up attempts logged")
        assert (status(port, "/healthz") or (None,))[0] == 200
        not_ready = status(port, "/readyz")
        assert not_ready is not None and not_ready[0] == 503, not_ready
        reasons = [r for p in not_ready[1]["pipelines"].values() for r in p["reasons"]]
        assert any(r.startswith("broker: waiting for kafka: ") and "unreachable" in r for r in reasons), reasons
        assert gateway.proc.poll() is None

        began = time.monotonic()
        await asyncio.to_thread(start_broker, cluster)
        await topics.create()  # the gateway may have created them already (the broker creates topics)
        await topics.produce([orjson.dumps(churn_features(i)) for i in range(RECORDS)],
                             [b"k%d" % (i % 97) for i in range(RECORDS)])
        inputs = {f"{r.partition}/{r.offset}" for r in await topics.read(topics.input, lambda r: len(r) >= RECORDS)}

        async def scored() -> bool:
            return len(set(ids_of(await topics.read_all(topics.predictions)))) >= RECORDS

        # On a loaded machine the broker's JVM alone can take minutes to start: the bound above is
        # generous, and a gateway that gave up anyway says so here rather than as a scoring timeout.
        assert gateway.proc.poll() is None, log.read_text()[-3000:]
        await async_wait_until(scored, 180, "every record scored", interval_s=0.5)
        print(f"\nbroker up and {RECORDS} records scored {time.monotonic() - began:.1f}s after the broker "
              f"started; {len(waiting_lines(log))} start-up attempts logged")
        await async_wait_until(lambda: (status(port, "/readyz") or (None,))[0] == 200, 30, "/readyz 200")
        ids = ids_of(await topics.read_all(topics.predictions))
        assert len(ids) == len(set(ids)) and len(ids) == len(inputs)
    finally:
        gateway.stop()
        cluster.stop()
    text = log.read_text(errors="replace")
    assert gateway.proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    assert '"kafka_reachable"' in text


@pytest.mark.timeout(120)
async def test_a_broker_that_never_comes_ends_start_up_in_one_line(tmp_path: Path) -> None:
    topics = Topics(f"127.0.0.1:{free_port()}")
    port = free_port()
    doc = gateway_config(topics, {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/d/"
                                                        "realtime-predictions/actions/run", "token": "t"},
                         admin_port=port, kafka={"startup_timeout_s": 3})
    log = tmp_path / "gw.log"
    gateway = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), log).start()
    began = time.monotonic()
    assert await asyncio.to_thread(gateway.wait, 60) == 1
    elapsed = time.monotonic() - began
    text = log.read_text(errors="replace")
    failed = [orjson.loads(line) for line in text.splitlines() if '"pipeline_failed"' in line]
    assert len(failed) == 1 and "unreachable" in failed[0]["error"], text[-3000:]
    assert "kafka.startup_timeout_s 3" in failed[0]["error"]
    assert "Traceback" not in text and len(waiting_lines(log)) >= 2
    assert 3 <= elapsed < 30
