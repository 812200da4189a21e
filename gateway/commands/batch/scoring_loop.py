"""The scoring loop of a batch run: segments in, parts out, final files at the end.

For each segment, in input order, with at most ``in_flight_segments`` at a time:

1. rows that cannot be sent (unreadable records, values the codec's check refuses) become
   not-predicted outcomes, with the reason;
2. the rest go to the scorer in batches of ``max_rows``, all of a segment's batches at once (the
   dispatcher bounds the requests in flight and paces them);
3. a row whose retries ran out stops the run (the backend is unavailable, not the row wrong): the
   segment is not written and the run can be resumed;
4. the segment's tables (:mod:`gateway.commands.batch.layout`) are written as its parts, then recorded in
   the state (:mod:`gateway.commands.batch.state` has the protocol).

When every segment is recorded, the final files are assembled and the state marked complete. A
stop request (a signal, or the dispatcher halting on an authentication or routing refusal)
cancels the work in flight and leaves the recorded segments for the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.commands.batch.layout import Layout
from gateway.commands.batch.progress import Progress
from gateway.commands.batch.scorer import Outcome, Scorer, is_transient
from gateway.commands.batch.segments import BatchInput, InputInfo, Segment
from gateway.commands.batch.state import RunState
from gateway.commands.batch.writeback import assemble, write_parts
from gateway.errors import CommandError
from gateway.stream.records import STAGE_VALIDATE, Rejected


class BatchStopped(CommandError):
    """The run stopped before the end; what it finished is kept for the next run."""

    def __init__(self, reason: str, *, signal: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signal = signal
        self.rows_done = 0
        self.rows_total = 0
        self.totals: dict[str, int] = {}  # the finished segments' counts


@dataclass
class StopRequest:
    """Set once, by a signal handler or the dispatcher's halt callback; the loop then stops."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    signal: int | None = None

    def set(self, reason: str, signal: int | None = None) -> None:
        if not self.event.is_set():
            self.reason, self.signal = reason, signal
            self.event.set()


@dataclass
class ScoringLoop:
    source: BatchInput
    info: InputInfo
    scorer: Scorer
    check_row: Callable[[Mapping[str, object]], str | None]
    layout: Layout
    state: RunState
    writeback: Path
    names: dict[str, str]
    fmt: str
    max_rows: int
    progress: Progress
    in_flight_segments: int = 2
    _persist_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self, stop: StopRequest) -> list[str]:
        """Score what is left, then assemble; returns the files written. Raises BatchStopped."""
        work = asyncio.create_task(self._score_all())
        stopper = asyncio.create_task(stop.event.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stopper):
                if not task.done():
                    task.cancel()
            await asyncio.wait({work, stopper})  # both end here; their outcomes are read below
        if not work.cancelled() and work.exception() is not None:
            raise _first(work.exception())  # type: ignore[arg-type]
        if stop.event.is_set() and (work.cancelled() or not self._all_done()):
            raise BatchStopped(stop.reason, signal=stop.signal)
        return await self._finish()

    def _all_done(self) -> bool:
        return self.state.rows_done >= self.info.rows

    async def _score_all(self) -> None:
        slots = asyncio.Semaphore(self.in_flight_segments)
        skip = set(self.state.done)
        async with asyncio.TaskGroup() as group:
            async for segment in self.source.segments(self.state.segment_rows, skip):
                await slots.acquire()
                task = group.create_task(self._segment(segment))
                task.add_done_callback(lambda _: slots.release())

    async def _segment(self, segment: Segment) -> None:
        outcomes = self._unsendable(segment)
        step = self.max_rows
        chunks: list[Sequence[int]]
        if len(outcomes) == 0:  # every row can be sent: batches are consecutive ranges
            chunks = [range(at, min(at + step, segment.size)) for at in range(0, segment.size, step)]
        else:
            sendable = [p for p in range(segment.size) if p not in outcomes]
            chunks = [sendable[at:at + step] for at in range(0, len(sendable), step)]
        batches = [_sendable(segment.rows, chunk) for chunk in chunks]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.scorer.score(batch)) for batch in batches]
        done: list[Outcome] = [None] * segment.size  # type: ignore[list-item]  # every position is filled below
        for position, outcome in outcomes.items():
            done[position] = outcome
        for chunk, task in zip(chunks, tasks, strict=True):
            scored, _ = task.result()
            if isinstance(chunk, range):
                done[chunk.start:chunk.stop] = scored
            else:
                for position, outcome in zip(chunk, scored, strict=True):
                    done[position] = outcome
        refused = [i for i, o in enumerate(done) if o.__class__ is Rejected]
        failed = next((done[i] for i in refused if is_transient(done[i])), None)
        if failed is not None:
            assert isinstance(failed, Rejected)
            raise BatchStopped(f"the scoring API kept failing: {failed.reason}")
        tables = self.layout.tables(segment, done, refused)
        counts = {"rows": segment.size, "predicted": segment.size - len(refused), "not_predicted": len(refused)}
        async with self._persist_lock:
            await asyncio.to_thread(write_parts, self.state.parts, segment.number, tables)
            if self.layout.facts.target is not None:
                self.state.target = self.layout.facts.target
            await asyncio.to_thread(self.state.record, segment.number, counts)
        self.progress.add(segment.size, counts["predicted"], len(refused))

    def _unsendable(self, segment: Segment) -> dict[int, Outcome]:
        """Rows that cannot be sent, by position: unreadable records and values the check refuses."""
        if segment.problems is not None:  # the reader checked typed columns: nothing left per row
            return {position: Rejected(STAGE_VALIDATE, problem) for position, problem in segment.problems.items()}
        outcomes: dict[int, Outcome] = {}
        check_row = self.check_row
        for position, row in enumerate(segment.rows):
            if isinstance(row, Rejected):
                outcomes[position] = row
                continue
            reason = check_row(row)
            if reason is not None:
                outcomes[position] = Rejected(STAGE_VALIDATE, reason)
        return outcomes

    async def _finish(self) -> list[str]:
        if self.state.rows_done != self.info.rows:
            raise BatchStopped(f"the finished segments hold {self.state.rows_done} rows but the input has "
                               f"{self.info.rows}: the input changed during the run; use --overwrite")
        files = await asyncio.to_thread(assemble, self.state.parts, self.writeback, self.names, self.fmt,
                                        self.state.done, self.layout.feature_order)
        await asyncio.to_thread(self.state.finish, files)
        return files


def _first(error: BaseException) -> BaseException:
    """The first failure inside (nested) task groups: a stop reason wins over what it caused."""
    if isinstance(error, BaseExceptionGroup):
        leaves = list(_leaves(error))
        return next((e for e in leaves if isinstance(e, BatchStopped)), leaves[0])
    return error


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def _sendable(rows: Sequence[dict[str, object] | Rejected], positions: Sequence[int]) -> list[dict[str, object]]:
    """The rows at ``positions``, none of which is a :class:`Rejected` (those are answered without
    sending): the ``isinstance`` test only narrows the type."""
    return [row for i in positions if not isinstance(row := rows[i], Rejected)]
