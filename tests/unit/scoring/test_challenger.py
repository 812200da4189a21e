"""The challenger lane with a fake dispatcher: what is compared, what is skipped, and that the
champion's side never waits for it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.backends.codec import ScoredRow
from gateway.config.models import ChallengerConfig
from gateway.runtime.comparison_metrics import ComparisonFamilies, ComparisonMetrics
from gateway.scoring.breaker import State
from gateway.scoring.challenger import Challenger
from gateway.stream.comparisons import Side
from gateway.stream.records import Rejected

BACKEND = {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/x/realtime-predictions/actions/run"}


@dataclass
class Record:
    key: bytes | None
    offset: int = 0
    topic: str = "in"
    partition: int = 0
    timestamp: int = 0
    value: bytes | None = b"{}"
    headers: Any = ()


@dataclass
class Breaker:
    state: State = State.CLOSED


@dataclass
class FakeDispatcher:
    """Answers each row with ``answer(row)``, after ``gate`` opens when one is set."""

    answer: Any = None
    gate: asyncio.Event | None = None
    breaker: Breaker = field(default_factory=Breaker)
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    async def score(self, rows: list[dict[str, Any]], sending: Any = None) -> tuple[list[Any], float]:
        self.calls.append(rows)
        if self.gate is not None:
            await self.gate.wait()
        return [self.answer(row) for row in rows], 25.0


def yes(row: dict[str, Any]) -> ScoredRow:
    return ScoredRow(prediction="yes", probabilities={"no": 0.3, "yes": 0.7})


class Published:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def __call__(self, messages: Any) -> None:
        self.messages.extend(messages)


def make(dispatcher: FakeDispatcher, *, slots: int = 2, sample_rate: float = 1.0
         ) -> tuple[Challenger, Published, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ComparisonMetrics(ComparisonFamilies(registry), "churn", "A", "B")
    config = ChallengerConfig.model_validate({"backend": BACKEND, "sample_rate": sample_rate})
    publish = Published()
    challenger = Challenger(pipeline="churn", config=config, dispatcher=dispatcher, slots=slots,  # type: ignore[arg-type]
                            metrics=metrics, publish=publish, topic="cmp", champion=Side("qlik", "A", 0.0),
                            challenger=Side("datarobot", "B", 0.0))
    return challenger, publish, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, {"pipeline": "churn", "champion": "A", "challenger": "B", **labels})
    return found or 0.0


def batch(n: int) -> tuple[list[Record], list[dict[str, Any]], list[Any]]:
    records = [Record(f"c{i}".encode(), offset=i) for i in range(n)]
    rows = [{"x": i} for i in range(n)]
    champion = [ScoredRow(prediction="yes" if i % 2 else "no", probabilities={"no": 0.5, "yes": 0.5})
                for i in range(n)]
    return records, rows, champion


async def settle(challenger: Challenger) -> None:
    while challenger._tasks:
        await asyncio.wait(set(challenger._tasks))


async def test_a_batch_is_compared_record_by_record_and_counted() -> None:
    challenger, published, registry = make(FakeDispatcher(answer=yes))
    async with challenger.running():
        challenger.offer(*batch(4), 12.5)
        await settle(challenger)
    assert len(published.messages) == 4
    docs = [orjson.loads(m[2]) for m in published.messages]
    assert [d["agree"] for d in docs] == [False, True, False, True]
    assert docs[0]["champion"]["latency_ms"] == 12.5 and docs[0]["challenger"]["latency_ms"] == 25.0
    assert value(registry, "scoring_gateway_comparisons_total") == 4
    assert value(registry, "scoring_gateway_comparisons_agreed_total") == 2


async def test_offer_returns_at_once_and_a_full_lane_skips_instead_of_queueing() -> None:
    gate = asyncio.Event()
    dispatcher = FakeDispatcher(answer=yes, gate=gate)
    challenger, published, registry = make(dispatcher, slots=1)
    async with challenger.running():
        challenger.offer(*batch(3), 1.0)  # takes the only slot, and hangs
        await asyncio.sleep(0)
        challenger.offer(*batch(5), 1.0)  # no slot: skipped, not queued
        assert len(dispatcher.calls) == 1
        assert value(registry, "scoring_gateway_challenger_skipped_total", reason="busy") == 5
        gate.set()
        await settle(challenger)
    assert len(published.messages) == 3


async def test_an_open_breaker_skips_the_batch() -> None:
    dispatcher = FakeDispatcher(answer=yes)
    dispatcher.breaker.state = State.OPEN
    challenger, published, registry = make(dispatcher)
    async with challenger.running():
        challenger.offer(*batch(2), 1.0)
    assert not dispatcher.calls and not published.messages
    assert value(registry, "scoring_gateway_challenger_skipped_total", reason="circuit_open") == 2


async def test_an_unavailable_challenger_is_skipped_and_a_refused_row_is_compared() -> None:
    def answer(row: dict[str, Any]) -> Any:
        if row["x"] == 0:
            return Rejected("score", "gave up after 1 attempts: 429 Too Many Requests", 429, 1)
        if row["x"] == 1:
            return Rejected("score", "invalid value", 422, 1)
        return yes(row)

    challenger, published, registry = make(FakeDispatcher(answer=answer))
    async with challenger.running():
        challenger.offer(*batch(3), 1.0)
        await settle(challenger)
    docs = [orjson.loads(m[2]) for m in published.messages]
    assert [d["id"] for d in docs] == ["in/0/1", "in/0/2"]
    assert docs[0]["challenger"]["refused"]["status"] == 422 and docs[0]["agree"] is None
    assert value(registry, "scoring_gateway_challenger_skipped_total", reason="unavailable") == 1
    assert value(registry, "scoring_gateway_comparisons_total") == 1  # the refused row is not a comparison


async def test_leaving_the_scope_cancels_what_is_in_flight() -> None:
    dispatcher = FakeDispatcher(answer=yes, gate=asyncio.Event())
    challenger, published, registry = make(dispatcher)
    async with challenger.running():
        challenger.offer(*batch(3), 1.0)
        await asyncio.sleep(0)
    assert not published.messages and not challenger._tasks
    assert value(registry, "scoring_gateway_challenger_skipped_total", reason="shutdown") == 3
    challenger.offer(*batch(2), 1.0)  # after the scope: counted, never started
    assert value(registry, "scoring_gateway_challenger_skipped_total", reason="shutdown") == 5


@pytest.mark.parametrize("rate", [0.0, 0.5])
async def test_only_sampled_keys_are_sent(rate: float) -> None:
    dispatcher = FakeDispatcher(answer=yes)
    challenger, published, _ = make(dispatcher, sample_rate=rate)
    async with challenger.running():
        challenger.offer(*batch(200), 1.0)
        await settle(challenger)
    sent = sum(len(rows) for rows in dispatcher.calls)
    assert sent == len(published.messages)
    assert (sent == 0) if rate == 0.0 else (60 < sent < 140)
