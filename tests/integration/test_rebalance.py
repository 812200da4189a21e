"""A rebalance while a slow backend holds requests in flight (two ``scoring-gateway run`` processes).

A second member joins while the first has requests outstanding. Before its partitions go, the
first member finishes in-flight work within ``shutdown_timeout_s`` and commits it (no duplicates),
or, when the backend is slower than that, abandons it at the timeout: the group does not wait for
the backend, and the abandoned records are scored again by their next owner. Nothing is lost.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.kafka.embedded import free_port
from testkit.ledger import read_inputs, read_outputs, tally
from testkit.processes import GatewayProcess
from testkit.topics import churn_features, gateway_config, write_config
from testkit.waits import async_wait_until

pytestmark = pytest.mark.integration


def metric(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    return sum(values) if values else None


def events(log: Path, name: str) -> list[dict[str, Any]]:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return []
    found = (orjson.loads(line) for line in lines if line.startswith("{"))
    return [doc for doc in found if doc.get("event") == name]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("variant", "latency_ms", "shutdown_s"), [("finished", 1500, 8), ("abandoned", 15000, 2)])
async def test_revoked_work_is_finished_or_abandoned_within_the_timeout(tmp_path, topics, emu, variant: str,
                                                                         latency_ms: int, shutdown_s: int) -> None:
    n = 3000
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)], [b"k%d" % (i % 200) for i in range(n)])
    inputs = await read_inputs(topics, n)
    emu.configure(latency_ms=latency_ms)
    ports = {"a": free_port(), "b": free_port()}

    def config(member: str) -> Path:
        doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "t"}, admin_port=ports[member],
                             shutdown_timeout_s=shutdown_s, batching={"max_rows": 50, "linger_ms": 5},
                             # at most four batches between fetch and publish: all of them in flight
                             concurrency={"max_in_flight_requests": 4, "max_in_flight_records": 200})
        return write_config(tmp_path / f"{member}.yaml", doc)

    a = GatewayProcess(config("a"), tmp_path / "a.log").start()
    b: GatewayProcess | None = None
    try:
        await async_wait_until(lambda: (metric(ports["a"], "scoring_gateway_inflight_requests") or 0) >= 1, 60,
                               "requests in flight at the first member")
        await async_wait_until(lambda: events(tmp_path / "a.log", "partitions_assigned"), 30, "a's assignment")
        joined_at = time.monotonic()
        b = GatewayProcess(config("b"), tmp_path / "b.log").start()

        def rebalanced() -> bool:
            return (len(events(tmp_path / "a.log", "partitions_assigned")) >= 2
                    and bool(events(tmp_path / "b.log", "partitions_assigned")))

        await async_wait_until(rebalanced, 60, "both members assigned after the join", interval_s=0.1)
        took = time.monotonic() - joined_at
        abandoned = events(tmp_path / "a.log", "drain_timeout")
        emu.configure(latency_ms=0)

        async def complete() -> Any:
            counts = tally(inputs, await read_outputs(topics))
            return counts if counts.lost == 0 else None

        counts = await async_wait_until(complete, 120, "every input scored", interval_s=0.5)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    print(f"\n{variant}: rebalance took {took:.1f}s with the backend at {latency_ms} ms, shutdown_timeout_s "
          f"{shutdown_s}; abandoned tasks {sum(e['abandoned_tasks'] for e in abandoned)}; "
          f"duplicates {counts.duplicates}")
    assert counts.lost == 0 and counts.strangers == 0 and counts.predicted == n
    # B's process start and the group join take a few seconds on top of the drain itself.
    assert took < shutdown_s + 10
    if variant == "finished":
        assert not abandoned and counts.duplicates == 0  # finished, published and committed before release
    else:
        assert abandoned and abandoned[0]["abandoned_tasks"] > 0
        assert took < latency_ms / 1000  # the group did not wait for the slow backend
