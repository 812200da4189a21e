"""Every repository path the documentation cites (`gateway/...`, `tests/...`, `k8s/...`) exists, so
a module moved or renamed shows up here rather than in a reader's dead end."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"`((?:gateway|tests|benchmarks|k8s|config)/[\w./-]+)`")
OUTPUTS = ("benchmarks/results/",)  # what the benchmarks write: not in a checkout


def test_every_cited_path_exists() -> None:
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for path in CITED.findall(page.read_text(encoding="utf-8")):
            if not path.startswith(OUTPUTS) and not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert missing == []
