"""The reliability and security campaign: break the gateway on purpose and count what survives.

    python -m benchmarks.chaos [--quick] [--only NAME[,NAME...]] [--out benchmarks/results/chaos.json]
                               [--broker kafka|tansu]
    python -m benchmarks.chaos --list      # the scenarios' names, one a line

Each scenario (see :mod:`benchmarks.chaos_scenarios`) starts its own broker (Apache Kafka by
default, or the embedded tansu with ``--broker tansu``), emulator and gateway
processes on 127.0.0.1, disrupts a running stream, then checks every input ``id`` against the
prediction and dead-letter topics and sweeps everything the gateway wrote for the scenario's
secrets. The run prints a markdown table, writes the figures and the machine's description as
JSON, and exits 1 when any scenario broke an invariant. The processes' logs, configs and metrics
scrapes stay in the work folder (printed at the end) for inspection.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.chaos_campaign import FULL, QUICK, Campaign, ScenarioResult
from benchmarks.chaos_scenarios import SCENARIOS, run_scenario
from benchmarks.machine import describe
from testkit.brokers.choice import KINDS
from testkit.brokers.choice import describe as broker_description

DEFAULT_OUT = Path("benchmarks/results/chaos.json")
COLUMNS = ("scenario", "in", "predicted", "dead-lettered", "lost", "duplicates", "retries",
           "requests/needed", "time s", "result")
OUTAGE_COLUMNS = ("outage", "out for s", "/readyz 503 after s", "requests/s while out (gateway)", "counted over s",
                  "requests the emulator saw then", "probe interval s (median)", "ready again after s",
                  "all predicted after s", "goal s")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams and fewer disruptions (minutes)")
    parser.add_argument("--list", action="store_true", help="print the scenarios' names and exit")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where logs and configs go (default: a new temp dir)")
    parser.add_argument("--broker", choices=KINDS, default="kafka",
                        help="Apache Kafka (KRaft, one node; needs Java 17+ and Maven) or the embedded tansu")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = chosen
    return args


async def campaign(names: Sequence[str], quick: bool, workdir: Path, broker: str = "kafka") -> list[ScenarioResult]:
    results = []
    async with aiohttp.ClientSession() as session:
        run = Campaign(session, workdir, QUICK if quick else FULL, broker=broker)
        for name in names:
            print(f"-- {name} ...", file=sys.stderr, flush=True)
            result = await run_scenario(run, name)
            print(f"   {'passed' if result.passed else 'FAILED'} in {result.seconds:.0f}s", file=sys.stderr, flush=True)
            for check in result.checks:
                if not check.passed:
                    print(f"   {'goal missed' if check.goal else 'broken'}: {check.name}: {check.detail}",
                          file=sys.stderr, flush=True)
            results.append(result)
    return results


def table(results: Sequence[ScenarioResult]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        t = r.tally
        cells = [f"{r.key} ({r.title})",
                 *(str(getattr(t, name)) if t else "-" for name in ("records_in", "predicted", "dead_lettered",
                                                                    "lost", "duplicates")),
                 f"{r.retries:.0f}" if r.retries is not None else "-",
                 f"{r.amplification:.3f}" if r.amplification is not None else "-",
                 f"{r.seconds:.0f}",
                 _verdict(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outage_table(results: Sequence[ScenarioResult]) -> str | None:
    """The API outages' own figures (``notes["outage"]``), or None when none ran."""
    rows = [(r.key, r.notes["outage"]) for r in results if "outage" in r.notes]
    if not rows:
        return None
    lines = ["| " + " | ".join(OUTAGE_COLUMNS) + " |", "|" + "---|" * len(OUTAGE_COLUMNS)]
    for key, o in rows:
        probes = o["probe_interval_s"]
        cells = [key, o["seconds"], o["open_reported_after_s"], o["requests_per_s"], o["counted_s"],
                 o["emulator_requests_counted"], probes and probes["median"], o["ready_again_after_s"],
                 o["all_predicted_after_s"], o["goal_s"]]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def _verdict(result: ScenarioResult) -> str:
    if not result.passed:
        return "FAILED: " + "; ".join(c.name for c in result.checks if not c.passed and not c.goal)
    missed = [c.name for c in result.checks if c.goal and not c.passed]
    return "passed" + (f" (goal missed: {'; '.join(missed)})" if missed else "")


def report(results: Sequence[ScenarioResult], quick: bool, started: float, argv: Sequence[str],
           broker: str = "kafka") -> dict[str, Any]:
    return {"mode": "quick" if quick else "full",
            "sizes": asdict(QUICK if quick else FULL),
            "broker": broker_description(broker),
            "command": "python -m benchmarks.chaos " + " ".join(argv),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1),
            "passed": all(r.passed for r in results),
            "machine": describe(),
            "definitions": {
                "lost": "input ids with neither a prediction nor a dead-letter record",
                "duplicates": "output records beyond one per input id (predictions and dead letters together)",
                "retries": "scoring_gateway_retries_total summed over every gateway process, each scraped "
                           "right before it was killed or stopped",
                "requests/needed": "requests the emulator received (answered, refused, hung or dropped) per "
                                   "200 answer: each success is one request the data needed",
            },
            "scenarios": [r.as_dict() for r in results]}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    started = time.time()
    results = asyncio.run(campaign(args.scenarios, args.quick, workdir, args.broker))
    doc = report(results, args.quick, started, argv, args.broker)  # written first: the figures are kept
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(table(results))
    outages = outage_table(results)
    if outages:
        print("\n" + outages)
    for result in results:  # the scale scenarios: latency around each join and leave
        if "scale" in result.notes:
            print(f"\n{result.key} ({result.notes['scale']['window']}):\n{result.notes['scale']['table']}")
    print(f"\nresults: {args.out}   logs and configs: {workdir}")
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
