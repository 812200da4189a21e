"""The configuration's sections: one frozen model per YAML mapping, one field per key.

Attribute names are the YAML key names of PRODUCT.md §3, so a reader goes from the file to the code
without a mapping table. Each field's description is the README reference table's "meaning" column
(a unit test keeps the two equal). Cross-key rules sit with the section whose keys they read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Literal

from annotated_types import MinLen
from pydantic import Field, WrapValidator

from ..json_types import JsonObject
from .backend import DATAROBOT, QLIK, BackendConfig, DataRobotBackend, QlikBackend, choose_backend
from .errors import Problem, UnknownPipeline
from .kafka import KafkaConfig
from .secrets import redacted, secret_values
from .section import Keys, Rule, Section
from .tracing import TracingConfig
from .types import (
    CountOrAuto,
    Flag,
    Fraction,
    Name,
    Names,
    NonNegativeInt,
    NonNegativeNumber,
    Port,
    PositiveInt,
    PositiveNumber,
    Text,
    Topic,
)

# DataRobot's Prediction API rejects request bodies over 50 MB.
DATAROBOT_MAX_BODY_BYTES = 52_428_800
# Qlik Predict: "Maximum number of columns in the dataset: 500".
QLIK_MAX_COLUMNS = 500

class AdminConfig(Section):
    host: Text = Field("0.0.0.0", description="listen address for `/metrics`, `/healthz`, `/readyz`")
    port: Port = Field(9400, description="admin port (0 lets the OS choose)")


class BatchingConfig(Section):
    max_rows: PositiveInt = Field(500, description="rows per request")
    max_bytes: PositiveInt = Field(
        4_000_000, description="hard cap on a request body (≤ 52428800 for DataRobot: 50 MB)")
    linger_ms: NonNegativeInt = Field(
        10, description="the longest a row waits for its batch to fill (with `fixed_linger`: every batch waits this)")
    fixed_linger: Flag = Field(
        False, description="false: a batch goes out as soon as a request slot is free, rows accumulate only while "
                           "every slot is busy; true: every batch waits `linger_ms` to fill")


class ConcurrencyConfig(Section):
    max_in_flight_requests: CountOrAuto = Field(
        "auto", description="concurrent requests to the backend: `auto` adapts between 1 and "
                            "`max_in_flight_requests_limit` from latency and 429/503 answers; a number fixes it")
    max_in_flight_requests_limit: PositiveInt = Field(
        64, description="the most requests `auto` may have in flight")
    max_in_flight_records: PositiveInt = Field(
        20000, description="past this the consumer pauses; ≥ `batching.max_rows`")


def _backoff_in_order(keys: Keys) -> Iterator[Problem]:
    if keys.ok("initial_backoff_ms", "max_backoff_ms") \
            and keys.of("initial_backoff_ms", int) > keys.of("max_backoff_ms", int):
        yield ("initial_backoff_ms",), f"must be <= max_backoff_ms ({keys['max_backoff_ms']})"


class RetryConfig(Section):
    max_attempts: PositiveInt = Field(6, description="attempts per request, the first included")
    initial_backoff_ms: NonNegativeInt = Field(100, description="first backoff (exponential, full jitter)")
    max_backoff_ms: NonNegativeInt = Field(
        10000, description="backoff cap; also the retry interval while the backend refuses auth/routing")
    max_retry_after_s: NonNegativeNumber = Field(60, description="the longest `Retry-After` honoured")
    request_timeout_s: PositiveNumber = Field(30, description="timeout for one HTTP request")
    on_backend_outage: Literal["pause", "dead_letter"] = Field(
        "pause", description="`pause`: while the backend is out (the circuit breaker is open) hold requests and "
                             "consumption, dead-letter nothing; `dead_letter`: keep sending, dead-letter what runs "
                             "out of attempts")

    rules = (Rule(_backoff_in_order),)  # JSON Schema cannot compare two values


class CircuitBreakerConfig(Section):
    failure_threshold: PositiveInt = Field(
        10, description="outage failures in a row (across requests) that open the breaker")
    failure_ratio: Fraction = Field(0.5, description="… or this share of failed requests over the window")
    window_s: PositiveNumber = Field(30, description="the window for `failure_ratio`")
    min_requests: PositiveInt = Field(20, description="answers the window must hold before `failure_ratio` applies")
    close_after_successes: PositiveInt = Field(3, description="successes in a row that close a half-open breaker")


def _sampling_needs_deferred(keys: Keys) -> Iterator[Problem]:
    rate = keys.values.get("sample_rate")
    if keys.ok("mode") and isinstance(rate, int | float) and rate < 1 and keys["mode"] != "deferred":
        yield ("sample_rate",), "needs mode deferred (inline explanations come with every prediction)"


class ExplanationsConfig(Section):
    slow_threshold_ms: PositiveInt = Field(
        2000, description="explanation calls slower than this are counted (slow XEMP calls are also logged)")
    mode: Literal["inline", "deferred"] = Field(
        "inline", description="`inline`: explanations come with the predictions; `deferred`: predictions are "
                              "published first, explanations follow from a lane of their own to "
                              "`outputs.explanations`")
    max_in_flight_requests: PositiveInt = Field(4, description="deferred: concurrent explanation requests")
    max_rows: PositiveInt = Field(100, description="deferred: rows per explanation request")
    sample_rate: Fraction = Field(
        1.0, description="deferred: the share of records explained, a deterministic sample by `id`")

    rules = (Rule(_sampling_needs_deferred, schema={
        "if": {"properties": {"sample_rate": {"type": "number", "exclusiveMaximum": 1}}, "required": ["sample_rate"]},
        "then": {"properties": {"mode": {"const": "deferred"}}, "required": ["mode"]}}),)


_OUTPUTS = ("predictions", "explanations", "dead_letter", "comparisons")


def _outputs_differ(keys: Keys) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for key in _OUTPUTS:
        topic = keys.values.get(key)
        if not isinstance(topic, str):
            continue
        if topic in seen:
            yield (key,), f"must differ from outputs.{seen[topic]} (both are {topic!r})"
        seen.setdefault(topic, key)


class OutputsConfig(Section):
    predictions: Topic = Field(description="prediction topic")
    explanations: Topic | None = Field(
        None, description="a topic = explanations go there; null = embedded in prediction records")
    dead_letter: Topic = Field(description="dead-letter topic")
    comparisons: Topic | None = Field(
        None, description="the comparison records' topic (required with a `challenger`)")

    rules = (Rule(_outputs_differ),)  # JSON Schema cannot compare two values


class ChallengerConcurrencyConfig(ConcurrencyConfig):
    """The challenger's slots are fixed by default: its batches are skipped when none is free, never
    queued, so a limit that grows only while every slot is in use would rarely grow."""

    max_in_flight_requests: CountOrAuto = Field(
        16, description="concurrent challenger requests, or `auto` (adapt between 1 and "
                        "`max_in_flight_requests_limit`)")


class ChallengerConfig(Section):
    """A second deployment that scores a share of the stream beside the champion, for comparison only."""

    backend: Annotated[BackendConfig, WrapValidator(choose_backend)] = Field(
        description="the challenger's prediction API: the same keys as the pipeline's `backend`, any vendor "
                    "(explanations are not asked for: comparisons carry predictions)")
    sample_rate: Fraction = Field(
        1.0, description="the share of records compared, chosen by a hash of the record key: the same customers "
                         "are always compared, across restarts and replicas")
    concurrency: ChallengerConcurrencyConfig = Field(
        ChallengerConcurrencyConfig(), description="the challenger's own request slots; a batch that finds none "
                                                   "free is skipped, never queued")
    circuit_breaker: CircuitBreakerConfig = Field(
        CircuitBreakerConfig(), description="the challenger's own breaker: while it is open, calls are skipped")
    linger_ms: NonNegativeInt = Field(
        1000, description="how long sampled records may wait to fill a challenger request of `batching.max_rows` "
                          "rows, so that a challenger at `sample_rate` 0.1 sends about a tenth of the champion's "
                          "requests, each as full as the champion's; 0 sends each champion batch's sample at once")
    request_timeout_s: PositiveNumber = Field(10, description="timeout of a challenger request (one attempt)")
    tolerance: NonNegativeNumber = Field(0.0, description="regression: predictions this close agree")


def _backend(keys: Keys) -> BackendConfig:
    backend = keys["backend"]
    if not isinstance(backend, QlikBackend | DataRobotBackend):
        raise TypeError(f"backend is {type(backend).__name__}")
    return backend


def _backend_type(keys: Keys) -> object:
    """The backend's type, read as written when the backend section has other errors."""
    if keys.ok("backend"):
        return _backend(keys).type
    written = keys.written.get("backend")
    return written.get("type") if isinstance(written, Mapping) else None


