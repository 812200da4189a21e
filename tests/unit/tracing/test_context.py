"""Trace context from record headers: valid, absent, malformed and hostile values (never an error)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.tracing.context import (
    MAX_TRACEPARENT,
    Parent,
    child,
    extract,
    find,
    is_sampled,
    parse_traceparent,
    traceparent,
    with_context,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01".encode()


def test_a_sampled_traceparent_and_its_tracestate() -> None:
    parent = extract([("other", b"x"), ("traceparent", VALID), ("tracestate", b"congo=t61rcWkgMzE")])
    assert parent == Parent(int(TRACE, 16), int(SPAN, 16), True, b"congo=t61rcWkgMzE")


def test_an_unsampled_traceparent() -> None:
    parent = extract([("traceparent", f"00-{TRACE}-{SPAN}-00".encode())])
    assert parent is not None and not parent.sampled and parent.tracestate is None


def test_a_later_version_may_carry_more_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-what-comes-next".encode()) == (int(TRACE, 16), int(SPAN, 16), 1)


def test_a_str_value_is_read_like_bytes() -> None:
    assert parse_traceparent(VALID.decode()) == (int(TRACE, 16), int(SPAN, 16), 1)


def test_absent_context() -> None:
    assert extract(None) is None
    assert extract([]) is None
    assert extract([("trace", b"t"), ("tracestate", b"a=b")]) is None


HOSTILE = {
    "too long for version 00": VALID + b"-extra",
    "too long for any version": b"01-" + TRACE.encode() + b"-" + SPAN.encode() + b"-01-" + b"x" * MAX_TRACEPARENT,
    "too short": VALID[:-1],
    "version ff": b"ff" + VALID[2:],
    "version not hex": b"0g" + VALID[2:],
    "upper-case hex": f"00-{TRACE.upper()}-{SPAN}-01".encode(),
    "all-zero trace id": f"00-{'0' * 32}-{SPAN}-01".encode(),
    "all-zero span id": f"00-{TRACE}-{'0' * 16}-01".encode(),
    "non-ASCII": VALID[:10] + "é".encode() + VALID[12:],
    "non-ASCII text": VALID.decode()[:10] + "éé" + VALID.decode()[12:],
    "wrong separators": VALID.replace(b"-", b"_"),
    "empty": b"",
    "not text at all": 42,
    "null": None,
    "a later version with a bad tail": f"01-{TRACE}-{SPAN}-01x".encode(),
}


def test_malformed_and_hostile_values_are_ignored() -> None:
    for what, value in HOSTILE.items():
        assert parse_traceparent(value) is None, what
        assert extract([("traceparent", value)]) is None, what


def test_two_traceparent_headers_are_no_context() -> None:
    assert extract([("traceparent", VALID), ("traceparent", VALID)]) is None


def test_a_hostile_tracestate_is_dropped_not_the_context() -> None:
    for tracestate in (b"a=" + b"b" * 600, "é=1".encode(), b"a=b\n", 7):
        parent = extract([("traceparent", VALID), ("tracestate", tracestate)])
        assert parent is not None and parent.tracestate is None


@given(st.lists(st.tuples(st.sampled_from(["traceparent", "tracestate", "x"]), st.binary(max_size=700))))
def test_no_header_value_raises(headers: list[tuple[str, bytes]]) -> None:
    parent = extract(headers)
    if parent is not None:
        assert parent.trace_id and parent.span_id


def test_the_output_headers_replace_the_traceparent_and_keep_the_rest() -> None:
    headers = [("a", b"1"), ("traceparent", VALID), ("b", b"2"), ("tracestate", b"old=1")]
    value = traceparent(int(TRACE, 16), 0xABC, True)
    assert value == f"00-{TRACE}-0000000000000abc-01".encode()
    assert with_context(headers, value) == [("a", b"1"), ("b", b"2"), ("tracestate", b"old=1"),
                                            ("traceparent", value)]
    assert with_context(None, value) == [("traceparent", value)]
    assert headers[1] == ("traceparent", VALID)  # the input's headers are left alone


def test_the_fast_path_agrees_with_the_parser() -> None:
    assert find([("x", b"1"), ("traceparent", VALID)]) == VALID and is_sampled(VALID)
    unsampled = f"00-{TRACE}-{SPAN}-00".encode()
    assert find([("traceparent", unsampled)]) == unsampled and not is_sampled(unsampled)
    assert not is_sampled(f"00-{TRACE}-{SPAN}-02".encode()) and is_sampled(f"00-{TRACE}-{SPAN}-03".encode())
    later = f"01-{TRACE}-{SPAN}-01-more".encode()
    assert find([("traceparent", later)]) == VALID  # another version, read as the version-00 part
    assert child(VALID, b"1" * 16) == f"00-{TRACE}-{'1' * 16}-01".encode()
    for what, value in HOSTILE.items():
        assert find([("traceparent", value)]) is None, what
    assert find([("traceparent", VALID), ("traceparent", VALID)]) is None
    assert find([]) is None


@given(st.binary(min_size=50, max_size=60))
def test_find_accepts_exactly_what_the_parser_accepts(value: bytes) -> None:
    assert (find([("traceparent", value)]) is not None) == (parse_traceparent(value) is not None)
