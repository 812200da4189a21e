"""Per-key publication order under concurrency (``ordering: key``).

Batches are scored concurrently and may finish in any order. A batch that contains a key also
present in an earlier, still unpublished batch waits for that batch's publication before it
publishes; batches with disjoint keys never wait for each other. Records without a key carry no
order. The bookkeeping is one dict look-up per record when a batch is formed and when it is released.
"""

from __future__ import annotations

import asyncio

from gateway.stream.batcher import Batch


class KeyOrder:
    def __init__(self) -> None:
        self._latest: dict[bytes, Batch] = {}

    def admit(self, batch: Batch) -> None:
        latest = self._latest
        waits: dict[int, asyncio.Future[None]] = {}
        for record in batch.records:
            key = record.key
            if key is None:
                continue
            previous = latest.get(key)
            if previous is not None and previous is not batch and previous.published is not None:
                waits[previous.seq] = previous.published
            latest[key] = batch
        batch.after = list(waits.values())

    def release(self, batch: Batch) -> None:
        latest = self._latest
        for record in batch.records:
            key = record.key
            if key is not None and latest.get(key) is batch:
                del latest[key]

    def __len__(self) -> int:
        return len(self._latest)


class NoOrder:
    """``ordering: none``: publish as results arrive."""

    def admit(self, batch: Batch) -> None:
        batch.after = []

    def release(self, batch: Batch) -> None:
        pass

    def __len__(self) -> int:
        return 0
