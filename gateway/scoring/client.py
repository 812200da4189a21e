"""One HTTP request to the scoring API: send an encoded body, read the answer, decode it or say why not.

The client bounds how many requests are in flight (``max_in_flight_requests`` slots over one pooled
session, or a limit that adapts to the backend: :mod:`gateway.scoring.concurrency`), records every call in
``request_duration_seconds``, flags slow explanation calls, and
turns every failure into the failure tree of :mod:`gateway.backends.errors`. It does not retry and
does not decide anything: that is the dispatcher's job. A vendor's error text travels on (dead-letter
reasons, ``/readyz``, logs), so the credentials this client sends are masked in it first: some APIs
quote the token or key they refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import aiohttp

from gateway.backends.codec import Codec, ScoredRow, ScoringRequest
from gateway.backends.errors import ResponseDecodeError, RetryableError, ScoringError, from_exception, from_status
from gateway.runtime.metrics import ScoringMetrics
from gateway.runtime.redaction import Redactor
from gateway.scoring.concurrency import AdaptiveLimit, RequestSlots

if TYPE_CHECKING:
    from gateway.tracing import AttemptTrace

log = logging.getLogger(__name__)


class Withdrawn(Exception):
    """The request was not sent: when a slot came free, its caller no longer wanted it sent."""


class BackendClient:
    def __init__(self, *, pipeline: str, codec: Codec, session: aiohttp.ClientSession, max_in_flight_requests: int,
                 metrics: ScoringMetrics, slow_threshold_s: float, secrets: Sequence[str | None] = (),
                 adaptive: AdaptiveLimit | None = None, report_limit: bool = True) -> None:
        self.pipeline = pipeline
        self.codec = codec
        self.session = session
        self.metrics = metrics
        self.slow_threshold_s = slow_threshold_s
        self._redactor = _credentials_redactor(codec, secrets)
        self.adaptive = adaptive
        self.slots = RequestSlots(adaptive.limit if adaptive is not None else max_in_flight_requests)
        if report_limit:  # the prediction lane's limit is the pipeline's
            metrics.concurrency_limit(self.slots.limit)
        # The explanation kind a request asks for is known up front except for "auto" (the
        # deployment's default), which the first response reveals.
        requested = codec.explanations
        self._kind = "none" if not requested else ("shap" if requested == "auto" else requested)

    async def send(self, request: ScoringRequest, trace: AttemptTrace | None = None,
                   wanted: Callable[[], bool] | None = None) -> list[ScoredRow]:
        """The decoded rows of a 2xx answer; raises a :class:`ScoringError` otherwise. ``trace``: this
        attempt is traced (its spans, and its ``traceparent`` on the request). ``wanted`` is asked once
        a slot is free, which may be seconds later: False raises :class:`Withdrawn`, nothing sent."""
        backend, slots = self.codec.backend, self.slots
        await slots.acquire()
        if wanted is not None and not wanted():
            slots.release()
            raise Withdrawn
        generation = 0 if self.adaptive is None else self.adaptive.generation
        self.metrics.requests_in_flight(1)
        headers = request.headers if trace is None else trace.sending(request.headers)
        trace_id = None if trace is None else trace.trace_id
        started = time.monotonic()
        try:
            async with self.session.request(request.method, request.url, data=request.body,
                                            headers=headers) as response:
                body = await response.read()
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                answer = response.headers
            seconds = time.monotonic() - started
            # Before the slot is released: a refusal lowers the limit before the next waiter gets in.
            self._adapt(status, seconds, slots.in_flight, request.rows, generation)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = self.masked(from_exception(backend, exc))
            reason = getattr(error, "reason", "fatal")
            self.metrics.request(backend, self._kind, reason, time.monotonic() - started, trace_id)
            if trace is not None:
                trace.failed(reason)
            raise error from None
        finally:
            slots.release()
            self.metrics.requests_in_flight(-1)
        if not 200 <= status < 300:
            self.metrics.request(backend, self._kind, str(status), seconds, trace_id)
            if trace is not None:
                trace.failed(str(status), status)
            raise self.masked(from_status(backend, status, answer, body))
        decoding = 0 if trace is None else trace.now()
        try:
            rows = self.codec.decode(request, status, content_type, body)
        except ResponseDecodeError as exc:
            self.metrics.request(backend, self._kind, str(status), seconds, trace_id)
            if trace is not None:
                trace.failed("decode", status)
            raise self.masked(RetryableError(backend, exc.message, status, reason="decode", outage=False)) from None
        if request.explanations and rows:
            self._observe_explanations(rows, request, seconds, trace)
        self.metrics.request(backend, self._kind, str(status), seconds, trace_id)
        if trace is not None:
            trace.decoded(decoding)
            trace.answered(status)
        return rows

    def _adapt(self, status: int, seconds: float, in_flight: int, rows: int, generation: int) -> None:
        """Feed the adaptive limit: a 2xx or a refusal of the data is a latency sample; 429/503 a refusal
        (``generation``: the limit's when the request was sent)."""
        adaptive = self.adaptive
        if adaptive is None:
            return
        if status in (429, 503):
            limit = adaptive.refused(generation)
        elif status < 500:
            limit = adaptive.succeeded(seconds, in_flight, rows)
        else:
            return
        if limit != self.slots.limit:
            self.slots.limit = limit
            self.metrics.concurrency_limit(limit)

    def masked(self, error: ScoringError) -> ScoringError:
        """``error`` with the credentials sent masked in its message (it was just made: no one else holds it)."""
        masked = self._redactor.text(error.message)
        if masked != error.message:
            error.message = masked
            error.args = tuple(self._redactor.text(a) if isinstance(a, str) else a for a in error.args)
        return error

    def _observe_explanations(self, rows: list[ScoredRow], request: ScoringRequest, seconds: float,
                              trace: AttemptTrace | None) -> None:
        kind = next((r.explanation_kind for r in rows if r.explanation_kind), None)
        if kind is not None:
            self._kind = kind
        if seconds <= self.slow_threshold_s:
            return
        self.metrics.slow_explanation(self._kind)
        if trace is not None:
            trace.slow(self._kind, seconds, self.slow_threshold_s)
        if self._kind == "xemp":
            log.warning("slow_xemp_call", extra={
                "pipeline": self.pipeline, "deployment": self.codec.deployment,
                "rows": request.rows, "duration_ms": round(seconds * 1000.0, 1),
                "threshold_ms": round(self.slow_threshold_s * 1000.0, 1)})


def _credentials_redactor(codec: Codec, secrets: Sequence[str | None]) -> Redactor:
    """Masks the configured secrets and the credential headers the codec sends."""
    headers = codec.headers
    return Redactor([s for s in (*secrets, headers.get("Authorization"), headers.get("DataRobot-Key")) if s])
