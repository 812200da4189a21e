"""What tracing costs per record: the hot path of ``bench_hot_path`` with and without ``tracing``.

    python -m benchmarks.bench_tracing [--records N] [--repeats R] [--rounds K] [--baseline REV]

Scenarios, measured in turn in one process (best of ``R`` passes each, ``K`` rounds, medians):

- ``absent``: no ``tracing`` section (the branch's code, every hook a None check);
- ``on, 1 % sampled upstream``: every input record has a ``traceparent``, 1 % of them sampled;
- ``on, ratio 0`` and ``on, ratio 1.0, no context``: no input has context; the ratio draws no batch,
  or every batch;
- ``on, ratio 0.01, no context``: their mix, 99 % and 1 % (:func:`at_ratio`: the ratio is drawn once
  per batch, so this is what 0.01 costs on average);
- ``on, all sampled``: every input's context is sampled.

With tracing on, each pass does what the pipeline does per batch (start the batch's trace, one
request span with an HTTP attempt, the output headers, the end of the spans) and the spans go
through the real batching processor and OTLP/HTTP exporter (protobuf encoding included) to a stub
transport that answers 200 without a network, so the exporter thread's CPU is counted: the figure is
process CPU time, flushed at the end of each pass.

``--baseline REV`` also runs ``benchmarks.bench_hot_path`` at ``REV`` (a git revision without
tracing) and on this tree, alternately in subprocesses, for the A/B of the ``absent`` case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import requests
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from benchmarks.bench_hot_path import ROWS_PER_BATCH, VARIANTS, batches_of, fetch_responses, input_records, take_in
from benchmarks.machine import describe as describe_machine
from gateway.backends.codec import Codec
from gateway.config.tracing import TracingConfig
from gateway.delivery.at_least_once import offsets_by_partition
from gateway.delivery.offsets import OffsetTracker
from gateway.emulator import EmulatorOptions, start_emulator
from gateway.runtime.memory import tune_for_batches
from gateway.stream.batcher import Batch, Batcher
from gateway.stream.outputs import Outputs
from gateway.tracing import PipelineTracing, Tracing

VARIANT = "qlik json, no explanations"
DEFAULT_OUT = Path("benchmarks/results/tracing.json")
SCENARIOS = {"absent": None, "on, 1 % sampled upstream": ("context", 0.01),
             "on, ratio 0, no context": ("ratio", 0.0), "on, ratio 1.0, no context": ("ratio", 1.0),
             "on, all sampled": ("context", 1.0)}
RATIO = 0.01
DERIVED = "on, ratio 0.01, no context"


def at_ratio(figures: dict[str, list[float]], ratio: float = RATIO) -> list[float]:
    """The ratio's expected cost per round: the ratio is drawn once per batch, so a share ``ratio`` of
    the batches costs what a batch at 1.0 costs and the rest what one at 0 does. (Measured directly, a
    pass of 40 batches at 0.01 traces none or one: the figure would be a lottery.)"""
    return [(1.0 - ratio) * none + ratio * every for none, every in
            zip(figures["on, ratio 0, no context"], figures["on, ratio 1.0, no context"], strict=True)]


class _Accepting(requests.adapters.BaseAdapter):
    """An OTLP endpoint that accepts every export, without a socket."""

    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code, response._content, response.request = 200, b"", request
        return response

    def close(self) -> None:
        pass


def with_context(records: list[Any], share: float, rng: random.Random) -> list[Any]:
    out = []
    for r in records:
        flags = b"01" if rng.random() < share else b"00"
        header = ("traceparent", b"00-%032x-%016x-%s" % (rng.getrandbits(128) | 1, rng.getrandbits(64) | 1, flags))
        out.append(ConsumerRecord(r.topic, r.partition, r.offset, r.timestamp, r.timestamp_type, r.key, r.value,
                                  r.checksum, r.serialized_key_size, r.serialized_value_size, [*r.headers, header]))
    return out


def tracing_for(ratio: float) -> tuple[Tracing, PipelineTracing]:
    session = requests.Session()
    session.mount("http://", _Accepting())
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:1/v1/traces", session=session)
    tracing = Tracing(TracingConfig(sample_ratio=ratio), exporter=exporter)
    return tracing, PipelineTracing(tracing.spans, pipeline="churn", input_topic="churn-features",
                                    sample_ratio=ratio)


def one_pass(codec: Codec, records: Sequence[Any], responses: Sequence[tuple[str, bytes]],
             tracing: Tracing | None, pipeline: PipelineTracing | None) -> float:
    """CPU seconds of one pass: ``bench_hot_path``'s stages (intake, encode, decode, outputs,
    acknowledgement), plus what the pipeline's tracing hooks do per batch when tracing is on."""
    outputs = Outputs(pipeline="churn", backend=codec.backend, deployment=codec.deployment,
                      predictions="churn-predictions", dead_letter="churn-dead-letter", explanations=None)
    tracker, batcher, check = OffsetTracker(), Batcher(ROWS_PER_BATCH, 50_000_000, 10), codec.check_json_row
    formed: list[Batch] = []
    clock = time.process_time
    started = clock()
    formed.extend(take_in(records, tracker, batcher, check))
    for batch, (content_type, body) in zip(formed, responses, strict=True):
        trace = None if pipeline is None else pipeline.start(batch.records, batch.opened)
        request = codec.encode(None, batch.rows)
        span = None if trace is None else trace.request(0, len(batch.rows), backend="qlik", deployment="churn")
        attempt = None if span is None else span.attempt(1)
        if attempt is not None:
            attempt.sending(request.headers)
        decoding = 0 if attempt is None else attempt.now()
        rows = codec.decode(request, 200, content_type, body)
        if attempt is not None and span is not None:
            attempt.decoded(decoding)
            attempt.answered(200)
            span.finish(1, "scored")
        published = outputs.batch(batch.records, rows, 12.5, trace)
        for (topic, partition), offsets in offsets_by_partition(batch.records).items():
            tracker.ack(TopicPartition(topic, partition), offsets)
        if published.trace is not None:
            published.trace.published()
    if tracing is not None:
        tracing.flush()
    return clock() - started


