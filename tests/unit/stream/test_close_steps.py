"""A closing step that never finishes (a coordinator gone during shutdown) does not hold the exit."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest

from gateway.stream import pipeline
from gateway.stream.pipeline import Pipeline


async def test_a_stuck_close_step_is_given_up_after_its_timeout(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(pipeline, "CLOSE_STEP_TIMEOUT_S", 0.1)
    stuck = asyncio.get_running_loop().create_future()  # never resolved
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gateway.stream.pipeline"):
        await Pipeline._bounded(SimpleNamespace(name="p"), stuck, "stop_consumer")  # type: ignore[arg-type]
    assert time.monotonic() - began < 2
    assert stuck.cancelled()
    assert [(r.getMessage(), r.step) for r in caplog.records] == [("close_step_timeout", "stop_consumer")]


async def test_a_close_step_that_finishes_is_awaited() -> None:
    done: list[str] = []

    async def step() -> None:
        await asyncio.sleep(0)
        done.append("closed")

    await Pipeline._bounded(SimpleNamespace(name="p"), step(), "commit")  # type: ignore[arg-type]
    assert done == ["closed"]
