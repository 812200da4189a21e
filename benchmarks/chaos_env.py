"""What a chaos scenario breaks: a broker, an emulator and gateway processes, all on loopback.

Each piece runs in its own process so it can be killed, stopped or frozen like the real thing,
and each is stopped by the PID it was started with. A scenario owns one :class:`Stage` (a fresh
broker, topics and emulator), so what one scenario breaks never leaks into the next.

Secrets reach the gateway the way production deploys them: the config file says
``token: ${SCORING_TOKEN}`` and the process environment holds the value, so the files a campaign
leaves behind hold no secret unless the gateway itself wrote one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from gateway.broker import EmbeddedBroker, free_port
from tests.integration.harness import SESSION_TIMEOUT_MS, Topics, gateway_config

TOKEN_VAR = "SCORING_TOKEN"
DATAROBOT_KEY_VAR = "SCORING_DATAROBOT_KEY"
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True, slots=True)
class Secrets:
    """Distinctive credentials for one scenario: any sighting of them in an output is a leak."""

    token: str
    datarobot_key: str

    @classmethod
    def fresh(cls, scenario: str) -> Secrets:
        return cls(f"chaos-{scenario}-token-{secrets.token_hex(12)}",
                   f"chaos-{scenario}-drkey-{secrets.token_hex(12)}")

    def values(self) -> tuple[str, ...]:
        return (self.token, self.datarobot_key)

    def environment(self) -> dict[str, str]:
        return {TOKEN_VAR: self.token, DATAROBOT_KEY_VAR: self.datarobot_key}


@dataclass(slots=True)
class Evidence:
    """Everything the gateway said during a scenario, for the secret sweep: files and blobs."""

    files: list[Path] = field(default_factory=list)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)

    def add_file(self, path: Path) -> None:
        if path not in self.files:
            self.files.append(path)

    def add_blob(self, label: str, data: bytes) -> None:
        self.blobs.append((label, data))


# ---- the emulator ---------------------------------------------------------------------------

class Emulator:
    """``python -m gateway emulate`` requiring the scenario's token and DataRobot key."""

    def __init__(self, session: aiohttp.ClientSession, workdir: Path, creds: Secrets, *,
                 tls: tuple[Path, Path] | None = None, seed: int = 7) -> None:
        self.session = session
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = workdir / "emulator.log"
        self._args = ["--token", creds.token, "--datarobot-key", creds.datarobot_key, "--seed", str(seed)]
        if tls:
            self._args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self._control_ssl: Any = False if tls else None  # the runner's own control calls skip verification
        self._proc: subprocess.Popen[bytes] | None = None
        self.deployments: dict[str, dict[str, Any]] = {}

    async def start(self, timeout_s: float = 30.0) -> Emulator:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "emulate", "--host", "127.0.0.1", "--port", str(self.port),
                 *self._args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self._proc.returncode}; see {self.log_path}")
            try:
                found = await self.get("/_emulator/deployments")
                self.deployments = {d["name"]: d for d in found["deployments"]}
                return self
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator did not answer within {timeout_s:.0f}s") from None
                await asyncio.sleep(0.1)

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path, timeout=_HTTP_TIMEOUT, ssl=self._control_ssl) as r:
            r.raise_for_status()
            return orjson.loads(await r.read())

    async def configure(self, **options: Any) -> Any:
        async with self.session.post(self.url + "/_emulator/config", data=orjson.dumps(options),
                                     headers={"Content-Type": "application/json"},
                                     timeout=_HTTP_TIMEOUT, ssl=self._control_ssl) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"emulator refused {sorted(options)}: {r.status} {body[:300]!r}")
            return orjson.loads(body)

    async def stats(self) -> dict[str, Any]:
        return await self.get("/_emulator/stats")  # type: ignore[no-any-return]

    def qlik_url(self, name: str = "churn") -> str:
        return (f"{self.url}/api/v1/ml/deployments/{self.deployments[name]['qlik_id']}"
                "/realtime-predictions/actions/run")

    def datarobot_url(self, name: str = "churn") -> str:
        return f"{self.url}/predApi/v1.0/deployments/{self.deployments[name]['datarobot_id']}/predictions"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc, 10.0)


# ---- the gateway ----------------------------------------------------------------------------

