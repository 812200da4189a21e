"""The seven ways the campaign breaks the gateway, each on its own broker, emulator and topics.

Every scenario feeds a backlog, breaks something at moments chosen from the stream's real
progress (the group's committed offsets, so a disruption always lands mid-stream), waits until
every input offset is committed, then checks the books (:mod:`benchmarks.chaos_ledger`) and
sweeps everything the gateway wrote for the scenario's secrets. Backlogs are paced by the
emulator's latency and the gateway's batch size and concurrency, so a stream lasts long enough to
be disrupted on a fast machine too.

A check is an *invariant* (the scenario fails without it) or a *goal* (reported, met or not).
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.chaos_env import Gateway, GroupProgress, Stage, freeze, resume
from benchmarks.chaos_hostile import BAD_KINDS, HUGE_KIND, KIND_HEADER, VALIDATE, hostile_stream
from benchmarks.chaos_ledger import Outputs, Tally, end_offsets, read_inputs, read_outputs, tally
from gateway.sample_data import CHURN_FEATURES, churn_records

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
    deadline_s: float  # per scenario, disruptions and recovery included


FULL = Sizes(crash_records=200_000, crash_kills=10, fault_records=50_000, stall_records=60_000,
             stall_seconds=10.0, stalls=3, hostile_bad=10_000, hostile_good=40_000, hostile_huge=20,
             auth_records=60_000, auth_outage_s=30.0, graceful_records=50_000, graceful_restarts=5,
             rebalance_records=60_000, rebalance_cycles=3, deadline_s=900.0)
QUICK = Sizes(crash_records=20_000, crash_kills=3, fault_records=10_000, stall_records=10_000,
              stall_seconds=3.0, stalls=2, hostile_bad=1_000, hostile_good=4_000, hostile_huge=5,
              auth_records=10_000, auth_outage_s=5.0, graceful_records=10_000, graceful_restarts=2,
              rebalance_records=24_000, rebalance_cycles=1, deadline_s=300.0)


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


async def feed_churn(stage: Stage, n: int, seed: int) -> dict[str, Any]:
    """``n`` valid churn records keyed by customer; returns the input records by id."""
    records = list(churn_records(n, seed=seed, malformed_share=0.0))
    await stage.t.produce([r.value for r in records], [r.key for r in records])
    inputs = await read_inputs(stage.t)
    if len(inputs) != n:
        raise RuntimeError(f"produced {n} records but the input topic holds {len(inputs)}")
    return inputs


async def served(stage: Stage, route: str) -> tuple[int, int]:
    """(requests served, 200 answers) on one vendor route so far."""
    stats = (await stage.emulator.stats())["routes"][route]
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
                 deadline: float, retries: RetryCount, route: str, before: tuple[int, int]) -> Outputs:
    """Wait for the stream to be committed, then count: lost, duplicates, retries, amplification."""
    done = await progress.wait_done(deadline)
    result.check("every input offset committed before the deadline", done,
                 "" if done else f"committed share {await progress.fraction()}")
    await progress.close()
    for gateway in stage.gateways:
        if gateway.alive():
            await retries.scrape(gateway)
    outputs = await read_outputs(stage.t)
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


def _no_duplicates(result: ScenarioResult, why: str) -> None:
    """Duplicates are only allowed after a crash or a rebalance (PRODUCT.md §4)."""
    duplicates = result.tally.duplicates if result.tally else None
    result.check(f"no duplicates ({why})", duplicates == 0, f"{duplicates} duplicates")


# ---- 1. crashes -----------------------------------------------------------------------------

async def crashes(campaign: Campaign, result: ScenarioResult) -> None:
    """kill -9 at random moments of the stream, restarting each time: nothing may be lost."""
    size = campaign.sizes
    rng = random.Random(campaign.rng.random())
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        inputs = await feed_churn(stage, size.crash_records, seed=1)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.configure(latency_ms=50)
        config = stage.config(stage.qlik(), **paced(50, 100, 1))
        await check_command(stage, config, result)
        before = await served(stage, "qlik")
        retries = RetryCount()
        gateway = stage.gateway(config)
        marks = sorted(rng.uniform(0.05, 0.9) for _ in range(size.crash_kills))
        at: list[float] = []
        for mark in marks:
            share = await reach(progress, mark, gateway, deadline)
            if share is None:
                break
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await retries.scrape(gateway)
            gateway.kill()
            at.append(round(share, 3))
            gateway = stage.gateway(config)
        result.notes["killed_at_committed_share"] = at
        result.check(f"{size.crash_kills} kill -9 landed mid-stream",
                     len(at) == size.crash_kills and max(at, default=1) < 1,
                     f"{len(at)} kills at committed shares {at}")
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before)
        result.check("every killed process died by SIGKILL",
                     all(g.returncode == -9 for g in stage.gateways[:-1]),
                     str([g.returncode for g in stage.gateways[:-1]]))
        await stage.gateways[-1].terminate()
        sweep(stage, outputs, campaign.secrets, result)


# ---- 2. backend faults ----------------------------------------------------------------------

FAULTS = {"error_rate": {"503": 0.10, "429": 0.05}, "retry_after_s": 1, "hang_rate": 0.02, "drop_rate": 0.01}


async def backend_faults(campaign: Campaign, result: ScenarioResult) -> None:
    """10 % 503, 5 % 429 (Retry-After 1), 2 % hangs, 1 % dropped connections: nothing dead-lettered,
    and few requests beyond the ones the data needs."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        inputs = await feed_churn(stage, size.fault_records, seed=2)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        config = stage.config(stage.qlik(), **paced(0, 10, 16),
                              retry={"max_attempts": 10, "request_timeout_s": 2, "initial_backoff_ms": 100,
                                     "max_backoff_ms": 2000})
        await check_command(stage, config, result)
        await stage.emulator.configure(**FAULTS)
        before = await served(stage, "qlik")
        faults_before = (await stage.emulator.stats())["faults"]
        retries = RetryCount()
        gateway = stage.gateway(config)
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before)
        stats = await stage.emulator.stats()
        statuses = stats["routes"]["qlik"]["statuses"]
        faults = {k: stats["faults"][k] - faults_before.get(k, 0) for k in ("hang", "drop")}
        result.notes["served"] = {"503": statuses.get("503", 0), "429": statuses.get("429", 0), **faults,
                                  "200": statuses.get("200", 0)}
        result.check("every fault kind was injected",
                     all(statuses.get(s, 0) > 0 for s in ("503", "429")) and all(faults.values()),
                     str(result.notes["served"]))
        assert result.tally is not None
        result.check("nothing dead-lettered", result.tally.dead_lettered == 0,
                     f"{result.tally.dead_lettered} dead-lettered")
        _no_duplicates(result, "retries resend requests, never outputs")
        amp = result.amplification
        result.check("requests sent per request needed <= 1.3", amp is not None and amp <= 1.3, f"{amp}", goal=True)
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)


