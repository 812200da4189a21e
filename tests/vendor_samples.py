"""Where the vendors' own samples live in the repository (``tests/fixtures/vendor``, sources in
each folder's SOURCES.md), so every test that checks the gateway or the emulator against them
reads the same files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent / "fixtures" / "vendor"
QLIK = VENDOR / "qlik"
DATAROBOT = VENDOR / "datarobot"


def qlik_json(name: str) -> Any:
    return json.loads((QLIK / name).read_text(encoding="utf-8"))


def datarobot_json(name: str) -> Any:
    return json.loads((DATAROBOT / name).read_text(encoding="utf-8"))
