"""W3C Trace Context (``traceparent``, ``tracestate``) read from Kafka record headers and written back.

Input headers come from anyone who can produce to the input topic, so reading them never fails: a
value that is not a well-formed ``traceparent`` (too long, an unknown or forbidden version, a
non-hex or all-zero id, non-ASCII bytes, a repeated header) is ignored as if absent, and the record
is scored like any other. Only the lower-case header names are read, as the OpenTelemetry Kafka
instrumentations write them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Version 00 is exactly 55 characters; a later version may append fields after a '-', but a header
# this long is not trace context anyone sent in good faith.
MAX_TRACEPARENT = 512
# W3C: at most 32 list members; 512 characters is what every vendor must pass on.
MAX_TRACESTATE = 512
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")
_TRACESTATE = re.compile(rb"[\x20-\x7e]*")
SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class Parent:
    """A record's trace context: the span that produced it, whether that span was sampled, and the
    vendors' ``tracestate`` as received (passed on unchanged)."""

    trace_id: int
    span_id: int
    sampled: bool
    tracestate: bytes | None = None


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` of a well-formed ``traceparent`` value, else None."""
    if type(value) is str:
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not isinstance(value, bytes) or not 55 <= len(value) <= MAX_TRACEPARENT:
        return None
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    version, trace, span, flags, rest = found.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None  # ff is forbidden; version 00 has exactly four fields
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags, 16)


def extract(headers: Iterable[tuple[str, Any]] | None) -> Parent | None:
    """The trace context in a record's headers, None when there is none or it is not well-formed."""
    traceparent = tracestate = None
    seen = 0
    for name, value in headers or ():
        if name == TRACEPARENT:
            traceparent = value
            seen += 1
        elif name == TRACESTATE:
            tracestate = value
    if seen != 1:
        return None  # absent, or repeated: two parents are no parent
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    return Parent(trace_id, span_id, bool(flags & SAMPLED), _valid_tracestate(tracestate))


def _valid_tracestate(value: object) -> bytes | None:
    if type(value) is str:
        value = value.encode("ascii", "replace")
    if not isinstance(value, bytes) or not value or len(value) > MAX_TRACESTATE:
        return None
    return value if _TRACESTATE.fullmatch(value) else None


def traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    """A version-00 ``traceparent`` header value."""
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def with_context(headers: Sequence[tuple[str, bytes]] | None, value: bytes,
                 tracestate: bytes | None) -> list[tuple[str, bytes]]:
    """An output record's headers: its input's, with the trace context replaced by ``value``."""
    kept = [(name, v) for name, v in headers or () if name != TRACEPARENT and name != TRACESTATE]
    kept.append((TRACEPARENT, value))
    if tracestate is not None:
        kept.append((TRACESTATE, tracestate))
    return kept
