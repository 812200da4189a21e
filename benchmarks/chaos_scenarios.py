"""The ways the campaign breaks the gateway, each on its own broker, emulator and topics.

Seven are here (crashes, backend faults, broker stalls, hostile input, an auth outage, graceful
restarts, rebalances); the scoring-API outages the circuit breaker rides out are in
:mod:`benchmarks.chaos_outages`. ``SCENARIOS`` names them all for the runner
(:mod:`benchmarks.chaos`). Backlogs are paced by the emulator's latency and the gateway's batch
size and concurrency, so a stream lasts long enough to be disrupted on a fast machine too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.chaos_campaign import (
    POLL_S,
    Campaign,
    RetryCount,
    ScenarioResult,
    check_command,
    no_duplicates,
    paced,
    reach,
    served,
    settle,
    sweep,
)
from benchmarks.chaos_hostile import KIND_HEADER, hostile_stream, judge_hostile
from benchmarks.chaos_outages import api_429, api_503, api_down, api_hangs
from benchmarks.chaos_scale import scale
from gateway.commands.demo.sample_data import CHURN_FEATURES
from testkit.ledger import end_offsets, read_inputs, read_outputs, tally
from testkit.stage import Gateway, feed_churn, freeze, resume

# ---- 1. crashes -----------------------------------------------------------------------------

async def crashes(campaign: Campaign, result: ScenarioResult, delivery: str = "at_least_once") -> None:
    """kill -9 at random moments of the stream, restarting each time: nothing may be lost (and with
    ``delivery: exactly_once``, nothing repeated for a ``read_committed`` reader)."""
    exactly_once = delivery == "exactly_once"
    if exactly_once and campaign.broker == "tansu":
        result.notes["skipped"] = "tansu has no Kafka transactions: run with --broker kafka"
        return
    size = campaign.sizes
    rng = random.Random(campaign.rng.random())
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        inputs = await feed_churn(stage, size.crash_records, seed=1)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.aconfigure(latency_ms=50)
        transactions = {"delivery": delivery, "transaction_interval_ms": 100} if exactly_once else {}
        config = stage.config(stage.qlik(), **paced(50, 100, 1), **transactions)
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
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before,
                               committed_only=exactly_once)
        if exactly_once and result.tally is not None:
            uncommitted = tally(inputs, await read_outputs(stage.t))
            result.notes["read_uncommitted_duplicates"] = uncommitted.duplicates
            result.check("no duplicate for a read_committed reader", result.tally.duplicates == 0,
                         f"{result.tally.duplicates} duplicates (read_uncommitted: {uncommitted.duplicates})")
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
        await stage.emulator.aconfigure(**FAULTS)
        before = await served(stage, "qlik")
        faults_before = (await stage.emulator.astats())["faults"]
        retries = RetryCount()
        gateway = stage.gateway(config)
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before)
        stats = await stage.emulator.astats()
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
        no_duplicates(result, "retries resend requests, never outputs")
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
        await stage.emulator.aconfigure(latency_ms=50)
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
        no_duplicates(result, "one healthy process")
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)


# ---- 5. auth outage -------------------------------------------------------------------------

async def auth_outage(campaign: Campaign, result: ScenarioResult) -> None:
    """The backend answers 401 for a while mid-stream, then heals: not ready and paused meanwhile,
    nothing dead-lettered, nothing lost."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s + size.auth_outage_s
        inputs = await feed_churn(stage, size.auth_records, seed=5)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        await stage.emulator.aconfigure(latency_ms=50)
        config = stage.config(stage.qlik(), **paced(50, 50, 1), retry={"max_backoff_ms": 1000})
        await check_command(stage, config, result)
        before = await served(stage, "qlik")
        retries = RetryCount()
        gateway = stage.gateway(config)
        share = await reach(progress, 0.25, gateway, deadline)
        result.check("the outage began mid-stream", share is not None and share < 1, f"at committed share {share}")
        await stage.emulator.aconfigure(token=f"revoked-{stage.creds.token[::-1]}")
        started = time.monotonic()
        samples = await _watch_outage(gateway, started + size.auth_outage_s)
        code, out = await stage.check(config, "check-during-outage")
        result.check("check --probe reports the refusal during the outage", code == 1 and "401" in out,
                     out.strip().splitlines()[-1] if out.strip() else "")
        await stage.emulator.aconfigure(token=stage.creds.token)
        _judge_outage(samples, started, result)
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", before)
        assert result.tally is not None
        result.check("nothing dead-lettered", result.tally.dead_lettered == 0, f"{result.tally.dead_lettered}")
        no_duplicates(result, "one process that never stopped")
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
    result.notes["auth_outage"] = {"detected_after_s": round(samples[first][0] - started, 2), "samples": len(after),
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
        await stage.emulator.aconfigure(latency_ms=25)
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
        no_duplicates(result, "every stop drained and committed")
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
        await stage.emulator.aconfigure(latency_ms=50)
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
    "crashes-exactly-once": ("kill -9 mid-stream, restarted, delivery exactly_once",
                             lambda campaign, result: crashes(campaign, result, "exactly_once")),
    "backend-faults": ("503/429/hangs/drops", backend_faults),
    "broker-stalls": ("broker SIGSTOP/SIGCONT", broker_stalls),
    "hostile-input": ("hostile records", hostile_input),
    "auth-outage": ("401 outage, then healed", auth_outage),
    "graceful-restarts": ("SIGTERM + restart", graceful_restarts),
    "rebalances": ("member joins and leaves", rebalances),
    "api-503": ("503 to every request, then healed", api_503),
    "api-down": ("API process stopped, restarted on its port", api_down),
    "api-hangs": ("every request hangs, then healed", api_hangs),
    "api-429": ("429 storm, Retry-After 30 over a lower cap", api_429),
    "scale": ("steady stream, replicas 1 → 2 → 3 → 2 → 1", scale),
    "scale-exactly-once": ("steady stream, replicas 1 → 2 → 3 → 2 → 1, delivery exactly_once",
                           lambda campaign, result: scale(campaign, result, "exactly_once")),
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
