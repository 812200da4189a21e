"""The streaming core end to end: real broker over TCP, the emulator over HTTP, gateway in-process."""

from __future__ import annotations

import random
from collections import defaultdict

import aiohttp
import orjson
import pytest

from testkit.processes import InProcessGateway
from testkit.topics import churn_features, gateway_config, ids_of, values_of
from testkit.waits import async_wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tansu]


def qlik(emu, **extra):
    return {"type": "qlik", "url": emu.qlik_url(), "token": "test-token", **extra}


def datarobot(emu, **extra):
    return {"type": "datarobot", "url": emu.datarobot_url(), "token": "test-token", **extra}


def input_ids(records):
    return {f"{r.topic}/{r.partition}/{r.offset}" for r in records}


async def drain_outputs(topics, n_pred, n_dead, timeout_s=120, settle_s=0.5):
    preds = await topics.read(topics.predictions, lambda r: len(r) >= n_pred, timeout_s, settle_s)
    dead = await topics.read(topics.dead_letter, lambda r: len(r) >= n_dead, timeout_s, settle_s)
    return preds, dead


async def wait_committed_to_end(topics, inputs, timeout_s=30):
    ends = defaultdict(int)
    for r in inputs:
        ends[r.partition] = max(ends[r.partition], r.offset + 1)

    async def reached():
        committed = await topics.committed()
        return all(committed.get(p) == end for p, end in ends.items())

    await async_wait_until(reached, timeout_s, "committed offsets to reach the end of every partition",
                           interval_s=0.2)


async def test_every_record_yields_exactly_one_output_and_offsets_reach_the_end(topics, emu):
    n = 20_000
    rng = random.Random(1)
    bad = set(rng.sample(range(n), n // 100))
    values = [(b"{not json" if i % 2 else b"[1, 2, 3]") if i in bad else orjson.dumps(churn_features(i))
              for i in range(n)]
    keys = [f"customer-{i % 997}".encode() for i in range(n)]
    await topics.produce(values, keys, headers=[[("trace", str(i).encode())] for i in range(n)])
    inputs = await topics.read(topics.input, lambda r: len(r) >= n)
    doc = gateway_config(topics, qlik(emu), batching={"max_rows": 500, "linger_ms": 10})
    async with InProcessGateway(doc):
        preds, dead = await drain_outputs(topics, n - len(bad), len(bad))
        await wait_committed_to_end(topics, inputs)
    ids = ids_of(preds) + ids_of(dead)
    assert len(ids) == n and set(ids) == input_ids(inputs)
    for record in dead:
        doc = orjson.loads(record.value)
        assert doc["stage"] == "decode" and doc["raw"] in ("{not json", "[1, 2, 3]")
        assert doc["status"] is None and doc["pipeline"] == "churn"
    by_id = {f"{r.topic}/{r.partition}/{r.offset}": r for r in inputs}
    for record in preds[:200]:
        doc = orjson.loads(record.value)
        source = by_id[doc["id"]]
        assert record.key == source.key and list(record.headers) == list(source.headers)
        assert doc["prediction"] in ("yes", "no")
        assert abs(sum(doc["probabilities"].values()) - 1) < 1e-6
        assert doc["backend"] == "qlik" and doc["source"]["offset"] == source.offset


@pytest.mark.parametrize("case", ["qlik-shap-embedded", "datarobot-xemp-topic", "datarobot-shap-embedded",
                                  "datarobot-json-body"])
async def test_both_backends_with_explanations(topics, emu, case):
    n = 600
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)],
                         [f"k{i}".encode() for i in range(n)])
    explanations_topic = None
    if case == "qlik-shap-embedded":
        backend = qlik(emu, include_shap=True)
    elif case == "datarobot-xemp-topic":
        backend = datarobot(emu, max_explanations=3, explanation_algorithm="xemp")
        explanations_topic = topics.explanations
    elif case == "datarobot-shap-embedded":
        backend = datarobot(emu, max_explanations="all", explanation_algorithm="shap")
    else:
        backend = datarobot(emu, body_format="json", gzip=True)
    doc = gateway_config(topics, backend, explanations_topic=explanations_topic,
                         batching={"max_rows": 100, "linger_ms": 5})
    async with InProcessGateway(doc):
        preds, dead = await drain_outputs(topics, n, 0, settle_s=0.2)
        expl = (await topics.read(topics.explanations, lambda r: len(r) >= n)) if explanations_topic else []
    assert dead == [] and len(set(ids_of(preds))) == n
    outputs = values_of(preds)
    kind = {"qlik-shap-embedded": "shap", "datarobot-xemp-topic": "xemp",
            "datarobot-shap-embedded": "shap", "datarobot-json-body": None}[case]
    for out in outputs:
        assert out["backend"] == case.split("-")[0]
        assert out["prediction"] in ("yes", "no")
        assert out["explanation_kind"] == kind
        if explanations_topic:
            assert "explanations" not in out
        elif kind:
            strengths = [abs(e["strength"]) for e in out["explanations"]]
            assert strengths == sorted(strengths, reverse=True) and len(strengths) == 8
        if case.startswith("datarobot") and kind != "shap":
            assert out["threshold"] == 0.5
    if explanations_topic:
        by_id = {d["id"]: d for d in values_of(expl)}
        assert set(by_id) == {o["id"] for o in outputs}
        for d in by_id.values():
            assert d["kind"] == "xemp" and 1 <= len(d["explanations"]) <= 3
            assert all(e["qualitative"] in ("+++", "++", "+", "-", "--", "---") for e in d["explanations"])
    if case == "datarobot-shap-embedded":
        # SHAP metadata is carried per row when explanations go to their own topic; embedded rows
        # still have every feature's contribution
        assert all(len(o["explanations"]) == 8 for o in outputs)


