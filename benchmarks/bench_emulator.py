"""Emulator throughput: churn predictions, 500-row requests, one emulator process.

The emulator runs in its own process (``python -m gateway.emulator``, the same code as
``scoring-gateway emulate``, with zero modelled latency); one aiohttp client with 16 requests in
flight sends pre-encoded bodies for a bounded time per body format (Qlik JSON, DataRobot CSV) and
reads every response in full. The emulator must not be the bottleneck of the gateway's
benchmarks: target ≥ 100 000 rows/s for plain predictions. ``--shap`` also measures the same
bodies with SHAP explanations (Qlik ``includeShap``, DataRobot 3 SHAP explanations per row), for
which no target is set.

    python -m benchmarks.bench_emulator [--quick] [--shap] [--seconds S] [--concurrency N] [--rows N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.machine import describe
from benchmarks.workload import churn_row

RESULTS = Path(__file__).parent / "results" / "emulator.json"
TARGET_ROWS_PER_S = 100_000
FEATURES = ("PlanType", "NumberOfPenalties", "HasRenewed", "BaseFee", "ServiceTickets",
            "AdditionalFeatureSpend", "ServiceRating", "Promotion")
BODY_VARIANTS = 8  # distinct bodies, cycled, so no response is a repeat of the previous one
WARMUP_S = 0.5
MAX_SECONDS_PER_FORMAT = 7.0  # two formats stay within 15 s of load (four with --shap: 30 s)
AUTHORIZATION = "Bearer benchmark"  # the emulator accepts any bearer token, but requires one


def qlik_body(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"schema": [{"name": f} for f in FEATURES], "rows": [[r[f] for f in FEATURES] for r in rows]})


def datarobot_csv_body(rows: list[dict[str, Any]]) -> bytes:
    def cell(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    lines = [",".join(FEATURES)] + [",".join(cell(r[f]) for f in FEATURES) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def bodies(rows_per_request: int) -> dict[str, list[bytes]]:
    rng = random.Random(11)
    batches = [[churn_row(rng) for _ in range(rows_per_request)] for _ in range(BODY_VARIANTS)]
    return {"qlik_json": [qlik_body(b) for b in batches],
            "datarobot_csv": [datarobot_csv_body(b) for b in batches]}


QLIK_PATH = "/api/v1/ml/deployments/churn/realtime-predictions/actions/run"
DATAROBOT_PATH = "/predApi/v1.0/deployments/churn/predictions"
QLIK_HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": AUTHORIZATION}
DATAROBOT_HEADERS = {"Content-Type": "text/csv; charset=UTF-8", "Accept": "application/json",
                     "Authorization": AUTHORIZATION}
# kind -> (path and query, headers, body format)
FORMATS = {
    "qlik_json": (QLIK_PATH, QLIK_HEADERS, "qlik_json"),
    "datarobot_csv": (DATAROBOT_PATH, DATAROBOT_HEADERS, "datarobot_csv"),
}
SHAP_FORMATS = {
    "qlik_json_shap": (QLIK_PATH + "?includeShap=true", QLIK_HEADERS, "qlik_json"),
    "datarobot_csv_shap": (DATAROBOT_PATH + "?maxExplanations=3&explanationAlgorithm=shap", DATAROBOT_HEADERS,
                           "datarobot_csv"),
}


async def start_emulator() -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.emulator", "--host", "127.0.0.1", "--port", "0",
        "--latency-ms", "0", "--per-row-ms", "0",
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line:
        raise RuntimeError(f"the emulator exited with {await proc.wait()} before listening")
    return proc, line.decode().split()[-1]


async def stop_emulator(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


def check_response(kind: str, body: bytes, rows: int) -> None:
    """One response read fully, so the figures are for correct answers."""
    doc = orjson.loads(body)
    got = len(doc["data"]["attributes"]["rows"]) if kind.startswith("qlik") else len(doc["data"])
    if got != rows:
        raise RuntimeError(f"{kind}: {got} rows answered for {rows} sent")


async def load(session: aiohttp.ClientSession, url: str, kind: str, payloads: list[bytes], rows: int,
               concurrency: int, seconds: float) -> dict[str, Any]:
    path, headers, _ = {**FORMATS, **SHAP_FORMATS}[kind]
    target = url + path
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    measure_from = start + WARMUP_S
    deadline = measure_from + seconds
    counted = 0

    async def worker(offset: int) -> None:
        nonlocal counted
        i = offset
        while (now := clock()) < deadline:
            async with session.post(target, data=payloads[i % len(payloads)], headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{kind}: HTTP {response.status}: {body[:200]!r}")
            done = clock()
            if now >= measure_from:
                counted += 1
                latencies.append(done - now)
            i += 1

    async with session.post(target, data=payloads[0], headers=headers) as response:
        check_response(kind, await response.read(), rows)
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = clock() - measure_from
    latencies.sort()
    return {
        "requests": counted,
        "rows": counted * rows,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(counted / elapsed, 1),
        "rows_per_s": round(counted * rows / elapsed),
        "latency_ms": {"p50": round(1000 * statistics.median(latencies), 2),
                       "p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2)},
        "meets_target": counted * rows / elapsed >= TARGET_ROWS_PER_S if kind in FORMATS else None,
    }


async def run(seconds: float, concurrency: int, rows: int, shap: bool = False) -> dict[str, Any]:
    payloads = bodies(rows)
    proc, url = await start_emulator()
    results: dict[str, Any] = {}
    kinds = {**FORMATS, **SHAP_FORMATS} if shap else FORMATS
    try:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for kind, (_, _, body_format) in kinds.items():
                results[kind] = await load(session, url, kind, payloads[body_format], rows, concurrency, seconds)
    finally:
        exit_code = await stop_emulator(proc)
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "what": "churn predictions (plain; with --shap also SHAP); emulator in its own process, one aiohttp client",
        "rows_per_request": rows,
        "concurrency": concurrency,
        "seconds_per_format": seconds,
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "results": results,
        "emulator_exit_code": exit_code,
        "machine": describe(),
    }


def report(results: dict[str, Any]) -> str:
    lines = [f"emulator, {results['rows_per_request']}-row churn requests, concurrency {results['concurrency']}:"]
    for kind, r in results["results"].items():
        verdict = ("no target" if r["meets_target"] is None else
                   f"{'meets' if r['meets_target'] else 'BELOW'} the {results['target_rows_per_s']:,} rows/s target")
        lines.append(f"  {kind:<18} {r['rows_per_s']:>9,} rows/s  {r['requests_per_s']:>7.1f} req/s  "
                     f"p50 {r['latency_ms']['p50']:.1f} ms  p99 {r['latency_ms']['p99']:.1f} ms  ({verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per body format")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per body format (max 7)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rows", type=int, default=500, help="rows per request")
    parser.add_argument("--shap", action="store_true", help="also measure requests with SHAP explanations")
    args = parser.parse_args(argv)
    seconds = min(2.0 if args.quick else args.seconds, MAX_SECONDS_PER_FORMAT)
    try:
        import uvloop
        results = uvloop.run(run(seconds, args.concurrency, args.rows, args.shap))
    except ImportError:
        results = asyncio.run(run(seconds, args.concurrency, args.rows, args.shap))
    print(report(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")
    return 0 if all(r["meets_target"] is not False for r in results["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
