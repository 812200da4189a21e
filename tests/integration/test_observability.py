"""Metrics, slow-XEMP flagging and secret hygiene of a full run (gateway as a real process)."""

from __future__ import annotations

import re
import urllib.request

import orjson
import pytest

from gateway.kafka.embedded import free_port
from testkit.brokers.choice import idempotent
from testkit.processes import GatewayProcess
from testkit.topics import Topics, churn_features, write_config
from testkit.waits import async_wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tansu]

TOKEN = "tok-7c1e9f0b2d4a-secret"
DR_KEY = "drkey-5b8d3a6e1f90-secret"


def pipeline(name, topics, backend):
    return {"name": name, "input_topic": topics.input, "backend": backend,
            "batching": {"max_rows": 50, "linger_ms": 5},
            "explanations": {"slow_threshold_ms": 250},
            "outputs": {"predictions": topics.predictions, "dead_letter": topics.dead_letter}}


def scrape(url):
    return urllib.request.urlopen(url, timeout=5).read().decode()


def sample(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_slow_xemp_calls_are_flagged_and_counts_balance(tmp_path, broker, emu):
    emu.configure(latency_ms=5, xemp_multiplier=100, shap_multiplier=2)
    xemp, shap, plain = Topics(broker.bootstrap), Topics(broker.bootstrap), Topics(broker.bootstrap)
    n = 300
    for t in (xemp, shap, plain):
        await t.create()
        await t.produce([orjson.dumps(churn_features(i)) for i in range(n)], [f"k{i}".encode() for i in range(n)])
    dr = {"type": "datarobot", "url": emu.datarobot_url(), "token": TOKEN, "datarobot_key": DR_KEY}
    port = free_port()
    doc = {
        "kafka": {"bootstrap_servers": broker.bootstrap, "group_id": xemp.group, "session_timeout_ms": 6000,
                  "commit_interval_ms": 200, "enable_idempotence": idempotent()},
        "admin": {"host": "127.0.0.1", "port": port},
        "pipelines": [
            pipeline("xemp", xemp, {**dr, "max_explanations": 3, "explanation_algorithm": "xemp"}),
            pipeline("shap", shap, {**dr, "max_explanations": 3, "explanation_algorithm": "shap"}),
            pipeline("plain", plain, {"type": "qlik", "url": emu.qlik_url(), "token": TOKEN,
                                      "include_shap": False}),
        ],
    }
    path = write_config(tmp_path / "gw.yaml", doc)
    gw = GatewayProcess(path, tmp_path / "gw.log").start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        def drained():
            try:
                text = scrape(url)
            except OSError:
                return None
            published = sample(text, "scoring_gateway_records_published_total")
            return text if published >= 3 * n else None

        text = await async_wait_until(drained, 120, "every record published", interval_s=0.3)
        healthz = scrape(f"http://127.0.0.1:{port}/healthz")
    finally:
        gw.stop()
    assert gw.proc.returncode == 0
    for name in ("xemp", "shap", "plain"):
        consumed = sample(text, "scoring_gateway_records_consumed_total", pipeline=name)
        published = sample(text, "scoring_gateway_records_published_total", pipeline=name)
        assert consumed == published == n, (name, consumed, published)
    assert sample(text, "scoring_gateway_request_duration_seconds_count", pipeline="xemp", explanations="xemp") > 0
    assert sample(text, "scoring_gateway_request_duration_seconds_bucket", pipeline="xemp",
                  explanations="xemp", le="0.25") == 0  # every XEMP call took > 250 ms
    assert sample(text, "scoring_gateway_slow_explanation_requests_total", pipeline="xemp", kind="xemp") > 0
    assert sample(text, "scoring_gateway_slow_explanation_requests_total", pipeline="shap") == 0
    assert sample(text, "scoring_gateway_slow_explanation_requests_total", pipeline="plain") == 0
    assert sample(text, "scoring_gateway_request_duration_seconds_count", pipeline="plain", explanations="none") > 0
    logs = (tmp_path / "gw.log").read_text()
    warnings = [orjson.loads(line) for line in logs.splitlines() if '"slow_xemp_call"' in line]
    assert warnings and all(w["pipeline"] == "xemp" and w["duration_ms"] > w["threshold_ms"] == 250
                            and w["rows"] > 0 and w["deployment"] for w in warnings)
    assert '"ok"' in healthz
    for secret in (TOKEN, DR_KEY):
        assert secret not in logs and secret not in text
    assert not re.search(r"Bearer\s+\w", logs)
