"""Scenario 8's arithmetic: request-duration histograms scraped from the gateway, summed and read."""

from __future__ import annotations

from benchmarks.scenarios import DURATION_METRIC, GatewayRun
from testkit.measure import metric_values

# ---- scenario 8: explanation cost (from scenario 3's histograms) ------------------------------

def request_duration_buckets(runs: list[GatewayRun]) -> dict[str, list[tuple[float, float]]]:
    """Cumulative ``request_duration_seconds`` buckets summed over runs, by ``backend/explanations``."""
    summed: dict[str, dict[float, float]] = {}
    for run in runs:
        for sample in metric_values(run.metrics, DURATION_METRIC):
            key = f"{sample.labels.get('backend')}/{sample.labels.get('explanations')}"
            le = float(sample.labels["le"])
            per_le = summed.setdefault(key, {})
            per_le[le] = per_le.get(le, 0.0) + sample.value
    return {key: sorted(per_le.items()) for key, per_le in summed.items()}


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style: linear interpolation inside the bucket holding the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound
