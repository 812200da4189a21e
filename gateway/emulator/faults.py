"""What makes the emulator slow or unreliable on purpose: latency, injected errors, hangs, dropped
connections (all drawn from one seeded generator so a run can be replayed), a rate limit, a cap on
requests in progress, and a feature value on which the model crashes.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from gateway.emulator.features import cell_text
from gateway.emulator.settings import EmulatorOptions
from gateway.json_types import JsonValue

RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Fault:
    kind: Literal["drop", "hang", "error"]
    status: int = 0


DROP = Fault("drop")
HANG = Fault("hang")


class FaultDice:
    """Decides each request's fate. Draws happen only for rates that are on, so a seed replays."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def roll(self, options: EmulatorOptions) -> Fault | None:
        rng = self._rng
        if options.drop_rate and rng.random() < options.drop_rate:
            return DROP
        if options.hang_rate and rng.random() < options.hang_rate:
            return HANG
        if options.error_rate:
            draw = rng.random()
            cumulative = 0.0
            for status, probability in options.error_rate.items():
                cumulative += probability
                if draw < cumulative:
                    return Fault("error", status)
        return None

    def latency_s(self, options: EmulatorOptions, rows: int, explanations: str | None) -> float:
        """``(latency_ms + per_row_ms × rows) × multiplier`` plus jitter, in seconds."""
        ms = options.latency_ms + options.per_row_ms * rows
        if explanations == "shap":
            ms *= options.shap_multiplier
        elif explanations == "xemp":
            ms *= options.xemp_multiplier
        if options.jitter_ms:
            ms += self._rng.uniform(0.0, options.jitter_ms)
        return ms / 1000.0


class SlidingWindow:
    """At most ``limit`` admitted requests per route set in any 60 s, as Qlik's tiers count them."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._admitted: dict[str, deque[float]] = {}

    def admit(self, route: str, limit: int, now: float) -> float | None:
        """None when admitted; otherwise the seconds until a slot frees up."""
        admitted = self._admitted.setdefault(route, deque())
        horizon = now - self._window_s
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        if len(admitted) >= limit:
            return admitted[len(admitted) - limit] + self._window_s - now
        admitted.append(now)
        return None


class InProgress:
    """Scoring requests in progress per route set, so a saturated service can be emulated: a
    request is admitted while fewer than the limit are in progress, and must then be released."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def admit(self, route: str, limit: int | None) -> bool:
        if limit is not None and self._counts[route] >= limit:
            return False
        self._counts[route] += 1
        return True

    def release(self, route: str) -> None:
        self._counts[route] -= 1

    def count(self, route: str) -> int:
        return self._counts[route]


class ModelCrash(Exception):
    """The model failed on a cell holding the crash value; the vendor answers its 500."""


def check_crash(columns: Iterable[Sequence[JsonValue]], crash_value: str | None) -> None:
    """Raise :class:`ModelCrash` when a cell of ``columns`` (the features the model reads) holds
    ``crash_value`` compared as text: ``666``, ``"666"`` and a CSV ``666`` all match ``"666"``."""
    if crash_value is None:
        return
    for cells in columns:
        if crash_value in cells or any(type(c) is not str and cell_text(c) == crash_value for c in cells):
            raise ModelCrash(crash_value)


def drop(request: web.Request) -> web.Response:
    """Close the connection without a response; the response returned is never written."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


async def hold(request: web.Request, closing: asyncio.Event) -> web.Response:
    """Never answer: wait until the client gives up (aiohttp then cancels this handler) or the
    emulator stops, which drops the connection so nothing outlives the server."""
    await closing.wait()
    return drop(request)
