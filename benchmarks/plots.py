"""PNG charts of one run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"reference": "#9e9e9e", "gateway": "#1f77b4", "baseline": "#d62728"}


def throughput_chart(path: Path, bars: Sequence[tuple[str, float | None, str]], title: str) -> Path:
    """Horizontal bars on a log scale: the hand-written consumer and the gateway differ 100-fold."""
    shown = [(label, value, group) for label, value, group in bars if value]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.6))
    labels = [label for label, _, _ in shown]
    values = [value for _, value, _ in shown]
    ax.barh(range(len(shown)), values, color=[COLORS.get(group, "#555555") for _, _, group in shown])
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("records/s (log scale)")
    ax.set_title(title)
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,.0f}", va="center", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    return _save(fig, path)


def latency_chart(path: Path, series: dict[str, dict[str, float | None]], goal_ms: float | None,
                  title: str) -> Path:
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
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def distribution_chart(path: Path, cumulative: dict[str, list[tuple[float, float]]], title: str) -> Path:
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
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(which="both", alpha=0.3)
    return _save(fig, path)


def memory_chart(path: Path, series: Sequence[tuple[float, int]], limit_bytes: float, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in series], [rss / 1e6 for _, rss in series], label="gateway VmRSS")
    ax.axhline(limit_bytes / 1e6, color="black", linestyle="--", linewidth=1,
               label=f"goal ({limit_bytes / 1e6:.0f} MB)")
    ax.set_xlabel("seconds since the gateway started")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def series_chart(path: Path, series: dict[str, Sequence[tuple[float, float]]], ylabel: str, title: str) -> Path:
    """One line per named series of (seconds, value) points, drawn as steps (a gauge holds its value)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, points in series.items():
        ax.step([t for t, _ in points], [v for _, v in points], where="post", label=label)
    ax.set_xlabel("seconds since the first output")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
