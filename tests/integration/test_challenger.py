"""Champion and challenger end to end: real broker, the emulator's churn_challenger deployment over
HTTP, the gateway in-process, and `scoring-gateway compare` as a real process."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import orjson
import pytest

from gateway.kafka.embedded import create_topics
from gateway.stream.comparisons import sampled_by_key
from testkit.processes import EmulatorProcess, InProcessGateway
from testkit.topics import Topics, churn_features, gateway_config, unique, write_config

pytestmark = [pytest.mark.integration]

N = 1200


def qlik(emu: EmulatorProcess, name: str = "churn") -> dict[str, Any]:
    return {"type": "qlik", "url": emu.qlik_url(name), "token": "test-token"}


def datarobot(emu: EmulatorProcess, name: str) -> dict[str, Any]:
    return {"type": "datarobot", "url": emu.datarobot_url(name), "token": "test-token"}


async def produce(topics: Topics) -> list[bytes]:
    keys = [f"customer-{i % 400}".encode() for i in range(N)]
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(N)], keys)
    return keys


def config(topics: Topics, backend: dict[str, Any], *, comparisons: str | None = None, **pipeline: Any
           ) -> dict[str, Any]:
    doc = gateway_config(topics, backend, batching={"max_rows": 100, "linger_ms": 5}, **pipeline)
    if comparisons is not None:
        doc["pipelines"][0]["outputs"]["comparisons"] = comparisons
    return doc


def champion_view(records: list[Any]) -> dict[str, tuple[bytes | None, dict[str, Any]]]:
    """Each prediction by id, without the batch latency (a wall-clock figure, different every run)."""
    out = {}
    for record in records:
        doc = orjson.loads(record.value)
        doc.pop("latency_ms")
        out[doc["id"]] = (record.key, doc)
    return out


async def run_pipeline(topics: Topics, predictions: str, group: str, **pipeline: Any) -> list[Any]:
    topics.predictions, topics.group = predictions, group
    async with InProcessGateway(config(topics, pipeline.pop("backend"), **pipeline)):
        return await topics.read(predictions, lambda r: len(r) >= N, timeout_s=120, settle_s=0.3)


async def test_champion_outputs_are_unchanged_and_compare_finds_the_emulators_agreement(topics, emu, tmp_path):
    keys = await produce(topics)
    comparisons, second = unique("cmp"), unique("pred")
    await create_topics(topics.bootstrap, {comparisons: topics.partitions, second: topics.partitions})
    alone = await run_pipeline(topics, topics.predictions, unique("group"), backend=qlik(emu))
    before = emu.get("/_emulator/stats")["challenger"]
    challenger = {"backend": datarobot(emu, "churn_challenger"), "sample_rate": 0.5}
    with_challenger = await run_pipeline(topics, second, unique("group"), backend=qlik(emu), challenger=challenger,
                                         comparisons=comparisons)
    assert champion_view(with_challenger) == champion_view(alone)

    sampled = {k for k in keys if sampled_by_key(_Keyed(k), 0.5)}
    expected = sum(1 for k in keys if k in sampled)
    compared = await topics.read(comparisons, lambda r: len(r) >= expected, timeout_s=60, settle_s=0.5)
    assert len(compared) == expected  # every sampled record, once; no other
    assert {r.key for r in compared} == sampled
    docs = [orjson.loads(r.value) for r in compared]
    assert {d["challenger"]["backend"] for d in docs} == {"datarobot"}
    assert all(d["champion"]["prediction"] == champion_view(alone)[d["id"]][1]["prediction"] for d in docs)
    after = emu.get("/_emulator/stats")["challenger"]
    rows, disagreements = after["rows"] - before["rows"], after["disagreements"] - before["disagreements"]
    assert rows == expected and 0 < disagreements < rows

    path = write_config(tmp_path / "gateway.yaml", config(topics, qlik(emu), challenger=challenger,
                                                          comparisons=comparisons))
    png = tmp_path / "differences.png"
    command = [sys.executable, "-m", "gateway", "compare", "--config", str(path), "--pipeline", "churn",
               "--output", str(png)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = re.search(r"agreement: (\d+)/(\d+) = [\d.]+% \(95% CI ([\d.]+)% to ([\d.]+)%\)", done.stdout)
    assert found, done.stdout
    agreed, total, low, high = int(found[1]), int(found[2]), float(found[3]), float(found[4])
    assert (total, total - agreed) == (rows, disagreements)
    known = 100.0 * (rows - disagreements) / rows
    assert low <= known <= high
    assert "confusion (rows: champion, columns: challenger):" in done.stdout
    if _has_matplotlib():
        assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("trouble", ["down", "refusing", "slow"])
async def test_a_troubled_challenger_changes_nothing_for_the_champion(topics, emu, trouble):
    await produce(topics)
    comparisons = unique("cmp")
    await create_topics(topics.bootstrap, {comparisons: topics.partitions})
    other = None
    if trouble == "down":
        backend = {"type": "qlik", "url": "http://127.0.0.1:9/api/v1/ml/deployments/churn/realtime-predictions/"
                                          "actions/run"}
    else:
        args = ("--error-rate", "429=1.0") if trouble == "refusing" else ("--latency-ms", "200")
        other = EmulatorProcess(*args).start()
        backend = qlik(other, "churn_challenger")
    try:
        doc = config(topics, qlik(emu), comparisons=comparisons,
                     challenger={"backend": backend, "request_timeout_s": 2,
                                 "concurrency": {"max_in_flight_requests": 2}})
        async with InProcessGateway(doc) as gateway:
            predictions = await topics.read(topics.predictions, lambda r: len(r) >= N, timeout_s=120, settle_s=0.3)
            metrics = await _metrics(gateway.admin_url)
        dead = await topics.read_all(topics.dead_letter, quiet_s=0.3)
    finally:
        if other is not None:
            other.stop()
    assert len({orjson.loads(r.value)["id"] for r in predictions}) == N and not dead
    skipped = _sum(metrics, "scoring_gateway_challenger_skipped_total")
    compared = _sum(metrics, "scoring_gateway_comparisons_total")
    if trouble in ("down", "refusing"):
        assert compared == 0 and skipped > 0
    else:
        assert skipped + compared > 0


class _Keyed:
    def __init__(self, key: bytes) -> None:
        self.key, self.topic, self.partition, self.offset = key, "", 0, 0


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


async def _metrics(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        return await response.text()


def _sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))
