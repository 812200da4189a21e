"""The emulator's deterministic models and their exact contributions in link space.

Every model is linear in its link: output k's link is ``z_k = base_k + Σ_i φ_ik`` where ``φ_ik`` is
feature i's centered contribution (see :mod:`gateway.emulator.features`) and ``base_k`` the link at
the background. With a fixed background and independent features, ``φ_ik`` *is* the exact
(interventional) SHAP value of feature i in link space, so ``base + Σ φ = z`` holds to float
rounding (≤ 1e-12). The values the vendors report are in output space (probabilities for the
classifiers); :mod:`gateway.emulator.attribution` derives them from these contributions.

The link, per kind:

* ``binary`` — log-odds of the positive class (the second class, e.g. ``yes``);
  ``P(positive) = 1 / (1 + e^(−z))``.
* ``regression`` — the target's own units (identity link).
* ``multiclass`` — centered log-probabilities: each class's score is ``log p_k − mean_j log p_j``
  (softmax weights are centered across classes, so the scores sum to zero and can be recovered from
  the probabilities alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import exp
from typing import Literal, TypeAlias, TypedDict

from gateway.emulator.features import ColumnFaults, Term, boolean, categorical
from gateway.emulator.features import NumericTerm as numeric
from gateway.json_types import JsonValue

ModelKind = Literal["binary", "regression", "multiclass"]
# A row's prediction: a class label, a regression value, or None for a row the model could not read.
Prediction: TypeAlias = str | float | None
# One column of raw request cells, as a vendor route read them.
Column: TypeAlias = Sequence[JsonValue]


class ModelDescription(TypedDict):
    kind: ModelKind
    target: str
    classes: list[str] | None
    features: list[str]


class DeploymentDescription(ModelDescription):
    """A ``GET /_emulator/deployments`` entry."""

    name: str
    qlik_id: str
    datarobot_id: str


class CatalogDescription(TypedDict):
    deployments: list[DeploymentDescription]


@dataclass(slots=True)
class Scores:
    """One request's model output, column-wise: lists are indexed by row.

    Rows listed in ``faults`` were not predicted: their ``predictions``/``probabilities`` are None
    and their contributions are 0.
    """

    rows: int
    contributions: list[list[list[float]]]  # [term][output][row]: link-space SHAP values, model order
    links: list[list[float]]  # [output][row]
    predictions: list[Prediction]  # per row
    probabilities: list[list[float | None]] | None  # [class][row] in Model.classes order
    faults: dict[int, tuple[str, str]]  # row -> (feature, reason) for the first unusable cell


@dataclass(frozen=True)
class Model:
    """A deployed model: what it predicts, the features it reads, and how."""

    kind: ModelKind
    target: str
    classes: tuple[str, ...] | None  # ascending; binary: (negative, positive)
    features: tuple[str, ...]  # the order a client sends them in
    terms: tuple[Term, ...]  # the model's own order, which is the order of Qlik's SHAP columns
    intercepts: tuple[float, ...]  # one per output: 1 for binary and regression, one per class
    threshold: float = 0.5
    # The range of predictions seen in training, for DataRobot's prediction warnings (regression):
    # a prediction outside it is an outlier. None = the deployment has prediction warnings off.
    prediction_range: tuple[float, float] | None = None
    # The model this one challenges: each request counts the rows on which the two disagree, so a
    # test knows the agreement a comparison must find (GET /_emulator/stats, "challenger").
    champion: Model | None = None
    base_values: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        base = list(self.intercepts)
        for term in self.terms:
            for k, expected in enumerate(term.expected()):
                base[k] += expected
        object.__setattr__(self, "base_values", tuple(base))
        assert sorted(self.features) == sorted(t.name for t in self.terms), "features and terms differ"

    @property
    def positive_class(self) -> str | None:
        return self.classes[1] if self.kind == "binary" and self.classes else None

    @property
    def outputs(self) -> int:
        return len(self.intercepts)

    def score(self, columns: Mapping[str, Column], rows: int) -> Scores:
        """Score every row; ``columns`` maps each model feature to its column of raw cells."""
        contributions: list[list[list[float]]] = []
        faults: dict[int, tuple[str, str]] = {}
        column_faults: list[tuple[str, ColumnFaults]] = []
        for term in self.terms:
            parts, bad = term.contributions(columns[term.name])
            contributions.append(parts)
            if bad:
                column_faults.append((term.name, bad))
        # The first unusable cell of a row in request order names the row's fault.
        order = {name: i for i, name in enumerate(self.features)}
        for name, bad in sorted(column_faults, key=lambda item: order[item[0]]):
            for row, reason in bad.items():
                faults.setdefault(row, (name, reason))
        links = [[base + sum(parts) for parts in zip(*(c[k] for c in contributions), strict=False)] if contributions
                 else [base] * rows
                 for k, base in enumerate(self.base_values)]
        predictions, probabilities = self._outputs(links)
        for row in faults:
            predictions[row] = None
            if probabilities is not None:
                for column in probabilities:
                    column[row] = None
        return Scores(rows, contributions, links, predictions, probabilities, faults)

    def disagreements(self, columns: Mapping[str, Column], rows: int) -> int | None:
        """For a challenger: the rows that it and its champion both predict, but differently."""
        if self.champion is None:
            return None
        ours = self.score(columns, rows).predictions
        theirs = self.champion.score(columns, rows).predictions
        return sum(1 for a, b in zip(ours, theirs, strict=True) if a is not None and b is not None and a != b)

    def _outputs(self, links: list[list[float]]) -> tuple[list[Prediction], list[list[float | None]] | None]:
        if self.kind == "regression":
            return list(links[0]), None
        if self.kind == "binary":
            negative, positive = self.classes  # type: ignore[misc]
            # Two branches keep exp() from overflowing whatever the sign of z.
            p_pos: list[float | None] = [1.0 / (1.0 + exp(-z)) if z >= 0.0 else (e := exp(z)) / (1.0 + e)
                                         for z in links[0]]
            threshold = self.threshold
            predictions: list[Prediction] = [positive if p >= threshold else negative  # type: ignore[operator]
                                             for p in p_pos]
            return predictions, [[1.0 - p for p in p_pos], p_pos]  # type: ignore[operator]
        return _softmax(links, self.classes)  # type: ignore[arg-type]

    def describe(self) -> ModelDescription:
        return {"kind": self.kind, "target": self.target,
                "classes": list(self.classes) if self.classes else None,
                "features": list(self.features)}


def _softmax(links: list[list[float]], classes: tuple[str, ...]) -> tuple[list[Prediction], list[list[float | None]]]:
    probabilities: list[list[float | None]] = [[] for _ in classes]
    predictions: list[Prediction] = []
    for scores in zip(*links, strict=False):
        top = max(scores)
        weights = [exp(s - top) for s in scores]
        total = sum(weights)
        for column, weight in zip(probabilities, weights, strict=False):
            column.append(weight / total)
        predictions.append(classes[scores.index(top)])
    return predictions, probabilities


def centered_across_classes(weights: Sequence[float]) -> tuple[float, ...]:
    """Softmax weights shifted to sum to zero: same probabilities, identifiable scores."""
    mean = sum(weights) / len(weights)
    return tuple(w - mean for w in weights)


@dataclass(frozen=True)
class Deployment:
    """A model as a vendor exposes it: a name plus each vendor's own id format."""

    name: str
    qlik_id: str  # UUID, as Qlik deployment ids are
    datarobot_id: str  # 24 lowercase hex digits, as DataRobot deployment ids are
    model: Model

    def describe(self) -> DeploymentDescription:
        """The ``GET /_emulator/deployments`` entry."""
        return {"name": self.name, **self.model.describe(), "qlik_id": self.qlik_id,
                "datarobot_id": self.datarobot_id}


