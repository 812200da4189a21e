"""Per-row explanations: exact SHAP rankings and XEMP-style strengths with ``qualitativeStrength``.

SHAP strengths are the output-space values of :mod:`gateway.emulator.attribution` (probability of
the positive class, or target units); a row shows its top ``limit`` by |strength| and
``remaining_total`` carries the rest, so ``base_value + Σ shown + remaining_total`` equals the
row's prediction value exactly, as DataRobot's own example does.

XEMP strengths follow XEMP's idea rather than SHAP's: how far the prediction moves when the
feature's value is replaced by the background's exemplar values, measured in the link space
(log-odds for a binary model, target units for regression)::

    strength_i = z − link( Σ_v w_v · link⁻¹(z − φ_i + ψ_iv) )

For a regression model this equals SHAP (the model is linear); for a classifier it differs, the
way XEMP and SHAP differ for a real one. ``qualitativeStrength`` normalises each strength by the
sum of the row's ten largest |strengths| and applies the DataRobot documentation's table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import exp, log, log1p

from gateway.emulator.models import Model, Scores

TOP_FOR_NORMALISATION = 10
# (normalised |strength| must exceed, symbol for a positive effect, for a negative one)
QUALITATIVE_TABLE = ((0.75, "+++", "---"), (0.25, "++", "--"), (0.001, "+", "-"), (0.0, "<+", "<-"))
# XEMP leaves out features whose replacement does not move the prediction.
XEMP_NEGLIGIBLE = 1e-12

Ranked = list[tuple[int, float]]  # (term index in model order, strength), by |strength| descending


def qualitative_strength(strength: float, normaliser: float) -> str:
    """The symbol for ``strength`` given the sum of the row's top |strengths|."""
    score = abs(strength) / normaliser if normaliser > 0.0 else 0.0
    for bound, positive, negative in QUALITATIVE_TABLE:
        if score > bound:
            return positive if strength >= 0.0 else negative
    return "<+" if strength >= 0.0 else "<-"


def normaliser(strengths: Iterable[float]) -> float:
    return sum(sorted((abs(s) for s in strengths), reverse=True)[:TOP_FOR_NORMALISATION])


def rank(strengths: list[float], limit: int | None) -> Ranked:
    ranked = sorted(enumerate(strengths), key=lambda item: -abs(item[1]))
    return ranked if limit is None else ranked[:limit]


def shap_explanations(shap: Sequence[Sequence[float]], rows: Iterable[int],
                      limit: int | None) -> dict[int, tuple[Ranked, float]]:
    """Row → (top ``limit`` SHAP values, remaining total), from SHAP columns ([term][row])."""
    explained: dict[int, tuple[Ranked, float]] = {}
    for row in rows:
        strengths = [column[row] for column in shap]
        shown = rank(strengths, limit)
        explained[row] = (shown, sum(strengths) - sum(s for _, s in shown))
    return explained


def xemp_explanations(model: Model, scores: Scores, rows: Iterable[int],
                      limit: int | None) -> dict[int, list[tuple[int, float, str]]]:
    """Row → [(term index, strength, qualitativeStrength)], strongest first, at most ``limit``."""
    exemplars = [term.exemplar_effects() for term in model.terms]
    contributions = scores.contributions
    links = scores.links[0]
    binary = model.kind == "binary"
    explained: dict[int, list[tuple[int, float, str]]] = {}
    for row in rows:
        z = links[row]
        strengths: list[float] = []
        for term, replacements in zip(contributions, exemplars, strict=False):
            phi = term[0][row]
            if binary:
                mean_p = sum(w * _sigmoid(z - phi + effect[0]) for w, effect in replacements)
                strengths.append(z - _logit(mean_p))
            else:
                strengths.append(phi - sum(w * effect[0] for w, effect in replacements))
        scale = normaliser(strengths)
        shown = [(i, s) for i, s in rank(strengths, None) if abs(s) > XEMP_NEGLIGIBLE]
        if limit is not None:
            shown = shown[:limit]
        explained[row] = [(i, s, qualitative_strength(s, scale)) for i, s in shown]
    return explained


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


def _logit(p: float) -> float:
    p = min(max(p, 1e-300), 1.0 - 1e-16)
    return log(p) - log1p(-p)
