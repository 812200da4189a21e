"""A scoring API that is down costs latency, not dead letters: the circuit breaker end to end.

Records keep arriving during every outage (a paced producer runs before, during and after it). Each
scenario checks what an operator would: nothing dead-lettered and nothing lost, ``/readyz`` 503
while the API is out, only a trickle of requests reaching it meanwhile, and every record predicted
soon after it heals. The suite runs each outage for a few seconds; ``make chaos`` runs them at full
length (60 s of 503s, 45 s unreachable, 60 s of hangs, a 429 storm).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from testkit.processes import EmulatorProcess, InProcessGateway
from testkit.topics import Topics, churn_features, gateway_config, ids_of
from testkit.waits import async_wait_until

pytestmark = pytest.mark.integration

RATE = 200  # records/s arriving throughout
OUTAGE_S = 6.0
MAX_BACKOFF_MS = 2000
PROBES_PER_S = 3.0  # "at most a few requests per second reach the API" while it is out


class Outage:
    """One scenario: a gateway in-process, a paced producer, and the measurements."""

    def __init__(self, topics: Topics, emu: EmulatorProcess, **pipeline: Any) -> None:
        retry = {"initial_backoff_ms": 100, "max_backoff_ms": MAX_BACKOFF_MS, "request_timeout_s": 1,
                 "max_retry_after_s": 2, **pipeline.pop("retry", {})}
        backend = {"type": "qlik", "url": emu.qlik_url(), "token": "test-token"}
        self.doc = gateway_config(topics, backend, batching={"max_rows": 50, "linger_ms": 5}, retry=retry,
                                  **pipeline)
        self.topics = topics
        self.produced = 0

    async def produce(self, seconds: float) -> None:
        """``RATE`` records/s for ``seconds``, in small bursts, keyed so per-key order is exercised."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            burst = RATE // 10
            start = self.produced
            await self.topics.produce([orjson.dumps(churn_features(i)) for i in range(start, start + burst)],
                                      [f"customer-{i % 97}".encode() for i in range(start, start + burst)])
            self.produced += burst
            await asyncio.sleep(0.1)


async def requests_sent(http: aiohttp.ClientSession, admin_url: str) -> float:
    """Every scoring request the gateway made (answered or not), from its own metrics."""
    async with http.get(admin_url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("scoring_gateway_request_duration_seconds_count{"))


async def readyz(http: aiohttp.ClientSession, admin_url: str) -> tuple[int, Any]:
    async with http.get(admin_url + "/readyz") as response:
        return response.status, await response.json(content_type=None)


