"""A dispatcher wired to fakes (tests/unit/scoring/fakes.py) for the dispatcher's tests: the real
breaker and retry policy, with backoffs of milliseconds. The breaker reads the monotonic clock, so a
test that waits for a probe waits a few milliseconds of real time."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from gateway.backends.codec import ScoredRow
from gateway.backends.errors import DataError, FatalError, RetryableError, ScoringError
from gateway.scoring.breaker import BreakerSettings, CircuitBreaker, Transition
from gateway.scoring.client import BackendClient
from gateway.scoring.dispatcher import Dispatcher, Outcome
from gateway.scoring.ratelimit import RateLimiter
from gateway.scoring.retry import RetryPolicy
from tests.unit.scoring.fakes import Answer, FakeBackend, FakeCodec, RecordingLimiter, RecordingMetrics, scored

# Breaker backoffs of a few milliseconds: a probe comes soon, but not before the test has looked.
BREAKER = BreakerSettings(failure_threshold=100, failure_ratio=1.0, window_s=60.0, min_requests=1000,
                          close_after_successes=2, initial_backoff_s=0.004, max_backoff_s=0.02, max_in_flight=8)


def unavailable(retry_after: float | None = None) -> RetryableError:
    return RetryableError("fake", "Service Unavailable", 503, reason="503", retry_after=retry_after)


def server_error() -> RetryableError:
    return RetryableError("fake", "Internal Server Error", 500, reason="500", outage=False)


def unprocessable(message: str = "row has an unknown category") -> DataError:
    return DataError("fake", message, 422)


def unauthorized() -> FatalError:
    return FatalError("fake", "invalid API key", 401)


def rows(n: int, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    """``n`` rows with ids 0…n-1; ``extra={"3": {...}}`` adds fields to row 3."""
    return [{"id": i, "x": i * 1.5, **extra.get(str(i), {})} for i in range(n)]


class Switch:
    """A backend that scores every request, or fails each with ``failure()`` while ``down``."""

    def __init__(self, failure: Callable[[], ScoringError]) -> None:
        self.failure = failure
        self.down = False

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> list[ScoredRow]:
        if self.down:
            raise self.failure()
        return scored(batch)


def poisoned(status: int = 422) -> Answer:
    """A backend that refuses every request holding a row with ``bad`` (422, or a 500)."""
    def answer(batch: Sequence[Mapping[str, Any]]) -> list[ScoredRow]:
        bad = [row["id"] for row in batch if row.get("bad")]
        if not bad:
            return scored(batch)
        if status == 500:
            raise server_error()
        raise DataError("fake", f"row {bad[0]}: unknown category", status)
    return answer


@dataclass
class RecordingPolicy(RetryPolicy):
    """The real policy, recording what the dispatcher asks it."""

    asked: list[tuple[int, float | None]] = field(default_factory=list)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        self.asked.append((attempt, retry_after))
        return RetryPolicy.delay(self, attempt, retry_after, rng)


@dataclass
class Rig:
    dispatcher: Dispatcher
    backend: FakeBackend
    metrics: RecordingMetrics
    transitions: list[Transition]
    policy: RecordingPolicy

    @property
    def breaker(self) -> CircuitBreaker:
        return self.dispatcher.breaker

    async def score(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        outcomes, millis = await self.dispatcher.score(batch)
        assert len(outcomes) == len(batch) and millis >= 0.0
        return outcomes


def rig(answer: Answer, *, max_attempts: int = 3, breaker: BreakerSettings = BREAKER, max_bytes: int | None = None,
        limiter: RecordingLimiter | RateLimiter | None = None, max_retry_after_s: float = 60.0,
        limit: int = 16) -> Rig:
    backend = FakeBackend(answer, limit=limit)
    metrics = RecordingMetrics()
    transitions: list[Transition] = []
    policy = RecordingPolicy(max_attempts, 0.0, 0.0, max_retry_after_s)  # no backoff unless a Retry-After says so
    dispatcher = Dispatcher(
        pipeline="churn", codec=FakeCodec(max_bytes), client=cast(BackendClient, backend), features=None,
        policy=policy, breaker=CircuitBreaker(breaker, random.Random(7)), limiter=cast(RateLimiter, limiter),
        metrics=metrics, on_circuit=transitions.append, rng=random.Random(7))
    return Rig(dispatcher, backend, metrics, transitions, policy)


def predictions(outcomes: Sequence[Outcome]) -> list[Any]:
    return [o.prediction if isinstance(o, ScoredRow) else o for o in outcomes]
