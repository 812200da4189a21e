"""The repository stands alone: a clone with nothing beside it collects every test.

A user meets the project as ``git clone`` into an empty folder followed by the README's two
commands. Anything a test reads from outside the checkout (a sibling folder, a file that was never
committed) breaks that, and breaks it at collection, before a single test runs. So the committed
tree is cloned into a temporary folder that has no sibling folders and collected there with the
project's own interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _committed_test_modules() -> set[str]:
    listed = subprocess.run(["git", "ls-files", "tests", "benchmarks"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.split()
    return {path for path in listed if Path(path).name.startswith("test_") and path.endswith(".py")}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and a git checkout")
def test_a_clone_with_nothing_beside_it_collects_every_test(tmp_path: Path) -> None:
    clone = tmp_path / "scoring-gateway"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True,
                   capture_output=True, timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scoring-gateway"]  # no sibling folders
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    output = collected.stdout + collected.stderr
    assert collected.returncode == 0, output[-4000:]
    modules = {line.split("::", 1)[0] for line in collected.stdout.splitlines() if "::" in line}
    assert modules == _committed_test_modules(), (modules ^ _committed_test_modules())
