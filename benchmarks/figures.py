"""The benchmark's scenarios as figures: each step measures one scenario and adds its figures to
the report (``benchmarks.run`` runs the selected steps in order and draws the charts)."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.baselines import hand_written_consumer, passthrough_ceiling
from benchmarks.histograms import histogram_quantile, request_duration_buckets
from benchmarks.latency import latency_at_half_load
from benchmarks.modes import Sizes
from benchmarks.report import Figure, Goal, Report, format_value
from benchmarks.scenarios import (
    BOUND_IN_FLIGHT,
    BOUND_LATENCIES_MS,
    BOUND_ROWS,
    LATENCY_LINGER_MS,
    THROUGHPUT_VARIANTS,
    Bench,
    GatewayRun,
    backend_bound,
    backend_not_limiting,
    bound_rows_per_s,
    rate_limited,
)
from benchmarks.stalled_memory import MEMORY_REQUEST_TIMEOUT_S, stalled_backend_memory
from benchmarks.workload import RunTopics, produce_backlog, read_topic

RESULTS = Path(__file__).resolve().parent / "results"
NOT_LIMITING = ("emulator with no simulated time (latency 0, per-row 0, SHAP/XEMP multipliers 1): "
                "its answers cost only their computation")
BASELINE_LATENCIES_MS = (0, 20)
MEMORY_LIMIT_MB = 250.0

S1, S2, S3, S4 = "1 ceiling", "2 hand-written", "3 gateway, backend not limiting", "4 gateway, backend-bound"
S5, S6, S7, S8 = "5 rate-limited Qlik", "6 latency at half load", "7 memory, stalled backend", "8 explanation cost"


@dataclass
class Suite:
    """One run's shared state: what later scenarios and the charts need from earlier ones."""

    bench: Bench
    report: Report
    throughput_runs: dict[str, list[GatewayRun]] = field(default_factory=dict)
    latency: dict[str, dict[str, float | None]] = field(default_factory=dict)
    memory_series: list[tuple[float, int]] = field(default_factory=list)
    duration_buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def sizes(self) -> Sizes:
        return self.bench.sizes


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- 1 and 2: what the gateway is compared with -----------------------------------------------

async def ceiling(suite: Suite) -> None:
    bench, sizes = suite.bench, suite.sizes
    rates, per_cpu, details = [], [], []
    for rep in range(sizes.repetitions):
        with bench.broker(f"s1-{rep}") as broker:
            topics = RunTopics.fresh(f"s1-{rep}")
            await topics.create(broker.bootstrap)
            await produce_backlog(broker.bootstrap, topics, sizes.ceiling_backlog, bench.pool)
            loop = await passthrough_ceiling(broker.bootstrap, topics, sizes.ceiling_backlog, sizes.run_budget_s)
            out = await read_topic(broker.bootstrap, topics.predictions, topics.partitions,
                                   expected=loop.records, timeout_s=60)
        rate = out.rate()
        rates.append(rate)
        per_cpu.append(rate / (loop.cpu_s / loop.wall_s) if rate and loop.cpu_s and loop.wall_s else None)
        details.append({"records": loop.records, "complete": loop.complete, "records_per_s": rate,
                        "client_cpu_s": loop.cpu_s, "wall_s": loop.wall_s})
    report = suite.report
    report.add(Figure(S1, "aiokafka passthrough (orjson rewrite, send_batch, commit per poll)", "rec/s",
                      rates, key="ceiling"))
    report.add(Figure(S1, "records per client CPU-second", "rec/CPU-s", per_cpu, key="ceiling-per-cpu"))
    report.details["ceiling"] = details


async def hand_written(suite: Suite) -> None:
    bench, sizes = suite.bench, suite.sizes
    details: dict[str, list[dict[str, Any]]] = {}
    for ms in BASELINE_LATENCIES_MS:
        rates, short = [], 0
        await bench.emulator.areset(latency_ms=ms)
        for rep in range(sizes.repetitions):
            with bench.broker(f"s2-{ms}-{rep}") as broker:
                topics = RunTopics.fresh(f"s2-{ms}-{rep}")
                await topics.create(broker.bootstrap)
                await produce_backlog(broker.bootstrap, topics, sizes.baseline_backlog, bench.pool)
                loop = await hand_written_consumer(broker.bootstrap, topics, bench.emulator.qlik_url(),
                                                   sizes.baseline_backlog, sizes.baseline_budget_s)
                out = await read_topic(broker.bootstrap, topics.predictions, topics.partitions,
                                       expected=loop.records, timeout_s=60)
            rates.append(out.rate())
            short += not loop.complete
            details.setdefault(f"{ms}ms", []).append(
                {"records": loop.records, "complete": loop.complete, "records_per_s": out.rate(),
                 "client_cpu_s": loop.cpu_s, "wall_s": loop.wall_s})
        suite.report.add(Figure(S2, f"per-record loop, emulator at {ms} ms", "rec/s", rates,
                                key=f"baseline-{ms}ms",
                                note="aiohttp request + send_and_wait per record, auto-commit"
                                + (f"; {short} repetition(s) ran out of backlog before the budget" if short else "")))
    await bench.emulator.areset()
    suite.report.details["hand_written"] = details