def _body_cap_for_datarobot(keys: Keys) -> Iterator[Problem]:
    batching = keys.values.get("batching")
    if isinstance(batching, BatchingConfig) and _backend_type(keys) == DATAROBOT \
            and batching.max_bytes > DATAROBOT_MAX_BODY_BYTES:
        yield ("batching", "max_bytes"), (f"must be <= {DATAROBOT_MAX_BODY_BYTES} for a datarobot backend "
                                          "(DataRobot rejects bodies over 50 MB)")


def _full_batch_fits_in_flight(keys: Keys) -> Iterator[Problem]:
    if keys.ok("batching", "concurrency"):
        rows = keys.of("batching", BatchingConfig).max_rows
        if keys.of("concurrency", ConcurrencyConfig).max_in_flight_records < rows:
            yield (("concurrency", "max_in_flight_records"),
                   f"must be >= batching.max_rows ({rows}): a full batch must fit in flight")


def _outputs_differ_from_input(keys: Keys) -> Iterator[Problem]:
    if keys.ok("input_topic", "outputs"):
        for key in _OUTPUTS:
            if getattr(keys["outputs"], key) == keys["input_topic"]:
                yield ("outputs", key), f"must differ from input_topic ({keys['input_topic']!r})"


def _columns_fit_the_backend(keys: Keys) -> Iterator[Problem]:
    """DataRobot echoes only columns it was sent, so passthrough columns must be among explicit features.
    (Qlik's index column needs no such rule: the codec sends it whatever the feature list.)"""
    if not keys.ok("backend", "features") or keys["features"] is None:
        return
    backend, features = _backend(keys), keys.of("features", tuple)
    if backend.type == QLIK and len(features) > QLIK_MAX_COLUMNS:
        yield ("features",), f"has {len(features)} names; Qlik accepts at most {QLIK_MAX_COLUMNS} columns"
    if backend.type == DATAROBOT and isinstance(backend, DataRobotBackend) \
            and isinstance(backend.passthrough_columns, tuple):
        for i, name in enumerate(backend.passthrough_columns):
            if name not in features:
                yield ("backend", "passthrough_columns", i), f"{name!r} is not one of features"


