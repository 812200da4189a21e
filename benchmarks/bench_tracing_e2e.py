"""What tracing costs the gateway process, end to end: CPU per record with ``tracing`` absent, at
``sample_ratio`` 0, 0.01 and 1.0, and what 0.01 costs on average (:func:`expected_at`).

    python -m benchmarks.bench_tracing_e2e [--backlog N] [--repetitions R] [--broker kafka|tansu]

Scenario 3 of ``benchmarks.run`` (Qlik JSON, no explanations, an emulator that answers at once: the
figure is the gateway's own cost), its three cases interleaved ``R`` times, each on a fresh broker:
the gateway runs as its own process and exports its spans over OTLP/HTTP to a real OpenTelemetry
Collector (``testkit/otelcol``, built on first use), whose CPU is not counted. CPU per record is the
gateway's CPU seconds while outputs were published, per record published (as ``benchmarks.run``
counts it); the figure is the median of the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.machine import describe as describe_machine
from benchmarks.modes import QUICK
from benchmarks.scenarios import Bench, qlik_backend, run_gateway
from testkit.otelcol.collector import Collector
from testkit.processes import EmulatorProcess

DEFAULT_OUT = Path("benchmarks/results/tracing-e2e.json")
CASES = {"absent": None, "sample_ratio 0": 0.0, "sample_ratio 0.01": 0.01, "sample_ratio 1.0": 1.0}
EXPECTED = "sample_ratio 0.01 (expected)"


def expected_at(figures: dict[str, list[float]], ratio: float = 0.01) -> list[float]:
    """What ``ratio`` costs on average, from the runs at 0 and 1.0 of the same repetition: it is drawn
    once per batch, so a run of a few hundred batches at 0.01 traces a handful, and its figure
    varies with how many."""
    return [(1.0 - ratio) * none + ratio * every
            for none, every in zip(figures["sample_ratio 0"], figures["sample_ratio 1.0"], strict=False)]


async def measure(backlog: int, repetitions: int, broker: str, workdir: Path) -> dict[str, list[float | None]]:
    collector = Collector(workdir)
    figures: dict[str, list[float | None]] = {name: [] for name in CASES}
    try:
        async with aiohttp.ClientSession() as session:
            emulator = await EmulatorProcess(log_path=workdir / "emulator.log").astart()
            try:
                bench = Bench(QUICK, session, emulator, workdir, broker_kind=broker)
                await emulator.areset(latency_ms=0, per_row_ms=0, shap_multiplier=1, xemp_multiplier=1)
                for rep in range(repetitions):
                    for name, ratio in CASES.items():
                        top: dict[str, Any] | None = None if ratio is None else {
                            "tracing": {"endpoint": collector.endpoint, "sample_ratio": ratio}}
                        run = await run_gateway(bench, f"tracing-{rep}-{name.replace(' ', '-')}",
                                                qlik_backend(emulator.qlik_url(), include_shap=False),
                                                backlog=backlog, expected=backlog, top=top)
                        per_cpu_s = run.progress.records_per_cpu_s("gateway")
                        figures[name].append(None if not per_cpu_s else 1e6 / per_cpu_s)
                        print(f"  {name:20} repetition {rep}: {figures[name][-1]} µs/record, "
                              f"{run.rate} records/s", flush=True)
            finally:
                emulator.stop()
        spans = collector.spans()
        print(f"  the collector received {len(spans)} spans in "
              f"{len({s['traceId'] for s in spans})} traces", flush=True)
    finally:
        collector.stop()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=QUICK.backlog)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        figures = asyncio.run(measure(args.backlog, args.repetitions, args.broker, Path(tmp)))
    measured = {name: [v for v in values if v is not None] for name, values in figures.items()}
    measured[EXPECTED] = expected_at(measured)
    absent = statistics.median(measured["absent"]) if measured["absent"] else None
    print(f"gateway CPU µs per record (Qlik JSON, no explanations), median of {args.repetitions}:")
    for name, values in measured.items():
        if not values:
            print(f"  {name:20} not measured")
            continue
        median = statistics.median(values)
        change = f"{100.0 * (median - absent) / absent:+6.1f} %" if absent else ""
        print(f"  {name:20} {median:8.2f}  {change}  ({', '.join(f'{v:.2f}' for v in values)})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"backlog": args.backlog, "repetitions": args.repetitions, "broker": args.broker, "cases": figures,
           EXPECTED: measured[EXPECTED], "machine": describe_machine()}
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
