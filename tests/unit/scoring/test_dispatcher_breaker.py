"""The dispatcher and the circuit breaker, over a fake backend client and codec: a server error on
some rows (the data's) or on every request (the backend's, as the canary tells), what an open breaker
sends and what waits, and the attempts a held outage or a refused configuration does not use up."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import pytest

from gateway.backends.codec import ScoredRow
from gateway.scoring.breaker import BreakerSettings, State
from gateway.stream.records import STAGE_NOT_PREDICTED, STAGE_SCORE, Rejected
from tests.unit.scoring.dispatch_rig import (
    Switch,
    poisoned,
    predictions,
    rig,
    rows,
    server_error,
    unauthorized,
    unavailable,
    unprocessable,
)
from tests.unit.scoring.fakes import RecordingLimiter, Script, scored, until

# ---- a server error on some rows (500): the data's, or the backend's? ------------------------------

async def test_a_500_on_a_batch_while_others_succeed_is_bisected_and_only_the_row_is_rejected() -> None:
    r = rig(poisoned(500), max_attempts=3, breaker=BreakerSettings(
        failure_threshold=1, initial_backoff_s=0.004, max_backoff_s=0.02))
    outcomes = await r.score(rows(4, **{"2": {"bad": True}}))
    assert predictions(outcomes[:2]) == [0, 1] and predictions(outcomes[3:]) == [3]
    assert outcomes[2] == Rejected(STAGE_SCORE, "gave up after 3 attempts: Internal Server Error", 500, 3)
    assert r.backend.requests.count([2]) == 3  # the row alone, retried to max_attempts
    # The breaker (threshold 1) never heard of it: the backend served the other rows meanwhile.
    assert r.breaker.state is State.CLOSED and r.metrics.circuits == []
    assert r.metrics.retries == ["500", "500"]  # the lone row's retries; the splits are not retries


async def test_a_500_on_every_request_is_an_outage_the_canary_reveals_and_the_batch_is_not_split() -> None:
    backend = Switch(server_error)

    # The first probe 50-100 ms after the breaker opens: the backend heals before it.
    r = rig(backend, max_attempts=2, breaker=BreakerSettings(failure_threshold=1, initial_backoff_s=0.1))
    await r.score([{"id": "canary"}])  # a row the backend scored: asked again when in doubt
    backend.down = True
    task = asyncio.create_task(r.score(rows(4)))
    await until(lambda: r.dispatcher.holding)
    assert r.backend.requests[1:] == [[0, 1, 2, 3], ["canary"]]  # the canary failed too: an outage
    assert r.metrics.circuits == [("open", True)] and r.metrics.retries == ["500"]
    backend.down = False
    outcomes = await task
    assert predictions(outcomes) == [0, 1, 2, 3]  # nothing dead-lettered for the outage, nor split:
    assert r.backend.requests[3:] == [[0, 1, 2, 3]]  # the probe was the whole batch again
    assert r.breaker.state is State.HALF_OPEN


async def test_probes_stay_spaced_while_the_backend_answers_500_to_everything() -> None:
    backend = Switch(server_error)

    r = rig(backend, breaker=BreakerSettings(failure_threshold=1, initial_backoff_s=0.02, max_backoff_s=0.04))
    await r.score([{"id": "canary"}])
    backend.down = True
    task = asyncio.create_task(r.score(rows(4)))
    batch = [0, 1, 2, 3]
    await until(lambda: r.backend.requests.count(batch) >= 4)  # the first request and three probes
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    probes = [at for at, request in zip(r.backend.sent_at, r.backend.requests, strict=True) if request == batch][1:4]
    gaps = [b - a for a, b in pairwise(probes)]
    assert min(gaps) >= 0.01, gaps  # at least half the initial backoff apart (equal jitter)


async def test_requests_failing_together_ask_the_canary_once() -> None:
    down = False

    def answer(batch: Sequence[Mapping[str, Any]]) -> list[ScoredRow]:
        if down and batch[0]["id"] != "ok":
            raise server_error()
        return scored(batch)

    limiter = RecordingLimiter()
    r = rig(answer, max_attempts=1, limiter=limiter)
    await r.score([{"id": "ok"}])
    down = True
    r.backend.gate = gate = asyncio.Event()
    batches = [asyncio.create_task(r.score([{"id": f"b{i}"}])) for i in range(3)]
    await until(lambda: r.backend.in_flight == 3)
    r.backend.gate = None
    gate.set()
    results = await asyncio.gather(*batches)
    assert r.backend.requests.count(["ok"]) == 2  # the first batch, and one canary for three failures
    gave_up = Rejected(STAGE_SCORE, "gave up after 1 attempts: Internal Server Error", 500, 1)
    assert results == [[gave_up]] * 3
    assert r.transitions == []  # the canary answered: the failures were the rows', not the backend's
    assert limiter.acquired == len(r.backend.requests) == 5  # the canary keeps to the rate limit too


# ---- the circuit breaker -------------------------------------------------------------------------

async def test_an_open_breaker_holds_every_request_but_one_probe_and_loses_nothing() -> None:
    backend = Switch(unavailable)

    r = rig(backend, max_attempts=2, breaker=BreakerSettings(
        failure_threshold=1, close_after_successes=2, initial_backoff_s=0.004, max_backoff_s=0.02))
    assert r.dispatcher.has_capacity(0)
    await asyncio.gather(*(r.score(rows(1)) for _ in range(3)))
    assert r.backend.most_in_flight == 3  # closed: everything goes out at once
    r.backend.most_in_flight = 0
    backend.down = True
    first = asyncio.create_task(r.score([{"id": "a"}]))
    await until(lambda: r.dispatcher.holding)
    assert not r.dispatcher.has_capacity(0)
    held = [asyncio.create_task(r.score([{"id": name}])) for name in "bcd"]
    await until(lambda: len(r.backend.requests) >= 8)  # several probes, all failing
    assert r.backend.most_in_flight == 1  # open: one probe at a time, the rest wait
    backend.down = False
    outcomes = [*await first, *[o for task in held for o in await task]]
    assert predictions(outcomes) == ["a", "b", "c", "d"]  # an outage costs latency, not dead letters
    assert r.breaker.state is State.CLOSED
    assert [(t.before, t.after) for t in r.transitions] == [
        (State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.CLOSED)]
    assert r.metrics.circuits == [("open", True), ("half_open", True), ("closed", True)]
    assert set(r.metrics.retries) == {"503"}


async def test_requests_waiting_for_a_slot_when_the_breaker_opens_are_not_sent_but_held() -> None:
    # One slot: "a" is out, "b" and "c" have the closed breaker's permits and wait for the slot. "a"
    # fails and opens the breaker; "b" and "c" must then wait for its leave, not reach a backend that
    # is out the moment the slot frees (with a slow backend that is seconds of requests after opening).
    backend = Switch(unavailable)

    r = rig(backend, max_attempts=2, limit=1, breaker=BreakerSettings(
        failure_threshold=1, close_after_successes=1, initial_backoff_s=0.2, max_backoff_s=0.2))
    r.backend.gate = asyncio.Event()
    tasks = [asyncio.create_task(r.score([{"id": name}])) for name in "abc"]
    await until(lambda: len(r.backend.requests) == 1 and r.backend.slots.waiting == 2)
    backend.down = True
    r.backend.gate.set()
    await until(lambda: r.dispatcher.holding and r.backend.slots.free())
    assert r.backend.requests == [["a"]]  # the two waiting were withdrawn, not sent
    backend.down = False
    outcomes = [o for task in tasks for o in await task]
    assert predictions(outcomes) == ["a", "b", "c"]  # held, then scored: nothing lost


async def test_a_held_outage_does_not_use_up_the_batchs_attempts() -> None:
    # 503, 503 (the breaker opens: held), a failed probe (held), then the probe succeeds: four
    # requests, yet the batch used two of its attempts, the two before the breaker held it.
    r = rig(Script(unavailable(), unavailable(), unavailable()), max_attempts=2, breaker=BreakerSettings(
        failure_threshold=2, initial_backoff_s=0.004, max_backoff_s=0.02))
    outcomes = await r.score(rows(1, **{"0": {"not_predicted": "no model"}}))
    assert outcomes == [Rejected(STAGE_NOT_PREDICTED, "no model", 200, 2)]
    assert len(r.backend.requests) == 4
    assert r.metrics.retries == ["503", "503", "503"]  # every failure but the last attempt is a retry


async def test_with_dead_letter_on_outage_an_open_breaker_lets_requests_run_out_of_attempts() -> None:
    r = rig(Script(*[unavailable()] * 10), max_attempts=3, breaker=BreakerSettings(
        failure_threshold=1, initial_backoff_s=0.004, max_backoff_s=0.02, holds=False))
    outcomes = await r.score(rows(1))
    assert outcomes == [Rejected(STAGE_SCORE, "gave up after 3 attempts: Service Unavailable", 503, 3)]
    assert r.breaker.state is State.OPEN and not r.dispatcher.holding  # tracked, not holding
    assert len(r.backend.requests) == 3 and r.metrics.circuits == [("open", True)]


async def test_a_refused_configuration_opens_the_breaker_and_the_batch_waits_for_a_fix() -> None:
    r = rig(Script(unauthorized(), unauthorized(), unauthorized()), max_attempts=1)
    outcomes = await r.score(rows(2))
    assert predictions(outcomes) == [0, 1]  # kept, not dead-lettered: no data change would help
    assert len(r.backend.requests) == 4
    refusal = r.transitions[0]
    assert refusal.refused and refusal.after is State.OPEN
    assert refusal.reason == "fake refused the request (HTTP 401): invalid API key"
    # Probes every max_backoff_s; a repeated refusal is no new transition.
    gaps = [b - a for a, b in pairwise(r.backend.sent_at)]
    assert all(gap >= 0.02 for gap in gaps), gaps
    assert r.metrics.circuits == [("open", True), ("half_open", True)]
    assert r.metrics.retries == ["fatal"] * 3


async def test_a_refused_configuration_does_not_count_as_an_attempt_on_the_data() -> None:
    r = rig(Script(unauthorized(), unprocessable()), max_attempts=1)
    assert await r.score(rows(1)) == [Rejected(STAGE_SCORE, "row has an unknown category", 422, 1)]


async def test_after_a_refusal_the_batch_still_has_all_its_attempts_for_an_outage() -> None:
    # dead_letter on outage: the 503s run the attempts out; the two 401s before them do not count.
    r = rig(Script(unauthorized(), unauthorized(), *[unavailable()] * 10), max_attempts=2,
            breaker=BreakerSettings(failure_threshold=1, initial_backoff_s=0.004, max_backoff_s=0.02, holds=False))
    outcomes = await r.score(rows(1))
    assert outcomes == [Rejected(STAGE_SCORE, "gave up after 2 attempts: Service Unavailable", 503, 2)]
    assert len(r.backend.requests) == 4
    assert r.metrics.retries == ["fatal", "fatal", "503"]


async def test_a_cancelled_probe_returns_its_permit_so_the_next_request_may_probe() -> None:
    # The probe 50-100 ms after the breaker opens: the test has made it hang by then.
    r = rig(Script(unavailable()), breaker=BreakerSettings(failure_threshold=1, initial_backoff_s=0.1))
    first = asyncio.create_task(r.score(rows(1)))
    await until(lambda: r.dispatcher.holding)
    r.backend.gate = gate = asyncio.Event()  # the probe hangs
    await until(lambda: r.backend.in_flight == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    r.backend.gate = None
    gate.set()
    async with asyncio.timeout(1.0):  # a probe permit never returned would hold it forever
        assert predictions(await r.score([{"id": "next"}])) == ["next"]


async def test_an_outages_retry_after_spaces_the_breakers_probe_too() -> None:
    r = rig(Script(unavailable(retry_after=0.05)), max_retry_after_s=1.0, breaker=BreakerSettings(
        failure_threshold=1, initial_backoff_s=0.004, max_backoff_s=0.02))
    assert predictions(await r.score(rows(1))) == [0]
    [gap] = [b - a for a, b in pairwise(r.backend.sent_at)]
    assert gap >= 0.05  # not the breaker's own 2-4 ms: the vendor asked to be left alone that long


async def test_capacity_means_a_free_slot_a_ready_rate_limiter_and_a_closed_breaker() -> None:
    limiter = RecordingLimiter()
    r = rig(Script(unavailable()), breaker=BreakerSettings(failure_threshold=1, initial_backoff_s=0.1))
    paced = rig(Script(), limiter=limiter)
    limit = r.backend.slots.limit
    assert r.dispatcher.has_capacity(limit - 1) and not r.dispatcher.has_capacity(limit)
    limiter.hold(1.0)  # the recording limiter is not ready once held
    assert not paced.dispatcher.has_capacity(0)
    task = asyncio.create_task(r.score(rows(1)))
    await until(lambda: r.breaker.state is State.OPEN)
    assert not r.dispatcher.has_capacity(0) and r.dispatcher.holding
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
