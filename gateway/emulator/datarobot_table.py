"""DataRobot request bodies as the prediction server reads them: CSV (any charset, BOM allowed),
a JSON array of row objects, or the ``file`` field of a multipart form; gzip allowed.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP

import orjson
from aiohttp import web

from gateway.backends.csvcodec import CsvError, read_csv
from gateway.emulator.bodies import BodyError, read_body
from gateway.emulator.datarobot_query import message
from gateway.emulator.models import Column
from gateway.emulator.vendor import Refusal


@dataclass(slots=True)
class Table:
    names: list[str]
    columns: list[Column]
    rows: int


async def read_table(request: web.Request) -> Table:
    try:
        body = await read_body(request)
    except BodyError as exc:
        raise Refusal(message(exc.status, exc.message)) from None
    media, charset = request.content_type, request.charset
    if media == "multipart/form-data":
        body, media, charset = _file_part(request.headers.get("Content-Type", ""), body)
    if media in ("application/json", "text/json"):
        return _json_table(body)
    return _csv_table(_decode(body, charset))


def _file_part(content_type: str, body: bytes) -> tuple[bytes, str, str | None]:
    """The ``file`` field of a multipart/form-data body, with its own media type and charset."""
    try:
        parsed = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1")
                                                     + b"\r\n\r\n" + body)
        parts = list(parsed.iter_parts()) if isinstance(parsed, EmailMessage) and parsed.is_multipart() else []
    except (ValueError, TypeError, UnicodeError) as exc:
        raise Refusal(message(400, f"The multipart body cannot be read: {exc}")) from None
    for part in parts:
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                break
            media = part.get_content_type() if part.get("Content-Type") else "text/csv"
            return payload, media, part.get_content_charset()
    raise Refusal(message(400, "The multipart body has no 'file' field with the data to predict"))


def _decode(body: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").strip().strip('"')
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise Refusal(message(400, f"Unsupported charset '{name}'")) from None
    try:
        return body.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        raise Refusal(message(400, f"The body is not valid {name}: {exc.reason} at byte {exc.start}")) from None


def _csv_table(text: str) -> Table:
    if not text.strip():
        raise Refusal(message(400, "No data provided: the body must be CSV with a header line"))
    try:
        header, data = read_csv(text)
    except CsvError as exc:
        raise Refusal(message(400, str(exc))) from None
    _check_unique(header)
    return Table(header, list(zip(*data, strict=False)) if data else [() for _ in header], len(data))


def _json_table(body: bytes) -> Table:
    try:
        records = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(message(400, f"The body is not valid JSON: {exc}")) from None
    if type(records) is not list:
        raise Refusal(message(400, "A JSON body must be an array of objects, one per row"))
    if any(type(record) is not dict for record in records):
        row = next(i for i, record in enumerate(records) if type(record) is not dict)
        raise Refusal(message(400, f"Row {row} of the JSON body is not an object"))
    if not records:
        return Table([], [], 0)
    first = records[0].keys()
    if all(record.keys() == first for record in records):
        names = list(first)
    else:
        names = list(dict.fromkeys(name for record in records for name in record))
    return Table(names, [[record.get(name) for record in records] for name in names], len(records))


def _check_unique(names: list[str]) -> None:
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise Refusal(message(400, f"Column '{duplicate}' appears more than once in the header"))
