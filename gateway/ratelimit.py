"""Client-side request pacing, so a vendor quota (Qlik real-time: 100 requests/min) is never exceeded.

Requests are spaced evenly at ``60 / per_minute`` seconds rather than allowed to burst: a burst that
the vendor answers with 429 costs a ``Retry-After`` wait far longer than the spacing it saved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = 0.0
        self.interval = 0.0
        self.set_rate(per_minute)

    def set_rate(self, per_minute: float) -> None:
        """A new budget (``backend.rate_limit_scope: group`` after a rebalance); the next request
        already waits for its slot under the new spacing."""
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        # A hair over the exact spacing keeps a sliding 60 s window on the server at the limit.
        interval = 60.0 / per_minute * 1.002
        self._next += interval - self.interval if self._next > self._clock() else 0.0
        self.interval = interval
        self.per_minute = per_minute

    def ready(self) -> bool:
        """Whether a request could start now without waiting for its slot."""
        return self._clock() >= self._next

    def reserve(self) -> float:
        """Claim the next start slot; returns how long the caller must wait for it."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def hold(self, seconds: float) -> None:
        """The vendor said wait (429 + Retry-After): no request starts before then."""
        self._next = max(self._next, self._clock() + seconds)
