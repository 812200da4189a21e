"""Simulated backends for the adaptive concurrency limit: a discrete-event clock, no I/O, no sleeps.

The client side is modelled as the gateway's is: a backlog that always has a batch ready, at most
``limit`` requests in flight, each answer fed to the limit (``in_flight`` as counted when it arrives,
its own request included) before its slot is released, and the new limit applied at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.scoring.concurrency import AdaptiveLimit

REFUSAL_S = 0.001  # a 429 comes back at once
ROWS = 100


@dataclass
class Backend:
    """``capacity(t)`` requests served at once, each taking ``latency_s`` times a log-normal noise of
    ``noise`` (0: none). Beyond the capacity: a 429 (``queues=False``) or a FIFO queue (``queues=True``)."""

    capacity: Callable[[float], int]
    latency_s: float = 0.05
    queues: bool = False
    noise: float = 0.0
    busy: int = 0
    waiting: deque[int] = field(default_factory=deque)

    def service_s(self, rng: random.Random) -> float:
        if not self.noise:
            return self.latency_s
        return self.latency_s * math.exp(rng.gauss(-self.noise ** 2 / 2, self.noise))


@dataclass
class Run:
    """What happened between ``start_s`` and ``end_s``: answers, refusals, latencies, limits."""

    start_s: float
    end_s: float
    answered: int = 0
    refused: int = 0
    latency_s: list[float] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.answered + self.refused

    @property
    def refusal_share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0

    def per_s(self) -> float:
        return self.answered / (self.end_s - self.start_s)

    def mean_latency_s(self) -> float:
        return sum(self.latency_s) / len(self.latency_s) if self.latency_s else 0.0


class Simulation:
    """One client (the gateway's prediction lane) against one backend, on a simulated clock."""

    def __init__(self, limit: AdaptiveLimit, backend: Backend, seed: int = 1) -> None:
        self.limit = limit
        self.backend = backend
        self.rng = random.Random(seed)
        self.now = 0.0
        self.in_flight = 0
        self._events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, request)
        self._sent: dict[int, tuple[float, int]] = {}  # request -> (sent at, the limit's generation then)
        self._ids = itertools.count()

    def run(self, seconds: float) -> Run:
        """Advance the clock ``seconds``; returns what happened meanwhile."""
        run = Run(self.now, self.now + seconds)
        self._fill()
        while self._events and self._events[0][0] <= run.end_s:
            at, _, kind, request = heapq.heappop(self._events)
            self.now = at
            if kind == "done":
                self._finish(request)
                continue
            sent_at, generation = self._sent.pop(request)
            if kind == "ok":
                self.limit.succeeded(at - sent_at, self.in_flight, ROWS)
                run.answered += 1
                run.latency_s.append(at - sent_at)
            else:
                self.limit.refused(generation)
                run.refused += 1
            self.in_flight -= 1
            run.limits.append(self.limit.limit)
            self._fill()
        self.now = run.end_s
        return run

    def _fill(self) -> None:
        while self.in_flight < self.limit.limit:
            self.in_flight += 1
            self._send(next(self._ids))

    def _at(self, time: float, kind: str, request: int) -> None:
        heapq.heappush(self._events, (time, next(self._ids), kind, request))

    def _send(self, request: int) -> None:
        backend = self.backend
        self._sent[request] = (self.now, self.limit.generation)
        if backend.busy < backend.capacity(self.now):
            self._serve(request)
        elif backend.queues:
            backend.waiting.append(request)
        else:
            self._at(self.now + REFUSAL_S, "refused", request)

    def _serve(self, request: int) -> None:
        self.backend.busy += 1
        done = self.now + self.backend.service_s(self.rng)
        self._at(done, "done", request)

    def _finish(self, request: int) -> None:
        """The backend is done with ``request``: its worker takes the next queued one, the answer goes out."""
        backend = self.backend
        backend.busy -= 1
        while backend.waiting and backend.busy < backend.capacity(self.now):
            self._serve(backend.waiting.popleft())
        self._at(self.now, "ok", request)


def fixed(n: int) -> Callable[[float], int]:
    return lambda _t: n
