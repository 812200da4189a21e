"""A real OpenTelemetry Collector for the tracing tests: built from ``main.go`` and ``go.mod`` beside
this file (an OTLP receiver and a file exporter, release 0.161.0) with the Go toolchain, once, into
``~/.cache/scoring-gateway/otelcol-0.161.0/`` (or ``$SG_OTELCOL_CACHE``), as the Kafka jars are.

The first build downloads the modules from the Go module proxy and compiles for about a minute on
two cores; ``go mod tidy`` writes the ``go.sum`` there. A marker naming the sources' digest, written
last, says the binary is complete and current; concurrent builds take turns on a lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

VERSION = "0.161.0"
CACHE_ENV = "SG_OTELCOL_CACHE"
HERE = Path(__file__).resolve().parent
SOURCES = ("main.go", "go.mod")
BINARY = "otelcol-sg"
_MARKER = "COMPLETE"


class CollectorUnavailable(RuntimeError):
    """The collector cannot be built here; the message says why in one line."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "scoring-gateway" / f"otelcol-{VERSION}"


def _digest() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def binary(timeout_s: float = 1200.0) -> Path:
    """The collector's executable, building it first when the cache lacks it (or it is outdated)."""
    folder = cache_dir()
    built, marker, expected = folder / BINARY, folder / _MARKER, f"{VERSION} {_digest()}"
    if _complete(marker, expected) and built.exists():
        return built
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it right now
        if not (_complete(marker, expected) and built.exists()):
            marker.unlink(missing_ok=True)
            _build(folder, built, timeout_s)
            marker.write_text(expected + "\n")
    return built


def _complete(marker: Path, expected: str) -> bool:
    try:
        return marker.read_text().strip() == expected
    except OSError:
        return False


def _build(folder: Path, built: Path, timeout_s: float) -> None:
    go = shutil.which("go")
    if go is None:
        raise CollectorUnavailable(f"no Go toolchain (go) on PATH to build the OpenTelemetry Collector {VERSION} "
                                   f"into {folder} (https://go.dev/dl/)")
    source = folder / "src"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir()
    for name in SOURCES:
        shutil.copyfile(HERE / name, source / name)
    partial = folder / f"{BINARY}.partial"
    for step in (["mod", "tidy"], ["build", "-trimpath", "-o", str(partial), "."]):
        try:
            done = subprocess.run([go, *step], cwd=source, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise CollectorUnavailable(f"go {step[0]} did not finish within {timeout_s:.0f}s") from exc
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
            raise CollectorUnavailable(f"go {step[0]} failed for the OpenTelemetry Collector {VERSION} "
                                       f"(exit {done.returncode}): {tail}")
    partial.rename(built)
