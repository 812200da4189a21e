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
    assert status == 200 and len(orjson.loads(raw)["deployments"]) == 3
    assert request(command.url + QLIK_RUN.format("churn"), SEED_BODY)[0] == 200
    assert command.stop(signum) == 0
    assert command.proc.stdout.read() == b""  # one line, nothing else
    assert b"Traceback" not in command.proc.stderr.read()


def test_command_line_options_take_effect(run_command):
    command = run_command("--token", "T", "--datarobot-key", "K", "--error-rate", "503=1", "--error-rate", "500=0",
                          "--retry-after-s", "7", "--explanation-algorithm", "xemp", "--latency-ms", "5",
                          "--per-row-ms", "0.5", "--shap-multiplier", "3", "--xemp-multiplier", "50",
                          "--rate-limit-per-minute", "100", "--hang-rate", "0", "--drop-rate", "0", "--seed", "9")
    _, _, raw = request(command.url + "/_emulator/config")
    config = orjson.loads(raw)
    assert config["error_rate"] == {"503": 1.0, "500": 0.0}
    assert (config["retry_after_s"], config["explanation_algorithm"], config["latency_ms"], config["per_row_ms"],
            config["shap_multiplier"], config["xemp_multiplier"], config["rate_limit_per_minute"], config["seed"]) == (
        7, "xemp", 5, 0.5, 3, 50, 100, 9)
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
    status, _, raw = request(command.url + QLIK_RUN.format("churn"), SEED_BODY,
                             {"Content-Type": "application/json"}, context=trusted)
    assert status == 200 and orjson.loads(raw)["data"]["type"] == "realtime-prediction"
    # A client that does not trust the certificate refuses it; plain HTTP gets no answer.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        request(command.url + "/_emulator/deployments", context=ssl.create_default_context())
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        request(command.url.replace("https://", "http://") + "/_emulator/deployments")
    assert command.stop() == 0


def test_standalone_module_entry_point(run_command):
    command = run_command("--seed", "1", module=("gateway.emulator",))
    assert command.first_line.startswith("scoring emulator listening on http://127.0.0.1:")
    assert command.stop() == 0
