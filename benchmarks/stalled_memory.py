"""Scenario 7: the gateway's memory while the backend never answers and a backlog waits."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from benchmarks.scenarios import Bench, ScenarioFailed, gateway_document, qlik_backend
from benchmarks.workload import RunTopics, produce_backlog
from testkit.measure import metric_sum
from testkit.processes import GatewayProcess

# ---- scenario 7: memory with a stalled backend ------------------------------------------------

@dataclass
class MemoryRun:
    peak_rss_bytes: int | None
    rss_series: list[tuple[float, int]]
    inflight_records: float
    consumer_paused: float
    consumed: float
    max_in_flight_records: int
    exit_status: int | None


MEMORY_SAMPLE_S = 0.1
# Short, so that hung requests time out and are retried within the window: the retry path's
# memory is measured too, not only the first wait.
MEMORY_REQUEST_TIMEOUT_S = 5


async def stalled_backend_memory(bench: Bench) -> list[MemoryRun]:
    """Scenario 7: a backend that never answers and a large backlog; the gateway's peak resident
    memory (VmHWM) over the window. Product defaults (``max_in_flight_records`` 20000) except a
    5 s request timeout."""
    sizes = bench.sizes
    await bench.emulator.areset(hang_rate=1.0)
    results = []
    try:
        for rep in range(sizes.memory_repetitions):
            results.append(await _memory_run(bench, f"s7-{rep}"))
    finally:
        await bench.emulator.areset()
    return results


async def _memory_run(bench: Bench, label: str) -> MemoryRun:
    sizes = bench.sizes
    with bench.broker(label) as broker:
        topics = RunTopics.fresh(label)
        await topics.create(broker.bootstrap)
        await produce_backlog(broker.bootstrap, topics, sizes.memory_backlog, bench.pool)
        doc = gateway_document(broker.bootstrap, topics,
                               qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                               session_timeout_ms=sizes.session_timeout_ms, shutdown_timeout_s=5,
                               idempotent=bench.idempotent,
                               sections={"retry": {"request_timeout_s": MEMORY_REQUEST_TIMEOUT_S}})
        gateway = GatewayProcess.from_config(doc, bench.workdir, label, session=bench.session).start()
        assert gateway.probe is not None
        series: list[tuple[float, int]] = []
        peak: int | None = None
        began = time.monotonic()
        try:
            while time.monotonic() - began < sizes.memory_window_s:
                if not gateway.running():
                    raise ScenarioFailed(f"the gateway exited early:\n{gateway.log_tail()}")
                memory = gateway.probe.memory_bytes()
                if "VmRSS" in memory:
                    series.append((time.monotonic() - began, memory["VmRSS"]))
                    peak = memory.get("VmHWM", peak)
                await asyncio.sleep(MEMORY_SAMPLE_S)
            metrics = await gateway.metrics()
            final = gateway.probe.memory_bytes()
            peak = final.get("VmHWM", peak)
        finally:
            exit_status = await gateway.astop(timeout_s=30)
    return MemoryRun(
        peak_rss_bytes=peak, rss_series=series,
        inflight_records=metric_sum(metrics, "scoring_gateway_inflight_records"),
        consumer_paused=metric_sum(metrics, "scoring_gateway_consumer_paused"),
        consumed=metric_sum(metrics, "scoring_gateway_records_consumed_total"),
        max_in_flight_records=20000, exit_status=exit_status)
