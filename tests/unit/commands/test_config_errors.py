"""Every command that reads a config refuses a bad one in the same words: ``invalid config FILE:``,
then each problem on a line of its own naming its key path, exit 2, and nothing on stdout. Nothing
is started: the config is read before anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from tests.unit.config.documents import with_changes

PIPELINE = ["--pipeline", "churn"]
COMMANDS = {
    "run": [],
    "check": [],
    "batch": [*PIPELINE, "--input", "rows.csv", "--writeback", "out"],
    "qlik-batch": [*PIPELINE, "--dataset-id", "d-1", "--space-id", ""],
    "replay": PIPELINE,
    "compare": PIPELINE,
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_config_is_refused_alike_by_every_command(command: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_changes(**{"p.batching.max_rows": 0, "kafka.session_timeout_ms": "soon"})))
    code = main([command, "--config", str(path), *COMMANDS[command]])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"invalid config {path}:",
        "  kafka.session_timeout_ms: expected an integer, got 'soon'",
        "  pipelines[0].batching.max_rows: must be > 0",
    ]
