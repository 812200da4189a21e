"""Every way a scoring call can fail, grouped by what the dispatcher must do about it.

    GatewayError (gateway.errors)
    ├── ScoringError
    │   ├── RetryableError        transient: retry with backoff (connect errors, timeouts, 429, 5xx)
    │   ├── DataError             the data's fault (400, 413, 422): split the batch to isolate bad rows
    │   ├── FatalError            configuration, not data (401, 403, 404, 409): stop consuming, keep records
    │   └── ResponseDecodeError   a 2xx whose body cannot be read or aligned to the request's rows
    └── SettingsError
        └── BackendSettingsError  a backend setting no request can be built from (also a ValueError)

Callers catch by meaning. :func:`from_status` and :func:`from_exception` are the only places that
look at status codes and transport exceptions.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp
import orjson

from gateway.errors import GatewayError, SettingsError
from gateway.json_types import JsonObject

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 570})
# Statuses that say the service is unavailable or overloaded, rather than failing on this request.
OUTAGE_STATUSES = frozenset({408, 425, 429, 502, 503, 504})
DATA_STATUSES = frozenset({400, 413, 422})
FATAL_STATUSES = frozenset({401, 403, 404, 405, 409})


class BackendSettingsError(SettingsError, ValueError):
    """A backend setting no request can be built from (a URL without a deployment, an unreadable
    ``ca_file``); a ValueError as well, as callers that predate the groups expect."""


class ScoringError(GatewayError):
    """Base of all scoring failures; ``message`` keeps the vendor's own words when there are any."""

    def __init__(self, backend: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{backend}: {message}" if status is None else f"{backend}: HTTP {status}: {message}")
        self.backend = backend
        self.message = message
        self.status = status


class RetryableError(ScoringError):
    """Transient: the same request may succeed later. ``reason`` is a short label for metrics.

    ``outage`` tells the two kinds apart: the backend could not answer at all or asked to be left
    alone (connect errors, timeouts, dropped connections, 408, 425, 429, 502, 503, 504), or it
    failed *on this request* (500 and the other 5xx, an unreadable 2xx body), which a row the
    model cannot handle causes as readily as a sick server.
    """

    def __init__(self, backend: str, message: str, status: int | None = None, *,
                 reason: str, retry_after: float | None = None, outage: bool = True) -> None:
        super().__init__(backend, message, status)
        self.reason = reason
        self.retry_after = retry_after
        self.outage = outage


class DataError(ScoringError):
    """The API refused the data; a smaller batch without the offending rows may succeed."""


class FatalError(ScoringError):
    """Authentication, permission or routing is wrong; no data change will help."""


class ResponseDecodeError(ScoringError):
    """A successful status whose body is malformed, truncated or cannot be aligned to the rows sent."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds, or an HTTP-date counted from ``now``
    (default: the wall clock); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def vendor_message(body: bytes) -> str:
    """The vendor's error text: Qlik ``{"errors":[{title, detail}]}``, DataRobot ``{"message"}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:500].decode("utf-8", "replace").strip()
        return text or "(empty body)"
    if isinstance(doc, dict):
        message = doc.get("message")
        if isinstance(message, str):
            return message
        errors = doc.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if isinstance(err, dict):
                    title = str(err.get("title") or err.get("code") or "")
                    detail = err.get("detail")
                    parts.append(_sentence(title, str(detail)) if detail else title)
            if parts:
                return "; ".join(parts)
        if "status" in doc:  # old DataRobot body: {"status": "API token not valid", "code": 403}
            return str(doc["status"])
    return body[:500].decode("utf-8", "replace")


def _sentence(title: str, detail: str) -> str:
    """Qlik's title and detail as one message: "API rate limit reached. You need to wait 13 s…"."""
    return f"{title} {detail}" if title.endswith((".", "!", "?")) else f"{title}: {detail}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively also for a plain dict (servers send ``retry-after``)."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # CIMultiDict is already case-insensitive
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value


def from_status(backend: str, status: int, headers: Mapping[str, str], body: bytes) -> ScoringError:
    """Map a non-2xx response onto the failure tree."""
    message = vendor_message(body)
    if status in RETRYABLE_STATUSES or (status >= 500 and status not in FATAL_STATUSES):
        return RetryableError(backend, message, status, reason=str(status),
                              retry_after=parse_retry_after(_header(headers, "Retry-After")),
                              outage=status in OUTAGE_STATUSES)
    if status in DATA_STATUSES:
        return DataError(backend, message, status)
    return FatalError(backend, message, status)


def from_exception(backend: str, exc: BaseException) -> ScoringError:
    """Map a transport exception onto the failure tree. TLS verification failures are fatal."""
    if isinstance(exc, ScoringError):
        return exc
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError)):
        return FatalError(backend, f"TLS certificate verification failed: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return RetryableError(backend, "request timed out", reason="timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return RetryableError(backend, f"cannot connect: {exc}", reason="connect")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        aiohttp.ClientOSError, ConnectionError)):
        return RetryableError(backend, f"connection lost: {exc}", reason="disconnect")
    if isinstance(exc, aiohttp.ClientError):
        return RetryableError(backend, f"{type(exc).__name__}: {exc}", reason="client_error")
    raise exc


def json_object(backend: str, body: bytes) -> JsonObject:
    """A response body that must be one JSON object; anything else is a decode error saying why."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ResponseDecodeError(backend, f"malformed or truncated JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(doc, dict):
        raise ResponseDecodeError(backend, f"expected a JSON object, got {type(doc).__name__}")
    return doc
