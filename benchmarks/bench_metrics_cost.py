"""What the Prometheus instruments cost end to end: the gateway with its metrics as built versus
with every metric update replaced by a no-op, alternating in the same run (ratios, not absolutes).

    python -m benchmarks.bench_metrics_cost [--records 100000] [--repeats 3]

Writes ``benchmarks/results/metrics_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from gateway.app import serve
from gateway.commands.demo.sample_data import churn_records
from gateway.config import parse_config
from gateway.kafka.embedded import EmbeddedBroker, create_topics
from testkit.processes import EmulatorProcess

RESULTS = Path(__file__).resolve().parent / "results"


class _NoOpPipelineMetrics:
    """Every metric update does nothing."""

    def __getattr__(self, name: str) -> Any:
        return _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


class _Counted:
    """Counts published records on the side (to detect the end without scraping the registry,
    which would itself cost far more than the instruments) and forwards everything."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.published_records = 0

    def published(self, outcome: str, n: int) -> None:
        self.published_records += n
        self._inner.published(outcome, n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Metrics:
    def __init__(self, real: bool) -> None:
        from prometheus_client import CollectorRegistry

        from gateway.runtime.metrics import Metrics

        self.registry = CollectorRegistry()
        self._real = Metrics(self.registry) if real else None
        self._pipelines: dict[str, _Counted] = {}

    def pipeline(self, name: str) -> _Counted:
        found = self._pipelines.get(name)
        if found is None:
            inner = self._real.pipeline(name) if self._real else _NoOpPipelineMetrics()
            found = self._pipelines[name] = _Counted(inner)
        return found


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=262144,
                                max_request_size=4 * 1048576, linger_ms=5)
    await producer.start()
    try:
        waits = [await producer.send(topic, r.value, key=r.key)
                 for r in churn_records(n, seed=3, malformed_share=0.0)]
        await asyncio.gather(*waits)
    finally:
        await producer.stop()


async def _one_run(bootstrap: str, emulator_url: str, n: int, variant: str, tag: str) -> float:
    topics = {f"{p}-{tag}": 4 for p in ("in", "pred", "dlq")}
    await create_topics(bootstrap, topics)
    await _produce(bootstrap, f"in-{tag}", n)
    doc = {"kafka": {"bootstrap_servers": bootstrap, "group_id": f"g-{tag}", "session_timeout_ms": 6000},
           "admin": {"host": "127.0.0.1", "port": 0},
           "pipelines": [{"name": "churn", "input_topic": f"in-{tag}",
                          "backend": {"type": "qlik", "url": emulator_url, "token": "benchmark",
                                      "include_shap": False},
                          "outputs": {"predictions": f"pred-{tag}", "dead_letter": f"dlq-{tag}"}}]}
    config = parse_config(doc, dict(os.environ))
    metrics = _Metrics(real=variant == "metrics")
    counted = metrics.pipeline("churn")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, stop, handle_signals=False, metrics=metrics,
                                     registry=metrics.registry))
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = counted.published_records
        if done and first is None:
            first = (time.monotonic(), done)
        if done >= n:
            break
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - first[0] if first else float("nan")
    stop.set()
    await task
    return (n - first[1]) / elapsed if first else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    emulator = EmulatorProcess().start()
    url = emulator.qlik_url()
    rates: dict[str, list[float]] = {"metrics": [], "no-op": []}
    try:
        with EmbeddedBroker() as broker:
            for rep in range(args.repeats):
                for variant in (("metrics", "no-op") if rep % 2 == 0 else ("no-op", "metrics")):
                    rate = uvloop.run(_one_run(broker.bootstrap, url, args.records, variant,
                                               f"{variant}-{rep}-{time.time_ns()}"))
                    rates[variant].append(rate)
                    print(f"  repeat {rep + 1} {variant:8s} {rate:10,.0f} records/s", flush=True)
    finally:
        emulator.stop()
    with_metrics, without = statistics.median(rates["metrics"]), statistics.median(rates["no-op"])
    cost = 1 - with_metrics / without
    print(f"median with metrics {with_metrics:,.0f} records/s, no-op {without:,.0f} records/s, "
          f"cost {cost * 100:.1f} % (goal < 5 %)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metrics_cost.json").write_bytes(orjson.dumps(
        {"records": args.records, "repeats": args.repeats, "rates": rates,
         "median_with_metrics": with_metrics, "median_no_op": without, "cost_fraction": cost},
        option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
