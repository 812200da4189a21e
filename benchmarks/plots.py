"""PNG charts of one run (matplotlib, Agg backend: no display needed).

Every chart says what it measured at a glance: its title names the broker, the machine and the
date (:func:`run_context`), throughput bars start from zero on a linear axis (so a bar twice as long
is twice as fast), and the reference and the goal are drawn where they apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

COLORS = {"reference": "#9e9e9e", "gateway": "#1f77b4", "baseline": "#d62728"}


@dataclass(frozen=True)
class Line:
    """A value drawn across a chart: a reference (the ceiling) or a goal."""

    label: str
    value: float
    style: str = "--"
    color: str = "black"


def run_context(broker: Mapping[str, Any] | str, machine: Mapping[str, Any], date: str) -> str:
    """What a figure was measured on, for its title: ``Apache Kafka 4.4.0 · 2 cores, AMD EPYC · 2026-12-02``."""
    if isinstance(broker, str):
        broker_text = broker
    else:
        broker_text = " ".join(str(broker[key]) for key in ("name", "version") if broker.get(key))
    cores, cpu = machine.get("cores"), machine.get("cpu_model")
    machine_text = ", ".join(part for part in (f"{cores} cores" if cores else "", str(cpu or "")) if part)
    return " · ".join(part for part in (broker_text, machine_text, date[:10]) if part)


def throughput_chart(path: Path, bars: Sequence[tuple[str, float | None, str]], title: str, context: str,
                     lines: Sequence[Line] = ()) -> Path:
    """Horizontal bars on a linear axis from zero, with the ceiling and the goal as vertical lines."""
    shown = [(label, value, group) for label, value, group in bars if value]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 2.0))
    labels = [label for label, _, _ in shown]
    values = [value for _, value, _ in shown]
    ax.barh(range(len(shown)), values, color=[COLORS.get(group, "#555555") for _, _, group in shown])
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*values, *(line.value for line in lines)], default=1.0) * 1.15)
    ax.set_xlabel("records/s")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    _title(ax, title, context)
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,.0f}", va="center", fontsize=8)
    for line in lines:
        ax.axvline(line.value, color=line.color, linestyle=line.style, linewidth=1,
                   label=f"{line.label} ({line.value:,.0f})")
    if lines:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _title(ax: Any, title: str, context: str) -> None:  # matplotlib's Axes: untyped library
    ax.set_title(f"{title}\n{context}" if context else title, fontsize=10)


def latency_chart(path: Path, series: dict[str, dict[str, float | None]], goal_ms: float | None,
                  title: str, context: str) -> Path:
    """Grouped bars per percentile: end-to-end and the part the gateway adds over the backend."""
    percentiles = ["p50", "p90", "p99", "max"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [p + i * width for p in range(len(percentiles))]
        heights = [values.get(p) or 0.0 for p in percentiles]
        ax.bar(xs, heights, width, label=name)
        for x, h in zip(xs, heights, strict=True):
            ax.text(x, h, f"{h:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([p + width * (len(series) - 1) / 2 for p in range(len(percentiles))], percentiles)
    if goal_ms is not None:
        ax.axhline(goal_ms, color="black", linestyle="--", linewidth=1, label=f"goal for added p99 ({goal_ms:g} ms)")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    _title(ax, title, context)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def distribution_chart(path: Path, cumulative: dict[str, list[tuple[float, float]]], title: str,
                       context: str) -> Path:
    """Cumulative share of requests by duration, from histogram buckets (one line per kind)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, buckets in sorted(cumulative.items()):
        total = buckets[-1][1] if buckets else 0
        points = []
        for le, count in buckets:
            if not total or le == float("inf"):
                break
            points.append((le * 1000.0, count / total))
            if count >= total:
                break  # the rest of the buckets add nothing but empty axis
        if not points:
            continue
        ax.step([x for x, _ in points], [y for _, y in points], where="post", label=f"{name} (n={total:.0f})")
    ax.set_xscale("log")
    ax.set_xlabel("request duration, ms (upper bucket bound, log scale)")
    ax.set_ylabel("share of requests ≤ duration")
    ax.set_ylim(0, 1.02)
    _title(ax, title, context)
    ax.legend(fontsize=8)
    ax.grid(which="both", alpha=0.3)
    return _save(fig, path)


def memory_chart(path: Path, series: Sequence[tuple[float, int]], limit_bytes: float, title: str,
                 context: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in series], [rss / 1e6 for _, rss in series], label="gateway VmRSS")
    ax.axhline(limit_bytes / 1e6, color="black", linestyle="--", linewidth=1,
               label=f"goal ({limit_bytes / 1e6:.0f} MB)")
    ax.set_xlabel("seconds since the gateway started")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    _title(ax, title, context)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def series_chart(path: Path, series: dict[str, Sequence[tuple[float, float]]], ylabel: str, title: str,
                 context: str) -> Path:
    """One line per named series of (seconds, value) points, drawn as steps (a gauge holds its value)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, points in series.items():
        ax.step([t for t, _ in points], [v for _, v in points], where="post", label=label)
    ax.set_xlabel("seconds since the first output")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    _title(ax, title, context)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
