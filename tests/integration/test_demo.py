"""``scoring-gateway demo`` end to end, as a user runs it: a real process with a real broker,
emulator and gateway, checked through its machine-readable ``summary:`` line and its exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.commands.demo import percentile
from gateway.commands.demo.sample_data import (
    CHURN_FEATURES,
    INVALID_JSON,
    JSON_ARRAY,
    MALFORMED_KINDS,
    TEXT_BASE_FEE,
    churn_records,
    malformed_count,
)
from gateway.config import load_config

pytestmark = pytest.mark.integration

RECORDS = 300
RUN_TIMEOUT_S = 180


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "demo", *args]


def run_demo(*args: str, env: dict[str, str] | None = None,
             timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(demo_command(*args), capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def summary_of(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines and lines[-1].startswith("summary: "), f"no summary line at the end:\n{stdout[-3000:]}"
    return orjson.loads(lines[-1][len("summary: "):])


def assert_accounts_for_every_record(summary: dict[str, Any], model_stage: str) -> None:
    assert summary["produced"] == RECORDS
    assert summary["records_in"] == RECORDS
    assert summary["missing"] == 0 and summary["unexpected"] == 0 and summary["overlapping"] == 0
    assert summary["predicted"] + summary["dead_lettered"] == RECORDS
    assert summary["accounted_for"] == RECORDS
    # Exactly the records malformed on purpose are dead-lettered, each at the stage its defect belongs to.
    made = summary["malformed_produced"]
    assert sum(made.values()) == malformed_count(RECORDS) and set(made) == set(MALFORMED_KINDS)
    assert summary["dead_letter_stages"] == {"decode": made[INVALID_JSON] + made[JSON_ARRAY],
                                             model_stage: made[TEXT_BASE_FEE]}
    # The gateway's own counters agree with what the topics hold.
    assert summary["metrics"]["predicted"] == summary["predicted"]
    assert summary["metrics"]["dead_lettered"] == summary["dead_lettered"]
    assert summary["metrics"]["dead_letter_stages"] == summary["dead_letter_stages"]
    assert summary["throughput_rps"] > 0
    assert 0 <= summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]
    assert summary["clean_shutdown"] is True


@pytest.mark.parametrize(("backend", "explanations", "model_stage", "kind"), [
    ("qlik", "shap", "not_predicted", "shap"),
    ("datarobot", "shap", "score", "shap"),
    ("datarobot", "xemp", "score", "xemp"),
])
def test_demo_accounts_for_every_record(tmp_path: Path, backend: str, explanations: str, model_stage: str,
                                        kind: str) -> None:
    result = run_demo("--backend", backend, "--explanations", explanations, "--records", str(RECORDS),
                      "--workdir", str(tmp_path))
    assert result.returncode == 0, (f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}\n"
                                    f"stdout:\n{result.stdout[-3000:]}")
    summary = summary_of(result.stdout)
    assert_accounts_for_every_record(summary, model_stage)
    assert (summary["backend"], summary["explanations"]) == (backend, explanations)
    # Not a terminal: plain progress lines instead of a redrawn bar, the last one complete.
    progress = [line for line in result.stdout.splitlines() if line.startswith("progress: ")]
    assert progress and progress[-1].startswith(f"progress: {RECORDS}/{RECORDS} published")
    # Sample outputs are shown, with the explanations asked for.
    assert f'"explanation_kind": "{kind}"' in result.stdout
    assert '"stage": "decode"' in result.stdout and f'"stage": "{model_stage}"' in result.stdout
    if backend == "datarobot":  # the DataRobot query options: a prediction warning, a multiclass refusal
        assert "prediction_warning=true" in result.stdout
        assert "HTTP 422: Multiclass models cannot be used for Prediction Explanations" in result.stdout
    # The config written is the config that ran: it validates and targets the demo's own topics.
    config = load_config(summary["config"])
    assert Path(summary["config"]).parent == tmp_path.resolve()
    pipeline = config.pipelines[0]
    assert pipeline.backend.type == backend and pipeline.features == CHURN_FEATURES
    assert (pipeline.input_topic, pipeline.outputs.predictions, pipeline.outputs.dead_letter) == (
        "churn-features", "churn-predictions", "churn-dead-letter")
    assert (tmp_path / "gateway.log").stat().st_size > 0


def test_demo_without_explanations(tmp_path: Path) -> None:
    result = run_demo("--explanations", "off", "--records", str(RECORDS), "--workdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_accounts_for_every_record(summary_of(result.stdout), "not_predicted")
    assert '"explanation_kind": null' in result.stdout


def test_an_unresolvable_broker_fails_fast_with_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_demo("--records", "10", "--workdir", str(tmp_path), env={"CALF_TANSU_BIN": "/nonexistent"},
                      timeout_s=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("demo: cannot start the broker: ") and "/nonexistent" in lines[0]
    assert "summary:" not in result.stdout


def test_a_broker_that_exits_at_once_is_named_as_the_cause(tmp_path: Path) -> None:
    result = run_demo("--records", "10", "--workdir", str(tmp_path), env={"CALF_TANSU_BIN": "/bin/false"},
                      timeout_s=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo: cannot start the broker: "), result.stderr


def test_xemp_needs_datarobot(tmp_path: Path) -> None:
    result = run_demo("--backend", "qlik", "--explanations", "xemp", "--workdir", str(tmp_path), timeout_s=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("demo: --explanations xemp needs --backend datarobot "
                                     "(Qlik Predict explains with SHAP only)")


async def test_an_early_gateway_failure_is_one_clear_cause(tmp_path: Path) -> None:
    """The admin port taken by someone else: the gateway cannot start, and the demo says why at once."""
    import socket

    from prometheus_client import CollectorRegistry

    from gateway.commands.demo import DemoError, DemoOptions, EmbeddedGateway, demo_config, write_config

    options = DemoOptions("qlik", 10, "shap", False, tmp_path, 0.0, 7)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        url = "http://127.0.0.1:9/api/v1/ml/deployments/churn/realtime-predictions/actions/run"
        write_config(tmp_path / "gateway.yaml", demo_config(options, "127.0.0.1:9", url, taken.getsockname()[1]))
        gateway = EmbeddedGateway(load_config(tmp_path / "gateway.yaml"), CollectorRegistry())
        started = time.monotonic()
        with pytest.raises(DemoError, match=r"^cannot start the gateway: OSError: .*address already in use"):
            await gateway.start()
        assert time.monotonic() - started < 10
        assert gateway.failure() is not None


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout_s: float) -> tuple[str, re.Match[str]]:
    """Stdout lines until one matches (a reader thread is not needed: the demo flushes each line)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return "".join(seen), match
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s}s:\n{''.join(seen)[-3000:]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; only its parent (the demo, now gone) could reap it.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def _child_pids(head: str) -> list[int]:
    """The broker's and the emulator's PIDs, as the demo announces them."""
    pids = [int(re.search(pattern, head).group(1))  # type: ignore[union-attr]
            for pattern in (r"tansu, pid (\d+)", r"emulator .*\(pid (\d+)\)")]
    assert all(_pid_alive(pid) for pid in pids), "both run while the demo does"
    return pids


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(demo_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_keep_running_serves_until_sigterm_then_stops_cleanly(tmp_path: Path) -> None:
    import urllib.request

    proc = _start("--records", "100", "--keep-running", "--workdir", str(tmp_path), cwd=tmp_path)
    try:
        head, _ = _read_until(proc, r"Everything keeps running", RUN_TIMEOUT_S)
        children = _child_pids(head)
        _, match = _read_until(proc, r"gateway admin\s+(http://127\.0\.0\.1:\d+)/metrics", 10)
        admin = match.group(1)
        with urllib.request.urlopen(f"{admin}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'scoring_gateway_records_consumed_total{pipeline="churn"} 100.0' in metrics
        with urllib.request.urlopen(f"{admin}/readyz", timeout=5) as response:
            assert response.status == 200
        _, emulator = _read_until(proc, r"emulator\s+(http://127\.0\.0\.1:\d+)", 10)
        with urllib.request.urlopen(f"{emulator.group(1)}/_emulator/deployments", timeout=5) as response:
            assert any(d["name"] == "churn" for d in orjson.loads(response.read())["deployments"])
        time.sleep(0.5)
        assert proc.poll() is None, "the demo must stay up with --keep-running"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    summary = summary_of(out)
    assert summary["accounted_for"] == 100 and summary["clean_shutdown"] is True
    assert not any(_pid_alive(pid) for pid in children), "broker and emulator must stop with the demo"


def test_interrupt_mid_run_stops_everything(tmp_path: Path) -> None:
    # Enough records (and latency) that the run is still scoring when the signal lands.
    proc = _start("--records", "200000", "--latency-ms", "50", "--workdir", str(tmp_path), cwd=tmp_path)
    try:
        head, _ = _read_until(proc, r"^progress: ", RUN_TIMEOUT_S)
        children = _child_pids(head)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "summary:" not in out
    assert not any(_pid_alive(pid) for pid in children)


# ---- the sample data (pure) ---------------------------------------------------------------------

def test_sample_records_are_reproducible_and_plausible() -> None:
    first = list(churn_records(2000, seed=3))
    assert first == list(churn_records(2000, seed=3))
    assert first != list(churn_records(2000, seed=4))
    good = [orjson.loads(r.value) for r in first if r.malformed is None]
    assert all(tuple(doc) == CHURN_FEATURES for doc in good)
    assert {doc["PlanType"] for doc in good} == {"Basic", "Standard", "Premium", "Enterprise"}
    assert all(1.0 <= doc["ServiceRating"] <= 5.0 and doc["BaseFee"] > 0 for doc in good)
    assert all(isinstance(doc["HasRenewed"], bool) and isinstance(doc["NumberOfPenalties"], int) for doc in good)
    fees = {plan: [d["BaseFee"] for d in good if d["PlanType"] == plan] for plan in ("Basic", "Premium")}
    assert sum(fees["Basic"]) / len(fees["Basic"]) < sum(fees["Premium"]) / len(fees["Premium"])
    keys = [r.key for r in first]
    assert len(set(keys)) < len(keys), "customers recur, so per-key ordering matters"
    assert all(re.fullmatch(rb"CUST-\d{7}", k) for k in keys)


def test_malformed_records_have_the_defect_they_claim() -> None:
    records = list(churn_records(1000, seed=1))
    bad = [r for r in records if r.malformed]
    assert len(bad) == malformed_count(1000) == 5
    for record in bad:
        if record.malformed == INVALID_JSON:
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(record.value)
        elif record.malformed == JSON_ARRAY:
            assert isinstance(orjson.loads(record.value), list)
        else:
            assert record.malformed == TEXT_BASE_FEE
            assert re.fullmatch(r"\$\d+\.\d\d", orjson.loads(record.value)["BaseFee"])
    assert malformed_count(300) == 3 and malformed_count(20_000) == 100 and malformed_count(2) == 2
    assert malformed_count(100, share=0) == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_demo_with_a_challenger_reports_the_agreement_the_emulator_counts(tmp_path: Path) -> None:
    result = run_demo("--records", str(RECORDS), "--challenger", "--workdir", str(tmp_path))
    assert result.returncode == 0, f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    summary = summary_of(result.stdout)
    assert_accounts_for_every_record(summary, "not_predicted")
    text = " ".join(result.stdout.split())  # the console wraps long lines
    found = re.search(r"challenger: agreed with the champion on ([\d,]+) of ([\d,]+) compared records .*? the "
                      r"emulator counted ([\d,]+) disagreements in ([\d,]+) challenger rows", text)
    assert found, result.stdout[-3000:]
    agreed, compared, disagreements, rows = (int(found[i].replace(",", "")) for i in range(1, 5))
    assert compared == summary["predicted"] and compared - agreed == disagreements and rows >= compared
    assert load_config(summary["config"]).pipelines[0].outputs.comparisons == "churn-comparisons"
