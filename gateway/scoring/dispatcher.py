"""Scoring a batch: encode, wait for the circuit breaker's leave, send, retry, split, decode.

What happens to a request, by failure class (see ``gateway.backends.errors``):
- success: one ``ScoredRow`` per row; Qlik rows with a ``not_predicted_reason`` become ``Rejected``
  with stage ``not_predicted``.
- ``DataError`` (400/413/422): the batch is bisected until the offending rows stand alone; only
  those are rejected, with the vendor's status and message.
- ``RetryableError`` that says the backend is out (connect errors, timeouts, dropped connections,
  429, 502/503/504): a sample for the circuit breaker (``gateway.scoring.breaker``). While the breaker
  holds requests (it opened: the backend, not the data, is failing), the request waits for its
  leave without spending an attempt, so an outage costs latency, not dead letters. Otherwise it is
  retried with full-jitter backoff (``Retry-After`` honoured up to its cap; a 429 also holds the
  rate limiter) up to ``max_attempts``; then its rows are rejected at stage ``score``: the failure
  was this batch's own while other requests succeeded.
- ``RetryableError`` on this request only (500 and other 5xx, an unreadable 2xx): a row the model
  cannot handle causes these as readily as a sick server, so the dispatcher asks whether the
  backend serves others: did any request succeed while this one was in flight, or does a row that
  scored before (the canary) score now? If so the failure is the data's: a batch is bisected like
  a 422 and a single row is retried, then rejected (status 500), without the breaker hearing of it.
  If not, it is an outage sample like the above.
- ``FatalError`` (401/403/404/409, TLS): not the data's fault. The breaker opens on the refusal
  (consumption paused, not ready) and lets one probe through every ``max_backoff``; no record is
  lost or dead-lettered, and a healed backend is not hit by every waiting request at once.
An encoded body over ``max_bytes`` is split the same way; a single row over it is rejected at
stage ``validate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway.backends.codec import BodyTooLarge, Codec, ScoredRow, ScoringRequest
from gateway.backends.errors import DataError, FatalError, RetryableError, ScoringError
from gateway.json_types import Row
from gateway.runtime.metrics import ScoringMetrics
from gateway.scoring.breaker import CircuitBreaker, Permit, State, Transition
from gateway.scoring.client import BackendClient, Withdrawn
from gateway.scoring.ratelimit import RateLimiter
from gateway.scoring.retry import RetryPolicy
from gateway.stream.records import STAGE_NOT_PREDICTED, STAGE_SCORE, STAGE_VALIDATE, Rejected

if TYPE_CHECKING:
    from gateway.tracing import RequestSpans, RequestTrace

log = logging.getLogger(__name__)

Outcome = ScoredRow | Rejected


class RetriesExhausted(Exception):
    def __init__(self, last: ScoringError, attempts: int) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts


class RejectedByData(Exception):
    def __init__(self, error: DataError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


class FailedOnRows(Exception):
    """A server error on a multi-row request while the backend serves others: split the batch."""


class Dispatcher:
    def __init__(self, *, pipeline: str, codec: Codec, client: BackendClient, features: Sequence[str] | None,
                 policy: RetryPolicy, breaker: CircuitBreaker, limiter: RateLimiter | None,
                 metrics: ScoringMetrics, on_circuit: Callable[[Transition], None],
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.pipeline = pipeline
        self.codec = codec
        self.client = client
        self.features = list(features) if features else None
        self.policy = policy
        self.breaker = breaker
        self.limiter = limiter
        self.metrics = metrics
        self._on_circuit = on_circuit
        self._rng = rng or random.Random()
        self._clock = clock
        self._wakeup: asyncio.Future[None] | None = None  # resolved when a waiting request may try again
        self._canary: Row | None = None  # a row the backend scored: "does it serve at all?"
        self._canary_check: asyncio.Future[bool] | None = None

    def has_capacity(self, scoring: int) -> bool:
        """Whether one more batch would be sent at once, with ``scoring`` batches already out:
        a request slot is free, the rate limiter would not make it wait, the breaker is closed."""
        return (scoring < self.client.slots.limit and self.breaker.state is State.CLOSED
                and (self.limiter is None or self.limiter.ready()))

    @property
    def holding(self) -> bool:
        """Whether the breaker holds requests back (consumption should pause meanwhile)."""
        return self.breaker.holding()

    async def score(self, rows: Sequence[Row], sending: Callable[[], None] | None = None,
                    trace: RequestSpans | None = None) -> tuple[list[Outcome], float]:
        """Score rows; returns one outcome per row in input order and the wall time in ms.
        ``sending`` is called as each request goes out, once it has its slot (a batch not yet sent
        may be abandoned at no cost: no backend did any work for it). ``trace``: the batch is
        traced, each request gets a span."""
        started = time.monotonic()
        outcomes: list[Outcome | None] = [None] * len(rows)
        await self._score_range(rows, 0, len(rows), outcomes, sending, trace)
        return outcomes, (time.monotonic() - started) * 1000.0  # type: ignore[return-value]

    async def _score_range(self, rows: Sequence[Row], lo: int, hi: int, out: list[Outcome | None],
                           sending: Callable[[], None] | None, trace: RequestSpans | None = None) -> None:
        chunk = rows if (lo == 0 and hi == len(rows)) else rows[lo:hi]
        try:
            request = self.codec.encode(self.features, chunk)
        except BodyTooLarge as exc:
            if hi - lo == 1:
                out[lo] = Rejected(STAGE_VALIDATE,
                                   f"encoded row is {exc.size} bytes, over batching.max_bytes {exc.limit}")
                return
            await self._split(rows, lo, hi, out, sending, trace)
            return
        span = None if trace is None else trace.request(lo, hi, backend=self.codec.backend,
                                                        deployment=self.codec.deployment)
        try:
            scored, attempts = await self._send(request, sending, span)
        except RejectedByData as exc:
            if hi - lo == 1:
                out[lo] = Rejected(STAGE_SCORE, exc.error.message, exc.error.status, exc.attempts)
                return
            await self._split(rows, lo, hi, out, sending, trace)
            return
        except FailedOnRows:
            await self._split(rows, lo, hi, out, sending, trace)
            return
        except RetriesExhausted as exc:
            reason = f"gave up after {exc.attempts} attempts: {exc.last.message}"
            for i in range(lo, hi):
                out[i] = Rejected(STAGE_SCORE, reason, exc.last.status, exc.attempts)
            return
        self._canary = chunk[0]
        for i, row in enumerate(scored, lo):
            out[i] = row if row.not_predicted_reason is None else Rejected(
                STAGE_NOT_PREDICTED, row.not_predicted_reason, 200, attempts)

    async def _split(self, rows: Sequence[Row], lo: int, hi: int, out: list[Outcome | None],
                     sending: Callable[[], None] | None, trace: RequestSpans | None = None) -> None:
        mid = (lo + hi) // 2
        async with asyncio.TaskGroup() as group:
            group.create_task(self._score_range(rows, lo, mid, out, sending, trace))
            group.create_task(self._score_range(rows, mid, hi, out, sending, trace))

    # ---- one request to completion ----------------------------------------------------------------

    async def _send(self, request: ScoringRequest, sending: Callable[[], None] | None = None,
                    span: RequestTrace | None = None) -> tuple[list[ScoredRow], int]:
        """Returns the decoded rows and the attempts that counted against ``max_attempts``."""
        if span is None:
            return await self._attempts(request, sending, None)
        try:
            rows, attempts = await self._attempts(request, sending, span)
        except BaseException as exc:
            span.finish(getattr(exc, "attempts", 0), _outcome(exc))
            raise
        span.finish(attempts, "scored")
        return rows, attempts

    async def _attempts(self, request: ScoringRequest, sending: Callable[[], None] | None,
                        span: RequestTrace | None) -> tuple[list[ScoredRow], int]:
        attempt = 0
        while True:
            since = 0 if span is None else span.now()
            permit = await self._admit()
            attempt += 1
            sent_at = self._clock()
            try:
                if span is not None:
                    span.held(since)
                if self.limiter is not None:
                    since = 0 if span is None else span.now()
                    await self.limiter.acquire()
                    if span is not None:
                        span.limited(since)
                rows = await self.client.send(request, None if span is None else span.attempt(attempt),
                                              functools.partial(self._going, permit, sending))
            except Withdrawn:  # the breaker opened while it waited for a slot: it waits for its leave again
                self.breaker.abandoned(permit)
                self._wake()
                attempt -= 1
                continue
            except FatalError as err:
                self._record(self.breaker.refused_configuration(self._clock(), permit, _refusal(err)))
                self.metrics.retry("fatal")
                attempt -= 1  # a configuration outage does not use up the data's attempts
                continue
            except DataError as err:
                self._record(self.breaker.succeeded(self._clock(), permit))  # it answered
                raise RejectedByData(err, attempt) from None
            except RetryableError as err:
                if err.status == 429 and self.limiter is not None:
                    self.limiter.hold(self.policy.retry_after(err.retry_after))
                if await self._failed(permit, err, sent_at, request.rows):
                    self.metrics.retry(err.reason)
                    attempt -= 1  # held: the backend is out, so the attempt was not the batch's
                    continue
                if self.policy.exhausted(attempt):
                    raise RetriesExhausted(err, attempt) from None
                self.metrics.retry(err.reason)
                since = 0 if span is None else span.now()
                await asyncio.sleep(self.policy.delay(attempt, err.retry_after, self._rng))
                if span is not None:
                    span.backed_off(since)
                continue
            except BaseException:
                self.breaker.abandoned(permit)
                self._wake()
                raise
            self._record(self.breaker.succeeded(self._clock(), permit))
            return rows, attempt

    def _going(self, permit: Permit, sending: Callable[[], None] | None) -> bool:
        """Asked when the request has its slot: whether it goes out (the breaker may have opened
        while it waited), and if so the batch learns that a request of it is out."""
        if not self.breaker.admits(permit):
            return False
        if sending is not None:
            sending()
        return True

    async def _failed(self, permit: Permit, err: RetryableError, sent_at: float, rows: int) -> bool:
        """Account for a retryable failure; True when the breaker now holds requests back.

        Raises :class:`FailedOnRows` when a multi-row request failed on the server while the
        backend serves others: the batch must be split, not retried whole."""
        breaker = self.breaker
        retry_after = self.policy.retry_after(err.retry_after)
        if err.outage:
            self._record(breaker.failed(self._clock(), permit, str(err), retry_after))
            return breaker.holding()
        breaker.abandoned(permit)  # no verdict yet; the permit must not wait on the canary
        self._wake()
        if await self._backend_serves(sent_at):
            if rows > 1:
                raise FailedOnRows() from None
            return False
        # The permit went back before the canary; a probe's failure must still space the next probe.
        self._record(breaker.failed(self._clock(), None, str(err), retry_after, probed=permit.probe))
        return breaker.holding()

    async def _backend_serves(self, since: float) -> bool:
        """Whether the backend answers other requests: a success since ``since``, or the canary."""
        last = self.breaker.last_success
        if last is not None and last >= since:
            return True
        canary = self._canary
        if canary is None:  # nothing known to be good yet: the bisection will tell
            return True
        if self._canary_check is not None:
            return await asyncio.shield(self._canary_check)
        check = self._canary_check = asyncio.get_running_loop().create_future()
        healthy = False
        try:
            try:
                if self.limiter is not None:
                    await self.limiter.acquire()
                await self.client.send(self.codec.encode(self.features, [canary]))
            except ScoringError:
                return False
            healthy = True
            self._record(self.breaker.succeeded(self._clock(), None))
            return True
        finally:
            self._canary_check = None
            check.set_result(healthy)

    # ---- waiting for leave ------------------------------------------------------------------------

    async def _admit(self) -> Permit:
        """A permit from the breaker, waiting while it holds requests back."""
        breaker = self.breaker
        while True:
            now = self._clock()
            permit = breaker.admit(now)
            if permit is not None:
                return permit
            wakeup = self._wakeup
            if wakeup is None:
                wakeup = self._wakeup = asyncio.get_running_loop().create_future()
            timeout = max(0.0, breaker.probe_at - now) if breaker.state is State.OPEN else None
            with contextlib.suppress(TimeoutError):  # the probe's time came
                await asyncio.wait_for(asyncio.shield(wakeup), timeout)

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _record(self, transition: Transition | None) -> None:
        """Obey the breaker's answer: report a change, and let waiting requests ask again."""
        if transition is not None:
            changed = transition.before is not transition.after
            if changed or transition.refused:
                _log_transition(self.pipeline, transition)
                self.metrics.circuit(transition.after.label, changed)
                self._on_circuit(transition)
        self._wake()


def _outcome(exc: BaseException) -> str:
    """A request span's outcome when scoring its rows did not succeed."""
    if isinstance(exc, RejectedByData):
        return "data_error"
    if isinstance(exc, FailedOnRows):
        return "split"
    if isinstance(exc, RetriesExhausted):
        return "gave_up"
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"


def _refusal(err: FatalError) -> str:
    return (f"{err.backend} refused the request (HTTP {err.status}): {err.message}" if err.status
            else f"{err.backend}: {err.message}")


def _log_transition(pipeline: str, t: Transition) -> None:
    if t.after is State.OPEN:
        if t.refused:
            log.error("pipeline_halted", extra={"pipeline": pipeline, "reason": t.reason})
        else:
            log.warning("circuit_opened", extra={"pipeline": pipeline, "reason": t.reason})
    elif t.after is State.HALF_OPEN:
        log.warning("circuit_half_open", extra={"pipeline": pipeline, "reason": t.reason})
    else:
        log.warning("circuit_closed", extra={"pipeline": pipeline, "reason": t.reason})

