"""Step 4: live progress, read from the gateway's own metrics registry."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import aiohttp
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gateway.commands.demo.embedded import EmbeddedGateway
from gateway.commands.demo.options import PIPELINE, PLAIN_EVERY_S, RATE_WINDOW_S, TICK_S, DemoError
from gateway.commands.demo.waits import describe
from gateway.commands.progress import ProgressDisplay


@dataclass(slots=True)
class Counts:
    """The gateway's own counters for the demo pipeline."""

    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    stages: dict[str, int] = field(default_factory=dict)

    @property
    def published(self) -> int:
        return self.predicted + self.dead_lettered


def read_counts(registry: CollectorRegistry) -> Counts:
    """One pass over the registry (not one ``get_sample_value`` scan per figure)."""
    counts = Counts()
    for metric in registry.collect():
        if metric.name not in _COUNTED:
            continue
        for sample in metric.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("pipeline") != PIPELINE:
                continue
            value = int(sample.value)
            if metric.name == "scoring_gateway_records_consumed":
                counts.consumed += value
            elif metric.name == "scoring_gateway_records_published":
                if labels.get("outcome") == "predicted":
                    counts.predicted += value
                elif labels.get("outcome") == "dead_letter":
                    counts.dead_lettered += value
            elif value:
                counts.stages[labels.get("stage", "?")] = value
    return counts


_COUNTED = frozenset({"scoring_gateway_records_consumed", "scoring_gateway_records_published",
                      "scoring_gateway_dead_letter_records"})


class ProgressView(Protocol):
    def show(self, produced: int, counts: Counts, rate: float) -> None: ...


class DemoProgress:
    """Records published out of those to come, with the rate, the dead letters and what was produced."""

    def __init__(self, console: Console, total: int) -> None:
        self._total = total
        self._display = ProgressDisplay(
            console, (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[dead]}"),
                      TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()),
            every_s=PLAIN_EVERY_S, total=total, description="scoring", rate="", dead="")

    def __enter__(self) -> DemoProgress:
        self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._display.close()

    def show(self, produced: int, counts: Counts, rate: float) -> None:
        self._display.show(partial(self._line, produced, counts, rate), last=counts.published >= self._total,
                           completed=counts.published, description=f"scored (produced {produced:,})",
                           rate=f"{rate:,.0f} records/s", dead=f"{counts.dead_lettered:,} dead-lettered")

    def _line(self, produced: int, counts: Counts, rate: float) -> str:
        left = self._total - counts.published
        eta = f"{left / rate:.0f}s" if rate > 0 and left > 0 else ("0s" if left <= 0 else "?")
        share = 100.0 * counts.published / self._total
        return (f"progress: {counts.published:,}/{self._total:,} published ({share:.0f}%), "
                f"{counts.predicted:,} predicted, {counts.dead_lettered:,} dead-lettered, "
                f"{produced:,} produced, {rate:,.0f} records/s, eta {eta}")


def progress_view(console: Console, total: int) -> DemoProgress:
    return DemoProgress(console, total)


class RateMeter:
    """Records per second over the last couple of seconds, steadier than tick-to-tick deltas."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> float:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[0][0] > self._window_s:
            samples.popleft()
        first_t, first_n = samples[0]
        return (total - first_n) / (now - first_t) if now > first_t else 0.0


async def watch(gateway: EmbeddedGateway, registry: CollectorRegistry, total: int, deadline: float,
                view: ProgressView, producing: asyncio.Task[None], produced: list[int]) -> None:
    """Until the counters say every record is published; fails fast when the gateway or the producer
    fails, the gateway stops itself (an auth or routing failure), or the deadline passes."""
    meter = RateMeter()
    next_check = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            now = time.monotonic()
            counts = read_counts(registry)
            view.show(produced[0], counts, meter.add(now, counts.published))
            failed = producing.exception() if producing.done() and not producing.cancelled() else None
            if failed is not None:
                raise DemoError(f"cannot produce the sample records: {describe(failed)}")
            if counts.published >= total and producing.done():
                return
            failure = gateway.failure()
            if failure:
                raise DemoError(f"the gateway failed: {failure}")
            if now >= next_check:  # a stopped pipeline would otherwise only show as a timeout
                next_check = now + 1.0
                _, reasons = await gateway.readiness(session)
                stopped = [r for r in reasons if r.startswith("stopped")]
                if stopped:
                    raise DemoError(f"the gateway {stopped[0]}")
            if now > deadline:
                raise DemoError(f"timed out: {counts.published:,} of {total:,} records published "
                                f"({produced[0]:,} produced); the gateway log may say why")
            await asyncio.sleep(TICK_S)
