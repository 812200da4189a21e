"""Prometheus instruments of the gateway, every name prefixed ``scoring_gateway_``.

All metrics live on the :class:`~prometheus_client.CollectorRegistry` handed to :class:`Metrics`,
never on the library's global registry, so tests and several gateways in one process don't collide.
:meth:`Metrics.pipeline` returns a :class:`PipelineMetrics` whose label children are bound once:
the hot path then pays one dictionary lookup and one increment per *batch*, never a ``labels()`` call.

Label values are bounded by construction: outcomes, stages and explanation kinds are checked against
fixed sets (a wrong value is a programming error and raises), while values that come from the outside
world (HTTP statuses, retry reasons) are folded into ``"other"`` when they fall outside known shapes.
Record keys and ids are never labels.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway import __version__
from gateway.runtime.batch_histogram import BatchHistogram

PREFIX = "scoring_gateway_"

# Sub-millisecond emulator calls up to multi-minute XEMP explanations; 2 s matches the default
# ``explanations.slow_threshold_ms`` so dashboards can read the share of slow calls off a bucket.
SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
BATCH_ROWS_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000)

OUTCOMES = ("predicted", "dead_letter")
CIRCUIT_STATES = ("closed", "half_open", "open")  # in gauge order: 0, 1, 2
TRANSACTION_OUTCOMES = ("committed", "aborted")
EXPLANATION_KINDS = ("none", "shap", "xemp")
DEAD_LETTER_STAGES = ("decode", "validate", "score", "not_predicted")
TRANSPORT_FAILURES = ("timeout", "connect", "disconnect", "client_error")
# A transport failure no retry heals (TLS verification) is reported as status "fatal".
REQUEST_FAILURES = (*TRANSPORT_FAILURES, "fatal")
RETRY_REASONS = ("429", "500", "502", "503", "504", *TRANSPORT_FAILURES, "decode", "fatal")
OTHER = "other"

def _is_http_status(value: str) -> bool:
    return len(value) == 3 and value.isascii() and value.isdigit() and "1" <= value[0] <= "5"


def status_label(status: str) -> str:
    """An HTTP status or transport failure as a bounded label value."""
    if _is_http_status(status) or status in REQUEST_FAILURES:
        return status
    return OTHER


def retry_reason_label(reason: str) -> str:
    """A retry reason as a bounded label value: the known set, any HTTP status, else ``other``."""
    if reason in RETRY_REASONS or _is_http_status(reason):
        return reason
    return OTHER


class ScoringMetrics(Protocol):
    """What the scoring lanes report (:class:`PipelineMetrics` for a pipeline; ``batch`` counts its own)."""

    def request(self, backend: str, explanations: str, status: str, seconds: float,
                trace_id: str | None = None) -> None: ...
    def retry(self, reason: str) -> None: ...
    def requests_in_flight(self, delta: int) -> None: ...
    def slow_explanation(self, kind: str) -> None: ...
    def concurrency_limit(self, limit: int) -> None: ...
    def circuit(self, state: str, changed: bool = True) -> None: ...


class Metrics:
    """Every gateway metric, registered once on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = PREFIX
        self.records_consumed = Counter(
            p + "records_consumed_total", "Records fetched from the input topic.",
            ["pipeline"], registry=registry)
        self.records_published = Counter(
            p + "records_published_total",
            "Records acknowledged by the broker on an output topic, by outcome.",
            ["pipeline", "outcome"], registry=registry)
        self.dead_letter_records = Counter(
            p + "dead_letter_records_total",
            "Records sent to the dead-letter topic, by the stage that refused them.",
            ["pipeline", "stage"], registry=registry)
        self.request_duration = Histogram(
            p + "request_duration_seconds",
            "Duration of scoring API requests, by explanation kind and HTTP status or transport failure.",
            ["pipeline", "backend", "explanations", "status"], buckets=SECONDS_BUCKETS, registry=registry)
        self.slow_explanation_requests = Counter(
            p + "slow_explanation_requests_total", "Explanation requests slower than explanations.slow_threshold_ms.",
            ["pipeline", "kind"], registry=registry)
        self.batch_rows = Histogram(p + "batch_rows", "Rows per scoring request.",
                                    ["pipeline"], buckets=BATCH_ROWS_BUCKETS, registry=registry)
        self.inflight_requests = Gauge(p + "inflight_requests", "Scoring requests awaiting a response.",
                                       ["pipeline"], registry=registry)
        self.inflight_records = Gauge(p + "inflight_records", "Records consumed but not yet published.",
                                      ["pipeline"], registry=registry)
        self.consumer_paused = Gauge(p + "consumer_paused", "1 while backpressure pauses fetching, else 0.",
                                     ["pipeline"], registry=registry)
        self.pipeline_ready = Gauge(p + "pipeline_ready", "1 when the pipeline passes its readiness checks, else 0.",
                                    ["pipeline"], registry=registry)
        self.retries = Counter(p + "retries_total", "Scoring request retries, by reason.",
                               ["pipeline", "reason"], registry=registry)
        self.consumer_lag = Gauge(
            p + "consumer_lag", "Records between the consumer position and the partition's end.",
            ["pipeline", "topic", "partition"], registry=registry)
        self.concurrency_limit = Gauge(
            p + "concurrency_limit",
            "Scoring requests allowed in flight at once (adapts with concurrency.max_in_flight_requests: auto).",
            ["pipeline"], registry=registry)
        self.transactions = Counter(
            p + "transactions_total", "Kafka transactions of delivery exactly_once, by outcome.",
            ["pipeline", "outcome"], registry=registry)
        self.transaction_duration = Histogram(
            p + "transaction_duration_seconds", "Committing one Kafka transaction in a round (or aborting it).",
            ["pipeline"], buckets=SECONDS_BUCKETS, registry=registry)
        self.transaction_held_records = Gauge(
            p + "transaction_held_records", "Records whose outputs wait for a Kafka transaction.",
            ["pipeline"], registry=registry)
        self.circuit_state = Gauge(
            p + "circuit_state", "The backend's circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["pipeline"], registry=registry)
        self.circuit_transitions = Counter(
            p + "circuit_transitions_total", "Circuit breaker state changes, by the state entered.",
            ["pipeline", "to"], registry=registry)
        self.partitions_unowned = Histogram(
            p + "partitions_unowned_seconds", "A rebalance's pause as this member sees it: from the revocation of "
            "its partitions to its next assignment.", ["pipeline"], buckets=SECONDS_BUCKETS, registry=registry)
        self.end_to_end_latency = BatchHistogram(
            p + "end_to_end_latency_seconds",
            "Input record timestamp to output acknowledged by the broker.", SECONDS_BUCKETS)
        registry.register(self.end_to_end_latency)
        self.build_info = Gauge(
            p + "build_info", "Always 1; labels carry the gateway and Python versions.",
            ["version", "python"], registry=registry)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self._pipelines: dict[str, PipelineMetrics] = {}

    def pipeline(self, name: str) -> PipelineMetrics:
        """The instruments of one pipeline, created on first use and cached."""
        found = self._pipelines.get(name)
        if found is None:
            found = self._pipelines[name] = PipelineMetrics(self, name)
        return found


class PipelineMetrics:
    """One pipeline's instruments with their label children pre-bound; call per batch, not per record."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self.name = name
        self._consumed = metrics.records_consumed.labels(name)
        self._published = {o: metrics.records_published.labels(name, o) for o in OUTCOMES}
        self._dead_letters = {s: metrics.dead_letter_records.labels(name, s) for s in DEAD_LETTER_STAGES}
        self._slow = {k: metrics.slow_explanation_requests.labels(name, k) for k in ("shap", "xemp")}
        self._retries = {r: metrics.retries.labels(name, r) for r in RETRY_REASONS}
        self._requests: dict[tuple[str, str, str], Histogram] = {}
        self._lag: dict[tuple[str, int], Gauge] = {}
        self._batch = metrics.batch_rows.labels(name)
        self._inflight_requests = metrics.inflight_requests.labels(name)
        self._inflight_records = metrics.inflight_records.labels(name)
        self._paused = metrics.consumer_paused.labels(name)
        self._ready = metrics.pipeline_ready.labels(name)
        self._end_to_end = metrics.end_to_end_latency.child(name)
        self._concurrency_limit = metrics.concurrency_limit.labels(name)
        self._unowned = metrics.partitions_unowned.labels(name)
        self._transactions = {o: metrics.transactions.labels(name, o) for o in TRANSACTION_OUTCOMES}
        self._transaction_duration = metrics.transaction_duration.labels(name)
        self._transaction_held = metrics.transaction_held_records.labels(name)
        self._circuit = metrics.circuit_state.labels(name)
        self._transitions = {s: metrics.circuit_transitions.labels(name, s) for s in CIRCUIT_STATES}
        self._circuit.set(0)
        self._paused.set(0)
        self._ready.set(0)

    def consumed(self, n: int) -> None:
        self._consumed.inc(n)

    def published(self, outcome: str, n: int) -> None:
        """``outcome`` is ``predicted`` or ``dead_letter``."""
        try:
            child = self._published[outcome]
        except KeyError:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}") from None
        child.inc(n)

    def dead_letters(self, stage: str, n: int) -> None:
        """``stage`` is the dead-letter record's ``stage``: decode, validate, score or not_predicted."""
        try:
            child = self._dead_letters[stage]
        except KeyError:
            raise ValueError(f"unknown stage {stage!r}; expected one of {DEAD_LETTER_STAGES}") from None
        child.inc(n)

    def request(self, backend: str, explanations: str, status: str, seconds: float,
                trace_id: str | None = None) -> None:
        """One scoring call; ``status`` is the HTTP status as text, a transport failure name
        (timeout, connect, disconnect, client_error) or ``fatal``; anything else counts as ``other``.
        ``trace_id``: the call was traced, and its bucket's exemplar points to that trace."""
        key = (backend, explanations, status)
        child = self._requests.get(key)
        if child is None:
            child = self._request_child(backend, explanations, status)
        if trace_id is None:
            child.observe(seconds)
        else:
            child.observe(seconds, {"trace_id": trace_id})

    def _request_child(self, backend: str, explanations: str, status: str) -> Histogram:
        if explanations not in EXPLANATION_KINDS:
            raise ValueError(f"unknown explanations {explanations!r}; expected one of {EXPLANATION_KINDS}")
        label = status_label(status)
        child = self._metrics.request_duration.labels(self.name, backend, explanations, label)
        if label == status:  # cache only well-formed keys so odd inputs cannot grow the cache
            self._requests[(backend, explanations, status)] = child
        return child

    def slow_explanation(self, kind: str) -> None:
        """An explanation call took longer than ``slow_threshold_ms``; ``kind`` is shap or xemp."""
        try:
            child = self._slow[kind]
        except KeyError:
            raise ValueError(f"unknown explanation kind {kind!r}; expected shap or xemp") from None
        child.inc()

    def batch(self, rows: int) -> None:
        self._batch.observe(rows)

    def requests_in_flight(self, delta: int) -> None:
        """``+1`` when a request goes out, ``-1`` when it ends (every lane of the pipeline adds up)."""
        self._inflight_requests.inc(delta)

    def inflight_records(self, n: int) -> None:
        self._inflight_records.set(n)

    def paused(self, is_paused: bool) -> None:
        self._paused.set(1 if is_paused else 0)

    def retry(self, reason: str) -> None:
        """``reason`` as :class:`~gateway.backends.errors.RetryableError` labels it, or decode/fatal."""
        child = self._retries.get(reason)
        if child is None:
            child = self._metrics.retries.labels(self.name, retry_reason_label(reason))
        child.inc()

    def end_to_end(self, seconds: Sequence[float]) -> None:
        """Latencies of every record of a published batch, counted in one call."""
        self._end_to_end.observe_many(seconds)

    def end_to_end_since(self, now_ms: float, stamps_ms: list[int]) -> None:
        """:meth:`end_to_end` of records with these timestamps, published at ``now_ms``."""
        self._end_to_end.observe_ages(now_ms, stamps_ms)

    def end_to_end_exemplar(self, seconds: float, trace_id: str) -> None:
        """A traced record's end-to-end latency, shown as its bucket's exemplar (already counted)."""
        self._end_to_end.exemplar(seconds, trace_id)

    def lag(self, topic: str, partition: int, lag: int) -> None:
        key = (topic, partition)
        child = self._lag.get(key)
        if child is None:
            child = self._lag[key] = self._metrics.consumer_lag.labels(self.name, topic, str(partition))
        child.set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's lag series so a stale value cannot keep an alert firing."""
        if self._lag.pop((topic, partition), None) is not None:
            self._metrics.consumer_lag.remove(self.name, topic, str(partition))

    def transaction(self, outcome: str, seconds: float) -> None:
        """``outcome`` is ``committed`` or ``aborted``."""
        self._transactions[outcome].inc()
        self._transaction_duration.observe(seconds)

    def transaction_held(self, records: int) -> None:
        self._transaction_held.set(records)

    def concurrency_limit(self, limit: int) -> None:
        self._concurrency_limit.set(limit)

    def partitions_unowned(self, seconds: float) -> None:
        self._unowned.observe(seconds)

    def circuit(self, state: str, changed: bool = True) -> None:
        """The breaker entered ``state`` (``closed``, ``half_open`` or ``open``)."""
        self._circuit.set(CIRCUIT_STATES.index(state))
        if changed:
            self._transitions[state].inc()

    def not_ready(self, reason: str | None) -> None:
        """``None`` marks the pipeline ready; the reason itself is reported by ``/readyz``, not as a label."""
        self._ready.set(0 if reason else 1)
