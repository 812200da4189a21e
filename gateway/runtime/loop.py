"""The one way every command runs its event loop: uvloop where it is installed, asyncio's otherwise.

uvloop roughly halves the loop's own cost per callback, which the gateway pays per batch and per
Kafka fetch; it is a dependency on every supported platform, so the fallback is for development on
platforms it does not build for (Windows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default loop) where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[object, object, T]) -> T:
    """Run ``main`` to completion on a new loop, then cancel what it left running and close the loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
