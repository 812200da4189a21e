"""The replay loop: dead letters up to the end offsets taken at start, the selected ones re-published
to the input topic, offsets committed behind the broker's acknowledgements.

Each step follows the commit protocol, in this order (each has its place in ``_step``):
    1. fetch dead-letter records (partitions that reached their end offset are paused);
    2. judge every record below its partition's end offset: selected, other stage, outside the
       time window, or unreadable (``selection``);
    3. publish the selected ones (``KafkaSink.publish``) and wait until the broker acknowledged
       every one of them;
    4. commit, per partition, the offset after the last record judged: so a dead-letter offset is
       committed only after its re-publish, and that of every earlier selected record of its
       partition, is acknowledged. Skipped and unreadable records are committed as done.
A crash between 3 and 4 re-publishes that step's records on the next run: at-least-once, with
duplicates only among the records after the last commit.

Steps run one at a time under a lock that a rebalance also takes, so a partition is revoked only
between steps, after its commit; records fetched before a revocation are dropped and fetched again
by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from gateway.commands.replay.options import FETCH_TIMEOUT_S
from gateway.commands.replay.selection import Selection, Unreadable, Verdict, replay_message
from gateway.commands.replay.topics import Layout, ReplayError
from gateway.kafka.aiokafka_client import RebalanceListener
from gateway.kafka.sink import KafkaSink, Message
from gateway.stream.records import InputRecord


@dataclass(slots=True)
class Tally:
    """What the summary reports; ``to_read`` counts offsets from each partition's start to its end."""

    read: int = 0
    selected: int = 0
    republished: int = 0
    skipped_stage: int = 0
    skipped_time: int = 0
    unreadable: int = 0
    to_read: int = 0
    partitions: int = 0
    commit_failures: int = 0

    def add(self, verdicts: Mapping[Verdict, int]) -> None:
        self.selected += verdicts.get(Verdict.SELECTED, 0)
        self.skipped_stage += verdicts.get(Verdict.OTHER_STAGE, 0)
        self.skipped_time += verdicts.get(Verdict.OUTSIDE_TIME, 0)
        self.unreadable += verdicts.get(Verdict.UNREADABLE, 0)
        self.read += sum(verdicts.values())


@dataclass(frozen=True, slots=True)
class Plan:
    selection: Selection
    input_topic: str
    layout: Layout
    max_records: int
    rate: float | None = None  # records re-published per second at most


# (dead-letter record, why it is unreadable)
UnreadableSink = Callable[[InputRecord, str], None]
ProgressSink = Callable[["Replayer"], None]


