"""How request cells become model inputs, one whole column at a time.

Qlik sends JSON-native cells or their stringified forms (``50.0`` or ``"50.0"``, ``true`` or
``"true"``); DataRobot CSV sends only strings. Each feature's *term* turns one column of raw cells
into its centered contributions to the model's link, one list per model output::

    φ_k(x) = g_k(x) − E[g_k(X)]      (g_k: the term's raw effect on output k)

so the additive parts are the exact SHAP values of a linear-in-link model against its fixed
background. A missing cell (null, empty, ``NA``-like) is imputed with the background, so it
contributes 0. A cell that cannot be read is reported by row (``ColumnFaults``) and contributes 0,
leaving the vendor layer to answer as its vendor does (a Qlik ``not_predicted_reason``, a
DataRobot 422).

Every term first tries one C-speed comprehension over the whole column and only falls back to
per-cell reading when that raises: the hot path has no per-cell function calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from gateway.json_types import JsonValue

# Cells that mean "no value" in either vendor's bodies (compared lower-cased, after strip()).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# Numbers beyond this are refused rather than allowed to overflow the link to inf/nan.
NUMERIC_LIMIT = 1e12

ColumnFaults = dict[int, str]  # row index -> why the cell could not be used
# A known value of a table term: a categorical level, or true/false for a boolean.
Level: TypeAlias = str | bool
# A table term's lookup for one output: any cell can be looked up (an unhashable one raises TypeError).
Lookup: TypeAlias = dict[object, float]
Contributions = list[list[float]]  # [output][row]

_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no"})


def describe_cell(cell: object) -> str:
    """A cell as a reason string shows it: short, and never a Python repr of a container."""
    text = cell if isinstance(cell, str) else repr(cell) if not isinstance(cell, (list, dict)) else type(cell).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def cell_text(cell: object) -> str | None:
    """A request cell as text, the way CSV carries it: ``true``/``false``, ``5``, ``50.0``; None for
    null and for containers, which hold no single value."""
    if type(cell) is str:
        return cell
    if cell is True or cell is False:
        return "true" if cell else "false"
    if type(cell) is int or type(cell) is float:
        return repr(cell)
    return None


def read_number(cell: object) -> float | None:
    """A numeric cell's value; None when missing. Raises ValueError with a reason when unreadable."""
    if cell is None:
        return None
    if type(cell) is float or type(cell) is int or type(cell) is bool:
        value = float(cell)
    elif type(cell) is str:
        text = cell.strip()
        if text.lower() in MISSING_TOKENS:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"value '{describe_cell(cell)}' is not a number") from None
    else:
        raise ValueError(f"value {describe_cell(cell)} is not a number")
    if not math.isfinite(value) or abs(value) > NUMERIC_LIMIT:
        raise ValueError(f"value '{describe_cell(cell)}' is outside the range the model accepts")
    return value


def read_boolean(cell: object) -> bool | None:
    """A boolean cell's value; None when missing. Raises ValueError with a reason when unreadable."""
    if cell is None or cell is True or cell is False:
        return cell
    if type(cell) is str:
        text = cell.strip().lower()
        if text in MISSING_TOKENS:
            return None
        if text in _TRUE_WORDS:
            return True
        if text in _FALSE_WORDS:
            return False
    elif type(cell) in (int, float) and cell in (0, 1):
        return bool(cell)
    raise ValueError(f"value '{describe_cell(cell)}' is not a boolean")


@dataclass(frozen=True, slots=True)
class NumericTerm:
    """A number times a weight per output: ``g_k(x) = w_k·x``, background mean ``mean``."""

    name: str
    weights: tuple[float, ...]
    mean: float
    exemplars: tuple[float, ...]  # XEMP replacement values, equally weighted, centred on ``mean``
    integer: bool = False
    qlik_type: str = "numeric"

    def expected(self) -> tuple[float, ...]:
        return tuple(w * self.mean for w in self.weights)

    def contributions(self, cells: Sequence[JsonValue]) -> tuple[Contributions, ColumnFaults]:
        centered, faults = self._centered(cells)
        return [[w * c for c in centered] for w in self.weights], faults

    def _centered(self, cells: Sequence[JsonValue]) -> tuple[list[float], ColumnFaults]:
        mean = self.mean
        # The two fast paths read the column as numbers, then as numeric text, and count on a cell of
        # any other kind to fail them with TypeError or ValueError (checking each cell's type first
        # would cost what they save); the per-cell path below reads every kind of cell.
        numbers: Sequence[float] = cells  # type: ignore[assignment]  # checked by the exceptions caught below
        try:  # typed numbers; TypeError for strings, nulls or containers, ValueError when empty
            if min(numbers) >= -NUMERIC_LIMIT and max(numbers) <= NUMERIC_LIMIT:
                return [x - mean for x in numbers], {}
        except (TypeError, ValueError):
            pass
        try:  # numbers as text (CSV, stringified JSON); a NaN or inf makes the sum non-finite
            values = list(map(float, numbers))
            if min(values) >= -NUMERIC_LIMIT and max(values) <= NUMERIC_LIMIT and math.isfinite(sum(values)):
                return [v - mean for v in values], {}
        except (TypeError, ValueError):
            pass
        centered: list[float] = []
        faults: ColumnFaults = {}
        for row, cell in enumerate(cells):
            try:
                value = read_number(cell)
            except ValueError as exc:
                faults[row] = str(exc)
                value = None
            centered.append(0.0 if value is None else value - mean)
        return centered, faults

    def exemplar_effects(self) -> tuple[tuple[float, tuple[float, ...]], ...]:
        """(weight, centered effect per output) for each XEMP replacement value."""
        share = 1.0 / len(self.exemplars)
        return tuple((share, tuple(w * (v - self.mean) for w in self.weights)) for v in self.exemplars)

    def display_value(self, cell: JsonValue) -> JsonValue:
        """The cell as a number, the way XEMP's ``featureValue`` shows numeric features."""
        try:
            value = read_number(cell)
        except ValueError:
            return cell
        if value is None:
            return ""
        return int(value) if self.integer and value.is_integer() else value


