"""The gateway under load, as users run it: ``python -m gateway run --config FILE`` in its own process.

Every repetition gets a fresh broker (memory storage, so nothing accumulates from run to run), fresh
topics and a fresh consumer group; the backlog is produced before the gateway starts. Throughput is
read from the output topic afterwards: (records - 1) / (last timestamp - first timestamp), so the
process start and the group join are not counted, and the gateway, the ceiling and the hand-written
consumer are measured the same way. While the gateway works the runner only polls ``/metrics``
(a few requests per second) to know when it is done, and samples each process's CPU time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.baselines import consumer_latency
from benchmarks.modes import Sizes
from benchmarks.processes import EmulatorProcess, GatewayProcess, MetricSample, ProcessProbe, metric_sum, metric_values
from benchmarks.workload import RunTopics, TopicContents, produce_backlog, produce_paced, read_topic, value_pool
from gateway.broker import EmbeddedBroker
from gateway.config import KafkaConfig
from gateway.kafka import consumer_options
from tests.kafka.choice import make_broker
from tests.kafka.cluster import KafkaCluster

POLL_S = 0.2
LATENCY_LINGER_MS = 10  # the product default, written out because scenario 6's goal depends on it
SETTLE_S = 3.0
DURATION_METRIC = "scoring_gateway_request_duration_seconds_bucket"


class ScenarioFailed(RuntimeError):
    """The gateway exited or produced nothing within the budget: the figure cannot be measured."""


@dataclass
class Bench:
    """What every scenario shares: sizes, the runner's HTTP session, the emulator, a work folder."""

    sizes: Sizes
    session: aiohttp.ClientSession
    emulator: EmulatorProcess
    workdir: Path
    pool: list[bytes] = field(default_factory=value_pool)
    broker_kind: str = "kafka"  # or "tansu"

    @property
    def idempotent(self) -> bool:
        """tansu refuses InitProducerId: the gateway's producer is idempotent only on Apache Kafka."""
        return self.broker_kind == "kafka"

    @contextmanager
    def broker(self, label: str) -> Iterator[EmbeddedBroker | KafkaCluster]:
        """A fresh broker for one repetition: nothing accumulates from run to run."""
        with make_broker(self.broker_kind, self.workdir / f"broker-{label}.log") as broker:
            yield broker


# ---- configuration ----------------------------------------------------------------------------

def qlik_backend(url: str, *, include_shap: bool, rate_limit_per_minute: int | None = None) -> dict[str, Any]:
    return {"type": "qlik", "url": url, "token": "benchmark", "include_shap": include_shap,
            "rate_limit_per_minute": rate_limit_per_minute}


def datarobot_backend(url: str, explanations: str) -> dict[str, Any]:
    """CSV request bodies; SHAP and XEMP ask for 3 explanations per row."""
    backend: dict[str, Any] = {"type": "datarobot", "url": url, "token": "benchmark", "body_format": "csv"}
    if explanations != "none":
        backend.update(max_explanations=3, explanation_algorithm=explanations)
    return backend


def gateway_document(bootstrap: str, topics: RunTopics, backend: dict[str, Any], *,
                     session_timeout_ms: int, sections: dict[str, Any] | None = None,
                     shutdown_timeout_s: float = 10, idempotent: bool = True) -> dict[str, Any]:
    """A one-pipeline config: product defaults except the connection, the group and ``sections``."""
    pipeline: dict[str, Any] = {
        "name": "bench", "input_topic": topics.input, "backend": backend,
        "outputs": {"predictions": topics.predictions, "dead_letter": topics.dead_letter},
    }
    pipeline.update(sections or {})
    return {"kafka": {"bootstrap_servers": bootstrap, "group_id": topics.group,
                      "session_timeout_ms": session_timeout_ms, "enable_idempotence": idempotent},
            "shutdown_timeout_s": shutdown_timeout_s,
            "pipelines": [pipeline]}


# ---- one gateway repetition -------------------------------------------------------------------

