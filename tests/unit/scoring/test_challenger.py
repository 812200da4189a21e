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
from tests.unit.scoring.fakes import until

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


def make(dispatcher: FakeDispatcher, *, slots: int = 2, sample_rate: float = 1.0, linger_ms: int = 0,
         max_rows: int = 500) -> tuple[Challenger, Published, CollectorRegistry]:
    """``linger_ms`` 0 by default: each champion batch's sample is a request of its own."""
    registry = CollectorRegistry()
    metrics = ComparisonMetrics(ComparisonFamilies(registry), "churn", "A", "B")
    config = ChallengerConfig.model_validate({"backend": BACKEND, "sample_rate": sample_rate,
                                              "linger_ms": linger_ms})
    publish = Published()
    challenger = Challenger(pipeline="churn", config=config, dispatcher=dispatcher, slots=slots,  # type: ignore[arg-type]
                            metrics=metrics, publish=publish, topic="cmp", champion=Side("qlik", "A", 0.0),
                            challenger=Side("datarobot", "B", 0.0), max_rows=max_rows)
    return challenger, publish, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, {"pipeline": "churn", "champion": "A", "challenger": "B", **labels})
    return found or 0.0


def batch(n: int, first: int = 0) -> tuple[list[Record], list[dict[str, Any]], list[Any]]:
    records = [Record(f"c{i}".encode(), offset=i) for i in range(first, first + n)]
    rows = [{"x": i} for i in range(first, first + n)]
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


# ---- gathering the samples of several champion batches into one request ---------------------------

async def test_samples_of_several_batches_fill_one_request_and_each_keeps_its_champion_latency() -> None:
    dispatcher = FakeDispatcher(answer=yes)
    challenger, published, registry = make(dispatcher, linger_ms=60_000, max_rows=10)
    async with challenger.running():
        challenger.offer(*batch(4), 11.0)
        challenger.offer(*batch(4, first=4), 22.0)
        assert dispatcher.calls == []  # 8 of 10 rows: waiting to fill
        challenger.offer(*batch(4, first=8), 33.0)  # 12 would be over 10: the 8 go, the 4 wait
        await until(lambda: len(dispatcher.calls) == 1)
        assert [row["x"] for row in dispatcher.calls[0]] == list(range(8))
        challenger.offer(*batch(6, first=12), 44.0)  # 10: full, sent at once
        await until(lambda: len(dispatcher.calls) == 2)
        assert [row["x"] for row in dispatcher.calls[1]] == list(range(8, 18))
        await settle(challenger)
    docs = [orjson.loads(m[2]) for m in published.messages]
    assert [d["id"] for d in docs] == [f"in/0/{i}" for i in range(18)]
    assert [d["champion"]["latency_ms"] for d in docs] == [11.0] * 4 + [22.0] * 4 + [33.0] * 4 + [44.0] * 6
    assert {d["challenger"]["latency_ms"] for d in docs} == {25.0}
    assert value(registry, "scoring_gateway_comparisons_total") == 18


async def test_a_request_that_does_not_fill_goes_out_after_linger_ms() -> None:
    dispatcher = FakeDispatcher(answer=yes)
    challenger, published, _ = make(dispatcher, linger_ms=20, max_rows=500)
    async with challenger.running():
        challenger.offer(*batch(3), 1.0)
        challenger.offer(*batch(2, first=3), 1.0)
        assert dispatcher.calls == []
        await until(lambda: len(published.messages) == 5)
    assert [len(rows) for rows in dispatcher.calls] == [5]


async def test_samples_waiting_to_fill_are_counted_as_skipped_at_shutdown() -> None:
    dispatcher = FakeDispatcher(answer=yes)
    challenger, published, registry = make(dispatcher, linger_ms=60_000)
    async with challenger.running():
        challenger.offer(*batch(3), 1.0)
    assert dispatcher.calls == [] and published.messages == []
    assert value(registry, "scoring_gateway_challenger_skipped_total", reason="shutdown") == 3


async def test_a_full_request_that_finds_no_slot_is_skipped_whole() -> None:
    gate = asyncio.Event()
    dispatcher = FakeDispatcher(answer=yes, gate=gate)
    challenger, published, registry = make(dispatcher, slots=1, linger_ms=60_000, max_rows=4)
    async with challenger.running():
        challenger.offer(*batch(4), 1.0)  # full: takes the only slot, and hangs
        challenger.offer(*batch(4, first=4), 1.0)  # full, no slot: skipped, not queued
        assert value(registry, "scoring_gateway_challenger_skipped_total", reason="busy") == 4
        gate.set()
        await settle(challenger)
    assert len(dispatcher.calls) == 1 and len(published.messages) == 4


async def test_when_the_pipeline_stops_waiting_samples_go_at_once_and_in_flight_ones_may_finish() -> None:
    gate = asyncio.Event()
    dispatcher = FakeDispatcher(answer=yes, gate=gate)
    challenger, published, registry = make(dispatcher, linger_ms=60_000)
    async with challenger.running():
        challenger.offer(*batch(3), 1.0)
        challenger.stopping()  # the 3 waiting to fill go now
        challenger.offer(*batch(2, first=3), 1.0)  # the last champion batches' samples go at once
        await until(lambda: len(dispatcher.calls) == 2)
        asyncio.get_running_loop().call_later(0.01, gate.set)
        await challenger.settle(5.0)
    assert len(published.messages) == 5
    assert value(registry, "scoring_gateway_challenger_skipped_total", reason="shutdown") == 0
