"""Test harness: a real broker, the emulator over HTTP, and helpers to feed and read topics.

Nothing here sleeps for a fixed time: every wait polls for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from gateway.kafka.embedded import create_topics, free_port
from tests.kafka.choice import broker_kind, in_ci
from tests.kafka.runtime import KafkaUnavailable

SESSION_TIMEOUT_MS = 6000  # a group join takes about half of it on tansu; Apache Kafka accepts it too
BROKER = broker_kind()  # SG_TEST_BROKER: kafka (default) or tansu

PLAN_TYPES = ["Standard", "Premium", "Basic"]


def churn_features(i: int, rng: random.Random | None = None) -> dict[str, Any]:
    rng = rng or random.Random(i)
    return {
        "PlanType": rng.choice(PLAN_TYPES),
        "NumberOfPenalties": rng.randint(0, 5),
        "HasRenewed": rng.random() < 0.5,
        "BaseFee": round(rng.uniform(20, 120), 2),
        "ServiceTickets": rng.randint(0, 10),
        "AdditionalFeatureSpend": round(rng.uniform(0, 60), 2),
        "ServiceRating": round(rng.uniform(1, 5), 1),
        "Promotion": rng.random() < 0.3,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


async def async_wait_until(predicate: Callable[[], Any], timeout_s: float, what: str,
                           interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


def start_broker(broker: Any) -> Any:
    """Start a test broker; without Java or Maven the test is skipped with the reason, except
    under CI, where a broker that cannot start is an error."""
    import pytest

    try:
        return broker.start()
    except KafkaUnavailable as exc:
        if in_ci():
            pytest.fail(f"Apache Kafka is required under CI: {exc}", pytrace=False)
        pytest.skip(f"Apache Kafka unavailable ({exc}); SG_TEST_BROKER=tansu runs the suite on tansu")


def idempotent(kind: str = BROKER) -> bool:
    """Whether the gateway's producer may be idempotent on this broker (tansu refuses InitProducerId)."""
    return kind == "kafka"


# ---- the emulator ---------------------------------------------------------------------------