# ---- 3. broker stalls -----------------------------------------------------------------------

async def broker_stalls(campaign: Campaign, result: ScenarioResult) -> None:
    """The broker frozen with SIGSTOP mid-stream, then SIGCONT: nothing lost, the gateway survives."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s + size.stalls * size.stall_seconds
        inputs = await feed_churn(stage, size.stall_records, seed=3)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.configure(latency_ms=50)
        config = stage.config(stage.datarobot(), **paced(50, 100, 1))
        await check_command(stage, config, result)
        before = await served(stage, "datarobot")
        retries = RetryCount()
        gateway = stage.gateway(config)
        pid = gateway.pid
        marks = [0.2 + 0.5 * i / max(1, size.stalls - 1) for i in range(size.stalls)]
        at: list[float] = []
        for mark in marks:
            share = await reach(progress, mark, gateway, deadline)
            if share is None:
                break
            await progress.close()
            freeze(stage.broker.pid)
            try:
                await asyncio.sleep(size.stall_seconds)  # the stall itself is the point here
            finally:
                resume(stage.broker.pid)
            at.append(round(share, 3))
        result.notes["stalled_at_committed_share"] = at
        result.check(f"{size.stalls} stalls of {size.stall_seconds:g}s landed mid-stream",
                     len(at) == size.stalls and max(at, default=1) < 1, f"stalled at committed shares {at}")
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "datarobot", before)
        result.check("the gateway rode out every stall (same process throughout)",
                     gateway.alive() and len(stage.gateways) == 1 and gateway.pid == pid,
                     gateway.log_tail(3) if not gateway.alive() else "")
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)


# ---- 4. hostile input -----------------------------------------------------------------------

async def hostile_input(campaign: Campaign, result: ScenarioResult) -> None:
    """Bad records dead-lettered with a reason, awkward valid ones predicted with values intact,
    and the process never dies."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        stream = list(hostile_stream(size.hostile_bad, size.hostile_good, size.hostile_huge))
        await stage.t.produce([h.value for h in stream], [h.key for h in stream],  # type: ignore[misc]
                              [[(KIND_HEADER, h.kind.encode())] for h in stream])
        inputs = await read_inputs(stage.t)
        result.check("the hostile stream reached the input topic", len(inputs) == len(stream),
                     f"{len(inputs)} of {len(stream)}")
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        config = stage.config(stage.datarobot(passthrough_columns=["note"]),
                              features=[*CHURN_FEATURES, "note"],
                              batching={"max_rows": 500, "max_bytes": 262_144, "linger_ms": 10})
        await check_command(stage, config, result)
        before = await served(stage, "datarobot")
        retries = RetryCount()
        gateway = stage.gateway(config)
        pid = gateway.pid
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "datarobot", before)
        result.check("the process never died (same PID at the end)",
                     gateway.alive() and gateway.pid == pid and len(stage.gateways) == 1,
                     gateway.log_tail(3) if not gateway.alive() else f"pid {pid}")
        judge_hostile(inputs, outputs, result)
        _no_duplicates(result, "one healthy process")
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)


