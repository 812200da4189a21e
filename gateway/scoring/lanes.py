"""A pipeline's scoring lanes, built from its settings: the prediction lane, and with
``explanations.mode: deferred`` the explanation lane beside it.

Both lanes talk to one deployment, so they share one HTTP session, one circuit breaker (an outage is
the backend's, whichever lane sees it) and one rate limiter (the vendor's quota is per deployment).
Each has its own request slots: the prediction lane's may adapt (``max_in_flight_requests: auto``),
the explanation lane's are ``explanations.max_in_flight_requests``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from gateway.backends.codec import Codec
from gateway.backends.factory import make_codec, make_ssl_context
from gateway.config import PipelineConfig
from gateway.runtime.metrics import ScoringMetrics
from gateway.scoring.breaker import BreakerSettings, CircuitBreaker, Transition
from gateway.scoring.client import BackendClient
from gateway.scoring.concurrency import AdaptiveLimit
from gateway.scoring.dispatcher import Dispatcher
from gateway.scoring.explainer import ExplanationLane
from gateway.scoring.ratelimit import RateLimiter
from gateway.scoring.retry import RetryPolicy


def request_limit(pipeline: PipelineConfig) -> int:
    """The most requests the prediction lane may ever have in flight (the adaptive limit's ceiling)."""
    wanted = pipeline.concurrency.max_in_flight_requests
    return pipeline.concurrency.max_in_flight_requests_limit if wanted == "auto" else int(wanted)


def deferred(pipeline: PipelineConfig) -> bool:
    return pipeline.explanations.mode == "deferred"


def scoring_session(pipeline: PipelineConfig) -> aiohttp.ClientSession:
    """The HTTP session for one pipeline's backend: pooled up to every lane's concurrency, the
    backend's CA trusted, one timeout per request."""
    pool = request_limit(pipeline) + (pipeline.explanations.max_in_flight_requests if deferred(pipeline) else 0)
    connector = aiohttp.TCPConnector(limit=pool, ssl=make_ssl_context(pipeline.backend.ca_file) or True)
    timeout = aiohttp.ClientTimeout(total=pipeline.retry.request_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Lanes:
    predict: Dispatcher
    explain: ExplanationLane | None  # None: explanations come inline with the predictions


def make_lanes(pipeline: PipelineConfig, session: aiohttp.ClientSession, *, metrics: ScoringMetrics,
               on_circuit: Callable[[Transition], None]) -> Lanes:
    codec = make_codec(pipeline, explain=not deferred(pipeline))
    predict = make_dispatcher(pipeline, codec, session, metrics=metrics, on_circuit=on_circuit)
    if not deferred(pipeline):
        return Lanes(predict, None)
    explanations = pipeline.explanations
    explain = make_dispatcher(pipeline, make_codec(pipeline), session, metrics=metrics, on_circuit=on_circuit,
                              share=predict, max_in_flight_requests=explanations.max_in_flight_requests)
    return Lanes(predict, ExplanationLane(explain, max_rows=explanations.max_rows,
                                          sample_rate=explanations.sample_rate))


def make_dispatcher(pipeline: PipelineConfig, codec: Codec, session: aiohttp.ClientSession, *,
                    metrics: ScoringMetrics, on_circuit: Callable[[Transition], None],
                    share: Dispatcher | None = None, max_in_flight_requests: int | None = None) -> Dispatcher:
    """A dispatcher configured from one pipeline's settings (streaming and batch scoring share it).

    ``share``: another lane of the same deployment, whose breaker and rate limiter this one uses;
    ``max_in_flight_requests``: a fixed concurrency instead of the pipeline's."""
    retry, backend = pipeline.retry, pipeline.backend
    most = request_limit(pipeline)
    adaptive = None
    if max_in_flight_requests is None and pipeline.concurrency.max_in_flight_requests == "auto":
        adaptive = AdaptiveLimit(minimum=1, maximum=most, limit=min(4, most))
    client = BackendClient(pipeline=pipeline.name, codec=codec, session=session,
                           max_in_flight_requests=max_in_flight_requests or most, metrics=metrics,
                           slow_threshold_s=pipeline.explanations.slow_threshold_ms / 1000.0,
                           secrets=(backend.token, getattr(backend, "datarobot_key", None)), adaptive=adaptive,
                           report_limit=share is None)
    rng = random.Random()
    if share is not None:
        breaker, limiter = share.breaker, share.limiter
    else:
        breaker = CircuitBreaker(breaker_settings(pipeline, most), rng)
        rate = backend.rate_limit_per_minute
        limiter = RateLimiter(rate) if rate else None
    return Dispatcher(
        pipeline=pipeline.name, codec=codec, client=client, features=pipeline.features,
        policy=RetryPolicy(retry.max_attempts, retry.initial_backoff_ms / 1000.0,
                           retry.max_backoff_ms / 1000.0, retry.max_retry_after_s),
        breaker=breaker, limiter=limiter, metrics=metrics, on_circuit=on_circuit, rng=rng)


def breaker_settings(pipeline: PipelineConfig, max_in_flight: int) -> BreakerSettings:
    breaker, retry = pipeline.circuit_breaker, pipeline.retry
    return BreakerSettings(
        failure_threshold=breaker.failure_threshold, failure_ratio=breaker.failure_ratio,
        window_s=breaker.window_s, min_requests=breaker.min_requests,
        close_after_successes=breaker.close_after_successes,
        initial_backoff_s=retry.initial_backoff_ms / 1000.0, max_backoff_s=retry.max_backoff_ms / 1000.0,
        max_in_flight=max_in_flight, holds=retry.on_backend_outage == "pause")
