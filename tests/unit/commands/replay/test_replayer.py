"""The replay loop's commit protocol, against a scripted consumer and sink (no broker, no sleeping)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from gateway.commands.progress import plain_console
from gateway.commands.replay.progress import ReplayProgress, Summary, UnreadableWarnings
from gateway.commands.replay.replayer import Plan, Replayer, Tally
from gateway.commands.replay.selection import Selection
from gateway.commands.replay.topics import Layout
from gateway.stream.records import Rejected, dead_letter_document, dumps

DLQ = "churn-dead-letter"
P0, P1 = TopicPartition(DLQ, 0), TopicPartition(DLQ, 1)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int = 1_000
    key: bytes | None = None
    headers: Any = ()


def dead_letter(tp: TopicPartition, offset: int, stage: str = "score") -> Record:
    original = Record("churn-features", 0, offset, b'{"n": %d}' % offset)
    doc = dead_letter_document(original, Rejected(stage, "refused", 422, 1), pipeline="churn")
    return Record(tp.topic, tp.partition, offset, dumps(doc))


@dataclass
class ScriptedConsumer:
    """Hands out ``fetches`` one per ``getmany``, then nothing; logs commits into ``events``."""

    events: list[tuple[str, Any]]
    fetches: list[dict[TopicPartition, list[Record]]]
    owned: set[TopicPartition]
    commits: dict[TopicPartition, int] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    paused_tps: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.commits.get(tp)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
                      ) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0)
        data = self.fetches.pop(0) if self.fetches else {}
        for tp, records in data.items():
            if records:
                self.positions[tp] = records[-1].offset + 1
        return data

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.events.append(("commit", dict(offsets)))
        self.commits.update(offsets)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, self.commits.get(tp, 0))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps.update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)


@dataclass
class ScriptedSink:
    events: list[tuple[str, Any]]
    fail: bool = False

    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes | None, Any]]) -> None:
        if self.fail:
            raise RuntimeError("the broker went away")
        self.events.append(("publish", [dict(headers)["scoring-gateway-replayed-from"].decode()
                                        for _, _, _, headers in messages]))


def plan(end: dict[int, int], stages: frozenset[str] = frozenset({"score"})) -> Plan:
    return Plan(Selection("churn", stages), "churn-features", Layout(DLQ, dict.fromkeys(end, 0), end), 100)


async def run(replayer: Replayer) -> bool:
    return await asyncio.wait_for(replayer.run(asyncio.Event(), lambda _: None, join_timeout_s=5), 5)


def replayer_for(consumer: ScriptedConsumer, sink: Any, plan_: Plan, *, commit: bool = True) -> Replayer:
    replayer = Replayer(consumer, plan_, sink=sink, commit=commit, on_unreadable=lambda record, reason: None)  # type: ignore[arg-type]
    replayer.assigned(consumer.assignment())
    return replayer


async def test_every_commit_follows_the_acknowledgement_of_what_it_covers() -> None:
    events: list[tuple[str, Any]] = []
    fetches = [{P0: [dead_letter(P0, 0), dead_letter(P0, 1, "validate")], P1: [dead_letter(P1, 0)]},
               {P0: [dead_letter(P0, 2), dead_letter(P0, 3)]}]
    consumer = ScriptedConsumer(events, fetches, {P0, P1})
    replayer = replayer_for(consumer, ScriptedSink(events), plan({0: 3, 1: 1}))
    assert await run(replayer)
    assert events == [
        ("publish", [f"{DLQ}/0/0", f"{DLQ}/1/0"]), ("commit", {P0: 2, P1: 1}),
        ("publish", [f"{DLQ}/0/2"]), ("commit", {P0: 3}),  # offset 3 is past the end taken at start
    ]
    t = replayer.tally
    assert (t.read, t.selected, t.republished, t.skipped_stage, t.to_read) == (4, 3, 3, 1, 4)


async def test_a_publish_that_fails_commits_nothing() -> None:
    events: list[tuple[str, Any]] = []
    consumer = ScriptedConsumer(events, [{P0: [dead_letter(P0, 0), dead_letter(P0, 1)]}], {P0})
    replayer = replayer_for(consumer, ScriptedSink(events, fail=True), plan({0: 2}))
    with pytest.raises(RuntimeError, match="went away"):
        await run(replayer)
    assert events == [] and consumer.commits == {}


async def test_records_below_the_committed_offset_are_not_replayed_again() -> None:
    events: list[tuple[str, Any]] = []
    consumer = ScriptedConsumer(events, [{P0: [dead_letter(P0, i) for i in range(4)]}], {P0}, commits={P0: 2})
    replayer = replayer_for(consumer, ScriptedSink(events), plan({0: 4}))
    assert await run(replayer)
    assert events == [("publish", [f"{DLQ}/0/2", f"{DLQ}/0/3"]), ("commit", {P0: 4})]
    assert replayer.tally.to_read == 2


async def test_the_end_is_reached_when_the_position_passes_it_without_records() -> None:
    """Offsets held by transaction markers are never handed out: the position still passes them."""
    events: list[tuple[str, Any]] = []
    consumer = ScriptedConsumer(events, [{P0: [dead_letter(P0, 0)]}], {P0})
    consumer.positions[P0] = 0
    replayer = replayer_for(consumer, ScriptedSink(events), plan({0: 3}))

    async def past_the_marker(tp: TopicPartition) -> int:
        return 3

    consumer.position = past_the_marker  # type: ignore[method-assign]
    assert await run(replayer)
    assert consumer.paused_tps == {P0}


async def test_a_dry_run_counts_and_neither_publishes_nor_commits() -> None:
    events: list[tuple[str, Any]] = []
    consumer = ScriptedConsumer(events, [{P0: [dead_letter(P0, 0), dead_letter(P0, 1, "decode")]}], {P0})
    replayer = replayer_for(consumer, None, plan({0: 2}), commit=False)
    assert await run(replayer)
    assert events == [] and consumer.commits == {}
    assert (replayer.tally.selected, replayer.tally.republished, replayer.tally.skipped_stage) == (1, 0, 1)


async def test_records_of_a_partition_revoked_since_the_fetch_are_dropped() -> None:
    events: list[tuple[str, Any]] = []
    consumer = ScriptedConsumer(events, [], {P0, P1})
    replayer = replayer_for(consumer, ScriptedSink(events), plan({0: 1, 1: 1}))
    await replayer._start_new({P0, P1})
    await replayer.revoked({P1})
    consumer.owned = {P0}
    fetched = {P0: [dead_letter(P0, 0)], P1: [dead_letter(P1, 0)]}
    assert await replayer._step(fetched, asyncio.Event())
    assert events == [("publish", [f"{DLQ}/0/0"]), ("commit", {P0: 1})]


# ---- what the operator sees --------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_at_most_a_line_a_second() -> None:
    clock, out = Clock(), io.StringIO()
    replayer = Replayer(ScriptedConsumer([], [], set()), plan({0: 10}), sink=None, commit=False,
                        on_unreadable=lambda record, reason: None, clock=clock)  # type: ignore[arg-type]
    view = ReplayProgress(plain_console(out), "g.replay.churn", clock=clock)
    view.show(replayer)
    clock.now += 0.5
    view.show(replayer)
    assert out.getvalue().splitlines() == [
        "progress: waiting 0s for consumer group g.replay.churn to assign partitions"]
    replayer.assigned({P0})
    replayer.tally.read, replayer.tally.to_read, replayer.tally.republished, replayer.tally.skipped_time = 4, 10, 3, 1
    clock.now += 2.0
    view.show(replayer)
    assert out.getvalue().splitlines()[-1] == \
        "progress: 4/10 read (40%), 3 re-published, 1 skipped, 0 unreadable, 2 records/s"


def test_unreadable_warnings_stop_at_the_limit_with_one_line_saying_so() -> None:
    out = io.StringIO()
    warn = UnreadableWarnings(out, limit=2)
    for offset in range(5):
        warn(Record(DLQ, 1, offset, b"x"), "not JSON")
    assert out.getvalue().splitlines() == [
        f"replay: unreadable dead-letter record {DLQ}/1/0: not JSON; skipped, not re-published",
        f"replay: unreadable dead-letter record {DLQ}/1/1: not JSON; skipped, not re-published",
        "replay: more than 2 unreadable dead-letter records: the rest are counted in the summary, not shown"]
    assert warn.seen == 5


def test_the_summary_says_what_a_dry_run_and_an_interrupted_run_did_not_do() -> None:
    tally = Tally(read=7, selected=5, skipped_stage=2, partitions=4)
    dry = Summary("churn", "score", DLQ, "churn-features", "g.replay.churn", "", dry_run=True, finished=False,
                  tally=tally, duration_s=1.25)
    text = "\n".join(dry.lines())
    assert "dry run: nothing published, nothing committed" in text
    assert "stopped before the end: run the same command again" in text
    assert dry.machine() | {"duration_s": 0} == {
        "pipeline": "churn", "stage": "score", "dead_letter_topic": DLQ, "input_topic": "churn-features",
        "group": "g.replay.churn", "dry_run": True, "finished": False, "read": 7, "selected": 5, "republished": 0,
        "skipped_stage": 2, "skipped_time": 0, "unreadable": 0, "partitions": 4, "commit_failures": 0,
        "duration_s": 0}
