"""The models and explanations in-process: link-space and output-space SHAP additivity for every
model on arbitrary rows, the attribution methods checked against their definitions, XEMP's
relation to SHAP, the qualitativeStrength table, and typed vs text cells."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.emulator.attribution import base_values, shap_columns, sigmoid
from gateway.emulator.explain import qualitative_strength, shap_explanations, xemp_explanations
from gateway.emulator.features import NumericTerm
from gateway.emulator.models import DEPLOYMENTS, Model
from tests.emulator.payloads import SEED_ROWS, random_rows

MODELS = [d.model for d in DEPLOYMENTS]


def cell_strategy(term) -> st.SearchStrategy:
    missing = st.sampled_from([None, "", "NA"])
    if isinstance(term, NumericTerm):
        number = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False) | st.integers(-1000, 1000)
        return number | number.map(str) | missing
    if term.boolean:
        return st.booleans() | st.sampled_from(["true", "False", "1", "0", "TRUE"]) | missing
    return st.sampled_from(list(term.effects)) | st.text(max_size=5) | missing


def rows_strategy(model: Model) -> st.SearchStrategy:
    terms = {t.name: t for t in model.terms}
    row = st.tuples(*(cell_strategy(terms[f]) for f in model.features))
    return st.lists(row, min_size=1, max_size=30)


def score(model: Model, rows):
    columns = {f: [r[i] for r in rows] for i, f in enumerate(model.features)}
    return model.score(columns, len(rows))


@pytest.mark.parametrize("model", MODELS, ids=[d.name for d in DEPLOYMENTS])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_shap_adds_up_to_the_link_for_every_model(model, data):
    rows = data.draw(rows_strategy(model))
    scores = score(model, rows)
    assert not scores.faults
    for k, base in enumerate(model.base_values):
        for row in range(len(rows)):
            total = base + sum(term[k][row] for term in scores.contributions)
            assert total == pytest.approx(scores.links[k][row], abs=1e-9)
    for row in range(len(rows)):
        if model.kind == "binary":
            p_no, p_yes = (column[row] for column in scores.probabilities)
            if 1e-6 < p_yes < 1 - 1e-6:
                assert math.log(p_yes) - math.log(p_no) == pytest.approx(scores.links[0][row], abs=1e-9)
        elif model.kind == "multiclass":
            if min(column[row] for column in scores.probabilities) < 1e-6:
                continue  # the probabilities underflow: the scores cannot be read back from them
            logs = [math.log(column[row]) for column in scores.probabilities]
            centered = [v - sum(logs) / len(logs) for v in logs]
            assert centered == pytest.approx([link[row] for link in scores.links], abs=1e-9)
        else:
            assert scores.predictions[row] == scores.links[0][row]


def reported_output(model: Model, scores, row: int) -> float:
    """What the vendors report for the explained output: P(positive), the value, P(predicted)."""
    if model.kind == "regression":
        return scores.predictions[row]
    if model.kind == "binary":
        return scores.probabilities[1][row]
    return scores.probabilities[model.classes.index(scores.predictions[row])][row]


def explained_base(model: Model, scores, row: int) -> float:
    if model.kind == "multiclass":
        return base_values(model)[model.classes.index(scores.predictions[row])]
    (base,) = base_values(model)
    return base


@pytest.mark.parametrize("model", MODELS, ids=[d.name for d in DEPLOYMENTS])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_output_space_shap_adds_up_for_every_model(model, data):
    rows = data.draw(rows_strategy(model))
    scores = score(model, rows)
    shap = shap_columns(model, scores)
    assert len(shap) == len(model.terms) and all(len(column) == len(rows) for column in shap)
    for row in range(len(rows)):
        total = explained_base(model, scores, row) + sum(column[row] for column in shap)
        assert total == pytest.approx(reported_output(model, scores, row), abs=1e-9)


def test_one_base_value_per_deployment_and_class():
    churn, value, priority, challenger = MODELS
    assert base_values(challenger) == (pytest.approx(sigmoid(challenger.base_values[0]), abs=0),)
    assert base_values(churn) == (pytest.approx(sigmoid(churn.base_values[0]), abs=0),)
    assert base_values(value) == value.base_values
    bases = base_values(priority)
    assert len(bases) == 3 and sum(bases) == pytest.approx(1.0, abs=1e-12)
    # The base is the output at the background, where every contribution is 0 (all values missing).
    for model in MODELS:
        scores = score(model, [tuple(None for _ in model.features)])
        assert all(abs(column[0]) <= 1e-15 for column in shap_columns(model, scores))
        assert explained_base(model, scores, 0) == pytest.approx(reported_output(model, scores, 0), abs=1e-15)


def test_binary_shap_is_the_aumann_shapley_value():
    """Against its definition: φᵢ·∫₀¹ σ'(z₀ + tΔ) dt, integrated numerically (Simpson, 2 000 steps)."""
    model = MODELS[0]
    rows = [tuple(r) for r in SEED_ROWS] + [tuple(r) for r in random_rows(model, 40, seed=17)]
    scores = score(model, rows)
    shap = shap_columns(model, scores)
    z0 = model.base_values[0]
    steps = 2000
    for row in range(len(rows)):
        delta = scores.links[0][row] - z0
        weights = [1 if k in (0, steps) else 4 if k % 2 else 2 for k in range(steps + 1)]
        slope = sum(w * (p := sigmoid(z0 + delta * k / steps)) * (1 - p) for k, w in enumerate(weights)) / (3 * steps)
        for term, column in zip(scores.contributions, shap, strict=True):
            assert column[row] == pytest.approx(term[0][row] * slope, abs=1e-12)
        # A common positive factor: the log-odds signs and ranking are kept.
        phis = [term[0][row] for term in scores.contributions]
        assert sorted(range(len(phis)), key=lambda i: phis[i]) == sorted(range(len(phis)), key=lambda i: shap[i][row])


