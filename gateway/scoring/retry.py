"""How long to wait before the next attempt: exponential backoff with full jitter, ``Retry-After`` first.

Full jitter (a uniform draw in ``[0, min(cap, base * 2**n))``) spreads the retries of many
concurrent requests so that a backend recovering from overload is not hit by synchronised waves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * (2 ** (attempt - 1)))
        jittered = rng.uniform(0.0, ceiling)
        if retry_after is not None:
            return max(jittered, min(retry_after, self.max_retry_after_s))
        return jittered

    def retry_after(self, retry_after: float | None) -> float:
        """A vendor's ``Retry-After`` as honoured: capped at ``max_retry_after_s``, 0 when absent."""
        return 0.0 if retry_after is None else min(retry_after, self.max_retry_after_s)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
