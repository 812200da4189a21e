"""Realistic churn feature records: what the demo produces and the benchmarks may feed.

The features are the eight of the Qlik churn tutorial (``PlanType``, ``NumberOfPenalties``,
``HasRenewed``, ``BaseFee``, ``ServiceTickets``, ``AdditionalFeatureSpend``, ``ServiceRating``,
``Promotion``). Their distributions are plausible rather than fitted: the plan mix is 40 % Standard,
30 % Basic, 25 % Premium, 5 % Enterprise; the base fee follows the plan (about $30, $50, $80 and
$120, with spread); penalties and tickets are Poisson counts (means 1.5 and 3, more tickets for
customers with penalties); ratings centre on 3.9 of 5; 60 % renewed and 30 % hold a promotion. Keys
are customer ids drawn from a population smaller than the record count, so one customer's records
recur and per-key ordering has something to do.

A small share of records is deliberately malformed, so a run exercises the dead-letter path at
both the gateway's stage and the model's: invalid JSON and a JSON array (refused at stage
``decode``) and a ``BaseFee`` written as text the way the tutorial's table shows it (``"$80.00"``),
which the model cannot read (a Qlik ``not_predicted`` row, a DataRobot 422 → stage ``score``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import orjson

from gateway.json_types import JsonObject, JsonValue

CHURN_FEATURES: tuple[str, ...] = (
    "PlanType", "NumberOfPenalties", "HasRenewed", "BaseFee", "ServiceTickets",
    "AdditionalFeatureSpend", "ServiceRating", "Promotion")

# plan -> (share of customers, mean base fee, spread of the base fee)
PLANS: dict[str, tuple[float, float, float]] = {
    "Standard": (0.40, 50.0, 8.0),
    "Basic": (0.30, 30.0, 5.0),
    "Premium": (0.25, 80.0, 10.0),
    "Enterprise": (0.05, 120.0, 15.0),
}

# The malformed kinds, in the order they are cycled through.
INVALID_JSON = "invalid_json"
JSON_ARRAY = "json_array"
TEXT_BASE_FEE = "text_base_fee"
MALFORMED_KINDS: tuple[str, ...] = (INVALID_JSON, JSON_ARRAY, TEXT_BASE_FEE)

DEFAULT_MALFORMED_SHARE = 0.005

_PLAN_NAMES = tuple(PLANS)
_PLAN_WEIGHTS = tuple(share for share, _, _ in PLANS.values())


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """One record to produce: key and value bytes; ``malformed`` names the defect, if any."""

    key: bytes
    value: bytes
    malformed: str | None = None


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: exact and fast for the small means used here."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def churn_features(rng: random.Random) -> JsonObject:
    """One customer's eight features, in the tutorial's column order."""
    plan = rng.choices(_PLAN_NAMES, _PLAN_WEIGHTS)[0]
    _, fee_mean, fee_spread = PLANS[plan]
    penalties = min(_poisson(rng, 1.5), 12)
    spend = 0.0 if rng.random() < 0.2 else min(rng.expovariate(1 / 25.0), 250.0)
    return {
        "PlanType": plan,
        "NumberOfPenalties": penalties,
        "HasRenewed": rng.random() < 0.6,
        "BaseFee": round(max(9.99, rng.gauss(fee_mean, fee_spread)), 2),
        "ServiceTickets": min(_poisson(rng, 2.5 + 0.35 * penalties), 30),
        "AdditionalFeatureSpend": round(spend, 2),
        "ServiceRating": round(min(5.0, max(1.0, rng.gauss(3.9, 0.6))), 1),
        "Promotion": rng.random() < 0.3,
    }


def malformed_value(kind: str, features: Mapping[str, JsonValue]) -> bytes:
    """A defective record value of ``kind`` built from an otherwise valid customer."""
    if kind == INVALID_JSON:
        text = orjson.dumps(features)
        return text[: len(text) // 2]  # cut mid-document, as a truncated write would leave it
    if kind == JSON_ARRAY:
        return orjson.dumps(list(features.values()))
    if kind == TEXT_BASE_FEE:
        return orjson.dumps({**features, "BaseFee": f"${features['BaseFee']:.2f}"})
    raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")


def malformed_count(n: int, share: float = DEFAULT_MALFORMED_SHARE) -> int:
    """How many of ``n`` records are malformed: ``share`` of them, but at least one of each kind
    (when ``share`` > 0 and there is room), so even a small run shows every dead-letter path."""
    if share <= 0 or n <= 0:
        return 0
    return min(n, max(len(MALFORMED_KINDS), round(n * share)))


def churn_records(n: int, *, seed: int = 7, malformed_share: float = DEFAULT_MALFORMED_SHARE,
                  customers: int | None = None) -> Iterator[SampleRecord]:
    """``n`` records, reproducible for a given seed; ``customers`` sizes the key population
    (default: a quarter of ``n``, at least 100)."""
    rng = random.Random(seed)
    population = customers or max(100, n // 4)
    bad = malformed_count(n, malformed_share)
    defective = dict(zip(sorted(rng.sample(range(n), bad)),
                         (MALFORMED_KINDS[i % len(MALFORMED_KINDS)] for i in range(bad)), strict=False))
    dumps = orjson.dumps
    for i in range(n):
        key = b"CUST-%07d" % rng.randrange(population)
        features = churn_features(rng)
        kind = defective.get(i)
        if kind is None:
            yield SampleRecord(key, dumps(features))
        else:
            yield SampleRecord(key, malformed_value(kind, features), kind)
