"""What scores a batch run's rows: the streaming dispatcher, unchanged, behind one small protocol.

``make_dispatcher`` and ``scoring_session`` build exactly what a streaming pipeline uses (encode →
HTTP → decode, retries with backoff, bisection of 400/422, the rate limit). Two things differ for
a bounded run, and both are decided here rather than in the dispatcher:

* the codec is built without the pipeline's ``index_column`` (Qlik aligns a batch by
  ``automl_row_index`` anyway, and the run writes its own index) and without ``include_source``
  (the source file is written from the input, so echoing it back would only cost bandwidth);
* rows whose retries ran out (a transient failure: timeouts, 5xx, 429) are not the data's fault,
  so they are not written as "not predicted": the run stops and can be resumed.

:class:`TargetCapture` wraps the codec to learn the model's target from the first answer that
names it (Qlik's ``<target>_predicted`` column, a DataRobot regression's label or its CSV
``<target>_PREDICTION`` column); the decoders keep only per-row results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import orjson

from gateway.backends.codec import Codec, ScoredRow, ScoringRequest
from gateway.backends.csvcodec import CsvError, read_csv
from gateway.backends.errors import DATA_STATUSES
from gateway.backends.factory import make_codec
from gateway.commands.batch.layout import ModelFacts
from gateway.config import PipelineConfig, QlikBackend
from gateway.stream.records import STAGE_SCORE, Rejected

Outcome = ScoredRow | Rejected


class Scorer(Protocol):
    """Scores rows: one outcome per row, in input order, and the time it took in ms."""

    async def score(self, rows: list[dict[str, object]]) -> tuple[list[Outcome], float]: ...


def is_transient(outcome: Outcome) -> bool:
    """A row whose request kept failing for reasons that are not the row's (retries ran out)."""
    return isinstance(outcome, Rejected) and outcome.stage == STAGE_SCORE and outcome.status not in DATA_STATUSES


def batch_codec(pipeline: PipelineConfig) -> Codec:
    """The pipeline's codec as a batch run uses it (see the module docstring)."""
    backend = pipeline.backend
    if isinstance(backend, QlikBackend):
        backend = backend.model_copy(update={"index_column": None, "include_source": False})
    return make_codec(pipeline.model_copy(update={"backend": backend}))


class TargetCapture:
    """A codec that also notes the model's target in ``facts`` from the first answer with one."""

    def __init__(self, codec: Codec, facts: ModelFacts) -> None:
        self._codec = codec
        self.facts = facts
        self.backend = codec.backend
        self.deployment = codec.deployment
        self.explanations = codec.explanations
        self.headers: Mapping[str, str] = codec.headers
        self._decided = facts.target is not None

    def check_row(self, row: Mapping[str, object]) -> str | None:
        return self._codec.check_row(row)

    def check_json_row(self, row: Mapping[str, object]) -> str | None:
        return self._codec.check_json_row(row)

    def encode(self, features: Sequence[str] | None, rows: Sequence[Mapping[str, object]]) -> ScoringRequest:
        return self._codec.encode(features, rows)

    def decode(self, request: ScoringRequest, status: int, content_type: str, body: bytes) -> list[ScoredRow]:
        rows = self._codec.decode(request, status, content_type, body)
        if not self._decided and any(row.predicted for row in rows):
            self._decided = True
            target = target_named(self.backend, content_type, body)
            if target is not None and self.facts.target is None:
                self.facts.target = target
        return rows


def target_named(backend: str, content_type: str, body: bytes) -> str | None:
    """The model's target as a response names it, or None when it does not."""
    try:
        names, first = _table_head(backend, content_type, body)
    except (CsvError, orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError):
        return None
    if backend == "qlik":
        predicted = [n for n in names if n.endswith("_predicted")]
        return predicted[0][: -len("_predicted")] if predicted else None
    if names:  # DataRobot CSV: <target>_PREDICTION and <target>_<class>_PREDICTION
        predictions = sorted((n for n in names if n.endswith("_PREDICTION")), key=len)
        return predictions[0][: -len("_PREDICTION")] if predictions else None
    values = first.get("predictionValues") if isinstance(first, dict) else None
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0].get("label"), str):
        return str(values[0]["label"])  # a regression names its one value after the target
    return None


def _table_head(backend: str, content_type: str, body: bytes) -> tuple[list[str], object]:
    """Column names (Qlik, or any CSV) and, for DataRobot JSON, the first predicted row."""
    if content_type.split(";", 1)[0].strip().lower() == "text/csv":
        header, _ = read_csv(body)
        return header, None
    doc = orjson.loads(body)
    if backend == "qlik":
        table = doc["data"]["attributes"] if "data" in doc else doc
        return [column["name"] for column in table["schema"]], None
    first = next((row for row in doc["data"] if row.get("prediction") is not None), None)
    return [], first
