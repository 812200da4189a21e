"""The resume state of a batch run: a small JSON file beside its output files.

``DIR/.<predictions file>.batch.json`` records what the run is (its identity: the command's
options and the pipeline's backend settings), the segment size it cut the input into, what the
first pass found that a resumption must reuse (a topic range's resolved offsets), the model's
target once known, and each finished segment with its counts. Finished segments' parts live in
``DIR/.<predictions file>.parts/``.

The protocol, in the order the run follows it:

1. a segment's part files are written to a temporary name, flushed to disk and renamed;
2. only then is the segment added to the state, itself written the same way (temp + rename);
3. at the end the final files are assembled from the parts (temp + rename each), the state is
   marked complete with the files it wrote, and the parts are removed.

So a ``kill -9`` at any moment leaves every recorded segment's parts complete on disk; a segment
whose parts were written but not recorded is simply scored again. The same command then resumes:
recorded segments are skipped, the rest scored, and the final files come out the same.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gateway.commands.batch.options import BatchInputError

VERSION = 1


@dataclass
class RunState:
    path: Path
    parts: Path
    identity: dict[str, object]
    segment_rows: int
    extra: dict[str, object] = field(default_factory=dict)
    target: str | None = None
    done: dict[int, dict[str, int]] = field(default_factory=dict)  # segment -> counts
    complete: bool = False
    files: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, writeback: Path, predictions_name: str, identity: dict[str, object],
             segment_rows: int) -> RunState:
        """The state of this run: resumed when the folder holds one of the same run, else new."""
        path = writeback / f".{predictions_name}.batch.json"
        parts = writeback / f".{predictions_name}.parts"
        if not path.exists():
            return cls(path, parts, identity, segment_rows)
        try:
            doc = orjson.loads(path.read_bytes())
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
        except (OSError, ValueError) as exc:
            raise BatchInputError(f"cannot read the run state {str(path)!r} ({exc}): use --overwrite "
                                  "to start over") from None
        differs = _difference(doc.get("identity", {}), identity)
        if differs:
            raise BatchInputError(f"{writeback} holds another run ({differs}): use --overwrite to start over, "
                                  "or another --writeback folder or --name")
        return cls(path, parts, identity, int(doc["segment_rows"]), doc.get("extra", {}), doc.get("target"),
                   {int(k): v for k, v in doc.get("done", {}).items()}, bool(doc.get("complete")),
                   list(doc.get("files", [])))

    @property
    def rows_done(self) -> int:
        return sum(counts.get("rows", 0) for counts in self.done.values())

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in self.done.values():
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def record(self, number: int, counts: dict[str, int]) -> None:
        """Segment ``number`` is finished: its parts are already on disk."""
        self.done[number] = counts
        self.save()

    def finish(self, files: list[str]) -> None:
        self.complete = True
        self.files = files
        self.save()
        shutil.rmtree(self.parts, ignore_errors=True)

    def save(self) -> None:
        doc = {"version": VERSION, "identity": self.identity, "segment_rows": self.segment_rows,
               "extra": self.extra, "target": self.target, "complete": self.complete, "files": self.files,
               "done": {str(k): v for k, v in sorted(self.done.items())}}
        write_atomically(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def remove(self) -> None:
        """Forget the run (``--overwrite``): the state and its parts."""
        shutil.rmtree(self.parts, ignore_errors=True)
        self.path.unlink(missing_ok=True)
        self.done.clear()
        self.complete = False
        self.files = []
        self.target = None
        self.extra = {}


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, all or nothing: a temporary file, flushed to disk, then renamed."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _difference(stored: Mapping[str, object], current: Mapping[str, object]) -> str:
    for key in sorted(set(stored) | set(current)):
        if stored.get(key) != current.get(key):
            return f"its {key} was {_show(stored.get(key))}, now {_show(current.get(key))}"
    return ""


def _show(value: object) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
