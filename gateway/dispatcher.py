"""Scoring a batch: encode, send with bounded concurrency and pacing, retry, split, decode.

What happens to a batch, by failure class (see ``gateway.backends.errors``):
- success: one ``ScoredRow`` per row; Qlik rows with a ``not_predicted_reason`` become ``Rejected``
  with stage ``not_predicted``;
- ``RetryableError``: backoff with full jitter (``Retry-After`` honoured up to its cap; a 429 also
  holds the rate limiter), up to ``max_attempts``; then every row is rejected at stage ``score``;
- ``DataError`` (400/413/422): the batch is bisected until the offending rows stand alone; only
  those are rejected, with the vendor's status and message;
- ``FatalError`` (401/403/404/409, TLS): not the data's fault. The pipeline is halted (consumption
  paused, not ready); one request probes every ``max_backoff`` while the others wait, until the
  backend answers otherwise, so no record is lost or dead-lettered and a healed backend is not
  hit by every halted request at once.
A vendor's error text travels on (dead-letter reasons, ``/readyz``, logs), so the credentials this
dispatcher sends are masked in it first: some APIs quote the token or key they refused.
An encoded body over ``max_bytes`` is split the same way; a single row over it is rejected at
stage ``validate``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from gateway.backends.errors import (
    DataError,
    FatalError,
    ResponseDecodeError,
    RetryableError,
    ScoringError,
    from_exception,
    from_status,
)
from gateway.backends.factory import make_ssl_context
from gateway.backends.scoring import BodyTooLarge, Codec, ScoredRow, ScoringRequest
from gateway.logs import Redactor
from gateway.ratelimit import RateLimiter
from gateway.records import STAGE_NOT_PREDICTED, STAGE_SCORE, STAGE_VALIDATE, Rejected
from gateway.retry import RetryPolicy

log = logging.getLogger("gateway.dispatcher")

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


class Dispatcher:
    def __init__(self, *, pipeline: str, codec: Codec, session: aiohttp.ClientSession,
                 features: Sequence[str] | None, policy: RetryPolicy, max_in_flight_requests: int,
                 limiter: RateLimiter | None, metrics: Any, slow_threshold_s: float,
                 on_halt: Callable[[str | None], None], health: Any = None,
                 rng: random.Random | None = None, secrets: Sequence[str | None] = ()) -> None:
        self.pipeline = pipeline
        self.codec = codec
        self.session = session
        self.features = list(features) if features else None
        self.policy = policy
        self.limiter = limiter
        self.metrics = metrics
        self.slow_threshold_s = slow_threshold_s
        self._on_halt = on_halt
        self._health = health
        self._backend_ok = True
        self._rng = rng or random.Random()
        self._redactor = _credentials_redactor(codec, secrets)
        self._slots = asyncio.Semaphore(max_in_flight_requests)
        self._in_flight = 0
        self.halted: str | None = None
        self._accepting = asyncio.Event()  # clear while halted on a configuration refusal
        self._accepting.set()
        self._probing = False
        # The explanation kind a request asks for is known up front except for "auto" (the
        # deployment's default), which the first response reveals.
        requested = codec.explanations
        self._kind = "none" if not requested else ("shap" if requested == "auto" else requested)

    async def score(self, rows: list[dict[str, Any]]) -> tuple[list[Outcome], float]:
        """Score rows; returns one outcome per row in input order and the wall time in ms."""
        started = time.monotonic()
        outcomes: list[Outcome | None] = [None] * len(rows)
        await self._score_range(rows, 0, len(rows), outcomes)
        return outcomes, (time.monotonic() - started) * 1000.0  # type: ignore[return-value]

    async def _score_range(self, rows: list[dict[str, Any]], lo: int, hi: int,
                           out: list[Outcome | None]) -> None:
        chunk = rows if (lo == 0 and hi == len(rows)) else rows[lo:hi]
        try:
            request = self.codec.encode(self.features, chunk)
        except BodyTooLarge as exc:
            if hi - lo == 1:
                out[lo] = Rejected(STAGE_VALIDATE,
                                   f"encoded row is {exc.size} bytes, over batching.max_bytes {exc.limit}")
                return
            await self._split(rows, lo, hi, out)
            return
        try:
            scored, attempts = await self._send(request)
        except RejectedByData as exc:
            if hi - lo == 1:
                out[lo] = Rejected(STAGE_SCORE, exc.error.message, exc.error.status, exc.attempts)
                return
            await self._split(rows, lo, hi, out)
            return
        except RetriesExhausted as exc:
            reason = f"gave up after {exc.attempts} attempts: {exc.last.message}"
            for i in range(lo, hi):
                out[i] = Rejected(STAGE_SCORE, reason, exc.last.status, exc.attempts)
            return
        for i, row in enumerate(scored, lo):
            out[i] = row if row.not_predicted_reason is None else Rejected(
                STAGE_NOT_PREDICTED, row.not_predicted_reason, 200, attempts)

    async def _split(self, rows: list[dict[str, Any]], lo: int, hi: int,
                     out: list[Outcome | None]) -> None:
        mid = (lo + hi) // 2
        async with asyncio.TaskGroup() as group:
            group.create_task(self._score_range(rows, lo, mid, out))
            group.create_task(self._score_range(rows, mid, hi, out))

    async def _send(self, request: ScoringRequest) -> tuple[list[ScoredRow], int]:
        """One request to completion: returns decoded rows and the attempts it took."""
        attempt = 0
        while True:
            attempt += 1
            try:
                rows = await self._attempt(request)
            except FatalError as err:
                self._halt(err)
                self.metrics.retry("fatal")
                attempt -= 1  # a configuration outage does not use up the data's attempts
                await self._wait_out_halt()
                continue
            except DataError as err:
                self._resume_if_halted()
                raise RejectedByData(err, attempt) from None
            except RetryableError as err:
                self._resume_if_halted()
                if err.reason in ("connect", "timeout") and self._backend_ok:
                    self._set_backend(False, err.message)
                if self.policy.exhausted(attempt):
                    raise RetriesExhausted(err, attempt) from None
                delay = self.policy.delay(attempt, err.retry_after, self._rng)
                if err.status == 429 and self.limiter is not None:
                    self.limiter.hold(delay)
                self.metrics.retry(err.reason)
                await asyncio.sleep(delay)
                continue
            self._resume_if_halted()
            if not self._backend_ok:
                self._set_backend(True, None)
            return rows, attempt

    async def _attempt(self, request: ScoringRequest) -> list[ScoredRow]:
        if self.limiter is not None:
            await self.limiter.acquire()
        backend = self.codec.backend
        async with self._slots:
            self._in_flight += 1
            self.metrics.inflight_requests(self._in_flight)
            started = time.monotonic()
            try:
                async with self.session.request(request.method, request.url, data=request.body,
                                                headers=request.headers) as response:
                    body = await response.read()
                    status = response.status
                    content_type = response.headers.get("Content-Type", "")
                    headers = response.headers
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = self._masked(from_exception(backend, exc))
                self.metrics.request(backend, self._kind, getattr(error, "reason", "fatal"),
                                     time.monotonic() - started)
                raise error from None
            finally:
                self._in_flight -= 1
                self.metrics.inflight_requests(self._in_flight)
        seconds = time.monotonic() - started
        if not 200 <= status < 300:
            self.metrics.request(backend, self._kind, str(status), seconds)
            raise self._masked(from_status(backend, status, headers, body))
        try:
            rows = self.codec.decode(request, status, content_type, body)
        except ResponseDecodeError as exc:
            self.metrics.request(backend, self._kind, str(status), seconds)
            raise self._masked(RetryableError(backend, exc.message, status, reason="decode")) from None
        if request.explanations and rows:
            self._observe_explanations(rows, request, seconds)
        self.metrics.request(backend, self._kind, str(status), seconds)
        return rows

    def _masked(self, error: ScoringError) -> ScoringError:
        """``error`` with the credentials sent masked in its message (it was just made: no one else holds it)."""
        masked = self._redactor.text(error.message)
        if masked != error.message:
            error.message = masked
            error.args = tuple(self._redactor.text(a) if isinstance(a, str) else a for a in error.args)
        return error

    def _observe_explanations(self, rows: list[ScoredRow], request: ScoringRequest,
                              seconds: float) -> None:
        kind = next((r.explanation_kind for r in rows if r.explanation_kind), None)
        if kind is not None:
            self._kind = kind
        if seconds <= self.slow_threshold_s:
            return
        self.metrics.slow_explanation(self._kind)
        if self._kind == "xemp":
            log.warning("slow_xemp_call", extra={
                "pipeline": self.pipeline, "deployment": self.codec.deployment,
                "rows": request.rows, "duration_ms": round(seconds * 1000.0, 1),
                "threshold_ms": round(self.slow_threshold_s * 1000.0, 1)})

    async def _wait_out_halt(self) -> None:
        """One request probes the backend every ``max_backoff`` for the whole pipeline; the other
        halted requests wait for its answer instead of each probing (no storm when it heals)."""
        if self._probing:
            await self._accepting.wait()
            return
        self._probing = True
        try:
            await asyncio.sleep(self.policy.max_backoff_s)
        finally:
            self._probing = False

    def _set_backend(self, ok: bool, reason: str | None) -> None:
        self._backend_ok = ok
        if self._health is not None:
            self._health.set_backend_ok(self.pipeline, ok, reason)

    def _halt(self, err: FatalError) -> None:
        reason = f"{err.backend} refused the request (HTTP {err.status}): {err.message}" \
            if err.status else f"{err.backend}: {err.message}"
        if self.halted != reason:
            log.error("pipeline_halted", extra={"pipeline": self.pipeline, "reason": reason})
        self.halted = reason
        self._accepting.clear()
        self._on_halt(reason)

    def _resume_if_halted(self) -> None:
        """Any answer but a configuration refusal ends a halt. Waiting for a success instead could
        wait forever: once the halted batches end otherwise (retries run out on 503s, a 422), the
        consumer stays paused, nothing is in flight, and no request is left to succeed."""
        if self.halted is None:
            return
        log.warning("pipeline_resumed", extra={"pipeline": self.pipeline})
        self.halted = None
        self._accepting.set()
        self._on_halt(None)


def _credentials_redactor(codec: Codec, secrets: Sequence[str | None]) -> Redactor:
    """Masks the configured secrets and the credential headers the codec sends."""
    headers = getattr(codec, "headers", None) or {}
    return Redactor([s for s in (*secrets, headers.get("Authorization"), headers.get("DataRobot-Key")) if s])


def scoring_session(pipeline: Any) -> aiohttp.ClientSession:
    """The HTTP session for one pipeline's backend: pooled up to the request concurrency, the
    backend's CA trusted, one timeout per request."""
    connector = aiohttp.TCPConnector(limit=pipeline.concurrency.max_in_flight_requests,
                                     ssl=make_ssl_context(pipeline.backend.ca_file) or True)
    timeout = aiohttp.ClientTimeout(total=pipeline.retry.request_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def make_dispatcher(pipeline: Any, codec: Codec, session: aiohttp.ClientSession, *, metrics: Any,
                    health: Any, on_halt: Callable[[str | None], None]) -> Dispatcher:
    """A dispatcher configured from one pipeline's settings (streaming and batch scoring share it)."""
    retry = pipeline.retry
    limit = pipeline.backend.rate_limit_per_minute
    return Dispatcher(
        pipeline=pipeline.name, codec=codec, session=session, features=pipeline.features,
        policy=RetryPolicy(retry.max_attempts, retry.initial_backoff_ms / 1000.0,
                           retry.max_backoff_ms / 1000.0, retry.max_retry_after_s),
        max_in_flight_requests=pipeline.concurrency.max_in_flight_requests,
        limiter=RateLimiter(limit) if limit else None, metrics=metrics,
        slow_threshold_s=pipeline.explanations.slow_threshold_ms / 1000.0,
        on_halt=on_halt, health=health, rng=random.Random(),
        secrets=(pipeline.backend.token, getattr(pipeline.backend, "datarobot_key", None)))