class Gateway:
    """One ``python -m gateway run`` process; a restart is a new :class:`Gateway` with a new label."""

    def __init__(self, session: aiohttp.ClientSession, stage: Stage, config: dict[str, Any],
                 label: str) -> None:
        self.session = session
        self.stage = stage
        self.label = label
        self.admin_port = free_port()
        self.config = dict(config, admin={"host": "127.0.0.1", "port": self.admin_port})
        self.config_path = stage.workdir / f"{label}.yaml"
        self.log_path = stage.workdir / f"{label}.log"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._scrapes = 0

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Gateway:
        self.stage.evidence.add_file(self.log_path)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.stage.creds.environment(), "PYTHONUNBUFFERED": "1"})
        return self

    def alive(self) -> bool:
        if self._proc is None:
            return False
        code = self._proc.poll()
        if code is not None:
            self.returncode = code
        return code is None

    async def scrape(self) -> str | None:
        """``/metrics`` as text (kept as evidence), or None while the admin port is not up."""
        try:
            async with self.session.get(self.admin_url + "/metrics", timeout=_HTTP_TIMEOUT) as r:
                if r.status != 200:
                    return None
                text = await r.text()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return None
        self._scrapes += 1
        path = self.stage.workdir / f"metrics-{self.label}-{self._scrapes:04d}.txt"
        path.write_text(text)
        self.stage.evidence.add_file(path)
        return text

    async def metric(self, name: str, **labels: str) -> float | None:
        text = await self.scrape()
        return None if text is None else metric_sum(text, name, **labels)

    async def published(self) -> float:
        return await self.metric("scoring_gateway_records_published_total") or 0.0

    async def readyz(self) -> tuple[int, dict[str, Any]] | None:
        try:
            async with self.session.get(self.admin_url + "/readyz", timeout=_HTTP_TIMEOUT) as r:
                body = await r.read()
                self.stage.evidence.add_blob(f"{self.label} /readyz", body)
                return r.status, orjson.loads(body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, orjson.JSONDecodeError):
            return None

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        if proc is not None:
            self.returncode = proc.wait()

    async def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait for the drain; SIGKILL past ``timeout_s``. Returns the exit status."""
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
        self.returncode = proc.wait()
        return self.returncode

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# ---- one scenario's world -------------------------------------------------------------------

class Stage:
    """A fresh broker, the scenario's topics and an emulator; gateways are started on it."""

    def __init__(self, session: aiohttp.ClientSession, workdir: Path, scenario: str, *,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.session = session
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.creds = Secrets.fresh(scenario)
        self.evidence = Evidence()
        self.broker = EmbeddedBroker(log_path=workdir / "broker.log")
        self.emulator = Emulator(session, workdir, self.creds, tls=tls)
        self.topics: Topics | None = None
        self.gateways: list[Gateway] = []
        self._progress: list[GroupProgress] = []

    async def __aenter__(self) -> Stage:
        self.broker.start()
        try:
            self.topics = Topics(self.broker.bootstrap)
            await self.topics.create()
            await self.emulator.start()
        except BaseException:
            self.broker.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for progress in self._progress:
            await progress.close()
        for gateway in self.gateways:
            if gateway.alive():
                gateway.kill()
        self.emulator.stop()
        resume(self.broker.pid)  # never leave a frozen broker behind
        self.broker.stop()

    @property
    def t(self) -> Topics:
        assert self.topics is not None
        return self.topics

    def progress(self, ends: dict[int, int]) -> GroupProgress:
        """The group's progress towards ``ends``; closed with the stage."""
        found = GroupProgress(self.t, ends)
        self._progress.append(found)
        return found

    def config(self, backend: dict[str, Any], **pipeline: Any) -> dict[str, Any]:
        """A gateway config on this stage's topics, secrets referenced by environment variable."""
        pipeline.setdefault("shutdown_timeout_s", 15)
        doc = gateway_config(self.t, backend, **pipeline)
        assert doc["kafka"]["session_timeout_ms"] == SESSION_TIMEOUT_MS
        return doc

    def qlik(self, **options: Any) -> dict[str, Any]:
        return {"type": "qlik", "url": self.emulator.qlik_url(), "token": f"${{{TOKEN_VAR}}}", **options}

    def datarobot(self, **options: Any) -> dict[str, Any]:
        return {"type": "datarobot", "url": self.emulator.datarobot_url(), "token": f"${{{TOKEN_VAR}}}",
                "datarobot_key": f"${{{DATAROBOT_KEY_VAR}}}", **options}

    def gateway(self, config: dict[str, Any], label: str | None = None) -> Gateway:
        gateway = Gateway(self.session, self, config, label or f"gateway-{len(self.gateways) + 1}")
        self.gateways.append(gateway)
        return gateway.start()

    async def check(self, config: dict[str, Any], label: str = "check") -> tuple[int, str]:
        """``scoring-gateway check --probe`` on ``config``; its output is evidence."""
        path = self.workdir / f"{label}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "check", "--config", str(path), "--probe",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.creds.environment()})
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        output = self.workdir / f"{label}.txt"
        output.write_bytes(out)
        self.evidence.add_file(output)
        return proc.returncode or 0, out.decode(errors="replace")


def freeze(pid: int | None) -> None:
    if pid is not None:
        os.kill(pid, signal.SIGSTOP)


def resume(pid: int | None) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


# ---- the consumer group's progress ----------------------------------------------------------

class GroupProgress:
    """The group's committed offsets against the input's end: how far the stream really got.

    Commits trail acknowledged outputs, so "committed == end on every partition" means every input
    record has its outputs on the broker. Queries are bounded in time: a frozen broker makes them
    time out (reported as None), not hang the runner.
    """

    def __init__(self, topics: Topics, ends: dict[int, int]) -> None:
        self.topics = topics
        self.ends = ends
        self.total = sum(ends.values())
        self._consumer: AIOKafkaConsumer | None = None

    async def committed(self, timeout_s: float = 3.0) -> dict[int, int] | None:
        try:
            return await asyncio.wait_for(self._query(), timeout_s)
        except Exception:  # a frozen or restarting broker (timeouts included): try again later
            await self.close()
            return None

    async def _query(self) -> dict[int, int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.topics.bootstrap, group_id=self.topics.group,
                                        enable_auto_commit=False, request_timeout_ms=5000)
            await consumer.start()
            self._consumer = consumer
        found: dict[int, int] = {}
        for partition in self.ends:
            offset = await self._consumer.committed(TopicPartition(self.topics.input, partition))
            found[partition] = offset or 0
        return found

    async def fraction(self) -> float | None:
        offsets = await self.committed()
        if offsets is None:
            return None
        return sum(min(offsets[p], end) for p, end in self.ends.items()) / max(1, self.total)

    async def done(self) -> bool:
        offsets = await self.committed()
        return offsets is not None and all(offsets[p] >= end for p, end in self.ends.items())

    async def wait_done(self, deadline: float) -> bool:
        """Poll until every partition is committed to its end or the monotonic ``deadline`` passes."""
        while time.monotonic() < deadline:
            if await self.done():
                return True
            await asyncio.sleep(0.3)
        return False

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), 5)
            except Exception:  # closing a consumer of a frozen broker (timeouts included)
                pass
