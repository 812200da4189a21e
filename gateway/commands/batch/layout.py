"""The columns of each output file, from one segment's outcomes (pure: no I/O).

``qlik`` layout (the default, for either vendor), following Qlik's batch writeback files:

* predictions: the index, ``<target>_predicted``, one ``<target>_<class>`` probability column per
  class (classes in ascending order, as Qlik lists them); a regression has only
  ``<target>_predicted``, the value;
* SHAP: the index and one ``<feature>_SHAP`` column per feature (XEMP strengths, which are not
  SHAP values, are written ``<feature>_XEMP``); rows without explanations are left out;
* coordinate SHAP: the index, ``automl_feature``, ``SHAP_value``, one row per explained feature
  (``XEMP_value`` and ``qualitative_strength`` for XEMP);
* source: the index and the input columns as read;
* not predicted: the index and ``not_predicted_reason``; for DataRobot also ``stage``, ``status``
  and ``vendor_message`` (what the API said when it refused the row).

``datarobot`` layout, as DataRobot's own batch-scoring client writes its output: ``row_id`` (the
0-based input position), the index column when one is given, one probability column per class
label in ascending order (a regression: one column named after the target),
``explanation_N_feature`` and ``explanation_N_strength`` (plus ``explanation_N_qualitativeStrength``
for XEMP, and ``explanation_N_class`` for per-class explanations); explanations stay in the
predictions file, so no SHAP files are written.

Either layout's predictions file ends with the row fields DataRobot's query options add, each only
when some row of the segment has it: ``prediction_warning`` (boolean), ``adjusted_prediction`` and
``vendor_fields`` (the object as JSON text). Per-class explanations (multiclass) in the ``qlik``
layout: one wide column per (class, feature), ``<feature>_<class>_SHAP``, and an ``automl_class``
column in the coordinate file.

Every input row lands in exactly one of predictions and not predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from gateway.backends.codec import ScoredRow
from gateway.commands.batch.arrow_rows import column
from gateway.commands.batch.options import COORD_SHAP, NOT_PREDICTED, PREDICTIONS, SHAP, SOURCE
from gateway.commands.batch.segments import Segment
from gateway.stream.records import STAGE_SCORE, Rejected

DEFAULT_TARGET = "target"  # a DataRobot classifier's JSON answer does not name its target
ROW_ID = "row_id"


@dataclass(slots=True)
class ModelFacts:
    """What the API's answers tell about the model; the target is kept once known."""

    target: str | None = None


