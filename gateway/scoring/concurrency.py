"""How many scoring requests may be in flight at once: a fixed number, or a limit that adapts.

``AdaptiveLimit`` (``concurrency.max_in_flight_requests: auto``) finds a backend's capacity without
configuration. It is additive-increase/multiplicative-decrease, the rule TCP congestion control is
built on, with a latency gradient in the manner of Netflix's concurrency-limits (``AIMDLimit`` and
``Gradient2Limit``):

- **slow start**: until the first refusal or sign of queueing, the limit grows by one every
  ``patience`` successes while in use, so by about a quarter per round trip (as TCP's slow start
  doubles its window until the first loss): a fast backend is found in tens of requests, not
  thousands.
- **increase**: after that, after ``limit × patience`` successes in a row while the limit was in use (as many
  requests in flight as allowed), the limit grows by one. An idle pipeline does not inflate it.
- **decrease on refusal**: a 429 or 503 (the backend saying it is saturated) steps it down by one
  and marks that level as the ceiling; the limit then tries the ceiling again only after
  ``probe_patience`` times the usual wait, so it lingers just below the level that drew the refusal
  instead of climbing straight back into it (few refusals, little capacity left unused). A probe
  that holds at the ceiling clears it (the backend grew); refusals in a row mean the limit is far
  over capacity and cut it by ``backoff`` (0.75) each.
- **decrease on queueing**: a backend that queues rather than refuses shows it in latency. The
  limit keeps a slowly moving baseline of request latency (an exponential average of the best
  latencies seen) and, when the recent average exceeds ``tolerance ×`` that baseline, it steps down
  by one before the backend starts refusing. Latency grows with the rows a request carries, and
  batches grow with the load, so latencies are compared only between requests of similar size
  (the same power of two of rows).

It does no I/O and has no clock: the dispatcher feeds it one sample per answer. ``RequestSlots``
enforces whatever the current limit is, FIFO, and notices a change at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class AdaptiveLimit:
    minimum: int = 1
    maximum: int = 64
    limit: int = 4
    patience: int = 4
    backoff: float = 0.75
    tolerance: float = 2.0
    probe_patience: int = 16  # how much longer it waits before trying the level that drew a refusal
    _streak: int = 0
    _ceiling: int | None = None  # the lowest limit a refusal came at, until a probe above it holds
    _refusals: int = 0  # refusals since the last increase: more than one means far over capacity
    _cooldown: int = 0  # answers to wait before another step down for latency (one step per episode)
    _slow_start: bool = True  # until the first refusal or sign of queueing
    _overshoot: int = 0  # refusals still expected from the round trip that ended the slow start
    # rows.bit_length() -> [baseline, recent]: the baseline is slow to rise and quick to fall
    _latency: dict[int, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limit = max(self.minimum, min(self.maximum, self.limit))

    def succeeded(self, latency_s: float, in_flight: int, rows: int = 1) -> int:
        """One answered request; ``in_flight`` counts it. Returns the (new) limit."""
        pair = self._observe(latency_s, rows)
        if self._cooldown > 0:
            self._cooldown -= 1
        elif self._queueing(pair):
            self._streak = 0
            self._slow_start = False
            self._cooldown = 2 * self.limit  # let the answers already under way come back first
            self.limit = max(self.minimum, self.limit - 1)
            return self.limit
        if self._slow_start:
            # Three quarters in use counts: the requests a raised limit lets out are not sent yet.
            if 4 * in_flight >= 3 * self.limit:
                self._streak += 1
            if self._streak >= self.patience:
                self._streak = 0
                self.limit = min(self.maximum, self.limit + 1)
            return self.limit
        if in_flight < self.limit:  # not using what it has: no evidence it could use more
            return self.limit
        self._streak += 1
        at_the_ceiling = self._ceiling is not None and self.limit + 1 >= self._ceiling
        if self._ceiling is not None and self.limit >= self._ceiling:
            needed = self.limit * self.patience  # probing above the ceiling: hold it this long to clear it
        else:
            needed = self.limit * self.patience * (self.probe_patience if at_the_ceiling else 1)
        if self._streak >= needed:
            self._streak = 0
            self._refusals = 0
            if self._ceiling is not None and self.limit >= self._ceiling:
                self._ceiling = None  # the level that drew a refusal holds now: capacity grew
            self.limit = min(self.maximum, self.limit + 1)
        return self.limit

    def refused(self) -> int:
        """A 429 or 503: the backend is saturated. The first refusal steps down by one and marks
        the level; refusals in a row mean it is far over capacity and cut the limit by ``backoff``.
        The refusals that end the slow start step by one each: they are the few requests it sent
        past the capacity in its last round trip, not a sign of being far over it."""
        self._streak = 0
        if self._slow_start:
            self._slow_start = False
            self._overshoot = max(1, self.limit // 4)  # it grew by at most a quarter in its last round trip
        self._refusals += 1
        self._ceiling = self.limit if self._ceiling is None else min(self._ceiling, self.limit)
        stepping = self._refusals == 1 or self._overshoot > 0
        self._overshoot = max(0, self._overshoot - 1)
        cut = self.limit - 1 if stepping else int(self.limit * self.backoff)
        self.limit = max(self.minimum, cut)
        return self.limit

    def _observe(self, latency_s: float, rows: int) -> list[float]:
        pair = self._latency.get(rows.bit_length())
        if pair is None:
            pair = self._latency[rows.bit_length()] = [latency_s, latency_s]
            return pair
        baseline, recent = pair
        pair[1] = recent + 0.1 * (latency_s - recent)
        pair[0] = baseline + (0.5 if latency_s < baseline else 0.0005) * (latency_s - baseline)
        return pair

    def _queueing(self, pair: list[float]) -> bool:
        baseline, recent = pair
        return baseline > 0.0 and recent > self.tolerance * baseline and self.limit > self.minimum


class RequestSlots:
    """At most ``limit`` holders at once; the limit may change at any time (waiters are woken FIFO)."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = max(1, value)
        self._wake()

    def free(self) -> bool:
        """Whether a slot is free right now (nobody would wait)."""
        return self.in_flight < self._limit and not self._waiters

    async def acquire(self) -> None:
        if self.in_flight < self._limit and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # woken and cancelled at once: pass the slot on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
