"""Comparison records: sampling by key, agreement and difference, the record's fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from gateway.backends.codec import ScoredRow
from gateway.stream.comparisons import Side, agreement, comparisons, sampled_by_key
from gateway.stream.records import Rejected


@dataclass
class Record:
    key: bytes | None
    offset: int = 0
    topic: str = "churn-features"
    partition: int = 0
    timestamp: int = 0
    value: bytes | None = b"{}"
    headers: Any = ()


def test_sampling_by_key_is_stable_and_takes_the_asked_share() -> None:
    keys = [f"customer-{i}".encode() for i in range(20_000)]
    chosen = [k for k in keys if sampled_by_key(Record(k), 0.1)]
    assert 0.09 < len(chosen) / len(keys) < 0.11
    # the same customer is chosen whatever its offset or partition (another replica, a restart)
    assert all(sampled_by_key(Record(k, offset=99, partition=5), 0.1) for k in chosen)
    assert not any(sampled_by_key(Record(k), 0.0) for k in keys[:100])
    assert all(sampled_by_key(Record(k), 1.0) for k in keys[:100])


def test_a_record_without_a_key_is_sampled_by_its_id() -> None:
    picks = {sampled_by_key(Record(None, offset=i), 0.5) for i in range(200)}
    assert picks == {True, False}
    assert sampled_by_key(Record(None, offset=7), 0.5) == sampled_by_key(Record(None, offset=7), 0.5)


def binary(label: str, yes: float) -> ScoredRow:
    return ScoredRow(prediction=label, probabilities={"no": 1 - yes, "yes": yes})


def test_binary_agreement_and_difference_of_the_positive_class() -> None:
    assert agreement(binary("yes", 0.6), binary("yes", 0.7), 0.0) == (True, pytest.approx(0.1))
    assert agreement(binary("yes", 0.6), binary("no", 0.4), 0.0) == (False, pytest.approx(-0.2))


def test_multiclass_difference_is_of_the_champions_class() -> None:
    ours = ScoredRow(prediction="high", probabilities={"high": 0.5, "low": 0.2, "medium": 0.3})
    theirs = ScoredRow(prediction="medium", probabilities={"high": 0.3, "low": 0.2, "medium": 0.5})
    assert agreement(ours, theirs, 0.0) == (False, pytest.approx(-0.2))


def test_regression_agrees_within_the_tolerance() -> None:
    assert agreement(ScoredRow(prediction=100.0), ScoredRow(prediction=100.4), 0.5) == (True, pytest.approx(0.4))
    assert agreement(ScoredRow(prediction=100.0), ScoredRow(prediction=101.0), 0.5) == (False, pytest.approx(1.0))


def test_a_refusal_on_either_side_compares_nothing() -> None:
    refused = Rejected("score", "bad value", 422)
    assert agreement(refused, binary("yes", 0.6), 0.0) == (None, None)
    assert agreement(binary("yes", 0.6), refused, 0.0) == (None, None)


def test_comparison_records_carry_both_sides_keyed_like_their_inputs() -> None:
    records = [Record(b"a", offset=1, headers=[("h", b"1")]), Record(b"b", offset=2)]
    champion = [binary("yes", 0.6), binary("no", 0.2)]
    challenger = [binary("yes", 0.65), Rejected("not_predicted", "Feature 'BaseFee': not a number", 200)]
    out = comparisons(records, champion, challenger, pipeline="churn", topic="churn-comparisons",
                      sides=(Side("qlik", "A", 12.0), Side("datarobot", "B", 30.5)), tolerance=0.0)
    assert (out.both, out.agreed) == (1, 1) and out.differences == [pytest.approx(0.05)]
    (topic, key, value, headers), second = out.messages
    assert (topic, key, headers) == ("churn-comparisons", b"a", [("h", b"1")])
    doc = orjson.loads(value)
    assert list(doc) == ["id", "pipeline", "champion", "challenger", "agree", "difference"]
    assert doc["id"] == "churn-features/0/1" and doc["agree"] is True
    assert doc["champion"] == {"backend": "qlik", "deployment": "A", "prediction": "yes",
                               "probabilities": {"no": pytest.approx(0.4), "yes": 0.6}, "latency_ms": 12.0,
                               "refused": None}
    refused = orjson.loads(second[2])
    assert refused["agree"] is None and refused["difference"] is None
    assert refused["challenger"]["refused"] == {"stage": "not_predicted",
                                                "reason": "Feature 'BaseFee': not a number", "status": 200}
    assert refused["challenger"]["prediction"] is None
