"""The commands' one progress display: a rich bar on a terminal, a plain line now and then elsewhere.

What each command counts differs (rows and an ETA for ``batch``, re-published dead letters for
``replay``, a running gateway's counters for ``demo``) and stays with the command; how it is shown
is the same and lives here. On a terminal, one rich task is updated in place; elsewhere (logs, CI,
where a redrawn bar would be noise) a line is printed at most every ``every_s`` seconds: the first
at once, and the last when the caller says it is the last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID


class ProgressDisplay:
    """One task's progress, drawn as a bar on ``console`` when it is a terminal, else as lines.

    With ``auto_refresh`` rich redraws the bar from its own thread (ten times a second); without,
    each :meth:`show` redraws it, which suits a caller that already ticks.
    """

    def __init__(self, console: Console, columns: Sequence[str | ProgressColumn], *, every_s: float,
                 total: float | None, completed: float = 0, description: str = "",
                 auto_refresh: bool = False, clock: Callable[[], float] = time.monotonic,
                 **fields: str) -> None:
        self._console = console
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self._bar: Progress | None = None
        if console.is_terminal:
            self._bar = Progress(*columns, console=console, auto_refresh=auto_refresh)
            # rich takes a task's own fields as free keywords beside its typed ones: passed untyped.
            add_task: Callable[..., TaskID] = self._bar.add_task
            self._task = add_task(description, total=total, completed=completed, **fields)

    def __enter__(self) -> ProgressDisplay:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Put the bar on the terminal (off a terminal: nothing)."""
        if self._bar is not None:
            self._bar.start()

    def show(self, line: Callable[[], str], *, last: bool = False, completed: float | None = None,
             total: float | None = None, description: str | None = None, **fields: str) -> None:
        """Update the bar with what is given; off a terminal, print ``line()`` when one is due."""
        if self._bar is not None:
            update: Callable[..., None] = self._bar.update  # free keywords, as in add_task
            update(self._task, completed=completed, total=total, description=description, **fields)
            if not self._bar.live.auto_refresh:
                self._bar.refresh()
            return
        now = self._clock()
        if last or self._last is None or now - self._last >= self._every_s:
            self._last = now
            print(line(), file=self._console.file, flush=True)

    def close(self) -> None:
        """Draw the bar a last time and release the terminal (again: nothing)."""
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
            self._bar = None


def plain_console(stream: IO[str]) -> Console:
    """A console that writes to ``stream`` and never draws a bar (for lines, and for tests)."""
    return Console(file=stream, force_terminal=False, force_interactive=False, highlight=False)


def bar_console(stream: IO[str]) -> Console:
    """A console that draws a bar on ``stream`` whatever it is."""
    return Console(file=stream, force_terminal=True, highlight=False)