# ---- the three deployments ------------------------------------------------------------------
# Weights are chosen so that the Qlik tutorial's two customers land near the tutorial's own
# answer (P(churn) ≈ 0.43 → "no" and ≈ 0.58 → "yes") and every effect points the plausible way.

PLAN_LEVELS = {"Basic": 0.30, "Standard": 0.40, "Premium": 0.25, "Enterprise": 0.05}

CHURN = Model(
    kind="binary",
    target="Churned",
    classes=("no", "yes"),
    features=("PlanType", "NumberOfPenalties", "HasRenewed", "BaseFee", "ServiceTickets",
              "AdditionalFeatureSpend", "ServiceRating", "Promotion"),
    terms=(
        categorical("PlanType", {"Basic": (0.25,), "Standard": (0.0,), "Premium": (-0.45,),
                                 "Enterprise": (-0.7,)}, PLAN_LEVELS),
        numeric("NumberOfPenalties", (0.13,), mean=1.5, exemplars=(0.0, 1.0, 2.0, 3.0), integer=True),
        numeric("BaseFee", (0.018,), mean=60.0, exemplars=(30.0, 45.0, 60.0, 75.0, 90.0)),
        boolean("HasRenewed", (-0.3,), share_true=0.6),
        numeric("ServiceTickets", (0.08,), mean=3.0, exemplars=(0.0, 1.0, 3.0, 5.0, 6.0), integer=True),
        numeric("AdditionalFeatureSpend", (-0.012,), mean=20.0, exemplars=(0.0, 10.0, 20.0, 30.0, 40.0)),
        boolean("Promotion", (-0.2,), share_true=0.3),
        numeric("ServiceRating", (-0.3,), mean=3.9, exemplars=(2.9, 3.4, 3.9, 4.4, 4.9)),
    ),
    intercepts=(0.214,),
)

