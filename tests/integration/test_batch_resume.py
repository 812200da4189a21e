"""``kill -9`` a batch run at three points, rerun it each time: its final files hold the same rows as
an uninterrupted run's, none twice, none missing (20 000 rows here; ``python -m
benchmarks.batch_resume`` runs 100 000). The benchmark runs as users run it, in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_killed_three_times_and_resumed_gives_the_same_files(tmp_path: Path) -> None:
    out = tmp_path / "resume.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.batch_resume", "--rows", "20000",
                           "--latency-ms", "100", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert out.is_file(), f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["segments"] == 20
    kills = result["kills"]
    assert len(kills) == 3 and kills == sorted(kills)
    assert 0 < kills[0] < kills[-1] < result["segments"], "every kill landed mid-run"
    assert result["exit_codes"] == [0, 0], "the reference run and the final resumed run complete"
    assert result["identical"], result["differences"]
    assert done.returncode == 0, done.stdout[-3000:]