# ---- 3 and 4: gateway throughput --------------------------------------------------------------

async def gateway_throughput(suite: Suite) -> None:
    report = suite.report
    runs = await backend_not_limiting(suite.bench)
    suite.throughput_runs = runs
    ceiling_rate = report.value("ceiling")
    for variant in THROUGHPUT_VARIANTS:
        variant_runs = runs[variant.key]
        goal = None
        if variant.key == "qlik-json-none" and ceiling_rate:
            goal = Goal(f"≥ 0.70 × ceiling ({format_value(ceiling_rate)})", 0.70, ceiling_rate)
        note = "; ".join(n for n in (NOT_LIMITING if variant.key == "qlik-json-none" else "",
                                     _dead_letter_note(variant_runs)) if n)
        report.add(Figure(S3, variant.title, "rec/s", [r.rate for r in variant_runs], goal,
                          note=note, key=f"s3-{variant.key}"))
    baseline_20 = report.value("baseline-20ms")
    qlik = report.figure("s3-qlik-json-none")
    if qlik is not None and baseline_20:
        report.add(Figure(S3, "Qlik JSON, no explanations, vs hand-written at 20 ms", "rec/s",
                          list(qlik.samples),
                          Goal(f"≥ 100 × hand-written at 20 ms ({format_value(baseline_20)})", 100.0, baseline_20),
                          key="s3-vs-baseline"))
    for variant in THROUGHPUT_VARIANTS:
        report.add(Figure(S3, f"{variant.title}: records per gateway CPU-second", "rec/CPU-s",
                          [r.summary()["records_per_gateway_cpu_s"] for r in runs[variant.key]],
                          key=f"s3-{variant.key}-per-cpu"))
    report.details["backend_not_limiting"] = {k: [r.summary() for r in v] for k, v in runs.items()}


async def gateway_backend_bound(suite: Suite) -> None:
    report = suite.report
    runs = await backend_bound(suite.bench)
    ceiling_rate = report.value("ceiling")
    for ms in BOUND_LATENCIES_MS:
        bound = bound_rows_per_s(ms)
        reference = min(bound, ceiling_rate) if ceiling_rate else bound
        if ceiling_rate and ceiling_rate < bound:
            text = f"≥ 0.90 × ceiling ({format_value(ceiling_rate)}; bound {format_value(bound)})"
        else:
            text = f"≥ 0.90 × bound ({format_value(bound)})"
        report.add(Figure(S4, f"Qlik JSON, {ms} ms per request, {BOUND_IN_FLIGHT} in flight × {BOUND_ROWS} rows",
                          "rec/s", [r.rate for r in runs[ms]], Goal(text, 0.90, reference),
                          note=_dead_letter_note(runs[ms]), key=f"s4-{ms}ms"))
    baseline_20 = report.value("baseline-20ms")
    gateway_20 = report.value("s4-20ms")
    if baseline_20 and gateway_20:
        report.add(Figure(S4, "gateway ÷ hand-written, both at 20 ms", "×", [gateway_20 / baseline_20],
                          key="s4-vs-baseline"))
    report.details["backend_bound"] = {f"{ms}ms": [r.summary() for r in v] for ms, v in runs.items()}


def _dead_letter_note(runs: Sequence[GatewayRun]) -> str:
    dead = sum(r.dead_letters for r in runs)
    incomplete = sum(1 for r in runs if not r.progress.complete)
    notes = []
    if dead:
        notes.append(f"{dead} records dead-lettered")
    if incomplete:
        notes.append(f"{incomplete} repetition(s) ran out of time")
    return "; ".join(notes)


# ---- 5, 6, 7 ----------------------------------------------------------------------------------

async def gateway_rate_limited(suite: Suite) -> None:
    sizes, report = suite.sizes, suite.report
    results = await rate_limited(suite.bench)
    budget = sizes.rate_limit_per_minute * sizes.rate_max_rows / 60.0
    window = (f"{sizes.rate_limit_per_minute}/min × {sizes.rate_max_rows} rows over {sizes.rate_window_s:.0f} s"
              + (" (quick/smoke: a higher limit over a shorter window)" if sizes.rate_limit_per_minute != 100 else ""))
    report.add(Figure(S5, f"rows/s at {window}", "rows/s", [r.rows_per_s for r in results],
                      Goal(f"≥ 0.95 × budget ({format_value(budget)})", 0.95, budget), key="s5-rows"))
    report.add(Figure(S5, "429 responses received (emulator stats)", "count",
                      [float(r.responses_429) for r in results], Goal("= 0", 0.0, None, at_most=True),
                      key="s5-429"))
    report.details["rate_limited"] = [{**r.run.summary(), "rows_per_s": r.rows_per_s,
                                       "responses_429": r.responses_429, "requests": r.requests}
                                      for r in results]


