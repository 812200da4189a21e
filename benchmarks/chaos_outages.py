"""The scoring API out for a while, records arriving throughout: the circuit breaker at full length.

Four outages of the Qlik API, each against one real ``scoring-gateway run`` process with the
default retry settings, while records arrive at ``Sizes.outage_rate`` before, during and after:

- ``api-503``: every request answered 503; ``api-down``: the emulator process stopped, then started
  again on the same port; ``api-hangs``: no request answered (each times out after
  ``Sizes.hang_timeout_s``); ``api-429``: every request answered 429 with ``Retry-After: 30``,
  against a ``retry.max_retry_after_s`` of ``Sizes.storm_retry_after_cap_s``.

Invariants, the breaker's promise: nothing dead-lettered, nothing lost, no duplicates (one process
that never stopped), ``/readyz`` 503 (``circuit open: …``) from the moment it is reported until the
API heals, at most a few requests per second meanwhile, ready again once healed; for the 429 storm,
probes spaced by the capped ``Retry-After``. The goal: every record that arrived before the heal
predicted within 2 × ``retry.max_backoff_ms`` of it.

Requests during the outage are the gateway's own count (``scoring_gateway_request_duration_seconds
_count``, every attempt, answered or not: a stopped emulator counts nothing), from when ``/readyz``
reports the open circuit and the requests already out then have ended (``inflight_requests`` at
most 1, the probe; at most one request timeout later) until the heal. Only hanging requests take
the whole timeout to end; waiting the default 30 s every time would leave a third of a 45 s outage
to count, and nothing of a quick one.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.chaos_campaign import (
    POLL_S,
    Campaign,
    RetryCount,
    ScenarioResult,
    Sizes,
    check_command,
    no_duplicates,
    served,
    settle,
    sweep,
)
from benchmarks.chaos_stream import PacedStream, Predicted
from gateway.config.models import RetryConfig
from testkit.ledger import end_offsets, read_inputs
from testkit.measure import metric_sum, parse_metrics
from testkit.stage import Gateway, Stage

LATENCY_MS = 10  # the emulator's latency per request while the API is up
REQUESTS = "scoring_gateway_request_duration_seconds_count"
IN_FLIGHT = "scoring_gateway_inflight_requests"
MAX_REQUESTS_PER_S = 3.0  # "at most a few requests per second reach the API while it is out"
STORM_RETRY_AFTER_S = 30
ARRIVAL_SHARE = 0.9  # records must keep arriving at >= 90 % of the rate while the API is out


# ---- watching the gateway -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    status: int | None  # /readyz
    circuit_open: bool  # /readyz gives "circuit open: …" as a reason
    requests: float | None  # scoring requests made so far, answered or not
    in_flight: float | None


async def sample(gateway: Gateway) -> Sample:
    ready = await gateway.readyz()
    text = await gateway.scrape()
    metrics = parse_metrics(text) if text is not None else None
    reasons = [] if ready is None else [r for p in ready[1].get("pipelines", {}).values()
                                        for r in p.get("reasons", [])]
    return Sample(time.monotonic(), None if ready is None else ready[0],
                  any(r.startswith("circuit open") for r in reasons),
                  None if metrics is None else metric_sum(metrics, REQUESTS),
                  None if metrics is None else metric_sum(metrics, IN_FLIGHT))


def probe_intervals(samples: list[Sample]) -> list[float]:
    """Seconds between the samples at which the request count rose: the probes' spacing (to
    within one sampling period)."""
    rises = [b.at for a, b in itertools.pairwise(samples)
             if a.requests is not None and b.requests is not None and b.requests > a.requests]
    return [round(b - a, 2) for a, b in itertools.pairwise(rises)]


@dataclass(slots=True)
class Watch:
    """What happened, for the checks: samples from the break to the heal, and the moments."""

    broken_at: float = 0.0
    healed_at: float = 0.0
    at_break: Sample | None = None  # right before the break
    opened: Sample | None = None  # the first sample reporting the open circuit
    counted_from: Sample | None = None  # the open circuit's earlier requests had ended
    counted_to: Sample | None = None  # right before the heal
    samples: list[Sample] = field(default_factory=list)
    arrived: dict[str, float] = field(default_factory=dict)  # records/s before, during, after
    emulator_counted: int | None = None  # requests the emulator saw over the counted span (None: it was down)
    caught_up_s: float | None = None  # heal -> every record that arrived before it predicted
    ready_s: float | None = None  # heal -> /readyz 200

    def counted(self) -> list[Sample]:
        start = self.counted_from
        return [] if start is None else [s for s in self.samples if s.at >= start.at]


@dataclass(frozen=True, slots=True)
class Outage:
    """One way the API goes out: for how long, the retry settings, how it breaks and heals."""

    seconds: float
    retry: dict[str, Any]
    start: Callable[[Stage], Awaitable[None]]
    heal: Callable[[Stage], Awaitable[None]]
    restarts_emulator: bool = False  # its served counts start afresh at the heal


class Ride:
    """One outage ridden out by one gateway process while the stream keeps arriving."""

    def __init__(self, stage: Stage, gateway: Gateway, outage: Outage, sizes: Sizes, result: ScenarioResult,
                 deadline: float, seed: int) -> None:
        self.stage, self.gateway, self.outage, self.sizes = stage, gateway, outage, sizes
        self.result, self.deadline = result, deadline
        self.policy = RetryConfig(**outage.retry)
        self.stream = PacedStream(stage.t, sizes.outage_rate, seed)
        self.predicted = Predicted(stage.t)
        self.watch = Watch()
        self.carried = (0, 0)  # the emulator's counts when it was stopped (a restart counts afresh)
        self.sent_at_break = 0

    async def run(self) -> None:
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.stream.run(stop))
            group.create_task(self.predicted.run(stop))
            try:
                await self._before()
                await self._during()
                await self._after()
            finally:
                stop.set()

    async def _before(self) -> None:
        """Until the gateway has caught up with the stream, and at least ``outage_before_s``."""
        stream, started = self.stream, time.monotonic()
        flowing = await _until(lambda: stream.sent > 0 and self.predicted.covers(stream.ends), self.deadline)
        self.result.check("records flowing through the gateway before the outage", flowing, f"{stream.sent} sent")
        await asyncio.sleep(max(0.0, started + self.sizes.outage_before_s - time.monotonic()))  # the phase's length
        self.watch.arrived["before"] = stream.sent / (time.monotonic() - started)

    async def _during(self) -> None:
        """Break it, sample /readyz and the request count every POLL_S for the outage's length."""
        watch, outage, stage = self.watch, self.outage, self.stage
        if outage.restarts_emulator:
            self.carried = await served(stage, "qlik")
        self.sent_at_break, watch.at_break = self.stream.sent, await sample(self.gateway)
        await outage.start(stage)
        watch.broken_at = time.monotonic()
        emulator_from: int | None = None
        until = watch.broken_at + outage.seconds
        while time.monotonic() < until:
            s = await sample(self.gateway)
            watch.samples.append(s)
            if watch.opened is None and s.circuit_open:
                watch.opened = s
            if watch.opened is not None and watch.counted_from is None and (
                    (s.in_flight is not None and s.in_flight <= 1)
                    or s.at >= watch.opened.at + self.policy.request_timeout_s):
                watch.counted_from = s
                emulator_from = None if outage.restarts_emulator else (await served(stage, "qlik"))[0]
            await asyncio.sleep(max(0.0, min(POLL_S, until - time.monotonic())))
        watch.counted_to = await sample(self.gateway)
        watch.samples.append(watch.counted_to)
        if emulator_from is not None:
            watch.emulator_counted = (await served(stage, "qlik"))[0] - emulator_from

    async def _after(self) -> None:
        """Heal it (healed once the API answers again: a restarted emulator takes a moment); time
        the catch-up and readiness; keep the stream going ``outage_after_s``."""
        watch = self.watch
        await self.outage.heal(self.stage)
        watch.healed_at = time.monotonic()
        ends, sent = dict(self.stream.ends), self.stream.sent
        watch.arrived["during"] = (sent - self.sent_at_break) / (watch.healed_at - watch.broken_at)
        until = min(self.deadline, watch.healed_at + 2 * self.policy.max_backoff_ms / 1000 + 60)
        while time.monotonic() < until and (watch.caught_up_s is None or watch.ready_s is None):
            if watch.caught_up_s is None and self.predicted.covers(ends):
                watch.caught_up_s = round(time.monotonic() - watch.healed_at, 2)
            if watch.ready_s is None and (ready := await self.gateway.readyz()) is not None and ready[0] == 200:
                watch.ready_s = round(time.monotonic() - watch.healed_at, 2)
            await asyncio.sleep(0.1)
        await asyncio.sleep(max(0.0, watch.healed_at + self.sizes.outage_after_s - time.monotonic()))  # its length
        watch.arrived["after"] = (self.stream.sent - sent) / (time.monotonic() - watch.healed_at)


