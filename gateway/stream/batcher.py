"""Micro-batching: decoded records accumulate until ``max_rows``, ~``max_bytes`` or ``linger_ms``.

The byte limit here is an estimate from the input values' sizes, so batches are cut early enough;
the encoder enforces the hard cap on the real body and the dispatcher splits what still exceeds it.
Batches may mix partitions: the offset tracker, not the batch, knows where each record came from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.json_types import JsonObject
from gateway.stream.records import InputRecord

if TYPE_CHECKING:
    from gateway.tracing import BatchTrace


@dataclass(slots=True)
class Batch:
    seq: int
    records: list[InputRecord]
    rows: list[JsonObject]
    # Set when every output of this batch is acknowledged by the broker (or the batch is abandoned):
    # later batches that share a record key wait on it before they publish.
    published: asyncio.Future[None] | None = None
    after: list[asyncio.Future[None]] = field(default_factory=list)
    sent: bool = False  # a request of it went out; until then, abandoning it costs nothing
    opened: float = 0.0  # when its first record arrived (the batcher's clock)
    trace: BatchTrace | None = None  # set when tracing is on and a record of it is traced

    def sending(self) -> None:
        self.sent = True


class Batcher:
    def __init__(self, max_rows: int, max_bytes: int, linger_ms: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.linger_s = linger_ms / 1000.0
        self._clock = clock
        self._seq = 0
        self._records: list[InputRecord] = []
        self._rows: list[JsonObject] = []
        self._bytes = 0
        self._started = 0.0

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: InputRecord, row: JsonObject) -> Batch | None:
        """Add one record; returns a batch when this record filled it."""
        if not self._records:
            self._started = self._clock()
        self._records.append(record)
        self._rows.append(row)
        self._bytes += len(record.value or b"")
        if len(self._records) >= self.max_rows or self._bytes >= self.max_bytes:
            return self.take()
        return None

    def deadline(self) -> float | None:
        """When the pending batch must be sent at the latest (clock time), None when empty."""
        return self._started + self.linger_s if self._records else None

    def due(self) -> bool:
        deadline = self.deadline()
        return deadline is not None and self._clock() >= deadline

    def take(self) -> Batch | None:
        if not self._records:
            return None
        self._seq += 1
        batch = Batch(self._seq, self._records, self._rows, opened=self._started)
        self._records, self._rows, self._bytes = [], [], 0
        return batch
