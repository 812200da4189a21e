"""``at_least_once`` against ``exactly_once`` in one run, on Apache Kafka: what transactions cost.

Two figures per delivery mode, repetitions interleaved so drift hits both alike:

- throughput: a backlog scored with product defaults (emulator adding no latency), read from the
  prediction topic's timestamps as in ``benchmarks.run`` scenario 3;
- end-to-end latency at a paced load, as a downstream reader sees it: a ``read_committed``
  consumer of the prediction topic records when each prediction becomes readable, minus the input
  record's timestamp. Record timestamps alone would hide the transaction: a transactional record
  carries the time it was produced, but is readable only once its transaction commits.

    python -m benchmarks.bench_delivery [--quick] [--out benchmarks/results/delivery.json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.baselines import consumer_latency
from benchmarks.figures import median, percentile
from benchmarks.machine import describe
from benchmarks.modes import FULL, QUICK, Sizes
from benchmarks.scenarios import POLL_S, Bench, ScenarioFailed, qlik_backend, run_gateway
from benchmarks.workload import RunTopics, produce_backlog, produce_paced
from testkit.measure import metric_sum
from testkit.processes import EmulatorProcess, GatewayProcess

MODES = ("at_least_once", "exactly_once")
TRANSACTION_INTERVAL_MS = 100  # the product default


@dataclass(frozen=True)
class Plan:
    repetitions: int
    backlog: int
    paced_rate: float
    paced_s: float
    warmup: int


PLANS = {"full": Plan(3, 100_000, 2_000.0, 20.0, 2_000), "quick": Plan(1, 30_000, 1_000.0, 8.0, 500)}


def sections(mode: str) -> dict[str, Any]:
    return {"delivery": mode, "transaction_interval_ms": TRANSACTION_INTERVAL_MS}


def readable_after(since_ms: float) -> Callable[[Any, float], float | None]:
    """A prediction's latency as a reader sees it: receive time minus its input record's timestamp,
    for inputs produced after ``since_ms`` (the warm-up left out)."""
    def latency(record: Any, now_ms: float) -> float | None:
        source_ms: float = orjson.loads(record.value)["source"]["timestamp_ms"]
        return now_ms - source_ms if source_ms >= since_ms else None
    return latency


async def paced_latency(bench: Bench, plan: Plan, mode: str, label: str) -> dict[str, Any]:
    async def feed(bootstrap: str, topics: RunTopics, gateway: GatewayProcess) -> list[float]:
        await produce_backlog(bootstrap, topics, plan.warmup, bench.pool)
        deadline = time.monotonic() + bench.sizes.run_budget_s
        while ((await gateway.published()) or 0) < plan.warmup:
            if time.monotonic() > deadline:
                raise ScenarioFailed("the warm-up records were not published")
            await asyncio.sleep(POLL_S)
        since_ms = time.time() * 1000.0
        expected = int(plan.paced_rate * plan.paced_s)
        ready = asyncio.Event()
        reader = asyncio.create_task(consumer_latency(
            bootstrap, topics, expected, plan.paced_s * 2 + 30, ready, topic=topics.predictions,
            latency_of=readable_after(since_ms), isolation_level="read_committed"))
        await ready.wait()
        await produce_paced(bootstrap, topics, plan.paced_rate, plan.paced_s, bench.pool, start=plan.warmup)
        return await reader

    run = await run_gateway(bench, label, qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                            backlog=0, expected=plan.warmup + int(plan.paced_rate * plan.paced_s),
                            feed=feed, sections=sections(mode))
    latencies: list[float] = run.feed_result
    transactions = metric_sum(run.metrics, "scoring_gateway_transaction_duration_seconds_count")
    spent = metric_sum(run.metrics, "scoring_gateway_transaction_duration_seconds_sum")
    return {"mode": mode, "paced_rate_per_s": plan.paced_rate, "measured": len(latencies),
            "transactions": transactions, "transaction_mean_ms": 1000 * spent / transactions if transactions else None,
            "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
            "max_ms": percentile(latencies, 1.0), "exit_status": run.exit_status}


async def campaign(sizes: Sizes, plan: Plan, workdir: Path) -> dict[str, Any]:
    results: dict[str, dict[str, list[Any]]] = {m: {"throughput": [], "latency": []} for m in MODES}
    async with aiohttp.ClientSession() as session:
        emulator = await EmulatorProcess(log_path=workdir / "emulator.log").astart()
        try:
            await emulator.areset(latency_ms=0, per_row_ms=0)
            bench = Bench(sizes, session, emulator, workdir, broker_kind="kafka")
            for rep in range(plan.repetitions):
                for mode in MODES:
                    print(f"[delivery] {mode} throughput, repetition {rep + 1}", flush=True)
                    run = await run_gateway(bench, f"{mode}-{rep}", qlik_backend(emulator.qlik_url(),
                                                                                  include_shap=False),
                                            backlog=plan.backlog, expected=plan.backlog, sections=sections(mode))
                    results[mode]["throughput"].append(run.summary())
                for mode in MODES:
                    print(f"[delivery] {mode} latency, repetition {rep + 1}", flush=True)
                    results[mode]["latency"].append(await paced_latency(bench, plan, mode, f"{mode}-paced-{rep}"))
        finally:
            emulator.stop()
    return results


def summarise(results: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, float | None]]:
    return {mode: {"records_per_s": median([r["records_per_s"] for r in by["throughput"]]),
                   "records_per_gateway_cpu_s": median([r["records_per_gateway_cpu_s"] for r in by["throughput"]]),
                   "p50_ms": median([r["p50_ms"] for r in by["latency"]]),
                   "p99_ms": median([r["p99_ms"] for r in by["latency"]])}
            for mode, by in results.items()}


def table(summary: dict[str, dict[str, float | None]]) -> str:
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

    lines = ["| delivery | records/s | records per gateway CPU-s | readable p50 ms | readable p99 ms |",
             "|---|---|---|---|---|"]
    lines += [f"| {mode} | {cell(s['records_per_s'])} | {cell(s['records_per_gateway_cpu_s'])} | "
              f"{cell(s['p50_ms'])} | {cell(s['p99_ms'])} |" for mode, s in summary.items()]
    alo, eos = summary["at_least_once"], summary["exactly_once"]
    if alo["records_per_s"] and eos["records_per_s"]:
        lines.append(f"\nexactly_once keeps {eos['records_per_s'] / alo['records_per_s']:.2f} × the at_least_once "
                     f"throughput (goal ≥ 0.80)")
    if alo["p99_ms"] is not None and eos["p99_ms"] is not None:
        lines.append(f"exactly_once adds {eos['p99_ms'] - alo['p99_ms']:.1f} ms to p99 "
                     f"(goal ≤ transaction_interval_ms {TRANSACTION_INTERVAL_MS})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_delivery", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller loads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/delivery.json"))
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sizes, plan = (QUICK if args.quick else FULL), PLANS[mode]
    workdir = Path(tempfile.mkdtemp(prefix="scoring-gateway-delivery-"))
    began = time.monotonic()
    try:
        import uvloop

        results = uvloop.run(campaign(sizes, plan, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(results)
    doc = {"mode": mode, "plan": plan.__dict__, "machine": describe(), "elapsed_s": time.monotonic() - began,
           "transaction_interval_ms": TRANSACTION_INTERVAL_MS, "summary": summary, "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"\n## Delivery modes on Apache Kafka ({mode} run)\n\n{table(summary)}\n\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