@dataclass(slots=True)
class Layout:
    name: str  # "qlik" | "datarobot"
    backend: str  # "qlik" | "datarobot"
    index_name: str
    index_given: bool  # --index-column was given (else the index is generated)
    feature_order: list[str] = field(default_factory=list)  # SHAP columns follow the features sent
    target_override: str | None = None
    facts: ModelFacts = field(default_factory=ModelFacts)

    @property
    def target(self) -> str:
        return self.target_override or self.facts.target or DEFAULT_TARGET

    def tables(self, segment: Segment, outcomes: Sequence[ScoredRow | Rejected],
               refused: list[int] | None = None) -> dict[str, pa.Table]:
        """The segment's part of each output file that has content, by file kind (``refused``: the
        positions of the Rejected outcomes, when the caller knows them)."""
        if refused is None:
            refused = [i for i, o in enumerate(outcomes) if type(o) is Rejected]
        if refused:
            skip = set(refused)
            predicted = [i for i in range(len(outcomes)) if i not in skip]
            rows: list[ScoredRow] = [outcomes[i] for i in predicted]  # type: ignore[misc]
        else:
            predicted = list(range(len(outcomes)))
            rows = list(outcomes)  # type: ignore[arg-type]
        out: dict[str, pa.Table] = {SOURCE: self._source(segment)}
        if self.name == "datarobot":
            keys = self._datarobot_keys(segment)
            if rows:
                out[PREDICTIONS] = _join(_take(keys, predicted), self._datarobot_predictions(rows))
            if refused:
                out[NOT_PREDICTED] = _join(_take(keys, refused), self._refusals(outcomes, refused))
            return out
        keys = pa.table({self.index_name: segment.index})
        if rows:
            out[PREDICTIONS] = _join(_take(keys, predicted), self._qlik_predictions(rows))
            explained = [n for n, row in enumerate(rows) if row.explanations]
            if explained:
                chosen = [rows[n] for n in explained]
                explained_keys = _take(keys, [predicted[n] for n in explained])
                columns = self._explanation_columns(chosen)
                out[SHAP] = _join(explained_keys, self._wide_explanations(columns))
                out[COORD_SHAP] = self._coordinate_explanations(explained_keys.column(0), columns)
        if refused:
            out[NOT_PREDICTED] = _join(_take(keys, refused), self._refusals(outcomes, refused))
        return out

    # -- shared ---------------------------------------------------------------------------

    def _source(self, segment: Segment) -> pa.Table:
        keys = self._datarobot_keys(segment) if self.name == "datarobot" else \
            pa.table({self.index_name: segment.index})
        rest = [name for name in segment.source.column_names if name not in keys.column_names]
        return _join(keys, segment.source.select(rest))

    def _refusals(self, outcomes: Sequence[ScoredRow | Rejected], positions: list[int]) -> dict[str, pa.Array]:
        refused = [o for i in positions if isinstance(o := outcomes[i], Rejected)]  # every one is
        columns = {"not_predicted_reason": pa.array([r.reason for r in refused], pa.string())}
        if self.backend == "datarobot":
            columns["stage"] = pa.array([r.stage for r in refused], pa.string())
            columns["status"] = pa.array([r.status for r in refused], pa.int64())
            columns["vendor_message"] = pa.array([vendor_message(r) for r in refused], pa.string())
        return columns

    # -- qlik layout ----------------------------------------------------------------------

    def _qlik_predictions(self, rows: list[ScoredRow]) -> dict[str, pa.Array]:
        target = self.target
        columns = {f"{target}_predicted": column(list(map(_PREDICTION, rows)))}
        columns.update((f"{target}_{label}", values) for label, values in _probabilities(rows).items())
        columns.update(_row_fields(rows))
        return columns

    def _explanation_columns(self, rows: list[ScoredRow]) -> Explained:
        """The (class, feature) pairs explained (classes by name, features in the order sent; the
        class is None but for per-class explanations), one strength column per pair and, for XEMP,
        one qualitative-strength column per pair (a row's cell is null where it was not explained)."""
        strengths = [{(e.get("class"), e["feature"]): e["strength"] for e in r.explanations} for r in rows]
        rank = {name: i for i, name in enumerate(self.feature_order)}
        keys = sorted(set().union(*strengths), key=lambda key: (key[0] or "", rank.get(key[1], len(rank)), key[1]))
        values = [pa.array([s.get(key) for s in strengths], pa.float64()) for key in keys]
        qualitative: list[pa.Array] = []
        if _is_xemp(rows):
            symbols = [{(e.get("class"), e["feature"]): e["qualitative"] for e in r.explanations} for r in rows]
            qualitative = [pa.array([q.get(key) for q in symbols], pa.string()) for key in keys]
        return [feature for _, feature in keys], values, qualitative, [cls for cls, _ in keys]

    def _wide_explanations(self, explained: Explained) -> dict[str, pa.Array]:
        names, values, qualitative, classes = explained
        suffix = "_XEMP" if qualitative else "_SHAP"
        return {f"{name}_{cls}{suffix}" if cls is not None else f"{name}{suffix}": column
                for name, column, cls in zip(names, values, classes, strict=True)}

    def _coordinate_explanations(self, index: pa.ChunkedArray, explained: Explained) -> pa.Table:
        """One row per explained (row, feature), rows in order and features in the order sent: the
        wide columns stacked, the empty cells dropped, sorted by row then feature (all in Arrow)."""
        names, values, qualitative, classes = explained
        count = len(index)
        rows = pa.concat_arrays([pa.array(range(count), pa.int64())] * len(names))
        ranks = pa.concat_arrays([pa.array([k] * count, pa.int32()) for k in range(len(names))])
        stacked = pa.table({"row": rows, "rank": ranks, "value": pa.concat_arrays(values)})
        if qualitative:
            stacked = stacked.append_column("qualitative", pa.concat_arrays(qualitative))
        stacked = stacked.filter(pc.is_valid(stacked.column("value")))
        stacked = stacked.take(pc.sort_indices(stacked, sort_keys=[("row", "ascending"), ("rank", "ascending")]))
        table = pa.table({self.index_name: index.take(stacked.column("row")),
                          "automl_feature": pa.array(names, pa.string()).take(stacked.column("rank"))})
        if any(cls is not None for cls in classes):
            table = table.append_column("automl_class", pa.array(classes, pa.string()).take(stacked.column("rank")))
        if qualitative:
            table = table.append_column("XEMP_value", stacked.column("value"))
            return table.append_column("qualitative_strength", stacked.column("qualitative"))
        return table.append_column("SHAP_value", stacked.column("value"))

    # -- datarobot layout -----------------------------------------------------------------

    def _datarobot_keys(self, segment: Segment) -> pa.Table:
        keys = pa.table({ROW_ID: pa.array(range(segment.first_row, segment.first_row + segment.size),
                                           pa.int64())})
        if self.index_given:
            keys = keys.append_column(self.index_name, segment.index)
        return keys

    def _datarobot_predictions(self, rows: list[ScoredRow]) -> dict[str, pa.Array]:
        columns: dict[str, pa.Array] = _probabilities(rows)
        if not columns:
            columns[self.target] = column(list(map(_PREDICTION, rows)))
        slots = max((len(r.explanations) for r in rows), default=0)
        xemp = _is_xemp(rows)
        per_class = any("class" in e for r in rows for e in r.explanations)
        for n in range(slots):
            entries = [r.explanations[n] if n < len(r.explanations) else None for r in rows]
            columns[f"explanation_{n + 1}_feature"] = pa.array(
                [e["feature"] if e else None for e in entries], pa.string())
            columns[f"explanation_{n + 1}_strength"] = pa.array(
                [e["strength"] if e else None for e in entries], pa.float64())
            if xemp:
                columns[f"explanation_{n + 1}_qualitativeStrength"] = pa.array(
                    [e["qualitative"] if e else None for e in entries], pa.string())
            if per_class:
                columns[f"explanation_{n + 1}_class"] = pa.array(
                    [e.get("class") if e else None for e in entries], pa.string())
        columns.update(_row_fields(rows))
        return columns


Explained = tuple[list[str], list[pa.Array], list[pa.Array], list[str | None]]


def _row_fields(rows: list[ScoredRow]) -> dict[str, pa.Array]:
    """The columns of the row fields DataRobot's query options add, each only when some row has it."""
    if all(r.prediction_warning is None and r.adjusted_prediction is None and not r.vendor_fields for r in rows):
        return {}
    columns: dict[str, pa.Array] = {}
    if any(r.prediction_warning is not None for r in rows):
        columns["prediction_warning"] = pa.array([r.prediction_warning for r in rows], pa.bool_())
    if any(r.adjusted_prediction is not None for r in rows):
        columns["adjusted_prediction"] = pa.array([r.adjusted_prediction for r in rows], pa.float64())
    if any(r.vendor_fields for r in rows):
        columns["vendor_fields"] = pa.array(
            [orjson.dumps(r.vendor_fields).decode() if r.vendor_fields else None for r in rows], pa.string())
    return columns


def vendor_message(rejected: Rejected) -> str | None:
    """The API's own words for a row it refused (the dispatcher's reason carries them)."""
    if rejected.stage != STAGE_SCORE:
        return None
    head, sep, rest = rejected.reason.partition(" attempts: ")
    return rest if sep and head.startswith("gave up after") else rejected.reason


_PREDICTION = attrgetter("prediction")
_PROBABILITIES = attrgetter("probabilities")


def _probabilities(rows: list[ScoredRow]) -> dict[str, pa.Array]:
    """One probability column per class label, labels in ascending order; {} for a regression."""
    tables = list(map(_PROBABILITIES, rows))
    first = next((table for table in tables if table), None)
    if first is None:
        return {}
    labels = sorted(first)
    if set(map(len, tables)) == {len(first)}:  # equal sizes, and itemgetter finds each label: equal keys
        try:
            return {label: pa.array(list(map(itemgetter(label), tables)), pa.float64()) for label in labels}
        except KeyError:
            pass
    labels = sorted({label for table in tables if table for label in table})
    return {label: pa.array([table.get(label) if table else None for table in tables], pa.float64())
            for label in labels}


def _is_xemp(rows: list[ScoredRow]) -> bool:
    return any(r.explanation_kind == "xemp" for r in rows)


def _take(keys: pa.Table, positions: list[int]) -> pa.Table:
    return keys.take(pa.array(positions, pa.int64()))


def _join(keys: pa.Table, columns: dict[str, pa.Array] | pa.Table) -> pa.Table:
    table = keys
    items = columns.items() if isinstance(columns, dict) else zip(columns.column_names, columns.columns,
                                                                 strict=True)
    for name, data in items:
        if name not in table.column_names:
            table = table.append_column(name, data)
    return table
