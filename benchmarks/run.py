"""The benchmark suite: the gateway against the ceiling and a hand-written consumer, in one run.

    python -m benchmarks.run [--quick | --smoke] [--out benchmarks/results/bench.json]
                             [--plots-dir benchmarks/results] [--scenarios 1,2,3] [--broker kafka|tansu]

Scenarios (each figure the median of the mode's repetitions):
 1. ceiling: an aiokafka passthrough (decode, add a field, encode, send_batch, commit)
 2. hand-written consumer: one HTTP request and one send_and_wait per record, at 0 and 20 ms
 3. gateway, backend not limiting: Qlik JSON and DataRobot CSV; none / SHAP / XEMP
 4. gateway, backend-bound: 20 and 50 ms per request, 16 in flight, 500-row batches
 5. rate-limited Qlik: emulator and gateway at the same requests/min
 6. latency at half of scenario 3's Qlik throughput: end to end, and added over the backend
 7. memory: a backend that never answers and a large backlog
 8. explanation cost: request duration distributions from scenario 3's histograms

The broker (Apache Kafka by default, ``--broker tansu`` for the embedded one), the emulator
(``python -m gateway emulate``) and the gateway (``python -m gateway run --config``) each run in
their own process on 127.0.0.1; the ceiling and the hand-written consumer run in this one. Writes a
JSON file of every figure with the machine's and the broker's description, PNG charts, and prints
a markdown table. Exit status 0 when every scenario was measured (goals not met are reported, not
failed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from benchmarks import plots
from benchmarks.figures import BASELINE_LATENCIES_MS, MEMORY_LIMIT_MB, RESULTS, STEPS, Suite, say
from benchmarks.flamegraph import record_flame_graph
from benchmarks.machine import describe
from benchmarks.modes import MODES, Sizes
from benchmarks.report import Report
from benchmarks.scenarios import (
    BOUND_LATENCIES_MS,
    LATENCY_LINGER_MS,
    THROUGHPUT_VARIANTS,
    Bench,
)
from testkit.brokers.choice import KINDS
from testkit.brokers.choice import describe as broker_description
from testkit.processes import EmulatorProcess


async def run_suite(sizes: Sizes, workdir: Path, selected: set[int], plots_dir: Path,
                    broker: str = "kafka") -> Report:
    report = Report(sizes.mode, describe(), sizes.as_dict(),
                    started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    broker=broker_description(broker))
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        emulator = await EmulatorProcess(log_path=workdir / "emulator.log").astart()
        try:
            suite = Suite(Bench(sizes, session, emulator, workdir, broker_kind=broker), report)
            for number, title, step in STEPS:
                if number not in selected:
                    continue
                say(f"[bench] {title} ...")
                step_began = time.monotonic()
                try:
                    await step(suite)
                except Exception as exc:  # one scenario's failure must not lose the others' figures
                    report.errors[title] = f"{type(exc).__name__}: {exc}"
                    say(traceback.format_exc())
                say(f"[bench] {title}: {time.monotonic() - step_began:.0f} s")
            report.plots = [str(p) for p in draw(suite, plots_dir)] if report.figures else []
            if 3 in selected:
                say("[bench] CPU profile (py-spy flame graph) ...")
                try:
                    flame = await record_flame_graph(suite.bench, plots_dir / "bench-flame.svg", sizes.backlog)
                    report.plots.append(str(flame))
                except Exception as exc:  # the figures stand without it
                    report.errors["flame graph"] = f"{type(exc).__name__}: {exc}"
        finally:
            emulator.stop()
    report.elapsed_s = time.monotonic() - began
    # Other work on the machine shows up here: compare with load_average_at_start.
    report.machine["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return report


def draw(suite: Suite, out: Path) -> list[Path]:
    report = suite.report
    context = plots.run_context(report.broker, report.machine, report.started_at)
    drawn = []
    bars: list[tuple[str, float | None, str]] = [
        ("ceiling: aiokafka passthrough", report.value("ceiling"), "reference")]
    bars += [(f"hand-written, {ms} ms", report.value(f"baseline-{ms}ms"), "baseline") for ms in BASELINE_LATENCIES_MS]
    bars += [(f"gateway: {v.title}", report.value(f"s3-{v.key}"), "gateway") for v in THROUGHPUT_VARIANTS]
    bars += [(f"gateway: {ms} ms backend", report.value(f"s4-{ms}ms"), "gateway") for ms in BOUND_LATENCIES_MS]
    bars += [("gateway: rate-limited Qlik", report.value("s5-rows"), "gateway")]
    if any(value for _, value, _ in bars):
        drawn.append(plots.throughput_chart(out / "bench-throughput.png", bars,
                                            f"Throughput by scenario ({report.mode} run)", context,
                                            throughput_lines(report)))
    if suite.latency:
        drawn.append(plots.latency_chart(out / "bench-latency.png", suite.latency, LATENCY_LINGER_MS + 10.0,
                                         f"Latency at half the maximum throughput ({report.mode} run)", context))
    if suite.duration_buckets:
        drawn.append(plots.distribution_chart(out / "bench-explanations.png", suite.duration_buckets,
                                              "Request duration by explanation kind (gateway histogram)", context))
    if suite.memory_series:
        drawn.append(plots.memory_chart(out / "bench-memory.png", suite.memory_series, MEMORY_LIMIT_MB * 1e6,
                                        "Gateway memory with a backend that never answers", context))
    return drawn


def throughput_lines(report: Report) -> list[plots.Line]:
    """The ceiling, and the goal of scenario 3's Qlik JSON figure (a share of the ceiling), when measured."""
    lines = []
    ceiling = report.value("ceiling")
    if ceiling:
        lines.append(plots.Line("ceiling", ceiling, ":", "#555555"))
    qlik = report.figure("s3-qlik-json-none")
    goal = qlik.goal if qlik is not None else None
    if goal is not None and goal.reference:
        lines.append(plots.Line(f"goal for Qlik JSON: {goal.threshold:g} × ceiling", goal.threshold * goal.reference))
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions, smaller loads: a few minutes")
    size.add_argument("--smoke", action="store_true", help="tiny loads: proves every scenario runs (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json", help="JSON file of every figure")
    parser.add_argument("--plots-dir", type=Path, default=RESULTS, help="where the PNG charts go")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7,8",
                        help="comma-separated scenario numbers (6 and 8 need 3; goals need 1 and 2)")
    parser.add_argument("--keep-work", action="store_true", help="keep the configs and process logs")
    parser.add_argument("--broker", choices=KINDS, default="kafka",
                        help="Apache Kafka (KRaft, one node; needs Java 17+ and Maven) or the embedded tansu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    selected = {int(n) for n in args.scenarios.split(",") if n.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="scoring-gateway-bench-"))
    try:
        import uvloop

        report = uvloop.run(run_suite(sizes, workdir, selected, args.plots_dir, args.broker))
    finally:
        keep = args.keep_work
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report.write_json(args.out)
    load = report.machine.get("load_average_at_end")
    print(f"\n## Benchmark ({sizes.mode} run on {report.broker['name']} {report.broker['version']}, "
          f"{report.elapsed_s:.0f} s, "
          f"{report.machine['cores']} cores, {report.machine['cpu_model']}"
          + (f", load average {load[0]:.2f} at the end" if load else "") + ")\n")
    print(report.markdown())
    print(f"\nJSON: {args.out}" + "".join(f"\nplot: {p}" for p in report.plots))
    if report.errors:
        print(f"\nnot measured: {', '.join(report.errors)}" + ("" if keep else " (--keep-work keeps the logs)"))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
