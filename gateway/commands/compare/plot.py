"""``compare --output FILE.png``: the distribution of challenger − champion differences.

matplotlib is not a runtime dependency of the gateway (a scoring process draws nothing): it comes
with the ``plot`` extra, and without it the command says how to get it.
"""

from __future__ import annotations

from pathlib import Path

from gateway.commands.compare.summary import Summary
from gateway.errors import CommandError

INSTALL_HINT = "pip install 'scoring-gateway[plot]' (matplotlib)"


def draw(summary: Summary, path: Path) -> None:
    try:
        import matplotlib  # untyped optional library, imported only here

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise CommandError(f"--output needs matplotlib: {INSTALL_HINT}") from None
    figure, axis = pyplot.subplots(figsize=(8, 4.5))
    try:
        if summary.differences:
            axis.hist(summary.differences, bins=min(60, max(10, len(summary.differences) // 20)), color="#4c72b0")
        axis.axvline(0.0, color="black", linewidth=0.8)
        agreement = summary.agreement
        shown = f"{agreement:.1%}" if agreement is not None else "n/a"
        axis.set_title(f"{summary.pipeline}: challenger − champion ({len(summary.differences)} records, "
                       f"agreement {shown})")
        axis.set_xlabel("difference (positive class probability, or predicted value)")
        axis.set_ylabel("records")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        pyplot.close(figure)