@dataclass
class Progress:
    """``/metrics`` polled while the gateway works: published counts and CPU at first and last poll."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu_first: dict[str, float | None] = field(default_factory=dict)
    cpu_last: dict[str, float | None] = field(default_factory=dict)
    complete: bool = False

    @property
    def published(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def busy_cores(self) -> dict[str, float | None]:
        """CPU seconds per wall second of each process while outputs were being published."""
        if len(self.samples) < 2:
            return {name: None for name in self.cpu_first}
        wall = self.samples[-1][0] - self.samples[0][0]
        busy: dict[str, float | None] = {}
        for name, first in self.cpu_first.items():
            last = self.cpu_last.get(name)
            busy[name] = (last - first) / wall if first is not None and last is not None and wall > 0 else None
        return busy

    def window_rate(self) -> float | None:
        """Records/s between the first and the last poll that saw outputs (the first batch excluded)."""
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def _cpu(probes: dict[str, ProcessProbe]) -> dict[str, float | None]:
    return {name: probe.cpu_seconds() for name, probe in probes.items()}


async def watch(gateway: GatewayProcess, probes: dict[str, ProcessProbe], *, budget_s: float,
                expected: int | None = None, window_s: float | None = None,
                feeder: asyncio.Task[Any] | None = None) -> Progress:
    """Poll until ``expected`` records are published, or ``window_s`` after the first output.

    With a ``feeder`` (records produced while the gateway runs), a feeder that failed ends the
    watch with its error, and once it is done the watch also ends when nothing more is published
    for ``SETTLE_S`` (the feeder may have produced fewer records than planned).
    """
    progress = Progress()
    deadline = time.monotonic() + budget_s
    changed = time.monotonic()
    while time.monotonic() < deadline:
        if not gateway.running():
            raise ScenarioFailed(f"the gateway exited early:\n{gateway.log_tail()}")
        if feeder is not None and feeder.done() and feeder.exception() is not None:
            raise feeder.exception()  # type: ignore[misc]
        published = await gateway.published()
        now = time.monotonic()
        if published:
            if not progress.samples:
                progress.cpu_first = _cpu(probes)
            if published != progress.published:
                changed = now
            progress.samples.append((now, published))
            progress.cpu_last = _cpu(probes)
            if expected is not None and published >= expected:
                progress.complete = True
                break
            if window_s is not None and now - progress.samples[0][0] >= window_s:
                progress.complete = True
                break
            if feeder is not None and feeder.done() and now - changed >= SETTLE_S:
                break
        await asyncio.sleep(POLL_S)
    return progress


@dataclass
class GatewayRun:
    label: str
    expected: int | None
    progress: Progress
    predictions: TopicContents
    dead_letters: int
    metrics: list[MetricSample]
    exit_status: int | None
    feed_result: Any = None

    @property
    def rate(self) -> float | None:
        return self.predictions.rate()

    def summary(self) -> dict[str, Any]:
        busy = self.progress.busy_cores()
        gateway_cores = busy.get("gateway")
        return {
            "label": self.label, "expected": self.expected, "predictions": len(self.predictions),
            "dead_letters": self.dead_letters, "complete": self.progress.complete,
            "records_per_s": self.rate, "busy_cores": busy,
            "records_per_gateway_cpu_s": (self.rate / gateway_cores) if self.rate and gateway_cores else None,
            "exit_status": self.exit_status,
        }


Feed = Callable[[str, RunTopics, GatewayProcess], Awaitable[Any]]


async def run_gateway(bench: Bench, label: str, backend: dict[str, Any], *, backlog: int,
                      expected: int | None, sections: dict[str, Any] | None = None,
                      feed: Feed | None = None, window_s: float | None = None,
                      keep_values: bool = False, emulator: EmulatorProcess | None = None) -> GatewayRun:
    """One repetition: fresh broker and topics, backlog, gateway process, watch, stop, read outputs."""
    emulator = emulator or bench.emulator
    with bench.broker(label) as broker:
        bootstrap = broker.bootstrap
        topics = RunTopics.fresh(label)
        await topics.create(bootstrap)
        if backlog:
            await produce_backlog(bootstrap, topics, backlog, bench.pool)
        doc = gateway_document(bootstrap, topics, backend, sections=sections, idempotent=bench.idempotent,
                               session_timeout_ms=bench.sizes.session_timeout_ms)
        gateway = GatewayProcess(bench.session, doc, bench.workdir, label).start()
        assert gateway.probe is not None and broker.pid is not None
        probes = {"gateway": gateway.probe, "emulator": ProcessProbe(emulator.pid),
                  "broker": ProcessProbe(broker.pid)}
        feeder = asyncio.create_task(feed(bootstrap, topics, gateway)) if feed else None
        try:
            progress = await watch(gateway, probes, budget_s=bench.sizes.run_budget_s,
                                   expected=expected, window_s=window_s, feeder=feeder)
            metrics = await gateway.metrics()
            feed_result = await feeder if feeder is not None else None
        finally:
            if feeder is not None and not feeder.done():
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            exit_status = await gateway.stop()
        if not progress.samples:
            raise ScenarioFailed(f"{label}: no output within {bench.sizes.run_budget_s:.0f}s:\n"
                                 f"{gateway.log_tail()}")
        predictions = await read_topic(bootstrap, topics.predictions, topics.partitions,
                                       expected=progress.published, timeout_s=60, keep_values=keep_values)
        dead = await read_topic(bootstrap, topics.dead_letter, topics.partitions, expected=None,
                                timeout_s=10, idle_s=0.5)
    return GatewayRun(label, expected, progress, predictions, len(dead), metrics, exit_status, feed_result)


# ---- scenario 3 and 4: throughput -------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    backend: Callable[[EmulatorProcess], dict[str, Any]]


THROUGHPUT_VARIANTS = (
    Variant("qlik-json-none", "Qlik JSON, no explanations",
            lambda e: qlik_backend(e.qlik_url(), include_shap=False)),
    Variant("qlik-json-shap", "Qlik JSON, SHAP",
            lambda e: qlik_backend(e.qlik_url(), include_shap=True)),
    Variant("datarobot-csv-none", "DataRobot CSV, no explanations",
            lambda e: datarobot_backend(e.datarobot_url(), "none")),
    Variant("datarobot-csv-shap", "DataRobot CSV, SHAP",
            lambda e: datarobot_backend(e.datarobot_url(), "shap")),
    Variant("datarobot-csv-xemp", "DataRobot CSV, XEMP",
            lambda e: datarobot_backend(e.datarobot_url(), "xemp")),
)


async def backend_not_limiting(bench: Bench) -> dict[str, list[GatewayRun]]:
    """Scenario 3: the emulator answers as fast as it computes (no simulated latency, so its
    SHAP/XEMP multipliers have nothing to multiply): the figure is the gateway's own cost."""
    await bench.emulator.reset(latency_ms=0, per_row_ms=0, shap_multiplier=1, xemp_multiplier=1)
    runs: dict[str, list[GatewayRun]] = {v.key: [] for v in THROUGHPUT_VARIANTS}
    for rep in range(bench.sizes.repetitions):  # variants interleaved, so drift hits them alike
        for variant in THROUGHPUT_VARIANTS:
            runs[variant.key].append(await run_gateway(
                bench, f"s3-{variant.key}-{rep}", variant.backend(bench.emulator),
                backlog=bench.sizes.backlog, expected=bench.sizes.backlog))
    return runs


