"""What one ``scoring-gateway batch`` run is asked to do, checked before anything is read or sent.

Every problem is a :class:`BatchInputError` with one line naming it (the command exits 2). Output
names follow Qlik's writeback fields: ``--dst-name`` (predictions), ``--dst-shap-name``,
``--dst-source-name``, ``--dst-coord-shap-name``, ``--dst-not-predicted-name``, each defaulting
from ``--name N`` to ``N``, ``N_shap``, ``N_source``, ``N_coord_shap``, ``N_not_predicted``; a name
without the format's extension gets it, as Qlik does with ``dstName``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import CommandError

FORMATS = ("parquet", "csv")
LAYOUTS = ("qlik", "datarobot")
EXTENSIONS = {"parquet": ".parquet", "csv": ".csv"}
GENERATED_INDEX = "automl_row_index"  # Qlik's own index column when none is given

# File kinds, in the order the summary lists them, and the suffix each takes after --name.
PREDICTIONS = "predictions"
SHAP = "shap"
SOURCE = "source"
COORD_SHAP = "coord_shap"
NOT_PREDICTED = "not_predicted"
KINDS = (PREDICTIONS, SHAP, SOURCE, COORD_SHAP, NOT_PREDICTED)
SUFFIXES = {PREDICTIONS: "", SHAP: "_shap", SOURCE: "_source", COORD_SHAP: "_coord_shap",
            NOT_PREDICTED: "_not_predicted"}
_PLAIN_NAME = re.compile(r"[^/\\\x00]+")


class BatchInputError(CommandError, ValueError):
    """Unusable input or options: one line, printed as it is, exit status 2."""


@dataclass(frozen=True, slots=True)
class TopicRange:
    """``--start`` and ``--end`` as written: ``earliest``, ``latest``, an offset, or an ISO-8601 time."""

    start: str
    end: str


@dataclass(frozen=True, slots=True)
class BatchOptions:
    pipeline: str
    writeback: Path
    format: str = "parquet"
    input_path: Path | None = None
    input_format: str | None = None  # None: from the extension
    topic: TopicRange | None = None
    names: dict[str, str] = field(default_factory=dict)  # kind -> file name
    index_column: str | None = None
    layout: str = "qlik"
    overwrite: bool = False
    target: str | None = None  # the model's target for the qlik layout when the API does not say

    @property
    def index_name(self) -> str:
        return self.index_column or GENERATED_INDEX

    def identity(self) -> dict[str, object]:
        """What must not change between a run and its resumption."""
        return {"pipeline": self.pipeline, "format": self.format, "layout": self.layout,
                "input": str(self.input_path.resolve()) if self.input_path else None,
                "input_format": self.input_format,
                "topic": [self.topic.start, self.topic.end] if self.topic else None,
                "names": dict(sorted(self.names.items())), "index_column": self.index_column,
                "target": self.target}


def file_names(fmt: str, name: str, given: Mapping[str, str | None]) -> dict[str, str]:
    """The five output file names: given ones completed with the extension, the rest from ``name``."""
    extension = EXTENSIONS[fmt]
    names: dict[str, str] = {}
    for kind in KINDS:
        chosen = given.get(kind) or f"{name}{SUFFIXES[kind]}"
        if not _PLAIN_NAME.fullmatch(chosen) or chosen in (".", ".."):
            raise BatchInputError(f"output name {chosen!r} must be a plain file name (no folders)")
        if not chosen.lower().endswith(extension):
            chosen += extension
        names[kind] = chosen
    taken: dict[str, str] = {}
    for kind, chosen in names.items():
        if chosen in taken:
            raise BatchInputError(f"output files for {taken[chosen]} and {kind} would both be {chosen!r}")
        taken[chosen] = kind
    return names


# Qlik's writeback fields, by the file kind each names.
WRITEBACK_FIELDS = {PREDICTIONS: "dstName", SHAP: "dstShapName", SOURCE: "dstSourceName",
                    COORD_SHAP: "dstCoordShapName", NOT_PREDICTED: "dstNotPredictedName"}


def writeback_names(writeback: dict[str, object]) -> dict[str, str]:
    """File kind -> file name for the fields a Qlik ``writeback`` object names, extensions added."""
    given = {kind: str(writeback[key]) for kind, key in WRITEBACK_FIELDS.items() if writeback.get(key)}
    every = file_names(str(writeback.get("format", "parquet")), given.get(PREDICTIONS, "predictions"),
                       dict(given))
    return {kind: name for kind, name in every.items() if kind in given}


def input_format(path: Path, declared: str | None) -> str:
    """``csv`` or ``parquet``: as declared, else from the file's extension."""
    if declared is not None:
        return declared
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise BatchInputError(f"cannot tell the format of {str(path)!r} from its extension: "
                          "give --input-format csv or parquet")
