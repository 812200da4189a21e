"""The dashboard's latency panels show exemplars and link them to their trace."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from gateway.runtime.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "k8s" / "grafana-dashboard.json"
LATENCIES = ("scoring_gateway_request_duration_seconds_bucket", "scoring_gateway_end_to_end_latency_seconds_bucket")


def test_the_latency_panels_ask_for_exemplars_and_link_their_trace_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["traces"]["type"] == "datasource"
    for metric in LATENCIES:
        (panel,) = [p for p in dashboard["panels"] if any(metric in t["expr"] for t in p.get("targets", []))]
        assert any(t.get("exemplar") for t in panel["targets"]), panel["title"]
        (link,) = panel["fieldConfig"]["defaults"]["links"]
        assert "${__data.fields.trace_id}" in link["url"] and "${traces}" in link["url"]


def test_the_exemplars_carry_the_label_the_link_reads() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry).pipeline("churn")
    metrics.request("qlik", "none", "200", 0.1, "ab" * 16)
    metrics.end_to_end_since(1000.0, [900])
    metrics.end_to_end_exemplar(0.1, "cd" * 16)
    text = generate_latest(registry).decode()
    for metric, trace_id in zip(LATENCIES, ("ab" * 16, "cd" * 16), strict=True):
        assert any(line.startswith(metric) and f'# {{trace_id="{trace_id}"}}' in line for line in text.splitlines())
