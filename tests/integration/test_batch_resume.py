"""``kill -9`` a batch run at three points, rerun it each time: its final files hold the same rows as
an uninterrupted run's, none twice, none missing (20 000 rows here; ``python -m
benchmarks.batch_resume`` runs 100 000)."""

from __future__ import annotations

import pytest

from benchmarks.batch_resume import resume_scenario

pytestmark = pytest.mark.integration


def test_killed_three_times_and_resumed_gives_the_same_files(emu, tmp_path):
    result = resume_scenario(emu.qlik_url(), tmp_path, 20_000, lambda ms: emu.configure(latency_ms=ms),
                             latency_ms=100.0)
    assert result.segments == 20
    assert len(result.kills) == 3 and result.kills == sorted(result.kills)
    assert 0 < result.kills[0] < result.kills[-1] < result.segments, "every kill landed mid-run"
    assert result.exit_codes == [0, 0], "the reference run and the final resumed run complete"
    assert result.identical, result.differences
