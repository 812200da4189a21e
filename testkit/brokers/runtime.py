"""What running Apache Kafka needs on this machine: a JDK 17+ and the broker's jars.

The jars are ``org.apache.kafka:kafka_2.13`` and its runtime dependencies, resolved by the
``pom.xml`` beside this file (``mvn dependency:copy-dependencies``) into a cache folder that every
test session and benchmark reuses: ``~/.cache/scoring-gateway/kafka-<version>/``, or
``$SG_KAFKA_CACHE``. The first run downloads them from Maven Central (tens of seconds); a marker
file, written last and naming the pom's digest, says the copy is complete, so an interrupted or
outdated copy is redone. Concurrent preparations (two test runs at once) take turns on a lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "4.4.0"
CACHE_ENV = "SG_KAFKA_CACHE"
POM = Path(__file__).resolve().with_name("pom.xml")
MIN_JAVA = 17
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
_MARKER = "COMPLETE"


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot run here; the message says why in one line (no Java, no Maven, ...)."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "scoring-gateway" / f"kafka-{KAFKA_VERSION}"


def java_binary() -> str:
    """The ``java`` to run the broker with (``$JAVA_HOME/bin/java`` first), at least Java 17."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not os.access(candidate, os.X_OK):
        raise KafkaUnavailable(f"no Java found (JAVA_HOME or java on PATH): Apache Kafka {KAFKA_VERSION} "
                               f"needs a JDK {MIN_JAVA}+ (Debian: apt-get install openjdk-17-jdk-headless)")
    major = java_major(candidate)
    if major < MIN_JAVA:
        raise KafkaUnavailable(f"{candidate} is Java {major}; Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+")
    return candidate


def java_major(java: str) -> int:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaUnavailable(f"cannot run {java} -version: {exc}") from exc
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not found:
        raise KafkaUnavailable(f"cannot read the Java version from {java} -version: {done.stderr.strip()[:200]}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def classpath(timeout_s: float = 1200.0) -> str:
    """The broker's classpath (``<cache>/libs/*``), resolving the jars first when the cache lacks them."""
    folder = cache_dir()
    libs = folder / "libs"
    marker = folder / _MARKER
    expected = f"{KAFKA_VERSION} {_pom_digest()}"
    if _complete(marker, expected):
        return f"{libs}/*"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be filling the cache right now
        if not _complete(marker, expected):
            _resolve(folder, libs, timeout_s)
            marker.write_text(expected + "\n")
    return f"{libs}/*"


def _complete(marker: Path, expected: str) -> bool:
    try:
        return marker.read_text().strip() == expected
    except OSError:
        return False


def _resolve(folder: Path, libs: Path, timeout_s: float) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable(f"no Maven (mvn) on PATH to fetch Apache Kafka {KAFKA_VERSION} into {folder} "
                               "(Debian: apt-get install maven)")
    (folder / _MARKER).unlink(missing_ok=True)
    partial = folder / "libs.partial"
    for stale in (partial, libs):
        shutil.rmtree(stale, ignore_errors=True)
    command = [mvn, "-q", "-B", "-f", str(POM), _DEPENDENCY_PLUGIN, f"-DoutputDirectory={partial}",
               "-DincludeScope=runtime"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, env=dict(os.environ, JAVA_HOME=_java_home()))
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailable(f"mvn did not fetch Apache Kafka {KAFKA_VERSION} within {timeout_s:.0f}s") from exc
    if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise KafkaUnavailable(f"mvn could not fetch Apache Kafka {KAFKA_VERSION} (exit {done.returncode}): {tail}")
    partial.rename(libs)


def _java_home() -> str:
    """Maven runs on the same JDK as the broker."""
    return str(Path(os.path.realpath(java_binary())).parents[1])