async def ride_out(campaign: Campaign, result: ScenarioResult, outage: Outage, seed: int) -> Watch:
    """The stream, the outage and the books; returns what was seen, for a scenario's own checks."""
    size = campaign.sizes
    async with campaign.stage(result.key) as stage:
        deadline = time.monotonic() + size.deadline_s
        await stage.emulator.aconfigure(latency_ms=LATENCY_MS)
        config = stage.config(stage.qlik(), **({"retry": outage.retry} if outage.retry else {}))
        await check_command(stage, config, result)
        before = await served(stage, "qlik")
        retries = RetryCount()
        gateway = stage.gateway(config)
        ride = Ride(stage, gateway, outage, size, result, deadline, seed)
        await ride.run()
        inputs = await read_inputs(stage.t)
        progress = stage.progress(end_offsets(inputs, stage.t.partitions))
        since = (before[0] - ride.carried[0], before[1] - ride.carried[1])
        outputs = await settle(stage, result, inputs, progress, deadline, retries, "qlik", since)
        _judge(result, ride.watch, ride.policy, size)
        ready = await gateway.readyz()
        result.check("ready again after the heal", ready is not None and ready[0] == 200, str(ready and ready[0]))
        await gateway.terminate()
        sweep(stage, outputs, campaign.secrets, result)
    return ride.watch


