"""Config loading and validation: the PRODUCT.md §3 example, defaults, substitution, every error class."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from gateway.config import (
    Config,
    ConfigError,
    DataRobotBackend,
    KafkaConfig,
    PipelineConfig,
    QlikBackend,
    is_secret_key,
    load_config,
    parse_config,
)

# PRODUCT.md §3's example, copied into the repository (see tests/fixtures/product/SOURCES.md).
PRODUCT_EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "product" / "config-example.yaml"
QLIK_URL = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/c35f4b70-3ce4-4a30-b62b-2aef16943bc4/realtime-predictions/actions/run"
DATAROBOT_URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/0123456789abcdef01234567/predictions"


def product_example() -> str:
    return PRODUCT_EXAMPLE.read_text(encoding="utf-8")


def base(kind: str = "qlik") -> dict[str, Any]:
    """The smallest valid config: only the required keys."""
    return {
        "kafka": {"bootstrap_servers": "broker:9092"},
        "pipelines": [{
            "name": "churn",
            "input_topic": "churn-features",
            "backend": {"type": kind, "url": QLIK_URL if kind == "qlik" else DATAROBOT_URL},
            "outputs": {"predictions": "churn-predictions", "dead_letter": "churn-dead-letter"},
        }],
    }


def errors_of(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ or {})
    assert str(info.value) == "\n".join(info.value.errors)
    return list(info.value.errors)


def with_changes(kind: str = "qlik", **changes: Any) -> dict[str, Any]:
    """``base(kind)`` with dotted-path changes; a value of DELETE removes the key."""
    raw = copy.deepcopy(base(kind))
    for dotted, value in changes.items():
        node: Any = raw
        parts = dotted.replace("__", ".").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return raw


DELETE = object()


# --- the contract's example and the defaults ---------------------------------------------------------

def test_product_example_parses_with_its_values() -> None:
    config = parse_config(product_example(), {"QLIK_API_KEY": "k-123"})
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.kafka.security_protocol == "PLAINTEXT"
    assert config.admin.port == 9400
    assert config.shutdown_timeout_s == 20
    (pipeline,) = config.pipelines
    assert pipeline.name == "churn" and pipeline.input_topic == "churn-features"
    assert pipeline.features is None
    assert pipeline.backend.type == "qlik"
    assert pipeline.backend.url.endswith("/deployments/DEPLOYMENT_ID/realtime-predictions/actions/run")
    assert pipeline.backend.token == "k-123"
    assert pipeline.backend.include_shap is True and pipeline.backend.include_source is False
    assert pipeline.batching.max_bytes == 4_000_000
    assert pipeline.concurrency.max_in_flight_records == 20000
    assert pipeline.retry.max_retry_after_s == 60
    assert pipeline.ordering == "key"
    assert pipeline.outputs.dead_letter == "churn-dead-letter" and pipeline.outputs.explanations is None


def test_product_example_datarobot_variant_parses() -> None:
    """The example with its commented DataRobot keys switched on and the Qlik-only keys taken out."""
    text = product_example()
    text = re.sub(r"\n      # (datarobot_key|body_format|gzip|max_explanations|explanation_algorithm|"
                  r"threshold_low|threshold_high|passthrough_columns):", r"\n      \1:", text)
    text = re.sub(r"\n      (include_shap|include_source|include_not_predicted_reason|index_column):[^\n]*", "", text)
    text = text.replace("type: qlik", "type: datarobot").replace(
        "https://TENANT/api/v1/ml/deployments/DEPLOYMENT_ID/realtime-predictions/actions/run", DATAROBOT_URL)
    config = parse_config(text, {"QLIK_API_KEY": "t", "DATAROBOT_KEY": "dk-1"})
    backend = config.pipelines[0].backend
    assert (backend.datarobot_key, backend.body_format, backend.gzip, backend.max_explanations) == (
        "dk-1", "csv", False, 0)
    assert backend.passthrough_columns == ()


def test_defaults_applied_to_a_minimal_config() -> None:
    config = parse_config(base(), {})
    kafka = config.kafka
    assert (kafka.group_id, kafka.client_id, kafka.session_timeout_ms) == ("scoring-gateway", "scoring-gateway", 10000)
    assert (kafka.auto_offset_reset, kafka.commit_interval_ms, kafka.max_poll_records) == ("earliest", 1000, 2000)
    assert (kafka.producer_linger_ms, kafka.heartbeat_interval_ms, kafka.enable_idempotence) == (0, None, True)
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.ssl_cafile, kafka.ssl_certfile) == (
        "PLAINTEXT", None, None, None)
    assert (config.admin.host, config.admin.port, config.shutdown_timeout_s) == ("0.0.0.0", 9400, 20)
    p = config.pipelines[0]
    assert p.features is None and p.ordering == "key"
    b = p.backend
    assert isinstance(b, QlikBackend)
    assert (b.token, b.ca_file, b.rate_limit_per_minute, b.index_column) == (None, None, None, None)
    assert (b.include_shap, b.include_source, b.include_not_predicted_reason) == (True, False, True)
    assert (b.stringify_values, b.response_format) == (False, "json")
    d = parse_config(base("datarobot"), {}).pipelines[0].backend
    assert isinstance(d, DataRobotBackend)
    assert (d.token, d.ca_file, d.rate_limit_per_minute, d.response_format) == (None, None, None, "json")
    assert (d.auth_scheme, d.username, d.datarobot_key, d.body_format, d.gzip) == ("bearer", None, None, "csv", False)
    assert (d.max_explanations, d.explanation_algorithm, d.threshold_low, d.threshold_high) == (0, None, None, None)
    assert d.passthrough_columns == ()
    assert (p.batching.max_rows, p.batching.max_bytes, p.batching.linger_ms) == (500, 4_000_000, 10)
    assert (p.concurrency.max_in_flight_requests, p.concurrency.max_in_flight_records) == ("auto", 20000)
    r = p.retry
    assert (r.max_attempts, r.initial_backoff_ms, r.max_backoff_ms, r.max_retry_after_s, r.request_timeout_s) == (
        6, 100, 10000, 60, 30)
    assert p.explanations.slow_threshold_ms == 2000
    assert p.outputs.explanations is None


def test_objects_are_frozen_and_typed() -> None:
    config = parse_config(with_changes(**{"pipelines.0.features": ["a", "b"]}), {})
    assert config.pipelines[0].features == ("a", "b")
    assert isinstance(config.pipelines, tuple)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.kafka.group_id = "other"  # type: ignore[misc]
    assert isinstance(config.pipelines[0], PipelineConfig) and isinstance(config.kafka, KafkaConfig)
    assert hash(config) == hash(parse_config(with_changes(**{"pipelines.0.features": ["a", "b"]}), {}))


def test_null_or_absent_sections_take_their_defaults() -> None:
    config = parse_config(with_changes(**{"pipelines.0.retry": None, "admin": None}), {})
    assert config.pipelines[0].retry.max_attempts == 6 and config.admin.port == 9400


def test_bootstrap_servers_as_a_list() -> None:
    config = parse_config(with_changes(**{"kafka.bootstrap_servers": ["a:9092", "b:9093", "[::1]:9094"]}), {})
    assert config.kafka.bootstrap_servers == "a:9092,b:9093,[::1]:9094"


def test_urls_of_every_accepted_form() -> None:
    forms = {
        "qlik": [QLIK_URL, QLIK_URL.replace("/realtime-predictions", "/aliases/champion/realtime-predictions"),
                 "http://127.0.0.1:8080/api/v1/ml/deployments/churn/realtime-predictions/actions/run"],
        "datarobot": [DATAROBOT_URL, "https://app.datarobot.com/api/v2/deployments/0123456789abcdef01234567/predictions",
                      "http://127.0.0.1:8080/predApi/v1.0/deployments/churn/predictions"],
    }
    for kind, urls in forms.items():
        for url in urls:
            config = parse_config(with_changes(kind, **{"pipelines.0.backend.url": url}), {})
            assert config.pipelines[0].backend.url == url


# --- substitution ------------------------------------------------------------------------------------

def test_env_substitution_with_defaults_and_escapes() -> None:
    raw = with_changes(**{
        "kafka.bootstrap_servers": "${KAFKA_HOST}:${KAFKA_PORT:-9092}",
        "kafka.group_id": "${GROUP:-fallback-group}",
        "kafka.client_id": "$${NOT_A_VAR}-x",
        "pipelines.0.backend.token": "${QLIK_API_KEY}",
        "pipelines.0.input_topic": "${EMPTY:-from-default}",
    })
    config = parse_config(raw, {"KAFKA_HOST": "kafka-0", "QLIK_API_KEY": "tok-abc", "EMPTY": ""})
    assert config.kafka.bootstrap_servers == "kafka-0:9092"
    assert config.kafka.group_id == "fallback-group"
    assert config.kafka.client_id == "${NOT_A_VAR}-x"
    assert config.pipelines[0].backend.token == "tok-abc"
    assert config.pipelines[0].input_topic == "from-default"
    assert type(config.kafka.group_id) is str


def test_substituted_values_take_the_keys_type() -> None:
    raw = with_changes(**{
        "admin.port": "${ADMIN_PORT:-9400}",
        "shutdown_timeout_s": "${SHUTDOWN:-7.5}",
        "pipelines.0.backend.include_shap": "${SHAP:-false}",
        "pipelines.0.backend.token": "${QLIK_API_KEY:-}",
        "pipelines.0.backend.rate_limit_per_minute": "${RATE:-null}",
    })
    config = parse_config(raw, {"ADMIN_PORT": "9500"})
    assert config.admin.port == 9500
    assert config.shutdown_timeout_s == 7.5
    assert config.pipelines[0].backend.include_shap is False
    assert config.pipelines[0].backend.token is None
    assert config.pipelines[0].backend.rate_limit_per_minute is None
    # a literal string is not converted: types in the file itself stay strict
    assert errors_of(with_changes(**{"admin.port": "9500"})) == ["admin.port: expected an integer, got '9500'"]


def test_unset_variable_is_an_error_naming_it_and_the_key() -> None:
    raw = with_changes(**{"pipelines.0.backend.token": "${QLIK_API_KEY}", "kafka.group_id": "${GROUP}"})
    assert errors_of(raw, {}) == [
        "kafka.group_id: environment variable GROUP is not set (set it, or write ${GROUP:-default})",
        "pipelines[0].backend.token: environment variable QLIK_API_KEY is not set (set it, or write "
        "${QLIK_API_KEY:-default})",
    ]


def test_bad_variable_from_environment_is_reported_as_a_type_error() -> None:
    raw = with_changes(**{"kafka.session_timeout_ms": "${SESSION}"})
    assert errors_of(raw, {"SESSION": "abc"}) == ["kafka.session_timeout_ms: expected an integer, got 'abc'"]


def test_malformed_references() -> None:
    assert errors_of(with_changes(**{"kafka.group_id": "${1BAD}"})) == [
        "kafka.group_id: malformed reference ${...}: expected ${VAR}, ${VAR:-default} or ${file:PATH}"]
    assert errors_of(with_changes(**{"kafka.group_id": "abc${OPEN"})) == [
        "kafka.group_id: unterminated ${ (write $${ for a literal ${)"]


def test_secret_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("file-secret-1\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "dr-key").write_text("dr-key-2")
    raw = with_changes(**{"pipelines.0.backend.token": f"${{file:{tmp_path / 'token'}}}"})
    assert parse_config(raw, {}).pipelines[0].backend.token == "file-secret-1"
    # relative paths start at the config file's directory
    raw = with_changes("datarobot", **{"pipelines.0.backend.datarobot_key": "${file:secrets/dr-key}"})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path, {}).pipelines[0].backend.datarobot_key == "dr-key-2"


def test_unreadable_secret_file_names_the_file_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    raw = with_changes(**{"pipelines.0.backend.token": f"${{file:{missing}}}"})
    assert errors_of(raw) == [
        f"pipelines[0].backend.token: cannot read secret file '{missing}': No such file or directory"]


# --- errors ------------------------------------------------------------------------------------------

ERROR_CASES = [
    ({"pipelines.0.batching.max_rows": 0}, "pipelines[0].batching.max_rows: must be > 0"),
    ({"pipelines.0.batching.max_rows": True},
     "pipelines[0].batching.max_rows: expected an integer, got true (a boolean)"),
    ({"pipelines.0.batching.max_rows": 10.5}, "pipelines[0].batching.max_rows: expected an integer, got 10.5"),
    ({"kafka.session_timeout_ms": "abc"}, "kafka.session_timeout_ms: expected an integer, got 'abc'"),
    ({"pipelines.0.batching.linger_ms": -1}, "pipelines[0].batching.linger_ms: must be >= 0"),
    ({"pipelines.0.batching.max_bytes": 0}, "pipelines[0].batching.max_bytes: must be > 0"),
    ({"pipelines.0.concurrency.max_in_flight_records": 499},
     "pipelines[0].concurrency.max_in_flight_records: must be >= batching.max_rows (500): a full batch must "
     "fit in flight"),
    ({"pipelines.0.retry.initial_backoff_ms": 20000},
     "pipelines[0].retry.initial_backoff_ms: must be <= max_backoff_ms (10000)"),
    ({"pipelines.0.retry.request_timeout_s": 0}, "pipelines[0].retry.request_timeout_s: must be > 0"),
    ({"pipelines.0.retry.max_attempts": "6"}, "pipelines[0].retry.max_attempts: expected an integer, got '6'"),
    ({"pipelines.0.ordering": "fifo"}, "pipelines[0].ordering: must be one of key, none, got 'fifo'"),
    ({"pipelines.0.ordering": None}, "pipelines[0].ordering: must not be null (leave the key out to use the default)"),
    ({"pipelines.0.outputs.predictions": "churn-features"},
     "pipelines[0].outputs.predictions: must differ from input_topic ('churn-features')"),
    ({"pipelines.0.outputs.dead_letter": "churn-features"},
     "pipelines[0].outputs.dead_letter: must differ from input_topic ('churn-features')"),
    ({"pipelines.0.outputs.dead_letter": "churn-predictions"},
     "pipelines[0].outputs.dead_letter: must differ from outputs.predictions (both are 'churn-predictions')"),
    ({"pipelines.0.outputs.explanations": "churn-predictions"},
     "pipelines[0].outputs.explanations: must differ from outputs.predictions (both are 'churn-predictions')"),
    ({"pipelines.0.input_topic": "bad topic"},
     "pipelines[0].input_topic: 'bad topic' is not valid: a Kafka topic name has 1-249 letters, digits, '.', "
     "'_' or '-'"),
    ({"pipelines.0.backend.url": "ftp://host/api/v1/ml/deployments/x/realtime-predictions/actions/run"},
     "pipelines[0].backend.url: invalid URL scheme 'ftp': expected https or http"),
    ({"pipelines.0.backend.url": "https:///api/v1/ml/deployments/x/realtime-predictions/actions/run"},
     "pipelines[0].backend.url: has no host"),
    ({"pipelines.0.backend.url": "https://host/api/v1/ml/deployments/x/realtime-predictions"},
     "pipelines[0].backend.url: path '/api/v1/ml/deployments/x/realtime-predictions' is not a Qlik real-time run path "
     "(expected .../api/v1/ml/deployments/{id}[/aliases/{alias}]/realtime-predictions/actions/run)"),
    ({"pipelines.0.backend.url": DATAROBOT_URL},
     "pipelines[0].backend.url: path '/predApi/v1.0/deployments/0123456789abcdef01234567/predictions' is not a Qlik "
     "real-time run path (expected .../api/v1/ml/deployments/{id}[/aliases/{alias}]/realtime-predictions/actions/run)"),
    ({"pipelines.0.backend.url": "https://host/api/v1/automl-deployments/x/realtime-predictions"},
     "pipelines[0].backend.url: the automl-deployments endpoint is withdrawn (sunset 2026-02): use "
     ".../api/v1/ml/deployments/{id}/realtime-predictions/actions/run"),
    ({"pipelines.0.backend.url": QLIK_URL + "?includeShap=true"},
     "pipelines[0].backend.url: must not carry a query string or fragment: the backend options set the query "
     "parameters"),
    ({"pipelines.0.backend.type": "sagemaker"},
     "pipelines[0].backend.type: must be one of qlik, datarobot, got 'sagemaker'"),
    ({"pipelines.0.backend.include_shap": "yes please"},
     "pipelines[0].backend.include_shap: expected true or false, got 'yes please'"),
    ({"pipelines.0.backend.rate_limit_per_minute": 0}, "pipelines[0].backend.rate_limit_per_minute: must be > 0"),
    ({"pipelines.0.backend.datarobot_key": "k"},
     "pipelines[0].backend.datarobot_key: only valid for type datarobot (this backend is qlik)"),
    ({"pipelines.0.backend.max_explanations": 3},
     "pipelines[0].backend.max_explanations: only valid for type datarobot (this backend is qlik)"),
    ({"pipelines.0.features": ["a", "a"]}, "pipelines[0].features[1]: duplicate name 'a'"),
    ({"pipelines.0.features": []}, "pipelines[0].features: must not be empty"),
    ({"pipelines.0.features": [f"f{i}" for i in range(501)]},
     "pipelines[0].features: has 501 names; Qlik accepts at most 500 columns"),
    ({"pipelines.0.name": "churn model"},
     "pipelines[0].name: 'churn model' is not valid: use letters, digits, '.', '_' or '-' (at most 100, "
     "starting with a letter or digit)"),
    ({"pipelines.0.outputs.predictions": DELETE}, "pipelines[0].outputs.predictions: required"),
    ({"pipelines.0.backend.url": DELETE}, "pipelines[0].backend.url: required"),
    ({"kafka.bootstrap_servers": DELETE}, "kafka.bootstrap_servers: required"),
    ({"kafka.bootstrap_servers": "kafka://broker:9092"},
     "kafka.bootstrap_servers: 'kafka://broker:9092' is not a host:port address"),
    ({"kafka.bootstrap_servers": "broker:99999"}, "kafka.bootstrap_servers: 'broker:99999' is not a host:port address"),
    ({"kafka.auto_offset_reset": "none"}, "kafka.auto_offset_reset: must be one of earliest, latest, got 'none'"),
    ({"kafka.heartbeat_interval_ms": 10000}, "kafka.heartbeat_interval_ms: must be < session_timeout_ms (10000)"),
    ({"kafka.sasl_mechanism": "PLAIN"},
     "kafka.sasl_mechanism: only used with security_protocol SASL_PLAINTEXT or SASL_SSL (it is PLAINTEXT)"),
    ({"kafka.ssl_cafile": "/ca.pem"},
     "kafka.ssl_cafile: only used with security_protocol SSL or SASL_SSL (it is PLAINTEXT)"),
    ({"kafka.security_protocol": "SSL", "kafka.ssl_keyfile": "/k.pem"},
     "kafka.ssl_keyfile: needs ssl_certfile (the client certificate)"),
    ({"kafka.security_protocol": "TLS"},
     "kafka.security_protocol: must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ({"admin.port": 70000}, "admin.port: must be <= 65535"),
    ({"shutdown_timeout_s": -1}, "shutdown_timeout_s: must be > 0"),
    ({"shutdown_timeout_s": float("nan")}, "shutdown_timeout_s: must be a finite number, got nan"),
    ({"pipelines.0.explanations.slow_threshold_ms": 0}, "pipelines[0].explanations.slow_threshold_ms: must be > 0"),
    ({"pipelines": []}, "pipelines: must have at least one entry"),
    ({"pipelines": {"name": "x"}}, "pipelines: expected a list, got a mapping"),
    ({"kafka": ["broker:9092"]}, "kafka: expected a mapping, got a list"),
]


@pytest.mark.parametrize(("changes", "expected"), ERROR_CASES,
                         ids=[e.split(":")[0] + f"-{i}" for i, (_, e) in enumerate(ERROR_CASES)])
def test_each_error_names_its_key_path(changes: dict[str, Any], expected: str) -> None:
    assert errors_of(with_changes(**changes)) == [expected]


DATAROBOT_ERROR_CASES = [
    ({"pipelines.0.batching.max_bytes": 52_428_801},
     "pipelines[0].batching.max_bytes: must be <= 52428800 for a datarobot backend (DataRobot rejects bodies "
     "over 50 MB)"),
    ({"pipelines.0.backend.url": QLIK_URL},
     "pipelines[0].backend.url: path "
     "'/api/v1/ml/deployments/c35f4b70-3ce4-4a30-b62b-2aef16943bc4/realtime-predictions/actions/run' "
     "is not a DataRobot prediction path (expected .../predApi/v1.0/deployments/{id}/predictions or "
     ".../api/v2/deployments/{id}/predictions)"),
    ({"pipelines.0.backend.include_shap": True},
     "pipelines[0].backend.include_shap: only valid for type qlik (this backend is datarobot)"),
    ({"pipelines.0.backend.stringify_values": True},
     "pipelines[0].backend.stringify_values: only valid for type qlik (this backend is datarobot)"),
    ({"pipelines.0.backend.max_explanations": -1}, "pipelines[0].backend.max_explanations: must be >= 0"),
    ({"pipelines.0.backend.max_explanations": "some"},
     "pipelines[0].backend.max_explanations: expected an integer >= 0 or \"all\", got 'some'"),
    ({"pipelines.0.backend.max_explanations": True},
     "pipelines[0].backend.max_explanations: expected an integer >= 0 or \"all\", got true (a boolean)"),
    ({"pipelines.0.backend.max_explanations": "all", "pipelines.0.backend.explanation_algorithm": "xemp"},
     "pipelines[0].backend.max_explanations: \"all\" is only valid with SHAP explanations "
     "(explanation_algorithm is xemp)"),
    ({"pipelines.0.backend.explanation_algorithm": "lime"},
     "pipelines[0].backend.explanation_algorithm: must be one of shap, xemp, got 'lime'"),
    ({"pipelines.0.backend.threshold_low": 1.5}, "pipelines[0].backend.threshold_low: must be <= 1"),
    ({"pipelines.0.backend.threshold_low": 0.8, "pipelines.0.backend.threshold_high": 0.2},
     "pipelines[0].backend.threshold_low: must be <= threshold_high (0.2)"),
    ({"pipelines.0.backend.passthrough_columns": "some"},
     "pipelines[0].backend.passthrough_columns: expected a list of column names or \"all\", got 'some'"),
    ({"pipelines.0.backend.passthrough_columns": ["id", ""]},
     "pipelines[0].backend.passthrough_columns[1]: must not be empty"),
    ({"pipelines.0.features": ["a"], "pipelines.0.backend.passthrough_columns": ["a", "customer_id"]},
     "pipelines[0].backend.passthrough_columns[1]: 'customer_id' is not one of features"),
    ({"pipelines.0.backend.auth_scheme": "basic", "pipelines.0.backend.token": "t"},
     "pipelines[0].backend.username: required with auth_scheme basic"),
    ({"pipelines.0.backend.username": "me"},
     "pipelines[0].backend.username: only used with auth_scheme basic (it is bearer)"),
    ({"pipelines.0.backend.body_format": "parquet"},
     "pipelines[0].backend.body_format: must be one of csv, json, got 'parquet'"),
    ({"pipelines.0.backend.auth_scheme": "oauth"},
     "pipelines[0].backend.auth_scheme: must be one of bearer, token, basic, got 'oauth'"),
]


@pytest.mark.parametrize(("changes", "expected"), DATAROBOT_ERROR_CASES,
                         ids=[e.split(":")[0] + f"-{i}" for i, (_, e) in enumerate(DATAROBOT_ERROR_CASES)])
def test_each_datarobot_error_names_its_key_path(changes: dict[str, Any], expected: str) -> None:
    assert errors_of(with_changes("datarobot", **changes)) == [expected]


def test_datarobot_options_accepted() -> None:
    raw = with_changes("datarobot", **{
        "pipelines.0.features": ["a", "id"],
        "pipelines.0.backend.max_explanations": "all", "pipelines.0.backend.explanation_algorithm": "shap",
        "pipelines.0.backend.threshold_low": 0, "pipelines.0.backend.threshold_high": 1,
        "pipelines.0.backend.passthrough_columns": ["id"], "pipelines.0.backend.auth_scheme": "basic",
        "pipelines.0.backend.username": "me", "pipelines.0.backend.token": "t", "pipelines.0.backend.gzip": True,
        "pipelines.0.batching.max_bytes": 52_428_800})
    backend = parse_config(raw, {}).pipelines[0].backend
    assert (backend.max_explanations, backend.passthrough_columns, backend.auth_scheme) == ("all", ("id",), "basic")
    assert parse_config(with_changes("datarobot", **{"pipelines.0.backend.passthrough_columns": "all"}),
                        {}).pipelines[0].backend.passthrough_columns == "all"


def test_unknown_keys_are_rejected_with_a_suggestion() -> None:
    raw = with_changes(**{"pipelines.0.backend.tokne": "x", "kafak": {}, "pipelines.0.batching.zzz": 1})
    assert errors_of(raw) == [
        "kafak: unknown key (did you mean 'kafka'?)",
        "pipelines[0].backend.tokne: unknown key (did you mean 'token'?)",
        "pipelines[0].batching.zzz: unknown key",
    ]


def test_every_error_is_reported_at_once_in_document_order() -> None:
    raw = base()
    raw["pipelines"].append(copy.deepcopy(raw["pipelines"][0]))
    raw["pipelines"][1]["backend"]["tokne"] = "x"
    raw["pipelines"][0]["batching"] = {"max_rows": 0}
    raw["kafka"]["session_timeout_ms"] = "abc"
    assert errors_of(raw) == [
        "kafka.session_timeout_ms: expected an integer, got 'abc'",
        "pipelines[0].batching.max_rows: must be > 0",
        "pipelines[1].backend.tokne: unknown key (did you mean 'token'?)",
        "pipelines[1].name: duplicate pipeline name 'churn' (also pipelines[0])",
    ]


def test_duplicate_pipeline_names() -> None:
    raw = base()
    second = copy.deepcopy(raw["pipelines"][0])
    second["input_topic"] = "other"
    raw["pipelines"].append(second)
    assert errors_of(raw) == ["pipelines[1].name: duplicate pipeline name 'churn' (also pipelines[0])"]


def test_sasl_protocol_requires_its_credentials() -> None:
    raw = with_changes(**{"kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "SCRAM-SHA-512"})
    assert errors_of(raw) == ["kafka.sasl_username: required with security_protocol SASL_SSL",
                              "kafka.sasl_password: required with security_protocol SASL_SSL"]
    raw = with_changes(**{"kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "SCRAM-SHA-512",
                          "kafka.sasl_username": "u", "kafka.sasl_password": "p", "kafka.ssl_cafile": "/ca.pem"})
    assert parse_config(raw, {}).kafka.sasl_password == "p"


def test_yaml_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("kafka:\n  bootstrap_servers: a:1\n  bootstrap_servers: b:2\n", {}, source="gw.yaml")
    assert info.value.errors == ("gw.yaml: line 3, column 3: invalid YAML: duplicate key 'bootstrap_servers'",)
    with pytest.raises(ConfigError) as info:
        parse_config("kafka: [a\n", {}, source="gw.yaml")
    assert info.value.errors[0].startswith("gw.yaml: line 2, column 1: invalid YAML: ")
    assert errors_of("- a\n- b\n") == ["(top level): expected a mapping at the top of the document, got a list"]
    with pytest.raises(ConfigError, match=r"^<config>: the configuration is empty$"):
        parse_config("# nothing\n", {})


def test_a_missing_section_reports_its_required_keys() -> None:
    assert errors_of(with_changes(**{"pipelines.0.backend": DELETE})) == [
        "pipelines[0].backend.type: required", "pipelines[0].backend.url: required"]


def test_yaml_merge_keys_may_be_overridden() -> None:
    """A merged mapping followed by an explicit key is YAML's override idiom, not a duplicate key."""
    text = yaml.safe_dump(base()).replace("  input_topic: churn-features",
                                       "  input_topic: churn-features\n  batching: {<<: {max_rows: 50, "
                                       "linger_ms: 3}, linger_ms: 4}")
    batching = parse_config(text, {}).pipelines[0].batching
    assert (batching.max_rows, batching.linger_ms) == (50, 4)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the config file: No such file or directory"):
        load_config(tmp_path / "nope.yaml", {})