async def run_outage(topics: Topics, emu: EmulatorProcess, break_it: Callable[[], Awaitable[None]],
                     heal: Callable[[], Awaitable[None]], **pipeline: Any) -> dict[str, float]:
    scenario = Outage(topics, emu, **pipeline)
    async with InProcessGateway(scenario.doc) as gw, aiohttp.ClientSession() as http:
        async with asyncio.TaskGroup() as group:
            producing = group.create_task(scenario.produce(OUTAGE_S + 4.0))
            await topics.read(topics.predictions, lambda r: len(r) >= RATE // 2, 60)  # flowing
            await break_it()
            broken_at = time.monotonic()

            async def not_ready() -> bool:
                status, body = await readyz(http, gw.admin_url)
                return status == 503 and any("circuit open" in r for p in body["pipelines"].values()
                                             for r in p["reasons"])

            await async_wait_until(not_ready, 10, "/readyz to report the open circuit")
            # Requests already out when it opened end within one request timeout: count from then on.
            await asyncio.sleep(scenario.doc["pipelines"][0]["retry"]["request_timeout_s"] + 0.2)
            opened_at = time.monotonic()
            before = await requests_sent(http, gw.admin_url)
            await asyncio.sleep(max(0.0, broken_at + OUTAGE_S - time.monotonic()))
            during = await requests_sent(http, gw.admin_url) - before
            assert (await readyz(http, gw.admin_url))[0] == 503  # still out, still not ready
            rate = during / (time.monotonic() - opened_at)
            await heal()
            healed_at = time.monotonic()
            await producing
        total = scenario.produced
        predictions = await topics.read(topics.predictions, lambda r: len(set(ids_of(r))) >= total,
                                        timeout_s=2 * MAX_BACKOFF_MS / 1000 + 30)
        recovered_s = time.monotonic() - healed_at
        dead = await topics.read_all(topics.dead_letter)
        await async_wait_until(lambda: _ready(http, gw.admin_url), 10, "/readyz to report ready again")
    assert dead == [], [orjson.loads(r.value)["reason"] for r in dead[:3]]
    assert len(set(ids_of(predictions))) == total  # nothing lost
    assert rate <= PROBES_PER_S, f"{rate:.1f} requests/s reached the API while it was out"
    return {"requests_per_s": rate, "recovered_s": recovered_s}


async def _ready(http: aiohttp.ClientSession, admin_url: str) -> bool:
    return (await readyz(http, admin_url))[0] == 200


async def test_a_503_outage_pauses_instead_of_dead_lettering(topics, emu):
    async def break_it() -> None:
        emu.configure(error_rate={"503": 1.0})

    async def heal() -> None:
        emu.configure(error_rate={})

    figures = await run_outage(topics, emu, break_it, heal)
    # predicted within 2 x max_backoff of healing, plus the time to read the topic back
    assert figures["recovered_s"] <= 2 * MAX_BACKOFF_MS / 1000 + 5


async def test_an_unreachable_api_pauses_instead_of_dead_lettering(topics):
    own = EmulatorProcess().start()  # this test stops its own emulator and starts it again on the same port
    try:
        async def break_it() -> None:
            own.stop()

        async def heal() -> None:
            own.start()  # a new process on the same port: the API is back

        figures = await run_outage(topics, own, break_it, heal)
        assert figures["recovered_s"] <= 2 * MAX_BACKOFF_MS / 1000 + 8  # includes the emulator's start-up
    finally:
        own.stop()


async def test_hanging_requests_pause_instead_of_dead_lettering(topics, emu):
    async def break_it() -> None:
        emu.configure(hang_rate=1.0)

    async def heal() -> None:
        emu.configure(hang_rate=0.0)

    figures = await run_outage(topics, emu, break_it, heal)
    # a probe may be hanging when it heals: add one request timeout
    assert figures["recovered_s"] <= 2 * MAX_BACKOFF_MS / 1000 + 1 + 5


async def test_a_429_storm_is_waited_out_with_retry_after_capped(topics, emu):
    async def break_it() -> None:
        emu.configure(error_rate={"429": 1.0}, retry_after_s=30)

    async def heal() -> None:
        emu.configure(error_rate={}, retry_after_s=1)

    figures = await run_outage(topics, emu, break_it, heal)
    # Retry-After 30 s is capped by max_retry_after_s (2 s): recovery does not wait 30 s
    assert figures["recovered_s"] <= 2 + 2 * MAX_BACKOFF_MS / 1000 + 5


async def test_dead_letter_mode_keeps_the_old_behaviour(topics, emu):
    """``retry.on_backend_outage: dead_letter``: requests keep going out, retries run out, records are
    dead-lettered, and the breaker still reports the outage."""
    n = 300
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)])
    emu.configure(error_rate={"503": 1.0})
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "test-token"},
                         batching={"max_rows": 50, "linger_ms": 5},
                         retry={"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 100,
                                "on_backend_outage": "dead_letter"})
    async with InProcessGateway(doc) as gw, aiohttp.ClientSession() as http:
        dead = await topics.read(topics.dead_letter, lambda r: len(r) >= n, 60)
        async with http.get(gw.admin_url + "/metrics") as response:
            metrics = await response.text()
    reasons = {orjson.loads(r.value)["reason"].split(":")[0] for r in dead}
    assert len(set(ids_of(dead))) == n and reasons == {"gave up after 2 attempts"}
    assert 'scoring_gateway_circuit_state{pipeline="churn"} 2.0' in metrics


async def test_rows_that_crash_the_model_are_isolated_and_the_breaker_stays_closed(topics, emu):
    """5 % of rows carry the value the emulator's model crashes on (HTTP 500 for the whole request):
    only those rows are dead-lettered, at stage score with status 500; the breaker never opens."""
    n, crash = 2000, "CRASH-ME"
    values, bad = [], set()
    for i in range(n):
        row = churn_features(i)
        if i % 20 == 7:
            row["PlanType"] = crash
            bad.add(i)
        values.append(orjson.dumps(row))
    await topics.produce(values, [f"k{i}".encode() for i in range(n)])
    emu.configure(crash_value=crash)
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "test-token"},
                         batching={"max_rows": 100, "linger_ms": 5},
                         retry={"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 200})
    async with InProcessGateway(doc) as gw, aiohttp.ClientSession() as http:
        dead = await topics.read(topics.dead_letter, lambda r: len(r) >= len(bad), 120)
        predictions = await topics.read(topics.predictions, lambda r: len(r) >= n - len(bad), 120, settle_s=0.5)
        async with http.get(gw.admin_url + "/metrics") as response:
            metrics = await response.text()
    documents = [orjson.loads(r.value) for r in dead]
    assert {(d["stage"], d["status"]) for d in documents} == {("score", 500)}
    crashed_rows = {orjson.loads(d["raw"])["PlanType"] for d in documents}
    assert crashed_rows == {crash} and len(documents) == len(bad)
    assert len(set(ids_of(predictions))) == n - len(bad)
    assert 'scoring_gateway_circuit_transitions_total{pipeline="churn",to="open"} 0.0' in metrics
