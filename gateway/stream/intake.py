"""Intake: records from the input topic into batches, under backpressure.

Each fetched record is tracked by the offset tracker, decoded (a JSON object, or ``Rejected`` at
stage ``decode`` with the reason ``source.decode_value`` gives), checked by the codec (sendable, or
``Rejected`` at stage ``validate``) and added to the batcher, which hands full batches on; rejects
go straight to the dead-letter topic.

Backpressure: at most ``max_in_flight_records`` records are between fetch and acknowledgement; the
consumer is paused at that mark and resumed below half of it, and also while the circuit breaker
holds requests back (the backend is out, or refuses the configuration), so a stalled or failing
backend never grows memory and never turns the stream into dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter

import orjson

from gateway.backends.codec import Codec
from gateway.delivery.offsets import OffsetTracker
from gateway.kafka.client import TopicPartition
from gateway.kafka.source import KafkaSource, decode_value
from gateway.runtime.metrics import PipelineMetrics
from gateway.stream.batcher import Batch, Batcher
from gateway.stream.records import STAGE_VALIDATE, InputRecord, Rejected

POLL_IDLE_S = 0.1
_OFFSET = attrgetter("offset")

Rejects = list[tuple[InputRecord, Rejected]]


class Intake:
    def __init__(self, *, source: KafkaSource, batcher: Batcher, codec: Codec, tracker: OffsetTracker,
                 metrics: PipelineMetrics, max_in_flight: int, max_poll_records: int,
                 holding: Callable[[], bool], slot_free: Callable[[], bool],
                 dispatch: Callable[[Batch], None], reject: Callable[[Rejects], None]) -> None:
        self.source = source
        self.batcher = batcher
        self.codec = codec
        self.tracker = tracker
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.low_water = max_in_flight // 2
        self.max_poll_records = max_poll_records
        self._holding = holding
        self._slot_free = slot_free
        self._dispatch = dispatch
        self._reject = reject
        self.in_flight = 0  # records fetched and not yet acknowledged (or abandoned)
        # Set when a paused consumer may resume (in-flight fell to the low-water mark, or the
        # backend accepts again), so the fetch loop wakes at once instead of at its next poll.
        self._may_resume = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        source, batcher = self.source, self.batcher
        while not stop.is_set():
            room = self.backpressure()
            if source.paused:
                await self._wait_for_room()
                continue
            deadline = batcher.deadline()
            wait = POLL_IDLE_S if deadline is None else max(0.0, min(POLL_IDLE_S, deadline - time.monotonic()))
            data = await source.fetch(wait, max(1, min(self.max_poll_records, room)))
            if stop.is_set() and not data:
                break
            self._take(data)
            if len(batcher) and (batcher.due() or self._slot_free()):
                self.send_pending()

    def _take(self, data: Mapping[TopicPartition, Sequence[InputRecord]]) -> None:
        """Track, decode, check and batch one fetch's records (the per-record loop: no awaits)."""
        batcher, check_row, dispatch = self.batcher, self.codec.check_json_row, self._dispatch
        loads, unreadable = orjson.loads, orjson.JSONDecodeError
        rejects: Rejects = []
        count = 0
        for tp, records in data.items():
            self.tracker.track(tp, list(map(_OFFSET, records)))
            count += len(records)
            for record in records:
                value = record.value
                try:
                    row = loads(value)  # type: ignore[arg-type]  # a tombstone's None raises the same error
                except unreadable:
                    row = None
                if type(row) is dict:
                    reason = check_row(row)
                    if reason is None:
                        batch = batcher.add(record, row)
                        if batch is not None:
                            dispatch(batch)
                        continue
                    rejects.append((record, Rejected(STAGE_VALIDATE, reason)))
                else:  # decode_value says why, once per refused record
                    rejects.append((record, decode_value(value)))  # type: ignore[arg-type]
        if count:
            self.in_flight += count
            self.metrics.consumed(count)
            self.metrics.inflight_records(self.in_flight)
        if rejects:
            self._reject(rejects)

    def send_pending(self) -> None:
        """Hand on the partial batch now (linger reached, a slot free, or draining)."""
        batch = self.batcher.take()
        if batch is not None:
            self._dispatch(batch)

    async def _wait_for_room(self) -> None:
        """While paused: send a lingering partial batch when due, else sleep until woken."""
        deadline = self.batcher.deadline()
        if deadline is not None and time.monotonic() >= deadline:
            self.send_pending()
            return
        timeout = POLL_IDLE_S if deadline is None else max(0.0, min(POLL_IDLE_S, deadline - time.monotonic()))
        self._may_resume.clear()
        if not self._holding() and self.in_flight <= self.low_water:
            return  # room was made just before the clear
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._may_resume.wait(), timeout)

    def backpressure(self) -> int:
        """Pause or resume the consumer; returns how many more records may be fetched now."""
        source = self.source
        room = self.max_in_flight - self.in_flight
        if self._holding() or room <= 0:
            if not source.paused:
                source.pause()
                self.metrics.paused(True)
        elif source.paused and self.in_flight <= self.low_water:
            source.resume()
            self.metrics.paused(False)
        return room

    def leave(self, n: int) -> None:
        """``n`` records are done (published and acknowledged, or abandoned)."""
        self.in_flight -= n
        self.metrics.inflight_records(self.in_flight)
        if self.in_flight <= self.low_water and not self._holding():
            self._may_resume.set()

    def forget(self) -> None:
        """The partitions were revoked: what was in flight is someone else's now."""
        self.in_flight = 0
        self.metrics.inflight_records(0)

    def wake(self) -> None:
        """The backend accepts again: a paused consumer may resume now."""
        self._may_resume.set()
