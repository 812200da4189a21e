import itertools
import random

from gateway.scoring.ratelimit import RateLimiter
from gateway.scoring.retry import RetryPolicy


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limiter_spaces_requests_evenly():
    clock = Clock()
    limiter = RateLimiter(120, clock=clock)  # one every ~0.5 s
    waits = [limiter.reserve() for _ in range(5)]
    assert waits[0] == 0
    assert all(abs(w - i * limiter.interval) < 1e-9 for i, w in enumerate(waits))
    assert 0.5 <= limiter.interval < 0.502


def test_rate_limiter_never_exceeds_the_budget_in_any_minute():
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    starts = []
    for _ in range(350):
        starts.append(clock.now + limiter.reserve())
    for i, s in enumerate(starts):
        in_window = [t for t in starts[i:] if t < s + 60.0]
        assert len(in_window) <= 100


def test_hold_delays_the_next_start():
    clock = Clock()
    limiter = RateLimiter(6000, clock=clock)
    limiter.hold(13.0)
    assert abs(limiter.reserve() - 13.0) < 1e-9


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    policy = RetryPolicy(max_attempts=6, initial_backoff_s=0.1, max_backoff_s=1.0, max_retry_after_s=5)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        draws = [policy.delay(attempt, None, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # really spread over the range
    assert policy.delay(1, 3.0, rng) == 3.0
    assert policy.delay(1, 120.0, rng) == 5  # Retry-After capped
    assert policy.exhausted(6) and not policy.exhausted(5)



async def test_waiting_requests_take_a_new_rate_at_once(monkeypatch):
    """With a queue of waiting requests, a rate change applies to the next start (a group budget
    re-shared after a rebalance), not only to requests that arrive later."""
    import asyncio

    import gateway.scoring.ratelimit

    clock = Clock()
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:  # time passes only when someone waits for it
        clock.now += seconds
        await real_sleep(0)

    monkeypatch.setattr(gateway.scoring.ratelimit.asyncio, "sleep", sleep)
    limiter = RateLimiter(600, clock=clock)  # 10/s
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(clock.now)

    tasks = [asyncio.create_task(one()) for _ in range(6)]
    while len(starts) < 2:
        await real_sleep(0)
    limiter.set_rate(6000)  # 100/s: the four still waiting go ten times faster
    await asyncio.gather(*tasks)
    gaps = [round(b - a, 4) for a, b in itertools.pairwise(starts)]
    assert gaps[0] == round(limiter.interval * 10, 4) and gaps[2:] == [round(limiter.interval, 4)] * 3
