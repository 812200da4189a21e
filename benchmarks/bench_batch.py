"""``scoring-gateway batch`` file to file against one emulator (no latency), in one run: rows/s for
Qlik (no explanations, SHAP) and DataRobot (none, SHAP, XEMP), CSV in, Parquet out; and DataRobot's
own ``datarobot-batch-scoring`` client on the same input and emulator where a Python 3.9 exists.

    python -m benchmarks.bench_batch                  # 100 000 rows
    python -m benchmarks.bench_batch --rows 20000     # a quick look

Each figure is rows ÷ the command's own elapsed time (its summary: reading, scoring, writing and
assembling the files; not the interpreter's start), next to rows ÷ the wall time of the whole
process, and rows per CPU-second of the client (the command's own ``cpu_s``, every thread; for
DataRobot's client, its whole process) and of the emulator: CPU figures are what a busy, shared
machine distorts least. The input has no rows the model refuses, so every client scores
the same work. Results go to ``benchmarks/results/bench_batch.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import yaml

from benchmarks.machine import describe
from gateway.commands.demo.sample_data import CHURN_FEATURES, churn_features
from testkit.processes import EmulatorProcess

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_ROWS_PER_S = 50_000  # CSV -> Parquet without explanations
DATAROBOT_CHURN = "65f1c0de9a3b4c2d1e0f7a81"
CLIENT = "datarobot-batch-scoring"

SCENARIOS: dict[str, dict[str, Any]] = {
    "qlik, no explanations": {"type": "qlik", "include_shap": False},
    "qlik, SHAP": {"type": "qlik", "include_shap": True},
    "datarobot, no explanations": {"type": "datarobot"},
    "datarobot, SHAP (3 per row)": {"type": "datarobot", "max_explanations": 3, "explanation_algorithm": "shap"},
    "datarobot, XEMP (3 per row)": {"type": "datarobot", "max_explanations": 3, "explanation_algorithm": "xemp"},
}


def write_input(path: Path, rows: int) -> None:
    rng = random.Random(5)
    records = [{"customer_id": f"C{i:07d}", **churn_features(rng)} for i in range(rows)]
    pa_csv.write_csv(pa.Table.from_pylist(records), path)


def config(path: Path, emulator: str) -> Path:
    urls = {"qlik": f"{emulator}/api/v1/ml/deployments/churn/realtime-predictions/actions/run",
            "datarobot": f"{emulator}/predApi/v1.0/deployments/{DATAROBOT_CHURN}/predictions"}
    pipelines = [{"name": f"p{i}", "input_topic": "churn-features", "features": list(CHURN_FEATURES),
                  "backend": {**backend, "url": urls[backend["type"]], "token": "bench-token"},
                  "outputs": {"predictions": "p", "dead_letter": "d"}}
                 for i, backend in enumerate(SCENARIOS.values())]
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "127.0.0.1:9"}, "pipelines": pipelines}))
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: list[str], emulator_pid: int, timeout_s: float, cwd: Path | None = None) -> dict[str, Any]:
    before = cpu_seconds(emulator_pid)
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.monotonic() - started
    return {"status": proc.returncode, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
            "wall_s": wall, "emulator_cpu_s": cpu_seconds(emulator_pid) - before}


def timed_child(args: list[str], emulator_pid: int, timeout_s: float, cwd: Path | None = None) -> dict[str, Any]:
    """``run`` plus the child's own CPU time (the difference in the children's resource usage)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run(args, emulator_pid, timeout_s, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def summary_of(stdout: str) -> dict[str, Any]:
    line = next((x for x in reversed(stdout.splitlines()) if x.startswith("summary: ")), None)
    return orjson.loads(line[len("summary: "):]) if line else {}


def python39(given: str | None) -> str | None:
    candidates = [given] if given else [shutil.which("python3.9"),
                                        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"],
                                        capture_output=True).returncode == 0:
            return candidate
    return None


def client_venv(python: str, cache: Path) -> Path | None:
    """A Python 3.9 virtualenv with DataRobot's batch-scoring client (from PyPI), made once."""
    script = cache / "bin" / "batch_scoring_deployment_aware"
    if script.exists():
        return script
    made = subprocess.run([python, "-m", "venv", str(cache)], capture_output=True)
    if made.returncode != 0:
        return None
    installed = subprocess.run([str(cache / "bin" / "pip"), "install", "-q", CLIENT], capture_output=True,
                               timeout=600)
    return script if installed.returncode == 0 and script.exists() else None


def figure(name: str, rows: int, result: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    elapsed_s, cpu_s = summary.get("elapsed_s"), summary.get("cpu_s") or result.get("cpu_s")
    return {"scenario": name, "rows": rows, "status": result["status"],
            "rows_per_s": round(rows / elapsed_s) if elapsed_s else None,
            "elapsed_s": round(elapsed_s, 3) if elapsed_s else None, "wall_s": round(result["wall_s"], 3),
            "rows_per_s_wall": round(rows / result["wall_s"]),
            "cpu_s": round(cpu_s, 3) if cpu_s else None,
            "process_cpu_s": round(result["cpu_s"], 3) if result.get("cpu_s") else None,
            "rows_per_cpu_s": round(rows / cpu_s) if cpu_s else None,
            "emulator_rows_per_cpu_s": round(rows / result["emulator_cpu_s"]) if result["emulator_cpu_s"] else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--python39", help="a Python 3.9 for DataRobot's client (default: found on PATH or pyenv)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_batch.json")
    parser.add_argument("--timeout-s", type=float, default=900)
    args = parser.parse_args(argv)
    machine = describe()
    emulator = EmulatorProcess(seed=1).start()
    url = emulator.url
    figures: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as work:
            workdir = Path(work)
            data = workdir / "customers.csv"
            write_input(data, args.rows)
            cfg = config(workdir / "gateway.yaml", url)
            for i, name in enumerate(SCENARIOS):
                command = [sys.executable, "-m", "gateway", "batch", "--config", str(cfg), "--pipeline", f"p{i}",
                           "--input", str(data), "--writeback", str(workdir / f"out{i}"), "--format", "parquet",
                           "--index-column", "customer_id"]
                result = timed_child(command, emulator.pid, args.timeout_s)
                summary = summary_of(result["stdout"])
                if result["status"] != 0 or summary.get("rows") != args.rows:
                    notes.append(f"{name}: exit {result['status']}: {result['stderr'][-300:]}")
                figures.append(figure(name, args.rows, result, summary))
                print(_row(figures[-1]), flush=True)
            figures.append(_datarobot_client(args, workdir, data, url, emulator.pid, notes))
            if figures[-1]["rows_per_s"] is not None or figures[-1]["status"] is not None:
                print(_row(figures[-1]), flush=True)
    finally:
        emulator.stop()
    none = figures[0]["rows_per_s"] or 0
    verdict = f"qlik CSV -> Parquet without explanations: {none:,} rows/s (target {TARGET_ROWS_PER_S:,}: " \
              f"{'met' if none >= TARGET_ROWS_PER_S else 'not met'})"
    print(verdict)
    for note in notes:
        print(f"note: {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": args.rows, "machine": machine, "figures": figures, "notes": notes,
                                    "verdict": verdict}, indent=2))
    print(f"results: {args.out}")
    return 0


def _datarobot_client(args: argparse.Namespace, workdir: Path, data: Path, url: str, emulator_pid: int,
                      notes: list[str]) -> dict[str, Any]:
    name = f"{CLIENT} (Python 3.9), no explanations"
    python = python39(args.python39)
    empty = {"scenario": name, "rows": args.rows, "status": None, "rows_per_s": None}
    if python is None:
        notes.append(f"{CLIENT} needs Python 3.9 and none was found: not measured")
        return empty
    script = client_venv(python, Path(os.path.expanduser("~/.cache/scoring-gateway/datarobot-batch-scoring-py39")))
    if script is None:
        notes.append(f"{CLIENT} could not be installed into a Python 3.9 virtualenv: not measured")
        return empty
    notes.append(f"{CLIENT} explains rows only through /predictionExplanations, a route the emulator does not "
                 "serve: its SHAP and XEMP runs are not measured")
    out = workdir / "client.csv"
    command = [str(script), "--host", url, "--user", "bench", "--api_token", "bench-token", "--out", str(out), "-y",
               "--no-resume", "--n_concurrent", "16", DATAROBOT_CHURN, str(data)]
    result = timed_child(command, emulator_pid, args.timeout_s, cwd=workdir)  # it writes a log file in its cwd
    written = max(0, sum(1 for _ in out.open()) - 1) if out.exists() else 0
    if written != args.rows:
        notes.append(f"{CLIENT}: wrote {written} of {args.rows} rows (exit {result['status']})")
    entry = figure(name, args.rows, result, {})
    entry["rows_per_s"] = entry["rows_per_s_wall"]  # the client reports no elapsed time of its own
    entry["note"] = "rows/s is rows / wall time of the whole process (it reports no elapsed time)"
    return entry


def _row(entry: dict[str, Any]) -> str:
    def number(value: Any) -> str:
        return f"{value:>9,}" if isinstance(value, int) else f"{'-':>9}"
    return (f"{entry['scenario']:<52} {number(entry.get('rows_per_s'))} rows/s"
            f"   wall {number(entry.get('rows_per_s_wall'))}   per CPU-second: client "
            f"{number(entry.get('rows_per_cpu_s'))}, emulator {number(entry.get('emulator_rows_per_cpu_s'))}")


if __name__ == "__main__":
    sys.exit(main())
