"""What every chaos scenario shares: sizes, results and checks, the campaign, and the common steps.

A scenario feeds a stream, breaks something at moments chosen from the stream's real progress
(the group's committed offsets, so a disruption always lands mid-stream), waits until every input
offset is committed, then checks the books (:mod:`testkit.ledger`) and sweeps everything
the gateway wrote for the scenario's secrets. The scenarios themselves live in
:mod:`benchmarks.chaos_scenarios` and :mod:`benchmarks.chaos_outages`.

A check is an *invariant* (the scenario fails without it) or a *goal* (reported, met or not).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from testkit.ledger import Outputs, Tally, read_outputs, tally
from testkit.stage import Gateway, GroupProgress, Stage

POLL_S = 0.2
RETRIES = "scoring_gateway_retries_total"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big and how long each scenario is; ``QUICK`` and ``FULL`` below."""

    crash_records: int
    crash_kills: int
    fault_records: int
    stall_records: int
    stall_seconds: float
    stalls: int
    hostile_bad: int
    hostile_good: int
    hostile_huge: int
    auth_records: int
    auth_outage_s: float
    graceful_records: int
    graceful_restarts: int
    rebalance_records: int
    rebalance_cycles: int
    outage_rate: float  # records/s arriving before, during and after a scoring-API outage
    outage_before_s: float  # records arriving before it (after the gateway has caught up)
    outage_s: float  # api-503, api-hangs, api-429
    down_s: float  # api-down: the emulator process stopped for this long
    outage_after_s: float  # records still arriving after it heals
    hang_timeout_s: float  # api-hangs: retry.request_timeout_s
    storm_retry_after_cap_s: float  # api-429: retry.max_retry_after_s against a Retry-After of 30 s
    deadline_s: float  # per scenario, disruptions and recovery included


FULL = Sizes(crash_records=200_000, crash_kills=10, fault_records=50_000, stall_records=60_000,
             stall_seconds=10.0, stalls=3, hostile_bad=10_000, hostile_good=40_000, hostile_huge=20,
             auth_records=60_000, auth_outage_s=30.0, graceful_records=50_000, graceful_restarts=5,
             rebalance_records=60_000, rebalance_cycles=3, outage_rate=300.0, outage_before_s=15.0,
             outage_s=60.0, down_s=45.0, outage_after_s=30.0, hang_timeout_s=3.0, storm_retry_after_cap_s=10.0,
             deadline_s=900.0)
QUICK = Sizes(crash_records=20_000, crash_kills=3, fault_records=10_000, stall_records=10_000,
              stall_seconds=3.0, stalls=2, hostile_bad=1_000, hostile_good=4_000, hostile_huge=5,
              auth_records=10_000, auth_outage_s=5.0, graceful_records=10_000, graceful_restarts=2,
              rebalance_records=24_000, rebalance_cycles=1, outage_rate=300.0, outage_before_s=3.0,
              outage_s=6.0, down_s=6.0, outage_after_s=6.0, hang_timeout_s=1.0, storm_retry_after_cap_s=2.0,
              deadline_s=300.0)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str = ""
    goal: bool = False  # a goal is reported; only invariants decide whether the scenario passed

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "goal": self.goal}


@dataclass(slots=True)
class ScenarioResult:
    key: str
    title: str
    tally: Tally | None = None
    retries: float | None = None
    amplification: float | None = None
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    workdir: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks if not c.goal)

    def check(self, name: str, passed: bool, detail: str = "", *, goal: bool = False) -> bool:
        self.checks.append(Check(name, bool(passed), detail, goal))
        return bool(passed)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "passed": self.passed,
                "tally": self.tally.as_dict() if self.tally else None, "retries": self.retries,
                "requests_per_success": self.amplification, "seconds": round(self.seconds, 1),
                "checks": [c.as_dict() for c in self.checks], "notes": self.notes, "workdir": self.workdir}


class Campaign:
    """What every scenario shares: the HTTP session, the work folder, the sizes, and every secret
    handed out so far (a later scenario's outputs must not hold an earlier one's either)."""

    def __init__(self, session: aiohttp.ClientSession, workdir: Path, sizes: Sizes, seed: int = 2024,
                 broker: str = "kafka") -> None:
        self.session = session
        self.broker = broker
        self.workdir = workdir
        self.sizes = sizes
        self.rng = random.Random(seed)
        self.secrets: set[str] = set()

    def stage(self, key: str, **options: Any) -> Stage:
        stage = Stage(self.session, self.workdir / key, key, broker=self.broker, **options)
        self.secrets.update(stage.creds.values())
        return stage


