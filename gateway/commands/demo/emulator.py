"""Step 1: the scoring emulator in its own process, and the deployment URL it serves."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from gateway.commands.demo.options import DEPLOYMENT, EMULATOR_START_S, HOST, DemoError, DemoOptions
from gateway.commands.demo.waits import _bounded
from gateway.json_types import JsonValue


class EmulatorProcess:
    """``python -m gateway.emulator`` in its own process and session: the backend gets its own core,
    as a remote API would, and a Ctrl-C at the terminal reaches only the demo, which stops it by PID."""

    def __init__(self, options: DemoOptions, log_path: Path) -> None:
        self.options = options
        self.log_path = log_path
        self.url = ""
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        o = self.options
        return [sys.executable, "-m", "gateway.emulator", "--host", HOST, "--port", "0",
                "--latency-ms", f"{o.latency_ms:g}", "--per-row-ms", "0", "--seed", str(o.seed),
                "--explanation-algorithm", "xemp" if o.explanations == "xemp" else "shap"]

    async def start(self) -> None:
        with open(self.log_path, "ab") as log_file:  # noqa: ASYNC230 - opening a local log file does not block
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdout=asyncio.subprocess.PIPE, stderr=log_file, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True)
        self.pid = self._proc.pid
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), EMULATOR_START_S)
        except TimeoutError:
            raise DemoError(f"cannot start the emulator: not listening within {EMULATOR_START_S:.0f}s") from None
        found = re.search(rb"(https?://\S+)", line)
        if found is None:
            status = await _exit_status(self._proc, 2.0)
            raise DemoError(f"cannot start the emulator: it exited (status {status}): {_tail(self.log_path)}")
        self.url = found.group(1).decode()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        if await _exit_status(proc, 5.0) is None:
            proc.kill()
            await proc.wait()


async def _exit_status(proc: asyncio.subprocess.Process, timeout_s: float) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        return None


def _tail(path: Path, lines: int = 2) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "no log"
    return " | ".join(text.splitlines()[-lines:]) or "no output"


@asynccontextmanager
async def running_emulator(options: DemoOptions, log_path: Path) -> AsyncIterator[EmulatorProcess]:
    """The emulator, stopped on the way out whatever happened meanwhile."""
    emulator = EmulatorProcess(options, log_path)
    try:
        await emulator.start()
        yield emulator
    finally:
        await emulator.stop()


async def deployment_url(emulator_url: str, backend: str, name: str = DEPLOYMENT) -> str:
    """A deployment's full endpoint URL (churn's by default), by the vendor-format id the emulator lists."""
    async def fetch() -> JsonValue:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(f"{emulator_url}/_emulator/deployments") as response:
            response.raise_for_status()
            doc: JsonValue = await response.json()
            return doc

    listing = await _bounded(fetch(), 10, "cannot list the emulator's deployments")
    deployments = listing.get("deployments", []) if isinstance(listing, dict) else []
    found = next((d for d in deployments if isinstance(d, dict) and d.get("name") == name), None) \
        if isinstance(deployments, list) else None
    if found is None:
        raise DemoError(f"the emulator lists no {name!r} deployment")
    if backend == "qlik":
        return f"{emulator_url}/api/v1/ml/deployments/{found['qlik_id']}/realtime-predictions/actions/run"
    return f"{emulator_url}/predApi/v1.0/deployments/{found['datarobot_id']}/predictions"
