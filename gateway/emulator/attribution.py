"""SHAP values in the space the vendors report them in: probability for the classifiers, target
units for the regression, with one base value per deployment (per class for multiclass), so that
for every row ``base + Σ SHAP = the reported output`` to float rounding (≤ 1e-12).

The models are additive in their link (:mod:`gateway.emulator.models`): ``z = z₀ + Σ φᵢ`` with
``φᵢ`` the exact SHAP values *in link space* against the fixed background and ``z₀`` the link at
the background (every feature at its background-average contribution). The reference for the
probability-space values is that same background point, so each base value is the model's output
there: ``σ(z₀)`` for binary, ``z₀`` for regression, ``softmax(z₀)ₖ`` for multiclass class k.

* **regression** — the link is the output: SHAP = ``φᵢ``, base = ``z₀``.
* **binary** — ``P(positive) = σ(z)``. Each feature gets its log-odds contribution times the
  secant slope of the sigmoid between the base and the row::

      SHAPᵢ = φᵢ · (σ(z) − σ(z₀)) / (z − z₀)

  This is the Aumann–Shapley value (integrated gradients along the straight path from the
  background to the row), in closed form: every feature moves the one link along that path, so
  feature i's share of ``∫ σ'(z₀ + tΔ) Δ dt`` is ``φᵢ/Δ`` of it. It sums to ``σ(z) − σ(z₀)``
  exactly, keeps the sign and the ranking of the log-odds contributions, and costs one
  multiplication per cell. The coalition Shapley value (below, for multiclass) is the other exact
  choice; for the eight churn features it needs 2⁸ sigmoids per row, about 100× the cost of
  scoring, and shares the sigmoid's curvature between features differently (by up to a few
  hundredths of probability on random churn rows). When ``|z − z₀|`` is below ``SLOPE_SWITCH``
  the slope is the derivative at the midpoint: the secant to O(Δ²), without dividing rounding
  noise.
* **multiclass** — ``p_k`` depends on every class's link, so no single slope exists. The values
  are the exact Shapley values of ``p_k`` over feature coalitions (a coalition's features take
  the row's contributions, the others the background's), computed over all ``2ⁿ`` coalitions with
  the closed-form Shapley weights. With six features that is 64 coalitions per row (tens of
  thousands of rows/s: slower than the binary values, exact, and no approximation to explain).
  Qlik rows explain their predicted class; DataRobot refuses multiclass explanations.

Rows the model could not read (``Scores.faults``) get 0: both vendors withhold their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from math import exp, factorial
from operator import add, mul
from typing import cast

from gateway.emulator.models import Model, Scores

SLOPE_SWITCH = 1e-6  # |z − z₀| below which the sigmoid's slope is taken at the midpoint
RATIO_SPREAD_LIMIT = 600.0  # e^600 ≈ 1e260: products of class ratios stay finite and non-zero below it

ShapColumns = list[list[float]]  # [term][row], model order


def sigmoid(z: float) -> float:
    """σ(z) as the models compute probabilities (two branches, so exp() never overflows)."""
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


def base_values(model: Model) -> tuple[float, ...]:
    """The output at the background point: one value for binary (P(positive)) and regression,
    one per class (in ``Model.classes`` order) for multiclass."""
    links = model.base_values
    if model.kind == "regression":
        return links
    if model.kind == "binary":
        return (sigmoid(links[0]),)
    return tuple(_softmax_at(links, k) for k in range(len(links)))


def shap_columns(model: Model, scores: Scores) -> ShapColumns:
    """Every row's SHAP values in output space: the positive class's probability (binary), the
    target (regression), the predicted class's probability (multiclass)."""
    if model.kind == "regression":
        return [list(term[0]) for term in scores.contributions]
    if model.kind == "binary":
        return _binary(model, scores)
    return _multiclass(model, scores)