class EmulatorProcess:
    """``scoring-gateway emulate`` in its own process, so the gateway talks real HTTP to it.

    It starts instant (latency 0, per-row 0: the emulator's default is a real service's latency);
    ``extra`` flags come after, so a test can ask for its own latency.
    """

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "emulate", "--host", "127.0.0.1", "--port", str(self.port),
             "--seed", "7", "--latency-ms", "0", "--per-row-ms", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        wait_until(self._up, 30, "the emulator to listen")
        self.deployments = {d["name"]: d for d in self.get("/_emulator/deployments")["deployments"]}

    def _up(self) -> bool:
        if self._proc.poll() is not None:
            raise RuntimeError(f"emulator exited: {self._proc.stderr.read().decode()[-2000:]}")
        try:
            self.get("/_emulator/deployments")
            return True
        except OSError:
            return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return orjson.loads(r.read())

    def configure(self, **options: Any) -> Any:
        req = urllib.request.Request(self.url + "/_emulator/config", data=orjson.dumps(options),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return orjson.loads(r.read())

    def requests(self) -> list[str]:
        """The path and query of the last prediction requests, as the emulator received them."""
        with urllib.request.urlopen(self.url + "/_emulator/requests", timeout=5) as r:
            return list(orjson.loads(r.read())["requests"])

    def reset(self) -> None:
        self.configure(latency_ms=0, per_row_ms=0, error_rate={}, hang_rate=0, drop_rate=0,
                       rate_limit_per_minute=None, max_concurrent_requests=None, crash_value=None)

    def qlik_url(self, name: str = "churn") -> str:
        return f"{self.url}/api/v1/ml/deployments/{self.deployments[name]['qlik_id']}/realtime-predictions/actions/run"

    def datarobot_url(self, name: str = "churn") -> str:
        return f"{self.url}/predApi/v1.0/deployments/{self.deployments[name]['datarobot_id']}/predictions"

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


# ---- topics ---------------------------------------------------------------------------------

class Topics:
    """One test's topics on the shared broker (unique names, so tests never see each other)."""

    def __init__(self, bootstrap: str, partitions: int = 4) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.input = unique("in")
        self.predictions = unique("pred")
        self.explanations = unique("expl")
        self.dead_letter = unique("dlq")
        self.group = unique("group")

    async def create(self) -> None:
        await create_topics(self.bootstrap, {self.input: self.partitions, self.predictions: self.partitions,
                                             self.explanations: self.partitions,
                                             self.dead_letter: self.partitions})

    async def produce(self, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None,
                      headers: Sequence[Sequence[tuple[str, bytes]]] | None = None) -> None:
        """Produce in key-partitioned batches (murmur2 like Kafka's default partitioner)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_batch_size=262144,
                                    max_request_size=4 * 1048576, linger_ms=0)
        await producer.start()
        try:
            keys = keys or [None] * len(values)
            by_partition: dict[int, list[int]] = {}
            for i, key in enumerate(keys):
                p = (murmur2(key) & 0x7FFFFFFF) % self.partitions if key is not None else i % self.partitions
                by_partition.setdefault(p, []).append(i)
            waits = []
            for p, idxs in by_partition.items():
                batch = producer.create_batch()
                for i in idxs:
                    h = list(headers[i]) if headers else []
                    if batch.append(key=keys[i], value=values[i], timestamp=None, headers=h) is None:
                        waits.append(await producer.send_batch(batch, self.input, partition=p))
                        batch = producer.create_batch()
                        batch.append(key=keys[i], value=values[i], timestamp=None, headers=h)
                waits.append(await producer.send_batch(batch, self.input, partition=p))
            await asyncio.gather(*waits)
        finally:
            await producer.stop()

    @contextlib.asynccontextmanager
    async def _from_beginning(self, topic: str, committed_only: bool = False) -> Any:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                    isolation_level="read_committed" if committed_only else "read_uncommitted")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            yield consumer
        finally:
            await consumer.stop()

    async def read(self, topic: str, until: Callable[[list[Any]], bool], timeout_s: float = 60.0,
                   settle_s: float = 0.0, committed_only: bool = False) -> list[Any]:
        """Every record of ``topic`` from the beginning, read until ``until(records)`` holds
        (then ``settle_s`` more, to catch records that should NOT be there)."""
        records: list[Any] = []
        async with self._from_beginning(topic, committed_only) as consumer:
            deadline = time.monotonic() + timeout_s
            settle_deadline = None
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=10000)
                for rs in batch.values():
                    records.extend(rs)
                now = time.monotonic()
                if settle_deadline is None and until(records):
                    settle_deadline = now + settle_s
                if settle_deadline is not None and now >= settle_deadline:
                    return records
                if now > deadline:
                    raise AssertionError(f"timed out reading {topic}: {len(records)} records")

    async def read_all(self, topic: str, quiet_s: float = 0.5, committed_only: bool = False,
                       at_least: int = 0, patience_s: float = 60.0) -> list[Any]:
        """Everything in ``topic`` now: read until a fetch of ``quiet_s`` brings nothing new
        (the broker's end offsets cannot be trusted on tansu); ``committed_only`` reads as a
        ``read_committed`` consumer (outputs of committed transactions only). With ``at_least``,
        quiet fetches do not end the read before that many records, for up to ``patience_s``: on a
        fresh three-node cluster a partition can fetch nothing for more than a second."""
        records: list[Any] = []
        deadline = time.monotonic() + patience_s
        async with self._from_beginning(topic, committed_only) as consumer:
            while True:
                batch = await consumer.getmany(timeout_ms=int(quiet_s * 1000), max_records=50000)
                if not batch and (len(records) >= at_least or time.monotonic() >= deadline):
                    return records
                for rs in batch.values():
                    records.extend(rs)

    async def committed(self) -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(self.input, p))
                    for p in range(self.partitions)}
        finally:
            await consumer.stop()


def values_of(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def ids_of(records: Iterable[Any]) -> list[str]:
    return [orjson.loads(r.value)["id"] for r in records]


# ---- gateway configs ------------------------------------------------------------------------

def gateway_config(topics: Topics, backend: dict[str, Any], **pipeline: Any) -> dict[str, Any]:
    kafka = {"bootstrap_servers": topics.bootstrap, "group_id": topics.group,
             "session_timeout_ms": SESSION_TIMEOUT_MS, "commit_interval_ms": 200,
             "enable_idempotence": idempotent()}
    kafka.update(pipeline.pop("kafka", {}))
    doc = {
        "kafka": kafka,
        "admin": {"host": "127.0.0.1", "port": pipeline.pop("admin_port", 0)},
        "shutdown_timeout_s": pipeline.pop("shutdown_timeout_s", 10),
        "pipelines": [{
            "name": pipeline.pop("name", "churn"),
            "input_topic": topics.input,
            "backend": backend,
            "outputs": {"predictions": topics.predictions, "dead_letter": topics.dead_letter,
                        "explanations": pipeline.pop("explanations_topic", None)},
            **pipeline,
        }],
    }
    return doc


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


class GatewayProcess:
    """``scoring-gateway run`` as a real process (for crash and signal tests)."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - the process writes to it until it exits
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._log.closed:
            self._log.close()


class InProcessGateway:
    """``serve()`` on the test's own event loop: ``async with InProcessGateway(doc) as gw``."""

    def __init__(self, doc: dict[str, Any]) -> None:
        from gateway.config import parse_config

        self.config = parse_config(doc, dict(os.environ))
        self.stop = asyncio.Event()
        self.admin: Any = None
        self._task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> InProcessGateway:
        from gateway.app import serve

        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(self.config, self.stop, ready=ready, handle_signals=False))
        done, _ = await asyncio.wait({ready, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            self._task.result()
        self.admin = ready.result()
        return self

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin.port}"

    async def __aexit__(self, *exc: Any) -> None:
        self.stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 60)