CUSTOMER_VALUE = Model(
    kind="regression",
    target="LifetimeValue",
    classes=None,
    features=("PlanType", "TenureMonths", "BaseFee", "AdditionalFeatureSpend", "ServiceRating", "HasRenewed"),
    terms=(
        numeric("TenureMonths", (38.0,), mean=24.0, exemplars=(6.0, 12.0, 24.0, 36.0, 42.0), integer=True),
        numeric("BaseFee", (9.5,), mean=60.0, exemplars=(30.0, 45.0, 60.0, 75.0, 90.0)),
        categorical("PlanType", {"Basic": (-120.0,), "Standard": (0.0,), "Premium": (260.0,),
                                 "Enterprise": (900.0,)}, PLAN_LEVELS),
        numeric("AdditionalFeatureSpend", (14.0,), mean=20.0, exemplars=(0.0, 10.0, 20.0, 30.0, 40.0)),
        boolean("HasRenewed", (310.0,), share_true=0.6),
        numeric("ServiceRating", (85.0,), mean=3.9, exemplars=(2.9, 3.4, 3.9, 4.4, 4.9)),
    ),
    intercepts=(-250.0,),
    prediction_range=(0.0, 4000.0),
)

# Classes in ascending order, as Qlik lists class columns: high, low, medium.
SUPPORT_PRIORITY = Model(
    kind="multiclass",
    target="Priority",
    classes=("high", "low", "medium"),
    features=("Channel", "OpenTickets", "WaitMinutes", "ServiceRating", "PlanType", "IsOutage"),
    terms=(
        boolean("IsOutage", centered_across_classes((2.2, -1.4, 0.2)), share_true=0.1),
        numeric("OpenTickets", centered_across_classes((0.35, -0.3, 0.05)), mean=2.0,
                exemplars=(0.0, 1.0, 2.0, 3.0, 4.0), integer=True),
        numeric("WaitMinutes", centered_across_classes((0.04, -0.03, 0.0)), mean=15.0,
                exemplars=(0.0, 5.0, 15.0, 25.0, 30.0)),
        categorical("Channel", {"phone": centered_across_classes((0.6, -0.4, 0.1)),
                                "chat": centered_across_classes((0.2, -0.1, 0.2)),
                                "email": centered_across_classes((-0.4, 0.5, 0.0)),
                                "web": centered_across_classes((-0.3, 0.4, 0.0))},
                    {"phone": 0.3, "chat": 0.3, "email": 0.25, "web": 0.15}),
        categorical("PlanType", {"Basic": centered_across_classes((-0.3, 0.3, 0.0)),
                                 "Standard": centered_across_classes((0.0, 0.0, 0.1)),
                                 "Premium": centered_across_classes((0.4, -0.3, 0.1)),
                                 "Enterprise": centered_across_classes((0.9, -0.7, 0.2))}, PLAN_LEVELS),
        numeric("ServiceRating", centered_across_classes((-0.5, 0.4, 0.0)), mean=3.9,
                exemplars=(2.9, 3.4, 3.9, 4.4, 4.9)),
    ),
    intercepts=centered_across_classes((-0.9, 0.5, 0.4)),
)

