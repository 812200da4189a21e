"""``compare``'s summary: the agreement interval, the confusion table, differences and latencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.commands.compare.summary import Summary, percentile, wilson


def comparison(ours: Any, theirs: Any, *, agree: bool | None, difference: float | None = None,
               pipeline: str = "churn", refused: str | None = None) -> bytes:
    def side(prediction: Any, latency: float, is_refused: bool) -> dict[str, Any]:
        return {"backend": "qlik", "deployment": "A" if latency < 20 else "B", "prediction": prediction,
                "probabilities": None if is_refused else {"no": 0.5, "yes": 0.5}, "latency_ms": latency,
                "refused": {"stage": "score", "reason": "x", "status": 422} if is_refused else None}
    return orjson.dumps({"id": "t/0/1", "pipeline": pipeline, "champion": side(ours, 10.0, refused == "champion"),
                         "challenger": side(theirs, 30.0, refused == "challenger"),
                         "agree": agree, "difference": difference})


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson(81, 100)  # 81 of 100: the Wilson score interval is 0.7222 to 0.8749
    assert low == pytest.approx(0.7222, abs=1e-4) and high == pytest.approx(0.8749, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.95) == 5.0


def test_a_summary_counts_agreement_confusion_refusals_and_skips_what_it_cannot_read() -> None:
    summary = Summary("churn")
    summary.add_values([
        comparison("yes", "yes", agree=True, difference=0.1),
        comparison("yes", "no", agree=False, difference=-0.3),
        comparison("no", "no", agree=True, difference=0.0),
        comparison("no", None, agree=None, refused="challenger"),
        comparison("no", "no", agree=True, pipeline="other"),
        b"not json", None, orjson.dumps({"id": "x"}),
    ])
    assert (summary.records, summary.compared, summary.agreed) == (4, 3, 2)
    assert (summary.unreadable, summary.other_pipelines) == (3, 1)
    assert summary.refused == {"challenger": 1}
    assert summary.confusion == {("yes", "yes"): 1, ("yes", "no"): 1, ("no", "no"): 1}
    text = "\n".join(summary.lines())
    assert "agreement: 2/3 = 66.67% (95% CI" in text
    assert "refused: champion 0, challenger 1" in text
    assert "difference (challenger - champion): mean -0.0667" in text
    assert "latency ms, challenger: p50 30.0" in text


def test_the_plot_is_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from gateway.commands.compare.plot import draw

    summary = Summary("churn")
    summary.add_values([comparison("yes", "yes", agree=True, difference=d / 100) for d in range(-20, 21)])
    draw(summary, tmp_path / "diff.png")
    assert (tmp_path / "diff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
