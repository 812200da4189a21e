"""The champion's cost of a challenger: throughput on a backlog and end-to-end latency under a paced
load, with no challenger, a healthy challenger at ``sample_rate`` 0.1 (samples gathered into full
requests, the default, and ``linger_ms: 0``, a request per champion batch) and 1.0, and a troubled
one at 1.0 (down: nothing listens; slow: 10x the champion's latency; refusing: 429 to every
request), alternated in one run. Each variant also reports the challenger requests it made.

The champion scores on the emulator's ``churn`` deployment (20 ms per request). A healthy challenger
is ``churn_challenger`` of the same emulator process (so its calls also load the machine, as they
would a shared model server); the slow and refusing ones are a second emulator process. Each
repetition gets a fresh broker, topics and group.

    python -m benchmarks.bench_challenger [--quick] [--broker kafka|tansu] [--variants NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks import plots
from benchmarks.figures import median
from benchmarks.latency import _latencies
from benchmarks.machine import describe
from benchmarks.modes import FULL, QUICK, Sizes
from benchmarks.scenarios import POLL_S, Bench, ScenarioFailed, gateway_document, qlik_backend, watch
from benchmarks.workload import RunTopics, produce_backlog, produce_paced, read_topic
from gateway.kafka.embedded import create_topics
from testkit.brokers.choice import KINDS
from testkit.brokers.choice import describe as broker_description
from testkit.measure import ProcessProbe, metric_sum
from testkit.processes import EmulatorProcess, GatewayProcess

# name -> (sample_rate, trouble, linger_ms); trouble None = a healthy challenger on the champion's
# emulator; linger_ms None = the default
Variant = tuple[float, str | None, int | None]
VARIANTS: dict[str, Variant | None] = {
    "none": None, "0.1": (0.1, None, None), "0.1 linger 0": (0.1, None, 0), "1.0": (1.0, None, None),
    "down 1.0": (1.0, "down", None), "slow 1.0": (1.0, "slow", None), "refusing 1.0": (1.0, "refusing", None)}
TROUBLED = {"slow": ("--latency-ms", "200"), "refusing": ("--latency-ms", "20", "--error-rate", "429=1.0")}
DOWN_URL = "http://127.0.0.1:9/api/v1/ml/deployments/churn_challenger/realtime-predictions/actions/run"
BACKLOG = {"full": 60_000, "quick": 20_000}
PACED = {"full": (1000.0, 30.0), "quick": (500.0, 10.0)}  # records/s, seconds
WARMUP = 500


def sections(topics: RunTopics, comparisons: str, rate: float | None, url: str | None,
             linger_ms: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"batching": {"linger_ms": 10}}
    if rate is not None and url is not None:
        found["challenger"] = {"backend": {"type": "qlik", "url": url, "token": "benchmark"}, "sample_rate": rate}
        if linger_ms is not None:
            found["challenger"]["linger_ms"] = linger_ms
        found["outputs"] = {"predictions": topics.predictions, "dead_letter": topics.dead_letter,
                            "comparisons": comparisons}
    return found


async def one(bench: Bench, label: str, rate: float | None, url: str | None, *, backlog: int,
              paced: tuple[float, float] | None, linger_ms: int | None = None) -> dict[str, Any]:
    """One repetition: a backlog (throughput), or a warm-up then a paced load (latency)."""
    with bench.broker(label) as broker:
        bootstrap = broker.bootstrap
        topics = RunTopics.fresh(label)
        comparisons = f"cmp-{topics.group}"
        await topics.create(bootstrap)
        await create_topics(bootstrap, {comparisons: topics.partitions})
        expected = backlog if paced is None else WARMUP + int(paced[0] * paced[1])
        await produce_backlog(bootstrap, topics, backlog if paced is None else WARMUP, bench.pool)
        doc = gateway_document(bootstrap, topics, qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                               sections=sections(topics, comparisons, rate, url, linger_ms),
                               idempotent=bench.idempotent, session_timeout_ms=bench.sizes.session_timeout_ms)
        gateway = GatewayProcess.from_config(doc, bench.workdir, label, session=bench.session).start()
        assert gateway.probe is not None and broker.pid is not None
        probes = {"gateway": gateway.probe, "emulator": ProcessProbe(bench.emulator.pid)}
        feeder = asyncio.create_task(_feed(bootstrap, topics, gateway, bench, paced)) if paced else None
        try:
            progress = await watch(gateway, probes, budget_s=bench.sizes.run_budget_s, expected=expected,
                                   feeder=feeder)
            metrics = await gateway.metrics()
            start_ms = await feeder if feeder is not None else 0.0
        finally:
            if feeder is not None and not feeder.done():
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            await gateway.astop()
        if not progress.samples:
            raise ScenarioFailed(f"{label}: no output:\n{gateway.log_tail()}")
        predictions = await read_topic(bootstrap, topics.predictions, topics.partitions, expected=progress.published,
                                       timeout_s=60, keep_values=paced is not None)
    result: dict[str, Any] = {
        "label": label, "predictions": len(predictions),
        "records_per_gateway_cpu_s": progress.records_per_cpu_s("gateway"),
        "compared": metric_sum(metrics, "scoring_gateway_comparisons_total"),
        "skipped": metric_sum(metrics, "scoring_gateway_challenger_skipped_total"),
        "challenger_requests": metric_sum(metrics, "scoring_gateway_challenger_request_duration_seconds_count"),
        "dead_letters": metric_sum(metrics, "scoring_gateway_records_published_total", outcome="dead_letter"),
    }
    if paced is None:
        result["records_per_s"] = predictions.rate()
    else:
        end_to_end, _ = _latencies(predictions, start_ms)
        ordered = sorted(end_to_end)
        result["p50_ms"] = ordered[len(ordered) // 2] if ordered else None
        result["p99_ms"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
    return result


async def _feed(bootstrap: str, topics: RunTopics, gateway: GatewayProcess, bench: Bench,
                paced: tuple[float, float]) -> float:
    deadline = time.monotonic() + bench.sizes.run_budget_s
    while ((await gateway.published()) or 0) < WARMUP:
        if time.monotonic() > deadline:
            raise ScenarioFailed("the warm-up records were not published")
        await asyncio.sleep(POLL_S)
    start_ms = time.time() * 1000.0
    await produce_paced(bootstrap, topics, paced[0], paced[1], bench.pool, start=WARMUP)
    return start_ms


async def campaign(sizes: Sizes, mode: str, repetitions: int, workdir: Path, broker: str,
                   chosen: Sequence[str]) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"throughput": {}, "latency": {}}
    async with aiohttp.ClientSession() as session:
        emulator = await EmulatorProcess("--latency-ms", "20", log_path=workdir / "emulator.log").astart()
        others = {trouble: await EmulatorProcess(*flags, log_path=workdir / f"emulator-{trouble}.log").astart()
                  for trouble, flags in TROUBLED.items()}
        try:
            bench = Bench(sizes, session, emulator, workdir, broker_kind=broker)
            for rep in range(repetitions):
                for name in chosen:  # alternated, so drift hits every variant alike
                    variant = VARIANTS[name]
                    rate, url, linger_ms = None, None, None
                    if variant is not None:
                        rate, trouble, linger_ms = variant
                        url = (bench.emulator.qlik_url("churn_challenger") if trouble is None else
                               DOWN_URL if trouble == "down" else others[trouble].qlik_url("churn_challenger"))
                    print(f"[challenger] {name}, repetition {rep + 1}", flush=True)
                    tag = name.replace(" ", "-")
                    runs["throughput"].setdefault(name, []).append(
                        await one(bench, f"cc-t-{tag}-{rep}", rate, url, backlog=BACKLOG[mode], paced=None,
                                  linger_ms=linger_ms))
                    runs["latency"].setdefault(name, []).append(
                        await one(bench, f"cc-l-{tag}-{rep}", rate, url, backlog=0, paced=PACED[mode],
                                  linger_ms=linger_ms))
        finally:
            emulator.stop()
            for other in others.values():
                other.stop()
    return runs


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    base = median([r["records_per_s"] for r in runs["throughput"]["none"]])
    for name in runs["throughput"]:
        rate = median([r["records_per_s"] for r in runs["throughput"][name]])
        out[name] = {
            "records_per_s": rate, "share_of_none": rate / base if rate and base else None,
            "records_per_gateway_cpu_s": median([r["records_per_gateway_cpu_s"]
                                                  for r in runs["throughput"][name]]),
            "p50_ms": median([r["p50_ms"] for r in runs["latency"][name]]),
            "p99_ms": median([r["p99_ms"] for r in runs["latency"][name]]),
            "compared": sum(r["compared"] for group in runs.values() for r in group[name]),
            "skipped": sum(r["skipped"] for group in runs.values() for r in group[name]),
            "challenger_requests": sum(r.get("challenger_requests", 0.0) for group in runs.values()
                                       for r in group[name]),
            "dead_letters": sum(r["dead_letters"] for group in runs.values() for r in group[name]),
        }
    return out


def table(summary: dict[str, dict[str, Any]]) -> str:
    def num(v: float | None, digits: int = 0) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    lines = ["| challenger sample_rate | champion rec/s | ÷ none | rec per gateway CPU-s | p50 ms | p99 ms | "
             "compared | skipped | challenger requests | dead letters |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {num(s['records_per_s'])} | {num(s['share_of_none'], 2)} | "
                     f"{num(s['records_per_gateway_cpu_s'])} | {num(s['p50_ms'], 1)} | {num(s['p99_ms'], 1)} | "
                     f"{num(s['compared'])} | {num(s['skipped'])} | {num(s['challenger_requests'])} | "
                     f"{num(s['dead_letters'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_challenger",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller loads")
    parser.add_argument("--broker", choices=KINDS, default="kafka")
    parser.add_argument("--variants", default="", help=f"comma-separated, of: {', '.join(VARIANTS)} "
                                                       "(default all; none is always run, as the reference)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/challenger.json"))
    parser.add_argument("--plots-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    chosen = ["none", *(name.strip() for name in args.variants.split(",") if name.strip() not in ("", "none"))]
    if len(chosen) == 1:
        chosen = list(VARIANTS)
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    mode = "quick" if args.quick else "full"
    workdir = Path(tempfile.mkdtemp(prefix="scoring-gateway-challenger-"))
    began = time.monotonic()
    try:
        import uvloop

        runs = uvloop.run(campaign(QUICK if args.quick else FULL, mode, 1 if args.quick else 3, workdir,
                                   args.broker, chosen))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(runs)
    machine = describe()
    doc = {"mode": mode, "broker": args.broker, "machine": machine, "elapsed_s": time.monotonic() - began,
           "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    plot = plots.series_chart(args.plots_dir / "bench-challenger.png",
                              {"champion records/s": [(float(i), s["records_per_s"] or 0.0)
                                                      for i, s in enumerate(summary.values())]},
                              "records/s", "Champion throughput by challenger variant (" + ", ".join(summary) + ")",
                              plots.run_context(broker_description(args.broker), machine,
                                                datetime.datetime.now(datetime.UTC).isoformat()))
    print(f"\n## Champion with a challenger ({mode} run, {args.broker})\n\n{table(summary)}\n\nJSON: {args.out}\n"
          f"plot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
