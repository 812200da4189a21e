"""Figures, the goals they are judged against, and how they are written: JSON and a markdown table.

A figure is the median of its repetitions' samples. A goal compares the figure with a reference
measured in the same run (the ceiling, the hand-written consumer, the backend bound, the rate
budget) or with a fixed limit: ``ratio`` = value / reference and the goal holds when the ratio is
on the right side of its threshold. A figure whose measurement failed keeps ``value = None`` and
its goal is reported as not met, never silently dropped.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Goal:
    """``value / reference`` (or ``value`` itself when ``reference`` is None) vs ``threshold``."""

    text: str
    threshold: float
    reference: float | None = None
    at_most: bool = False

    def ratio(self, value: float | None) -> float | None:
        if value is None or self.reference is None or self.reference <= 0:
            return None
        return value / self.reference

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.reference is None:
            measure = value
        else:
            ratio = self.ratio(value)
            if ratio is None:
                return False
            measure = ratio
        return measure <= self.threshold if self.at_most else measure >= self.threshold


@dataclass
class Figure:
    scenario: str
    name: str
    unit: str
    samples: list[float]
    goal: Goal | None = None
    note: str = ""
    key: str = ""

    @property
    def value(self) -> float | None:
        finite = [s for s in self.samples if s is not None and math.isfinite(s)]
        return statistics.median(finite) if finite else None

    def as_dict(self) -> dict[str, Any]:
        goal = self.goal
        return {
            "key": self.key, "scenario": self.scenario, "figure": self.name, "value": self.value,
            "unit": self.unit, "samples": self.samples, "note": self.note,
            "goal": None if goal is None else {
                "text": goal.text, "threshold": goal.threshold, "reference": goal.reference,
                "at_most": goal.at_most, "ratio": goal.ratio(self.value), "met": goal.met(self.value)},
        }


@dataclass
class Report:
    mode: str
    machine: dict[str, Any]
    sizes: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    elapsed_s: float = 0.0
    broker: dict[str, str] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    def value(self, key: str) -> float | None:
        found = self.figure(key)
        return found.value if found else None

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "started_at": self.started_at, "elapsed_s": round(self.elapsed_s, 1),
                "broker": self.broker, "machine": self.machine, "sizes": self.sizes,
                "figures": [f.as_dict() for f in self.figures], "errors": self.errors,
                "plots": self.plots, "details": self.details}

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1, default=_plain) + "\n")

    def markdown(self) -> str:
        rows = ["| scenario | figure | value | unit | goal | ratio | met? |",
                "|---|---|---:|---|---|---:|:---:|"]
        for f in self.figures:
            goal = f.goal
            ratio = goal.ratio(f.value) if goal else None
            met = "—" if goal is None else ("yes" if goal.met(f.value) else "**no**")
            rows.append(f"| {f.scenario} | {f.name} | {format_value(f.value)} | {f.unit} | "
                        f"{goal.text if goal else '—'} | {'—' if ratio is None else f'{ratio:.2f}'} | {met} |")
        for scenario, error in self.errors.items():
            rows.append(f"| {scenario} | not measured: {error.splitlines()[0][:120]} | — | — | — | — | **no** |")
        notes = [f"- {f.scenario} / {f.name}: {f.note}" for f in self.figures if f.note]
        return "\n".join(rows + (["", "Notes:", *notes] if notes else []))


def format_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _plain(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