@pytest.mark.parametrize("backend_kind", ["datarobot", "qlik"])
async def test_poison_rows_inside_good_batches(topics, emu, backend_kind):
    n = 400
    poison = {17, 123, 124, 350}
    values = []
    for i in range(n):
        features = churn_features(i)
        if i in poison:
            features["BaseFee"] = "not-a-number"
        values.append(orjson.dumps(features))
    await topics.produce(values, [f"k{i}".encode() for i in range(n)])
    backend = datarobot(emu) if backend_kind == "datarobot" else qlik(emu, include_not_predicted_reason=True)
    doc = gateway_config(topics, backend, batching={"max_rows": 100, "linger_ms": 5})
    async with InProcessGateway(doc):
        preds, dead = await drain_outputs(topics, n - len(poison), len(poison))
    assert len(preds) == n - len(poison) and len(dead) == len(poison)
    for d in values_of(dead):
        assert "not-a-number" in d["raw"]
        if backend_kind == "datarobot":
            assert d["stage"] == "score" and d["status"] == 422 and d["reason"]
            assert d["attempts"] >= 1
        else:
            assert d["stage"] == "not_predicted" and d["reason"]


async def test_transient_faults_lose_nothing_and_dead_letter_nothing(topics, emu):
    n = 3000
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)],
                         [f"k{i % 50}".encode() for i in range(n)])
    emu.configure(error_rate={"503": 0.10, "429": 0.05}, hang_rate=0.01, drop_rate=0.01, retry_after_s=1)
    doc = gateway_config(topics, qlik(emu), batching={"max_rows": 50, "linger_ms": 5},
                         retry={"max_attempts": 8, "initial_backoff_ms": 20, "max_backoff_ms": 500,
                                "request_timeout_s": 1.5})
    async with InProcessGateway(doc):
        preds, dead = await drain_outputs(topics, n, 0, timeout_s=180)
    stats = emu.get("/_emulator/stats")
    assert dead == []
    assert len(set(ids_of(preds))) == n
    assert stats  # the emulator really injected faults
    assert "503" in orjson.dumps(stats).decode()


async def test_auth_failure_pauses_and_resumes_without_loss(topics, emu):
    n = 2000
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)],
                         [f"k{i}".encode() for i in range(n)])
    emu.configure(error_rate={"401": 1.0})
    doc = gateway_config(topics, qlik(emu), batching={"max_rows": 100, "linger_ms": 5},
                         retry={"max_backoff_ms": 300})
    async with InProcessGateway(doc) as gw, aiohttp.ClientSession() as http:
        async def readyz():
            async with http.get(gw.admin_url + "/readyz") as r:
                return r.status

        async def paused():
            async with http.get(gw.admin_url + "/metrics") as r:
                return 'scoring_gateway_consumer_paused{pipeline="churn"} 1.0' in await r.text()

        await async_wait_until(lambda: _is(readyz(), 503), 30, "/readyz to report not ready")
        await async_wait_until(paused, 30, "the consumer to pause")
        emu.configure(error_rate={})
        preds, dead = await drain_outputs(topics, n, 0, timeout_s=120)
        await async_wait_until(lambda: _is(readyz(), 200), 30, "/readyz to report ready again")
    assert dead == [] and len(set(ids_of(preds))) == n


async def test_per_key_order_holds_under_concurrency_and_retries(topics, emu):
    n = 4000
    keys = [f"key-{i % 40}".encode() for i in range(n)]
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)], keys)
    emu.configure(error_rate={"503": 0.2}, latency_ms=2, per_row_ms=0.05)
    doc = gateway_config(topics, qlik(emu), batching={"max_rows": 37, "linger_ms": 1},
                         concurrency={"max_in_flight_requests": 16},
                         retry={"initial_backoff_ms": 5, "max_backoff_ms": 100, "max_attempts": 10})
    async with InProcessGateway(doc):
        preds, _ = await drain_outputs(topics, n, 0, settle_s=0.2)
    seen: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(preds, key=lambda r: (r.partition, r.offset)):
        seen[record.key].append(orjson.loads(record.value)["source"]["offset"])
    assert len(seen) == 40
    for key, offsets in seen.items():
        assert offsets == sorted(offsets), f"{key!r} published out of order"


async def _is(awaitable, expected):
    return (await awaitable) == expected
