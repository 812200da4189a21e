"""``delivery: exactly_once`` on Apache Kafka: a ``read_committed`` reader sees every input record's
outputs exactly once, whatever kills, rebalances and zombies happen.

Sizes are reduced for the suite; ``make chaos`` runs the 200 000-record, 10-kill campaign.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import orjson
import pytest

from gateway.kafka.embedded import free_port
from testkit.ledger import Outputs, read_inputs, read_outputs, tally
from testkit.processes import GatewayProcess
from testkit.topics import SESSION_TIMEOUT_MS, Topics, churn_features, gateway_config, write_config

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]


def exactly_once(topics: Topics, emu: Any, **pipeline: Any) -> dict[str, Any]:
    backend = pipeline.pop("backend", {"type": "qlik", "url": emu.qlik_url(), "token": "t"})
    return gateway_config(topics, backend, delivery="exactly_once", transaction_interval_ms=100,
                          batching={"max_rows": 100, "linger_ms": 5}, **pipeline)


def values(n: int, malformed_every: int = 0) -> list[bytes]:
    """``n`` churn records; every ``malformed_every``-th is not JSON (a dead letter at stage decode)."""
    return [b"{not json" if malformed_every and i % malformed_every == 0 else orjson.dumps(churn_features(i))
            for i in range(n)]


async def committed_outputs(topics: Topics) -> Outputs:
    return await read_outputs(topics, committed_only=True)


async def wait_complete(topics: Topics, inputs: dict[str, Any], timeout_s: float, *procs: GatewayProcess) -> Outputs:
    """Until a read_committed reader sees an output for every input (and the gateways still run)."""
    deadline = time.monotonic() + timeout_s
    while True:
        outputs = await committed_outputs(topics)
        if tally(inputs, outputs).lost == 0:
            return outputs
        for proc in procs:
            assert proc.proc.poll() is None, proc.log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{tally(inputs, outputs).lost} inputs without a committed output"
        await asyncio.sleep(1.0)


async def test_kills_leave_every_output_exactly_once_for_read_committed(topics, emu, tmp_path):
    n, kills = 12_000, 3
    await topics.produce(values(n, malformed_every=97), [f"c{i % 300}".encode() for i in range(n)])
    inputs = await read_inputs(topics, n)
    emu.configure(latency_ms=20, per_row_ms=0)  # about 5 000 records/s: the kills land mid-stream
    config = write_config(tmp_path / "gw.yaml", exactly_once(topics, emu, explanations_topic=topics.explanations,
                                                             concurrency={"max_in_flight_requests": 4}))
    rng = random.Random(5)
    for kill in range(kills):
        gateway = GatewayProcess(config, tmp_path / f"gw-{kill}.log").start()
        try:
            await asyncio.sleep(4.0 + rng.uniform(0.0, 3.0))  # joined and into the stream
        finally:
            gateway.signal(signal.SIGKILL)
            gateway.wait(10)
    last = GatewayProcess(config, tmp_path / "gw-last.log").start()
    try:
        outputs = await wait_complete(topics, inputs, 180, last)
    finally:
        last.stop()
    counts = tally(inputs, await committed_outputs(topics))
    everything = tally(inputs, await read_outputs(topics))  # read_uncommitted: aborted attempts too
    assert (counts.lost, counts.duplicates, counts.conflicting, counts.strangers) == (0, 0, 0, 0), counts
    assert counts.dead_lettered == len(range(0, n, 97)) and counts.predicted == n - counts.dead_lettered
    assert everything.duplicates >= counts.duplicates  # what read_uncommitted readers would see extra
    explanations = await topics.read_all(topics.explanations, quiet_s=1.0, committed_only=True)
    ids = [orjson.loads(r.value)["id"] for r in explanations]
    assert len(ids) == len(set(ids)) == counts.predicted  # explanations on their own topic: once each
    assert len(outputs.predictions) == counts.predicted


async def test_members_joining_and_leaving_change_nothing_for_read_committed(topics, emu, tmp_path):
    n = 10_000
    await topics.produce(values(n), [f"c{i % 300}".encode() for i in range(n)])
    inputs = await read_inputs(topics, n)
    emu.configure(latency_ms=20, per_row_ms=0)
    config = write_config(tmp_path / "gw.yaml", exactly_once(topics, emu, concurrency={"max_in_flight_requests": 3}))
    first = GatewayProcess(config, tmp_path / "first.log").start()
    try:
        for cycle in range(2):
            await asyncio.sleep(3.0)
            joiner = GatewayProcess(config, tmp_path / f"joiner-{cycle}.log").start()
            await asyncio.sleep(4.0)
            joiner.stop()  # a graceful leave: another rebalance
        await wait_complete(topics, inputs, 180, first)
    finally:
        first.stop()
    counts = tally(inputs, await committed_outputs(topics))
    assert (counts.lost, counts.duplicates) == (0, 0), counts


async def test_a_zombie_cannot_commit_after_it_lost_its_partitions(topics, emu, tmp_path):
    """A member paused past its session timeout loses its partitions to another; resumed, what it
    publishes for them is never committed (its transactional producers were fenced)."""
    n = 4_000
    await topics.produce(values(n), [f"c{i % 200}".encode() for i in range(n)])
    inputs = await read_inputs(topics, n)
    emu.configure(latency_ms=50, per_row_ms=0)  # slow enough that the zombie has work in flight
    port_a, port_b = free_port(), free_port()
    config_a = write_config(tmp_path / "a.yaml", exactly_once(topics, emu, admin_port=port_a))
    config_b = write_config(tmp_path / "b.yaml", exactly_once(topics, emu, admin_port=port_b))
    zombie = GatewayProcess(config_a, tmp_path / "zombie.log").start()
    heir = None
    try:
        await topics.read(topics.predictions, lambda r: len(r) >= 200, 60, committed_only=True)
        zombie.signal(signal.SIGSTOP)  # paused with requests and outputs in flight
        heir = GatewayProcess(config_b, tmp_path / "heir.log").start()
        await asyncio.sleep(SESSION_TIMEOUT_MS / 1000 + 6)  # the zombie's session expires; the heir takes over
        emu.configure(latency_ms=0)
        zombie.signal(signal.SIGCONT)  # it comes back believing it still owns its partitions
        await wait_complete(topics, inputs, 180, heir)
        await asyncio.sleep(3.0)  # give the zombie time to try to commit whatever it held
    finally:
        zombie.stop()
        if heir is not None:
            heir.stop()
    counts = tally(inputs, await committed_outputs(topics))
    assert (counts.lost, counts.duplicates) == (0, 0), counts
    log = (tmp_path / "zombie.log").read_text()
    assert "transaction_fenced" in log or "ProducerFenced" in log or "fenced" in log.lower(), log[-3000:]


async def test_on_tansu_exactly_once_stops_start_up_naming_the_key(tmp_path):
    """A broker without transactions: one clear line naming ``delivery``, exit 1."""
    from gateway.kafka.embedded import EmbeddedBroker

    with EmbeddedBroker() as tansu:
        topics = Topics(tansu.bootstrap)
        await topics.create()
        doc = gateway_config(topics, {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/d/"
                                      "realtime-predictions/actions/run", "token": "t"},
                             delivery="exactly_once", kafka={"enable_idempotence": False})
        proc = GatewayProcess(write_config(tmp_path / "gw.yaml", doc), tmp_path / "gw.log").start()
        code = proc.wait(60)
    log = (tmp_path / "gw.log").read_text()
    assert code == 1, log[-2000:]
    failures = [line for line in log.splitlines() if '"pipeline_failed"' in line]
    assert len(failures) == 1 and "delivery exactly_once" in failures[0], log[-2000:]