class RetryCount:
    """``scoring_gateway_retries_total`` summed over every gateway process of a scenario: each
    process's last scrape counts (a scrape is taken right before every kill or stop)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    async def scrape(self, gateway: Gateway) -> None:
        value = await gateway.metric(RETRIES)
        if value is not None:
            self._last[gateway.label] = value

    @property
    def total(self) -> float:
        return sum(self._last.values())


# ---- shared steps ---------------------------------------------------------------------------

def paced(latency_ms: float, max_rows: int, in_flight: int) -> dict[str, Any]:
    """Gateway settings bounding one process to ``in_flight × max_rows / latency`` rows/s."""
    return {"batching": {"max_rows": max_rows, "linger_ms": 10},
            "concurrency": {"max_in_flight_requests": in_flight,
                            "max_in_flight_records": max(max_rows * in_flight * 4, 2000)}}


async def served(stage: Stage, route: str) -> tuple[int, int]:
    """(requests served, 200 answers) on one vendor route so far."""
    stats = (await stage.emulator.astats())["routes"][route]
    return int(stats["requests"]), int(stats["statuses"].get("200", 0))


def amplification(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Requests sent per successful request: every success is one request the data needed."""
    requests, successes = after[0] - before[0], after[1] - before[1]
    return round(requests / successes, 3) if successes else None


async def reach(progress: GroupProgress, mark: float, gateway: Gateway, deadline: float) -> float | None:
    """Wait until the committed share of the input reaches ``mark`` and ``gateway`` has published;
    returns the share then, or None if the deadline passes or the gateway died."""
    while time.monotonic() < deadline:
        if not gateway.alive():
            return None
        share = await progress.fraction()
        if share is not None and share >= mark and await gateway.published() > 0:
            return share
        await asyncio.sleep(POLL_S)
    return None


async def check_command(stage: Stage, config: dict[str, Any], result: ScenarioResult) -> None:
    """``check --probe`` on the scenario's config, before the stream: it must pass."""
    code, out = await stage.check(config)
    lines = out.strip().splitlines()
    result.check("check --probe passes", code == 0, lines[-1] if lines else "")


async def settle(stage: Stage, result: ScenarioResult, inputs: dict[str, Any], progress: GroupProgress,
                 deadline: float, retries: RetryCount, route: str, before: tuple[int, int],
                 committed_only: bool = False) -> Outputs:
    """Wait for the stream to be committed, then count: lost, duplicates, retries, amplification
    (``committed_only``: the outputs as a ``read_committed`` reader sees them)."""
    done = await progress.wait_done(deadline)
    result.check("every input offset committed before the deadline", done,
                 "" if done else f"committed share {await progress.fraction()}")
    await progress.close()
    for gateway in stage.gateways:
        if gateway.alive():
            await retries.scrape(gateway)
    outputs = await read_outputs(stage.t, committed_only=committed_only)
    counts = tally(inputs, outputs)
    result.tally = counts
    result.retries = retries.total
    result.amplification = amplification(before, await served(stage, route))
    result.check("nothing lost", counts.lost == 0, f"{counts.lost} of {counts.records_in} input ids have no output")
    result.check("no output without an input", counts.strangers == 0, f"{counts.strangers} unknown ids")
    return outputs


def sweep(stage: Stage, outputs: Outputs | None, secrets: Iterable[str], result: ScenarioResult) -> None:
    """No secret may appear in anything the gateway wrote: logs, metrics scrapes, /readyz bodies,
    ``check`` output, output topics."""
    for label, data in outputs.raw if outputs else ():
        stage.evidence.add_blob(f"topic {label}", data)
    needles = [(s, s.encode()) for s in sorted(set(secrets))]
    findings: list[str] = []
    scanned = 0
    for path in stage.evidence.files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += len(data)
        findings += [f"{path.name} holds {text[:14]}…" for text, needle in needles if needle in data]
    for label, data in stage.evidence.blobs:
        scanned += len(data)
        findings += [f"{label} holds {text[:14]}…" for text, needle in needles if needle in data]
    result.notes["secret_sweep"] = {"files": len(stage.evidence.files), "blobs": len(stage.evidence.blobs),
                                    "bytes": scanned, "secrets": len(needles)}
    result.check("no secret in logs, metrics, /readyz, check output or output topics", not findings,
                 "; ".join(sorted(set(findings))[:5]))
    stage.evidence.blobs.clear()


def no_duplicates(result: ScenarioResult, why: str) -> None:
    """Duplicates are only allowed after a crash or a rebalance (PRODUCT.md §4)."""
    duplicates = result.tally.duplicates if result.tally else None
    result.check(f"no duplicates ({why})", duplicates == 0, f"{duplicates} duplicates")

