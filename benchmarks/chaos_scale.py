"""The scale scenario: a steady stream while the group goes 1 → 2 → 3 → 2 → 1 replicas.

Each join is a new ``scoring-gateway run`` process; each leave is a SIGTERM to the newest one (it
drains, commits and leaves the group, as a Kubernetes scale-in does). For every event the records
produced around it (from ``BEFORE_S`` before it to ``AFTER_S`` after it, a join's window ending
``AFTER_S`` after the joiner is ready) give the p50/p99/max end-to-end latency; the longest time
with no output at all, lost records, duplicates and per-key order are counted too
(:mod:`testkit.scale`). Targets: p99 ≤ 500 ms and no record waiting over 1 s around any
join or leave (goals, reported); nothing lost, key order kept and, under ``exactly_once``, no
duplicate for a ``read_committed`` reader (invariants).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.chaos_campaign import QUICK, Campaign, ScenarioResult, paced
from testkit.ledger import read_inputs, read_outputs, tally
from testkit.scale import Event, read_predictions, scale_report, table
from testkit.stage import Gateway, Stage
from testkit.stream import PacedStream

BEFORE_S, AFTER_S = 1.0, 4.0
STEPS = (2, 3, 2, 1)  # replicas after each event, from one
P99_GOAL_MS, MAX_GOAL_MS = 500, 1000
POLL_S = 0.1


def _sizes(campaign: Campaign) -> tuple[float, float]:
    """(records/s, seconds between events)."""
    return (600.0, 6.0) if campaign.sizes is QUICK else (1500.0, 15.0)


async def _ready(gateway: Gateway, deadline: float) -> bool:
    while time.monotonic() < deadline:
        found = await gateway.readyz()
        if found is not None and found[0] == 200:
            return True
        await asyncio.sleep(POLL_S)
    return False


async def _streamed(stream: PacedStream, seconds: float, rate: float) -> None:
    """Until the stream has sent ``seconds`` more of records (bounded: the stream may stall)."""
    target, deadline = stream.sent + int(seconds * rate), time.monotonic() + 3 * seconds + 30
    while time.monotonic() < deadline:
        if stream.sent >= target:
            return
        await asyncio.sleep(POLL_S)


async def _moves(stage: Stage, config: dict[str, Any], stream: PacedStream, rate: float, dwell_s: float,
                 result: ScenarioResult) -> list[Event]:
    members = [stage.gateway(config, "member-1")]
    if not await _ready(members[0], time.monotonic() + 90):
        raise RuntimeError(f"the first member never became ready: {members[0].log_tail(5)}")
    events: list[Event] = []
    exits: list[int | None] = []
    for n, target in enumerate(STEPS, start=2):
        await _streamed(stream, dwell_s, rate)
        at = time.time()
        if target > len(members):
            joiner = stage.gateway(config, f"member-{n}")
            members.append(joiner)
            ready = await _ready(joiner, time.monotonic() + 90)
            result.check(f"member-{n} joined and became ready", ready, joiner.log_tail(3) if not ready else "")
            events.append(Event("join", target, at, at - BEFORE_S, time.time() + AFTER_S))
        else:
            exits.append(await members.pop().terminate())
            events.append(Event("leave", target, at, at - BEFORE_S, at + AFTER_S))
    await _streamed(stream, dwell_s, rate)
    result.check("every leaving member exited 0 (drained, committed, left)", all(c == 0 for c in exits), str(exits))
    result.check("the first member stayed up", members[0].alive(), members[0].log_tail(3))
    return events


async def scale(campaign: Campaign, result: ScenarioResult, delivery: str = "at_least_once") -> None:
    rate, dwell_s = _sizes(campaign)
    committed_only = delivery == "exactly_once"
    async with campaign.stage(result.key) as stage:
        await stage.emulator.aconfigure(latency_ms=20)
        config = stage.config(stage.qlik(), delivery=delivery, **paced(20, 50, 8))
        stream = PacedStream(stage.t, rate, seed=29)
        stop = asyncio.Event()
        streaming = asyncio.create_task(stream.run(stop))
        try:
            events = await _moves(stage, config, stream, rate, dwell_s, result)
        finally:
            stop.set()
            await streaming
        inputs = await read_inputs(stage.t, stream.sent)
        deadline = time.monotonic() + 180
        while True:
            outputs = await read_predictions(stage.t, committed_only=committed_only)
            if {o.input_id for o in outputs} >= set(inputs) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        report = scale_report(events, inputs, outputs)
        result.tally = tally(inputs, await read_outputs(stage.t, committed_only=committed_only))
        result.notes["scale"] = {**report, "rate": rate, "seconds_between_events": dwell_s,
                                 "window": f"{BEFORE_S:g} s before to {AFTER_S:g} s after each event",
                                 "table": table(report)}
        result.check("nothing lost", report["lost"] == 0, f"{report['lost']} of {report['records']}")
        result.check("per-key order kept", report["out_of_key_order"] == 0, str(report["out_of_key_order"]))
        if committed_only:
            result.check("no duplicate for read_committed", report["duplicates"] == 0, str(report["duplicates"]))
        for e in report["events"]:
            result.check(f"{e['event']}: p99 <= {P99_GOAL_MS} ms", (e["p99_ms"] or 0) <= P99_GOAL_MS,
                         f"p99 {e['p99_ms']} ms", goal=True)
            result.check(f"{e['event']}: no record waits over {MAX_GOAL_MS} ms", (e["max_ms"] or 0) <= MAX_GOAL_MS,
                         f"max {e['max_ms']} ms", goal=True)
        for gateway in stage.gateways:
            if gateway.alive():
                await gateway.terminate()
