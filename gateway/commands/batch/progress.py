"""What a batch run shows while it runs and when it ends.

:class:`Counters` is what the dispatcher reports its requests and retries to (the same calls it
makes on a streaming pipeline's Prometheus instruments). :class:`Progress` draws a ``rich`` bar
with rows/s and ETA on a terminal, and otherwise prints a plain line every few seconds; the
summary lists rows in, predicted, not predicted, requests, retries, elapsed time and the files.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from gateway.commands.progress import ProgressDisplay, bar_console, plain_console

PLAIN_INTERVAL_S = 2.0


class Counters:
    """Requests and retries as the dispatcher reports them."""

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.statuses: Counter[str] = Counter()
        self.retry_reasons: Counter[str] = Counter()
        self.slow_explanations = 0

    def request(self, backend: str, explanations: str, status: str, seconds: float) -> None:
        self.requests += 1
        self.statuses[status] += 1

    def retry(self, reason: str) -> None:
        self.retries += 1
        self.retry_reasons[reason] += 1

    def requests_in_flight(self, delta: int) -> None:
        return None

    def concurrency_limit(self, limit: int) -> None:
        return None

    def circuit(self, state: str, changed: bool = True) -> None:
        return None

    def slow_explanation(self, kind: str) -> None:
        self.slow_explanations += 1


@dataclass
class Summary:
    rows: int = 0
    predicted: int = 0
    not_predicted: int = 0
    requests: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the process during the run, every thread
    files: list[str] = field(default_factory=list)
    resumed_rows: int = 0  # rows a previous run had finished
    status: str = "complete"  # complete | already complete | stopped
    reason: str | None = None
    input: str = ""  # what was read, as the input described itself

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "predicted": self.predicted, "not_predicted": self.not_predicted,
                "requests": self.requests, "retries": self.retries, "elapsed_s": round(self.elapsed_s, 3),
                "cpu_s": round(self.cpu_s, 3),
                "files": self.files, "resumed_rows": self.resumed_rows, "status": self.status,
                "reason": self.reason, "input": self.input}


class Progress:
    """Rows done out of the total, with rate and ETA; a bar on a terminal, lines elsewhere."""

    def __init__(self, total: int, done: int = 0, stream: IO[str] | None = None,
                 terminal: bool | None = None) -> None:
        self.total = total
        self.done = done
        self.predicted = 0
        self.not_predicted = 0
        self._started = time.monotonic()
        self._start_done = done
        stream = stream or sys.stderr
        drawn = terminal if terminal is not None else stream.isatty()
        self._display = ProgressDisplay(
            bar_console(stream) if drawn else plain_console(stream),
            (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} rows/s"),
             TimeRemainingColumn()),
            every_s=PLAIN_INTERVAL_S, total=total, completed=done, description="rows", auto_refresh=True, rate="0")
        self._display.start()

    def add(self, rows: int, predicted: int, not_predicted: int) -> None:
        self.done += rows
        self.predicted += predicted
        self.not_predicted += not_predicted
        self._display.show(self.line, last=self.done >= self.total, completed=self.done, rate=f"{self.rate():,.0f}")

    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        share = self.done / self.total if self.total else 1.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"progress: {self.done:,}/{self.total:,} rows ({share:.0%}), {self.predicted:,} predicted, "
                f"{self.not_predicted:,} not predicted, {rate:,.0f} rows/s, eta {eta:.0f}s")

    def close(self) -> None:
        self._display.close()


def summary_text(summary: Summary, writeback: str) -> str:
    lines = [f"Summary: {summary.status}" + (f" ({summary.reason})" if summary.reason else ""),
             *([f"  input               {summary.input}"] if summary.input else []),
             f"  rows in             {summary.rows:>12,}",
             f"  predicted           {summary.predicted:>12,}",
             f"  not predicted       {summary.not_predicted:>12,}",
             f"  requests            {summary.requests:>12,}",
             f"  retries             {summary.retries:>12,}",
             f"  elapsed             {summary.elapsed_s:>12,.2f} s"]
    if summary.resumed_rows:
        lines.append(f"  resumed             {summary.resumed_rows:>12,} rows were done by an earlier run")
    if summary.files:
        lines.append(f"  files in {writeback}:")
        lines.extend(f"    {name}" for name in summary.files)
    return "\n".join(lines)
