"""``scoring-gateway replay`` without a broker: times, dead-letter documents, selection, what is published."""

from __future__ import annotations

import argparse
import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.cli import build_parser
from gateway.commands.replay.options import PROVENANCE_HEADER, ReplayOptions, UsageError, parse_time, replay_group
from gateway.commands.replay.selection import (
    DeadLetter,
    Selection,
    Unreadable,
    Verdict,
    read_dead_letter,
    replay_message,
)
from gateway.kafka.source import decode_value
from gateway.stream.records import Rejected, dead_letter_document, dumps


@dataclass
class Record:
    """The fields of a consumed Kafka record that the replay reads."""

    value: bytes | None
    topic: str = "churn-features"
    partition: int = 2
    offset: int = 40
    timestamp: int = 1_763_800_000_000
    key: bytes | None = b"customer-7"
    headers: Any = field(default_factory=lambda: (("trace", b"abc"),))


def dead_letter_of(original: bytes | None, rejected: Rejected | None = None, **where: Any) -> Record:
    """What the gateway itself writes to the dead-letter topic for ``original``."""
    if rejected is None:
        decoded = decode_value(original)
        rejected = decoded if isinstance(decoded, Rejected) else Rejected("score", "HTTP 422", 422, 1)
    doc = dead_letter_document(Record(original), rejected, pipeline="churn")
    return Record(dumps(doc), topic="churn-dead-letter", **where)


# ---- times ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2025-11-22T08:30:00Z", 1_763_800_200_000),
    ("2025-11-22T08:30:00+00:00", 1_763_800_200_000),
    ("2025-11-22T10:30:00+02:00", 1_763_800_200_000),
    ("2025-11-22T08:30:00", 1_763_800_200_000),  # no zone: UTC
    ("2025-11-22 08:30:00.250", 1_763_800_200_250),
    ("2025-11-22", 1_763_769_600_000),
    ("1763800200000", 1_763_800_200_000),
    (" 1763800200123 ", 1_763_800_200_123),
])
def test_times_in_every_documented_form(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(("text", "complaint"), [
    ("1763800200", "looks like epoch seconds"),
    ("yesterday", "neither an ISO-8601 time"),
    ("2025-13-01", "neither an ISO-8601 time"),
])
def test_unusable_times_are_refused_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=complaint):
        parse_time(text)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["replay", "--config", "gw.yaml", "--pipeline", "churn", *argv])


def test_the_command_line_defaults_to_stage_score() -> None:
    options = ReplayOptions.from_args(parse())
    assert (options.stage, options.stages) == ("score", frozenset({"score"}))
    assert (options.since_ms, options.until_ms, options.dry_run, options.from_beginning, options.rate) == \
        (None, None, False, False, None)
    assert ReplayOptions.from_args(parse("--stage", "all")).stages == \
        frozenset({"score", "not_predicted", "validate", "decode"})


@pytest.mark.parametrize("argv", [["--stage", "predicted"], ["--since", "soon"], ["--rate", "0"], ["--rate", "x"]])
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_an_empty_time_window_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"--since \(2025-11-22T08:30:00.000Z\) must be before --until"):
        ReplayOptions.from_args(parse("--since", "2025-11-22T08:30:00Z", "--until", "1763800200000"))


def test_the_replay_group_is_derived_from_the_group_id_and_the_pipeline() -> None:
    assert replay_group("scoring-gateway", "churn") == "scoring-gateway.replay.churn"


# ---- dead-letter documents, as the gateway writes them ---------------------------------------

def test_a_text_value_comes_back_byte_for_byte() -> None:
    original = '{"PlanType": "Prémium", "BaseFee": "$80.00", "note": "a\\u0000b"}'.encode()
    found = read_dead_letter(dead_letter_of(original).value, "churn")
    assert found == DeadLetter("churn-features/2/40", "score", original)