async def _until(condition: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(POLL_S)
    return False


def _judge(result: ScenarioResult, watch: Watch, policy: RetryConfig, size: Sizes) -> None:
    rate = size.outage_rate
    during = watch.arrived.get("during", 0.0)
    result.check(f"records kept arriving while the API was out (>= {ARRIVAL_SHARE:.0%} of {rate:g}/s)",
                 during >= ARRIVAL_SHARE * rate, f"{during:.0f} records/s")
    opened = watch.opened
    detected = None if opened is None else round(opened.at - watch.broken_at, 2)
    result.check("/readyz reported the open circuit during the outage", opened is not None and opened.status == 503,
                 f"after {detected} s" if opened else f"{len(watch.samples)} samples, none with 'circuit open'")
    after = [s for s in watch.samples if opened is not None and s.at >= opened.at]
    bad = [s for s in after if s.status != 503 or not s.circuit_open]
    result.check("/readyz 503 (circuit open) throughout the outage once reported", bool(after) and not bad,
                 f"{len(bad)} of {len(after)} samples not 503 with 'circuit open'")
    span, counted = _requests_between(watch.counted_from, watch.counted_to)
    per_s = counted / span if counted is not None and span > 0 else None
    result.check(f"at most {MAX_REQUESTS_PER_S:g} requests/s reached the API while it was out (gateway's count)",
                 per_s is not None and span >= 1.0 and per_s <= MAX_REQUESTS_PER_S,
                 f"{per_s if per_s is None else round(per_s, 3)} requests/s over {span:.1f} s")
    tally = result.tally
    result.check("nothing dead-lettered", tally is not None and tally.dead_lettered == 0,
                 f"{tally and tally.dead_lettered} dead-lettered")
    no_duplicates(result, "one process that never stopped")
    goal_s = 2 * policy.max_backoff_ms / 1000
    caught = watch.caught_up_s
    result.check(f"every record that arrived before the heal predicted within 2 x max_backoff_ms ({goal_s:g} s)",
                 caught is not None and caught <= goal_s, f"after {caught} s", goal=True)
    intervals = probe_intervals(watch.counted())
    _, total = _requests_between(watch.at_break, watch.counted_to)
    late = next((x for x in watch.samples if opened is not None and x.at >= opened.at + policy.request_timeout_s), None)
    late_span, late_count = _requests_between(late, watch.counted_to)  # the suite's rule: open + one timeout
    result.notes["outage"] = {
        "seconds": round(watch.healed_at - watch.broken_at, 1),
        "records_per_s": {k: round(v, 1) for k, v in watch.arrived.items()},
        "open_reported_after_s": detected,
        "counted_s": round(span, 1),
        "requests_per_s": None if per_s is None else round(per_s, 3),
        "requests_counted": counted,
        "emulator_requests_counted": watch.emulator_counted,
        "requests_from_break_to_heal": total,
        "requests_per_s_from_open_plus_one_timeout": (round(late_count / late_span, 3)
                                                      if late_count is not None and late_span > 0 else None),
        "probe_interval_s": _spread(intervals),
        "ready_again_after_s": watch.ready_s,
        "all_predicted_after_s": caught,
        "goal_s": goal_s,
    }


def _requests_between(start: Sample | None, end: Sample | None) -> tuple[float, float | None]:
    """(seconds, requests made) from ``start`` to ``end``; None requests when a count is missing."""
    if start is None or end is None or start.requests is None or end.requests is None:
        return 0.0, None
    return end.at - start.at, end.requests - start.requests


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"n": len(values), "min": min(values), "median": round(statistics.median(values), 2), "max": max(values)}


