"""Fakes for the scoring lanes' collaborators: a codec, a backend client, an aiohttp-like session,
the metrics and a rate limiter. None of them opens a socket or reads the wall clock for a decision."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.backends.codec import BodyTooLarge, ScoredRow, ScoringRequest
from gateway.backends.errors import ScoringError
from gateway.scoring.client import Withdrawn
from gateway.scoring.concurrency import RequestSlots

URL = "https://scoring.example/api/v1/deployments/d-1/predict"


class FakeCodec:
    """A :class:`gateway.backends.codec.Codec` whose body is the rows as a JSON array (so its size
    grows with the rows, for the ``max_bytes`` split) and whose answer gives each row its ``id``."""

    backend = "fake"
    deployment = "d-1"
    explanations: str | None = None

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.headers = {"Authorization": "Bearer s3cret-token"}

    def check_row(self, row: Mapping[str, Any]) -> str | None:
        return None

    def check_json_row(self, row: dict[str, Any]) -> str | None:
        return None

    def encode(self, features: Sequence[str] | None, rows: Sequence[Mapping[str, Any]]) -> ScoringRequest:
        body = orjson.dumps(list(rows))
        if self.max_bytes is not None and len(body) > self.max_bytes:
            raise BodyTooLarge(len(body), self.max_bytes)
        return ScoringRequest("POST", URL, dict(self.headers), body, len(rows),
                              columns=tuple(features or ()), source_rows=rows)

    def decode(self, request: ScoringRequest, status: int, content_type: str, body: bytes) -> list[ScoredRow]:
        return [ScoredRow(prediction=row["id"]) for row in orjson.loads(body)]


def scored(rows: Sequence[Mapping[str, Any]]) -> list[ScoredRow]:
    """The backend's answer to rows it scores: each row's prediction is its ``id``."""
    return [ScoredRow(prediction=row["id"], not_predicted_reason=row.get("not_predicted")) for row in rows]


# What the fake backend does with one request: return the scored rows or raise a ScoringError.
Answer = Callable[[Sequence[Mapping[str, Any]]], list[ScoredRow]]


class FakeBackend:
    """Stands in for :class:`gateway.scoring.client.BackendClient`: the dispatcher uses its ``slots``
    and ``send``. ``answer`` decides each request from its rows; every request is recorded (the ids
    of its rows, in order) with the most requests ever in flight at once."""

    def __init__(self, answer: Answer, *, limit: int = 16) -> None:
        self.answer = answer
        self.slots = RequestSlots(limit)
        self.requests: list[list[Any]] = []
        self.sent_at: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None  # when set by a test: requests wait for it to open

    async def send(self, request: ScoringRequest, trace: object = None,
                   wanted: Callable[[], bool] | None = None) -> list[ScoredRow]:
        await self.slots.acquire()  # as the real client: a slot first, then the caller's last word
        if wanted is not None and not wanted():
            self.slots.release()
            raise Withdrawn
        self.requests.append([row["id"] for row in request.source_rows])
        self.sent_at.append(time.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)  # an answer is never immediate: let the other requests run
            return self.answer(request.source_rows)
        finally:
            self.in_flight -= 1
            self.slots.release()


class Script:
    """Answers requests in turn from a list (an exception is raised, ``None`` scores the rows);
    past its end every request is scored."""

    def __init__(self, *steps: ScoringError | None) -> None:
        self.steps = list(steps)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> list[ScoredRow]:
        step = self.steps.pop(0) if self.steps else None
        if step is not None:
            raise step
        return scored(rows)


@dataclass
class RecordingMetrics:
    """A :class:`gateway.runtime.metrics.ScoringMetrics` that keeps every call."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (backend, explanations, status)
    retries: list[str] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    circuits: list[tuple[str, bool]] = field(default_factory=list)

    def request(self, backend: str, explanations: str, status: str, seconds: float,
                trace_id: str | None = None) -> None:
        assert seconds >= 0.0
        self.requests.append((backend, explanations, status))

    def retry(self, reason: str) -> None:
        self.retries.append(reason)

    def requests_in_flight(self, delta: int) -> None:
        self.in_flight.append(delta)

    def slow_explanation(self, kind: str) -> None:
        self.slow.append(kind)

    def concurrency_limit(self, limit: int) -> None:
        self.limits.append(limit)

    def circuit(self, state: str, changed: bool = True) -> None:
        self.circuits.append((state, changed))


class RecordingLimiter:
    """Stands in for :class:`gateway.scoring.ratelimit.RateLimiter`: never waits, records holds."""

    def __init__(self) -> None:
        self.acquired = 0
        self.holds: list[float] = []

    def ready(self) -> bool:
        return not self.holds

    async def acquire(self) -> None:
        self.acquired += 1

    def hold(self, seconds: float) -> None:
        self.holds.append(seconds)


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Wait for ``condition`` (checked every millisecond), failing after ``timeout_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.001)


# -- an aiohttp-like session ----------------------------------------------------------------------

@dataclass
class SentRequest:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    async def read(self) -> bytes:
        return self.body


class _Exchange:
    """What ``ClientSession.request`` returns: an async context manager around the response."""

    def __init__(self, outcome: FakeResponse | BaseException, gate: asyncio.Event | None) -> None:
        self._outcome = outcome
        self._gate = gate

    async def __aenter__(self) -> FakeResponse:
        if self._gate is not None:
            await self._gate.wait()
        await asyncio.sleep(0)
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeSession:
    """Stands in for ``aiohttp.ClientSession`` as the client uses it (``request`` in ``async with``):
    ``handler`` answers each request with a response, or with the transport exception to raise."""

    def __init__(self, handler: Callable[[SentRequest], FakeResponse | BaseException]) -> None:
        self.handler = handler
        self.sent: list[SentRequest] = []
        self.gate: asyncio.Event | None = None  # when set by a test: answers wait for it to open

    def request(self, method: str, url: str, *, data: bytes, headers: dict[str, str]) -> _Exchange:
        sent = SentRequest(method, url, data, dict(headers))
        self.sent.append(sent)
        return _Exchange(self.handler(sent), self.gate)


def qlik_answer(sent: SentRequest) -> FakeResponse:
    """A Qlik Predict answer to a request body ``{"schema": [...], "rows": [...]}``: a regression
    prediction of 0.5 + the row's position, and a SHAP column per feature when the URL asks for it."""
    body = orjson.loads(sent.body)
    features = [column["name"] for column in body["schema"]]
    shap = "includeShap=true" in sent.url
    schema = [{"name": "automl_row_index"}, {"name": "churn_predicted"},
              *([{"name": f"{name}_SHAP"} for name in features] if shap else [])]
    table = [[i, 0.5 + i, *([0.1] * len(features) if shap else [])] for i in range(len(body["rows"]))]
    doc = {"data": {"type": "realtime-prediction", "attributes": {"schema": schema, "rows": table}}}
    return FakeResponse(200, orjson.dumps(doc), {"Content-Type": "application/json"})
