"""The gateway's per-record work without the broker or the network: CPU per record, stage by stage.

    python -m benchmarks.bench_hot_path [--records N] [--repeats R] [--out FILE]

Real records (the sample churn features as aiokafka's consumer hands them over) go through the same
functions the pipeline runs, in the same order: intake (decode, check, batch, track), encode, decode
of a real emulator response to that very request (fetched once beforehand over loopback), output
records, acknowledgement. The figure is process CPU time per record, the best of ``R`` repeats, for
each backend and explanation kind; it leaves out what the broker client and the HTTP client cost,
which the end-to-end benchmark (``benchmarks.run``) includes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from benchmarks.machine import describe as describe_machine
from gateway.backends.codec import Codec, ScoringRequest
from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.qlik.codec import QlikCodec
from gateway.commands.demo.sample_data import churn_records
from gateway.delivery.at_least_once import offsets_by_partition
from gateway.delivery.offsets import OffsetTracker
from gateway.emulator import EmulatorOptions, start_emulator
from gateway.kafka.source import decode_value
from gateway.runtime.memory import tune_for_batches
from gateway.stream.batcher import Batch, Batcher
from gateway.stream.outputs import Outputs

STAGES = ("intake", "encode", "decode", "outputs", "acknowledge")
ROWS_PER_BATCH = 500
DEFAULT_OUT = Path("benchmarks/results/hot-path.json")


def input_records(n: int) -> list[Any]:
    records = []
    for i, sample in enumerate(churn_records(n, seed=3, malformed_share=0.0)):
        value = sample.value
        records.append(ConsumerRecord("churn-features", i % 4, i // 4, 1_763_800_000_000 + i, 0, sample.key,
                                      value, None, len(value), len(sample.key or b""), [("trace", b"t")]))
    return records


def batches_of(records: Sequence[Any]) -> list[Batch]:
    batcher, out = Batcher(ROWS_PER_BATCH, 50_000_000, 10), []
    for record in records:
        batch = batcher.add(record, decode_value(record.value))  # type: ignore[arg-type]
        if batch is not None:
            out.append(batch)
    return out


def take_in(records: Sequence[Any], tracker: OffsetTracker, batcher: Batcher,
            check: Callable[[Mapping[str, object]], str | None]) -> list[Batch]:
    """The intake's per-record work, as the gateway does it: track offsets by partition, decode each
    value, check the row, add it to the batcher; the batches it formed."""
    formed: list[Batch] = []
    by_partition: dict[int, list[Any]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    for partition, mine in by_partition.items():
        tracker.track(TopicPartition("churn-features", partition), [r.offset for r in mine])
        for record in mine:
            row = decode_value(record.value)
            if type(row) is dict and check(row) is None:
                batch = batcher.add(record, row)
                if batch is not None:
                    formed.append(batch)
    return formed


def one_pass(codec: Codec, records: Sequence[Any], responses: Sequence[tuple[str, bytes]]) -> dict[str, float]:
    """CPU seconds per stage for one pass over ``records``."""
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time
    outputs = Outputs(pipeline="churn", backend=codec.backend, deployment=codec.deployment,
                      predictions="churn-predictions", dead_letter="churn-dead-letter", explanations=None)
    tracker, batcher, check, formed = OffsetTracker(), Batcher(ROWS_PER_BATCH, 50_000_000, 10), codec.check_json_row, []
    started = clock()
    formed.extend(take_in(records, tracker, batcher, check))
    spent["intake"] = clock() - started
    for batch, (content_type, body) in zip(formed, responses, strict=True):
        t0 = clock()
        request = codec.encode(None, batch.rows)
        t1 = clock()
        rows = codec.decode(request, 200, content_type, body)
        t2 = clock()
        outputs.batch(batch.records, rows, 12.5)
        t3 = clock()
        for (topic, partition), offsets in offsets_by_partition(batch.records).items():
            tracker.ack(TopicPartition(topic, partition), offsets)
        now_ms = time.time() * 1000.0
        [max(0.0, (now_ms - record.timestamp) / 1000.0) for record in batch.records]
        t4 = clock()
        spent["encode"] += t1 - t0
        spent["decode"] += t2 - t1
        spent["outputs"] += t3 - t2
        spent["acknowledge"] += t4 - t3
    return spent


async def fetch_responses(session: aiohttp.ClientSession,
                          requests: Sequence[ScoringRequest]) -> list[tuple[str, bytes]]:
    out = []
    for request in requests:
        async with session.request(request.method, request.url, data=request.body, headers=request.headers) as r:
            assert r.status == 200, await r.text()
            out.append((r.headers.get("Content-Type", ""), await r.read()))
    return out


CodecMaker = Callable[[str], Codec]
VARIANTS: dict[str, CodecMaker] = {
    "qlik json, no explanations": lambda url: QlikCodec(url=f"{url}/api/v1/ml/deployments/churn/realtime-predictions/"
                                                            "actions/run", token="t", max_bytes=None),
    "qlik json, shap": lambda url: QlikCodec(url=f"{url}/api/v1/ml/deployments/churn/realtime-predictions/actions/run",
                                             token="t", max_bytes=None, include_shap=True),
    "datarobot csv, no explanations": lambda url: DataRobotCodec(
        url=f"{url}/predApi/v1.0/deployments/churn/predictions", token="t", max_bytes=None),
    "datarobot csv, shap": lambda url: DataRobotCodec(
        url=f"{url}/predApi/v1.0/deployments/churn/predictions", token="t", max_bytes=None, max_explanations=3,
        explanation_algorithm="shap"),
}


async def measure(n: int, repeats: int, chosen: Sequence[str]) -> dict[str, dict[str, float]]:
    records = input_records(n)
    batches = batches_of(records)
    results: dict[str, dict[str, float]] = {}
    emulator = await start_emulator(EmulatorOptions(latency_ms=0, per_row_ms=0, seed=1), host="127.0.0.1", port=0)
    try:
        async with aiohttp.ClientSession() as session:
            for name in chosen:
                codec = VARIANTS[name](emulator.url)
                responses = await fetch_responses(session, [codec.encode(None, b.rows) for b in batches])
                best: dict[str, float] | None = None
                for _ in range(repeats):
                    spent = one_pass(codec, records, responses)
                    if best is None or sum(spent.values()) < sum(best.values()):
                        best = spent
                assert best is not None
                done = len(batches) * ROWS_PER_BATCH
                results[name] = {stage: round(seconds / done * 1e6, 3) for stage, seconds in best.items()}
                results[name]["total"] = round(sum(best.values()) / done * 1e6, 3)
    finally:
        await emulator.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="variants separated by semicolons (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tune_for_batches()  # as the gateway's own process does (allocator and collector settings)
    chosen = [v.strip() for v in args.only.split(";") if v.strip()] or list(VARIANTS)
    results = asyncio.run(measure(args.records, args.repeats, chosen))
    width = max(map(len, results))
    print(f"{'µs of CPU per record':{width}}  " + "  ".join(f"{s:>11}" for s in (*STAGES, "total")))
    for name, figures in results.items():
        print(f"{name:{width}}  " + "  ".join(f"{figures[s]:11.2f}" for s in (*STAGES, "total")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps({"records": args.records, "repeats": args.repeats, "results": results,
                                       "machine": describe_machine()}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
