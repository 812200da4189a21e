"""The failure tree: every status class, the vendors' own error bodies, Retry-After, and transport
exceptions as aiohttp really raises them against servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from gateway.backends.errors import (
    DataError,
    FatalError,
    ResponseDecodeError,
    RetryableError,
    ScoringError,
    from_exception,
    from_status,
    parse_retry_after,
    vendor_message,
)
from gateway.backends.factory import make_ssl_context
from tests.vendor_samples import DATAROBOT as DR_SAMPLES
from tests.vendor_samples import QLIK as QLIK_SAMPLES
from tests.vendor_samples import datarobot_json

# -- statuses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [408, 425, 429, 500, 501, 502, 503, 504, 505, 507, 570, 599])
def test_transient_statuses_retry(status: int) -> None:
    error = from_status("qlik", status, {}, b"")
    assert isinstance(error, RetryableError) and error.reason == str(status) and error.status == status


@pytest.mark.parametrize("status", [400, 413, 422])
def test_data_statuses_split_the_batch(status: int) -> None:
    assert type(from_status("datarobot", status, {}, b"{}")) is DataError


@pytest.mark.parametrize("status", [300, 301, 302, 304, 307, 401, 402, 403, 404, 405, 406, 409, 410, 415, 431])
def test_configuration_statuses_are_fatal(status: int) -> None:
    """Redirects that reached us, auth, routing and other client errors: no data change helps."""
    assert type(from_status("qlik", status, {}, b"")) is FatalError


def test_message_and_backend_in_the_error() -> None:
    error = from_status("datarobot", 404, {}, b'{"message": "Not found"}')
    assert (error.backend, error.status, error.message) == ("datarobot", 404, "Not found")
    assert str(error) == "datarobot: HTTP 404: Not found"


# -- Retry-After ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, seconds", [("13", 13.0), (" 2.5 ", 2.5), ("0", 0.0), ("-4", 0.0), (None, None),
                                            ("", None), ("soon", None), ("nan", None), ("inf", None),
                                            ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0)])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1445412480.0 - 30) == seconds


def test_retry_after_header_in_any_case() -> None:
    assert from_status("qlik", 429, {"Retry-After": "7"}, b"").retry_after == 7.0
    assert from_status("qlik", 429, {"retry-after": "7"}, b"").retry_after == 7.0
    assert from_status("qlik", 503, CIMultiDict({"RETRY-AFTER": "3"}), b"").retry_after == 3.0
    assert from_status("qlik", 503, {}, b"").retry_after is None


# -- the vendors' own error bodies ----------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(DR_SAMPLES.glob("error_*.json")), ids=lambda p: p.name)
def test_datarobot_error_samples(path: Path) -> None:
    body = path.read_bytes()
    doc = json.loads(body)
    status = int(re.match(r"error_(\d{3})_", path.name).group(1))
    error = from_status("datarobot", status, {}, body)
    assert error.message == doc.get("message", doc.get("status"))
    expected = {400: DataError, 422: DataError, 401: FatalError, 403: FatalError}[status]
    assert type(error) is expected


def test_datarobot_seed_error_list() -> None:
    table = datarobot_json("seed-error-table.json")
    assert len(table) >= 9
    for entry in table:
        status, body = entry["status"], entry["body"]
        error = from_status("datarobot", status, {}, json.dumps(body).encode())
        assert error.message == body["message"]
        assert type(error) is (FatalError if status == 404 else DataError)


def test_qlik_429_sample_with_its_headers() -> None:
    transcript = (QLIK_SAMPLES / "error-429-rate-limit.qlik-dev.txt").read_text(encoding="utf-8")
    head, body = transcript.split("\n\n", 1)
    lines = [line.removeprefix("< ") for line in head.splitlines()]
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    error = from_status("qlik", status, headers, body.encode())
    assert isinstance(error, RetryableError) and error.retry_after == 13.0 and error.reason == "429"
    assert error.message == "API rate limit reached. You need to wait 13 seconds until limit is lifted."


@pytest.mark.parametrize("body, message", [
    (b'{"errors":[{"code":"ML-1","title":"Bad request","detail":"rows must be arrays"},'
     b'{"code":"ML-2","title":"Feature missing"}],"traceId":"t1"}',
     "Bad request: rows must be arrays; Feature missing"),
    (b'{"errors":[{"code":"HTTP-404"}]}', "HTTP-404"),
    (b"<html><body>502 Bad Gateway</body></html>", "<html><body>502 Bad Gateway</body></html>"),
    (b"", "(empty body)"),
    (b"   ", "(empty body)"),
    (b'["unexpected"]', '["unexpected"]'),
])
def test_vendor_message_shapes(body: bytes, message: str) -> None:
    assert vendor_message(body) == message


# -- transport exceptions, raised for real ----------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1)) if b"ontent-" in head else 0
    await reader.readexactly(length)


async def post(url: str, **options) -> bytes:
    timeout = options.pop("timeout", aiohttp.ClientTimeout(total=5))
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.post(url, data=b'{"rows": []}', **options) as response:
        return await response.read()


async def raised(url: str, **options) -> BaseException:
    try:
        await post(url, **options)
    except BaseException as exc:
        return exc
    raise AssertionError("the request succeeded")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_is_a_connect_retry() -> None:
    exc = await raised(f"http://127.0.0.1:{free_port()}/run")
    error = from_exception("qlik", exc)
    assert isinstance(exc, aiohttp.ClientConnectorError)
    assert isinstance(error, RetryableError) and error.reason == "connect"


async def test_a_silent_server_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(2)
        writer.close()

    server, port = await serve(silent)
    async with server:
        total = await raised(f"http://127.0.0.1:{port}/", timeout=aiohttp.ClientTimeout(total=0.2))
        read = await raised(f"http://127.0.0.1:{port}/", timeout=aiohttp.ClientTimeout(sock_read=0.2))
    for exc in (total, read):
        assert isinstance(exc, asyncio.TimeoutError)
        error = from_exception("datarobot", exc)
        assert isinstance(error, RetryableError) and error.reason == "timeout"


async def test_a_dropped_connection_is_a_disconnect() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":")
        await writer.drain()
        writer.close()

    for handler, kind in ((drop, aiohttp.ServerDisconnectedError), (truncate, aiohttp.ClientPayloadError)):
        server, port = await serve(handler)
        async with server:
            exc = await raised(f"http://127.0.0.1:{port}/")
        assert isinstance(exc, kind)
        error = from_exception("qlik", exc)
        assert isinstance(error, RetryableError) and error.reason == "disconnect"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a certificate with openssl: {exc}")
    return cert, key


async def test_untrusted_certificate_is_fatal_and_ca_file_fixes_it(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client that refused our certificate hangs up mid-handshake
        finally:
            writer.close()

    server, port = await serve(ok, server_tls)
    async with server:
        exc = await raised(f"https://127.0.0.1:{port}/")
        assert isinstance(exc, aiohttp.ClientConnectorCertificateError)
        error = from_exception("datarobot", exc)
        assert type(error) is FatalError and "certificate" in error.message
        trusted = make_ssl_context(str(cert))
        assert isinstance(trusted, ssl.SSLContext) and trusted.verify_mode == ssl.CERT_REQUIRED
        assert await post(f"https://127.0.0.1:{port}/", ssl=trusted) == b"ok"


def test_make_ssl_context_default_and_bad_file(tmp_path: Path) -> None:
    assert make_ssl_context(None) is None and make_ssl_context("") is None
    with pytest.raises(ValueError, match="ca_file"):
        make_ssl_context(str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ValueError, match="ca_file"):
        make_ssl_context(str(garbage))


def test_raw_exceptions_without_a_server() -> None:
    assert type(from_exception("qlik", ssl.SSLCertVerificationError("bad cert"))) is FatalError
    assert from_exception("qlik", ConnectionResetError()).reason == "disconnect"
    assert from_exception("qlik", TimeoutError()).reason == "timeout"
    assert from_exception("qlik", aiohttp.InvalidURL("nope")).reason == "client_error"
    already = ResponseDecodeError("qlik", "truncated")
    assert from_exception("qlik", already) is already
    with pytest.raises(ValueError):
        from_exception("qlik", ValueError("a bug, not a transport failure"))
    assert all(issubclass(c, ScoringError) for c in (RetryableError, DataError, FatalError, ResponseDecodeError))