# --- secrets -----------------------------------------------------------------------------------------

def test_redacted_hides_every_secret_and_keeps_nulls() -> None:
    raw = with_changes("datarobot", **{
        "pipelines.0.backend.token": "tok-SECRET-1", "pipelines.0.backend.datarobot_key": "dk-SECRET-2",
        "kafka.security_protocol": "SASL_PLAINTEXT", "kafka.sasl_mechanism": "PLAIN",
        "kafka.sasl_username": "svc", "kafka.sasl_password": "pw-SECRET-3"})
    config = parse_config(raw, {})
    plain = config.redacted()
    dumped = yaml.safe_dump(plain)
    for secret in ("tok-SECRET-1", "dk-SECRET-2", "pw-SECRET-3"):
        assert secret not in dumped
    assert plain["kafka"]["sasl_password"] == "***" and plain["kafka"]["sasl_username"] == "svc"
    backend = plain["pipelines"][0]["backend"]
    assert backend["token"] == "***" and backend["datarobot_key"] == "***"
    assert "include_shap" not in backend and backend["passthrough_columns"] == []  # plain data, this vendor's keys
    assert config.secret_values() == {"tok-SECRET-1", "dk-SECRET-2", "pw-SECRET-3"}
    unset = parse_config(base(), {}).redacted()
    assert unset["pipelines"][0]["backend"]["token"] is None and unset["kafka"]["sasl_password"] is None
    assert "datarobot_key" not in unset["pipelines"][0]["backend"]