async def gateway_latency(suite: Suite) -> None:
    report = suite.report
    max_rate = report.value("s3-qlik-json-none")
    if not max_rate:
        raise RuntimeError("needs scenario 3's Qlik JSON throughput (run scenario 3 first)")
    results = await latency_at_half_load(suite.bench, max_rate)
    goal_ms = LATENCY_LINGER_MS + 10.0
    table: dict[str, dict[str, list[float | None]]] = {
        "end to end": {}, "added over the backend": {}, "bare aiokafka consumer": {}}
    for r in results:
        for name, values in (("end to end", r.end_to_end_ms), ("added over the backend", r.added_ms),
                             ("bare aiokafka consumer", r.consumer_alone_ms)):
            for label, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
                table[name].setdefault(label, []).append(percentile(values, q))
    rate = results[0].rate_per_s if results else None
    figures = (("end to end", "s6-e2e", "gateway, input record → output record timestamp"),
               ("added over the backend", "s6-added", "gateway, end to end minus the record's latency_ms"),
               ("bare aiokafka consumer", "s6-consumer",
                "reference: the same paced input read by a bare aiokafka consumer with the gateway's "
                "fetch settings (no processing, no produce)"))
    for name, key, note in figures:
        for label in ("p50", "p99"):
            goal = None
            if key == "s6-added" and label == "p99":
                goal = Goal(f"≤ linger_ms + 10 ms ({goal_ms:g} ms)", 1.0, goal_ms, at_most=True)
            report.add(Figure(S6, f"{name} {label} at {format_value(rate)} rec/s", "ms",
                              table[name].get(label, []), goal, note=note, key=f"{key}-{label}"))
    suite.latency = {name: {label: median(values) for label, values in by_label.items()}
                     for name, by_label in table.items()}
    report.details["latency"] = [{**r.run.summary(), "paced_rate_per_s": r.rate_per_s,
                                  "measured_records": len(r.end_to_end_ms),
                                  "percentiles_ms": {name: {label: values[i] for label, values in by_label.items()}
                                                     for name, by_label in table.items()}}
                                 for i, r in enumerate(results)]


async def gateway_memory(suite: Suite) -> None:
    sizes, report = suite.sizes, suite.report
    results = await stalled_backend_memory(suite.bench)
    report.add(Figure(S7, f"peak RSS (VmHWM), {sizes.memory_backlog:,} backlog, backend never answers", "MB",
                      [r.peak_rss_bytes / 1e6 if r.peak_rss_bytes else None for r in results],
                      Goal(f"≤ {MEMORY_LIMIT_MB:.0f} MB", 1.0, MEMORY_LIMIT_MB, at_most=True), key="s7-peak-rss"))
    report.add(Figure(S7, "records in flight at the end (max_in_flight_records 20000)", "records",
                      [r.inflight_records for r in results], key="s7-inflight",
                      note=f"request_timeout_s {MEMORY_REQUEST_TIMEOUT_S}: hung requests time out and are "
                           f"retried within the {sizes.memory_window_s:.0f} s window; consumer paused at the end "
                           f"in {sum(1 for r in results if r.consumer_paused)} of {len(results)} repetition(s)"))
    if results:
        suite.memory_series = results[-1].rss_series
    report.details["memory"] = [{"peak_rss_bytes": r.peak_rss_bytes, "inflight_records": r.inflight_records,
                                 "consumer_paused": r.consumer_paused, "records_consumed": r.consumed,
                                 "exit_status": r.exit_status} for r in results]


# ---- 8 ----------------------------------------------------------------------------------------

async def explanation_cost(suite: Suite) -> None:
    report = suite.report
    if not suite.throughput_runs:
        raise RuntimeError("needs scenario 3's runs (run scenario 3 first)")
    per_kind: dict[str, list[tuple[float, float]]] = {}
    for variant in THROUGHPUT_VARIANTS:
        buckets = request_duration_buckets(suite.throughput_runs[variant.key])
        per_kind.update(buckets)
        for series, cumulative in buckets.items():
            for label, q in (("p50", 0.5), ("p99", 0.99)):
                value = histogram_quantile(cumulative, q)
                report.add(Figure(S8, f"request duration {label}, {series} (16 in flight, full load)", "ms",
                                  [value * 1000.0 if value is not None else None],
                                  key=f"s8-{series}-{label}"))
    report.details["request_duration_buckets"] = {
        series: [[_bound_text(le), count] for le, count in buckets] for series, buckets in per_kind.items()}
    suite.duration_buckets = per_kind


def _bound_text(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def median(values: Sequence[float | None]) -> float | None:
    """The median of the measured values (None ones left out), or None when nothing was measured."""
    finite = sorted(v for v in values if v is not None)
    if not finite:
        return None
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


# ---- the run ----------------------------------------------------------------------------------

Step = Callable[[Suite], Awaitable[None]]
STEPS: tuple[tuple[int, str, Step], ...] = (
    (1, S1, ceiling), (2, S2, hand_written), (3, S3, gateway_throughput), (4, S4, gateway_backend_bound),
    (5, S5, gateway_rate_limited), (6, S6, gateway_latency), (7, S7, gateway_memory), (8, S8, explanation_cost),
)
