"""What a process used and what the gateway reported: /proc readings, parsed /metrics, progress figures.

``ProcessProbe`` reads a process's CPU time and memory from /proc, so figures can say which process
used the machine; ``Progress`` turns polls of the published count and of CPU time into rates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcessProbe:
    """CPU seconds and resident memory of one process, read from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # After the command name: state is field 0, utime 11, stime 12 (fields 14/15 of stat(5)).
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def memory_bytes(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (the peak so far), in bytes."""
        found: dict[str, int] = {}
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        name, value = line.split(":", 1)
                        found[name] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return found


@dataclass(frozen=True)
class MetricSample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[MetricSample]:
    return [MetricSample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def metric_values(samples: list[MetricSample], name: str, **labels: str) -> list[MetricSample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def metric_sum(samples: list[MetricSample], name: str, **labels: str) -> float:
    return sum(s.value for s in metric_values(samples, name, **labels))


@dataclass
class Progress:
    """``/metrics`` polled while the gateway works: published counts and CPU at first and last poll."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu_first: dict[str, float | None] = field(default_factory=dict)
    cpu_last: dict[str, float | None] = field(default_factory=dict)
    complete: bool = False

    @property
    def published(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def busy_cores(self) -> dict[str, float | None]:
        """CPU seconds per wall second of each process while outputs were being published."""
        if len(self.samples) < 2:
            return {name: None for name in self.cpu_first}
        wall = self.samples[-1][0] - self.samples[0][0]
        busy: dict[str, float | None] = {}
        for name, first in self.cpu_first.items():
            last = self.cpu_last.get(name)
            busy[name] = (last - first) / wall if first is not None and last is not None and wall > 0 else None
        return busy

    def records_per_cpu_s(self, name: str) -> float | None:
        """Records published between the first and the last poll per CPU-second ``name`` spent
        meanwhile: an idle tail before the last poll adds no CPU and no records, so it is not counted."""
        first, last = self.cpu_first.get(name), self.cpu_last.get(name)
        if len(self.samples) < 2 or first is None or last is None or last <= first:
            return None
        return (self.samples[-1][1] - self.samples[0][1]) / (last - first)

    def window_rate(self) -> float | None:
        """Records/s between the first and the last poll that saw outputs (the first batch excluded)."""
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None