def _explains(backend: BackendConfig) -> bool:
    return backend.include_shap if backend.type == "qlik" else bool(backend.max_explanations)


def _deferred_explanations_have_a_topic(keys: Keys) -> Iterator[Problem]:
    if not keys.ok("explanations", "outputs", "backend") \
            or keys.of("explanations", ExplanationsConfig).mode != "deferred":
        return
    if keys.of("outputs", OutputsConfig).explanations is None:
        yield ("outputs", "explanations"), "required with explanations.mode deferred (the explanation records' topic)"
    if not _explains(_backend(keys)):
        what = "include_shap" if _backend(keys).type == QLIK else "max_explanations"
        yield ("explanations", "mode"), f"deferred needs explanations turned on (backend.{what})"


def _exactly_once_explains_inline(keys: Keys) -> Iterator[Problem]:
    if keys.ok("delivery", "explanations") and keys["delivery"] == "exactly_once" \
            and keys.of("explanations", ExplanationsConfig).mode == "deferred":
        yield ("explanations", "mode"), ("deferred publishes predictions before their offsets are committed, which "
                                         "delivery exactly_once forbids: use inline")


def _group_scope_needs_a_rate(keys: Keys) -> Iterator[Problem]:
    if keys.ok("backend"):
        backend = _backend(keys)
        if backend.rate_limit_scope == "group" and backend.rate_limit_per_minute is None:
            yield ("backend", "rate_limit_scope"), "group needs rate_limit_per_minute (the group's budget)"


