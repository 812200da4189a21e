"""A histogram fed a whole batch of observations per call (end-to-end latency, one value per record).

Its buckets may carry an exemplar each: the trace id of one traced observation, shown in the
OpenMetrics exposition so a dashboard can jump from a slow bucket to a trace.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

# Below this many values a plain bisect per value wins; above it sorting once and bisecting per
# bucket bound is 3-10x cheaper (measured in benchmarks/bench_metrics.py).
_SORT_THRESHOLD = 32


class BatchHistogram:
    """A per-pipeline histogram fed a whole batch of observations per call.

    ``Histogram.observe`` costs about a microsecond per value (a lock and a linear bucket scan);
    end-to-end latency is observed once per published record, so this collector counts a batch
    with bisection instead and adds the sum once. The event loop is the only writer; a scrape from
    another thread reads snapshots (single list copies are atomic under the GIL), so no lock is
    taken on the hot path. A scrape may see a batch half counted, never a torn or shrinking bucket.
    """

    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = [float(b) for b in bounds]
        if self._bounds != sorted(self._bounds) or not self._bounds:
            raise ValueError("bucket bounds must be a non-empty ascending sequence")
        self._labels = [str(floatToGoString(b)) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._children: dict[str, BatchHistogramChild] = {}

    def child(self, pipeline: str) -> BatchHistogramChild:
        found = self._children.get(pipeline)
        if found is None:
            found = self._children[pipeline] = BatchHistogramChild(self._bounds)
        return found

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=["pipeline"])]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=["pipeline"])
        for pipeline, child in list(self._children.items()):
            total, exemplars = child.total, list(child.exemplars)
            cumulative: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            running = 0
            for i, (label, count) in enumerate(zip(self._labels, list(child.counts), strict=True)):
                running += count
                exemplar = exemplars[i]
                cumulative.append((label, running) if exemplar is None else (label, running, exemplar))
            family.add_metric([pipeline], cumulative, total)
        yield family


class BatchHistogramChild:
    """Bucket counts and sum of one pipeline; ``counts[-1]`` is the +Inf overflow bucket."""

    __slots__ = ("_bounds", "counts", "exemplars", "total")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)

    def exemplar(self, value: float, trace_id: str) -> None:
        """The latest traced observation of ``value``'s bucket (counted by ``observe_*`` already)."""
        if value == value:
            self.exemplars[bisect.bisect_left(self._bounds, value)] = Exemplar(
                {"trace_id": trace_id}, value, time.time())

    def observe_many(self, values: Sequence[float]) -> None:
        """Count every value into its ``le`` bucket; the sum only grows (clock skew can't shrink it)."""
        total = sum(values)
        if total != total:  # a NaN would poison the sort and the sum forever: drop NaNs first
            values = [v for v in values if v == v]
            total = sum(values)
        counts, bounds = self.counts, self._bounds
        if len(values) < _SORT_THRESHOLD:
            index = bisect.bisect_left
            for value in values:
                counts[index(bounds, value)] += 1
        else:
            ordered = sorted(values)
            upto = bisect.bisect_right
            done = 0
            for i, bound in enumerate(bounds):
                reached = upto(ordered, bound, done)
                if reached != done:
                    counts[i] += reached - done
                    done = reached
                    if done == len(ordered):
                        break
            counts[-1] += len(ordered) - done
        if total > 0.0 and math.isfinite(total):
            self.total += total

    def observe_ages(self, now_ms: float, stamps_ms: list[int]) -> None:
        """Count the age in seconds of every timestamp (ms), a future one as 0, without a value per
        record: an age is at most a bound exactly when the timestamp is at least ``now`` minus it,
        so the sorted timestamps are cut at each bound (in C), and the ages sum from one slice."""
        if not stamps_ms:
            return
        ordered = sorted(stamps_ms)
        counts, count = self.counts, len(ordered)
        left = bisect.bisect_left
        younger = 0  # timestamps at or after the current cut: ages within the bound
        for i, bound in enumerate(self._bounds):
            within = count - left(ordered, now_ms - bound * 1000.0)
            if within != younger:
                counts[i] += within - younger
                younger = within
                if younger == count:
                    break
        counts[-1] += count - younger
        past = left(ordered, now_ms)  # timestamps before now; the rest are aged 0
        total = (now_ms * past - sum(ordered[:past])) / 1000.0
        if total > 0.0 and math.isfinite(total):
            self.total += total
