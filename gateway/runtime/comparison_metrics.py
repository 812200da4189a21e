"""Prometheus instruments of champion/challenger comparisons, by pipeline and deployment pair.

Registered once per :class:`~gateway.runtime.metrics.Metrics` (on its registry) the first time a
pipeline with a challenger asks for them; label children are bound once per pipeline, so the
comparison path pays one increment per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.runtime.metrics import PREFIX, SECONDS_BUCKETS, status_label

# Why a challenger call was not made or brought nothing to compare.
SKIP_REASONS = ("busy", "circuit_open", "unavailable", "shutdown", "publish_failed")
# Challenger minus champion: probabilities lie in [-1, 1]; regression differences in the target's
# units fall into the outer buckets.
DIFFERENCE_BUCKETS: tuple[float, ...] = (
    -1.0, -0.5, -0.25, -0.1, -0.05, -0.02, -0.01, 0.0, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_PAIR = ["pipeline", "champion", "challenger"]


class ComparisonFamilies:
    """The metric families, one set per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = PREFIX
        self.compared = Counter(p + "comparisons_total",
                                "Records both champion and challenger predicted (a refusal on either side is not "
                                "counted).",
                                _PAIR, registry=registry)
        self.agreed = Counter(p + "comparisons_agreed_total",
                              "Compared records on which champion and challenger agree.", _PAIR, registry=registry)
        self.skipped = Counter(p + "challenger_skipped_total",
                               "Sampled records the challenger did not score, by reason.",
                               [*_PAIR, "reason"], registry=registry)
        self.difference = Histogram(p + "comparison_difference",
                                    "Challenger minus champion: the positive class's probability, or the value.",
                                    _PAIR, buckets=DIFFERENCE_BUCKETS, registry=registry)
        self.latency = Histogram(p + "challenger_request_duration_seconds",
                                 "Duration of challenger requests, by HTTP status or transport failure.",
                                 [*_PAIR, "status"], buckets=SECONDS_BUCKETS, registry=registry)


class ComparisonMetrics:
    """One pipeline's comparison instruments with their children pre-bound."""

    def __init__(self, families: ComparisonFamilies, pipeline: str, champion: str, challenger: str) -> None:
        pair = (pipeline, champion, challenger)
        self._families = families
        self._pair = pair
        self._compared = families.compared.labels(*pair)
        self._agreed = families.agreed.labels(*pair)
        self._skipped = {r: families.skipped.labels(*pair, r) for r in SKIP_REASONS}
        self._difference = families.difference.labels(*pair)
        self._latency: dict[str, Histogram] = {}

    def compared(self, n: int, agreed: int, differences: Sequence[float]) -> None:
        self._compared.inc(n)
        self._agreed.inc(agreed)
        observe = self._difference.observe
        for value in differences:
            observe(value)

    def skipped(self, reason: str, n: int) -> None:
        self._skipped[reason].inc(n)  # a reason outside SKIP_REASONS is a programming error

    def request(self, status: str, seconds: float) -> None:
        label = status_label(status)
        child = self._latency.get(label)
        if child is None:
            child = self._latency[label] = self._families.latency.labels(*self._pair, label)
        child.observe(seconds)
