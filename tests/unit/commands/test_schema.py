"""`scoring-gateway schema` and `check` agree: what one refuses the other refuses, what one accepts the
other accepts, except for the rules listed as "check only" (with the reason JSON Schema cannot say them).

The schema is validated with the `jsonschema` package, an implementation independent of the one that
generated it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.commands import check
from gateway.config import ConfigError, KafkaConfig, json_schema, parse_config
from tests.unit.config.documents import DATAROBOT_URL, DELETE, QLIK_URL, base
from tests.unit.config.documents import with_changes as changed

ROOT = Path(__file__).resolve().parents[3]
DIALECT = "https://json-schema.org/draft/2020-12/schema"
SHIPPED = [*sorted((ROOT / "config").glob("*.yaml")), ROOT / "k8s" / "config.yaml"]


@pytest.fixture(scope="module")
def printed() -> str:
    """What ``scoring-gateway schema`` prints, run as a real process."""
    result = subprocess.run([sys.executable, "-m", "gateway", "schema"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout


@pytest.fixture(scope="module")
def validator(printed: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(printed)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_errors(doc: Any, environ: dict[str, str] | None = None) -> list[str]:
    try:
        parse_config(doc, environ or {})
    except ConfigError as exc:
        return list(exc.errors)
    return []


def schema_errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]


# --- the command -------------------------------------------------------------------------------------

def leaf_keys(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(path, property schema, required) of every key that is not a section, over every section's schema."""
    sections = [("", schema), *((f"$defs/{name}", d) for name, d in schema["$defs"].items() if "properties" in d)]
    leaves = []
    for where, section in sections:
        for name, prop in section["properties"].items():
            refs = [prop.get("$ref"), prop.get("items", {}).get("$ref"),
                    *(branch.get("$ref") for branch in prop.get("anyOf", []))]
            if not any(ref and not ref.endswith("/Reference") for ref in refs):
                leaves.append((f"{where}.{name}", prop, name in section.get("required", [])))
    return leaves


def test_schema_command_prints_a_draft_2020_12_schema_with_every_key_described(printed: str, tmp_path: Path) -> None:
    schema = json.loads(printed)
    assert schema == json_schema()
    assert schema["$schema"] == DIALECT
    jsonschema.Draft202012Validator.check_schema(schema)
    leaves = leaf_keys(schema)
    assert len(leaves) >= 50, "every section's keys are in the schema"
    for path, prop, required in leaves:
        assert prop.get("description"), f"{path} has no description"
        assert required or "default" in prop, f"{path} has no default"
        assert not required or "default" not in prop, f"{path} is required but shows a default"
    written = tmp_path / "scoring-gateway.schema.json"
    parser = argparse.ArgumentParser()
    from gateway.commands import schema as command

    command.add_arguments(parser)
    assert command.main(parser.parse_args(["--output", str(written)])) == 0
    assert written.read_text(encoding="utf-8") == printed


def test_schema_command_reports_an_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.commands import schema as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.main(parser.parse_args(["--output", str(tmp_path / "absent" / "s.json")])) == 1
    assert "cannot write the schema" in capsys.readouterr().err


# --- the shipped configs -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_pass_the_schema_and_check(path: Path, validator: jsonschema.Draft202012Validator,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    text = path.read_text(encoding="utf-8")
    assert schema_errors(validator, yaml.safe_load(text)) == []
    for variable in set(re.findall(r"\$\{([A-Z_]+)\}", text)):  # those without a default
        monkeypatch.setenv(variable, "broker:9092" if "BOOTSTRAP" in variable else "placeholder-value")
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    assert check.main(parser.parse_args(["--config", str(path)])) == check.EXIT_OK, capsys.readouterr().err


# --- refused by both ---------------------------------------------------------------------------------

