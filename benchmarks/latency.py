"""Scenario 6: latency at half the maximum throughput, with a bare consumer on the same input as reference."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.baselines import consumer_latency
from benchmarks.scenarios import LATENCY_LINGER_MS, POLL_S, Bench, GatewayRun, ScenarioFailed, qlik_backend, run_gateway
from benchmarks.workload import RunTopics, TopicContents, produce_backlog, produce_paced
from gateway.config import KafkaConfig
from gateway.kafka.connection import consumer_options
from testkit.processes import GatewayProcess

# ---- scenario 6: latency at half the maximum throughput ---------------------------------------

@dataclass
class LatencyRun:
    run: GatewayRun
    rate_per_s: float
    end_to_end_ms: list[float]
    added_ms: list[float]
    consumer_alone_ms: list[float]


async def latency_at_half_load(bench: Bench, max_rate: float) -> list[LatencyRun]:
    """Scenario 6: a paced producer at half ``max_rate`` after a warm-up that waits for the group
    join; latency = output record timestamp - input record timestamp, for the paced records only."""
    sizes = bench.sizes
    rate = max_rate / 2.0 if sizes.latency_rate_cap is None else min(max_rate / 2.0, sizes.latency_rate_cap)
    paced = int(rate * sizes.latency_duration_s)

    async def feed(bootstrap: str, topics: RunTopics, gateway: GatewayProcess) -> tuple[float, int]:
        await produce_backlog(bootstrap, topics, sizes.latency_warmup, bench.pool)
        deadline = time.monotonic() + sizes.run_budget_s
        while ((await gateway.published()) or 0) < sizes.latency_warmup:
            if time.monotonic() > deadline:
                raise ScenarioFailed("the warm-up records were not published")
            await asyncio.sleep(POLL_S)
        start_ms = time.time() * 1000.0
        sent = await produce_paced(bootstrap, topics, rate, sizes.latency_duration_s, bench.pool,
                                   start=sizes.latency_warmup)
        return start_ms, sent

    results = []
    sections = {"batching": {"linger_ms": LATENCY_LINGER_MS}}
    for rep in range(sizes.repetitions):
        run = await run_gateway(bench, f"s6-{rep}", qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                                backlog=0, expected=sizes.latency_warmup + paced, feed=feed,
                                keep_values=True, sections=sections)
        start_ms, _ = run.feed_result
        end_to_end, added = _latencies(run.predictions, start_ms)
        alone = await _consumer_alone(bench, f"s6-consumer-{rep}", rate)
        results.append(LatencyRun(run, rate, end_to_end, added, alone))
    return results


def gateway_fetch_options(bootstrap: str) -> dict[str, Any]:
    """The ``fetch_*`` settings the gateway's consumer uses with a default ``kafka`` section."""
    options = consumer_options(KafkaConfig(bootstrap_servers=bootstrap))
    return {key: value for key, value in options.items() if key.startswith("fetch_")}


async def _consumer_alone(bench: Bench, label: str, rate: float) -> list[float]:
    """The same paced input read by a bare aiokafka consumer with the gateway's fetch settings:
    the share of the latency that the broker and the Kafka client account for."""
    duration = bench.sizes.latency_duration_s
    with bench.broker(label) as broker:
        topics = RunTopics.fresh(label)
        await topics.create(broker.bootstrap)
        ready = asyncio.Event()
        reader = asyncio.create_task(consumer_latency(broker.bootstrap, topics, int(rate * duration),
                                                      duration * 2 + 30, ready,
                                                      **gateway_fetch_options(broker.bootstrap)))
        try:
            await ready.wait()
            await produce_paced(broker.bootstrap, topics, rate, duration, bench.pool)
            return await reader
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)


def _latencies(predictions: TopicContents, since_ms: float) -> tuple[list[float], list[float]]:
    end_to_end: list[float] = []
    added: list[float] = []
    for timestamp, value in zip(predictions.timestamps, predictions.values, strict=True):
        doc = orjson.loads(value)
        source_ms = doc["source"]["timestamp_ms"]
        if source_ms < since_ms:
            continue  # a warm-up record
        total = timestamp - source_ms
        end_to_end.append(total)
        added.append(total - float(doc.get("latency_ms") or 0.0))
    return end_to_end, added
