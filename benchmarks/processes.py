"""The processes a benchmark runs beside itself: the emulator and the gateway, each its own process.

Each is started with ``python -m gateway ...`` on loopback, talked to over HTTP with the runner's
aiohttp session, and stopped by the PID it was started with. ``ProcessProbe`` reads a process's CPU
time and memory from /proc, so figures can say which process used the machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.broker import free_port

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcessProbe:
    """CPU seconds and resident memory of one process, read from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # After the command name: state is field 0, utime 11, stime 12 (fields 14/15 of stat(5)).
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def memory_bytes(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (the peak so far), in bytes."""
        found: dict[str, int] = {}
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        name, value = line.split(":", 1)
                        found[name] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return found


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


async def _wait_process(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return proc.poll()


# ---- the emulator ---------------------------------------------------------------------------

class EmulatorProcess:
    """``python -m gateway emulate`` on a free loopback port."""

    command: tuple[str, ...] = ("-m", "gateway", "emulate")

    def __init__(self, session: aiohttp.ClientSession, log_path: Path, *extra: str) -> None:
        self.session = session
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._extra = extra
        self._proc: subprocess.Popen[bytes] | None = None
        self.deployments: dict[str, dict[str, Any]] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout_s: float = 30.0) -> EmulatorProcess:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, *self.command, "--host", "127.0.0.1",
                 "--port", str(self.port), "--seed", "7", *self._extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self._proc.returncode}; see {self.log_path}")
            try:
                found = await self.get("/_emulator/deployments")
                self.deployments = {d["name"]: d for d in found["deployments"]}
                return self
            except (aiohttp.ClientError, OSError) as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator did not answer within {timeout_s:.0f}s") from exc
                await asyncio.sleep(0.1)

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=10)) as r:
            r.raise_for_status()
            return await r.json()

    async def configure(self, **options: Any) -> Any:
        async with self.session.post(self.url + "/_emulator/config", json=options,
                                     timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status != 200:
                raise RuntimeError(f"emulator refused {options}: {r.status} {await r.text()}")
            return await r.json()

    async def reset(self, **options: Any) -> Any:
        """Back to a healthy, instant backend, then ``options`` on top."""
        settings: dict[str, Any] = {"latency_ms": 0, "per_row_ms": 0, "shap_multiplier": 1,
                                    "xemp_multiplier": 1, "error_rate": {}, "hang_rate": 0,
                                    "drop_rate": 0, "rate_limit_per_minute": None}
        settings.update(options)
        return await self.configure(**settings)

    async def stats(self) -> Any:
        return await self.get("/_emulator/stats")

    def qlik_url(self, name: str = "churn") -> str:
        return (f"{self.url}/api/v1/ml/deployments/{self.deployments[name]['qlik_id']}"
                "/realtime-predictions/actions/run")

    def datarobot_url(self, name: str = "churn") -> str:
        return f"{self.url}/predApi/v1.0/deployments/{self.deployments[name]['datarobot_id']}/predictions"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_process(proc, 10)


# ---- the gateway ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricSample:
    name: str
    labels: dict[str, str]
    value: float


class GatewayProcess:
    """``python -m gateway run --config FILE``: the gateway as users run it, in its own process."""

    def __init__(self, session: aiohttp.ClientSession, config: dict[str, Any], workdir: Path,
                 label: str) -> None:
        self.session = session
        self.admin_port = free_port()
        config = dict(config, admin={"host": "127.0.0.1", "port": self.admin_port})
        self.config = config
        self.config_path = workdir / f"{label}.yaml"
        self.log_path = workdir / f"{label}.log"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._proc: subprocess.Popen[bytes] | None = None
        self.probe: ProcessProbe | None = None
        self.exit_status: int | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.probe = ProcessProbe(self._proc.pid)
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def metrics(self) -> list[MetricSample]:
        """The admin port's /metrics, parsed; [] while the admin server is not up yet."""
        try:
            async with self.session.get(self.admin_url + "/metrics",
                                        timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status != 200:
                    return []
                text = await r.text()
        except (TimeoutError, aiohttp.ClientError, OSError):
            return []
        return [MetricSample(s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(text) for s in family.samples]

    async def published(self) -> int | None:
        """Records published so far (predicted + dead-lettered), or None before /metrics answers."""
        samples = await self.metrics()
        if not samples:
            return None
        return int(sum(s.value for s in samples if s.name == "scoring_gateway_records_published_total"))

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the gateway drains and exits 0), SIGKILL past ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self.exit_status
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if await _wait_process(proc, timeout_s) is None:
                proc.kill()
        self.exit_status = proc.wait()
        return self.exit_status


def metric_values(samples: list[MetricSample], name: str, **labels: str) -> list[MetricSample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def metric_sum(samples: list[MetricSample], name: str, **labels: str) -> float:
    return sum(s.value for s in metric_values(samples, name, **labels))
