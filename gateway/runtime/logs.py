"""Structured logs: one JSON object per line (or ``key=value`` text for humans), secrets masked.

Convention: log an *event name* with fields, through :func:`event` —
``event(log, "batch_retry", logging.WARNING, pipeline="churn", attempt=2, delay_s=0.4)`` — which
renders as ``{"ts": ..., "level": "warning", "event": "batch_retry", "logger": ..., "pipeline":
"churn", "attempt": 2, "delay_s": 0.4}``. Plain ``logger.info(...)`` calls from libraries and
``extra={...}`` fields work too. Logging is for state changes and failures, never per record.

Every record that reaches the gateway's handler passes :class:`RedactingFilter` first: what
``gateway.runtime.redaction`` masks (configured secrets, ``Authorization``/``DataRobot-Key`` header
values, ``Bearer``/``Token``/``Basic`` credentials), and fields named like secrets (``token``,
``password``, ...), become ``***`` in the message, its arguments, extra fields and exception text alike.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import IO

import orjson

from gateway.runtime.redaction import MASK, Redactor, is_secret_name

FIELDS_ATTR = "event_fields"

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName", FIELDS_ATTR}


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so every handler and formatter after it sees masked text only."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self._redactor
        record.msg = redact.text(_message(record))
        record.args = None
        for key in _extra_keys(record):
            value = record.__dict__[key]
            record.__dict__[key] = MASK if is_secret_name(key) else redact.value(value)
        fields = record.__dict__.get(FIELDS_ATTR)
        if isinstance(fields, Mapping):
            record.__dict__[FIELDS_ATTR] = redact.value(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact.text(record.stack_info)
        return True


def _message(record: logging.LogRecord) -> str:
    """The merged message; a bad format string must not raise into the code that logged it."""
    try:
        return record.getMessage()
    except Exception:  # logging never breaks the caller
        return f"{record.msg!s} (unformattable arguments {record.args!r})"


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [k for k in record.__dict__ if k not in _STANDARD_ATTRS]


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """Extra fields in the order given: ``extra={...}`` attributes, then :func:`event` fields."""
    fields = {k: record.__dict__[k] for k in _extra_keys(record)}
    given = record.__dict__.get(FIELDS_ATTR)
    if isinstance(given, Mapping):
        fields.update(given)
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or None


class JsonFormatter(logging.Formatter):
    """``ts``, ``level``, ``event``, ``logger``, then the fields; a field never replaces those four."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": _message(record),
            "logger": record.name,
        }
        for key, value in _fields(record).items():
            doc[key if key not in doc else f"{key}_"] = value
        exc = _exception_text(self, record)
        if exc:
            if record.exc_info and record.exc_info[0] is not None:
                doc["exc_type"] = record.exc_info[0].__name__
            doc["exc"] = exc
        if record.stack_info:
            doc["stack"] = record.stack_info
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: event key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {_message(record)}"
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _fields(record).items())
        if fields:
            line = f"{line} {fields}"
        exc = _exception_text(self, record)
        if exc:
            line = f"{line}\n{exc}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if text and not any(c.isspace() or c in "\"=" for c in text) else orjson.dumps(text).decode()


class GatewayLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs; its type marks it for replacement."""


def configure_logging(fmt: str, level: str, secrets: Iterable[str], stream: IO[str] | None = None) -> None:
    """Route every logger through one masked handler on stderr (or ``stream``); safe to call again.

    Masking rewrites the record itself, so root handlers added after this one see masked text;
    handlers installed earlier by others, or on other loggers, are left alone and are not masked.
    """
    formatters = {"json": JsonFormatter, "text": TextFormatter}
    if fmt not in formatters:
        raise ValueError(f"log format must be one of {sorted(formatters)}, not {fmt!r}")
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(f"unknown log level {level!r}")
    handler = GatewayLogHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatters[fmt]())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, GatewayLogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levels[level.upper()])


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, *,
          exc_info: bool | BaseException | None = None, **fields: object) -> None:
    """Log ``name`` with ``fields``; ``exc_info=True`` attaches the current exception."""
    if logger.isEnabledFor(level):
        logger.log(level, name, exc_info=exc_info, extra={FIELDS_ATTR: fields}, stacklevel=2)
