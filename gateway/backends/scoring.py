"""The types that cross the vendor boundary: a complete request, and one normalized result per row.

Encoders turn a batch of feature rows into a :class:`ScoringRequest`; decoders turn the response
into one :class:`ScoredRow` per input row, in input order. Nothing here knows about Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ScoringRequest:
    """Everything needed to send one HTTP request, plus what the decoder needs to align the answer."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    rows: int
    # Values of the index column in input order, when alignment uses a caller-chosen index
    # (Qlik ``index``); None when the API's own row ids are used.
    row_keys: list[Any] | None = None
    # Explanations asked for: "shap", "xemp", "auto" (deployment default) or None.
    explanations: str | None = None


@dataclass(slots=True)
class Explanation:
    feature: str
    value: Any
    strength: float
    qualitative: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "strength": self.strength,
                "qualitative": self.qualitative}


@dataclass(slots=True)
class ScoredRow:
    """One input row's outcome: a prediction, or the reason the model did not predict it."""

    prediction: Any = None
    probabilities: dict[str, float] | None = None
    threshold: float | None = None
    explanations: list[Explanation] = field(default_factory=list)  # by |strength| descending
    explanation_kind: str | None = None  # "shap" | "xemp" | None
    passthrough: dict[str, Any] | None = None
    base_value: float | None = None
    remaining_total: float | None = None
    not_predicted_reason: str | None = None

    @property
    def predicted(self) -> bool:
        return self.not_predicted_reason is None