async def measure(n: int, repeats: int, rounds: int) -> dict[str, list[float]]:
    plain = input_records(n)
    rng = random.Random(5)
    inputs = {"absent": plain, "on, 1 % sampled upstream": with_context(plain, 0.01, rng),
              "on, ratio 0, no context": plain, "on, ratio 1.0, no context": plain,
              "on, all sampled": with_context(plain, 1.0, rng)}
    batches = batches_of(plain)
    emulator = await start_emulator(EmulatorOptions(latency_ms=0, per_row_ms=0, seed=1), host="127.0.0.1", port=0)
    try:
        codec = VARIANTS[VARIANT](emulator.url)
        async with aiohttp.ClientSession() as session:
            responses = await fetch_responses(session, [codec.encode(None, b.rows) for b in batches])
    finally:
        await emulator.stop()
    done = len(batches) * ROWS_PER_BATCH
    figures: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    for _ in range(rounds):
        for name, scenario in SCENARIOS.items():
            tracing, pipeline = (None, None) if scenario is None else tracing_for(scenario[1])
            best = min(one_pass(codec, inputs[name], responses, tracing, pipeline) for _ in range(repeats))
            if tracing is not None:
                tracing.shutdown()
            figures[name].append(best / done * 1e6)
    figures[DERIVED] = at_ratio(figures)
    return figures


def hot_path_ab(baseline: str, n: int, repeats: int, rounds: int) -> dict[str, list[float]]:
    """``bench_hot_path`` totals (µs/record) at ``baseline`` and on this tree, run alternately."""
    root = Path(__file__).resolve().parents[1]
    found: dict[str, list[float]] = {baseline: [], "this tree": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", baseline, "gateway", "benchmarks"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        for _ in range(rounds):
            for name, tree in ((baseline, base), ("this tree", root)):
                out = Path(tmp) / "out.json"
                subprocess.run([sys.executable, "-m", "benchmarks.bench_hot_path", "--records", str(n),
                                "--repeats", str(repeats), "--only", VARIANT, "--out", str(out)],
                               cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                               check=True, capture_output=True)
                found[name].append(json.loads(out.read_text())["results"][VARIANT]["total"])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default="", help="a git revision without tracing, for the A/B of 'absent'")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tune_for_batches()
    figures = asyncio.run(measure(args.records, args.repeats, args.rounds))
    absent = statistics.median(figures["absent"])
    print(f"µs of CPU per record, hot path ({VARIANT}), median of {args.rounds} rounds, best of {args.repeats}")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"  {name:28} {median:8.2f}  {100.0 * (median - absent) / absent:+6.1f} %  "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
    ab: dict[str, list[float]] = {}
    if args.baseline:
        ab = hot_path_ab(args.baseline, args.records, args.repeats, args.rounds)
        print(f"bench_hot_path total µs/record ({VARIANT}), {args.rounds} alternating rounds:")
        for name, values in ab.items():
            print(f"  {name:28} {statistics.median(values):8.2f}  (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps({"records": args.records, "repeats": args.repeats, "rounds": args.rounds,
                                       "variant": VARIANT, "scenarios": figures, "hot_path_ab": ab,
                                       "machine": describe_machine()}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
