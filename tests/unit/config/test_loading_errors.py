"""Config validation: every error class, each naming its key path, all reported at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, load_config, parse_config
from tests.unit.config.documents import DATAROBOT_URL, DELETE, QLIK_URL, base, errors_of, with_changes

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
