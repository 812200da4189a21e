"""The benchmark's per-CPU-second figure: records and CPU counted over the same polls."""

from __future__ import annotations

from testkit.measure import Progress


def test_an_idle_tail_does_not_change_records_per_cpu_second():
    busy = Progress(samples=[(0.0, 1_000), (1.0, 31_000)], cpu_first={"gateway": 5.0}, cpu_last={"gateway": 5.5})
    idle_tail = Progress(samples=[(0.0, 1_000), (1.0, 31_000), (2.0, 31_000)], cpu_first={"gateway": 5.0},
                         cpu_last={"gateway": 5.5})
    assert busy.records_per_cpu_s("gateway") == idle_tail.records_per_cpu_s("gateway") == 60_000
    assert idle_tail.busy_cores()["gateway"] == 0.25, "busy cores do fall with the idle tail"


def test_one_poll_or_no_cpu_gives_no_figure():
    assert Progress(samples=[(0.0, 5)], cpu_first={"gateway": 1.0}, cpu_last={"gateway": 2.0}
                    ).records_per_cpu_s("gateway") is None
    assert Progress(samples=[(0.0, 5), (1.0, 9)], cpu_first={"gateway": None}, cpu_last={"gateway": 2.0}
                    ).records_per_cpu_s("gateway") is None
