"""Counts of what the emulator served, for ``GET /_emulator/stats``: requests, rows and faults, by
vendor route set and status, so a test can check what the gateway really sent.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TypedDict

ROUTES = ("qlik", "datarobot")
FAULT_KINDS = ("error", "hang", "drop", "rate_limited", "concurrency_limited", "crash")


class RouteStats(TypedDict):
    requests: int
    rows: int
    statuses: dict[str, int]  # HTTP status -> requests answered with it
    explanations: dict[str, int]  # shap | xemp | none -> 2xx requests


class StatsSnapshot(TypedDict):
    """The ``GET /_emulator/stats`` body."""

    uptime_s: float
    requests: int
    rows: int
    faults: dict[str, int]
    challenger: dict[str, int]  # rows, disagreements
    routes: dict[str, RouteStats]


class ServedStats:
    def __init__(self) -> None:
        self._started = time.monotonic()
        self._requests: Counter[str] = Counter()
        self._rows: Counter[str] = Counter()
        self._statuses: dict[str, Counter[str]] = {route: Counter() for route in ROUTES}
        self._explanations: dict[str, Counter[str]] = {route: Counter() for route in ROUTES}
        self._faults: Counter[str] = Counter()
        self._compared = 0  # rows a challenger deployment scored, and how many its champion predicts otherwise
        self._disagreements = 0

    def answered(self, route: str, status: int, rows: int, explanations: str | None) -> None:
        """One request answered with ``status``; ``rows`` counts only rows scored in a 2xx answer."""
        self._requests[route] += 1
        self._statuses[route][str(status)] += 1
        if 200 <= status < 300:
            self._rows[route] += rows
            self._explanations[route][explanations or "none"] += 1

    def unanswered(self, route: str, kind: str) -> None:
        """A request that got no HTTP answer (hung or dropped)."""
        self._requests[route] += 1
        self._faults[kind] += 1

    def compared(self, rows: int, disagreements: int) -> None:
        """A challenger deployment answered ``rows`` rows, ``disagreements`` of them unlike its champion."""
        self._compared += rows
        self._disagreements += disagreements

    def fault(self, kind: str) -> None:
        self._faults[kind] += 1

    def snapshot(self) -> StatsSnapshot:
        return {
            "uptime_s": round(time.monotonic() - self._started, 3),
            "requests": sum(self._requests.values()),
            "rows": sum(self._rows.values()),
            "faults": {kind: self._faults[kind] for kind in FAULT_KINDS},
            "challenger": {"rows": self._compared, "disagreements": self._disagreements},
            "routes": {route: {"requests": self._requests[route],
                               "rows": self._rows[route],
                               "statuses": dict(sorted(self._statuses[route].items())),
                               "explanations": dict(sorted(self._explanations[route].items()))}
                       for route in ROUTES},
        }
