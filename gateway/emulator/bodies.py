"""Reading a request body the way the prediction servers do: capped at 50 MB, gzip allowed.

The server is built with automatic decompression off, so the cap applies to what the model would
read (a small gzip body cannot expand into gigabytes) and a broken gzip stream is the client's
error, answered in the vendor's format instead of aiohttp's plain text.
"""

from __future__ import annotations

import zlib

from aiohttp import web

MAX_BODY_BYTES = 50 * 1024 * 1024  # DataRobot's real-time limit; Qlik publishes none


class BodyError(Exception):
    """A body that cannot be read; ``status`` is 413 (too large) or 400."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def too_large(size: str) -> BodyError:
    return BodyError(413, f"Request body of {size} exceeds the {MAX_BODY_BYTES // (1024 * 1024)} MB limit")


async def read_body(request: web.Request) -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise too_large(f"{length} bytes")
    try:
        data = await request.read()  # the app's client_max_size stops a chunked body past the cap
    except web.HTTPRequestEntityTooLarge:
        raise too_large("more than that") from None
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(400, f"Unsupported Content-Encoding {encoding!r}: only gzip is supported")
    return _inflate(data)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib framing
    try:
        out = inflater.decompress(data, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise BodyError(400, f"The body is not valid gzip data: {exc}") from None
    if len(out) > MAX_BODY_BYTES:
        raise too_large("more than that once decompressed")
    if not inflater.eof:
        raise BodyError(400, "The gzip body is truncated")
    return out
