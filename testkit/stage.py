"""What a chaos scenario (or a security test) breaks: a broker, an emulator and gateway processes, all on loopback.

Each piece runs in its own process so it can be killed, stopped or frozen like the real thing,
and each is stopped by the PID it was started with: the emulator and gateway processes are
:mod:`testkit.processes`', given the scenario's secrets and evidence. A scenario owns one
:class:`Stage` (a fresh broker, topics and emulator), so what one scenario breaks never leaks into
the next.

Secrets reach the gateway the way production deploys them: the config file says
``token: ${SCORING_TOKEN}`` and the process environment holds the value, so the files a campaign
leaves behind hold no secret unless the gateway itself wrote one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.commands.demo.sample_data import churn_records
from testkit.brokers.choice import idempotent, make_broker
from testkit.ledger import read_inputs
from testkit.measure import metric_sum, parse_metrics
from testkit.processes import EmulatorProcess, GatewayProcess, config_file
from testkit.topics import SESSION_TIMEOUT_MS, Topics, gateway_config

TOKEN_VAR = "SCORING_TOKEN"
DATAROBOT_KEY_VAR = "SCORING_DATAROBOT_KEY"
_HTTP_TIMEOUT_S = 5.0
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S)


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

class Emulator(EmulatorProcess):
    """``python -m gateway emulate`` requiring the scenario's token and DataRobot key."""

    def __init__(self, workdir: Path, creds: Secrets, *, tls: tuple[Path, Path] | None = None,
                 seed: int = 7) -> None:
        tls_args = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1])) if tls else ()
        super().__init__("--token", creds.token, "--datarobot-key", creds.datarobot_key, *tls_args,
                         seed=seed, tls=tls is not None, log_path=workdir / "emulator.log",
                         control_timeout_s=_HTTP_TIMEOUT_S)

    async def start_again(self, timeout_s: float = 30.0, **options: Any) -> Emulator:
        """A new emulator process on the port of the one :meth:`stop` ended, so the URLs a gateway
        was given reach it again: an API that was down and came back. The start flags (secrets, TLS)
        are the same; run-time options and served counts start afresh, so ``options`` are set again."""
        await self.astart(timeout_s)
        if options:
            await self.aconfigure(**options)
        return self


# ---- the gateway ----------------------------------------------------------------------------

class Gateway(GatewayProcess):
    """One ``python -m gateway run`` process; a restart is a new :class:`Gateway` with a new label.

    Its environment holds the scenario's secrets, and its log, /metrics scrapes and /readyz answers
    are evidence for the secret sweep.
    """

    def __init__(self, session: aiohttp.ClientSession, stage: Stage, config: dict[str, Any],
                 label: str) -> None:
        super().__init__(config_file(config, stage.workdir, label), stage.workdir / f"{label}.log",
                         env=stage.creds.environment(), label=label, session=session)
        self.stage = stage
        self._scrapes = 0

    @property
    def returncode(self) -> int | None:
        return self.exit_status

    def start(self) -> Gateway:
        self.stage.evidence.add_file(self.log_path)
        return super().start()

    def alive(self) -> bool:
        return self.running()

    async def scrape(self) -> str | None:
        """``/metrics`` as text (kept as evidence), or None while the admin port is not up."""
        text = await super().scrape()
        if text is None:
            return None
        self._scrapes += 1
        path = self.stage.workdir / f"metrics-{self.label}-{self._scrapes:04d}.txt"
        path.write_text(text)
        self.stage.evidence.add_file(path)
        return text

    async def metric(self, name: str, **labels: str) -> float | None:
        text = await self.scrape()
        return None if text is None else metric_sum(parse_metrics(text), name, **labels)

    async def published(self) -> int:
        return await super().published() or 0

    async def readyz(self) -> tuple[int, dict[str, Any]] | None:
        url = self.admin_url
        if url is None or self.session is None:
            return None
        try:
            async with self.session.get(url + "/readyz", timeout=_HTTP_TIMEOUT) as r:
                body = await r.read()
                self.stage.evidence.add_blob(f"{self.label} /readyz", body)
                return r.status, orjson.loads(body)
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
            return None

    async def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait for the drain; SIGKILL past ``timeout_s``. Returns the exit status."""
        return await self.astop(timeout_s)


# ---- one scenario's world -------------------------------------------------------------------

class Stage:
    """A fresh broker, the scenario's topics and an emulator; gateways are started on it."""

    def __init__(self, session: aiohttp.ClientSession, workdir: Path, scenario: str, *,
                 tls: tuple[Path, Path] | None = None, broker: str = "kafka") -> None:
        self.session = session
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.creds = Secrets.fresh(scenario)
        self.evidence = Evidence()
        self.broker_kind = broker
        self.broker = make_broker(broker, workdir / "broker.log")
        self.emulator = Emulator(workdir, self.creds, tls=tls)
        self.topics: Topics | None = None
        self.gateways: list[Gateway] = []
        self._progress: list[GroupProgress] = []

    async def __aenter__(self) -> Stage:
        self.broker.start()
        try:
            self.topics = Topics(self.broker.bootstrap)
            await self.topics.create()
            await self.emulator.astart()
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
        pipeline.setdefault("kafka", {}).setdefault("enable_idempotence", idempotent(self.broker_kind))
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
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        output = self.workdir / f"{label}.txt"
        output.write_bytes(out)
        self.evidence.add_file(output)
        return proc.returncode or 0, out.decode(errors="replace")


async def feed_churn(stage: Stage, n: int, seed: int) -> dict[str, Any]:
    """``n`` valid churn records keyed by customer; returns the input records by id."""
    records = list(churn_records(n, seed=seed, malformed_share=0.0))
    await stage.t.produce([r.value for r in records], [r.key for r in records])
    inputs = await read_inputs(stage.t)
    if len(inputs) != n:
        raise RuntimeError(f"produced {n} records but the input topic holds {len(inputs)}")
    return inputs


def freeze(pid: int | None) -> None:
    if pid is not None:
        os.kill(pid, signal.SIGSTOP)


def resume(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


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
            # Closing a consumer of a frozen broker may fail or time out: nothing is left to save.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)