BOUND_IN_FLIGHT = 16
BOUND_ROWS = 500
BOUND_LATENCIES_MS = (20, 50)


async def backend_bound(bench: Bench) -> dict[int, list[GatewayRun]]:
    """Scenario 4: every request takes a fixed time; the bound is in-flight × rows / latency."""
    runs: dict[int, list[GatewayRun]] = {ms: [] for ms in BOUND_LATENCIES_MS}
    sections = {"batching": {"max_rows": BOUND_ROWS},
                "concurrency": {"max_in_flight_requests": BOUND_IN_FLIGHT}}
    for rep in range(bench.sizes.repetitions):
        for ms in BOUND_LATENCIES_MS:
            await bench.emulator.reset(latency_ms=ms)
            runs[ms].append(await run_gateway(
                bench, f"s4-{ms}ms-{rep}", qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                backlog=bench.sizes.backlog, expected=bench.sizes.backlog, sections=sections))
    await bench.emulator.reset()
    return runs


def bound_rows_per_s(latency_ms: float) -> float:
    return BOUND_IN_FLIGHT * BOUND_ROWS / (latency_ms / 1000.0)


# ---- scenario 5: rate-limited Qlik ------------------------------------------------------------

@dataclass
class RateLimitedRun:
    run: GatewayRun
    rows_per_s: float | None
    responses_429: int
    requests: int


