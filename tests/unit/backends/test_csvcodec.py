"""The CSV writer must read back exactly with ``csv.reader``, on both of its paths, and be fast."""

from __future__ import annotations

import csv
import io
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.backends import csvcodec
from gateway.backends.codec import row_tuples
from gateway.backends.csvcodec import CsvError, encode_csv, quote_field, read_csv

# Text that stresses both paths: JSON escapes, CSV specials, the tokens the JSON path rewrites.
TRICKY = st.sampled_from([",", '"', "\r", "\n", "\r\n", " ", "\t", "\\", "\x00", "\x01", "\x1f",
                          "null", "true", "false", "],[", "[", "{", "\u2028", "\x85", "é", "✓", "𝄞"])
TEXT = st.lists(st.one_of(st.characters(blacklist_categories=("Cs",)), TRICKY), max_size=8).map("".join)
VALUE = st.one_of(TEXT, st.integers(min_value=-(2**70), max_value=2**70),
                  st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans())


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[tuple]]:
    width = draw(st.integers(min_value=1, max_value=6))
    columns = draw(st.lists(TEXT, min_size=width, max_size=width))
    rows = draw(st.lists(st.tuples(*[VALUE] * width), max_size=8))
    return columns, rows


def expected_field(value: object) -> str | float:
    """What ``csv.reader`` must give back for a value (floats compared by value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return value if math.isfinite(value) else ""
    return str(value)


def assert_reads_back(columns: list[str], rows: list[tuple], out: bytes) -> None:
    text = out.decode("utf-8")
    assert text.endswith("\r\n")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == columns
    assert len(parsed) == len(rows) + 1
    for got, row in zip(parsed[1:], rows, strict=False):
        assert len(got) == len(row)
        for cell, value in zip(got, row, strict=False):
            want = expected_field(value)
            if isinstance(want, float):
                assert float(cell) == want and math.copysign(1, float(cell)) == math.copysign(1, want)
            else:
                assert cell == want


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_reads_back_exactly(table: tuple[list[str], list[tuple]]) -> None:
    columns, rows = table
    assert_reads_back(columns, rows, encode_csv(columns, rows))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_column_path_reads_back_exactly(table: tuple[list[str], list[tuple]]) -> None:
    columns, rows = table
    body = csvcodec._via_columns(rows, len(columns), "True", "False") if rows else b""
    out = encode_csv(columns, []) + (body + b"\r\n" if rows else b"")
    assert_reads_back(columns, rows, out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TEXT, st.floats(allow_nan=False, allow_infinity=False), st.none(),
                          st.booleans(), st.integers(-(2**63), 2**63)), min_size=1, max_size=10))
def test_json_path_taken_and_exact_for_json_scalars(rows: list[tuple]) -> None:
    columns = ["s", "f", "n", "b", "i"]
    body = csvcodec._via_json(rows, 5, b"True", b"False")
    assert body is not None  # every value is a JSON scalar: the fast path must not bail out
    assert_reads_back(columns, rows, encode_csv(columns, []) + body + b"\r\n")


def test_rfc4180_shapes() -> None:
    out = encode_csv(["a", "b,c", 'd"'], [("x y", ' lead', 'say "hi"'), ("line\nbreak", "cr\rlf", None),
                                            (1, 2.5, True)])
    assert out.startswith(b'a,"b,c","d"""\r\n')
    assert out.count(b"\r\n") == 4  # header + 3 rows; the LF and CR inside fields are quoted
    assert b'"say ""hi"""' in out


def test_none_is_empty_and_booleans_spelled() -> None:
    assert encode_csv(["a", "b"], [(None, True), (False, None)]) == b"a,b\r\n,True\r\nFalse,\r\n"
    assert encode_csv(["a"], [(True,)], true_text="true") == b"a\r\ntrue\r\n"


def test_single_column_empty_values_are_not_blank_lines() -> None:
    out = encode_csv(["only"], [(None,), ("",), ("x",)])
    assert list(csv.reader(io.StringIO(out.decode()))) == [["only"], [""], [""], ["x"]]
    out = csvcodec._via_columns([(None,), ("",)], 1, "True", "False")
    assert list(csv.reader(io.StringIO(out.decode()))) == [[""], [""]]


def test_values_outside_json_take_the_column_path() -> None:
    big = 2**80
    out = encode_csv(["big", "nested"], [(big, [1, 2]), (-big, {"k": "v"})])
    parsed = list(csv.reader(io.StringIO(out.decode())))
    assert parsed[1] == [str(big), "[1, 2]"]
    assert parsed[2] == [str(-big), "{'k': 'v'}"]


def test_non_finite_floats_are_empty() -> None:
    assert encode_csv(["x", "y"], [(math.nan, math.inf)]) == b"x,y\r\n,\r\n"
    assert csvcodec.format_value(-math.inf) == ""


def test_ragged_rows_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_csv(["a", "b"], [(1, 2), (3,)])


def test_quote_field() -> None:
    assert quote_field("plain") == "plain"
    assert quote_field(" x") == '" x"'
    assert quote_field("x\t") == '"x\t"'
    assert quote_field('a"b') == '"a""b"'


def test_header_only_when_no_rows() -> None:
    assert encode_csv(["a", "b"], []) == b"a,b\r\n"


# -- reading responses ----------------------------------------------------------------------------

def test_read_csv_round_trip_and_bom() -> None:
    body = "\ufeffa,b\r\n\"x,1\",\"multi\nline\"\r\n,2\r\n".encode()
    assert read_csv(body) == (["a", "b"], [["x,1", "multi\nline"], ["", "2"]])


@pytest.mark.parametrize("body, problem", [
    (b"", "no header"),
    (b"a,b\r\n1,2,3\r\n", "3 fields"),
    (b"a,b\r\n1\r\n", "1 fields"),
    (b'a,b\r\n"unterminated,2\r\n', "malformed"),
    (b'a,b\r\n"x"y,2\r\n', "malformed"),
    (b"a,b\r\n\xff\xfe,2\r\n", "not UTF-8"),
])
def test_read_csv_rejects_bad_bodies(body: bytes, problem: str) -> None:
    with pytest.raises(CsvError, match=problem):
        read_csv(body)


# -- speed ------------------------------------------------------------------------------------------

def _mixed_rows(count: int) -> tuple[list[str], list[dict]]:
    rng = random.Random(7)
    notes = ["", "renewal due", "called twice, no answer", 'said "too expensive"', "Zürich ✓", "two\nlines"]
    rows = [{"plan": rng.choice(["Standard", "Premium"]), "penalties": rng.randint(0, 5),
             "renewed": rng.random() < 0.5, "fee": round(rng.uniform(20, 120), 2),
             "tickets": rng.randint(0, 9), "spend": rng.uniform(0, 60) if rng.random() < 0.9 else None,
             "rating": round(rng.uniform(1, 5), 1), "promo": rng.random() < 0.3,
             "note": rng.choices(notes, [50, 30, 8, 2, 8, 2])[0], "score": rng.gauss(0, 1)}
            for _ in range(count)]
    return list(rows[0]), rows



def test_reads_back_like_csv_writer_output() -> None:
    """Speed against csv.writer is measured by benchmarks/bench_codecs.py, not asserted here."""
    columns, rows = _mixed_rows(500)

    def ours() -> bytes:
        return encode_csv(columns, row_tuples(columns, rows))

    def theirs() -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([row.get(name) for name in columns] for row in rows)
        return buffer.getvalue().encode()

    assert [r[:3] for r in csv.reader(io.StringIO(ours().decode()))] == \
        [r[:3] for r in csv.reader(io.StringIO(theirs().decode()))]
