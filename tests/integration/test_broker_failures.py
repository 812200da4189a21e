"""Broker failures on a three-node Apache Kafka cluster (replication factor 3, ``min.insync.replicas=2``).

Node 1 is made the leader of every input and output partition; mid-stream it is killed with
``kill -9`` (by PID) and restarted, twice (the second time, whichever node leads then). Nothing may be
lost; ``/readyz`` must turn 503 naming the broker while the dead leader's partitions have no leader
(its outputs wait unacknowledged), and 200 again after; the duplicates are counted and printed
(an idempotent producer writes a retried batch once, but outputs published after the last commit
of a failed-over group coordinator are published again).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.kafka.embedded import free_port
from testkit.brokers.admin import create_led_topics, partition_leaders
from testkit.brokers.choice import start_broker
from testkit.brokers.cluster import KafkaCluster
from testkit.ledger import read_inputs, read_outputs, tally
from testkit.processes import GatewayProcess
from testkit.topics import Topics, churn_features, gateway_config, write_config

# One worker runs this module: its module-scoped three-broker cluster is started once (make test's loadgroup).
pytestmark = [pytest.mark.integration, pytest.mark.kafka_only, pytest.mark.xdist_group("three-brokers")]

RECORDS = 24_000
KILLS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    kafka = KafkaCluster(nodes=3, workdir=tmp_path_factory.mktemp("kafka-3"))
    start_broker(kafka)
    try:
        yield kafka
    finally:
        kafka.stop()


def readyz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return None


def published(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("scoring_gateway_records_published_total{"))


async def poll(condition: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await asyncio.to_thread(condition)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


@pytest.mark.timeout(420)
async def test_killing_the_leader_twice_loses_nothing_and_readiness_shows_the_outage(
        cluster: KafkaCluster, emu: Any, tmp_path: Path) -> None:
    topics = Topics(cluster.bootstrap)
    await create_led_topics(cluster.bootstrap, [topics.input, topics.predictions, topics.dead_letter],
                            topics.partitions, leader=1, nodes=[1, 2, 3])
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(RECORDS)],
                         [b"customer-%d" % (i % 500) for i in range(RECORDS)])
    inputs = await read_inputs(topics, RECORDS)
    assert len(inputs) == RECORDS
    emu.configure(latency_ms=60)  # about 2 500 records/s: the stream outlasts both outages
    port = free_port()
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "t"}, admin_port=port,
                         batching={"max_rows": 50, "linger_ms": 5}, concurrency={"max_in_flight_requests": 3})
    gateway = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log").start()
    outages: list[dict[str, Any]] = []
    try:
        for kill in range(KILLS):
            mark = RECORDS * (0.15 + 0.3 * kill)
            await poll(lambda m=mark: published(port) >= m, 120, f"{mark:.0f} records published")
            leader = (await partition_leaders(cluster.bootstrap, topics.input))[0]
            killed_at = time.monotonic()
            cluster.node(leader).kill()

            def not_ready() -> str | None:
                found = readyz(port)
                if found and found[0] == 503:
                    reasons = [r for p in found[1]["pipelines"].values() for r in p["reasons"]]
                    return next((r for r in reasons if r.startswith("broker: ")), None)
                return None

            try:
                reason = await poll(not_ready, 30, "/readyz 503 naming the broker")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last /readyz {readyz(port)}; gateway log: "
                                     f"{(tmp_path / 'gw.log').read_text()[-4000:]}") from None
            seen_after = time.monotonic() - killed_at
            await asyncio.to_thread(cluster.restart, leader)
            await poll(lambda: (readyz(port) or (None,))[0] == 200, 90, "/readyz 200 after the restart")
            outages.append({"killed": leader, "not_ready_after_s": round(seen_after, 1), "reason": reason,
                            "ready_again_after_s": round(time.monotonic() - killed_at, 1)})
        emu.configure(latency_ms=0)

        def outputs_complete() -> bool:
            return published(port) >= RECORDS

        await poll(outputs_complete, 180, "every record published")
        outputs = await read_outputs(topics)
        counts = tally(inputs, outputs)
        while counts.lost:  # published counts include duplicates: read until every id is there
            assert gateway.proc.poll() is None, (tmp_path / "gw.log").read_text()[-3000:]
            await asyncio.sleep(0.5)
            outputs = await read_outputs(topics)
            counts = tally(inputs, outputs)
            assert time.monotonic() - killed_at < 300, f"lost {counts.lost}"
    finally:
        gateway.stop()
    print(f"\nleader kills: {outages}\nrecords {counts.records_in}, predicted {counts.predicted}, "
          f"lost {counts.lost}, duplicates {counts.duplicates}")
    assert len(outages) == KILLS and all("not acknowledged" in o["reason"] or "failed" in o["reason"]
                                         for o in outages)
    assert counts.lost == 0 and counts.strangers == 0 and counts.predicted == RECORDS
    assert gateway.proc.returncode == 0


@pytest.mark.timeout(420)
async def test_exactly_once_survives_the_output_leader_killed(cluster: KafkaCluster, emu: Any, tmp_path: Path) -> None:
    """The transactions' partitions lose their leader mid-stream: what was in flight aborts or
    commits, never both, so a read_committed reader still sees each input exactly once."""
    records = 8_000
    topics = Topics(cluster.bootstrap)
    await create_led_topics(cluster.bootstrap, [topics.input, topics.predictions, topics.dead_letter],
                            topics.partitions, leader=1, nodes=[1, 2, 3])
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(records)],
                         [b"customer-%d" % (i % 500) for i in range(records)])
    inputs = await read_inputs(topics, records)
    emu.configure(latency_ms=60)
    port = free_port()
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "t"}, admin_port=port,
                         delivery="exactly_once", transaction_interval_ms=100,
                         batching={"max_rows": 50, "linger_ms": 5}, concurrency={"max_in_flight_requests": 3})
    gateway = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log").start()
    try:
        await poll(lambda: published(port) >= records * 0.25, 120, "a quarter of the records published")
        leader = (await partition_leaders(cluster.bootstrap, topics.predictions))[0]
        cluster.node(leader).kill()
        await asyncio.sleep(3.0)  # transactions keep going against the surviving replicas
        await asyncio.to_thread(cluster.restart, leader)
        emu.configure(latency_ms=0)
        deadline = time.monotonic() + 240
        while True:
            outputs = await read_outputs(topics, committed_only=True)
            counts = tally(inputs, outputs)
            if counts.lost == 0:
                break
            assert gateway.proc.poll() is None, (tmp_path / "gw.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{counts.lost} inputs without a committed output"
            await asyncio.sleep(1.0)
    finally:
        gateway.stop()
    uncommitted = tally(inputs, await read_outputs(topics))
    print(f"\nexactly_once, output leader {leader} killed: committed duplicates {counts.duplicates}, "
          f"read_uncommitted duplicates {uncommitted.duplicates}")
    assert counts.duplicates == 0 and counts.strangers == 0 and counts.predicted == records
    assert gateway.proc.returncode == 0