async def rate_limited(bench: Bench) -> list[RateLimitedRun]:
    """Scenario 5: emulator and gateway both at ``rate_limit_per_minute``; a fresh emulator per
    repetition, because its sliding 60 s window would remember the previous repetition."""
    sizes = bench.sizes
    budget_rows_per_s = sizes.rate_limit_per_minute * sizes.rate_max_rows / 60.0
    backlog = int(budget_rows_per_s * sizes.rate_window_s * 1.3) + 4 * sizes.rate_max_rows
    results = []
    for rep in range(sizes.rate_repetitions):
        emulator = await EmulatorProcess(bench.session, bench.workdir / f"emulator-s5-{rep}.log").start()
        try:
            await emulator.reset(rate_limit_per_minute=sizes.rate_limit_per_minute)
            run = await run_gateway(
                bench, f"s5-{rep}",
                qlik_backend(emulator.qlik_url(), include_shap=False,
                             rate_limit_per_minute=sizes.rate_limit_per_minute),
                backlog=backlog, expected=None, window_s=sizes.rate_window_s,
                sections={"batching": {"max_rows": sizes.rate_max_rows}}, emulator=emulator)
            stats = await emulator.stats()
        finally:
            emulator.stop()
        qlik = stats["routes"]["qlik"]
        results.append(RateLimitedRun(run, run.progress.window_rate(),
                                      int(qlik["statuses"].get("429", 0)), int(qlik["requests"])))
    return results


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
    await bench.emulator.reset(hang_rate=1.0)
    results = []
    try:
        for rep in range(sizes.memory_repetitions):
            results.append(await _memory_run(bench, f"s7-{rep}"))
    finally:
        await bench.emulator.reset()
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
        gateway = GatewayProcess(bench.session, doc, bench.workdir, label).start()
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
            exit_status = await gateway.stop(timeout_s=30)
    return MemoryRun(
        peak_rss_bytes=peak, rss_series=series,
        inflight_records=metric_sum(metrics, "scoring_gateway_inflight_records"),
        consumer_paused=metric_sum(metrics, "scoring_gateway_consumer_paused"),
        consumed=metric_sum(metrics, "scoring_gateway_records_consumed_total"),
        max_in_flight_records=20000, exit_status=exit_status)


# ---- scenario 8: explanation cost (from scenario 3's histograms) ------------------------------

def request_duration_buckets(runs: list[GatewayRun]) -> dict[str, list[tuple[float, float]]]:
    """Cumulative ``request_duration_seconds`` buckets summed over runs, by ``backend/explanations``."""
    summed: dict[str, dict[float, float]] = {}
    for run in runs:
        for sample in metric_values(run.metrics, DURATION_METRIC):
            key = f"{sample.labels.get('backend')}/{sample.labels.get('explanations')}"
            le = float(sample.labels["le"])
            per_le = summed.setdefault(key, {})
            per_le[le] = per_le.get(le, 0.0) + sample.value
    return {key: sorted(per_le.items()) for key, per_le in summed.items()}


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style: linear interpolation inside the bucket holding the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound
