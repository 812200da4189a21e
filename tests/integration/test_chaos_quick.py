"""The chaos campaign at its quick sizes: every scenario must keep its invariants.

Each scenario runs as ``python -m benchmarks.chaos --quick --only KEY`` runs it: its own broker,
emulator and gateway processes (see ``benchmarks/chaos.py``), every input id checked against the
output topics, and its result read from the JSON report. A test fails on any broken invariant (a
lost record, a dead letter where none is allowed, a duplicate where none is allowed, a secret in
the gateway's output, a disruption that did not land mid-stream). Goals (retry amplification) are
reported by the runner, not asserted here: a few hundred requests are too few to judge a ratio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config import KafkaConfig
from gateway.kafka.aiokafka_client import AiokafkaClients
from gateway.kafka.embedded import create_topics
from gateway.kafka.sink import KafkaSink
from testkit.brokers.choice import BROKER, idempotent
from testkit.topics import Topics, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Crashes (several kill -9 in one stream) and broker stalls (SIGSTOP) have no other test, so they
# run here. The rest are left to `make chaos` where a dedicated test already holds the behaviour at
# a reduced size, each scenario costing a broker of its own and tens of seconds: hostile input (the
# runner's report test below), the API outages (tests/integration/test_outages.py), backend faults
# (test_streaming's transient faults), the auth outage (test_streaming's auth failure), graceful
# restarts (test_processes' SIGTERM), rebalances (test_processes' two members, test_rebalance),
# crashes under exactly-once (test_exactly_once's kills), scaling 1 -> 2 -> 3 -> 2 -> 1 replicas
# (test_scale_in's member leaving under a steady stream, both deliveries).
SUITE_RUNS = ("crashes", "broker-stalls")
SUITE_SKIPS = frozenset({"hostile-input", "api-503", "api-down", "api-hangs", "api-429", "backend-faults",
                         "auth-outage", "graceful-restarts", "rebalances",
                         "crashes-exactly-once", "scale", "scale-exactly-once"})


def run_campaign(tmp_path: Path, *keys: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``python -m benchmarks.chaos --quick --only KEYS`` on this suite's broker; its JSON report."""
    out = tmp_path / "chaos.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.chaos", "--quick", "--only", ",".join(keys),
                           "--out", str(out), "--workdir", str(tmp_path / "work"), "--broker", BROKER],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.is_file(), f"no report; stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done, json.loads(out.read_text())


def test_every_scenario_is_run_here_or_left_to_make_chaos() -> None:
    listed = subprocess.run([sys.executable, "-m", "benchmarks.chaos", "--list"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True).stdout.split()
    assert sorted(listed) == sorted({*SUITE_RUNS, *SUITE_SKIPS})


@pytest.mark.timeout(420)
@pytest.mark.parametrize("key", SUITE_RUNS)
def test_scenario_keeps_its_invariants(tmp_path: Path, key: str) -> None:
    _, report = run_campaign(tmp_path, key)
    (result,) = report["scenarios"]
    broken = [f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["passed"] and not c["goal"]]
    assert not broken, f"{key} (logs in {result['workdir']}):\n" + "\n".join(broken)
    tally = result["tally"]
    assert tally is not None and tally["records_in"] > 0
    assert tally["lost"] == 0 and tally["strangers"] == 0
    assert result["notes"]["secret_sweep"]["files"] > 0


@pytest.mark.timeout(420)
def test_the_runner_reports_the_hostile_input_scenario(tmp_path: Path) -> None:
    done, report = run_campaign(tmp_path, "hostile-input")
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "| scenario | in | predicted | dead-lettered | lost | duplicates |" in done.stdout
    assert report["mode"] == "quick" and report["passed"] is True and report["broker"]["kind"] == BROKER
    assert report["machine"]["cores"] >= 1 and report["machine"]["packages"]["aiokafka"]
    (scenario,) = report["scenarios"]
    tally, sizes = scenario["tally"], report["sizes"]
    assert scenario["key"] == "hostile-input" and scenario["passed"]
    assert tally["records_in"] == sizes["hostile_bad"] + sizes["hostile_good"]
    assert (tally["predicted"], tally["dead_lettered"]) == (sizes["hostile_good"], sizes["hostile_bad"])
    assert tally["lost"] == 0 and tally["duplicates"] == 0
    kinds = scenario["notes"]["hostile_kinds"]
    assert len(kinds) >= 15 and all(entry["wrong"] == 0 for entry in kinds.values())


@pytest.mark.timeout(120)
async def test_concurrent_publishes_to_one_partition_neither_time_out_nor_duplicate(broker, caplog) -> None:
    """Found by the hostile-input scenario: dozens of batches waiting on one partition made
    aiokafka time them out spuriously, and the retry duplicated outputs of a healthy run."""
    topics = Topics(broker.bootstrap, partitions=1)
    topic = unique("sink")
    await create_topics(broker.bootstrap, {topic: 1})
    kafka = KafkaConfig(bootstrap_servers=broker.bootstrap, client_id="sink-test",
                        enable_idempotence=idempotent())
    producer = AiokafkaClients(kafka).producer()
    await producer.start()
    try:
        sink = KafkaSink(producer)
        await sink.prepare([topic])
        caplog.set_level(logging.WARNING, logger="gateway.kafka.sink")
        # three producer batches per publish (each value fills most of one), 100 publishes at once
        await asyncio.gather(*(sink.publish([(topic, b"k", b"%06d" % (3 * i + j) + b"x" * 200_000, [])
                                             for j in range(3)]) for i in range(100)))
    finally:
        await producer.stop()
    assert not [r for r in caplog.records if r.getMessage() == "publish_failed"]
    values = [r.value[:6] for r in await topics.read_all(topic)]
    assert sorted(values) == [b"%06d" % i for i in range(300)]  # each exactly once