BAD: dict[str, tuple[dict[str, Any], str]] = {
    # wrong types
    "integer-as-text": (changed(**{"kafka.session_timeout_ms": "abc"}), "kafka.session_timeout_ms"),
    "integer-as-boolean": (changed(**{"p.batching.max_rows": True}), "pipelines[0].batching.max_rows"),
    "integer-as-fraction": (changed(**{"p.batching.max_rows": 10.5}), "pipelines[0].batching.max_rows"),
    "quoted-port": (changed(**{"admin.port": "9500"}), "admin.port"),
    "boolean-as-text": (changed(**{"p.backend.include_shap": "yes"}), "pipelines[0].backend.include_shap"),
    "number-as-text": (changed(**{"shutdown_timeout_s": "soon"}), "shutdown_timeout_s"),
    "string-as-number": (changed(**{"kafka.group_id": 42}), "kafka.group_id"),
    "features-as-text": (changed(**{"p.features": "a,b"}), "pipelines[0].features"),
    "pipelines-as-mapping": (changed(pipelines={"name": "x"}), "pipelines"),
    "section-as-list": (changed(kafka=["broker:9092"]), "kafka"),
    "not-null": (changed(**{"p.ordering": None}), "pipelines[0].ordering"),
    # out of range
    "zero-rows": (changed(**{"p.batching.max_rows": 0}), "pipelines[0].batching.max_rows"),
    "negative-linger": (changed(**{"p.batching.linger_ms": -1}), "pipelines[0].batching.linger_ms"),
    "port-too-high": (changed(**{"admin.port": 70000}), "admin.port"),
    "zero-timeout": (changed(**{"p.retry.request_timeout_s": 0}), "pipelines[0].retry.request_timeout_s"),
    "zero-rate": (changed(**{"p.backend.rate_limit_per_minute": 0}), "pipelines[0].backend.rate_limit_per_minute"),
    "threshold-above-one": (changed("datarobot", **{"p.backend.threshold_low": 1.5}),
                            "pipelines[0].backend.threshold_low"),
    "negative-explanations": (changed("datarobot", **{"p.backend.max_explanations": -1}),
                              "pipelines[0].backend.max_explanations"),
    "no-pipelines": (changed(pipelines=[]), "pipelines"),
    "no-features": (changed(**{"p.features": []}), "pipelines[0].features"),
    # malformed names, addresses and URLs
    "topic-with-space": (changed(**{"p.input_topic": "bad topic"}), "pipelines[0].input_topic"),
    "empty-topic": (changed(**{"p.outputs.dead_letter": ""}), "pipelines[0].outputs.dead_letter"),
    "name-with-space": (changed(**{"p.name": "churn model"}), "pipelines[0].name"),
    "blank-group": (changed(**{"kafka.group_id": "  "}), "kafka.group_id"),
    "broker-port-too-high": (changed(**{"kafka.bootstrap_servers": "broker:99999"}), "kafka.bootstrap_servers"),
    "broker-url": (changed(**{"kafka.bootstrap_servers": "kafka://broker:9092"}), "kafka.bootstrap_servers"),
    "broker-list-with-blank": (changed(**{"kafka.bootstrap_servers": ["a:1", ""]}), "kafka.bootstrap_servers"),
    "url-scheme": (changed(**{"p.backend.url": QLIK_URL.replace("https", "ftp")}), "pipelines[0].backend.url"),
    "url-query": (changed(**{"p.backend.url": QLIK_URL + "?includeShap=true"}), "pipelines[0].backend.url"),
    "url-credentials": (changed(**{"p.backend.url": QLIK_URL.replace("https://", "https://u:p@")}),
                        "pipelines[0].backend.url"),
    "url-port": (changed(**{"p.backend.url": QLIK_URL.replace(".com/", ".com:99999/")}), "pipelines[0].backend.url"),
    "qlik-url-on-datarobot": (changed("datarobot", **{"p.backend.url": QLIK_URL}), "pipelines[0].backend.url"),
    "datarobot-url-on-qlik": (changed(**{"p.backend.url": DATAROBOT_URL}), "pipelines[0].backend.url"),
    "withdrawn-qlik-url": (changed(**{"p.backend.url": "https://h/api/v1/automl-deployments/x/realtime-predictions"}),
                           "pipelines[0].backend.url"),
    # unknown keys and the other vendor's keys
    "unknown-top-key": (changed(kafak={}), "kafak"),
    "unknown-backend-key": (changed(**{"p.backend.tokne": "x"}), "pipelines[0].backend.tokne"),
    "unknown-section-key": (changed(**{"p.batching.zzz": 1}), "pipelines[0].batching.zzz"),
    "datarobot-key-on-qlik": (changed(**{"p.backend.datarobot_key": "k"}), "pipelines[0].backend.datarobot_key"),
    "qlik-key-on-datarobot": (changed("datarobot", **{"p.backend.include_shap": True}),
                              "pipelines[0].backend.include_shap"),
    # missing required keys
    "no-bootstrap-servers": (changed(**{"kafka.bootstrap_servers": DELETE}), "kafka.bootstrap_servers"),
    "no-kafka": (changed(kafka=DELETE), "kafka.bootstrap_servers"),
    "no-predictions-topic": (changed(**{"p.outputs.predictions": DELETE}), "pipelines[0].outputs.predictions"),
    "no-url": (changed(**{"p.backend.url": DELETE}), "pipelines[0].backend.url"),
    "no-backend": (changed(**{"p.backend": DELETE}), "pipelines[0].backend.type"),
    "no-pipelines-key": (changed(pipelines=DELETE), "pipelines"),
    # words outside their set
    "ordering": (changed(**{"p.ordering": "fifo"}), "pipelines[0].ordering"),
    "security-protocol": (changed(**{"kafka.security_protocol": "TLS"}), "kafka.security_protocol"),
    "backend-type": (changed(**{"p.backend.type": "sagemaker"}), "pipelines[0].backend.type"),
    "explanation-algorithm": (changed("datarobot", **{"p.backend.explanation_algorithm": "lime"}),
                              "pipelines[0].backend.explanation_algorithm"),
    "auth-scheme": (changed("datarobot", **{"p.backend.auth_scheme": "oauth"}), "pipelines[0].backend.auth_scheme"),
    "explanations-word": (changed("datarobot", **{"p.backend.max_explanations": "some"}),
                          "pipelines[0].backend.max_explanations"),
    "passthrough-word": (changed("datarobot", **{"p.backend.passthrough_columns": "some"}),
                         "pipelines[0].backend.passthrough_columns"),
    "duplicate-features": (changed(**{"p.features": ["a", "a"]}), "pipelines[0].features[1]"),
    # cross-key rules the schema can say
    "sasl-without-credentials": (changed(**{"kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "PLAIN"}),
                                 "kafka.sasl_username"),
    "sasl-key-without-sasl": (changed(**{"kafka.sasl_mechanism": "PLAIN"}), "kafka.sasl_mechanism"),
    "tls-key-without-tls": (changed(**{"kafka.ssl_cafile": "/ca.pem"}), "kafka.ssl_cafile"),
    "client-key-without-certificate": (changed(**{"kafka.security_protocol": "SSL", "kafka.ssl_keyfile": "/k.pem"}),
                                       "kafka.ssl_keyfile"),
    "basic-auth-without-user": (changed("datarobot", **{"p.backend.auth_scheme": "basic", "p.backend.token": "t"}),
                                "pipelines[0].backend.username"),
    "user-without-basic-auth": (changed("datarobot", **{"p.backend.username": "me"}), "pipelines[0].backend.username"),
    "all-explanations-with-xemp": (changed("datarobot", **{"p.backend.max_explanations": "all",
                                                           "p.backend.explanation_algorithm": "xemp"}),
                                   "pipelines[0].backend.max_explanations"),
    "datarobot-body-over-50-mb": (changed("datarobot", **{"p.batching.max_bytes": 52_428_801}),
                                  "pipelines[0].batching.max_bytes"),
    "qlik-over-500-columns": (changed(**{"p.features": [f"f{i}" for i in range(501)]}), "pipelines[0].features"),
}


@pytest.mark.parametrize("name", BAD)
def test_refused_by_check_and_by_the_schema(name: str, validator: jsonschema.Draft202012Validator) -> None:
    doc, key = BAD[name]
    errors = check_errors(doc)
    assert errors, "check accepted it"
    assert errors[0].startswith(f"{key}: "), errors
    assert schema_errors(validator, doc), "the schema accepted it"


def test_there_are_enough_bad_configs() -> None:
    assert len(BAD) >= 30


# --- check only: what JSON Schema cannot say ---------------------------------------------------------

CHECK_ONLY: dict[str, tuple[dict[str, Any], dict[str, str], str, str]] = {
    "heartbeat-not-below-session": (changed(**{"kafka.heartbeat_interval_ms": 10000}), {},
                                    "kafka.heartbeat_interval_ms", "compares two keys' values"),
    "backoff-out-of-order": (changed(**{"p.retry.initial_backoff_ms": 20000}), {},
                             "pipelines[0].retry.initial_backoff_ms", "compares two keys' values"),
    "thresholds-out-of-order": (changed("datarobot", **{"p.backend.threshold_low": 0.8,
                                                        "p.backend.threshold_high": 0.2}),
                                {}, "pipelines[0].backend.threshold_low", "compares two keys' values"),
    "batch-larger-than-in-flight": (changed(**{"p.concurrency.max_in_flight_records": 499}), {},
                                    "pipelines[0].concurrency.max_in_flight_records",
                                    "compares a key with a default of another section"),
    "same-output-topics": (changed(**{"p.outputs.dead_letter": "churn-predictions"}), {},
                           "pipelines[0].outputs.dead_letter", "compares two keys' values"),
    "output-is-input": (changed(**{"p.outputs.predictions": "churn-features"}), {},
                        "pipelines[0].outputs.predictions", "compares two keys' values"),
    "passthrough-not-a-feature": (changed("datarobot", **{"p.features": ["a"], "p.backend.passthrough_columns": ["b"]}),
                                  {}, "pipelines[0].backend.passthrough_columns[0]",
                                  "membership of one list's items in another list"),
    "duplicate-pipeline-names": (changed(pipelines=[base()["pipelines"][0], {**base()["pipelines"][0],
                                                                               "input_topic": "other"}]),
                                 {}, "pipelines[1].name", "uniqueItems compares whole pipelines, not one key of them"),
    "unset-variable": (changed(**{"p.backend.token": "${QLIK_API_KEY}"}), {}, "pipelines[0].backend.token",
                       "the environment is known only when the file is loaded"),
    "variable-of-the-wrong-type": (changed(**{"admin.port": "${ADMIN_PORT}"}), {"ADMIN_PORT": "abc"}, "admin.port",
                                   "a ${...} value is known only when the file is loaded"),
    "nan": (changed(shutdown_timeout_s=math.nan), {}, "shutdown_timeout_s",
            "YAML's .nan has no JSON counterpart: JSON Schema's comparisons are all false for it"),
}


@pytest.mark.parametrize("name", CHECK_ONLY)
def test_check_only_rules(name: str, validator: jsonschema.Draft202012Validator) -> None:
    doc, environ, key, _reason = CHECK_ONLY[name]
    errors = check_errors(doc, environ)
    assert len(errors) == 1 and errors[0].startswith(f"{key}: "), errors
    assert schema_errors(validator, doc) == [], "the schema can say this rule now: move it to BAD"


# --- accepted by both --------------------------------------------------------------------------------

GOOD: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "minimal-qlik": (base(), {}),
    "minimal-datarobot": (base("datarobot"), {}),
    "every-datarobot-option": (changed("datarobot", **{
        "p.features": ["a", "id"], "p.backend.max_explanations": "all", "p.backend.explanation_algorithm": "shap",
        "p.backend.threshold_low": 0, "p.backend.threshold_high": 1, "p.backend.passthrough_columns": ["id"],
        "p.backend.auth_scheme": "basic", "p.backend.username": "me", "p.backend.token": "t",
        "p.backend.gzip": True, "p.backend.body_format": "json", "p.backend.datarobot_key": "dk",
        "p.batching.max_bytes": 52_428_800}), {}),
    "xemp-explanations": (changed("datarobot", **{"p.backend.max_explanations": 3,
                                                  "p.backend.explanation_algorithm": "xemp"}), {}),
    "all-passthrough": (changed("datarobot", **{"p.backend.passthrough_columns": "all"}), {}),
    "every-qlik-option": (changed(**{
        "p.backend.include_shap": False, "p.backend.include_source": True, "p.backend.index_column": "id",
        "p.backend.include_not_predicted_reason": False, "p.backend.stringify_values": True,
        "p.backend.rate_limit_per_minute": 100, "p.backend.response_format": "csv", "p.backend.ca_file": "/ca.pem",
        "p.features": [f"f{i}" for i in range(500)], "p.ordering": "none",
        "p.outputs.explanations": "churn-explanations"}), {}),
    "qlik-alias-url": (changed(**{"p.backend.url": QLIK_URL.replace("/realtime", "/aliases/champion/realtime")}), {}),
    "datarobot-serverless-url": (changed("datarobot", **{
        "p.backend.url": "http://127.0.0.1:8080/api/v2/deployments/0123456789abcdef01234567/predictions"}), {}),
    "sasl-ssl": (changed(**{"kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "SCRAM-SHA-512",
                            "kafka.sasl_username": "u", "kafka.sasl_password": "p",
                            "kafka.ssl_cafile": "/ca.pem"}), {}),
    "mutual-tls": (changed(**{"kafka.security_protocol": "SSL", "kafka.ssl_certfile": "/c.pem",
                              "kafka.ssl_keyfile": "/k.pem"}), {}),
    "broker-list": (changed(**{"kafka.bootstrap_servers": ["a:9092", "b:9093", "[::1]:9094"]}), {}),
    "null-sections": (changed(admin=None, **{"p.retry": None, "p.batching": None}), {}),
    "heartbeat-below-session": (changed(**{"kafka.heartbeat_interval_ms": 3000}), {}),
    "references-everywhere": (changed(**{
        "kafka.bootstrap_servers": "${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}",
        "kafka.security_protocol": "${KAFKA_PROTOCOL:-PLAINTEXT}",
        "kafka.sasl_password": "${KAFKA_SASL_PASSWORD:-}",
        "admin.port": "${ADMIN_PORT:-9400}", "shutdown_timeout_s": "${SHUTDOWN_S:-7.5}",
        "p.backend.type": "${BACKEND_TYPE:-qlik}", "p.backend.token": "${QLIK_API_KEY}",
        "p.backend.include_shap": "${SHAP:-false}", "p.backend.rate_limit_per_minute": "${RATE:-null}",
        "p.input_topic": "${INPUT_TOPIC:-churn-features}", "p.ordering": "${ORDERING:-none}",
        "p.batching.max_rows": "${MAX_ROWS:-100}"}), {"QLIK_API_KEY": "k", "ADMIN_PORT": "9500"}),
    "username-from-an-empty-variable": (changed("datarobot", **{"p.backend.username": "${DR_USER:-}"}), {}),
}


@pytest.mark.parametrize("name", GOOD)
def test_accepted_by_check_and_by_the_schema(name: str, validator: jsonschema.Draft202012Validator) -> None:
    doc, environ = GOOD[name]
    assert check_errors(doc, environ) == []
    assert schema_errors(validator, doc) == []


# --- the models on their own -------------------------------------------------------------------------

def test_models_built_directly_apply_the_same_rules() -> None:
    assert KafkaConfig(bootstrap_servers="b:1").security_protocol == "PLAINTEXT"
    with pytest.raises(ValueError, match="required with security_protocol SASL_SSL"):
        KafkaConfig(bootstrap_servers="b:1", security_protocol="SASL_SSL")
