"""The circuit breaker: whether the backend, not the data, is failing, and what may be sent meanwhile.

States (the ``circuit_state`` gauge: 0, 1, 2):

    CLOSED ──(failure_threshold consecutive outage failures, or failure_ratio of the window)──▶ OPEN
    OPEN ──(the one probe succeeds)──▶ HALF_OPEN ──(close_after_successes successes)──▶ CLOSED
    HALF_OPEN ──(an outage failure)──▶ OPEN           any state ──(a configuration refusal)──▶ OPEN

- **Closed**: everything goes out; each answer is a sample. Only *outage* evidence counts as a
  failure: connect errors, timeouts, dropped connections, 429 and 502/503/504 (``RetryableError``
  reasons). A 2xx or a refusal of the data (400/413/422) is a success: the backend answered.
- **Open**: nothing goes out but one probe at a time, the next one not before ``probe_at``, spaced
  by exponential backoff with jitter (base ``initial_backoff_s``, cap ``max_backoff_s``) and never
  sooner than a ``Retry-After`` the vendor sent (capped by the retry policy). A refusal of the
  configuration (401/403/404/409, TLS) also opens it, probed every ``max_backoff_s``: no data change
  helps, a person must fix the credentials or the URL.
- **Half-open**: the probe succeeded; traffic ramps back, ``1, 2, 4 …`` requests at once, and
  ``close_after_successes`` successes close it. An outage failure re-opens it.

``holds`` = False (``retry.on_backend_outage: dead_letter``) keeps requests going out while it is
open on an outage, so retries run out and records are dead-lettered as they fail; the state is
still tracked and reported. Refusals always hold: they are never the data's fault.

The object does no I/O and reads time only from the ``now`` its callers pass, so every transition
can be tested exhaustively; the dispatcher asks it for a permit before every request, returns the
permit with the answer, and waits when it gets none.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 10
    failure_ratio: float = 0.5
    window_s: float = 30.0
    min_requests: int = 20
    close_after_successes: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    max_in_flight: int = 16
    holds: bool = True


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request; ``probe`` when it is the one request an open breaker lets through."""

    probe: bool


_PROBE = Permit(probe=True)
_REQUEST = Permit(probe=False)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, for the log line and the metrics; ``reason`` says what caused it."""

    before: State
    after: State
    reason: str
    refused: bool = False  # opened by a configuration refusal rather than an outage


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.state = State.CLOSED
        self.reason: str | None = None  # why it is not closed
        self.refused = False  # open because the backend refused the configuration
        self.probe_at = 0.0  # while open: the earliest time the next probe may start
        self.last_success: float | None = None
        self._rng = rng or random.Random()
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()  # (time, failed) of closed-state answers
        self._window_failures = 0
        self._probes = 0  # failed probes since the breaker opened: the backoff exponent
        self._probing = False
        self._half_open_successes = 0
        self._in_flight = 0  # permits out

    # ---- what may go out --------------------------------------------------------------------------

    def admit(self, now: float) -> Permit | None:
        """A permit for one request now, or None (wait and ask again); every permit is returned
        with exactly one of :meth:`succeeded`, :meth:`failed`, :meth:`refused_configuration` or
        :meth:`abandoned`."""
        if self.state is State.OPEN and not self.refused and not self.settings.holds:
            self._in_flight += 1
            return _REQUEST
        if self.state is State.OPEN:
            if self._probing or now < self.probe_at:
                return None
            self._probing = True
            self._in_flight += 1
            return _PROBE
        if self.state is State.HALF_OPEN and self._in_flight >= self._ramp():
            return None
        self._in_flight += 1
        return _REQUEST

    def _ramp(self) -> int:
        """Half-open concurrency: doubles with every success, up to the configured limit."""
        return min(self.settings.max_in_flight, 1 << self._half_open_successes)

    def admits(self, permit: Permit) -> bool:
        """Whether a permit given earlier still lets its request go out: a request that waited for a
        slot while the breaker opened must wait for its leave again, not reach a backend that is out."""
        return permit.probe or not self.holding()

    def holding(self) -> bool:
        """Whether requests are being held back, so consumption should pause."""
        return self.state is State.OPEN and (self.refused or self.settings.holds)

    # ---- the answers ------------------------------------------------------------------------------

    def succeeded(self, now: float, permit: Permit | None) -> Transition | None:
        """The backend answered (2xx, or it refused the data)."""
        self._ended(permit)
        self.last_success = now
        if self.state is State.CLOSED:
            self._consecutive = 0
            self._sample(now, failed=False)
            return None
        if self.state is State.OPEN:
            return self._move(State.HALF_OPEN, "a probe succeeded")
        self._half_open_successes += 1
        if self._half_open_successes >= self.settings.close_after_successes:
            return self._move(State.CLOSED, f"{self._half_open_successes} requests in a row succeeded")
        return None

    def failed(self, now: float, permit: Permit | None, reason: str, retry_after_s: float = 0.0, *,
               probed: bool = False) -> Transition | None:
        """An outage failure: the backend could not answer (or asked to be left alone). ``probed``:
        the failed request was the open breaker's probe, though its permit was already given back."""
        self._ended(permit)
        if self.state is State.OPEN:
            if self.refused:  # it answered, so it is no longer refusing: an outage now
                return self._open(now, reason, retry_after_s, refused=False)
            if probed or (permit is not None and permit.probe):  # others' answers do not move the backoff
                self._schedule_probe(now, retry_after_s)
            return None
        if self.state is State.HALF_OPEN:
            return self._open(now, reason, retry_after_s)
        self._consecutive += 1
        self._sample(now, failed=True)
        if self._tripped():
            return self._open(now, reason, retry_after_s)
        return None

    def refused_configuration(self, now: float, permit: Permit, reason: str) -> Transition | None:
        """401/403/404/409 or TLS verification: open until a probe is answered otherwise."""
        self._ended(permit)
        if self.state is State.OPEN and self.refused and reason == self.reason:
            self.probe_at = now + self.settings.max_backoff_s
            return None
        return self._open(now, reason, 0.0, refused=True)

    def abandoned(self, permit: Permit) -> None:
        """A request ended without an answer worth a sample (cancelled, or an ambiguous error)."""
        self._ended(permit)

    def _ended(self, permit: Permit | None) -> None:
        """``None``: a sample from a request sent without a permit (the dispatcher's canary)."""
        if permit is None:
            return
        self._in_flight -= 1
        if permit.probe:
            self._probing = False

    # ---- bookkeeping ------------------------------------------------------------------------------

    def _sample(self, now: float, *, failed: bool) -> None:
        window = self._window
        window.append((now, failed))
        self._window_failures += failed
        horizon = now - self.settings.window_s
        while window and window[0][0] < horizon:
            _, old = window.popleft()
            self._window_failures -= old

    def _tripped(self) -> bool:
        s = self.settings
        if self._consecutive >= s.failure_threshold:
            return True
        return len(self._window) >= s.min_requests and self._window_failures >= s.failure_ratio * len(self._window)

    def _open(self, now: float, reason: str, retry_after_s: float, *, refused: bool = False) -> Transition:
        if self.state is not State.OPEN:
            self._probes = 0
        self.refused = refused
        transition = self._move(State.OPEN, reason, refused=refused)
        self._schedule_probe(now, retry_after_s)
        return transition

    def _schedule_probe(self, now: float, retry_after_s: float) -> None:
        s = self.settings
        if self.refused:
            delay = s.max_backoff_s
        else:
            ceiling = min(s.max_backoff_s, s.initial_backoff_s * 2 ** self._probes)
            delay = ceiling * self._rng.uniform(0.5, 1.0)  # "equal jitter": spread, never a burst
            self._probes += 1
        self.probe_at = now + max(delay, retry_after_s)

    def _move(self, state: State, reason: str, *, refused: bool = False) -> Transition:
        before = self.state
        self.state = state
        self.reason = None if state is State.CLOSED else reason
        self._consecutive = 0
        self._window.clear()
        self._window_failures = 0
        self._half_open_successes = 0
        if state is not State.OPEN:
            self.refused = False
        return Transition(before, state, reason, refused)
