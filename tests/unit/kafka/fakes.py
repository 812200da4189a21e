"""In-memory implementations of the Kafka seam (``gateway.kafka.client``) and of the scoring lanes, for
fast pipeline tests: no sockets, no threads, every wait an asyncio event.

The consumer runs a queued rebalance inside ``fetch``, as a real client runs its rebalance
callbacks while the fetch loop waits; ``events`` records the lifecycle steps of every fake in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.backends.codec import ScoredRow
from gateway.config import Config, parse_config
from gateway.kafka.client import (
    BrokerRequestError,
    InputRecord,
    PartitionsCallback,
    ProducerFencedError,
    TopicPartition,
)
from gateway.runtime.metrics import Metrics, PipelineMetrics
from gateway.scoring.lanes import Lanes

IN = "in"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def config(*, delivery: str = "at_least_once", max_rows: int = 100, **kafka: Any) -> Config:
    doc = {"kafka": {"bootstrap_servers": "127.0.0.1:9", "commit_interval_ms": 20, **kafka},
           "pipelines": [{"name": "p", "input_topic": IN, "delivery": delivery, "transaction_interval_ms": 20,
                          "batching": {"max_rows": max_rows, "linger_ms": 0},
                          "backend": {"type": "qlik",
                                      "url": "https://h/api/v1/ml/deployments/d/realtime-predictions/actions/run"},
                          "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}
    return parse_config(doc, {})


def pipeline_metrics() -> tuple[CollectorRegistry, PipelineMetrics]:
    registry = CollectorRegistry()
    return registry, Metrics(registry).pipeline("p")


def published(registry: CollectorRegistry, outcome: str = "predicted") -> float:
    found = registry.get_sample_value("scoring_gateway_records_published_total", {"pipeline": "p", "outcome": outcome})
    return found or 0.0


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 2.0) -> None:
    """Wait for a condition (polled each few milliseconds), failing with ``what`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


class FakeConsumer:
    def __init__(self, events: list[str], partitions: int = 2) -> None:
        self.events = events
        self.partitions = partitions
        self.queued: dict[TopicPartition, list[Record]] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.commits: dict[TopicPartition, int] = {}
        self.seeks: dict[TopicPartition, int] = {}  # the last seek per partition
        self.commits_at_revoke: dict[TopicPartition, int] | None = None
        self.revoking = asyncio.Event()
        self.rebalanced = asyncio.Event()
        self._rebalances: list[tuple[set[TopicPartition], set[TopicPartition]]] = []
        self._callbacks: tuple[PartitionsCallback, PartitionsCallback] | None = None
        self._arrived = asyncio.Event()
        self._next: dict[TopicPartition, int] = {}

    def produce(self, tp: TopicPartition, *values: bytes | None) -> list[Record]:
        offset = self._next.get(tp, 0)
        records = [Record(tp.topic, tp.partition, offset + i, 1_000 + i, b"k%d" % i, value)
                   for i, value in enumerate(values)]
        self._next[tp] = offset + len(values)
        self.queued.setdefault(tp, []).extend(records)
        self._arrived.set()
        return records

    def rebalance(self, *, revoke: Iterable[TopicPartition] = (), assign: Iterable[TopicPartition] = ()) -> None:
        """Queued: run inside the next fetch, revocation first."""
        self._rebalances.append((set(revoke), set(assign)))
        self.rebalanced.clear()
        self._arrived.set()

    async def start(self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self.events.append("consumer.start")
        self._callbacks = (on_revoked, on_assigned)

    async def stop(self) -> None:
        self.events.append("consumer.stop")

    async def fetch(self, timeout_s: float, max_records: int) -> Mapping[TopicPartition, Sequence[InputRecord]]:
        if not self._rebalances and not self._ready():
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
        while self._rebalances and self._callbacks is not None:
            revoke, assign = self._rebalances.pop(0)
            on_revoked, on_assigned = self._callbacks
            if revoke:
                self.revoking.set()
                await on_revoked(revoke)
                self.commits_at_revoke = dict(self.commits)
                self.assigned -= revoke
                self.events.append("revoked")
            if assign:
                self.assigned |= assign
                await on_assigned(assign)
                self.events.append("assigned")
            self.rebalanced.set()
        found: dict[TopicPartition, Sequence[InputRecord]] = {}
        for tp in self._ready():
            take, self.queued[tp] = self.queued[tp][:max_records], self.queued[tp][max_records:]
            max_records -= len(take)
            if take:
                found[tp] = take
        return found

    def _ready(self) -> list[TopicPartition]:
        return [tp for tp in sorted(self.assigned - self.paused) if self.queued.get(tp)]

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused.difference_update(partitions)
        self._arrived.set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.update(offsets)

    def partitions_for(self, topic: str) -> set[int] | None:
        return set(range(self.partitions))

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._next.get(tp, 0) for tp in partitions}

    async def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in partitions}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.commits.get(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)


class FakeBatch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None,
               headers: Sequence[tuple[str, bytes]]) -> object | None:
        self.values.append(value)
        return object()


class FakeProducer:
    def __init__(self, events: list[str], name: str = "producer") -> None:
        self.events = events
        self.name = name
        self.sent: list[tuple[str, int, list[bytes | None]]] = []
        self.fail_start: BaseException | None = None

    async def start(self) -> None:
        self.events.append(f"{self.name}.start")
        if self.fail_start is not None:
            raise self.fail_start

    async def stop(self) -> None:
        self.events.append(f"{self.name}.stop")

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send(self, batch: FakeBatch, topic: str, partition: int) -> None:
        self.sent.append((topic, partition, batch.values))


class FakeTransactionalProducer(FakeProducer):
    """Keeps what each transaction carried; ``fenced`` makes every later step fail as fenced."""

    def __init__(self, events: list[str], transactional_id: str) -> None:
        super().__init__(events, f"txn[{transactional_id}]")
        self.open: list[bytes | None] | None = None
        self.committed: list[list[bytes | None]] = []
        self.offsets: list[int] = []
        self.fenced = False
        # Set by a test: the transaction's commit fails, and so does its abort (a fatal error), after
        # ``meanwhile`` ran (what another member did in the meantime).
        self.fatal = False
        self.meanwhile: Callable[[], None] = lambda: None

    async def start(self) -> None:
        self.events.append(f"{self.name}.start")

    def _check(self) -> None:
        if self.fenced:
            raise ProducerFencedError("ProducerFenced: another producer with this id started")

    async def send(self, batch: FakeBatch, topic: str, partition: int) -> None:
        self._check()
        if self.open is None:
            raise BrokerRequestError("send outside a transaction")
        self.open.extend(batch.values)

    async def begin_transaction(self) -> None:
        self._check()
        self.open = []

    async def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        self._check()
        self.offsets.extend(offsets.values())

    async def commit_transaction(self) -> None:
        self._check()
        if self.fatal:
            self.meanwhile()
            raise BrokerRequestError("IllegalOperation: Can't send messages while not in transaction")
        assert self.open is not None
        self.committed.append(self.open)
        self.open = None

    async def abort_transaction(self) -> None:
        self._check()
        if self.fatal:
            raise BrokerRequestError("Invalid state transition FATAL_ERROR -> ABORTING_TRANSACTION")
        self.open = None


@dataclass
class FakeClients:
    consumer_: FakeConsumer
    events: list[str] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)
    transactional: dict[str, FakeTransactionalProducer] = field(default_factory=dict)
    read_committed: bool | None = None
    fence: Callable[[str], bool] = lambda transactional_id: False  # fenced as soon as started


    def consumer(self, *, read_committed: bool) -> FakeConsumer:
        self.read_committed = read_committed
        return self.consumer_

    def producer(self) -> FakeProducer:
        producer = FakeProducer(self.events)
        self.producers.append(producer)
        return producer

    def transactional_producer(self, transactional_id: str) -> FakeTransactionalProducer:
        producer = self.transactional[transactional_id] = FakeTransactionalProducer(self.events, transactional_id)
        producer.fenced = self.fence(transactional_id)
        return producer


class FakeCodec:
    backend = "qlik"
    deployment = "d"

    def check_json_row(self, row: dict[str, Any]) -> str | None:
        return None


class FakeLane:
    """Scores every row at once, or when ``gate`` opens; ``scoring`` is set while a batch waits."""

    def __init__(self) -> None:
        self.codec = FakeCodec()
        self.gate: asyncio.Event | None = None
        self.scoring = asyncio.Event()
        self.holding = False
        self.limiter = None

    def has_capacity(self, in_flight: int) -> bool:
        return True

    async def score(self, rows: list[dict[str, Any]], sending: Callable[[], None],
                    trace: object = None) -> tuple[list[ScoredRow], float]:
        sending()
        self.scoring.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ScoredRow(prediction=1) for _ in rows], 1.0


def lanes_of(lane: FakeLane) -> Callable[..., contextlib.AbstractAsyncContextManager[Lanes]]:
    @contextlib.asynccontextmanager
    async def make(*_: Any) -> AsyncIterator[Lanes]:
        yield Lanes(lane, None)  # type: ignore[arg-type]

    return make
