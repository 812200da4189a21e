"""Metrics: the PRODUCT.md §6 names, types and labels, the counting itself, and bounded label values."""

from __future__ import annotations

import math
import random

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Histogram

from gateway.runtime.health import Health
from gateway.runtime.metrics import SECONDS_BUCKETS, Metrics, PipelineMetrics

P = "scoring_gateway_"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def churn(registry: CollectorRegistry) -> PipelineMetrics:
    return Metrics(registry).pipeline("churn")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def families(registry: CollectorRegistry) -> dict[str, tuple[str, set[str]]]:
    """family name -> (type, label names seen on its samples, without ``le``)."""
    found = {}
    for family in registry.collect():
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        found[family.name] = (family.type, labels)
    return found


def touch_everything(m: PipelineMetrics) -> None:
    m.consumed(1)
    m.published("predicted", 1)
    m.dead_letters("score", 1)
    m.request("qlik", "shap", "200", 0.01)
    m.slow_explanation("xemp")
    m.batch(10)
    m.requests_in_flight(1)
    m.inflight_records(1)
    m.paused(False)
    m.retry("429")
    m.end_to_end([0.1])
    m.lag("churn-features", 0, 5)
    m.not_ready(None)
    m.circuit("open")
    m.transaction("committed", 0.01)
    m.transaction_held(3)
    m.partitions_unowned(0.2)


def test_every_product_metric_has_its_contract_type_and_labels(
        registry: CollectorRegistry, churn: PipelineMetrics) -> None:
    touch_everything(churn)
    # Counter family names drop the ``_total`` suffix in prometheus-client's data model.
    expected = {
        P + "records_consumed": ("counter", {"pipeline"}),
        P + "records_published": ("counter", {"pipeline", "outcome"}),
        P + "request_duration_seconds": ("histogram", {"pipeline", "backend", "explanations", "status"}),
        P + "slow_explanation_requests": ("counter", {"pipeline", "kind"}),
        P + "batch_rows": ("histogram", {"pipeline"}),
        P + "inflight_requests": ("gauge", {"pipeline"}),
        P + "inflight_records": ("gauge", {"pipeline"}),
        P + "consumer_paused": ("gauge", {"pipeline"}),
        P + "retries": ("counter", {"pipeline", "reason"}),
        P + "end_to_end_latency_seconds": ("histogram", {"pipeline"}),
        P + "consumer_lag": ("gauge", {"pipeline", "topic", "partition"}),
        P + "dead_letter_records": ("counter", {"pipeline", "stage"}),
        P + "pipeline_ready": ("gauge", {"pipeline"}),
        P + "build_info": ("gauge", {"version", "python"}),
        P + "circuit_state": ("gauge", {"pipeline"}),
        P + "concurrency_limit": ("gauge", {"pipeline"}),
        P + "transactions": ("counter", {"pipeline", "outcome"}),
        P + "transaction_duration_seconds": ("histogram", {"pipeline"}),
        P + "transaction_held_records": ("gauge", {"pipeline"}),
        P + "circuit_transitions": ("counter", {"pipeline", "to"}),
        P + "partitions_unowned_seconds": ("histogram", {"pipeline"}),
    }
    assert families(registry) == expected


def test_nothing_lands_on_the_global_registry() -> None:
    before = set(prometheus_client.REGISTRY._names_to_collectors)
    Metrics(CollectorRegistry()).pipeline("churn").consumed(1)
    Metrics(CollectorRegistry()).pipeline("churn").consumed(1)  # a second instance must not collide
    assert set(prometheus_client.REGISTRY._names_to_collectors) == before


