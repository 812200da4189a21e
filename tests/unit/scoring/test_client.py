"""The HTTP client's side of a request, over a fake aiohttp session: a 2xx decoded by the codec, and
every failure mapped to its place in the failure tree of ``gateway.backends.errors``, with the
request metrics and the request slots accounted for in each case."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from email.utils import formatdate
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict

from gateway.backends.codec import ScoredRow, ScoringRequest
from gateway.backends.errors import DataError, FatalError, RetryableError, ScoringError
from gateway.backends.qlik.codec import QlikCodec
from gateway.scoring.client import BackendClient
from gateway.scoring.concurrency import AdaptiveLimit
from tests.unit.scoring.fakes import (
    FakeCodec,
    FakeResponse,
    FakeSession,
    RecordingMetrics,
    SentRequest,
    qlik_answer,
    until,
)

URL = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/dep-42/realtime-predictions/actions/run"
TOKEN = "eyJ-secret-token"
ROWS = [{"PlanType": "A", "BaseFee": 10.0}, {"PlanType": "B", "BaseFee": 12.5}]


def qlik_error(status: int, title: str, detail: str, **headers: str) -> FakeResponse:
    body = orjson.dumps({"errors": [{"title": title, "detail": detail, "code": str(status)}]})
    return FakeResponse(status, body, CIMultiDict({"Content-Type": "application/json", **headers}))


def client(answer: FakeResponse | BaseException | None = None, *, include_shap: bool = False,
           slow_threshold_s: float = 2.0, max_in_flight: int = 2,
           adaptive: AdaptiveLimit | None = None) -> tuple[BackendClient, FakeSession, RecordingMetrics]:
    """A client over a session answering every request with ``answer`` (default: a Qlik prediction)."""
    def handler(sent: SentRequest) -> FakeResponse | BaseException:
        return qlik_answer(sent) if answer is None else answer

    session = FakeSession(handler)
    metrics = RecordingMetrics()
    codec = QlikCodec(url=URL, token=TOKEN, max_bytes=None, include_shap=include_shap)
    backend = BackendClient(pipeline="churn", codec=codec, session=cast(aiohttp.ClientSession, session),
                            max_in_flight_requests=max_in_flight, metrics=metrics,
                            slow_threshold_s=slow_threshold_s, secrets=(TOKEN, "other-secret"), adaptive=adaptive)
    return backend, session, metrics


async def failure(backend: BackendClient) -> ScoringError:
    with pytest.raises(ScoringError) as info:
        await backend.send(backend.codec.encode(None, ROWS))
    assert backend.slots.in_flight == 0  # the slot is given back whatever happened
    return info.value


async def test_a_2xx_is_decoded_into_one_row_per_input_row() -> None:
    backend, session, metrics = client()
    request = backend.codec.encode(None, ROWS)
    assert await backend.send(request) == [ScoredRow(prediction=0.5), ScoredRow(prediction=1.5)]
    [sent] = session.sent
    assert (sent.method, sent.url, sent.body) == ("POST", URL, request.body)
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert metrics.requests == [("qlik", "none", "200")]
    assert metrics.in_flight == [1, -1] and backend.slots.in_flight == 0
    assert metrics.limits == [2]  # the prediction lane reports its limit once, when built


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_refusal_of_the_data_is_a_data_error_with_the_vendors_words(status: int) -> None:
    backend, _, metrics = client(qlik_error(status, "Invalid input.", "Column BaseFee is not numeric"))
    error = await failure(backend)
    assert type(error) is DataError
    assert (error.status, error.message) == (status, "Invalid input. Column BaseFee is not numeric")
    assert metrics.requests == [("qlik", "none", str(status))]


@pytest.mark.parametrize("status", [401, 403, 404, 405, 409])
async def test_a_refusal_of_the_configuration_is_fatal(status: int) -> None:
    backend, _, metrics = client(qlik_error(status, "Forbidden", "no access to this deployment"))
    error = await failure(backend)
    assert type(error) is FatalError and error.status == status
    assert error.message == "Forbidden: no access to this deployment"
    assert metrics.requests == [("qlik", "none", str(status))]


async def test_a_429_carries_its_retry_after_in_seconds() -> None:
    backend, _, metrics = client(qlik_error(429, "API rate limit reached.", "Wait 13 s.", **{"Retry-After": "13"}))
    error = await failure(backend)
    assert isinstance(error, RetryableError)
    assert (error.status, error.reason, error.retry_after, error.outage) == (429, "429", 13.0, True)
    assert error.message == "API rate limit reached. Wait 13 s."
    assert metrics.requests == [("qlik", "none", "429")]


async def test_a_429_carries_its_retry_after_as_an_http_date() -> None:
    when = formatdate(time.time() + 30, usegmt=True)
    backend, _, _ = client(qlik_error(429, "Too Many Requests", "slow down", **{"Retry-After": when}))
    error = await failure(backend)
    assert isinstance(error, RetryableError) and error.retry_after is not None
    assert 27.0 <= error.retry_after <= 30.0  # whole seconds in the header, a little time passed since


@pytest.mark.parametrize("value", [None, "soon", ""])
async def test_a_429_without_a_readable_retry_after_has_none(value: str | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    backend, _, _ = client(qlik_error(429, "Too Many Requests", "slow down", **headers))
    error = await failure(backend)
    assert isinstance(error, RetryableError) and error.retry_after is None


@pytest.mark.parametrize(("status", "outage"), [(500, False), (501, False), (502, True), (503, True), (504, True),
                                                 (570, False), (599, False), (408, True)])
async def test_server_errors_are_retryable_and_only_unavailability_is_an_outage(status: int, outage: bool) -> None:
    backend, _, metrics = client(FakeResponse(status, b"<html>Bad Gateway</html>"))
    error = await failure(backend)
    assert isinstance(error, RetryableError)
    assert (error.status, error.reason, error.outage) == (status, str(status), outage)
    assert error.message == "<html>Bad Gateway</html>"  # not JSON: the text as sent
    assert metrics.requests == [("qlik", "none", str(status))]


async def test_an_empty_error_body_still_says_something() -> None:
    backend, _, _ = client(FakeResponse(503))
    assert (await failure(backend)).message == "(empty body)"


@pytest.mark.parametrize(("exc", "reason", "text"), [
    (TimeoutError(), "timeout", "request timed out"),
    (aiohttp.ServerTimeoutError("read timeout"), "timeout", "request timed out"),
    (aiohttp.ClientConnectorError(ConnectionKey("tenant.example", 443, True, True, None, None, None, None),
                                  ConnectionRefusedError(111, "Connection refused")), "connect", "cannot connect"),
    (aiohttp.ServerDisconnectedError(), "disconnect", "connection lost"),
    (ConnectionResetError(104, "Connection reset by peer"), "disconnect", "connection lost"),
    (aiohttp.ClientPayloadError("truncated body"), "disconnect", "connection lost"),
    (aiohttp.InvalidURL("http://[broken"), "client_error", "InvalidURL"),
])
async def test_transport_failures_are_retryable_outages(exc: BaseException, reason: str, text: str) -> None:
    backend, _, metrics = client(exc)
    error = await failure(backend)
    assert isinstance(error, RetryableError)
    assert (error.status, error.reason, error.outage, error.retry_after) == (None, reason, True, None)
    assert error.message.startswith(text)
    assert metrics.requests == [("qlik", "none", reason)] and metrics.in_flight == [1, -1]


async def test_a_failed_certificate_check_is_fatal() -> None:
    backend, _, metrics = client(ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed"))
    error = await failure(backend)
    assert type(error) is FatalError and error.status is None
    assert error.message.startswith("TLS certificate verification failed")
    assert metrics.requests == [("qlik", "none", "fatal")]


@pytest.mark.parametrize("body", [b'{"data": {"type": "realtime-prediction", "attr', b"[1, 2]", b"not json"])
async def test_an_undecodable_2xx_is_retryable_but_not_an_outage(body: bytes) -> None:
    backend, _, metrics = client(FakeResponse(200, body, {"Content-Type": "application/json"}))
    error = await failure(backend)
    assert isinstance(error, RetryableError)
    assert (error.status, error.reason, error.outage) == (200, "decode", False)
    assert metrics.requests == [("qlik", "none", "200")]


async def test_credentials_quoted_in_a_vendors_error_are_masked() -> None:
    # The lanes pass the backend's token and key as ``secrets``; some APIs quote what they refused.
    quoted = f"token {TOKEN} is not valid (nor other-secret)"
    backend, _, _ = client(qlik_error(401, "Unauthorized", quoted))
    error = await failure(backend)
    for secret in (TOKEN, "other-secret"):
        assert secret not in error.message and secret not in str(error)
    assert error.message.startswith("Unauthorized: token ")


async def test_requests_wait_for_a_free_slot() -> None:
    backend, session, _ = client(max_in_flight=1)
    session.gate = gate = asyncio.Event()
    first = asyncio.create_task(backend.send(backend.codec.encode(None, ROWS)))
    second = asyncio.create_task(backend.send(backend.codec.encode(None, ROWS)))
    await until(lambda: len(session.sent) == 1)
    for _ in range(20):  # loop turns enough for the second request to go out, if it could
        await asyncio.sleep(0)
    assert len(session.sent) == 1 and backend.slots.in_flight == 1
    gate.set()
    await asyncio.gather(first, second)
    assert len(session.sent) == 2 and backend.slots.in_flight == 0


async def test_a_429_lowers_an_adaptive_limit_before_the_next_request_goes_out() -> None:
    adaptive = AdaptiveLimit(minimum=1, maximum=16, limit=8)
    backend, _, metrics = client(qlik_error(429, "Too Many Requests", "slow down"), adaptive=adaptive)
    assert backend.slots.limit == 8
    await failure(backend)
    assert backend.slots.limit < 8 and metrics.limits == [8, backend.slots.limit]


async def test_explanation_calls_are_labelled_by_kind_and_slow_ones_counted() -> None:
    backend, _, metrics = client(include_shap=True, slow_threshold_s=-1.0)  # every call counts as slow
    rows = await backend.send(backend.codec.encode(None, ROWS))
    assert [row.explanation_kind for row in rows] == ["shap", "shap"]
    assert metrics.requests == [("qlik", "shap", "200")] and metrics.slow == ["shap"]
    fast, _, quick = client(include_shap=True)
    await fast.send(fast.codec.encode(None, ROWS))
    assert quick.slow == []


async def test_a_server_error_is_no_sample_for_an_adaptive_limit() -> None:
    adaptive = AdaptiveLimit(minimum=1, maximum=16, limit=8)
    backend, _, metrics = client(FakeResponse(500, b"oops"), adaptive=adaptive)
    await failure(backend)
    assert backend.slots.limit == 8 and metrics.limits == [8]


class AutoExplanations(FakeCodec):
    """Asks for the deployment's default explanations; the answer says they are XEMP."""

    explanations = "auto"

    def encode(self, features: Sequence[str] | None, rows: Sequence[Mapping[str, Any]]) -> ScoringRequest:
        request = super().encode(features, rows)
        request.explanations = self.explanations
        return request

    def decode(self, request: ScoringRequest, status: int, content_type: str, body: bytes) -> list[ScoredRow]:
        return [ScoredRow(prediction=row["id"], explanation_kind="xemp") for row in orjson.loads(body)]


async def test_a_slow_call_for_the_deployments_default_explanations_is_logged_once_known_to_be_xemp(
        caplog: pytest.LogCaptureFixture) -> None:
    session = FakeSession(lambda sent: FakeResponse(200, sent.body))
    metrics = RecordingMetrics()
    backend = BackendClient(pipeline="churn", codec=AutoExplanations(), session=cast(aiohttp.ClientSession, session),
                            max_in_flight_requests=1, metrics=metrics, slow_threshold_s=-1.0)
    with caplog.at_level(logging.WARNING, logger="gateway.scoring.client"):
        await backend.send(backend.codec.encode(None, [{"id": 1}, {"id": 2}]))
    assert metrics.requests == [("fake", "xemp", "200")] and metrics.slow == ["xemp"]
    [record] = [r for r in caplog.records if r.getMessage() == "slow_xemp_call"]
    assert (record.pipeline, record.deployment, record.rows) == ("churn", "d-1", 2)  # type: ignore[attr-defined]