@dataclass(frozen=True, slots=True)
class TableTerm:
    """A lookup of known cell values: categorical levels, or a boolean's spellings.

    ``effects`` maps each level to its raw effect per output and ``background`` gives the level
    frequencies that define E[g_k]. Unknown categorical levels are imputed (contribute 0), as an
    unseen category would be; an unknown boolean spelling is unreadable.
    """

    name: str
    effects: Mapping[Level, tuple[float, ...]]
    background: Mapping[Level, float]
    boolean: bool = False
    qlik_type: str = "categorical"
    # [output] -> {cell value -> centered contribution}; built once from effects and background.
    _tables: tuple[Lookup, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expected = self.expected()
        tables: list[Lookup] = []
        for k, mean in enumerate(expected):
            table: Lookup = {level: effect[k] - mean for level, effect in self.effects.items()}
            table[None] = 0.0
            if self.boolean:
                for word in _TRUE_WORDS:
                    table[word] = table[word.title()] = table[word.upper()] = table[True]
                for word in _FALSE_WORDS:
                    table[word] = table[word.title()] = table[word.upper()] = table[False]
                table[""] = 0.0
            tables.append(table)
        object.__setattr__(self, "_tables", tuple(tables))

    def expected(self) -> tuple[float, ...]:
        outputs = len(next(iter(self.effects.values())))
        return tuple(sum(self.background[level] * effect[k] for level, effect in self.effects.items())
                     for k in range(outputs))

    def contributions(self, cells: Sequence[JsonValue]) -> tuple[Contributions, ColumnFaults]:
        try:
            if self.boolean:
                return [[table[c] for c in cells] for table in self._tables], {}
            return [[table.get(c, 0.0) for c in cells] for table in self._tables], {}
        except (KeyError, TypeError):
            pass
        keys: list[Level | None] = []
        faults: ColumnFaults = {}
        for row, cell in enumerate(cells):
            try:
                keys.append(self._key(cell))
            except ValueError as exc:
                faults[row] = str(exc)
                keys.append(None)
        return [[table.get(key, 0.0) for key in keys] for table in self._tables], faults

    def _key(self, cell: JsonValue) -> Level | None:
        if self.boolean:
            return read_boolean(cell)
        if isinstance(cell, (list, dict)):
            raise ValueError(f"value of type {type(cell).__name__} is not a category")
        if isinstance(cell, str) and cell.strip().lower() in MISSING_TOKENS:
            return None
        return cell if isinstance(cell, str) else None if cell is None else str(cell)

    def exemplar_effects(self) -> tuple[tuple[float, tuple[float, ...]], ...]:
        expected = self.expected()
        return tuple((self.background[level], tuple(e - m for e, m in zip(effect, expected, strict=False)))
                     for level, effect in self.effects.items())

    def display_value(self, cell: JsonValue) -> JsonValue:
        return "" if cell is None else cell


Term = NumericTerm | TableTerm


def categorical(name: str, effects: Mapping[str, tuple[float, ...]], background: Mapping[str, float]) -> TableTerm:
    # Copies keyed by Level (a dict is invariant in its key type, so dict(effects) would stay str-keyed).
    return TableTerm(name, {level: effect for level, effect in effects.items()},
                     {level: share for level, share in background.items()})


def boolean(name: str, weights: tuple[float, ...], share_true: float) -> TableTerm:
    """A boolean feature: ``g_k(x) = w_k·[x]``, true in ``share_true`` of the background."""
    return TableTerm(name, {True: weights, False: tuple(0.0 for _ in weights)},
                     {True: share_true, False: 1.0 - share_true}, boolean=True)