def test_a_value_that_is_not_utf8_comes_back_from_raw_base64() -> None:
    original = b"\xff\xfe{not utf-8}\x00"
    record = dead_letter_of(original)
    assert "raw_base64" in orjson.loads(record.value)
    found = read_dead_letter(record.value, "churn")
    assert isinstance(found, DeadLetter) and (found.stage, found.value) == ("decode", original)


def test_a_tombstone_comes_back_as_a_tombstone_and_an_empty_value_as_an_empty_value() -> None:
    tombstone = read_dead_letter(dead_letter_of(None).value, "churn")
    empty = read_dead_letter(dead_letter_of(b"").value, "churn")
    assert isinstance(tombstone, DeadLetter) and tombstone.value is None
    assert isinstance(empty, DeadLetter) and empty.value == b""


def document(**changes: Any) -> bytes:
    doc = orjson.loads(dead_letter_of(b'{"BaseFee": 1}').value)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(("value", "reason"), [
    (None, "no value"),
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (document(id=None), "no string field 'id'"),
    (document(stage="later"), "unknown stage 'later'"),
    (document(source=None), "no object field 'source'"),
    (document(raw=None), "exactly one of 'raw' and 'raw_base64'"),
    (document(raw_base64="AAAA"), "exactly one of 'raw' and 'raw_base64'"),
    (document(raw=None, raw_base64="not base64!"), "not base64"),
    (document(raw=7), "'raw' is not a string"),
    (document(pipeline="fraud"), "a dead letter of pipeline 'fraud', not 'churn'"),
])
def test_records_that_are_not_dead_letters_of_the_pipeline_are_unreadable(value: bytes | None, reason: str) -> None:
    found = read_dead_letter(value, "churn")
    assert isinstance(found, Unreadable) and reason in found.reason


# ---- selection ---------------------------------------------------------------------------------

def test_stage_then_time_decide_with_since_inclusive_and_until_exclusive() -> None:
    since, until = 1_000_000_000_000, 1_000_000_001_000
    selection = Selection("churn", frozenset({"score"}), since, until)
    score = dead_letter_of(b'{"a": 1}').value
    validate = dead_letter_of(b'{"a": 1}', Rejected("validate", "object value")).value

    def verdict(value: bytes | None, ts: int) -> Verdict:
        return selection.judge(Record(value, timestamp=ts))[0]

    assert verdict(score, since) is Verdict.SELECTED
    assert verdict(score, until - 1) is Verdict.SELECTED
    assert verdict(score, since - 1) is Verdict.OUTSIDE_TIME
    assert verdict(score, until) is Verdict.OUTSIDE_TIME
    assert verdict(validate, since) is Verdict.OTHER_STAGE
    assert verdict(b"{}", since) is Verdict.UNREADABLE
    assert Selection("churn", frozenset({"score"})).judge(Record(score, timestamp=0))[0] is Verdict.SELECTED


def test_the_republished_record_keeps_value_key_and_headers_and_names_its_dead_letter() -> None:
    record = dead_letter_of(b'{"a": 1}', partition=3, offset=17)
    record.headers = (("trace", b"abc"), (PROVENANCE_HEADER, b"older-dlq/0/1"), ("tenant", b"eu"))
    found = read_dead_letter(record.value, "churn")
    assert isinstance(found, DeadLetter)
    topic, key, value, headers = replay_message(record, found, "churn-features")
    assert (topic, key, value) == ("churn-features", b"customer-7", b'{"a": 1}')
    assert list(headers) == [("trace", b"abc"), ("tenant", b"eu"), (PROVENANCE_HEADER, b"churn-dead-letter/3/17")]


def test_base64_is_decoded_strictly() -> None:
    assert base64.b64encode(b"\xff") == b"/w=="
    found = read_dead_letter(document(raw=None, raw_base64="/w=="), "churn")
    assert isinstance(found, DeadLetter) and found.value == b"\xff"
