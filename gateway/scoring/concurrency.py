"""How many scoring requests may be in flight at once: a fixed number, or a limit that adapts.

``AdaptiveLimit`` (``concurrency.max_in_flight_requests: auto``) finds a backend's capacity without
configuration. It is additive-increase/multiplicative-decrease, the rule TCP congestion control is
built on, with a queueing estimate in the manner of TCP Vegas:

- **slow start**: until the first refusal or sign of queueing, the limit grows by one per success
  while in use, so it doubles per round trip (as TCP's slow start doubles its window until the
  first loss): from 4 to 32 requests in three round trips. A slow start that follows a backend
  that grew (below) grows by one every ``patience`` successes, about a quarter per round trip: a
  backend that only seemed to grow (a probe that held by chance) costs a small overshoot.
- **increase**: after that, after ``limit × patience`` successes in a row while the limit was in
  use (as many requests in flight as allowed), the limit grows by one. An idle pipeline does not
  inflate it.
- **decrease on refusal**: a 429 or 503 (the backend saying it is saturated) steps it down by one
  and marks that level as the ceiling; the limit then tries the ceiling again only after
  ``probe_patience`` times the usual wait, so it stays just below the level that drew the refusal
  (few refusals, no capacity left unused). A probe that holds at the ceiling clears it: the backend
  grew, and the limit starts fast again to follow it. Refusals of requests sent before the last
  decrease are ignored (the limit already came down for them); each refusal at the lowered level
  steps it down by one more, and past ``STEPS`` (3) in a row it is far over capacity and each cuts
  it by ``backoff`` (0.75).
- **decrease on queueing**: a backend that queues rather than refuses shows it in latency: with
  ``limit`` requests at a backend that serves ``n`` at once, each takes ``limit ÷ n`` times its
  unloaded latency. Latency is judged by epochs of answers (at least 16, and a round trip's worth),
  by the epoch's median as a ratio to the unloaded latency: a median is robust to the noise of a busy
  host or network where a mean is not. Two epochs in a row above ``tolerance`` (1.8) mean queueing:
  the limit is cut to ``limit ÷ ratio`` (the level the backend serves at once) and that level is
  marked as a ceiling, as a refusal marks it. The limit grows only while the last epoch's latency
  is within ``growth`` (1.5) of the unloaded one, so it stops before latency doubles (a gateway that
  shares its machine sees latency rise 1.5 times before its throughput stops rising: a tighter bound
  left a third of it unused).
- **the unloaded latency** is kept per request size (the same power of two of rows: latency grows
  with the rows a request carries). It follows a lower epoch median down a little and never drifts up
  on its own (sustained queueing must not become the norm); instead it is measured again every
  ``PROBE_EVERY`` epochs (and soon after the slow start) by one epoch at half the limit, where the
  backend does not queue, about 1 % of the time at half concurrency. A backend that really became
  slower is learnt there, or at once when the limit is down to one request at a time.

It does no I/O and has no clock: the dispatcher feeds it one sample per answer. ``RequestSlots``
enforces whatever the current limit is, FIFO, and notices a change at once.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field

EPOCH_MIN = 16  # answers an epoch needs at least, whatever the limit
PROBE_EVERY = 100  # epochs between two measurements of the unloaded latency
FIRST_PROBE = 3  # epochs after the slow start to the first one
STEPS = 3  # refusals in a row that step the limit down by one; those after cut it by ``backoff``
_FOLLOW = 0.1  # how far down an epoch's lower median moves the unloaded latency (noise must not ratchet it)
_LOG_CAP = 50.0


@dataclass(slots=True)
class Queueing:
    """Latency judged by epochs of answers, as a ratio to the unloaded latency.

    An epoch's median is robust to the noise of a busy network or host where a mean is not. The
    unloaded latency is kept per request size (the same power of two of rows); it follows a lower
    epoch median down a little, and is measured again (``relearn``) from an epoch run at half
    the limit, where the backend does not queue: sustained queueing never becomes the norm, and a
    backend that really became slower is learnt at the next measurement.
    """

    growth: float = 1.5
    ratio: float = 1.0  # the last epoch's median ratio
    _unloaded: dict[int, float] = field(default_factory=dict)  # rows.bit_length() -> log latency
    _medians: dict[int, float] = field(default_factory=dict)  # the last epoch's, per size
    _samples: list[tuple[int, float]] = field(default_factory=list)  # (size, log latency), this epoch
    _skip: int = 0  # answers still to come for requests sent under a higher limit
    _length: int = 0  # answers this epoch takes, fixed by its first (a growing limit must not stretch it)

    @property
    def allows_growth(self) -> bool:
        """Whether the last epoch leaves room to raise the limit (latency has not started to rise)."""
        return self.ratio <= self.growth

    def restart(self, skip: int) -> None:
        """The limit was lowered: ``skip`` answers to requests sent before do not judge the new one."""
        self._skip = skip
        self._samples.clear()

    def relearn(self) -> None:
        """The last epoch ran where the backend does not queue: its latencies are the unloaded ones."""
        self._unloaded.update(self._medians)
        self.ratio = 1.0

    def add(self, latency_s: float, rows: int, epoch: int) -> float | None:
        """One answer; at the end of an epoch, its median ratio to the unloaded latency."""
        if self._skip > 0:
            self._skip -= 1
            return None
        size = rows.bit_length()
        sample = math.log(max(latency_s, 1e-6))
        # A size's first answer is its first estimate: the first of a burst is the one least queued.
        self._unloaded.setdefault(size, sample)
        if not self._samples:
            self._length = epoch
        self._samples.append((size, sample))
        if len(self._samples) < self._length:
            return None
        samples, unloaded = self._samples, self._unloaded
        ratios = sorted(sample - unloaded[size] for size, sample in samples)
        by_size: dict[int, list[float]] = {}
        for size, sample in samples:
            by_size.setdefault(size, []).append(sample)
        self._medians = {size: sorted(found)[len(found) // 2] for size, found in by_size.items()}
        for size, median in self._medians.items():
            unloaded[size] = min(unloaded[size], unloaded[size] + _FOLLOW * (median - unloaded[size]))
        samples.clear()
        self.ratio = math.exp(min(_LOG_CAP, ratios[len(ratios) // 2]))
        return self.ratio


@dataclass(slots=True)
class AdaptiveLimit:
    minimum: int = 1
    maximum: int = 64
    limit: int = 4
    patience: int = 4
    backoff: float = 0.75
    probe_patience: int = 16  # how much longer it waits before trying the level that drew a refusal
    _streak: int = 0
    _ceiling: int | None = None  # the lowest limit a refusal came at, until a probe above it holds
    _refusals: int = 0  # refusals since the last increase: past STEPS, far over capacity
    _slow_start: bool = True  # until the first refusal or sign of queueing
    _doubling: bool = True  # the first slow start doubles per round trip; one that follows growth, a quarter
    tolerance: float = 1.8
    queueing: Queueing = field(default_factory=Queueing)
    _high: int = 0  # epochs in a row whose latency was above tolerance
    _probing: int | None = None  # the limit to go back to after an epoch at half of it
    _to_probe: int = PROBE_EVERY  # epochs until the next measurement of the unloaded latency
    _judged: bool = False  # an epoch has ended at this limit (its latency is known)
    generation: int = 0  # decreases so far: tells a refusal of a request sent before the last one

    def __post_init__(self) -> None:
        self.limit = max(self.minimum, min(self.maximum, self.limit))

    def succeeded(self, latency_s: float, in_flight: int, rows: int = 1) -> int:
        """One answered request; ``in_flight``: the requests in flight as it arrived, its own included
        (at the time it was sent the count would be low for every request of a burst but the last).
        Returns the (new) limit."""
        # An epoch at half the limit only measures: half as many answers do, at half the cost.
        epoch = max(EPOCH_MIN // 2 if self._probing is not None else EPOCH_MIN, self.limit)
        ratio = self.queueing.add(latency_s, rows, epoch)
        if ratio is not None and self._epoch_ended(ratio):
            return self.limit
        if not self.queueing.allows_growth:  # wait for an epoch within bounds; the streak still counts
            return self.limit
        if self._slow_start:
            # Three quarters in use counts: the requests a raised limit lets out are not sent yet.
            if 4 * in_flight >= 3 * self.limit:
                self._streak += 1
            if self._streak >= (1 if self._doubling else self.patience):
                self._set(self.limit + 1)
            return self.limit
        if in_flight < self.limit:  # not using what it has: no evidence it could use more
            return self.limit
        self._streak += 1
        ceiling = self._ceiling
        if ceiling is not None and self.limit >= ceiling:
            needed = self.limit * self.patience  # probing the ceiling: hold it this long to clear it
        elif ceiling is not None and self.limit + 1 >= ceiling:
            needed = self.limit * self.patience * self.probe_patience
        else:
            needed = self.limit * self.patience
        if self._streak >= needed and self._judged:
            self._refusals = 0
            if ceiling is not None and self.limit >= ceiling:
                self._ceiling = None  # the level that drew a refusal holds now: capacity grew
                self._slow_start = True  # follow it fast
            self._set(self.limit + 1)
        return self.limit

    def refused(self, generation: int | None = None) -> int:
        """A 429 or 503: the backend is saturated. ``generation``: :attr:`generation` when the refused
        request was sent. A refusal of a request sent before the last decrease says nothing new (the
        limit already came down for its round trip, as TCP cuts its window once per window of losses):
        it is ignored. Otherwise a refusal steps down by one and marks the level (refusals come back
        at once, so a few steps take a few milliseconds: the slow start's last round trip overshoots
        by a few requests); past ``STEPS`` refusals in a row it is far over capacity, and each cuts
        the limit by ``backoff``."""
        if generation is not None and generation < self.generation:
            return self.limit
        if self._slow_start:
            self._end_slow_start()
        self._refusals += 1
        self._ceiling = self.limit if self._ceiling is None else min(self._ceiling, self.limit)
        self._set(self.limit - 1 if self._refusals <= STEPS else int(self.limit * self.backoff))
        return self.limit

    def _epoch_ended(self, ratio: float) -> bool:
        """Judge an epoch's latency; True when that changed the limit."""
        if self._probing is not None:  # an epoch at half the limit: the unloaded latency
            self.queueing.relearn()
            self._set(self._probing)
            self._probing = None
            return True
        if self.limit <= self.minimum and ratio > self.queueing.growth:
            self.queueing.relearn()  # one request at a time cannot queue: the backend is this slow
            self._high = 0
            return False
        self._high = self._high + 1 if ratio > self.tolerance else 0
        if self._high >= 2:  # two epochs in a row: requests queue; the backend serves about limit ÷ ratio
            self._high = 0
            self._end_slow_start()
            self._ceiling = self.limit if self._ceiling is None else min(self._ceiling, self.limit)
            self._set(min(self.limit - 1, round(self.limit / ratio)))
            return True
        self._to_probe -= 1
        if self._to_probe <= 0 and self.limit > self.minimum and not self._slow_start:
            self._to_probe = PROBE_EVERY
            self._probing = self.limit
            self._set(max(self.minimum, self.limit // 2))
            return True
        self._judged = True
        return False

    def _end_slow_start(self) -> None:
        """The slow start's latencies came from a climbing limit (and its first answers set what
        counts as unloaded): measure the unloaded latency again soon."""
        self._slow_start = self._doubling = False
        self._to_probe = min(self._to_probe, FIRST_PROBE)

    def _set(self, limit: int) -> None:
        """A lower limit starts a new epoch: answers to requests sent under the old one do not
        judge it. (An increase does not: answers at both levels judge the higher one.)"""
        self._streak = 0
        limit = max(self.minimum, min(self.maximum, limit))
        if limit < self.limit:
            self.queueing.restart(self.limit)
            self.generation += 1
        if limit != self.limit:
            self._judged = False
        self.limit = limit


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

    @property
    def waiting(self) -> int:
        """How many wait for a slot."""
        return len(self._waiters)

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
