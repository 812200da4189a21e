"""Comparison records: one per compared input, the champion's and the challenger's answers side by side.

Pure functions, no I/O. A comparison record is keyed and carries headers like its input, on
``outputs.comparisons``::

    {"id": "churn-features/3/1042", "pipeline": "churn",
     "champion":   {"backend": "qlik", "deployment": "…", "prediction": "yes",
                    "probabilities": {"no": 0.42, "yes": 0.58}, "latency_ms": 12.4, "refused": null},
     "challenger": {"backend": "datarobot", "deployment": "…", "prediction": "no",
                    "probabilities": {"no": 0.55, "yes": 0.45}, "latency_ms": 20.1, "refused": null},
     "agree": false, "difference": -0.13}

``agree``: both predicted the same class (classification), or values within the configured
tolerance (regression); null when either side refused the row, since there is nothing to compare.
``difference``: challenger minus champion, of the positive class's probability for two classes
(the second class in sorted order, e.g. ``yes`` of ``no``/``yes``, ``1`` of ``0``/``1``), of the
champion's predicted class's probability for more classes, or of the predicted value for a
regression; null when it cannot be computed (a refusal, labels that are not numbers).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.backends.codec import ScoredRow
from gateway.kafka.sink import Message
from gateway.stream.records import InputRecord, Rejected, dumps, record_id

Outcome = ScoredRow | Rejected
_SCALE = float(1 << 32)


def sampled_by_key(record: InputRecord, rate: float) -> bool:
    """Whether ``record`` is compared: a hash of its key, so the same customers are always compared
    whichever replica reads them and however often they restart; a record without a key is chosen
    by its ``id`` instead."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    key = record.key
    data = key if key is not None else record_id(record).encode()
    return zlib.crc32(data) / _SCALE < rate


@dataclass(frozen=True, slots=True)
class Side:
    """One deployment's part of a comparison: who answered, and how fast (the request's latency)."""

    backend: str
    deployment: str
    latency_ms: float


def side_document(side: Side, outcome: Outcome) -> dict[str, object]:
    if isinstance(outcome, Rejected):
        return {"backend": side.backend, "deployment": side.deployment, "prediction": None,
                "probabilities": None, "latency_ms": side.latency_ms,
                "refused": {"stage": outcome.stage, "reason": outcome.reason, "status": outcome.status}}
    return {"backend": side.backend, "deployment": side.deployment, "prediction": outcome.prediction,
            "probabilities": outcome.probabilities, "latency_ms": side.latency_ms, "refused": None}


def _number(value: object) -> float | None:
    """A prediction as a number: a JSON number, or a string that reads as one (a label like ``"1"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):  # null, a list or an object: float() would refuse it too
        return None
    try:
        return float(value)
    except ValueError:
        return None


def agreement(champion: Outcome, challenger: Outcome, tolerance: float) -> tuple[bool | None, float | None]:
    """``(agree, difference)`` as the module docstring defines them."""
    if isinstance(champion, Rejected) or isinstance(challenger, Rejected):
        return None, None
    ours, theirs = champion.probabilities, challenger.probabilities
    if ours and theirs:
        agree = champion.prediction == challenger.prediction
        classes = sorted(ours)
        focus = classes[1] if len(classes) == 2 else champion.prediction
        if focus in ours and focus in theirs:
            return agree, round(theirs[focus] - ours[focus], 6)
        return agree, None
    a, b = _number(champion.prediction), _number(challenger.prediction)
    if a is None or b is None:
        return champion.prediction == challenger.prediction, None
    difference = b - a
    return abs(difference) <= tolerance, round(difference, 6)


@dataclass(frozen=True, slots=True)
class Compared:
    """One batch's comparison records and what they count as."""

    messages: list[Message]
    both: int  # records both sides predicted (``agree`` is true or false)
    agreed: int
    differences: list[float]


def comparisons(records: Sequence[InputRecord], champion: Sequence[Outcome], challenger: Sequence[Outcome], *,
                pipeline: str, topic: str, sides: tuple[Side, Side], tolerance: float) -> Compared:
    """One comparison record per record; ``champion``/``challenger`` hold their outcomes in the same order."""
    ours, theirs = sides
    messages: list[Message] = []
    both = agreed = 0
    differences: list[float] = []
    for record, mine, other in zip(records, champion, challenger, strict=True):
        agree, difference = agreement(mine, other, tolerance)
        both += agree is not None
        agreed += agree is True
        if difference is not None:
            differences.append(difference)
        doc: dict[str, object] = {"id": record_id(record), "pipeline": pipeline,
                                  "champion": side_document(ours, mine),
                                  "challenger": side_document(theirs, other),
                                  "agree": agree, "difference": difference}
        messages.append((topic, record.key, dumps(doc), record.headers))
    return Compared(messages, both, agreed, differences)
