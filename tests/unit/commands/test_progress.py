"""The commands' progress display: lines off a terminal (throttled, the last one forced), a bar on one."""

from __future__ import annotations

import io

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from gateway.commands.progress import ProgressDisplay, bar_console, plain_console


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"))


def test_lines_come_at_most_every_interval_the_first_at_once_the_last_when_forced() -> None:
    out, clock = io.StringIO(), Clock()
    shown: list[int] = []

    def line(n: int) -> str:
        shown.append(n)
        return f"line {n}"

    with ProgressDisplay(plain_console(out), COLUMNS, every_s=2.0, total=10, clock=clock, note="") as display:
        display.show(lambda: line(1))
        clock.now += 1.0
        display.show(lambda: line(2))  # too soon: not even built
        clock.now += 1.0
        display.show(lambda: line(3))
        clock.now += 0.1
        display.show(lambda: line(4), last=True)
    assert out.getvalue().splitlines() == ["line 1", "line 3", "line 4"]
    assert shown == [1, 3, 4]


def test_a_terminal_gets_the_bar_and_no_lines() -> None:
    out = io.StringIO()
    with ProgressDisplay(bar_console(out), COLUMNS, every_s=1.0, total=10, description="scored", note="") as display:
        display.show(lambda: "never a line", completed=7, note="3 dead-lettered")
    drawn = out.getvalue()
    assert "7/10" in drawn and "3 dead-lettered" in drawn and "never a line" not in drawn
