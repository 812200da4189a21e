"""What the replay tests share: running ``scoring-gateway replay`` as a subprocess, and dead letters
written to the topic directly, as the gateway writes them."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.commands.replay import PROVENANCE_HEADER, replay_group
from gateway.stream.records import TOMBSTONE_REASON
from testkit.topics import Topics, churn_features, gateway_config, unique, write_config

ROOT = Path(__file__).resolve().parents[2]
UNUSED_BACKEND = {"type": "qlik", "token": "unused-token-5d1e",
                  "url": "http://127.0.0.1:9/api/v1/ml/deployments/churn/realtime-predictions/actions/run"}
HOUR_MS = 3_600_000


# ---- running the command ----------------------------------------------------------------------

@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith("summary: ")]
        assert lines, f"no summary line (exit {self.status}):\n{self.stdout}\n{self.stderr}"
        return dict(orjson.loads(lines[-1].removeprefix("summary: ")))


def replay_argv(config: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "replay", "--config", str(config), "--pipeline", "churn", *options]


def run_replay(config: Path, *options: str, timeout_s: float = 120, pipeline: str = "churn") -> Ran:
    argv = replay_argv(config, *options)
    argv[argv.index("--pipeline") + 1] = pipeline
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return Ran(done.returncode, done.stdout, done.stderr)


def start_replay(config: Path, *options: str, capture: bool = False) -> subprocess.Popen[str]:
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(replay_argv(config, *options), cwd=ROOT, stdout=output, stderr=output,
                            stdin=subprocess.DEVNULL, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def finish(proc: subprocess.Popen[str], timeout_s: float = 60) -> Ran:
    stdout, stderr = proc.communicate(timeout=timeout_s)
    return Ran(proc.returncode, stdout, stderr)


def config_for(tmp_path: Path, topics: Topics, backend: dict[str, Any] | None = None, **pipeline: Any) -> Path:
    return write_config(tmp_path / f"{unique('gw')}.yaml", gateway_config(topics, backend or UNUSED_BACKEND,
                                                                         **pipeline))


# ---- dead letters written directly -------------------------------------------------------------

@dataclass
class Written:
    """One dead-letter record the test wrote, and where it landed."""

    stage: str
    original: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    partition: int = -1
    offset: int = -1

    @property
    def position(self) -> str:
        return f"{self.partition}/{self.offset}"


def document(written: Written, *, pipeline: str = "churn", n: int = 0) -> bytes:
    """A dead-letter document as README "Records on the wire" defines it."""
    doc: dict[str, Any] = {"id": f"in/0/{n}", "pipeline": pipeline,
                           "source": {"topic": "in", "partition": 0, "offset": n, "timestamp_ms": written.timestamp_ms},
                           "stage": written.stage, "reason": "refused", "status": None, "attempts": 1}
    if written.original is None:
        doc["reason"], doc["raw"] = TOMBSTONE_REASON, ""
    else:
        try:
            doc["raw"] = written.original.decode("utf-8")
        except UnicodeDecodeError:
            doc["raw_base64"] = base64.b64encode(written.original).decode()
    return orjson.dumps(doc)


async def write_dead_letters(topics: Topics, items: list[Written], values: list[bytes] | None = None) -> None:
    """Each item to partition i % partitions, with its own timestamp, key and headers."""
    producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, linger_ms=5, max_batch_size=262144)
    await producer.start()
    try:
        futures = []
        for i, item in enumerate(items):
            value = values[i] if values is not None else document(item, n=i)
            futures.append(await producer.send(topics.dead_letter, value, key=item.key, headers=item.headers,
                                               partition=i % topics.partitions, timestamp_ms=item.timestamp_ms))
        for item, meta in zip(items, await asyncio.gather(*futures), strict=True):
            item.partition, item.offset = meta.partition, meta.offset
    finally:
        await producer.stop()


def provenance_of(record: Any) -> str | None:
    found = [value.decode() for name, value in record.headers if name == PROVENANCE_HEADER]
    assert len(found) <= 1, record.headers
    return found[0] if found else None


def position_of(provenance: str, topics: Topics) -> str:
    topic, _, position = provenance.partition("/")
    assert topic == topics.dead_letter
    return position


async def committed_offsets(topics: Topics) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=replay_group(topics.group, "churn"),
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topics.dead_letter, p)) for p in range(topics.partitions)}
    finally:
        await consumer.stop()


def scored(i: int, stage: str = "score", ts: int | None = None) -> Written:
    return Written(stage, orjson.dumps(churn_features(i)), f"k{i}".encode(), [("trace", f"t{i}".encode())],
                   ts if ts is not None else int(time.time() * 1000))
