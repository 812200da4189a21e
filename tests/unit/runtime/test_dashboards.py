"""The Grafana dashboard and the alert rules query only metrics and labels the gateway exports.

The exported names come from a live :class:`Metrics` on a fresh registry with every method called
once, so renaming a metric or a label in code breaks this test until the artefacts follow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway.runtime.comparison_metrics import ComparisonFamilies, ComparisonMetrics
from gateway.runtime.health import Health
from gateway.runtime.metrics import Metrics

K8S = Path(__file__).resolve().parents[3] / "k8s"
DASHBOARD = K8S / "grafana-dashboard.json"
RULES = K8S / "prometheus-rule.yaml"

# Labels Prometheus attaches to every scraped series (Prometheus Operator target labels).
TARGET_LABELS = {"namespace", "pod", "job", "instance"}

METRIC = re.compile(r"\bscoring_gateway_[a-z_]+")
SELECTOR = re.compile(r"\b(scoring_gateway_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every sample name the gateway exports -> the label names it carries."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    Health(["churn"], metrics)
    m = metrics.pipeline("churn")
    m.consumed(1)
    m.published("predicted", 1)
    m.published("dead_letter", 1)
    m.dead_letters("score", 1)
    m.request("qlik", "xemp", "200", 0.5)
    m.slow_explanation("xemp")
    m.batch(100)
    m.requests_in_flight(1)
    m.inflight_records(100)
    m.paused(True)
    m.retry("503")
    m.end_to_end([0.1, 0.2])
    m.lag("churn-features", 0, 10)
    m.not_ready(None)
    compared = ComparisonMetrics(ComparisonFamilies(registry), "churn", "A", "B")
    compared.compared(1, 1, [0.1])
    compared.skipped("busy", 1)
    compared.request("200", 0.1)
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(expr, legendFormat) of every panel target."""
    return [(t["expr"], t.get("legendFormat", "")) for p in panels(dashboard) for t in p.get("targets", [])]


def all_expressions(dashboard: dict, rules: list[dict]) -> list[str]:
    return [expr for expr, _ in dashboard_queries(dashboard)] + [r["expr"] for r in rules]


def check_expression(expr: str, exported: dict[str, set[str]]) -> None:
    metrics = set(METRIC.findall(expr))
    assert metrics, f"no gateway metric in {expr!r}"
    for name in metrics:
        assert name in exported, f"{name} is not exported (in {expr!r})"
    for name, matchers in SELECTOR.findall(expr):
        for label in MATCHER.findall(matchers):
            assert label in exported[name] | TARGET_LABELS, f"{name} has no label {label!r} (in {expr!r})"
    for grouping in GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            for name in metrics:
                assert label in exported[name] | TARGET_LABELS, f"{name} has no label {label!r} (in {expr!r})"
    if "histogram_quantile" in expr:
        assert all(name.endswith("_bucket") for name in metrics), expr
        assert all("le" in [p.strip() for p in g.split(",")] for g in GROUPING.findall(expr)), expr


def test_the_checks_catch_a_wrong_name_or_label(exported: dict[str, set[str]]) -> None:
    with pytest.raises(AssertionError, match="not exported"):
        check_expression("rate(scoring_gateway_records_consumed[5m])", exported)
    with pytest.raises(AssertionError, match="no label 'outcome'"):
        check_expression('rate(scoring_gateway_records_consumed_total{outcome="x"}[5m])', exported)
    with pytest.raises(AssertionError, match="no label 'kind'"):
        check_expression("sum by (kind) (rate(scoring_gateway_retries_total[5m]))", exported)
    with pytest.raises(AssertionError):
        check_expression("histogram_quantile(0.9, sum by (pipeline) (rate(scoring_gateway_batch_rows_bucket[5m])))",
                         exported)


def test_every_expression_names_exported_metrics_and_labels(dashboard: dict, rules: list[dict],
                                                            exported: dict[str, set[str]]) -> None:
    expressions = all_expressions(dashboard, rules)
    assert len(expressions) > 20
    for expr in expressions:
        check_expression(expr, exported)


def test_legends_use_labels_the_query_keeps(dashboard: dict, exported: dict[str, set[str]]) -> None:
    for expr, legend in dashboard_queries(dashboard):
        kept = {label.strip() for g in GROUPING.findall(expr) for label in g.split(",")}
        if not kept:  # no aggregation: the series keep all their labels
            kept = set().union(*(exported[name] for name in METRIC.findall(expr)))
        for label in LEGEND.findall(legend):
            assert label in kept, f"legend {legend!r} uses {label!r}, which {expr!r} aggregates away"


def test_dashboard_shape(dashboard: dict) -> None:
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    pipeline = variables["pipeline"]
    assert pipeline["definition"] == "label_values(scoring_gateway_records_consumed_total, pipeline)"
    assert pipeline["query"]["query"] == pipeline["definition"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'pipeline=~"$pipeline"' in target["expr"], target["expr"]


def test_dashboard_covers_every_metric_family(dashboard: dict, exported: dict[str, set[str]]) -> None:
    used = {name for expr, _ in dashboard_queries(dashboard) for name in METRIC.findall(expr)}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in exported}
    families -= {"scoring_gateway_build_info"}
    missing = {f for f in families if not any(u.startswith(f) for u in used)}
    assert not missing


def test_dashboard_has_the_panels_operators_need(dashboard: dict) -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard))
    for words in ("records in/out", "dead-letter", "latency by explanation", "slow explanation", "batch size",
                  "in-flight", "consumer lag", "paused / not-ready", "end-to-end latency", "retries"):
        assert words in titles, words


def test_alert_rules_are_complete(rules: list[dict]) -> None:
    names = {r["alert"] for r in rules}
    assert {"ScoringGatewaySlowXempExplanations", "ScoringGatewayDeadLetterRatioHigh",
            "ScoringGatewayConsumerLagGrowing", "ScoringGatewayPipelineNotReady",
            "ScoringGatewayConsumerPaused", "ScoringGatewayRetryRateHigh"} <= names
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    dead_letter = next(r for r in rules if r["alert"] == "ScoringGatewayDeadLetterRatioHigh")["expr"]
    assert 'outcome="dead_letter"' in dead_letter and "/" in dead_letter  # a ratio of published
    xemp = next(r for r in rules if r["alert"] == "ScoringGatewaySlowXempExplanations")["expr"]
    assert 'kind="xemp"' in xemp
