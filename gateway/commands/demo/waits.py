"""Bounded waits and owned tasks: every wait of the demo has a deadline and every task an owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import TypeVar

from gateway.commands.demo.options import DemoError

T = TypeVar("T")


async def _bounded(awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
    """``awaitable`` within its deadline; a failure or timeout becomes a DemoError naming ``what``."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise DemoError(f"{what}: no answer within {timeout_s:.0f}s") from None
    except DemoError:
        raise
    except Exception as exc:
        raise DemoError(f"{what}: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups for the first real cause."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def owned_task(coro: Coroutine[object, object, T]) -> AsyncIterator[asyncio.Task[T]]:
    """A task that never outlives the block: cancelled and awaited on the way out."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
