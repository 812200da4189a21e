"""``scoring-gateway check`` without ``--probe``: exit codes, the printed config, secrets kept out."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.commands import check
from gateway.config import load_config
from gateway.runtime.redaction import Redactor

ROOT = Path(__file__).resolve().parents[3]
DATAROBOT_URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/0123456789abcdef01234567/predictions"

CONFIG = f"""
kafka:
  bootstrap_servers: broker:9092
  security_protocol: SASL_SSL
  sasl_mechanism: SCRAM-SHA-512
  sasl_username: gateway
  sasl_password: "${{KAFKA_SASL_PASSWORD}}"
pipelines:
  - name: churn
    input_topic: churn-features
    backend:
      type: datarobot
      url: "{DATAROBOT_URL}"
      token: "${{DATAROBOT_API_TOKEN}}"
      datarobot_key: "${{DATAROBOT_KEY}}"
    outputs: {{predictions: churn-predictions, dead_letter: churn-dead-letter}}
"""
SECRETS = {"KAFKA_SASL_PASSWORD": "kafka-pw-7f3a9c", "DATAROBOT_API_TOKEN": "dr-token-51be0d",
           "DATAROBOT_KEY": "dr-key-88e2c1"}


def run_main(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    code = check.main(parser.parse_args(["--config", str(path)]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return path


def test_valid_config_prints_the_resolved_config_redacted(config_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(config_file, capsys)
    assert (code, err) == (0, "")
    printed = yaml.safe_load(out)
    assert printed == load_config(config_file).redacted()
    assert printed["kafka"]["sasl_password"] == "***"
    assert printed["pipelines"][0]["backend"]["token"] == "***"
    assert printed["pipelines"][0]["batching"]["max_rows"] == 500  # defaults are shown
    for secret in SECRETS.values():
        assert secret not in out


def test_invalid_config_exits_2_with_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAROBOT_API_TOKEN", "dr-token-51be0d")
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.replace("sasl_password: \"${KAFKA_SASL_PASSWORD}\"", "sasl_pasword: x")
                    .replace("churn-dead-letter", "churn-predictions"))
    code, out, err = run_main(path, capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"invalid config {path}:",  # as every command words it
        "  kafka.sasl_pasword: unknown key (did you mean 'sasl_password'?)",
        "  kafka.sasl_password: required with security_protocol SASL_SSL",
        "  pipelines[0].backend.datarobot_key: environment variable DATAROBOT_KEY is not set "
        "(set it, or write ${DATAROBOT_KEY:-default})",
        "  pipelines[0].outputs.dead_letter: must differ from outputs.predictions (both are 'churn-predictions')",
    ]
    assert "dr-token-51be0d" not in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(tmp_path / "absent.yaml", capsys)
    assert (code, out) == (2, "")
    assert err == (f"invalid config {tmp_path / 'absent.yaml'}:\n"
                   f"  {tmp_path / 'absent.yaml'}: cannot read the config file: No such file or directory\n")


@pytest.mark.parametrize("name", ["qlik.yaml", "datarobot.yaml"])
def test_shipped_example_configs_pass_without_any_environment(name: str, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "config" / name
    for variable in set(re.findall(r"\$\{([A-Z_]+)", path.read_text())):
        monkeypatch.delenv(variable, raising=False)
    code, out, err = run_main(path, capsys)
    assert (code, err) == (0, "")
    printed = yaml.safe_load(out)
    assert printed["pipelines"][0]["backend"]["type"] == name.removesuffix(".yaml")
    assert printed["pipelines"][0]["backend"]["token"] == "***"


def test_check_as_a_real_process_never_prints_secrets(config_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, **SECRETS}
    good = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(config_file)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert yaml.safe_load(good.stdout)["kafka"]["sasl_username"] == "gateway"
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(CONFIG.replace("sasl_username: gateway", "sasl_username: 42")
                        .replace('token: "${DATAROBOT_API_TOKEN}"', "token: ${DATAROBOT_API_TOKEN}\n      tokne: 1"))
    bad = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(bad_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        f"invalid config {bad_path}:",
        "  kafka.sasl_username: expected a string, got 42 (quote it)",
        "  pipelines[0].backend.tokne: unknown key (did you mean 'token'?)",
    ]
    for secret in SECRETS.values():
        assert secret not in good.stdout + good.stderr + bad.stdout + bad.stderr


def test_probe_lines() -> None:
    assert check.ProbeResult("kafka b:9092", True, "1 broker(s)").line() == "kafka b:9092: ok (1 broker(s))"
    assert check.ProbeResult("backend", True).line() == "backend: ok"
    assert check.ProbeResult("backend", False, "HTTP 401: nope").line() == "backend: FAILED: HTTP 401: nope"
    assert Redactor({"abc123", ""}).text("token abc123 and abc123x") == "token *** and ***x"


def test_broker_addresses() -> None:
    assert check.broker_addresses("a:1,b,[::1]:9093, c.example:29092") == [
        ("a", 1), ("b", 9092), ("::1", 9093), ("c.example", 29092)]
