"""``scoring-gateway run`` refuses an admin port that is taken in one line naming ``admin.port``."""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway import app


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """``run`` configures the process's logging; the other tests keep theirs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_an_admin_port_in_use_is_one_line_naming_the_setting(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({
            "kafka": {"bootstrap_servers": "127.0.0.1:9"},
            "admin": {"host": "127.0.0.1", "port": port},
            "pipelines": [{"name": "churn", "input_topic": "in",
                           "backend": {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/x/"
                                                                "realtime-predictions/actions/run"},
                           "outputs": {"predictions": "p", "dead_letter": "d"}}]}))
        status = app.main(argparse.Namespace(config=str(config), log_format="text", log_level="CRITICAL"))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "admin.port" in err[0], err
    assert "Traceback" not in "\n".join(err)
