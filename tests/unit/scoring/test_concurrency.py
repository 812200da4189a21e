"""The adaptive concurrency limit against modelled backends, and the slots that enforce a limit."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.scoring.concurrency import AdaptiveLimit, RequestSlots


def rounds_against(limit: AdaptiveLimit, capacity: int, rounds: int, latency_s: float = 0.05,
                   seed: int = 1) -> tuple[int, int, list[int]]:
    """A backend that answers ``capacity`` requests at once and refuses the rest (429), one round
    per round trip; returns (answered, refused, the limit at each round)."""
    rng = random.Random(seed)
    answered = refused = 0
    trace = []
    for _ in range(rounds):
        out, generation = limit.limit, limit.generation
        trace.append(out)
        answers = ["ok"] * min(out, capacity) + ["refused"] * max(0, out - capacity)
        rng.shuffle(answers)
        for answer in answers:
            if answer == "ok":
                limit.succeeded(latency_s, out, 25)
                answered += 1
            else:
                limit.refused(generation)
                refused += 1
    return answered, refused, trace


@pytest.mark.parametrize("capacity", [1, 4, 16, 40])
def test_it_finds_a_capacity_it_was_not_told_and_rarely_exceeds_it(capacity: int) -> None:
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=4)
    rounds_against(limit, capacity, 300)  # find it
    answered, refused, _ = rounds_against(limit, capacity, 1000)
    assert answered >= 0.9 * capacity * 1000  # uses the capacity
    assert refused <= 0.02 * (answered + refused)  # and is rarely refused


def test_it_follows_a_capacity_that_grows_and_one_that_shrinks() -> None:
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=4)
    rounds_against(limit, 4, 400)
    _, _, trace = rounds_against(limit, 16, 400)
    assert next(i for i, value in enumerate(trace) if value >= 15) < 200  # 200 round trips: seconds
    _, _, trace = rounds_against(limit, 3, 100)
    assert sum(value > 4 for value in trace[20:]) <= 2  # a probe above it, refused and withdrawn


def test_it_starts_fast_until_the_first_refusal() -> None:
    """From 4 to a capacity of 32 in a few dozen round trips (at +1 per limit × patience answers
    it would take over a hundred), then it stays at the capacity."""
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=4)
    _, _, trace = rounds_against(limit, 32, 60)
    assert next(i for i, value in enumerate(trace) if value >= 30) < 20
    _, refused, trace = rounds_against(limit, 32, 200)
    settled = sorted(trace[50:])
    # at the capacity but for the epoch at half the limit that measures the unloaded latency again
    assert settled[len(settled) // 20] >= 28 and max(trace) <= 33 and refused <= 0.02 * 32 * 200


def test_an_idle_pipeline_does_not_inflate_it() -> None:
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=4)
    for _ in range(10_000):
        limit.succeeded(0.05, 1, 25)  # one request at a time: the limit is never in use
    assert limit.limit == 4


def test_it_steps_down_before_a_queueing_backend_refuses() -> None:
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=20)
    for _ in range(200):
        limit.succeeded(0.05, limit.limit, 25)
    before = limit.limit
    for _ in range(200):  # the backend queues: latency triples, nobody refuses yet
        limit.succeeded(0.15, limit.limit, 25)
    assert limit.limit < before


def test_latencies_of_different_sizes_are_not_compared() -> None:
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=10)
    for _ in range(100):
        limit.succeeded(0.005, 10, 1)  # small requests are fast
    for _ in range(100):
        limit.succeeded(0.05, 10, 500)  # big ones are slower: no queueing
    assert limit.limit >= 10


def test_refusals_in_a_row_cut_harder() -> None:
    limit = AdaptiveLimit(minimum=1, maximum=64, limit=40)
    sent = limit.generation
    assert limit.refused(sent) == 39  # one refusal: one step
    for _ in range(20):  # the rest of that round trip, sent at 40: the limit already came down for them
        assert limit.refused(sent) == 39
    assert [limit.refused(limit.generation) for _ in range(2)] == [38, 37]  # refused at the lowered level: a step each
    assert limit.refused(limit.generation) == 27  # more: far over capacity, cut by a quarter
    assert limit.refused(limit.generation) == 20


async def test_slots_enforce_a_limit_that_changes_fifo() -> None:
    slots = RequestSlots(2)
    await slots.acquire()
    await slots.acquire()
    order: list[int] = []

    async def holder(i: int) -> None:
        await slots.acquire()
        order.append(i)

    waiting = [asyncio.create_task(holder(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert order == [] and not slots.free()
    slots.limit = 4  # raised: two more get in at once, in arrival order
    await asyncio.sleep(0)
    assert order == [0, 1]
    slots.limit = 1  # lowered: nobody else gets in until in-flight falls below it
    for _ in range(3):
        slots.release()
    await asyncio.sleep(0)
    assert order == [0, 1] and slots.in_flight == 1
    slots.release()
    await asyncio.sleep(0)
    assert order == [0, 1, 2]
    await asyncio.gather(*waiting)


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    slots = RequestSlots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    first.cancel()
    slots.release()
    await asyncio.sleep(0)
    await second
    assert slots.in_flight == 1
    with pytest.raises(asyncio.CancelledError):
        await first