def test_secret_keys_are_exactly_the_declared_ones() -> None:
    """Every key whose name says secret is redacted; nothing else is (paths like ssl_keyfile are not secret)."""
    secret_names = set()
    for cls in (KafkaConfig, QlikBackend, DataRobotBackend, PipelineConfig, Config):
        for name in cls.model_fields:
            declared = name in cls.secret_keys()
            if is_secret_key(name, declared):
                secret_names.add(name)
            assert declared == is_secret_key(name), name
    assert secret_names == {"sasl_password", "token", "datarobot_key"}


def test_errors_never_echo_secret_values(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("FILE-SECRET-9")
    raw = with_changes(**{
        "pipelines.0.backend.token": 123456789,
        "kafka.sasl_password": "${KAFKA_PW}",
        "kafka.group_id": "${KAFKA_PW}x",  # a secret leaking into a key that does echo values
        "kafka.client_id": f"${{file:{tmp_path / 'pw'}}} client",
        "kafka.session_timeout_ms": "${KAFKA_PW}",
    })
    errors = errors_of(raw, {"KAFKA_PW": "ENV-SECRET-8"})
    text = "\n".join(errors)
    assert "ENV-SECRET-8" not in text and "FILE-SECRET-9" not in text and "123456789" not in text
    assert "pipelines[0].backend.token: expected a string, got a number" in errors
    assert "kafka.session_timeout_ms: expected an integer, got '***'" in errors


def test_yaml_error_does_not_quote_the_document() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('kafka:\n  sasl_password: "LEAKY-SECRET\n', {})
    assert "LEAKY-SECRET" not in str(info.value)


def test_url_credentials_are_rejected_without_echo() -> None:
    url = QLIK_URL.replace("https://", "https://user:PASSWORD-IN-URL@")
    errors = errors_of(with_changes(**{"pipelines.0.backend.url": url}))
    assert errors == ["pipelines[0].backend.url: must not carry credentials: use backend.token"]
