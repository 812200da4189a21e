"""Qlik's batch-prediction endpoints, called the way the real-time path calls the real-time one.

Authentication is the pipeline's Qlik backend's own ``Authorization`` header (built by its codec);
retries follow the pipeline's ``retry`` section through :class:`gateway.scoring.retry.RetryPolicy`
(exponential backoff with full jitter, ``Retry-After`` honoured up to its cap), and every failure
is classified by :mod:`gateway.backends.errors`: transient ones (connect errors, timeouts, 429,
5xx) are retried, the rest end the call with the vendor's own message.

Paths, under the tenant's ``/api/v1/ml`` (taken from the backend's real-time URL):

* ``GET|POST /deployments/{id}/batch-predictions`` (list, create),
* ``PATCH|GET /deployments/{id}/batch-predictions/{batchPredictionId}`` (update, read),
* ``POST /deployments/{id}/batch-predictions/{batchPredictionId}/actions/predict`` (start),
* ``POST /jobs/batch-prediction/{corrId}/actions/cancel`` (cancel).
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import orjson

from gateway.backends.errors import RetryableError, ScoringError, from_exception, from_status
from gateway.json_types import JsonObject, JsonValue
from gateway.scoring.retry import RetryPolicy

BACKEND = "qlik"
_ML_ROOT = re.compile(r"^(?P<root>.*?/api/v1/ml)/deployments/(?P<deployment>[^/?#]+)")
PAGE = 100  # the list route's largest page


class BatchApiError(Exception):
    """A call that failed for good: the vendor's message, or the transport's, with the HTTP status."""

    def __init__(self, what: str, error: ScoringError) -> None:
        super().__init__(f"{what}: {error}")
        self.status = error.status


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a deployment's batch predictions live, worked out from its real-time URL."""

    root: str  # …/api/v1/ml
    deployment: str

    @classmethod
    def from_realtime_url(cls, url: str) -> Endpoints:
        found = _ML_ROOT.match(url)
        if found is None:
            raise ValueError(f"{url!r} is not a Qlik …/api/v1/ml/deployments/{{id}}/… URL")
        return cls(found["root"], found["deployment"])

    @property
    def collection(self) -> str:
        return f"{self.root}/deployments/{self.deployment}/batch-predictions"

    def one(self, batch_prediction: str) -> str:
        return f"{self.collection}/{batch_prediction}"

    def predict(self, batch_prediction: str) -> str:
        return f"{self.one(batch_prediction)}/actions/predict"

    def cancel(self, corr_id: str) -> str:
        return f"{self.root}/jobs/batch-prediction/{corr_id}/actions/cancel"


class BatchApi:
    """One session's calls, each retried as the real-time path retries a request."""

    def __init__(self, session: aiohttp.ClientSession, endpoints: Endpoints, authorization: Mapping[str, str], *,
                 policy: RetryPolicy, request_timeout_s: float, ssl_context: ssl.SSLContext | None = None,
                 rng: random.Random | None = None) -> None:
        self.session = session
        self.endpoints = endpoints
        self.headers = {"Accept": "application/json", **authorization}
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self.ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self.rng = rng or random.Random()

    async def call(self, what: str, method: str, url: str, body: JsonValue = None) -> tuple[int, JsonValue]:
        """``(status, JSON document or None)`` of a 2xx answer, after the retries the policy allows;
        raises :class:`BatchApiError` otherwise."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, url, body)
            except RetryableError as exc:
                if self.policy.exhausted(attempt):
                    raise BatchApiError(f"{what} (after {attempt} attempts)", exc) from None
                await asyncio.sleep(self.policy.delay(attempt, exc.retry_after, self.rng))
            except ScoringError as exc:
                raise BatchApiError(what, exc) from None

    async def _once(self, method: str, url: str, body: JsonValue) -> tuple[int, JsonValue]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        try:
            async with self.session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                            ssl=self.ssl) as response:
                raw = await response.read()
                status, answer_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise from_exception(BACKEND, exc) from None
        if not 200 <= status < 300:
            raise from_status(BACKEND, status, answer_headers, raw)
        if not raw.strip():
            return status, None
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RetryableError(BACKEND, f"unreadable JSON answer ({len(raw)} bytes)", status,
                                 reason="decode", outage=False) from None


def resource(doc: JsonValue) -> JsonObject:
    """A batch-prediction or job object from an answer: ``{"data": {…}}`` or the object itself (the
    seed's monitoring example shows it without the envelope)."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        doc = doc["data"]
    if not isinstance(doc, dict) or not isinstance(doc.get("attributes"), dict):
        raise ValueError(f"expected a resource with attributes, got {str(doc)[:200]!r}")
    return doc


def attributes_of(doc: JsonValue) -> JsonObject:
    """The attributes of the resource in an answer (see :func:`resource`)."""
    found = resource(doc)["attributes"]
    return found if isinstance(found, dict) else {}  # resource() made sure it is an object


def json_object(value: JsonValue) -> JsonObject:
    """``value`` when it is a JSON object, else an empty one: an optional object of an answer."""
    return value if isinstance(value, dict) else {}
