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

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Version 00 is exactly 55 characters; a later version may append fields after a '-', but a header
# this long is not trace context anyone sent in good faith.
MAX_TRACEPARENT = 512
# W3C: at most 32 list members; 512 characters is what every vendor must pass on.
MAX_TRACESTATE = 512
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")
_TRACESTATE = re.compile(rb"[\x20-\x7e]*")
# Version 00 with non-zero ids (the look-aheads cost nothing here; comparing slices would double it).
_VERSION_00 = re.compile(rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
# The last hex digit of the flags: odd means sampled.
ODD_DIGITS = frozenset(b"13579bdf")
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


def find(headers: Iterable[tuple[str, object]]) -> bytes | None:
    """The record's ``traceparent`` value when it has exactly one and it is well-formed, else None:
    what the pipeline reads of every record, so the usual form (bytes, version 00) is checked by one
    regular expression and no id is converted; another version comes back as its version-00 part."""
    found = None
    for name, value in headers:
        if name == TRACEPARENT:
            if found is not None:
                return None  # two parents are no parent
            found = value
    if found is None:
        return None
    if type(found) is bytes and _VERSION_00.fullmatch(found):
        return found
    return _normalised(found)


def _normalised(value: object) -> bytes | None:
    """Another version's (or a text) ``traceparent`` as the version-00 bytes it starts with."""
    parsed = parse_traceparent(value)
    return None if parsed is None else traceparent(parsed[0], parsed[1], bool(parsed[2] & SAMPLED))


def is_sampled(value: bytes) -> bool:
    """Whether a value :func:`find` returned says sampled."""
    return value[54] in ODD_DIGITS


def child(value: bytes, span_hex: bytes) -> bytes:
    """The ``traceparent`` of a span with id ``span_hex`` under the context ``value`` (from :func:`find`)."""
    return value[:36] + span_hex + value[52:]


def extract(headers: Iterable[tuple[str, object]] | None) -> Parent | None:
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


def with_context(headers: Sequence[tuple[str, bytes]] | None, value: bytes) -> list[tuple[str, bytes]]:
    """An output record's headers: its input's, with ``traceparent`` replaced by ``value``. The
    input's ``tracestate`` stays: the output continues the input's trace, and its vendors' state."""
    kept = [(name, v) for name, v in headers or () if name != TRACEPARENT]
    kept.append((TRACEPARENT, value))
    return kept
