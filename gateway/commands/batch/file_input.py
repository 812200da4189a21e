"""A CSV or Parquet file as the input of a batch run.

Parquet columns keep their stored types. A CSV file is read twice: the first pass reads every
cell as text and settles each column's type over the *whole* file (integer, then float, then
boolean, else text; an empty cell is null), so a bad value deep in the file (``$80.00`` among
fees) makes that column text everywhere instead of failing the read halfway; the model then
refuses just the rows it cannot use. The first pass also counts the rows and checks the index
column (present, never empty, unique) and the feature columns, all before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gateway.commands.batch.arrow_rows import row_problems, rows_of
from gateway.commands.batch.options import BatchInputError
from gateway.commands.batch.segments import InputInfo, Segment, cut, first_duplicate, generated_index

CSV_BLOCK_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 65536
CAST_SAMPLE = 64
_CANDIDATES = (pa.int64(), pa.float64(), pa.bool_())


class FileInput:
    def __init__(self, path: Path, fmt: str, *, index_column: str | None,
                 features: Sequence[str] | None) -> None:
        self.path = path
        self.fmt = fmt
        self.index_column = index_column
        self.features = list(features) if features is not None else None
        self._types: dict[str, pa.DataType] = {}
        self._send: list[str] = []

    async def inspect(self) -> InputInfo:
        return await asyncio.to_thread(self._inspect)

    def _inspect(self) -> InputInfo:
        if not self.path.is_file():
            raise BatchInputError(f"cannot read {str(self.path)!r}: no such file")
        try:
            columns, rows, index = self._csv_pass() if self.fmt == "csv" else self._parquet_pass()
        except (OSError, pa.ArrowException) as exc:
            raise BatchInputError(f"cannot read {str(self.path)!r} as {self.fmt}: {_short(exc)}") from None
        if self.features is not None:
            missing = [name for name in self.features if name not in columns]
            if missing:
                raise BatchInputError(f"{self.path.name} has no column {missing[0]!r}, a feature of the "
                                      f"pipeline (its columns: {', '.join(columns)})")
            self._send = list(self.features)
        else:
            self._send = [name for name in columns if name != self.index_column]
        index_type = pa.int64()
        if self.index_column is not None:
            index_type = _check_index(self.index_column, index, self.path.name)
        return InputInfo(rows, columns, self._send, index_type, f"{self.path} ({self.fmt})")

    def _csv_pass(self) -> tuple[list[str], int, pa.ChunkedArray | None]:
        names = _csv_names(self.path)
        if self.index_column is not None and self.index_column not in names:
            raise BatchInputError(f"{self.path.name} has no index column {self.index_column!r}")
        alive: dict[str, list[pa.DataType]] = {name: list(_CANDIDATES) for name in names}
        seen_value: set[str] = set()
        index_parts: list[pa.Array] = []
        rows = 0
        for batch in _csv_text_batches(self.path, names):
            rows += batch.num_rows
            for name, data in zip(names, batch.columns, strict=True):
                if data.null_count < len(data):
                    seen_value.add(name)
                alive[name] = [t for t in alive[name] if _casts(data, t)]
            if self.index_column is not None:
                index_parts.append(batch.column(names.index(self.index_column)))
        self._types = {name: (alive[name][0] if alive[name] and name in seen_value else pa.string())
                       for name in names}
        index = None
        if self.index_column is not None:
            index = pc.cast(pa.chunked_array(index_parts, pa.string()), self._types[self.index_column])
        return names, rows, index

    def _parquet_pass(self) -> tuple[list[str], int, pa.ChunkedArray | None]:
        meta = pq.ParquetFile(self.path)
        names = list(meta.schema_arrow.names)
        if self.index_column is not None and self.index_column not in names:
            raise BatchInputError(f"{self.path.name} has no index column {self.index_column!r}")
        index = None
        if self.index_column is not None:
            index = pq.read_table(self.path, columns=[self.index_column]).column(0)
        return names, meta.metadata.num_rows, index

    async def segments(self, segment_rows: int, skip: set[int]) -> AsyncIterator[Segment]:
        tables = self._csv_tables() if self.fmt == "csv" else self._parquet_tables()
        pieces = cut(tables, segment_rows)
        while True:
            segment = await asyncio.to_thread(self._next_segment, pieces, skip)
            if segment is None:
                return
            yield segment

    def _next_segment(self, pieces: Iterator[tuple[int, int, pa.Table]], skip: set[int]) -> Segment | None:
        for number, first, table in pieces:
            if number in skip:
                continue
            index = (table.column(self.index_column).combine_chunks() if self.index_column is not None
                     else generated_index(first, table.num_rows))
            return Segment(number, first, table, rows_of(table, self._send), index,
                           problems=row_problems(table, self._send))
        return None

    def _csv_tables(self) -> Iterator[pa.Table]:
        names = list(self._types)
        schema = pa.schema([pa.field(name, self._types[name]) for name in names])
        for batch in _csv_text_batches(self.path, names):
            arrays = [data if self._types[name] == pa.string() else pc.cast(data, self._types[name])
                      for name, data in zip(names, batch.columns, strict=True)]
            yield pa.Table.from_arrays(arrays, schema=schema)

    def _parquet_tables(self) -> Iterator[pa.Table]:
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield pa.Table.from_batches([batch])

    async def close(self) -> None:
        return None


def _csv_names(path: Path) -> list[str]:
    reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES))
    try:
        names = list(reader.schema.names)
    finally:
        reader.close()
    if len(set(names)) != len(names):
        repeated = next(name for name in names if names.count(name) > 1)
        raise BatchInputError(f"{path.name}: column {repeated!r} appears twice in the header")
    return names


def _csv_text_batches(path: Path, names: list[str]) -> Iterator[pa.RecordBatch]:
    convert = pa_csv.ConvertOptions(column_types={name: pa.string() for name in names}, null_values=[""],
                                    strings_can_be_null=True, quoted_strings_can_be_null=True)
    reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                             convert_options=convert)
    try:
        yield from reader
    finally:
        reader.close()


def _casts(data: pa.Array, target: pa.DataType) -> bool:
    """Whether every value of ``data`` reads as ``target``. A failing cast costs time in proportion
    to the array's length, so a small sample of values is tried first."""
    values = data.drop_null()
    try:
        pc.cast(values.slice(0, CAST_SAMPLE), target)
        pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _check_index(name: str, index: pa.ChunkedArray | None, file: str) -> pa.DataType:
    assert index is not None
    if index.null_count:
        row = pc.index(pc.is_null(index), True).as_py()
        raise BatchInputError(f"{file}: index column {name!r} is empty in row {row}")
    if pc.count_distinct(index).as_py() != len(index):
        duplicate = first_duplicate(index.to_pylist())
        assert duplicate is not None
        value, first, second = duplicate
        raise BatchInputError(f"{file}: index column {name!r} repeats {value!r} (rows {first} and {second}); "
                              "it must be unique")
    return index.type


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
