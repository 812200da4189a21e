"""What ``compare`` reports, computed from comparison records (pure, no I/O).

- agreement: the share of compared records on which both sides agree, with a 95 % Wilson score
  interval (it stays inside [0, 1] and is honest for shares near 0 or 1 and for small counts);
- the confusion table of the two predictions (classification);
- the distribution of ``difference`` (challenger minus champion): mean and percentiles;
- each side's request latency percentiles, and how many rows each side refused.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from gateway.json_types import JsonObject, JsonValue

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
PERCENTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LATENCY_PERCENTILES = (0.5, 0.95, 0.99)
MAX_LABELS = 12  # the confusion table's rows and columns; further labels are folded into "other"


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial share."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - margin) / scale), min(1.0, (centre + margin) / scale)


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks of an ascending list (non-empty)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Summary:
    pipeline: str
    records: int = 0
    unreadable: int = 0
    other_pipelines: int = 0
    compared: int = 0  # both sides predicted
    agreed: int = 0
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    differences: list[float] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"champion": [], "challenger": []})
    refused: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (champion, challenger) deployments

    def add_values(self, values: Iterable[bytes | None]) -> None:
        for value in values:
            try:
                doc = orjson.loads(value) if value is not None else None
            except orjson.JSONDecodeError:
                doc = None
            if not isinstance(doc, dict) or not isinstance(doc.get("champion"), dict) \
                    or not isinstance(doc.get("challenger"), dict):
                self.unreadable += 1
            elif doc.get("pipeline") != self.pipeline:
                self.other_pipelines += 1
            else:
                self.add(doc)

    def add(self, doc: Mapping[str, JsonValue]) -> None:
        """One comparison record (already known to have both sides)."""
        self.records += 1
        champion, challenger = _side(doc["champion"]), _side(doc["challenger"])
        self.pairs[(str(champion.get("deployment")), str(challenger.get("deployment")))] += 1
        for side, part in (("champion", champion), ("challenger", challenger)):
            latency = part.get("latency_ms")
            if isinstance(latency, (int, float)):
                self.latency_ms[side].append(float(latency))
            if part.get("refused") is not None:
                self.refused[side] += 1
        agree = doc.get("agree")
        if isinstance(agree, bool):
            self.compared += 1
            self.agreed += agree
            if champion.get("probabilities") is not None and challenger.get("probabilities") is not None:
                self.confusion[(_label(champion.get("prediction")), _label(challenger.get("prediction")))] += 1
        difference = doc.get("difference")
        if isinstance(difference, (int, float)) and not isinstance(difference, bool):
            self.differences.append(float(difference))

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def lines(self) -> list[str]:
        """The report as text lines."""
        out = [f"compare: pipeline {self.pipeline}: {self.records} comparison records"
               + (f" ({self.unreadable} unreadable skipped)" if self.unreadable else "")]
        for (ours, theirs), n in sorted(self.pairs.items()):
            out.append(f"  champion {ours} vs challenger {theirs}: {n}")
        if self.compared:
            low, high = wilson(self.agreed, self.compared)
            out.append(f"agreement: {self.agreed}/{self.compared} = {self.agreed / self.compared:.2%} "
                       f"(95% CI {low:.2%} to {high:.2%})")
        else:
            out.append("agreement: nothing compared yet")
        out.append(f"refused: champion {self.refused['champion']}, challenger {self.refused['challenger']}")
        out.extend(self._confusion_lines())
        if self.differences:
            ordered = sorted(self.differences)
            mean = sum(ordered) / len(ordered)
            cuts = ", ".join(f"p{round(q * 100)} {percentile(ordered, q):+.4f}" for q in PERCENTILES)
            out.append(f"difference (challenger - champion): mean {mean:+.4f}; {cuts}")
        for side in ("champion", "challenger"):
            values = sorted(self.latency_ms[side])
            if values:
                cuts = ", ".join(f"p{round(q * 100)} {percentile(values, q):.1f}" for q in LATENCY_PERCENTILES)
                out.append(f"latency ms, {side}: {cuts}")
        return out

    def _confusion_lines(self) -> list[str]:
        if not self.confusion:
            return []
        ours = _top({a for a, _ in self.confusion})
        theirs = _top({b for _, b in self.confusion})
        table: Counter[tuple[str, str]] = Counter()
        for (a, b), n in self.confusion.items():
            table[(a if a in ours else "other", b if b in theirs else "other")] += n
        rows = sorted({a for a, _ in table})
        columns = sorted({b for _, b in table})
        width = max(len("champion \\ challenger"), *(len(r) for r in rows))
        cells = [max(8, len(c)) for c in columns]
        out = ["confusion (rows: champion, columns: challenger):",
               "  " + "champion \\ challenger".ljust(width) + "".join(f" {c:>{w}}" for c, w in zip(columns, cells,
                                                                                                    strict=True))]
        for r in rows:
            out.append("  " + r.ljust(width) + "".join(f" {table[(r, c)]:>{w}}" for c, w in zip(columns, cells,
                                                                                                 strict=True)))
        return out


def _side(value: JsonValue) -> JsonObject:
    """One side of a comparison record (the caller made sure both are objects)."""
    return value if isinstance(value, dict) else {}


def _label(value: object) -> str:
    return "null" if value is None else str(value)


def _top(labels: set[str]) -> set[str]:
    return set(sorted(labels)[:MAX_LABELS]) if len(labels) > MAX_LABELS else labels