def test_pipeline_instruments_are_cached_per_name(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    assert metrics.pipeline("a") is metrics.pipeline("a")
    assert metrics.pipeline("a") is not metrics.pipeline("b")


def test_counters_count_per_pipeline_and_outcome(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    metrics.pipeline("a").consumed(500)
    metrics.pipeline("a").consumed(20)
    metrics.pipeline("b").consumed(7)
    metrics.pipeline("a").published("predicted", 510)
    metrics.pipeline("a").published("dead_letter", 10)
    metrics.pipeline("a").dead_letters("not_predicted", 10)
    assert value(registry, P + "records_consumed_total", pipeline="a") == 520
    assert value(registry, P + "records_consumed_total", pipeline="b") == 7
    assert value(registry, P + "records_published_total", pipeline="a", outcome="predicted") == 510
    assert value(registry, P + "records_published_total", pipeline="a", outcome="dead_letter") == 10
    assert value(registry, P + "dead_letter_records_total", pipeline="a", stage="not_predicted") == 10
    assert value(registry, P + "dead_letter_records_total", pipeline="a", stage="decode") == 0


def test_fixed_vocabularies_reject_unknown_values(churn: PipelineMetrics) -> None:
    with pytest.raises(ValueError, match="outcome"):
        churn.published("ok", 1)
    with pytest.raises(ValueError, match="stage"):
        churn.dead_letters("somewhere", 1)
    with pytest.raises(ValueError, match="explanations"):
        churn.request("qlik", "lime", "200", 0.1)
    with pytest.raises(ValueError, match="kind"):
        churn.slow_explanation("none")


def test_request_histogram_spans_sub_millisecond_to_minutes(
        registry: CollectorRegistry, churn: PipelineMetrics) -> None:
    churn.request("datarobot", "xemp", "200", 0.0003)
    churn.request("datarobot", "xemp", "200", 250.0)
    churn.request("datarobot", "xemp", "200", 400.0)
    labels = dict(pipeline="churn", backend="datarobot", explanations="xemp", status="200")
    bucket = P + "request_duration_seconds_bucket"
    assert value(registry, bucket, le="0.0005", **labels) == 1
    assert value(registry, bucket, le="120.0", **labels) == 1
    assert value(registry, bucket, le="300.0", **labels) == 2
    assert value(registry, bucket, le="+Inf", **labels) == 3
    assert value(registry, P + "request_duration_seconds_sum", **labels) == pytest.approx(650.0003)


def test_status_and_retry_labels_stay_bounded(registry: CollectorRegistry, churn: PipelineMetrics) -> None:
    for status in ("200", "503", "timeout", "connect", "disconnect", "client_error", "fatal",
                   "Service Unavailable", "9999", "600", "\u0661\u0662\u0663"):
        churn.request("qlik", "none", status, 0.01)
    statuses = {s.labels["status"] for f in registry.collect() if f.name == P + "request_duration_seconds"
                for s in f.samples}
    assert statuses == {"200", "503", "timeout", "connect", "disconnect", "client_error", "fatal", "other"}

    for reason in ("429", "503", "408", "timeout", "decode", "fatal", "boom", "a-very-long-reason"):
        churn.retry(reason)
    assert value(registry, P + "retries_total", pipeline="churn", reason="408") == 1
    assert value(registry, P + "retries_total", pipeline="churn", reason="other") == 2
    assert value(registry, P + "retries_total", pipeline="churn", reason="boom") is None


def test_gauges_set_the_latest_value(registry: CollectorRegistry, churn: PipelineMetrics) -> None:
    churn.requests_in_flight(16)
    churn.inflight_records(20000)
    churn.inflight_records(1200)
    churn.paused(True)
    assert value(registry, P + "inflight_requests", pipeline="churn") == 16
    assert value(registry, P + "inflight_records", pipeline="churn") == 1200
    assert value(registry, P + "consumer_paused", pipeline="churn") == 1
    churn.paused(False)
    assert value(registry, P + "consumer_paused", pipeline="churn") == 0


def test_lag_per_partition_and_forgotten_on_revocation(registry: CollectorRegistry, churn: PipelineMetrics) -> None:
    churn.lag("churn-features", 0, 10)
    churn.lag("churn-features", 3, 42)
    churn.lag("churn-features", 3, 40)
    assert value(registry, P + "consumer_lag", pipeline="churn", topic="churn-features", partition="3") == 40
    churn.forget_partition("churn-features", 3)
    churn.forget_partition("churn-features", 7)  # never seen: no error
    assert value(registry, P + "consumer_lag", pipeline="churn", topic="churn-features", partition="3") is None
    assert value(registry, P + "consumer_lag", pipeline="churn", topic="churn-features", partition="0") == 10
    churn.lag("churn-features", 3, 5)  # reassigned later: the series comes back
    assert value(registry, P + "consumer_lag", pipeline="churn", topic="churn-features", partition="3") == 5


def reference_histogram(values: list[float]) -> dict[str, float]:
    """What prometheus-client's own Histogram reports for the same observations."""
    registry = CollectorRegistry()
    histogram = Histogram("ref", "reference", buckets=SECONDS_BUCKETS, registry=registry)
    for v in values:
        histogram.observe(v)
    return {s.labels.get("le", s.name): s.value for s in next(iter(registry.collect())).samples
            if not s.name.endswith("_created")}


def batch_histogram(registry: CollectorRegistry, pipeline: str) -> dict[str, float]:
    family = next(f for f in registry.collect() if f.name == P + "end_to_end_latency_seconds")
    return {s.labels.get("le", s.name): s.value for s in family.samples if s.labels["pipeline"] == pipeline}


@pytest.mark.parametrize("size", [1, 5, 31, 32, 500, 5000])
def test_end_to_end_matches_prometheus_histogram_semantics(registry: CollectorRegistry, size: int) -> None:
    rng = random.Random(size)
    metrics = Metrics(registry)
    seen: list[float] = []
    for _ in range(3):
        # log-uniform over the whole range, plus exact bucket bounds (le is inclusive) and overflow
        values = [10 ** rng.uniform(-4.5, 2.7) for _ in range(size)]
        values[: min(size, 3)] = [0.0005, 2.0, 300.0][: min(size, 3)]
        if size > 3:
            values[3] = 1e6
        metrics.pipeline("churn").end_to_end(values)
        seen.extend(values)
    ours = batch_histogram(registry, "churn")
    reference = reference_histogram(seen)
    assert {k: v for k, v in ours.items() if not k.endswith("_sum")} == \
        {k.replace("ref", P + "end_to_end_latency_seconds"): v for k, v in reference.items() if not k.endswith("_sum")}
    assert ours[P + "end_to_end_latency_seconds_sum"] == pytest.approx(reference["ref_sum"])


@pytest.mark.parametrize("size", [0, 1, 7, 500])
def test_end_to_end_from_timestamps_counts_what_the_ages_would(size: int) -> None:
    """The pipeline reports record timestamps and a publish time; the buckets and the sum must be
    those of the ages in seconds, a timestamp ahead of the clock aged 0, bounds inclusive."""
    rng = random.Random(size)
    now_ms = 1_763_800_000_000.0
    ages_ms = [int(10 ** rng.uniform(-1, 5.7)) for _ in range(size)]
    ages_ms[: min(size, 4)] = [0, 2000, 300_000, -1500][: min(size, 4)]  # bounds, and a future timestamp
    stamps = [int(now_ms) - age for age in ages_ms]
    by_stamps, by_ages = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    for _ in range(2):
        by_stamps.pipeline("churn").end_to_end_since(now_ms, stamps)
        by_ages.pipeline("churn").end_to_end([max(0.0, age / 1000.0) for age in ages_ms])
    got = batch_histogram(by_stamps.registry, "churn")
    want = batch_histogram(by_ages.registry, "churn")
    assert {k: v for k, v in got.items() if not k.endswith("_sum")} == \
        {k: v for k, v in want.items() if not k.endswith("_sum")}
    assert got[P + "end_to_end_latency_seconds_sum"] == pytest.approx(want[P + "end_to_end_latency_seconds_sum"])
    assert got[P + "end_to_end_latency_seconds_count"] == 2 * size


def test_end_to_end_keeps_the_sum_monotonic_and_ignores_nan(
        registry: CollectorRegistry, churn: PipelineMetrics) -> None:
    churn.end_to_end([0.2, 0.3])
    churn.end_to_end([-5.0, 0.1])  # producer clock ahead of ours: counted, but the sum must not shrink
    churn.end_to_end([math.nan, 0.4] + [0.01] * 40)
    churn.end_to_end([])
    got = batch_histogram(registry, "churn")
    assert got[P + "end_to_end_latency_seconds_count"] == 45
    assert got["0.0005"] == 1  # the negative value
    assert got[P + "end_to_end_latency_seconds_sum"] == pytest.approx(0.5 + 0.4 + 0.4)



def test_pipeline_ready_follows_health(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    health = Health(["churn"], metrics)
    ready = lambda: value(registry, P + "pipeline_ready", pipeline="churn")  # noqa: E731
    assert ready() == 0
    health.set_assigned("churn", True, partitions=0)
    assert ready() == 1
    health.set_stopped("churn", "HTTP 401: token expired")
    assert ready() == 0
    health.set_stopped("churn", None)
    health.set_circuit("churn", "circuit open: cannot connect")
    assert ready() == 0
    health.set_circuit("churn", None)
    assert ready() == 1


def test_build_info_carries_the_version(registry: CollectorRegistry) -> None:
    from gateway import __version__
    Metrics(registry)
    samples = [s for f in registry.collect() if f.name == P + "build_info" for s in f.samples]
    assert len(samples) == 1 and samples[0].value == 1 and samples[0].labels["version"] == __version__
