"""Fixtures: an instant emulator listening on a free 127.0.0.1 port (in-process, real HTTP), a
client session that sends a bearer token (both vendors require one) and one that sends none, and
a way to run ``scoring-gateway emulate`` itself as a subprocess."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.emulator import Emulator, EmulatorOptions, start_emulator

ROOT = Path(__file__).resolve().parents[2]
QLIK_RUN = "/api/v1/ml/deployments/{}/realtime-predictions/actions/run"
DATAROBOT_PREDICT = "/predApi/v1.0/deployments/{}/predictions"
TOKEN = "test-token"
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
INSTANT = {"latency_ms": 0.0, "per_row_ms": 0.0}  # the emulator's latency model switched off


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = await start_emulator(EmulatorOptions(seed=7, **INSTANT), "127.0.0.1", 0)
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Sends ``Authorization: Bearer test-token`` unless a request gives its own."""
    async with aiohttp.ClientSession(headers=AUTHORIZATION) as session:
        yield session


@pytest.fixture
async def anonymous() -> AsyncIterator[aiohttp.ClientSession]:
    """Sends no credentials at all."""
    async with aiohttp.ClientSession() as session:
        yield session


def qlik_url(emu: Emulator, deployment: str = "churn") -> str:
    return emu.url + QLIK_RUN.format(deployment)


def datarobot_url(emu: Emulator, deployment: str = "churn") -> str:
    return emu.url + DATAROBOT_PREDICT.format(deployment)


async def post(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with http.post(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


class EmulatorCommand:
    """``python -m gateway emulate`` (or another entry point) as a subprocess on a free port."""

    def __init__(self, *args: str, module: tuple[str, ...] = ("gateway", "emulate")) -> None:
        self.args = args
        self.module = module
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.first_line = ""

    def start(self, timeout_s: float = 30.0) -> EmulatorCommand:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", *self.module, "--port", "0", *self.args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            self.stop()
            raise AssertionError("the emulator printed nothing in time")
        self.first_line = self.proc.stdout.readline().decode().strip()
        if not self.first_line:
            stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise AssertionError(f"the emulator exited with {self.proc.wait()}: {stderr[-2000:]}")
        self.url = self.first_line.split()[-1]
        return self

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the emulator did not exit after the signal") from None
        return self.proc.returncode


@pytest.fixture
def run_command() -> Iterator[Any]:
    started: list[EmulatorCommand] = []

    def run(*args: str, module: tuple[str, ...] = ("gateway", "emulate")) -> EmulatorCommand:
        command = EmulatorCommand(*args, module=module).start()
        started.append(command)
        return command

    yield run
    for command in started:
        with contextlib.suppress(AssertionError):
            command.stop()