class Replayer:
    """Runs steps until every partition it owns reached its end offset, or ``stop`` is set.

    ``sink`` None is a dry run: nothing is published; ``commit`` False: nothing is committed.
    A partition starts at the group's committed offset (its first offset when nothing was committed
    yet), unless ``starts`` fixes where (a dry run), or ``rewind`` sends every partition back to its
    first offset when it is first assigned in this run (``--from-beginning``).
    """

    def __init__(self, consumer: AIOKafkaConsumer, plan: Plan, *, sink: KafkaSink | None, commit: bool,
                 on_unreadable: UnreadableSink, starts: Mapping[TopicPartition, int] | None = None,
                 rewind: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.plan = plan
        self.tally = Tally()
        self._sink = sink
        self._commit = commit
        self._on_unreadable = on_unreadable
        self._starts = dict(starts or {})  # taken once: a partition handed back resumes from its commit
        self._rewind = rewind
        self._rewound: set[TopicPartition] = set()
        self._clock = clock
        self._next: dict[TopicPartition, int] = {}  # next offset to judge, per owned partition
        self._counted: set[TopicPartition] = set()
        self._lock = asyncio.Lock()
        self._joined = asyncio.Event()
        self.joined_at: float | None = None  # by ``clock``: progress counts its rate from here
        self._paced = 0
        self._paced_since: float | None = None

    # ---- group membership ---------------------------------------------------------------------

    @property
    def joined(self) -> bool:
        """Partitions were assigned (an empty assignment counts: another replay holds them all)."""
        return self._joined.is_set()

    def listener(self) -> RebalanceListener:
        return RebalanceListener(self.revoked, self._on_assigned)

    async def _on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.assigned(partitions)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        async with self._lock:  # waits for the step under way: it commits before the partition goes
            for tp in partitions:
                self._next.pop(tp, None)

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """Runs before any record of the new assignment is fetched, so a seek here holds."""
        if self.joined_at is None:
            self.joined_at = self._clock()
        self._joined.set()
        self.tally.partitions = len(partitions)
        if self._rewind:
            for tp in partitions - self._rewound:
                self._rewound.add(tp)
                self._starts[tp] = self.plan.layout.start_of(tp, None)
                self.consumer.seek(tp, self._starts[tp])

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, show: ProgressSink, join_timeout_s: float) -> bool:
        """True when every owned partition reached its end offset; False when stopped first."""
        if not await self._join(stop, show, join_timeout_s):
            return False
        while not stop.is_set():
            data = await self.consumer.getmany(timeout_ms=int(FETCH_TIMEOUT_S * 1000),
                                               max_records=self.plan.max_records)
            finished = await self._step(data, stop)
            show(self)
            if finished:
                return True
        return False

    async def _join(self, stop: asyncio.Event, show: ProgressSink, timeout_s: float) -> bool:
        """Wait for the first assignment here rather than in ``getmany`` (which waits for it, deaf to
        its timeout), so progress is shown and a stop is heeded while the group forms."""
        deadline = self._clock() + timeout_s
        while not self.joined:
            if stop.is_set():
                return False
            if self._clock() > deadline:
                raise ReplayError(f"the consumer group assigned no partitions within {timeout_s:g}s")
            show(self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), FETCH_TIMEOUT_S)
        return True

    async def _step(self, data: Mapping[TopicPartition, list[InputRecord]], stop: asyncio.Event) -> bool:
        async with self._lock:
            owned = set(self.consumer.assignment())
            await self._start_new(owned)
            # 1-2: judge what was fetched, below each partition's end offset
            messages: list[Message] = []
            commits: dict[TopicPartition, int] = {}
            verdicts: dict[Verdict, int] = {}
            unreadable: list[tuple[InputRecord, str]] = []
            for tp, records in data.items():
                next_offset = self._next.get(tp)
                if next_offset is None:
                    continue  # revoked since the fetch
                end = self.plan.layout.end_of(tp)
                for record in records:
                    if record.offset < next_offset:
                        continue  # judged before a rebalance handed the partition back
                    if record.offset >= end:
                        break
                    verdict, found = self.plan.selection.judge(record)
                    verdicts[verdict] = verdicts.get(verdict, 0) + 1
                    if verdict is Verdict.SELECTED and not isinstance(found, Unreadable):
                        messages.append(replay_message(record, found, self.plan.input_topic))
                    elif isinstance(found, Unreadable):
                        unreadable.append((record, found.reason))
                    next_offset = record.offset + 1
                if next_offset != self._next[tp]:
                    commits[tp] = next_offset
            # 3: publish and wait for every acknowledgement
            if messages and self._sink is not None:
                if not await self._pace(len(messages), stop):
                    return False  # stopped while pacing: nothing of this step happened
                await self._sink.publish(messages)
                self.tally.republished += len(messages)
            # 4: commit behind the acknowledgements
            if commits and self._commit:
                await self._commit_offsets(commits)
            self._next.update(commits)
            self.tally.add(verdicts)
            for record, reason in unreadable:
                self._on_unreadable(record, reason)
            return await self._finished(owned)

    async def _start_new(self, owned: set[TopicPartition]) -> None:
        for tp in owned - self._next.keys():
            start = self._starts.pop(tp, None)
            if start is None:
                start = self.plan.layout.start_of(tp, await self.consumer.committed(tp))
            elif self._commit:  # rewound: a run interrupted before its first step goes on from here
                await self._commit_offsets({tp: start})
            self._next[tp] = start
            if tp not in self._counted:  # a partition handed back by a rebalance counts once
                self._counted.add(tp)
                self.tally.to_read += max(0, self.plan.layout.end_of(tp) - start)

    async def _finished(self, owned: set[TopicPartition]) -> bool:
        """Every owned partition judged up to its end offset (or fetched past it: offsets taken by
        transaction markers are never handed out as records)."""
        if not self.joined:
            return False
        done = True
        for tp in owned:
            end = self.plan.layout.end_of(tp)
            if self._next.get(tp, 0) >= end or await self._position(tp) >= end:
                if tp not in self.consumer.paused():
                    self.consumer.pause(tp)
            else:
                done = False
        return done

    async def _position(self, tp: TopicPartition) -> int:
        try:
            return int(await self.consumer.position(tp))
        except IllegalStateError:  # revoked meanwhile: not ours to finish
            return 1 << 62

    async def _commit_offsets(self, commits: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(commits)
        except (KafkaError, IllegalStateError):
            # The records are re-published: what the next run (or the partition's next owner)
            # reads again it publishes again. Counted so the summary can say so.
            self.tally.commit_failures += 1

    async def _pace(self, n: int, stop: asyncio.Event) -> bool:
        """Hold ``--rate``: the n records go out when the ones before them have had their time."""
        rate = self.plan.rate
        if rate is None:
            return True
        now = self._clock()
        if self._paced_since is None:
            self._paced_since = now
        due = self._paced_since + self._paced / rate
        self._paced += n
        if due > now:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), due - now)
        return not stop.is_set()

