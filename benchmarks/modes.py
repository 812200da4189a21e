"""How big one run is: ``full`` for published figures, ``quick`` for a few minutes, ``smoke`` for tests.

Every load is bounded twice: by a record count and by a time budget (``run_budget_s`` for one
gateway repetition from start to stop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Sizes:
    mode: str
    repetitions: int             # per figure; each figure is the median
    session_timeout_ms: int      # a group join takes about half of it on tansu
    backlog: int                 # records per gateway repetition (scenarios 3 and 4)
    ceiling_backlog: int
    baseline_backlog: int
    baseline_budget_s: float     # the hand-written consumer stops after this long
    rate_limit_per_minute: int   # scenario 5: emulator and gateway both
    rate_max_rows: int
    rate_window_s: float
    rate_repetitions: int
    latency_duration_s: float    # scenario 6: paced input for this long
    latency_warmup: int
    latency_rate_cap: float | None  # smoke only: keeps the paced load tiny
    memory_backlog: int          # scenario 7
    memory_window_s: float
    memory_repetitions: int
    run_budget_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Sizes(mode="full", repetitions=3, session_timeout_ms=6000, backlog=200_000,
             ceiling_backlog=300_000, baseline_backlog=40_000, baseline_budget_s=20.0,
             rate_limit_per_minute=100, rate_max_rows=500, rate_window_s=150.0, rate_repetitions=3,
             latency_duration_s=30.0, latency_warmup=2000, latency_rate_cap=None, memory_backlog=1_000_000,
             memory_window_s=30.0, memory_repetitions=3, run_budget_s=300.0)

# A shorter rate-limit window needs a higher limit to see enough requests: 600/min over 20 s
# (200 requests) instead of 100/min over minutes.
QUICK = Sizes(mode="quick", repetitions=2, session_timeout_ms=6000, backlog=40_000,
              ceiling_backlog=60_000, baseline_backlog=10_000, baseline_budget_s=6.0,
              rate_limit_per_minute=600, rate_max_rows=500, rate_window_s=20.0, rate_repetitions=1,
              latency_duration_s=10.0, latency_warmup=1000, latency_rate_cap=None, memory_backlog=200_000,
              memory_window_s=12.0, memory_repetitions=1, run_budget_s=120.0)

# Tiny: proves every scenario runs and reports; its figures mean nothing. A 2 s session timeout
# makes each group join ~1 s instead of ~3 s.
SMOKE = Sizes(mode="smoke", repetitions=1, session_timeout_ms=2000, backlog=2_000,
              ceiling_backlog=3_000, baseline_backlog=3_000, baseline_budget_s=1.0,
              rate_limit_per_minute=1200, rate_max_rows=50, rate_window_s=3.0, rate_repetitions=1,
              latency_duration_s=1.5, latency_warmup=200, latency_rate_cap=2000, memory_backlog=30_000,
              memory_window_s=3.0, memory_repetitions=1, run_budget_s=60.0)

MODES = {s.mode: s for s in (FULL, QUICK, SMOKE)}
