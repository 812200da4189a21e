"""A bounded input cut into numbered segments: the unit that is scored, written and resumed.

Segment ``k`` holds input rows ``[k × S, (k + 1) × S)`` in input order, for the segment size ``S``
fixed when the run began (kept in the run's state), so a resumed run cuts exactly the same
segments and skips the finished ones. Both readers (files and a topic range) produce them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from gateway.stream.records import Rejected


@dataclass(slots=True)
class Segment:
    number: int
    first_row: int  # the input position of its first row (0-based)
    source: pa.Table  # the input columns as read (plus, for a topic, where each record came from)
    rows: Sequence[dict[str, object] | Rejected]  # what is sent per row, or why a row cannot be read
    index: pa.Array  # the index column's values, one per row
    # Rows whose values cannot be sent, and why, when the reader could tell from typed columns
    # (files); None: the codec checks each row (records of a topic).
    problems: dict[int, str] | None = None

    @property
    def size(self) -> int:
        return len(self.rows)


@dataclass(slots=True)
class InputInfo:
    """What the first pass over an input found: enough to check it and to report progress."""

    rows: int
    columns: list[str]  # the input's columns, as read
    send: list[str] | None  # the columns sent for each row; None: every key of the row
    index_type: pa.DataType
    description: str  # for the summary
    extra: dict[str, object] = field(default_factory=dict)  # what a resumed run must reuse (topic offsets)


class BatchInput(Protocol):
    """A bounded input. ``inspect`` reads it once to check it; ``segments`` reads it for scoring."""

    async def inspect(self) -> InputInfo: ...

    def segments(self, segment_rows: int, skip: set[int]) -> AsyncIterator[Segment]: ...

    async def close(self) -> None: ...


def cut(tables: Iterator[pa.Table], segment_rows: int) -> Iterator[tuple[int, int, pa.Table]]:
    """(number, first row, table) for consecutive slices of exactly ``segment_rows`` rows (the last
    one shorter), whatever the sizes of the tables read."""
    pending: list[pa.Table] = []
    held = 0
    number = first = 0
    for table in tables:
        if table.num_rows == 0:
            continue
        pending.append(table)
        held += table.num_rows
        while held >= segment_rows:
            joined = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
            yield number, first, joined.slice(0, segment_rows)
            rest = joined.slice(segment_rows)
            pending = [rest] if rest.num_rows else []
            held = rest.num_rows
            number += 1
            first += segment_rows
    if held:
        yield number, first, pa.concat_tables(pending) if len(pending) > 1 else pending[0]


def generated_index(first_row: int, count: int) -> pa.Array:
    """Qlik's ``automl_row_index``: the 0-based input position."""
    return pa.array(range(first_row, first_row + count), pa.int64())


def first_duplicate(values: Sequence[object]) -> tuple[object, int, int] | None:
    """(value, first position, second position) of the first repeated value, or None."""
    seen: dict[object, int] = {}
    for position, value in enumerate(values):
        earlier = seen.setdefault(value, position)
        if earlier != position:
            return value, earlier, position
    return None
