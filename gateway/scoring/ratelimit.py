"""Client-side request pacing, so a vendor quota (Qlik real-time: 100 requests/min) is never exceeded.

Requests are spaced evenly at ``60 / per_minute`` seconds rather than allowed to burst: a burst that
the vendor answers with 429 costs a ``Retry-After`` wait far longer than the spacing it saved.
Waiting requests queue in arrival order and each takes its start time only when its turn comes, so
a new rate (``rate_limit_scope: group`` after a rebalance) or a vendor's ``Retry-After`` applies to
everything still waiting, and a request abandoned while it waits leaves no gap in the schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = 0.0  # the earliest start of the next request
        self._turn = asyncio.Lock()  # FIFO: the head of the queue waits for ``_next``, the rest for it
        self.interval = 0.0
        self.per_minute = 0.0
        self.set_rate(per_minute)

    def set_rate(self, per_minute: float) -> None:
        """A new budget: the requests still queued take their starts under the new spacing."""
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        # A hair over the exact spacing keeps a sliding 60 s window on the server at the limit.
        interval = 60.0 / per_minute * 1.002
        self._next += interval - self.interval  # the last start plus the new spacing
        self.interval = interval
        self.per_minute = per_minute

    def ready(self) -> bool:
        """Whether a request could start now without waiting for its turn."""
        return self._clock() >= self._next and not self._turn.locked()

    def reserve(self) -> float:
        """Take the next start now; returns how long the caller must wait for it (no queueing:
        for callers that do their own)."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now

    async def acquire(self) -> None:
        """Wait for this request's start time; requests are served in arrival order."""
        async with self._turn:
            while (wait := self._next - self._clock()) > 0:  # noqa: ASYNC110 - a deadline that may move
                await asyncio.sleep(wait)  # ``_next`` may move meanwhile (hold, set_rate): look again
            self._next = self._clock() + self.interval

    def hold(self, seconds: float) -> None:
        """The vendor said wait (429 + Retry-After): no request starts before then."""
        self._next = max(self._next, self._clock() + seconds)
