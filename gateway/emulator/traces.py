"""The trace context the emulator received, for ``GET /_emulator/traces``: a test, or a user checking
their tracing setup, sees whether scoring requests carry a ``traceparent`` and which.

The headers are kept as received (cut at :data:`MAX_VALUE` characters), the last :data:`KEEP`
requests' worth; ``DELETE /_emulator/traces`` forgets them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TypedDict

KEEP = 10_000
MAX_VALUE = 512


class TracesSnapshot(TypedDict):
    """The ``GET /_emulator/traces`` body."""

    with_traceparent: int
    without_traceparent: int
    recent: list[dict[str, str]]  # route, traceparent and tracestate when given, oldest first


class ReceivedTraces:
    def __init__(self, keep: int = KEEP) -> None:
        self._recent: deque[dict[str, str]] = deque(maxlen=keep)
        self._with = 0
        self._without = 0

    def record(self, route: str, headers: Mapping[str, str]) -> None:
        """One scoring request on ``route`` (qlik or datarobot), with the headers it came with."""
        traceparent = headers.get("traceparent")
        if traceparent is None:
            self._without += 1
            return
        self._with += 1
        entry = {"route": route, "traceparent": traceparent[:MAX_VALUE]}
        tracestate = headers.get("tracestate")
        if tracestate is not None:
            entry["tracestate"] = tracestate[:MAX_VALUE]
        self._recent.append(entry)

    def clear(self) -> None:
        self._recent.clear()
        self._with = self._without = 0

    def snapshot(self) -> TracesSnapshot:
        return {"with_traceparent": self._with, "without_traceparent": self._without,
                "recent": list(self._recent)}
