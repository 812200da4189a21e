"""The benchmark charts say what they measure at a glance, checked on small made-up figures: throughput
bars on a linear axis from zero, the ceiling and the goal drawn, every title naming the broker, the
machine and the date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")  # the bench extra

from benchmarks import plots, run
from benchmarks.figures import Suite
from benchmarks.report import Figure, Goal, Report

BROKER = {"kind": "kafka", "name": "Apache Kafka (KRaft, single node)", "version": "4.4.0"}
MACHINE = {"cores": 2, "cpu_model": "AMD EPYC 7B13"}


def fake_suite() -> Suite:
    report = Report("quick", dict(MACHINE), {}, started_at="2026-12-02T09:21:14+00:00", broker=dict(BROKER))
    report.add(Figure("1", "ceiling", "rec/s", [88_080.0], key="ceiling"))
    report.add(Figure("2", "hand-written 0 ms", "rec/s", [860.0], key="baseline-0ms"))
    report.add(Figure("2", "hand-written 20 ms", "rec/s", [45.8], key="baseline-20ms"))
    report.add(Figure("3", "Qlik JSON", "rec/s", [49_043.0], Goal("≥ 0.70 × ceiling", 0.70, 88_080.0),
                      key="s3-qlik-json-none"))
    report.add(Figure("3", "Qlik JSON SHAP", "rec/s", [22_007.0], key="s3-qlik-json-shap"))
    suite = Suite(bench=None, report=report)  # type: ignore[arg-type]  # drawing needs no bench
    suite.latency = {"end to end": {"p50": 10.5, "p90": 30.0, "p99": 59.5, "max": 80.0}}
    suite.memory_series = [(0.0, 60_000_000), (5.0, 80_000_000), (10.0, 86_000_000)]
    suite.duration_buckets = {"qlik none": [(0.005, 10.0), (0.01, 90.0), (0.025, 100.0), (float("inf"), 100.0)]}
    return suite


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Every figure drawn for a run, by file name, captured just before it is saved (and saved)."""
    figures: dict[str, Any] = {}
    save = plots._save

    def capture(fig: Any, path: Path) -> Path:
        axes = fig.axes[0]
        figures[path.name] = {"title": axes.get_title(), "xscale": axes.get_xscale(), "xlim": axes.get_xlim(),
                              "ylim": axes.get_ylim(), "vlines": [line.get_xdata()[0] for line in axes.lines],
                              "legend": [t.get_text() for t in axes.get_legend().get_texts()]
                              if axes.get_legend() else []}
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    paths = run.draw(fake_suite(), tmp_path)
    assert all(path.stat().st_size > 10_000 for path in paths)
    return figures


def test_every_chart_is_drawn_and_titled_with_broker_machine_and_date(drawn: dict[str, Any]) -> None:
    assert set(drawn) == {"bench-throughput.png", "bench-latency.png", "bench-explanations.png", "bench-memory.png"}
    for name, figure in drawn.items():
        assert "Apache Kafka (KRaft, single node) 4.4.0" in figure["title"], name
        assert "2 cores, AMD EPYC 7B13" in figure["title"], name
        assert "2026-12-02" in figure["title"], name


def test_throughput_bars_are_linear_from_zero_with_the_ceiling_and_the_goal(drawn: dict[str, Any]) -> None:
    chart = drawn["bench-throughput.png"]
    assert chart["xscale"] == "linear"
    assert chart["xlim"][0] == 0
    assert chart["xlim"][1] >= 88_080
    assert chart["vlines"] == pytest.approx([88_080.0, 0.70 * 88_080.0])
    assert any("ceiling" in text for text in chart["legend"]) and any("goal" in text for text in chart["legend"])


def test_latency_and_memory_start_from_zero_with_their_goal(drawn: dict[str, Any]) -> None:
    assert drawn["bench-latency.png"]["ylim"][0] == 0
    assert drawn["bench-memory.png"]["ylim"][0] == 0
    assert any("goal" in text for text in drawn["bench-latency.png"]["legend"])
    assert any("goal" in text for text in drawn["bench-memory.png"]["legend"])


def test_run_context_names_broker_machine_and_day() -> None:
    assert plots.run_context(BROKER, MACHINE, "2026-12-02T09:21:14+00:00") == (
        "Apache Kafka (KRaft, single node) 4.4.0 · 2 cores, AMD EPYC 7B13 · 2026-12-02")
    assert plots.run_context("tansu", {}, "") == "tansu"
