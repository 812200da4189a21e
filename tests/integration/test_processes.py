"""Crashes, signals, consumer groups and backpressure, with the gateway as a real process."""

from __future__ import annotations

import asyncio
import signal
import urllib.request

import orjson
import pytest

from testkit.processes import GatewayProcess
from testkit.topics import churn_features, gateway_config, ids_of, write_config
from testkit.waits import async_wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tansu]


def slow_qlik(emu):
    return {"type": "qlik", "url": emu.qlik_url(), "token": "test-token"}


async def feed(topics, n):
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)],
                         [f"k{i % 300}".encode() for i in range(n)])
    return {f"{r.topic}/{r.partition}/{r.offset}" for r in await topics.read(topics.input, lambda r: len(r) >= n)}


async def count(topics, topic):
    return len(await topics.read_all(topic))


async def all_ids(topics, expected, timeout_s=120):
    async def done():
        preds = await topics.read_all(topics.predictions)
        return set(ids_of(preds)) >= expected and preds
    preds = await async_wait_until(done, timeout_s, "every input id in the predictions topic", interval_s=0.5)
    return ids_of(preds)


def config_file(tmp_path, topics, emu, name="gw.yaml", **extra):
    doc = gateway_config(topics, slow_qlik(emu), batching={"max_rows": 50, "linger_ms": 5},
                         concurrency={"max_in_flight_requests": 4}, **extra)
    return write_config(tmp_path / name, doc)


async def test_kill_dash_nine_mid_stream_loses_nothing(tmp_path, topics, emu):
    n = 12_000
    expected = await feed(topics, n)
    emu.configure(latency_ms=25)
    path = config_file(tmp_path, topics, emu)
    first = GatewayProcess(path, tmp_path / "first.log").start()
    try:
        await async_wait_until(lambda: _at_least(topics, 2000), 60, "some predictions before the crash",
                               interval_s=0.3)
    finally:
        first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    emu.configure(latency_ms=0)
    second = GatewayProcess(path, tmp_path / "second.log").start()
    try:
        ids = await all_ids(topics, expected)
    finally:
        second.stop()
    assert set(ids) == expected  # duplicates are allowed after a crash, losses are not
    assert len(ids) >= n


async def _at_least(topics, n):
    return await count(topics, topics.predictions) >= n


async def test_sigterm_mid_stream_then_restart_has_no_duplicates(tmp_path, topics, emu):
    n = 12_000
    expected = await feed(topics, n)
    emu.configure(latency_ms=25)
    path = config_file(tmp_path, topics, emu)
    first = GatewayProcess(path, tmp_path / "first.log").start()
    await async_wait_until(lambda: _at_least(topics, 2000), 60, "some predictions", interval_s=0.3)
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0, (tmp_path / "first.log").read_text()[-3000:]
    emu.configure(latency_ms=0)
    second = GatewayProcess(path, tmp_path / "second.log").start()
    try:
        ids = await all_ids(topics, expected)
        ids = ids_of(await topics.read_all(topics.predictions, quiet_s=1.0))
    finally:
        second.stop()
    assert len(ids) == n and set(ids) == expected


async def test_two_processes_share_the_partitions_and_survive_one_leaving(tmp_path, topics, emu):
    n = 12_000
    expected = await feed(topics, n)
    emu.configure(latency_ms=25)
    path = config_file(tmp_path, topics, emu)
    a = GatewayProcess(path, tmp_path / "a.log").start()
    b = GatewayProcess(path, tmp_path / "b.log").start()
    try:
        await async_wait_until(lambda: _at_least(topics, 3000), 90, "progress with two members",
                               interval_s=0.3)
        a.signal(signal.SIGTERM)
        assert a.wait(40) == 0
        emu.configure(latency_ms=0)
        ids = await all_ids(topics, expected, timeout_s=150)
    finally:
        a.stop()
        b.stop()
    assert set(ids) == expected
    for log in ("a.log", "b.log"):
        assert "partitions_assigned" in (tmp_path / log).read_text()


async def test_hanging_backend_pauses_the_consumer_and_bounds_memory(tmp_path, topics, emu):
    n = 200_000
    await topics.produce([orjson.dumps(churn_features(i % 5000)) for i in range(n)])
    emu.configure(hang_rate=1.0)
    doc = gateway_config(topics, slow_qlik(emu), batching={"max_rows": 500, "linger_ms": 10},
                         concurrency={"max_in_flight_records": 20000},
                         retry={"request_timeout_s": 60}, admin_port=_free())
    path = write_config(tmp_path / "gw.yaml", doc)
    gw = GatewayProcess(path, tmp_path / "gw.log").start()
    url = f"http://127.0.0.1:{doc['admin']['port']}/metrics"
    try:
        def metric(name):
            try:
                text = urllib.request.urlopen(url, timeout=2).read().decode()
            except OSError:
                return None
            for line in text.splitlines():
                if line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
            return None

        await async_wait_until(lambda: metric("scoring_gateway_consumer_paused") == 1.0, 60,
                               "the consumer to pause")
        peak = 0
        for _ in range(20):  # observe for a while: it must stay paused and bounded
            inflight = metric("scoring_gateway_inflight_records")
            assert inflight is not None and inflight <= 20000
            assert metric("scoring_gateway_consumer_paused") == 1.0
            peak = max(peak, _rss_mb(gw.proc.pid))
            await asyncio.sleep(0.25)  # sampling memory over time is the point here
        consumed = metric("scoring_gateway_records_consumed_total")
        assert consumed is not None and consumed <= 20000
        print(f"\nhanging backend, 200k backlog: resident memory {peak:.0f} MB, consumed {consumed:.0f}")
        assert peak < 400
    finally:
        gw.kill()


def _free():
    from gateway.kafka.embedded import free_port
    return free_port()


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0
