"""What the replay shows: live progress, a warning line per unreadable record (up to a limit), the summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import IO

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from gateway.commands.progress import ProgressDisplay
from gateway.commands.replay.options import PLAIN_EVERY_S, PROVENANCE_HEADER, WARN_LIMIT
from gateway.commands.replay.replayer import Replayer, Tally
from gateway.stream.records import InputRecord


class ReplayProgress:
    """Records read, re-published and skipped; before the group assigns partitions, how long it has waited."""

    def __init__(self, console: Console, group: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._group = group
        self._clock = clock
        self._began = clock()
        self._display = ProgressDisplay(
            console, (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[counts]}"), TimeElapsedColumn()),
            every_s=PLAIN_EVERY_S, total=None, description="joining the consumer group", clock=clock, counts="")

    def __enter__(self) -> ReplayProgress:
        self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._display.close()

    def show(self, replayer: Replayer) -> None:
        line = partial(self._line, replayer)
        if not replayer.joined:
            self._display.show(line)
            return
        t = replayer.tally
        self._display.show(line, description="read", completed=t.read, total=max(t.to_read, t.read),
                           counts=f"{t.republished:,} re-published · {t.skipped_stage + t.skipped_time:,} "
                                  f"skipped · {t.unreadable:,} unreadable")

    def _line(self, replayer: Replayer) -> str:
        now = self._clock()
        if not replayer.joined:
            return f"progress: waiting {now - self._began:.0f}s for consumer group {self._group} to assign partitions"
        t = replayer.tally
        share = f" ({100.0 * t.read / t.to_read:.0f}%)" if t.to_read else ""
        return (f"progress: {t.read:,}/{t.to_read:,} read{share}, {t.republished:,} re-published, "
                f"{t.skipped_stage + t.skipped_time:,} skipped, {t.unreadable:,} unreadable, "
                f"{t.read / max(now - (replayer.joined_at or now), 1e-3):,.0f} records/s")


def progress_view(console: Console, group: str) -> ReplayProgress:
    return ReplayProgress(console, group)


class UnreadableWarnings:
    """One line on stderr per unreadable dead-letter record, up to ``limit``; the rest only counted."""

    def __init__(self, stream: IO[str], limit: int = WARN_LIMIT) -> None:
        self._stream = stream
        self._limit = limit
        self.seen = 0

    def __call__(self, record: InputRecord, reason: str) -> None:
        self.seen += 1
        if self.seen <= self._limit:
            print(f"replay: unreadable dead-letter record {record.topic}/{record.partition}/{record.offset}: "
                  f"{reason}; skipped, not re-published", file=self._stream, flush=True)
        elif self.seen == self._limit + 1:
            print(f"replay: more than {self._limit} unreadable dead-letter records: the rest are counted in the "
                  "summary, not shown", file=self._stream, flush=True)


@dataclass(frozen=True, slots=True)
class Summary:
    pipeline: str
    stage: str
    dead_letter_topic: str
    input_topic: str
    group: str
    window: str  # the time window in words, "" when none
    dry_run: bool
    finished: bool
    tally: Tally
    duration_s: float

    def machine(self) -> dict[str, object]:
        t = self.tally
        return {"pipeline": self.pipeline, "stage": self.stage, "dead_letter_topic": self.dead_letter_topic,
                "input_topic": self.input_topic, "group": self.group, "dry_run": self.dry_run,
                "finished": self.finished, "read": t.read, "selected": t.selected, "republished": t.republished,
                "skipped_stage": t.skipped_stage, "skipped_time": t.skipped_time, "unreadable": t.unreadable,
                "partitions": t.partitions, "commit_failures": t.commit_failures,
                "duration_s": round(self.duration_s, 3)}

    def lines(self) -> list[str]:
        t = self.tally
        published = ("dry run: nothing published, nothing committed" if self.dry_run
                     else f"to {self.input_topic}, each with header {PROVENANCE_HEADER}")
        rows = [
            ("read", t.read, f"dead-letter records of {self.dead_letter_topic}, up to its end at start "
                             f"({t.partitions} partition{'s' if t.partitions != 1 else ''})"),
            ("selected", t.selected, f"stage {self.stage}" + (f", written {self.window}" if self.window else "")),
            ("re-published", t.republished, published),
            ("skipped by stage", t.skipped_stage, ""),
            ("skipped by time", t.skipped_time, ""),
            ("unreadable", t.unreadable, "not dead-letter documents of this pipeline; skipped" if t.unreadable else ""),
        ]
        out = [f"Summary: pipeline {self.pipeline}, consumer group {self.group}"]
        out += [f"  {name:<18}{value:>9,}    {note}".rstrip() for name, value, note in rows]
        out.append(f"  {'duration':<18}{self.duration_s:>9.1f} s")
        if not self.finished:
            out.append("  stopped before the end: run the same command again to go on from the last commit")
        if t.commit_failures:
            out.append(f"  {t.commit_failures} commit(s) failed: the next run re-publishes the records after "
                       "the last successful commit again")
        return out

    def print(self, stream: IO[str]) -> None:
        for line in self.lines():
            print(line, file=stream)
        print("summary: " + orjson.dumps(self.machine()).decode(), file=stream, flush=True)
