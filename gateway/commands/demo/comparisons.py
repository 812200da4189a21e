"""The demo's champion/challenger line: what the gateway compared, beside the emulator's own count."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.commands.compare.summary import wilson
from gateway.commands.demo.options import COMPARISONS_TOPIC, PIPELINE

SETTLE_S = 5.0  # comparisons follow the predictions; the last ones may still be on their way
POLL_S = 0.1


def counted(registry: CollectorRegistry) -> tuple[int, int, int]:
    """(compared, agreed, skipped) from the gateway's own counters."""
    labels = {"pipeline": PIPELINE}
    found = {"compared": 0.0, "agreed": 0.0, "skipped": 0.0}
    names = {"scoring_gateway_comparisons_total": "compared", "scoring_gateway_comparisons_agreed_total": "agreed",
             "scoring_gateway_challenger_skipped_total": "skipped"}
    for metric in registry.collect():
        for sample in metric.samples:
            key = names.get(sample.name)
            if key is not None and sample.labels.get("pipeline") == labels["pipeline"]:
                found[key] += sample.value
    return int(found["compared"]), int(found["agreed"]), int(found["skipped"])


async def agreement_line(registry: CollectorRegistry, emulator_url: str, expected: int) -> str:
    deadline = time.monotonic() + SETTLE_S
    compared, agreed, skipped = counted(registry)
    while compared + skipped < expected and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        compared, agreed, skipped = counted(registry)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
            session.get(f"{emulator_url}/_emulator/stats") as response:
        stats = (await response.json())["challenger"]
    if not compared:
        return f"challenger: nothing compared ({skipped:,} skipped)"
    low, high = wilson(agreed, compared)
    return (f"challenger: agreed with the champion on {agreed:,} of {compared:,} compared records "
            f"({agreed / compared:.1%}, 95% CI {low:.1%} to {high:.1%}); {skipped:,} skipped; the emulator counted "
            f"{stats['disagreements']:,} disagreements in {stats['rows']:,} challenger rows. Comparison records are "
            f"on {COMPARISONS_TOPIC}: scoring-gateway compare --config FILE --pipeline {PIPELINE}")
