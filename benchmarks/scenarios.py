"""The gateway under load, as users run it: ``python -m gateway run --config FILE`` in its own process.

Every repetition gets a fresh broker (memory storage, so nothing accumulates from run to run), fresh
topics and a fresh consumer group; the backlog is produced before the gateway starts. Throughput is
read from the output topic afterwards: (records - 1) / (last timestamp - first timestamp), so the
process start and the group join are not counted, and the gateway, the ceiling and the hand-written
consumer are measured the same way. While the gateway works the runner only polls ``/metrics``
(once a second) to know when it is done, and samples each process's CPU time.
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

from benchmarks.modes import Sizes
from benchmarks.workload import RunTopics, TopicContents, produce_backlog, read_topic, value_pool
from gateway.kafka.embedded import EmbeddedBroker
from testkit.brokers.choice import make_broker
from testkit.brokers.cluster import KafkaCluster
from testkit.measure import MetricSample, ProcessProbe, Progress
from testkit.processes import EmulatorProcess, GatewayProcess

POLL_S = 0.2
# How often a watched run polls once outputs appear: each /metrics render costs the gateway a few
# milliseconds of CPU, so polling at POLL_S would bill it ~2-5 % of a core that Prometheus (one
# scrape per 15-60 s) does not, and that the in-process ceiling never pays.
WATCH_POLL_S = 1.0
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
                     shutdown_timeout_s: float = 10, idempotent: bool = True,
                     top: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-pipeline config: product defaults except the connection, the group, ``sections`` (of the
    pipeline) and ``top`` (top-level sections, such as ``tracing``)."""
    pipeline: dict[str, Any] = {
        "name": "bench", "input_topic": topics.input, "backend": backend,
        "outputs": {"predictions": topics.predictions, "dead_letter": topics.dead_letter},
    }
    pipeline.update(sections or {})
    return {"kafka": {"bootstrap_servers": bootstrap, "group_id": topics.group,
                      "session_timeout_ms": session_timeout_ms, "enable_idempotence": idempotent},
            "shutdown_timeout_s": shutdown_timeout_s,
            "pipelines": [pipeline], **(top or {})}


# ---- one gateway repetition -------------------------------------------------------------------

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
        await asyncio.sleep(WATCH_POLL_S if progress.samples else POLL_S)  # before outputs: no CPU counted
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
        return {
            "label": self.label, "expected": self.expected, "predictions": len(self.predictions),
            "dead_letters": self.dead_letters, "complete": self.progress.complete,
            "records_per_s": self.rate, "busy_cores": busy,
            "records_per_gateway_cpu_s": self.progress.records_per_cpu_s("gateway"),
            "exit_status": self.exit_status,
        }


Feed = Callable[[str, RunTopics, GatewayProcess], Awaitable[Any]]


async def run_gateway(bench: Bench, label: str, backend: dict[str, Any], *, backlog: int,
                      expected: int | None, sections: dict[str, Any] | None = None,
                      feed: Feed | None = None, window_s: float | None = None,
                      keep_values: bool = False, emulator: EmulatorProcess | None = None,
                      top: dict[str, Any] | None = None) -> GatewayRun:
    """One repetition: fresh broker and topics, backlog, gateway process, watch, stop, read outputs."""
    emulator = emulator or bench.emulator
    with bench.broker(label) as broker:
        bootstrap = broker.bootstrap
        topics = RunTopics.fresh(label)
        await topics.create(bootstrap)
        if backlog:
            await produce_backlog(bootstrap, topics, backlog, bench.pool)
        doc = gateway_document(bootstrap, topics, backend, sections=sections, idempotent=bench.idempotent,
                               session_timeout_ms=bench.sizes.session_timeout_ms, top=top)
        gateway = GatewayProcess.from_config(doc, bench.workdir, label, session=bench.session).start()
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
            exit_status = await gateway.astop()
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


# Scenario 3 keeps 16 requests queued at the emulator so that it is never idle: the figure is the
# gateway's cost. (The default, ``auto``, stops before a backend's latency doubles; the emulator
# computes one request at a time, so ``auto`` keeps 3-4 in flight there.)
NOT_LIMITING_IN_FLIGHT = 16


async def backend_not_limiting(bench: Bench) -> dict[str, list[GatewayRun]]:
    """Scenario 3: the emulator answers as fast as it computes (no simulated latency, so its
    SHAP/XEMP multipliers have nothing to multiply): the figure is the gateway's own cost."""
    await bench.emulator.areset(latency_ms=0, per_row_ms=0, shap_multiplier=1, xemp_multiplier=1)
    runs: dict[str, list[GatewayRun]] = {v.key: [] for v in THROUGHPUT_VARIANTS}
    sections = {"concurrency": {"max_in_flight_requests": NOT_LIMITING_IN_FLIGHT}}
    for rep in range(bench.sizes.repetitions):  # variants interleaved, so drift hits them alike
        for variant in THROUGHPUT_VARIANTS:
            runs[variant.key].append(await run_gateway(
                bench, f"s3-{variant.key}-{rep}", variant.backend(bench.emulator),
                backlog=bench.sizes.backlog, expected=bench.sizes.backlog, sections=sections))
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
            await bench.emulator.areset(latency_ms=ms)
            runs[ms].append(await run_gateway(
                bench, f"s4-{ms}ms-{rep}", qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                backlog=bench.sizes.backlog, expected=bench.sizes.backlog, sections=sections))
    await bench.emulator.areset()
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
        emulator = await EmulatorProcess(log_path=bench.workdir / f"emulator-s5-{rep}.log").astart()
        try:
            await emulator.areset(rate_limit_per_minute=sizes.rate_limit_per_minute)
            run = await run_gateway(
                bench, f"s5-{rep}",
                qlik_backend(emulator.qlik_url(), include_shap=False,
                             rate_limit_per_minute=sizes.rate_limit_per_minute),
                backlog=backlog, expected=None, window_s=sizes.rate_window_s,
                sections={"batching": {"max_rows": sizes.rate_max_rows}}, emulator=emulator)
            stats = await emulator.astats()
        finally:
            emulator.stop()
        qlik = stats["routes"]["qlik"]
        results.append(RateLimitedRun(run, run.progress.window_rate(),
                                      int(qlik["statuses"].get("429", 0)), int(qlik["requests"])))
    return results