def judge_hostile(inputs: dict[str, Any], outputs: Outputs, result: ScenarioResult) -> None:
    """Each input against its kind's promise: predicted with ``note`` intact, or dead-lettered at
    an expected stage with a reason and the original bytes."""
    predictions = {doc["id"]: doc for doc in outputs.predictions}
    dead = {doc["id"]: doc for doc in outputs.dead_letters}
    per_kind: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    examples: list[str] = []
    for rid, record in inputs.items():
        headers = dict(record.headers or ())
        kind = headers.get(KIND_HEADER, b"?").decode()
        per_kind[kind] += 1
        if kind == HUGE_KIND:
            stages: frozenset[str] | None = VALIDATE
        else:
            stages = BAD_KINDS[kind][1] if kind in BAD_KINDS else None
        problem = _judge_one(record, predictions.get(rid), dead.get(rid), stages,
                             outputs.prediction_headers.get(rid) or outputs.dead_letter_headers.get(rid))
        if problem:
            wrong[kind] += 1
            if len(examples) < 8:
                examples.append(f"{kind} {rid}: {problem}")
    result.notes["hostile_kinds"] = {k: {"records": n, "wrong": wrong[k]} for k, n in sorted(per_kind.items())}
    bad = sum(n for k, n in per_kind.items() if k in BAD_KINDS or k == HUGE_KIND)
    result.notes["hostile_bad"] = bad
    result.notes["hostile_good"] = sum(per_kind.values()) - bad
    result.check("every good record predicted with its note intact, every bad one dead-lettered "
                 "at its stage with a reason and its original bytes", not wrong, "; ".join(examples))


def _judge_one(record: Any, prediction: dict[str, Any] | None, dead: dict[str, Any] | None,
               stages: frozenset[str] | None, headers: list[tuple[str, bytes]] | None) -> str | None:
    if headers is not None and (KIND_HEADER, dict(record.headers or ()).get(KIND_HEADER)) not in headers:
        return "input headers not carried over"
    if stages is None:  # must be predicted
        if prediction is None:
            return f"not predicted: {dead and dead.get('stage')} {dead and str(dead.get('reason'))[:120]}"
        sent = orjson.loads(record.value).get("note")
        echoed = (prediction.get("passthrough") or {}).get("note")
        return None if echoed == sent else f"note changed: sent {sent!r:.60} got {echoed!r:.60}"
    if dead is None:
        return "not dead-lettered" + (" (predicted)" if prediction else "")
    if dead.get("stage") not in stages:
        return f"stage {dead.get('stage')} not in {sorted(stages)}: {str(dead.get('reason'))[:120]}"
    if not dead.get("reason"):
        return "no reason"
    raw = dead["raw"].encode() if "raw" in dead else base64.b64decode(dead.get("raw_base64", ""))
    return None if raw == (record.value or b"") else "raw bytes differ from the input"