# A challenger of CHURN: the same features and classes, slightly heavier on penalties, tickets and
# service rating; on the demo's sample data the two disagree on about one customer in nine.
CHURN_CHALLENGER = Model(
    kind="binary",
    target="Churned",
    classes=("no", "yes"),
    features=CHURN.features,
    terms=(
        categorical("PlanType", {"Basic": (0.25,), "Standard": (0.0,), "Premium": (-0.45,),
                                 "Enterprise": (-0.7,)}, PLAN_LEVELS),
        numeric("NumberOfPenalties", (0.15,), mean=1.5, exemplars=(0.0, 1.0, 2.0, 3.0), integer=True),
        numeric("BaseFee", (0.017,), mean=60.0, exemplars=(30.0, 45.0, 60.0, 75.0, 90.0)),
        boolean("HasRenewed", (-0.31,), share_true=0.6),
        numeric("ServiceTickets", (0.085,), mean=3.0, exemplars=(0.0, 1.0, 3.0, 5.0, 6.0), integer=True),
        numeric("AdditionalFeatureSpend", (-0.012,), mean=20.0, exemplars=(0.0, 10.0, 20.0, 30.0, 40.0)),
        boolean("Promotion", (-0.2,), share_true=0.3),
        numeric("ServiceRating", (-0.33,), mean=3.9, exemplars=(2.9, 3.4, 3.9, 4.4, 4.9)),
    ),
    intercepts=(0.214,),
    champion=CHURN,
)

DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment("churn", "3f8e2a52-6a1b-4c2e-9d8f-4b7a1c2e5d90", "65f1c0de9a3b4c2d1e0f7a81", CHURN),
    Deployment("customer_value", "8c4d1e7b-2f3a-4b5c-8d6e-9f0a1b2c3d4e", "65f1c0de9a3b4c2d1e0f7a82", CUSTOMER_VALUE),
    Deployment("support_priority", "b6a9f3c1-7d2e-4f8a-a5b4-c3d2e1f0a9b8", "65f1c0de9a3b4c2d1e0f7a83",
               SUPPORT_PRIORITY),
    Deployment("churn_challenger", "d2f7c9e4-1b3a-4e6d-8c5f-7a9b0c1d2e3f", "65f1c0de9a3b4c2d1e0f7a84",
               CHURN_CHALLENGER),
)


@dataclass(frozen=True)
class DeploymentCatalog:
    """Finds a deployment by name or by a vendor's id."""

    deployments: tuple[Deployment, ...] = DEPLOYMENTS

    def qlik(self, ref: str) -> Deployment | None:
        return next((d for d in self.deployments if ref in (d.name, d.qlik_id)), None)

    def datarobot(self, ref: str) -> Deployment | None:
        return next((d for d in self.deployments if ref in (d.name, d.datarobot_id)), None)

    def describe(self) -> CatalogDescription:
        return {"deployments": [d.describe() for d in self.deployments]}