def _challenger_has_a_topic(keys: Keys) -> Iterator[Problem]:
    if keys.ok("challenger", "outputs") and keys["challenger"] is not None \
            and keys.of("outputs", OutputsConfig).comparisons is None:
        yield ("outputs", "comparisons"), "required with a challenger (the comparison records' topic)"


def _challenger_outside_transactions(keys: Keys) -> Iterator[Problem]:
    if keys.ok("challenger", "delivery") and keys["challenger"] is not None and keys["delivery"] == "exactly_once":
        yield ("challenger",), ("not available with delivery exactly_once: comparison records are published "
                                "as challenger answers arrive, outside the champion's transactions")


def _when_backend(kind: str, then: JsonObject) -> JsonObject:
    backend: JsonObject = {"backend": {"required": ["type"], "properties": {"type": {"const": kind}}}}
    return {"if": {"required": ["backend"], "properties": backend}, "then": then}


class PipelineConfig(Section):
    name: Name = Field(description="letters, digits, `.`, `_`, `-`; used in metric labels and output records")
    input_topic: Topic = Field(description="topic of JSON-object feature records")
    features: Names | None = Field(
        None, description="feature names in request column order; null = the records' keys in first-seen order")
    backend: Annotated[BackendConfig, WrapValidator(choose_backend)] = Field(
        description="the prediction API: keys by vendor below")
    batching: BatchingConfig = Field(BatchingConfig(), description="how records are grouped into requests")
    concurrency: ConcurrencyConfig = Field(ConcurrencyConfig(), description="how much is in flight at once")
    retry: RetryConfig = Field(RetryConfig(), description="retries of a failed request")
    circuit_breaker: CircuitBreakerConfig = Field(
        CircuitBreakerConfig(), description="when the backend counts as out (see the circuit breaker)")
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once", description="`at_least_once`: outputs, then offsets (a crash may repeat outputs, "
                                     "recognisable by `id`); `exactly_once`: outputs and offsets in one Kafka "
                                     "transaction, for `read_committed` consumers")
    transaction_interval_ms: PositiveInt = Field(
        100, description="exactly_once: how often each input partition's finished records are committed")
    ordering: Literal["key", "none"] = Field(
        "key", description="`key`: same-key records are published in input order; `none`: as results arrive")
    explanations: ExplanationsConfig = Field(ExplanationsConfig(), description="explanation call settings")
    outputs: OutputsConfig = Field(description="where results go")
    challenger: ChallengerConfig | None = Field(
        None, description="a second deployment scoring a share of the records for comparison; null = none")

    rules = (
        Rule(_body_cap_for_datarobot, schema=_when_backend(DATAROBOT, {
            "properties": {"batching": {"properties": {"max_bytes": {"maximum": DATAROBOT_MAX_BODY_BYTES}}}}})),
        Rule(_full_batch_fits_in_flight),  # JSON Schema cannot compare two values
        Rule(_challenger_has_a_topic, schema={
            "if": {"required": ["challenger"], "properties": {"challenger": {"type": "object"}}},
            "then": {"required": ["outputs"], "properties": {"outputs": {
                "required": ["comparisons"], "properties": {"comparisons": {"type": "string"}}}}}}),
        Rule(_challenger_outside_transactions, schema={
            "if": {"required": ["challenger", "delivery"], "properties": {
                "challenger": {"type": "object"}, "delivery": {"const": "exactly_once"}}},
            "then": False}),
        Rule(_outputs_differ_from_input),  # JSON Schema cannot compare two values
        Rule(_exactly_once_explains_inline, schema={
            "if": {"required": ["delivery", "explanations"], "properties": {
                "delivery": {"const": "exactly_once"},
                "explanations": {"required": ["mode"], "properties": {"mode": {"const": "deferred"}}}}},
            "then": False}),
        Rule(_group_scope_needs_a_rate, schema={
            "if": {"required": ["backend"], "properties": {"backend": {
                "required": ["rate_limit_scope"], "properties": {"rate_limit_scope": {"const": "group"}}}}},
            "then": {"properties": {"backend": {"required": ["rate_limit_per_minute"],
                                                "properties": {"rate_limit_per_minute": {"not": {"type": "null"}}}}}}}),
        Rule(_deferred_explanations_have_a_topic, schema={
            "if": {"required": ["explanations"], "properties": {"explanations": {
                "required": ["mode"], "properties": {"mode": {"const": "deferred"}}}}},
            "then": {"properties": {"outputs": {"required": ["explanations"],
                                                "properties": {"explanations": {"type": "string"}}}}}}),
        # The Qlik column cap is in the schema; "passthrough columns among features" compares values.
        Rule(_columns_fit_the_backend, schema=_when_backend(QLIK, {
            "properties": {"features": {"maxItems": QLIK_MAX_COLUMNS}}})),
    )