# ---- the four outages -----------------------------------------------------------------------

async def api_503(campaign: Campaign, result: ScenarioResult) -> None:
    """Every request answered 503 for ``outage_s``."""
    async def start(stage: Stage) -> None:
        await stage.emulator.aconfigure(error_rate={"503": 1.0})

    async def heal(stage: Stage) -> None:
        await stage.emulator.aconfigure(error_rate={})

    await ride_out(campaign, result, Outage(campaign.sizes.outage_s, {}, start, heal), seed=31)


async def api_down(campaign: Campaign, result: ScenarioResult) -> None:
    """The API unreachable for ``down_s``: its process stopped, then started again on its port."""
    async def start(stage: Stage) -> None:
        stage.emulator.stop()

    async def heal(stage: Stage) -> None:
        await stage.emulator.start_again(latency_ms=LATENCY_MS)

    await ride_out(campaign, result, Outage(campaign.sizes.down_s, {}, start, heal, restarts_emulator=True), seed=32)


async def api_hangs(campaign: Campaign, result: ScenarioResult) -> None:
    """No request answered for ``outage_s``: each times out after ``hang_timeout_s``."""
    async def start(stage: Stage) -> None:
        await stage.emulator.aconfigure(hang_rate=1.0)

    async def heal(stage: Stage) -> None:
        await stage.emulator.aconfigure(hang_rate=0.0)

    retry = {"request_timeout_s": campaign.sizes.hang_timeout_s}
    await ride_out(campaign, result, Outage(campaign.sizes.outage_s, retry, start, heal), seed=33)


async def api_429(campaign: Campaign, result: ScenarioResult) -> None:
    """A 429 storm with ``Retry-After: 30`` for ``outage_s``; ``max_retry_after_s`` caps the wait, so
    probes go out every cap seconds, neither sooner nor at 30 s."""
    async def start(stage: Stage) -> None:
        await stage.emulator.aconfigure(error_rate={"429": 1.0}, retry_after_s=STORM_RETRY_AFTER_S)

    async def heal(stage: Stage) -> None:
        await stage.emulator.aconfigure(error_rate={}, retry_after_s=1)

    cap = campaign.sizes.storm_retry_after_cap_s
    watch = await ride_out(campaign, result, Outage(campaign.sizes.outage_s, {"max_retry_after_s": cap}, start, heal),
                           seed=34)
    intervals = probe_intervals(watch.counted())
    # Sampling every POLL_S plus two HTTP calls places each probe to within about half a second.
    result.check(f"probes spaced by Retry-After {STORM_RETRY_AFTER_S} s capped at max_retry_after_s ({cap:g} s)",
                 bool(intervals) and all(cap - 1.0 <= i <= cap + 1.5 for i in intervals),
                 f"intervals {intervals} s")
