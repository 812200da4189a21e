"""A closing step that never finishes (a coordinator gone during shutdown) does not hold the exit."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.stream import flow
from gateway.stream.flow import bounded


async def test_a_stuck_close_step_is_given_up_after_its_timeout(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(flow, "CLOSE_STEP_TIMEOUT_S", 0.1)
    stuck = asyncio.get_running_loop().create_future()  # never resolved
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gateway.stream.flow"):
        await bounded(stuck, "stop_consumer", "p")
    assert time.monotonic() - began < 2
    assert stuck.cancelled()
    assert [(r.getMessage(), r.step) for r in caplog.records] == [("close_step_timeout", "stop_consumer")]


async def test_a_close_step_that_finishes_is_awaited() -> None:
    done: list[str] = []

    async def step() -> None:
        await asyncio.sleep(0)
        done.append("closed")

    await bounded(step(), "commit", "p")
    assert done == ["closed"]