# ---- 5. auth outage -------------------------------------------------------------------------

async def auth_outage(campaign: Campaign, result: ScenarioResult) -> None:
    """The backend answers 401 for a while mid-stream, then heals: not ready and paused meanwhile,
    nothing dead-lettered, nothing lost."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s + size.auth_outage_s
        inputs = await feed_churn(stage, size.auth_records, seed=5)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.configure(latency_ms=50)
        config = stage.config(stage.qlik(), **paced(50, 50, 1), retry={"max_backoff_ms": 1000})
        await check_command(stage, config, result)
        before = await served(stage, "qlik")
        retries = RetryCount()
        gateway = stage.gateway(config)
        share = await reach(progress, 0.25, gateway, deadline)
        result.check("the outage began mid-stream", share is not None and share < 1, f"at committed share {share}")
        await stage.emulator.configure(token=f"revoked-{stage.creds.token[::-1]}")
        started = time.monotonic()
        samples = await _watch_outage(gateway, started + size.auth_outage_s)
        code, out = await stage.check(config, "check-during-outage")
        result.check("check --probe reports the refusal during the outage", code == 1 and "401" in out,
                     out.strip().splitlines()[-1] if out.strip() else "")
        await stage.emulator.configure(token=stage.creds.token)
        _judge_outage(samples, started, result)
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before)
        assert result.tally is not None
        result.check("nothing dead-lettered", result.tally.dead_lettered == 0, f"{result.tally.dead_lettered}")
        _no_duplicates(result, "one process that never stopped")
        ready = await gateway.readyz()
        result.check("ready again after the fix", ready is not None and ready[0] == 200, str(ready))
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)


async def _watch_outage(gateway: Gateway, until: float) -> list[tuple[float, int | None, str, float | None]]:
    """(time, /readyz status, reasons, consumer_paused) every POLL_S until ``until``."""
    samples = []
    while time.monotonic() < until:
        ready = await gateway.readyz()
        paused = await gateway.metric("scoring_gateway_consumer_paused")
        reasons = "" if ready is None else str([p.get("reasons") for p in ready[1].get("pipelines", {}).values()])
        samples.append((time.monotonic(), None if ready is None else ready[0], reasons, paused))
        await asyncio.sleep(POLL_S)
    return samples


def _judge_outage(samples: list[tuple[float, int | None, str, float | None]], started: float,
                  result: ScenarioResult) -> None:
    first = next((i for i, s in enumerate(samples) if s[1] == 503 and "401" in s[2]), None)
    if first is None:
        result.check("/readyz 503 with the 401 reason during the outage", False, f"{len(samples)} samples, none 503")
        return
    # consumer_paused follows on the next fetch-loop turn; allow one more sample for it.
    after = samples[first:]
    bad_ready = [s for s in after if s[1] != 503]
    bad_paused = [s for s in after[1:] if s[3] != 1.0]
    result.notes["outage"] = {"detected_after_s": round(samples[first][0] - started, 2), "samples": len(after),
                              "reason": samples[first][2][:200]}
    result.check("/readyz 503 (with the 401 reason) throughout the outage once detected", not bad_ready,
                 f"{len(bad_ready)} of {len(after)} samples not 503")
    result.check("consumer_paused 1 throughout the outage", not bad_paused,
                 f"{len(bad_paused)} of {len(after) - 1} samples not paused")


# ---- 6. graceful restarts -------------------------------------------------------------------

async def graceful_restarts(campaign: Campaign, result: ScenarioResult) -> None:
    """SIGTERM and restart mid-stream: the drain publishes and commits, so no duplicates at all."""
    size = campaign.sizes
    rng = random.Random(campaign.rng.random())
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        inputs = await feed_churn(stage, size.graceful_records, seed=6)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.configure(latency_ms=25)
        config = stage.config(stage.datarobot(body_format="json"), **paced(25, 100, 1))
        await check_command(stage, config, result)
        before = await served(stage, "datarobot")
        retries = RetryCount()
        gateway = stage.gateway(config)
        marks = sorted(rng.uniform(0.1, 0.85) for _ in range(size.graceful_restarts))
        at: list[float] = []
        codes: list[int | None] = []
        for mark in marks:
            share = await reach(progress, mark, gateway, deadline)
            if share is None:
                break
            await retries.scrape(gateway)
            codes.append(await gateway.terminate())
            at.append(round(share, 3))
            gateway = stage.gateway(config)
        result.notes["restarted_at_committed_share"] = at
        result.check(f"{size.graceful_restarts} SIGTERM restarts landed mid-stream",
                     len(at) == size.graceful_restarts and max(at, default=1) < 1, f"at {at}")
        result.check("every drained process exited 0", all(c == 0 for c in codes), str(codes))
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "datarobot", before)
        assert result.tally is not None
        _no_duplicates(result, "every stop drained and committed")
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)


# ---- 7. rebalances --------------------------------------------------------------------------

async def rebalances(campaign: Campaign, result: ScenarioResult) -> None:
    """A second gateway joins the group, takes partitions, then leaves, several times: nothing lost."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        inputs = await feed_churn(stage, size.rebalance_records, seed=7)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.configure(latency_ms=50)
        config = stage.config(stage.qlik(), **paced(50, 50, 2))
        await check_command(stage, config, result)
        before = await served(stage, "qlik")
        retries = RetryCount()
        first = stage.gateway(config, "member-a")
        marks = [0.1 + 0.6 * i / max(1, size.rebalance_cycles) for i in range(size.rebalance_cycles)]
        cycles: list[dict[str, Any]] = []
        for i, mark in enumerate(marks):
            share = await reach(progress, mark, first, deadline)
            if share is None:
                break
            joiner = stage.gateway(config, f"member-b{i + 1}")
            worked = await _until(lambda member=joiner: _published(member), min(deadline, time.monotonic() + 60))
            await retries.scrape(joiner)
            code = await joiner.terminate()
            cycles.append({"joined_at": round(share, 3), "joiner_published": worked, "exit": code})
        result.notes["cycles"] = cycles
        result.check(f"{size.rebalance_cycles} join/leave cycles mid-stream, each joiner took work",
                     len(cycles) == size.rebalance_cycles and all(c["joiner_published"] for c in cycles)
                     and all(c["joined_at"] < 1 for c in cycles), str(cycles))
        result.check("every joiner left cleanly (exit 0)", all(c["exit"] == 0 for c in cycles),
                     str([c["exit"] for c in cycles]))
        result.check("the first member stayed up", first.alive(), first.log_tail(3) if not first.alive() else "")
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before)
        await first.terminate()
        sweep(stage, outputs, campaign.secrets, result)


