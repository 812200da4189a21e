"""The deferred explanation lane (``explanations.mode: deferred``): explanations off the critical path.

XEMP explanations can be 100× slower than predictions ("avoid them for low-latency critical use
cases", DataRobot's documentation says), and inline they hold every prediction of their batch
hostage. Deferred, a batch is first scored without explanations and its predictions published at
once; then the same rows (or a deterministic sample of them) are sent again for explanations on this
lane, with its own concurrency (``explanations.max_in_flight_requests``) and batch size
(``explanations.max_rows``), and their records go to ``outputs.explanations``. The batch's input
offsets are acknowledged only when both are published, so a crash loses neither; what waits here
counts against ``max_in_flight_records`` like everything else in flight.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.json_types import Row
from gateway.scoring.dispatcher import Dispatcher, Outcome
from gateway.stream.records import InputRecord, record_id

if TYPE_CHECKING:
    from gateway.tracing import RowsTrace

_SCALE = float(1 << 32)


class ExplanationLane:
    def __init__(self, dispatcher: Dispatcher, *, max_rows: int, sample_rate: float) -> None:
        self.dispatcher = dispatcher
        self.max_rows = max_rows
        self.sample_rate = sample_rate

    def sampled(self, record: InputRecord) -> bool:
        """Whether ``record`` is explained: by a hash of its ``id``, so a re-run picks the same ones."""
        rate = self.sample_rate
        if rate >= 1.0:
            return True
        return zlib.crc32(record_id(record).encode()) / _SCALE < rate

    async def explain(self, rows: Sequence[Row], trace: RowsTrace | None = None) -> list[Outcome]:
        """One outcome per row, in order; requests of at most ``max_rows`` go out concurrently.
        ``trace``: the rows' batch is traced, each request gets a span in its trace."""
        size, score = self.max_rows, self.dispatcher.score
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(score(list(rows[i:i + size]), None,
                                             None if trace is None else trace.part(i, i + size)))
                     for i in range(0, len(rows), size)]
        outcomes: list[Outcome] = []
        for task in tasks:
            outcomes.extend(task.result()[0])
        return outcomes
