"""A CPU profile of the gateway at full speed, drawn as a flame graph (py-spy, SVG).

py-spy samples the gateway process from outside (no instrumentation in it) while it scores a
backlog of Qlik JSON records without explanations against an emulator that adds no time: the same
load as scenario 3, so the graph shows where that scenario's CPU per record goes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from benchmarks.scenarios import WATCH_POLL_S, Bench, qlik_backend, run_gateway
from benchmarks.workload import RunTopics
from testkit.processes import GatewayProcess

SAMPLES_PER_S = 250
MIN_RECORDING_S = 2.0  # py-spy needs a moment to attach; a tiny backlog is done before


def py_spy() -> Path:
    """The py-spy of this environment (``.[bench]`` installs it beside the interpreter)."""
    found = Path(sys.executable).parent / "py-spy"
    if not found.exists():
        raise FileNotFoundError(f"py-spy not found at {found}: pip install -e '.[bench]'")
    return found


async def record_flame_graph(bench: Bench, out: Path, backlog: int) -> Path:
    binary = py_spy()
    errors: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)

    async def feed(bootstrap: str, topics: RunTopics, gateway: GatewayProcess) -> int:
        await until_published(gateway, 1)
        started = time.monotonic()
        spy = await asyncio.create_subprocess_exec(
            str(binary), "record", "--pid", str(gateway.pid), "--output", str(out), "--format", "flamegraph",
            "--rate", str(SAMPLES_PER_S), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await until_published(gateway, backlog)
            await asyncio.sleep(max(0.0, MIN_RECORDING_S - (time.monotonic() - started)))
        finally:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes the SVG when interrupted
            _, err = await asyncio.wait_for(spy.communicate(), 60)
        errors.append(f"exit {spy.returncode}: {err.decode()[-500:]}")
        return spy.returncode or 0

    await bench.emulator.areset(latency_ms=0, per_row_ms=0)
    await run_gateway(bench, "flame-graph", qlik_backend(bench.emulator.qlik_url(), include_shap=False),
                      backlog=backlog, expected=backlog, feed=feed)
    if not out.is_file():  # noqa: ASYNC240 - one stat after the run
        raise RuntimeError(f"py-spy wrote no flame graph ({'; '.join(errors)})")
    return out


async def until_published(gateway: GatewayProcess, count: int) -> None:
    """Until the gateway has published ``count`` records (or exited)."""
    while True:
        if not gateway.running() or (await gateway.published() or 0) >= count:
            return
        await asyncio.sleep(WATCH_POLL_S)  # each /metrics render would show in the profile
