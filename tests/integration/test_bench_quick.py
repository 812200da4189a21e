"""The benchmark runner end to end in its smoke mode: every scenario runs and reports.

The figures of a smoke run mean nothing (tiny loads on a shared machine), so only their presence
is checked: each of the eight scenarios produced at least one measured figure, the goals were
evaluated, the JSON describes the machine, and the charts were drawn.

It runs in the tansu pass only: every repetition starts a fresh broker, which takes tansu a tenth
of a second and Apache Kafka several seconds, minutes over the run. The runner reaches Apache
Kafka through the same ``make_broker`` that the chaos tests use on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.brokers.choice import BROKER

pytestmark = [pytest.mark.integration, pytest.mark.tansu,
              pytest.mark.skipif(BROKER != "tansu", reason="runs in the tansu pass (a fresh broker per repetition)")]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "8 ")
GOAL_KEYS = ("s3-qlik-json-none", "s3-vs-baseline", "s4-20ms", "s4-50ms", "s5-rows", "s5-429",
             "s6-added-p99", "s7-peak-rss")
PLOTS = ("bench-throughput.png", "bench-latency.png", "bench-explanations.png", "bench-memory.png")


@pytest.mark.timeout(600)
def test_smoke_run_reports_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out), "--plots-dir", str(tmp_path),
         "--broker", BROKER],
        cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}"

    report = json.loads(out.read_text())
    assert report["mode"] == "smoke" and report["broker"]["kind"] == BROKER
    assert report["errors"] == {}
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0 and machine["python"]
    assert machine["packages"]["aiokafka"]

    figures = report["figures"]
    for scenario in SCENARIOS:
        measured = [f for f in figures if f["scenario"].startswith(scenario) and f["value"] is not None]
        assert measured, f"scenario {scenario.strip()} produced no measured figure"
    by_key = {f["key"]: f for f in figures}
    for key in GOAL_KEYS:
        assert key in by_key, f"figure {key} missing"
        assert by_key[key]["value"] is not None, f"figure {key} not measured"
        assert by_key[key]["goal"] is not None and isinstance(by_key[key]["goal"]["met"], bool)

    for name in PLOTS:
        path = tmp_path / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} not drawn"
    flame = (tmp_path / "bench-flame.svg").read_text()
    assert "<svg" in flame[:1000] and "(gateway/" in flame, "no flame graph of the gateway's own frames"
    assert "| scenario | figure | value | unit | goal | ratio | met? |" in done.stdout