def _written_name(pipeline: object) -> object:
    return pipeline.get("name") if isinstance(pipeline, Mapping) else getattr(pipeline, "name", None)


def _unique_pipeline_names(keys: Keys) -> Iterator[Problem]:
    # Names as written, so a duplicate is reported even while those pipelines have other errors.
    pipelines = keys.written.get("pipelines")
    first: dict[str, int] = {}
    for i, pipeline in enumerate(pipelines if isinstance(pipelines, (list, tuple)) else ()):
        name = _written_name(pipeline)
        if not isinstance(name, str):
            continue
        if name in first:
            yield ("pipelines", i, "name"), f"duplicate pipeline name {name!r} (also pipelines[{first[name]}])"
        first.setdefault(name, i)


class Config(Section):
    kafka: KafkaConfig = Field(description="the broker connection, shared by every pipeline")
    admin: AdminConfig = Field(AdminConfig(), description="the admin server")
    shutdown_timeout_s: PositiveNumber = Field(
        20, description="on SIGTERM or revocation: how long in-flight work may take to finish")
    pipelines: Annotated[tuple[PipelineConfig, ...], MinLen(1)] = Field(
        description="a list of at least one pipeline; names must be unique")
    tracing: TracingConfig | None = Field(
        None, description="OpenTelemetry traces through the gateway; absent = off (see the tracing page)")

    rules = (Rule(_unique_pipeline_names),)  # uniqueItems compares whole pipelines, not their names

    def redacted(self) -> dict[str, object]:
        """The resolved config as plain data, secrets as ``***``; a backend shows its own vendor's keys."""
        return redacted(self)

    def secret_values(self) -> frozenset[str]:
        """Every secret string in effect, for log and output scrubbing."""
        return frozenset(value for value in secret_values(self) if value)

    def pipeline(self, name: str) -> PipelineConfig:
        """The pipeline called ``name``; :class:`UnknownPipeline` (naming the others) when there is none."""
        found = next((pipeline for pipeline in self.pipelines if pipeline.name == name), None)
        if found is None:
            raise UnknownPipeline(name, [pipeline.name for pipeline in self.pipelines])
        return found

