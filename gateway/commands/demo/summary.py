"""Step 6: the summary, computed from the topics themselves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

import orjson
from rich.console import Console
from rich.table import Table

from gateway.commands.demo.options import DemoOptions
from gateway.commands.demo.outputs import Outputs
from gateway.commands.demo.progress import Counts
from gateway.commands.demo.sample_data import INVALID_JSON, JSON_ARRAY, TEXT_BASE_FEE
from gateway.json_types import JsonValue


class GatewayCounts(TypedDict):
    """The gateway's own counters, as the summary shows them."""

    consumed: int
    predicted: int
    dead_lettered: int
    dead_letter_stages: dict[str, int]


@dataclass(slots=True)
class Summary:
    backend: str
    explanations: str
    records_in: int
    produced: int
    predicted: int
    dead_lettered: int
    dead_letter_stages: dict[str, int]
    malformed_produced: dict[str, int]
    missing: int
    unexpected: int
    overlapping: int
    duplicates: int
    produce_rate: float  # records/s asked for; 0 = a burst
    produce_span_s: float  # first to last input timestamp
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, float | None]
    metrics: GatewayCounts
    config: str
    workdir: str
    clean_shutdown: bool | None = None

    @property
    def accounted(self) -> int:
        return self.predicted + self.dead_lettered - self.overlapping - self.unexpected

    def machine(self) -> dict[str, object]:
        doc = asdict(self)
        doc["accounted_for"] = self.accounted
        return doc


MALFORMED_LABELS = {INVALID_JSON: "invalid JSON", JSON_ARRAY: "JSON array", TEXT_BASE_FEE: "text BaseFee"}


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def summarize(options: DemoOptions, outputs: Outputs, malformed: dict[str, int], counts: Counts,
              config_path: Path, workdir: Path) -> Summary:
    inputs, predictions, dead = outputs.inputs, outputs.predictions, outputs.dead_letters
    predicted_ids, dead_ids = predictions.keys(), dead.keys()
    stages: dict[str, int] = {}
    for stage in dead.values():
        stages[stage] = stages.get(stage, 0) + 1
    latencies = sorted(float(ts - inputs[i]) for i, ts in predictions.items() if i in inputs)
    first_in = min(inputs.values(), default=0)
    last_in = max(inputs.values(), default=0)
    duration_s = max(0.001, (outputs.last_output_ms - first_in) / 1000.0) if inputs and outputs.last_output_ms else 0.0
    answered = len((predicted_ids | dead_ids) & inputs.keys())
    return Summary(
        backend=options.backend,
        explanations=options.explanations,
        records_in=len(inputs),
        produced=options.records,
        predicted=len(predicted_ids),
        dead_lettered=len(dead_ids),
        dead_letter_stages=dict(sorted(stages.items())),
        malformed_produced=dict(sorted(malformed.items())),
        missing=len(inputs) - answered + max(0, options.records - len(inputs)),
        unexpected=len((predicted_ids | dead_ids) - inputs.keys()),
        overlapping=len(predicted_ids & dead_ids),
        duplicates=outputs.duplicates,
        produce_rate=options.rate,
        produce_span_s=round((last_in - first_in) / 1000.0, 3),
        duration_s=round(duration_s, 3),
        throughput_rps=round(len(inputs) / duration_s, 1) if duration_s else 0.0,
        latency_ms={"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                    "max": latencies[-1] if latencies else None},
        metrics={"consumed": counts.consumed, "predicted": counts.predicted,
                 "dead_lettered": counts.dead_lettered, "dead_letter_stages": counts.stages},
        config=str(config_path),
        workdir=str(workdir),
    )


def print_summary(console: Console, summary: Summary, outputs: Outputs) -> None:
    s = summary
    table = Table(title=f"Summary: {s.backend}, explanations {s.explanations}", show_header=False,
                  title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    stages = ", ".join(f"{stage} {n:,}" for stage, n in s.dead_letter_stages.items()) or "none"
    made = ", ".join(f"{n} {MALFORMED_LABELS.get(kind, kind)}" for kind, n in s.malformed_produced.items())
    exact = s.missing == 0 and s.unexpected == 0 and s.overlapping == 0
    produced = "" if s.records_in == s.produced else f"of {s.produced:,} produced; "
    malformed = f"{produced}{sum(s.malformed_produced.values()):,} malformed on purpose: {made}"
    table.add_row("records in", f"{s.records_in:,}", malformed if made else produced)
    table.add_row("predicted", f"{s.predicted:,}", "")
    table.add_row("dead-lettered", f"{s.dead_lettered:,}", f"by stage: {stages}")
    table.add_row("accounted for", f"{s.accounted:,}",
                  ("[green]every input has exactly one output, matched by id[/]" if exact else
                   f"[red]missing {s.missing:,}, unexpected {s.unexpected:,}, both {s.overlapping:,}[/]")
                  + (f" ({s.duplicates:,} duplicates)" if s.duplicates else ""))
    table.add_row("throughput", f"{s.throughput_rps:,.0f}", f"records/s (first input to last output: "
                                                           f"{s.duration_s:.2f} s)")
    lat = s.latency_ms
    if lat["p50"] is not None:
        table.add_row("end-to-end latency", f"p50 {lat['p50']:,.0f} ms",
                      f"p99 {lat['p99']:,.0f} ms, max {lat['max']:,.0f} ms (input → prediction record timestamps)")
        table.add_row("", "", f"records produced at {s.produce_rate:,.0f}/s" if s.produce_rate else
                      f"a burst produced in {s.produce_span_s:.2f} s: includes queueing (--rate for steady state)")
    table.add_row("config", "", s.config)
    console.print()
    console.print(table)
    for label, doc in outputs.prediction_samples.items():
        console.print(f"\n[bold]A prediction record[/] ({label}):")
        console.print(record_text(doc), markup=False, highlight=True, soft_wrap=True)
    for stage, doc in outputs.dead_letter_samples.items():
        console.print(f"\n[bold]A dead-letter record[/] (stage {stage}):")
        console.print(record_text(doc), markup=False, highlight=True, soft_wrap=True)
    console.print()


def record_text(doc: Mapping[str, JsonValue]) -> str:
    """Pretty JSON that stays short: one line per field, and one per explanation."""
    lines = []
    for key, value in doc.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = ",\n".join("    " + orjson.dumps(v).decode() for v in value)
            lines.append(f"  {orjson.dumps(key).decode()}: [\n{items}\n  ]")
        else:
            lines.append(f"  {orjson.dumps(key).decode()}: {orjson.dumps(value).decode()}")
    return "{\n" + ",\n".join(lines) + "\n}"
