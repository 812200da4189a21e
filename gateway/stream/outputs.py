"""What a scored batch publishes: its records (``gateway.stream.records``) addressed to the output topics.

Every input record yields a prediction on ``outputs.predictions`` or a dead letter on
``outputs.dead_letter``; explanations are embedded in the prediction, or, with
``outputs.explanations`` set, a record of their own on that topic (published with the prediction,
or later by the deferred explanation lane). Output keys and headers are the input's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.kafka.client import Message
from gateway.scoring.dispatcher import Outcome
from gateway.stream.records import (
    InputRecord,
    PredictionWriter,
    Rejected,
    dead_letter_document,
    dumps,
    explanation_document,
)


@dataclass(slots=True)
class Published:
    """The messages of one batch and what they count as."""

    messages: list[Message] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # for each message, the index of its input record
    predicted: int = 0
    dead_by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def dead(self) -> int:
        return sum(self.dead_by_stage.values())


@dataclass(frozen=True, slots=True)
class Outputs:
    pipeline: str
    backend: str
    deployment: str
    predictions: str
    dead_letter: str
    explanations: str | None  # None: explanations embedded in prediction records
    explanations_with_predictions: bool = True  # False: the deferred lane publishes them

    def batch(self, records: Sequence[InputRecord], outcomes: Sequence[Outcome], latency_ms: float) -> Published:
        """One message per record, plus an explanation record per explained prediction when they go
        with the predictions to their own topic."""
        name, predictions, dead_letter = self.pipeline, self.predictions, self.dead_letter
        explanations = self.explanations if self.explanations_with_predictions else None
        write = PredictionWriter(pipeline=name, backend=self.backend, deployment=self.deployment,
                                 latency_ms=round(latency_ms, 3), embed_explanations=self.explanations is None).write
        out = Published()
        append, owner, stages = out.messages.append, out.owners.append, out.dead_by_stage
        for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True)):
            key, headers = record.key, record.headers
            owner(i)
            if isinstance(outcome, Rejected):
                stages[outcome.stage] = stages.get(outcome.stage, 0) + 1
                append((dead_letter, key, dumps(dead_letter_document(record, outcome, pipeline=name)), headers))
                continue
            append((predictions, key, write(record, outcome), headers))
            if explanations is not None and outcome.explanations:
                owner(i)
                append((explanations, key, dumps(explanation_document(record, outcome, pipeline=name)), headers))
        out.predicted = len(records) - out.dead
        return out

    def rejects(self, rejects: Iterable[tuple[InputRecord, Rejected]]) -> Published:
        """Dead letters of records refused before scoring (stages decode and validate)."""
        out = Published()
        topic, name, stages = self.dead_letter, self.pipeline, out.dead_by_stage
        for i, (record, rejected) in enumerate(rejects):
            stages[rejected.stage] = stages.get(rejected.stage, 0) + 1
            out.owners.append(i)
            out.messages.append((topic, record.key, dumps(dead_letter_document(record, rejected, pipeline=name)),
                                 record.headers))
        return out

    def explained(self, records: Sequence[InputRecord], outcomes: Sequence[Outcome]) -> Published:
        """The deferred lane's explanation records: one per record it explained. A record whose
        explanation request failed gets an explanation record with the reason, so a consumer
        waiting for it is not left waiting."""
        topic, name = self.explanations, self.pipeline
        assert topic is not None
        out = Published()
        for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True)):
            if isinstance(outcome, Rejected):
                doc = explanation_document(record, None, pipeline=name, error=outcome.reason)
            elif outcome.explanations:
                doc = explanation_document(record, outcome, pipeline=name)
            else:
                continue  # nothing to explain (e.g. outside DataRobot's thresholds)
            out.owners.append(i)
            out.messages.append((topic, record.key, dumps(doc), record.headers))
        return out


def tally(outcomes: Iterable[Outcome]) -> Published:
    """What these outcomes count as, without their messages: the counts of the part of a batch that
    was delivered when another part was abandoned."""
    out = Published()
    stages = out.dead_by_stage
    for outcome in outcomes:
        if isinstance(outcome, Rejected):
            stages[outcome.stage] = stages.get(outcome.stage, 0) + 1
        else:
            out.predicted += 1
    return out