async def _published(gateway: Gateway) -> bool:
    return gateway.alive() and await gateway.published() > 0


async def _until(condition: Callable[[], Awaitable[bool]], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(POLL_S)
    return False


Scenario = Callable[[Campaign, ScenarioResult], Awaitable[None]]

SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "crashes": ("kill -9 mid-stream, restarted", crashes),
    "backend-faults": ("503/429/hangs/drops", backend_faults),
    "broker-stalls": ("broker SIGSTOP/SIGCONT", broker_stalls),
    "hostile-input": ("hostile records", hostile_input),
    "auth-outage": ("401 outage, then healed", auth_outage),
    "graceful-restarts": ("SIGTERM + restart", graceful_restarts),
    "rebalances": ("member joins and leaves", rebalances),
}


async def run_scenario(campaign: Campaign, key: str) -> ScenarioResult:
    """One scenario within its deadline; a crash of the runner's own code is a failed check, not
    an aborted campaign."""
    title, scenario = SCENARIOS[key]
    result = ScenarioResult(key, title, workdir=str(campaign.workdir / key))
    started = time.monotonic()
    budget = campaign.sizes.deadline_s * 1.5 + 120
    try:
        await asyncio.wait_for(scenario(campaign, result), budget)
    except TimeoutError:
        result.check("finished within its time budget", False, f"over {budget:.0f}s")
    except Exception as exc:  # reported in the results; the other scenarios still run
        result.check("ran to the end", False, f"{type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - started
    return result
