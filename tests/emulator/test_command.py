"""``scoring-gateway emulate`` as users run it: a subprocess, its URL line, signals, options, TLS."""

from __future__ import annotations

import re
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.emulator.conftest import QLIK_RUN, ROOT
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, qlik_body

SEED_BODY = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
BEARER = {"Content-Type": "application/json", "Authorization": "Bearer any-token"}


def request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_prints_its_url_and_exits_cleanly_on_signal(run_command, signum):
    command = run_command()
    assert re.fullmatch(r"scoring emulator listening on http://127\.0\.0\.1:\d+", command.first_line)
    status, _, raw = request(command.url + "/_emulator/deployments")
    assert status == 200 and len(orjson.loads(raw)["deployments"]) == 4
    assert request(command.url + QLIK_RUN.format("churn"), SEED_BODY, BEARER)[0] == 200
    assert command.stop(signum) == 0
    assert command.proc.stdout.read() == b""  # one line, nothing else
    assert b"Traceback" not in command.proc.stderr.read()


def test_command_line_options_take_effect(run_command):
    command = run_command("--token", "T", "--datarobot-key", "K", "--error-rate", "503=1", "--error-rate", "500=0",
                          "--retry-after-s", "7", "--explanation-algorithm", "xemp", "--latency-ms", "5",
                          "--per-row-ms", "0.5", "--shap-multiplier", "3", "--xemp-multiplier", "50",
                          "--rate-limit-per-minute", "100", "--max-concurrent-requests", "4", "--crash-value", "666",
                          "--hang-rate", "0", "--drop-rate", "0", "--seed", "9")
    _, _, raw = request(command.url + "/_emulator/config")
    config = orjson.loads(raw)
    assert config["error_rate"] == {"503": 1.0, "500": 0.0}
    assert (config["retry_after_s"], config["explanation_algorithm"], config["latency_ms"], config["per_row_ms"],
            config["shap_multiplier"], config["xemp_multiplier"], config["rate_limit_per_minute"], config["seed"],
            config["max_concurrent_requests"], config["crash_value"]) == (7, "xemp", 5, 0.5, 3, 50, 100, 9, 4, "666")
    assert config["token"] == config["datarobot_key"] == "***"
    assert request(command.url + QLIK_RUN.format("churn"), SEED_BODY)[0] == 401
    status, headers, _ = request(command.url + QLIK_RUN.format("churn"), SEED_BODY, {"Authorization": "Bearer T"})
    assert status == 503 and headers["Retry-After"] == "7"


@pytest.mark.parametrize("args, words", [
    (["--error-rate", "200=1"], "error status"),
    (["--error-rate", "503"], "STATUS=P"),
    (["--hang-rate", "2"], "hang_rate"),
    (["--explanation-algorithm", "lime"], "invalid choice"),
    (["--tls-cert", "cert.pem"], "together"),
    (["--max-concurrent-requests", "0"], "max_concurrent_requests"),
    (["--max-concurrent-requests", "two"], "invalid int value"),
    (["--crash-value", ""], "crash_value"),
    (["--latency-ms", "-1"], "latency_ms"),
])
def test_bad_options_exit_2_with_a_message(args, words):
    done = subprocess.run([sys.executable, "-m", "gateway", "emulate", "--port", "0", *args], cwd=ROOT,
                          capture_output=True, timeout=30)
    assert done.returncode == 2
    assert words in done.stderr.decode()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_is_served_with_a_certificate(run_command, certificate):
    cert, key = certificate
    command = run_command("--tls-cert", str(cert), "--tls-key", str(key))
    assert command.url.startswith("https://127.0.0.1:")
    trusted = ssl.create_default_context(cafile=str(cert))
    status, _, raw = request(command.url + QLIK_RUN.format("churn"), SEED_BODY, BEARER, context=trusted)
    assert status == 200 and orjson.loads(raw)["data"]["type"] == "realtime-prediction"
    # A client that does not trust the certificate refuses it; plain HTTP gets no answer.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        request(command.url + "/_emulator/deployments", context=ssl.create_default_context())
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        request(command.url.replace("https://", "http://") + "/_emulator/deployments")
    assert command.stop() == 0


def test_defaults_are_a_realistic_latency_model_and_zero_is_explicit(run_command):
    config = orjson.loads(request(run_command().url + "/_emulator/config")[2])
    assert (config["latency_ms"], config["per_row_ms"], config["shap_multiplier"], config["xemp_multiplier"]) == (
        5, 0.02, 2, 100)
    assert config["crash_value"] is None and config["max_concurrent_requests"] is None
    instant = run_command("--latency-ms", "0", "--per-row-ms", "0")
    config = orjson.loads(request(instant.url + "/_emulator/config")[2])
    assert (config["latency_ms"], config["per_row_ms"], config["jitter_ms"]) == (0, 0, 0)
    # A 10-row XEMP request: 520 ms with the defaults, immediate here.
    body = "\n".join([",".join(CHURN_FEATURES), *["Standard,1,true,50.0,5,15.5,4.2,true"] * 10]).encode()
    status, headers, _ = request(instant.url + "/predApi/v1.0/deployments/churn/predictions"
                                 "?maxExplanations=3&explanationAlgorithm=xemp", body,
                                 {"Content-Type": "text/csv", "Authorization": "Bearer any-token"})
    assert status == 200 and int(headers["X-DataRobot-Execution-Time"]) < 500


def test_help_documents_the_latency_model_and_the_new_options():
    done = subprocess.run([sys.executable, "-m", "gateway", "emulate", "--help"], cwd=ROOT, capture_output=True,
                          timeout=30, text=True)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for words in ("by default 5 ms + 0.02 ms/row, SHAP x2, XEMP x100", "520 ms XEMP",
                  "--latency-ms 0 --per-row-ms 0 gives an instant emulator", "--max-concurrent-requests K",
                  "--crash-value VALUE", "(default 5;"):
        assert words in text, words


def test_standalone_module_entry_point(run_command):
    command = run_command("--seed", "1", module=("gateway.emulator",))
    assert command.first_line.startswith("scoring emulator listening on http://127.0.0.1:")
    assert command.stop() == 0
