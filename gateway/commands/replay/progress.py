"""What the replay shows: live progress, a warning line per unreadable record (up to a limit), the summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.commands.replay.options import PLAIN_EVERY_S, PROVENANCE_HEADER, WARN_LIMIT
from gateway.commands.replay.replayer import Replayer, Tally


class PlainProgress:
    """One line a second for logs and CI, where a redrawn bar would be noise."""

    def __init__(self, stream: IO[str], group: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._group = group
        self._clock = clock
        self._began = clock()
        self._last = -PLAIN_EVERY_S

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def show(self, replayer: Replayer) -> None:
        now = self._clock()
        if now - self._last < PLAIN_EVERY_S:
            return
        self._last = now
        if not replayer.joined:
            line = (f"progress: waiting {now - self._began:.0f}s for consumer group {self._group} "
                    "to assign partitions")
        else:
            t = replayer.tally
            share = f" ({100.0 * t.read / t.to_read:.0f}%)" if t.to_read else ""
            line = (f"progress: {t.read:,}/{t.to_read:,} read{share}, {t.republished:,} re-published, "
                    f"{t.skipped_stage + t.skipped_time:,} skipped, {t.unreadable:,} unreadable, "
                    f"{t.read / max(now - (replayer.joined_at or now), 1e-3):,.0f} records/s")
        print(line, file=self._stream, flush=True)


class LiveProgress:
    """A rich progress bar for a terminal, redrawn by the caller after every step."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                                  console=console, auto_refresh=False)
        self._task = self._progress.add_task("joining the consumer group", total=None, counts="")

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.refresh()
        self._progress.stop()

    def show(self, replayer: Replayer) -> None:
        if replayer.joined:
            t = replayer.tally
            self._progress.update(self._task, description="read", completed=t.read, total=max(t.to_read, t.read),
                                  counts=f"{t.republished:,} re-published · {t.skipped_stage + t.skipped_time:,} "
                                         f"skipped · {t.unreadable:,} unreadable")
        self._progress.refresh()


def progress_view(console: Console, group: str) -> LiveProgress | PlainProgress:
    return LiveProgress(console) if console.is_terminal else PlainProgress(sys.stdout, group)


class UnreadableWarnings:
    """One line on stderr per unreadable dead-letter record, up to ``limit``; the rest only counted."""

    def __init__(self, stream: IO[str], limit: int = WARN_LIMIT) -> None:
        self._stream = stream
        self._limit = limit
        self.seen = 0

    def __call__(self, record: Any, reason: str) -> None:
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

    def machine(self) -> dict[str, Any]:
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
