"""The processes a benchmark or a chaos scenario runs beside itself: the emulator and the gateway,
each its own process.

Each is started with ``python -m gateway ...`` on loopback, talked to over HTTP with the runner's
aiohttp session, and stopped by the PID it was started with. ``ProcessProbe`` reads a process's CPU
time and memory from /proc, so figures can say which process used the machine. The reliability
campaign (``chaos_env``) builds on the same two classes, so both harnesses start, scrape and stop
the gateway the same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import aiohttp
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.kafka.embedded import free_port

# The gateway's start-up log line, as JSON ("admin_port": N) or as text (admin_port=N).
_ADMIN_PORT = re.compile(r'gateway_started.*?admin_port"?[:=] ?(\d+)')

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


def spawn(log_path: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m gateway ARGS``, its output appended to ``log_path``; ``env`` adds to ours."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "gateway", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=None if env is None else {**os.environ, **env})


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
    while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child process, no event to wait on
        await asyncio.sleep(0.05)
    return proc.poll()


# ---- the emulator ---------------------------------------------------------------------------

class EmulatorProcess:
    """``python -m gateway emulate`` on a free loopback port; ``extra`` are more of its flags.

    It starts instant (latency 0, per-row 0: the emulator's default is a real service's latency);
    ``extra`` comes after, so a caller can ask for its own.

    With ``tls`` it serves HTTPS and the runner's own control calls skip verification (the emulator's
    certificate is the scenario's, not one the runner trusts).
    """

    def __init__(self, session: aiohttp.ClientSession, log_path: Path, *extra: str, seed: int = 7,
                 tls: bool = False, control_timeout_s: float = 10.0) -> None:
        self.session = session
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._args = ("--host", "127.0.0.1", "--port", str(self.port), "--seed", str(seed),
                      "--latency-ms", "0", "--per-row-ms", "0", *extra)
        self._control_ssl: Literal[False] | None = False if tls else None
        self._control_timeout = aiohttp.ClientTimeout(total=control_timeout_s)
        self._proc: subprocess.Popen[bytes] | None = None
        self.deployments: dict[str, dict[str, Any]] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout_s: float = 30.0) -> Self:
        self._proc = spawn(self.log_path, "emulate", *self._args)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self._proc.returncode}; see {self.log_path}")
            try:
                found = await self.get("/_emulator/deployments")
                self.deployments = {d["name"]: d for d in found["deployments"]}
                return self
            except (aiohttp.ClientError, OSError) as exc:  # OSError includes the client's TimeoutError
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator did not answer within {timeout_s:.0f}s") from exc
                await asyncio.sleep(0.1)

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path, timeout=self._control_timeout,
                                    ssl=self._control_ssl) as r:
            r.raise_for_status()
            return orjson.loads(await r.read())

    async def configure(self, **options: Any) -> Any:
        """POST /_emulator/config; a refusal names the options, never their values (one may be a token)."""
        async with self.session.post(self.url + "/_emulator/config", data=orjson.dumps(options),
                                     headers={"Content-Type": "application/json"},
                                     timeout=self._control_timeout, ssl=self._control_ssl) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"emulator refused {sorted(options)}: {r.status} {body[:300]!r}")
            return orjson.loads(body)

    async def reset(self, **options: Any) -> Any:
        """Back to a healthy, instant backend, then ``options`` on top."""
        settings: dict[str, Any] = {"latency_ms": 0, "per_row_ms": 0, "shap_multiplier": 1,
                                    "xemp_multiplier": 1, "error_rate": {}, "hang_rate": 0,
                                    "drop_rate": 0, "rate_limit_per_minute": None,
                                    "max_concurrent_requests": None, "crash_value": None}
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
    """``python -m gateway run --config FILE``: the gateway as users run it, in its own process.

    ``env`` adds to the inherited environment (where secrets referenced as ``${VAR}`` come from).
    """

    def __init__(self, session: aiohttp.ClientSession, config: dict[str, Any], workdir: Path,
                 label: str, *, env: Mapping[str, str] | None = None) -> None:
        self.session = session
        self.label = label
        # Port 0: the gateway binds a free port itself and logs it. A port picked here and bound
        # later can be taken meanwhile (by another connection's ephemeral source port, say).
        self._admin_port: int | None = None
        self.config = dict(config, admin={"host": "127.0.0.1", "port": 0})
        self.config_path = workdir / f"{label}.yaml"
        self.log_path = workdir / f"{label}.log"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._env = {**(env or {}), "PYTHONUNBUFFERED": "1"}
        self._proc: subprocess.Popen[bytes] | None = None
        self.probe: ProcessProbe | None = None
        self.exit_status: int | None = None

    @property
    def admin_port(self) -> int | None:
        """The admin server's port, from the log's start-up line; None until that is written."""
        if self._admin_port is None:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                return None
            found = _ADMIN_PORT.search(text)
            if found is not None:
                self._admin_port = int(found.group(1))
        return self._admin_port

    @property
    def admin_url(self) -> str | None:
        port = self.admin_port
        return None if port is None else f"http://127.0.0.1:{port}"

    def start(self) -> Self:
        self._proc = spawn(self.log_path, "run", "--config", str(self.config_path), env=self._env)
        self.probe = ProcessProbe(self._proc.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        """Whether the process is up; an exit seen here is kept in ``exit_status``."""
        if self._proc is None:
            return False
        code = self._proc.poll()
        if code is not None:
            self.exit_status = code
        return code is None

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def scrape(self) -> str | None:
        """The admin port's /metrics as text; None while the admin server is not up yet."""
        url = self.admin_url
        if url is None:
            return None
        try:
            async with self.session.get(url + "/metrics",
                                        timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status != 200:
                    return None
                return await r.text()
        except (aiohttp.ClientError, OSError):  # OSError includes the client's TimeoutError
            return None

    async def metrics(self) -> list[MetricSample]:
        """The admin port's /metrics, parsed; [] while the admin server is not up yet."""
        text = await self.scrape()
        return [] if text is None else parse_metrics(text)

    async def published(self) -> int | None:
        """Records published so far (predicted + dead-lettered), or None before /metrics answers."""
        samples = await self.metrics()
        if not samples:
            return None
        return int(metric_sum(samples, "scoring_gateway_records_published_total"))

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the gateway drains and exits 0), SIGKILL past ``timeout_s``. Returns the exit status."""
        proc = self._proc
        if proc is None:
            return self.exit_status
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if await _wait_process(proc, timeout_s) is None:
                proc.kill()
        self.exit_status = proc.wait()
        return self.exit_status


def parse_metrics(text: str) -> list[MetricSample]:
    return [MetricSample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def metric_values(samples: list[MetricSample], name: str, **labels: str) -> list[MetricSample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def metric_sum(samples: list[MetricSample], name: str, **labels: str) -> float:
    return sum(s.value for s in metric_values(samples, name, **labels))
