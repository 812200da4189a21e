"""Writing a batch run's output: one part per finished segment, then the final files from them.

Parts are Arrow IPC files (fast to write, typed, read back as written), each written to a
temporary name, flushed to disk and renamed into place. The final files are assembled in segment
order, so they hold the rows in input order whatever order the segments finished in: every part
of a file is conformed to one schema (see :func:`gateway.commands.batch.arrow_rows.unify`) and streamed to
a temporary file that is renamed when complete. A file is written only when some part of it has
rows: no SHAP file without explanations, no not-predicted file when every row was predicted.

CSV files have a header row, LF line ends, an empty field for null, ``true``/``false`` for
booleans, floats in their shortest round-trip form, and text quoted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gateway.backends.csvcodec import quote_field
from gateway.commands.batch.arrow_rows import conform, text_only, unify
from gateway.commands.batch.options import KINDS, SHAP


def part_path(parts: Path, kind: str, number: int) -> Path:
    return parts / f"{kind}.{number:07d}.arrow"


def write_parts(parts: Path, number: int, tables: dict[str, pa.Table]) -> None:
    """One segment's tables as its part files, each complete on disk before it has its name."""
    parts.mkdir(parents=True, exist_ok=True)
    for kind, table in tables.items():
        final = part_path(parts, kind, number)
        temporary = final.with_name(f".{final.name}.tmp")
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        _fsync(temporary)
        os.replace(temporary, final)


def assemble(parts: Path, writeback: Path, names: dict[str, str], fmt: str, segments: Iterable[int],
             features: Sequence[str] = ()) -> list[str]:
    """The final files from the parts of ``segments``; returns the names written, in kind order.

    Columns keep the order the parts first show them in, except the wide SHAP file's, which
    follow ``features`` (a part only has the features its rows were explained by)."""
    numbers = sorted(segments)
    written = []
    for kind in KINDS:
        if kind not in names:  # a file the job does not ask for (the emulator's batch predictions)
            continue
        paths = [p for p in (part_path(parts, kind, n) for n in numbers) if p.exists()]
        if not paths:
            continue
        schemas = [_read_schema(p) for p in paths]
        order = [f"{f}{suffix}" for f in features for suffix in ("_SHAP", "_XEMP")] if kind == SHAP else []
        schema = unify(schemas, [schemas[0].names[0], *order] if order else ())
        if sum(_rows(p) for p in paths) == 0:
            continue
        final = writeback / names[kind]
        temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        if fmt == "parquet":
            _write_parquet(temporary, schema, paths)
        else:
            _write_csv(temporary, schema, paths)
        _fsync(temporary)
        os.replace(temporary, final)
        written.append(names[kind])
    _fsync_directory(writeback)
    return written


def _read_schema(path: Path) -> pa.Schema:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).schema


def _rows(path: Path) -> int:
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _tables(schema: pa.Schema, paths: list[Path]) -> Iterable[pa.Table]:
    for path in paths:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        yield conform(table, schema)


def _write_parquet(path: Path, schema: pa.Schema, paths: list[Path]) -> None:
    with pq.ParquetWriter(str(path), schema) as writer:
        for table in _tables(schema, paths):
            writer.write_table(table)


def _write_csv(path: Path, schema: pa.Schema, paths: list[Path]) -> None:
    options = pa_csv.WriteOptions(include_header=False)
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((",".join(quote_field(name) for name in schema.names) + "\n").encode())
        for table in _tables(schema, paths):
            if table.num_rows:
                pa_csv.write_csv(text_only(table), sink, options)


def existing(writeback: Path, names: dict[str, str]) -> list[str]:
    return [name for name in names.values() if (writeback / name).exists()]


def remove(writeback: Path, names: Iterable[str]) -> None:
    for name in names:
        (writeback / name).unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        _fsync(path)
