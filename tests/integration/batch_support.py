"""Helpers for the batch tests: churn input files with rows the model refuses, configs pointing at
the emulator, the ``scoring-gateway batch`` command as a real process, and its output read back."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from gateway.commands.demo.sample_data import CHURN_FEATURES, churn_features

PREDICTIONS, SHAP, SOURCE, COORD_SHAP, NOT_PREDICTED = ("", "_shap", "_source", "_coord_shap", "_not_predicted")


@dataclass
class ChurnInput:
    path: Path
    rows: int
    refused: set[str]  # customer ids of the rows whose BaseFee the model cannot read


def churn_table(rows: int, *, refuse_share: float = 0.01, seed: int = 3) -> tuple[pa.Table, set[str]]:
    """Churn customers with a unique ``customer_id``; ``refuse_share`` of them have a BaseFee
    written as text (``$80.00``), which the model cannot read."""
    rng = random.Random(seed)
    bad = set(rng.sample(range(rows), round(rows * refuse_share)))
    records = []
    for i in range(rows):
        features = churn_features(rng)
        fee = features["BaseFee"]
        features["BaseFee"] = f"${fee:.2f}" if i in bad else f"{fee}"
        records.append({"customer_id": f"C{i:07d}", **features})
    table = pa.Table.from_pylist(records)
    return table, {f"C{i:07d}" for i in bad}


def write_input(directory: Path, rows: int, fmt: str, **kwargs: Any) -> ChurnInput:
    table, refused = churn_table(rows, **kwargs)
    path = directory / f"customers.{fmt}"
    if fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return ChurnInput(path, rows, refused)


def batch_config(directory: Path, backend: dict[str, Any], *, bootstrap: str = "127.0.0.1:9",
                 input_topic: str = "churn-features", features: Sequence[str] | None = CHURN_FEATURES,
                 name: str = "churn", kafka: dict[str, Any] | None = None, **pipeline: Any) -> Path:
    doc = {"kafka": kafka or {"bootstrap_servers": bootstrap},
           "pipelines": [{"name": name, "input_topic": input_topic,
                          "features": list(features) if features is not None else None,
                          "backend": {"token": "test-token", **backend},  # the emulator wants one
                          "outputs": {"predictions": "churn-predictions", "dead_letter": "churn-dead-letter"},
                          **pipeline}]}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def batch_command(config: Path, *args: str, pipeline: str = "churn") -> list[str]:
    return [sys.executable, "-m", "gateway", "batch", "--config", str(config), "--pipeline", pipeline, *args]


def run_batch(config: Path, *args: str, pipeline: str = "churn",
              timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_command(config, *args, pipeline=pipeline), capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path) if path.suffix == ".parquet" else pa_csv.read_csv(path)


def output_files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")}


def sorted_rows(table: pa.Table, key: str) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: (row[key], str(row.get("automl_feature", ""))))