def _binary(model: Model, scores: Scores) -> ShapColumns:
    z0 = model.base_values[0]
    p0 = sigmoid(z0)
    assert scores.probabilities is not None
    positive, links = scores.probabilities[1], scores.links[0]
    if scores.faults:
        slopes = [_secant(p, z - z0, z0, p0) for p, z in zip(positive, links, strict=True)]
    else:  # the hot path: one comprehension, no call per row unless the row sits at the base
        read = cast("list[float]", positive)  # no faults: every row has its probability
        slopes = [(p - p0) / d if (d := z - z0) > SLOPE_SWITCH or d < -SLOPE_SWITCH else _midpoint_slope(z0, d)
                  for p, z in zip(read, links, strict=True)]
    return [list(map(mul, term[0], slopes)) for term in scores.contributions]


def _secant(p: float | None, delta: float, z0: float, p0: float) -> float:
    if p is None:  # a row the model could not read
        return 0.0
    if abs(delta) > SLOPE_SWITCH:
        return (p - p0) / delta
    return _midpoint_slope(z0, delta)


def _midpoint_slope(z0: float, delta: float) -> float:
    mid = sigmoid(z0 + delta / 2.0)
    return mid * (1.0 - mid)


def _multiclass(model: Model, scores: Scores) -> ShapColumns:
    classes = model.classes or ()
    index = {label: k for k, label in enumerate(classes)}
    terms = len(scores.contributions)
    coefficients = _shapley_coefficients(terms)
    columns: ShapColumns = [[0.0] * scores.rows for _ in range(terms)]
    for row, predicted in enumerate(scores.predictions):
        if row in scores.faults or not isinstance(predicted, str):  # a multiclass prediction is a label, or None
            continue
        contributions = [[term[j][row] for j in range(len(classes))] for term in scores.contributions]
        values = _coalition_values(model.base_values, contributions, index[predicted])
        for i, weights in enumerate(coefficients):
            columns[i][row] = sum(map(mul, weights, values))
    return columns


def _coalition_values(base: Sequence[float], contributions: list[list[float]], k: int) -> list[float]:
    """``p_k`` for every coalition S (bit i of S set = feature i takes the row's contribution).

    ``1/p_k = 1 + Σ_j e^(z_j − z_k)`` and each ratio is a product over the coalition's features,
    built by doubling (2ⁿ multiplications per class, n + 1 exponentials). Rows whose ratios could
    leave the float range take the max-shifted softmax instead.
    """
    total: list[float] | None = None
    for j in range(len(base)):
        if j == k:
            continue
        shift = base[j] - base[k]
        spread = abs(shift)
        ratios = [exp(shift)]
        for parts in contributions:
            shift = parts[j] - parts[k]
            spread += abs(shift)
            if spread >= RATIO_SPREAD_LIMIT:
                return _coalition_values_shifted(base, contributions, k)
            factor = exp(shift)
            ratios += [r * factor for r in ratios]
        total = ratios if total is None else list(map(add, total, ratios))
    if total is None:  # a single class
        return [1.0] * (1 << len(contributions))
    return [1.0 / (1.0 + r) for r in total]


def _coalition_values_shifted(base: Sequence[float], contributions: list[list[float]], k: int) -> list[float]:
    per_class: list[list[float]] = []
    for j, z0 in enumerate(base):
        links = [z0]
        for parts in contributions:
            phi = parts[j]
            links += [z + phi for z in links]
        per_class.append(links)
    return [_softmax_at(links, k) for links in zip(*per_class, strict=True)]


@cache
def _shapley_coefficients(n: int) -> tuple[tuple[float, ...], ...]:
    """``c_i[S]`` with ``SHAP_i = Σ_S c_i[S]·v(S)``: ``+w(|S|−1)`` when i ∈ S, ``−w(|S|)`` when not,
    ``w(s) = s!(n−s−1)!/n!`` (the Shapley weight of a coalition of size s without i)."""
    weight = [factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)]
    rows = []
    for i in range(n):
        bit = 1 << i
        rows.append(tuple(weight[s.bit_count() - 1] if s & bit else -weight[s.bit_count()]
                          for s in range(1 << n)))
    return tuple(rows)


def _softmax_at(links: Sequence[float], k: int) -> float:
    top = max(links)
    weights = [exp(z - top) for z in links]
    return weights[k] / sum(weights)
