"""Config loading: the PRODUCT.md §3 example, defaults, substitution, secrets. The errors are in
test_loading_errors.py."""

from __future__ import annotations

import re
from pathlib import Path

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
from tests.unit.config.documents import DATAROBOT_URL, QLIK_URL, base, errors_of, product_example, with_changes

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