def test_multiclass_shap_is_the_exact_shapley_value():
    """Against the definition: each feature's marginal contribution averaged over all 6! orders."""
    model = MODELS[2]
    rows = [tuple(r) for r in random_rows(model, 6, seed=23)]
    scores = score(model, rows)
    shap = shap_columns(model, scores)
    n = len(model.terms)
    for row in range(len(rows)):
        k = model.classes.index(scores.predictions[row])

        def p_k(coalition: frozenset[int], row: int = row, k: int = k) -> float:
            links = [base + sum(scores.contributions[i][j][row] for i in coalition)
                     for j, base in enumerate(model.base_values)]
            return math.exp(links[k]) / sum(math.exp(z) for z in links)

        expected = [0.0] * n
        orders = list(itertools.permutations(range(n)))
        for order in orders:
            before: frozenset[int] = frozenset()
            for i in order:
                expected[i] += (p_k(before | {i}) - p_k(before)) / len(orders)
                before = before | {i}
        assert [column[row] for column in shap] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("model", MODELS, ids=[d.name for d in DEPLOYMENTS])
def test_shap_stays_exact_for_extreme_and_background_rows(model):
    terms = {t.name: t for t in model.terms}
    extreme = tuple(1e12 if isinstance(terms[f], NumericTerm) else None for f in model.features)
    negative = tuple(-1e12 if isinstance(terms[f], NumericTerm) else None for f in model.features)
    near = tuple(terms[f].mean + 1e-9 if isinstance(terms[f], NumericTerm) else None for f in model.features)
    rows = [extreme, negative, near]
    scores = score(model, rows)
    shap = shap_columns(model, scores)
    for row in range(len(rows)):
        values = [column[row] for column in shap]
        assert all(math.isfinite(v) for v in values)
        total = explained_base(model, scores, row) + sum(values)
        assert total == pytest.approx(reported_output(model, scores, row), abs=1e-9)


@pytest.mark.parametrize("model", [m for m in MODELS if m.kind != "multiclass"])
def test_remaining_total_completes_the_shown_explanations(model):
    rows = [tuple(r) for r in SEED_ROWS] if model.kind == "binary" else [
        ("Premium", 30, 70.0, 12.5, 4.1, True), ("Basic", 2, 20.0, 0.0, 1.5, False)]
    scores = score(model, rows)
    shap = shap_columns(model, scores)
    (base,) = base_values(model)
    for limit in (1, 3, None):
        for row, (shown, remaining) in shap_explanations(shap, range(len(rows)), limit).items():
            assert len(shown) == (limit or len(model.terms))
            total = base + sum(s for _, s in shown) + remaining
            assert total == pytest.approx(reported_output(model, scores, row), abs=1e-12)


def test_xemp_equals_shap_for_the_linear_regression_and_differs_for_the_classifier():
    regression = DEPLOYMENTS[1].model
    scores = score(regression, [("Premium", 30, 70.0, 12.5, 4.1, True)])
    xemp = {i: s for i, s, _ in xemp_explanations(regression, scores, [0], None)[0]}
    for i, term in enumerate(scores.contributions):
        assert xemp.get(i, 0.0) == pytest.approx(term[0][0], abs=1e-9)
    churn = DEPLOYMENTS[0].model
    scores = score(churn, [tuple(SEED_ROWS[0])])
    xemp = {i: s for i, s, _ in xemp_explanations(churn, scores, [0], None)[0]}
    shap = [term[0][0] for term in scores.contributions]
    assert any(abs(xemp[i] - shap[i]) > 1e-3 for i in range(len(shap)))
    # Same direction of effect for every feature that matters.
    assert all(math.copysign(1, xemp[i]) == math.copysign(1, s) for i, s in enumerate(shap) if abs(s) > 0.05)


@pytest.mark.parametrize("strength, normaliser, symbol", [
    (0.8, 1.0, "+++"), (-0.76, 1.0, "---"), (0.75, 1.0, "++"), (-0.5, 1.0, "--"), (0.26, 1.0, "++"),
    (0.25, 1.0, "+"), (-0.1, 1.0, "-"), (0.0011, 1.0, "+"), (0.001, 1.0, "<+"), (-0.0005, 1.0, "<-"),
    (0.0, 1.0, "<+"), (3.0, 4.0, "++"), (0.0, 0.0, "<+"),
])
def test_qualitative_strength_table(strength, normaliser, symbol):
    assert qualitative_strength(strength, normaliser) == symbol


def test_typed_and_text_cells_score_alike():
    model = DEPLOYMENTS[0].model
    typed = score(model, [tuple(r) for r in SEED_ROWS])
    text = score(model, [tuple(("true" if v else "false") if isinstance(v, bool) else str(v) for v in r)
                         for r in SEED_ROWS])
    assert typed.contributions == text.contributions and typed.predictions == text.predictions


def test_unusable_cells_are_reported_per_row_with_the_first_feature():
    model = DEPLOYMENTS[0].model
    rows = [list(SEED_ROWS[0]), list(SEED_ROWS[1]), list(SEED_ROWS[0])]
    rows[1][3] = "abc"  # BaseFee
    rows[1][2] = "maybe"  # HasRenewed, earlier in request order
    rows[2][7] = [1]  # Promotion
    scores = score(model, rows)
    assert set(scores.faults) == {1, 2}
    assert scores.faults[1][0] == "HasRenewed" and "maybe" in scores.faults[1][1]
    assert scores.faults[2][0] == "Promotion"
    assert scores.predictions[0] == "no" and scores.predictions[1] is None
    assert scores.probabilities[1][2] is None
