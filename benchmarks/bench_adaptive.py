"""``max_in_flight_requests: auto`` with no tuning against the best static setting of a small sweep.

Backends of 5, 20 and 50 ms per request, and one of 50 ms that serves only 4 requests at once
(429 beyond, as a capacity-limited deployment does). For each, the gateway scores the same
backlog once with ``auto`` and once per static limit of the sweep, all in the same run on a fresh
broker each; the figure is ``auto``'s throughput as a share of the best static one, and for the
capacity-limited backend also as a share of its bound (4 × rows ÷ 50 ms) with the share of its
requests that drew a 429. The targets: at least 0.85 of the bound with at most 5 % refusals, and
at least 0.9 of the best static setting at 5, 20 and 50 ms. The adaptive limit is sampled from
``/metrics`` while it runs and drawn as ``bench-adaptive-limit.png``.

    python -m benchmarks.bench_adaptive [--quick] [--repetitions N] [--broker kafka|tansu]
                                        [--backends 50ms-capacity-4,...]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks import plots
from benchmarks.figures import median
from benchmarks.machine import describe
from benchmarks.modes import FULL, QUICK, Sizes
from benchmarks.scenarios import POLL_S, Bench, Feed, GatewayRun, qlik_backend, run_gateway
from benchmarks.workload import RunTopics
from testkit.brokers.choice import KINDS
from testkit.brokers.choice import describe as broker_description
from testkit.measure import metric_sum
from testkit.processes import EmulatorProcess, GatewayProcess

ROWS = 100  # small batches, so the backend rather than the gateway's core is the bound
LIMIT_METRIC = "scoring_gateway_concurrency_limit"


@dataclass(frozen=True)
class Backend:
    key: str
    latency_ms: int
    capacity: int | None = None  # requests the emulator serves at once; beyond: 429

    @property
    def bound(self) -> float | None:
        return self.capacity * ROWS / (self.latency_ms / 1000.0) if self.capacity else None


BACKENDS = (Backend("5ms", 5), Backend("20ms", 20), Backend("50ms", 50), Backend("50ms-capacity-4", 50, 4))
TARGET_SHARE_OF_BEST_STATIC = 0.9
TARGET_SHARE_OF_BOUND = 0.85
TARGET_REFUSAL_SHARE = 0.05
SWEEP = (2, 4, 8, 16, 32)
# Each run scores for WINDOW_S from its first output (the ramp included) or until its backlog is
# done: long enough that a setting's throughput, not the gateway's first second, is measured.
BACKLOG = {"full": 300_000, "quick": 150_000}
WINDOW_S = {"full": 6.0, "quick": 3.0}


def limit_sampler(expected: int, window_s: float) -> Feed:
    """A feed that samples the adaptive limit until ``expected`` records are published or the window ends."""
    async def feed(bootstrap: str, topics: RunTopics, gateway: GatewayProcess) -> list[tuple[float, float]]:
        series: list[tuple[float, float]] = []
        began: float | None = None
        while gateway.running():
            published = await gateway.published() or 0
            if published:
                began = began or time.monotonic()
                series.append((time.monotonic() - began, metric_sum(await gateway.metrics(), LIMIT_METRIC)))
            if published >= expected or (began is not None and time.monotonic() - began >= window_s):
                break
            await asyncio.sleep(POLL_S)
        return series
    return feed


def windowed_rate(timestamps: Sequence[int], window_s: float) -> float | None:
    """Records/s over the window from the first output, the stop's drain left out: a batch still in
    its back-off after a 429 when the gateway is stopped publishes a second later, and the
    span to it would count as scoring time."""
    if len(timestamps) < 2:
        return None
    first = min(timestamps)
    end = first + int(window_s * 1000)
    inside = [t for t in timestamps if t <= end]
    span_s = (max(inside) - first) / 1000.0
    return (len(inside) - 1) / span_s if span_s > 0 else None


async def one(bench: Bench, backend: Backend, limit: int | str, backlog: int, window_s: float,
              rep: int) -> tuple[GatewayRun, int, int]:
    options: dict[str, Any] = {"latency_ms": backend.latency_ms, "per_row_ms": 0}
    if backend.capacity:
        options["max_concurrent_requests"] = backend.capacity
    await bench.emulator.areset(**options)
    before = await _statuses(bench)  # the emulator counts from its start: this run's are the difference
    sections = {"batching": {"max_rows": ROWS}, "concurrency": {"max_in_flight_requests": limit}}
    run = await run_gateway(bench, f"{backend.key}-{limit}-{rep}", qlik_backend(bench.emulator.qlik_url(),
                                                                                 include_shap=False),
                            backlog=backlog, expected=backlog, sections=sections, window_s=window_s,
                            feed=limit_sampler(backlog, window_s) if limit == "auto" else None)
    after = await _statuses(bench)
    answers = {status: n - before.get(status, 0) for status, n in after.items()}
    return run, answers.get("429", 0), sum(answers.values())


async def _statuses(bench: Bench) -> dict[str, int]:
    found = (await bench.emulator.astats())["routes"]["qlik"]["statuses"]
    return {str(status): int(n) for status, n in found.items()}


async def campaign(sizes: Sizes, backlog: int, window_s: float, repetitions: int, workdir: Path, broker: str,
                   backends: Sequence[Backend] = BACKENDS) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        emulator = await EmulatorProcess(log_path=workdir / "emulator.log").astart()
        try:
            bench = Bench(sizes, session, emulator, workdir, broker_kind=broker)
            for backend in backends:
                runs: dict[str, list[dict[str, Any]]] = {}
                series: list[tuple[float, float]] = []
                for rep in range(repetitions):
                    for limit in ("auto", *SWEEP):
                        print(f"[adaptive] {backend.key}, max_in_flight_requests {limit}, "
                              f"repetition {rep + 1}", flush=True)
                        run, refused, requests = await one(bench, backend, limit, backlog, window_s, rep)
                        rate = windowed_rate(run.predictions.timestamps, window_s)
                        runs.setdefault(str(limit), []).append({**run.summary(), "records_per_s": rate,
                                                                "responses_429": refused,
                                                                "requests": requests})
                        if limit == "auto":
                            series = run.feed_result or series
                results[backend.key] = {"latency_ms": backend.latency_ms, "capacity": backend.capacity,
                                        "bound_rows_per_s": backend.bound, "runs": runs, "auto_limit": series}
        finally:
            emulator.stop()
    return results


def summarise(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for key, found in results.items():
        rates = {limit: median([r["records_per_s"] for r in runs]) for limit, runs in found["runs"].items()}
        static = {limit: rate for limit, rate in rates.items() if limit != "auto" and rate}
        best = max(static, key=lambda k: static[k]) if static else None
        auto = rates.get("auto")
        auto_429 = median([r["responses_429"] for r in found["runs"]["auto"]])
        refusal_share = median([r["responses_429"] / r["requests"] if r.get("requests") else 0.0
                                for r in found["runs"]["auto"]])
        limits = [v for _, v in found["auto_limit"]]
        summary[key] = {
            "auto_records_per_s": auto, "best_static": best, "best_static_records_per_s": static.get(best or ""),
            "auto_share_of_best_static": auto / static[best] if auto and best else None,
            "bound_rows_per_s": found["bound_rows_per_s"],
            "auto_share_of_bound": auto / found["bound_rows_per_s"] if auto and found["bound_rows_per_s"] else None,
            "auto_429": auto_429, "auto_refusal_share": refusal_share,
            "auto_limit_final": limits[-1] if limits else None,
            "static_records_per_s": static,
        }
    return summary


def meets(key: str, s: dict[str, Any]) -> bool | None:
    """Whether ``auto`` met its target on this backend (None: nothing to compare with)."""
    if s["bound_rows_per_s"]:
        share = s["auto_share_of_bound"]
        return None if share is None else (share >= TARGET_SHARE_OF_BOUND
                                           and s["auto_refusal_share"] <= TARGET_REFUSAL_SHARE)
    share = s["auto_share_of_best_static"]
    return None if share is None else share >= TARGET_SHARE_OF_BEST_STATIC


def table(summary: dict[str, dict[str, Any]]) -> str:
    def num(v: float | None, digits: int = 0) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    lines = ["| backend | auto rec/s | best static (limit) rec/s | auto ÷ best static | auto ÷ bound | "
             "429s (auto) | 429 share | auto limit at the end | target met |", "|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        met = meets(key, s)
        lines.append(f"| {key} | {num(s['auto_records_per_s'])} | {num(s['best_static_records_per_s'])} "
                     f"({s['best_static']}) | {num(s['auto_share_of_best_static'], 2)} | "
                     f"{num(s['auto_share_of_bound'], 2)} | {num(s['auto_429'])} | "
                     f"{num(100 * s['auto_refusal_share'], 1)} % | {num(s['auto_limit_final'])} | "
                     f"{'-' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_adaptive", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, a smaller backlog")
    parser.add_argument("--broker", choices=KINDS, default="kafka")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adaptive.json"))
    parser.add_argument("--plots-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repetitions", type=int, default=None, help="default: 1 quick, 3 full")
    parser.add_argument("--backends", default=",".join(b.key for b in BACKENDS),
                        help="comma-separated backends to run (default: all)")
    args = parser.parse_args(argv)
    chosen = [b for b in BACKENDS if b.key in args.backends.split(",")]
    mode = "quick" if args.quick else "full"
    workdir = Path(tempfile.mkdtemp(prefix="scoring-gateway-adaptive-"))
    began = time.monotonic()
    try:
        import uvloop

        results = uvloop.run(campaign(QUICK if args.quick else FULL, BACKLOG[mode], WINDOW_S[mode],
                                      args.repetitions or (1 if args.quick else 3), workdir, args.broker,
                                      chosen))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(results)
    machine = describe()
    plot = plots.series_chart(args.plots_dir / "bench-adaptive-limit.png",
                              {key: found["auto_limit"] for key, found in results.items()},
                              "in-flight limit", "max_in_flight_requests: auto, by backend",
                              plots.run_context(broker_description(args.broker), machine,
                                                datetime.datetime.now(datetime.UTC).isoformat()))
    doc = {"mode": mode, "broker": args.broker, "rows_per_request": ROWS, "sweep": SWEEP, "machine": machine,
           "backlog": BACKLOG[mode], "window_s": WINDOW_S[mode],
           "elapsed_s": time.monotonic() - began, "summary": summary, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"\n## Adaptive concurrency against a static sweep ({mode} run, {args.broker})\n\n{table(summary)}\n\n"
          f"JSON: {args.out}\nplot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
