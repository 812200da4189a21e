"""``kill -9`` a ``scoring-gateway batch`` run at several points, rerun it each time, and compare
its final files with those of an uninterrupted run: same rows in every file, none twice or missing.

    python -m benchmarks.batch_resume                 # 100 000 rows, killed at 3 points
    python -m benchmarks.batch_resume --rows 20000 --latency-ms 100 --out r.json   # what the test suite runs

Each kill lands once the run's state records the given share of the segments (the state file is
polled, nothing sleeps blindly); the emulator is slowed down for the interrupted run so that the
kills land mid-run, and the reference run uses the same emulator at full speed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from gateway.commands.demo.sample_data import CHURN_FEATURES, churn_features
from testkit.processes import EmulatorProcess

KILL_SHARES = (0.2, 0.5, 0.8)
SUFFIXES = ("", "_shap", "_source", "_coord_shap", "_not_predicted")


@dataclass
class ResumeResult:
    rows: int
    kills: list[int] = field(default_factory=list)  # segments recorded when each kill landed
    segments: int = 0
    exit_codes: list[int] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def write_input(path: Path, rows: int, seed: int = 11) -> None:
    import random

    rng = random.Random(seed)
    records = []
    for i in range(rows):
        features = churn_features(rng)
        features["BaseFee"] = f"${features['BaseFee']:.2f}" if i % 97 == 5 else str(features["BaseFee"])
        records.append({"customer_id": f"C{i:07d}", **features})
    pa_csv.write_csv(pa.Table.from_pylist(records), path)


def write_config(path: Path, qlik_url: str) -> None:
    doc = {"kafka": {"bootstrap_servers": "127.0.0.1:9"},
           "pipelines": [{"name": "churn", "input_topic": "churn-features", "features": list(CHURN_FEATURES),
                          "backend": {"type": "qlik", "url": qlik_url, "token": "bench-token", "include_shap": True},
                          "batching": {"max_rows": 500},
                          "concurrency": {"max_in_flight_requests": 2, "max_in_flight_records": 2000},
                          "outputs": {"predictions": "p", "dead_letter": "d"}}]}
    path.write_text(yaml.safe_dump(doc))


def command(config: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "gateway", "batch", "--config", str(config), "--pipeline", "churn",
            "--input", str(data), "--writeback", str(out), "--index-column", "customer_id"]


def recorded(out: Path) -> int:
    try:
        return len(orjson.loads((out / ".churn.parquet.batch.json").read_bytes()).get("done", {}))
    except (OSError, orjson.JSONDecodeError):
        return 0


def run_to_end(args: list[str], timeout_s: float) -> int:
    return subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                          timeout=timeout_s).returncode


def kill_when(args: list[str], out: Path, segments: int, timeout_s: float) -> int:
    """Start the run, ``kill -9`` it once ``segments`` segments are recorded; the count it had."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and recorded(out) < segments:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the run did not record {segments} segments within {timeout_s:.0f}s")
            time.sleep(0.01)
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended (status {proc.returncode}) before the kill")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return recorded(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def compare(reference: Path, resumed: Path) -> list[str]:
    names = {p.name for p in reference.iterdir() if not p.name.startswith(".")}
    got = {p.name for p in resumed.iterdir() if not p.name.startswith(".")}
    if names != got:
        return [f"files differ: {sorted(names)} vs {sorted(got)}"]
    problems = []
    for name in sorted(names):
        want, have = pq.read_table(reference / name), pq.read_table(resumed / name)
        if want.column_names != have.column_names:
            problems.append(f"{name}: columns {want.column_names} vs {have.column_names}")
            continue
        key = want.column_names[0]
        ids = have.column(key).to_pylist()
        if "automl_feature" not in want.column_names and len(ids) != len(set(ids)):
            problems.append(f"{name}: a row appears twice")
        if _rows(want) != _rows(have):
            problems.append(f"{name}: {want.num_rows} rows vs {have.num_rows}, or different values")
    return problems


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(str(v) for v in row.values()) for row in table.to_pylist())


def resume_scenario(qlik_url: str, workdir: Path, rows: int, set_latency: Callable[[float], None],
                    shares: Sequence[float] = KILL_SHARES, latency_ms: float = 40.0,
                    timeout_s: float = 300.0) -> ResumeResult:
    data, config = workdir / "customers.csv", workdir / "gateway.yaml"
    write_input(data, rows)
    write_config(config, qlik_url)
    result = ResumeResult(rows)
    reference, resumed = workdir / "reference", workdir / "resumed"
    set_latency(0.0)
    result.exit_codes.append(run_to_end(command(config, data, reference), timeout_s))
    result.segments = len(orjson.loads((reference / ".churn.parquet.batch.json").read_bytes())["done"])
    set_latency(latency_ms)
    try:
        for share in shares:
            result.kills.append(kill_when(command(config, data, resumed), resumed,
                                          max(1, round(result.segments * share)), timeout_s))
    finally:
        set_latency(0.0)
    result.exit_codes.append(run_to_end(command(config, data, resumed), timeout_s))
    result.differences = compare(reference, resumed)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=40.0, help="emulator latency during the killed runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the result here, as JSON")
    args = parser.parse_args(argv)
    emulator = EmulatorProcess().start()
    try:
        with tempfile.TemporaryDirectory(prefix="batch-resume-") as workdir:
            result = resume_scenario(emulator.qlik_url(), Path(workdir), args.rows,
                                     lambda ms: emulator.configure(latency_ms=ms), latency_ms=args.latency_ms)
    finally:
        emulator.stop()
    print(f"batch resume: {result.rows:,} rows in {result.segments} segments; kill -9 with "
          f"{', '.join(map(str, result.kills))} segments recorded; exit codes {result.exit_codes}; "
          f"final files {'identical' if result.identical else 'DIFFERENT: ' + '; '.join(result.differences)}")
    if args.out is not None:
        args.out.write_bytes(orjson.dumps({**asdict(result), "identical": result.identical},
                                          option=orjson.OPT_INDENT_2))
    return 0 if result.identical and result.exit_codes[-1] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
