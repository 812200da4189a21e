"""The books of a scaling run: end-to-end latency of the records produced around each join or leave.

Input and output records carry the producers' timestamps (the gateway's producer stamps an output
when it hands it to the broker), and every producer of a run is on one host, so an input's
end-to-end latency is its first output's timestamp minus its own. For each event (a member joining
or leaving the group) the records produced in a window around it give the p50, p99 and max
latency; the longest time with no output at all, the per-partition longest silence, and the
outputs out of key order are counted over the same window.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from testkit.topics import Topics


@dataclass(frozen=True, slots=True)
class Event:
    """A change of the group at ``at`` (epoch seconds); the window around it is [start, end]."""

    kind: str  # "join" or "leave"
    members_after: int
    at: float
    start: float
    end: float

    @property
    def label(self) -> str:
        return f"{self.kind} -> {self.members_after}"


@dataclass(frozen=True, slots=True)
class Output:
    input_id: str
    timestamp_ms: int
    key: bytes | None


async def read_predictions(topics: Topics, committed_only: bool = False, at_least: int = 0) -> list[Output]:
    """The prediction topic in each partition's order (the order a consumer sees)."""
    records = await topics.read_all(topics.predictions, quiet_s=1.0, committed_only=committed_only,
                                    at_least=at_least)
    return [Output(orjson.loads(r.value)["id"], int(r.timestamp), r.key) for r in records]


def percentile(values: Sequence[float], share: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def first_outputs(outputs: Iterable[Output]) -> dict[str, int]:
    """input id -> the timestamp of its first output."""
    found: dict[str, int] = {}
    for out in outputs:
        stamp = found.get(out.input_id)
        if stamp is None or out.timestamp_ms < stamp:
            found[out.input_id] = out.timestamp_ms
    return found


def out_of_key_order(outputs: Sequence[Output]) -> int:
    """Outputs of a key that came after a later input of the same key (repeats of an id already
    published, as a rebalance may redeliver, are not out of order)."""
    last: dict[tuple[bytes | None, int], int] = {}
    seen: set[str] = set()
    wrong = 0
    for out in outputs:
        if out.input_id in seen or out.key is None:
            continue
        seen.add(out.input_id)
        _, partition, offset = out.input_id.rsplit("/", 2)
        slot = (out.key, int(partition))
        if last.get(slot, -1) > int(offset):
            wrong += 1
        last[slot] = max(last.get(slot, -1), int(offset))
    return wrong


def longest_silence(stamps_ms: Sequence[int], start_ms: float, end_ms: float) -> float:
    """The longest time in [start, end] with none of ``stamps_ms`` (ms)."""
    inside = sorted(s for s in stamps_ms if start_ms <= s <= end_ms)
    edges = [start_ms, *inside, end_ms]
    return max(b - a for a, b in itertools.pairwise(edges))


def event_report(event: Event, inputs: Mapping[str, Any], first: Mapping[str, int],
                 outputs: Sequence[Output]) -> dict[str, Any]:
    """Latency of the records produced in the event's window; silences in the window."""
    start_ms, end_ms = event.start * 1000.0, event.end * 1000.0
    latencies = [first[i] - r.timestamp for i, r in inputs.items() if start_ms <= r.timestamp <= end_ms and i in first]
    missing = sum(1 for i, r in inputs.items() if start_ms <= r.timestamp <= end_ms and i not in first)
    stamps = [o.timestamp_ms for o in outputs]
    by_partition: dict[int, list[int]] = {}
    for out in outputs:
        by_partition.setdefault(int(out.input_id.rsplit("/", 2)[1]), []).append(out.timestamp_ms)
    return {
        "event": event.label, "at": event.at, "window_s": round(event.end - event.start, 1),
        "records": len(latencies), "without_output": missing,
        "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else None,
        "longest_no_output_ms": round(longest_silence(stamps, start_ms, end_ms)),
        "longest_partition_silence_ms": round(max(
            (longest_silence(found, start_ms, end_ms) for found in by_partition.values()), default=0.0)),
    }


def scale_report(events: Sequence[Event], inputs: Mapping[str, Any], outputs: Sequence[Output]) -> dict[str, Any]:
    """Per event and overall: latencies, silences, lost, duplicates, key order."""
    first = first_outputs(outputs)
    ids = [o.input_id for o in outputs]
    return {
        "events": [event_report(e, inputs, first, outputs) for e in events],
        "records": len(inputs), "lost": sum(1 for i in inputs if i not in first),
        "duplicates": len(ids) - len(set(ids)), "strangers": len(set(ids) - set(inputs)),
        "out_of_key_order": out_of_key_order(outputs),
    }


def table(report: Mapping[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    lines = ["| event | records | p50 ms | p99 ms | max ms | longest with no output ms | "
             "longest partition silence ms |", "|---|---|---|---|---|---|---|"]
    for e in report["events"]:
        lines.append(f"| {e['event']} | {e['records']} | {ms(e['p50_ms'])} | {ms(e['p99_ms'])} | {ms(e['max_ms'])} | "
                     f"{ms(e['longest_no_output_ms'])} | {ms(e['longest_partition_silence_ms'])} |")
    lines.append(f"\nrecords {report['records']}, lost {report['lost']}, duplicates {report['duplicates']}, "
                 f"out of key order {report['out_of_key_order']}")
    return "\n".join(lines)
