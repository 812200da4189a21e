"""The output records, byte for byte, over a fixed input: what consumers parse must not change when
the code that writes it is made faster.

The golden file was written by this very test (``SG_WRITE_GOLDEN=1``) before any optimisation of the
output path; a difference is a change of the wire format (PRODUCT.md §4), never noise. The input
covers predictions (binary, multiclass, regression), embedded and separate explanations, SHAP and
XEMP, passthrough values, hostile strings, nulls, keys and headers, and dead letters of every stage,
including values that are not UTF-8 and NaN, which the decoder refuses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from gateway.backends.codec import Explanation, ScoredRow, explanation
from gateway.kafka.source import decode_value
from gateway.stream.outputs import Outputs
from gateway.stream.records import STAGE_NOT_PREDICTED, STAGE_SCORE, STAGE_VALIDATE, Rejected

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "outputs.jsonl"
# Records with the fields DataRobot's class selectors, prediction warnings and adjusted predictions
# add (written by this test with SG_WRITE_GOLDEN=1 when they were introduced; outputs.jsonl untouched).
GOLDEN_DATAROBOT_FIELDS = GOLDEN.with_name("outputs_datarobot_fields.jsonl")
HOSTILE = ['comma, "quote"', "line\nbreak\r\n", "tab\tnul\x00", "unicode ü 名前 🙂 \u2028", "=cmd|' /C calc'!A0", ""]


def record(offset: int, value: bytes | None, key: bytes | None = b"customer-1", partition: int = 3,
           headers: list[tuple[str, bytes]] | None = None) -> Any:
    return ConsumerRecord("churn-features", partition, offset, 1_763_800_000_000 + offset, 0, key, value, None,
                          len(value or b""), len(key or b""), headers if headers is not None else [("trace", b"a1")])


def explanations(kind: str) -> list[Explanation]:
    qualitative = "+++" if kind == "xemp" else None
    return [explanation("BaseFee", 80.0, 0.29, qualitative), explanation("PlanType", "Premium", -0.125, qualitative),
            explanation("Note", HOSTILE[0], 1e-05, qualitative)]


def scored() -> list[tuple[Any, Any]]:
    """(record, outcome) pairs as the dispatcher hands them to the output stage."""
    rows: list[tuple[Any, Any]] = []
    for i, text in enumerate(HOSTILE):
        rows.append((record(100 + i, orjson.dumps({"Note": text}), key=text.encode() or None),
                     ScoredRow("yes" if i % 2 else "no", {"no": 0.42, "yes": 0.58}, None, explanations("shap"),
                               "shap", {"customer_id": text, "rank": i}, 0.3964, -0.0897)))
    rows.append((record(110, b'{"a": 1}', headers=[]),
                 ScoredRow("medium", {"high": 0.1, "low": 0.2, "medium": 0.7}, None, [], None, None)))
    rows.append((record(111, b'{"a": 2}', key=None),
                 ScoredRow(2103.5123456789, None, None, explanations("xemp"), "xemp", None)))
    rows.append((record(112, b'{"a": null}'),
                 ScoredRow("1.0", {"1.0": 0.31, "0.0": 0.69}, 0.5, explanations("xemp"), "xemp",
                           {"row": None})))
    rows.append((record(113, b'{"BaseFee": "abc"}'),
                 Rejected(STAGE_SCORE, "Invalid value in row 0, column 'BaseFee': 'abc'", 422, 3)))
    rows.append((record(114, b'{"BaseFee": "$80.00"}'),
                 Rejected(STAGE_NOT_PREDICTED, "Feature 'BaseFee': value '$80.00' is not a number", 200, 1)))
    rows.append((record(115, b'{"BaseFee": {"nested": 1}}'),
                 Rejected(STAGE_VALIDATE, "feature 'BaseFee': a dict is not a scalar feature value")))
    rows.append((record(116, b"\xff\xfe not utf-8"), Rejected(STAGE_SCORE, "gave up after 6 attempts: boom", None, 6)))
    return rows


def decode_rejects() -> list[tuple[Any, Any]]:
    """Values the decoder refuses, as the intake dead-letters them."""
    pairs = []
    for offset, value in enumerate([b"{not json", b"[1, 2]", b'{"BaseFee": NaN}', b'{"x": Infinity}',
                                    b"\xff\xfe\x00", None, b'"a string"'], start=200):
        outcome = decode_value(value)
        assert isinstance(outcome, Rejected)
        pairs.append((record(offset, value), outcome))
    return pairs


def hostile_names() -> list[tuple[Any, Any]]:
    """Records of other topics and partitions, a passthrough with a non-string key, and names that
    need escaping in every part an output record copies from the configuration."""
    rows: list[tuple[Any, Any]] = []
    sources = [("fraud.features_v2", 0), ("churn-features", 11), ("fraud.features_v2", 0)]
    for i, (topic, partition) in enumerate(sources):
        source = ConsumerRecord(topic, partition, 9_000_000_000 + i, 1_763_800_000_000 - i, 0, b"k", b'{"a": 1}',
                                None, 8, 1, [])
        rows.append((source, ScoredRow(True if i else None, {"%d": 0.5, '"q"': 0.5} if i != 1 else None,
                                       0.5 if i == 2 else None, [], None, {7: "seven"} if i == 1 else None)))
    return rows


def wire() -> list[dict[str, Any]]:
    """Every message the output stage builds, as (topic, key, value, headers)."""
    produced: list[dict[str, Any]] = []
    configurations = [("churn", "qlik", "3f8e2a52-6a1b-4c2e-9d8f-4b7a1c2e5d90", None, 12.34567),
                      ("churn", "qlik", "3f8e2a52-6a1b-4c2e-9d8f-4b7a1c2e5d90", "churn-explanations", 12.34567),
                      ('fraud "%s" 100% \u2028\\', "datarobot", "dep/%d\t", None, 0.1 + 0.2)]
    for pipeline, backend, deployment, explanations_topic, latency_ms in configurations:
        outputs = Outputs(pipeline=pipeline, backend=backend, deployment=deployment,
                          predictions="churn-predictions", dead_letter="churn-dead-letter",
                          explanations=explanations_topic)
        pairs = scored() + (hostile_names() if backend == "datarobot" else [])
        published = outputs.batch([r for r, _ in pairs], [o for _, o in pairs], latency_ms)
        rejects = outputs.rejects(decode_rejects())
        deferred = outputs.explained([r for r, _ in pairs], [o for _, o in pairs]) if explanations_topic else None
        for batch in (published, rejects, *([deferred] if deferred else [])):
            for (topic, key, value, headers), owner in zip(batch.messages, batch.owners, strict=True):
                produced.append({"topic": topic, "key": key.decode("utf-8", "backslashreplace") if key else None,
                                 "value": value.decode("utf-8") if value is not None else None,
                                 "headers": [[name, data.decode()] for name, data in headers], "owner": owner})
    return produced


def test_output_records_are_byte_for_byte_the_golden_ones() -> None:
    lines = [orjson.dumps(entry).decode() for entry in wire()]
    if os.environ.get("SG_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: U+2028 is data
    assert len(lines) == len(expected)
    for got, want in zip(lines, expected, strict=True):
        assert got == want


def test_a_record_without_an_integer_timestamp_is_written_as_its_document() -> None:
    """The per-batch format only fits integer offsets and timestamps; anything else (a record built
    by hand, not by the client) takes the document path and is written the same way."""
    from gateway.stream.records import PredictionWriter, dumps, prediction_document

    source = ConsumerRecord("t", 0, 5, None, 0, None, b"{}", None, 2, 0, [])
    row = ScoredRow("yes", {"yes": 1.0}, None, [], None, {"id": 1})
    names: dict[str, Any] = {"pipeline": "p%", "backend": "qlik", "deployment": "d", "latency_ms": 1.5}
    for embed in (True, False):
        written = PredictionWriter(embed_explanations=embed, **names).write(source, row)  # type: ignore[arg-type]
        assert written == dumps(prediction_document(source, row, embed_explanations=embed, **names))  # type: ignore[arg-type]
        assert orjson.loads(written)["source"]["timestamp_ms"] is None


def datarobot_fields() -> list[tuple[Any, Any]]:
    """Per-class explanations (XEMP and SHAP), a prediction warning either way, an adjusted
    prediction, unmodelled vendor fields (hostile text included), alone and together."""
    def per_class(kind: str) -> list[Explanation]:
        qualitative = "++" if kind == "xemp" else None
        return [{**explanation("OpenTickets", 3, -0.9, qualitative), "class": "medium"},  # type: ignore[typeddict-item]
                {**explanation("Channel", "phone", 0.4, qualitative), "class": "high"},
                {**explanation("Channel", HOSTILE[3], 0.2, qualitative), "class": HOSTILE[0]}]
    probabilities = {"high": 0.6, "low": 0.1, "medium": 0.3}
    rows: list[tuple[Any, Any]] = [
        (record(300, b'{"a": 1}'), ScoredRow("high", probabilities, None, per_class("xemp"), "xemp", None)),
        (record(301, b'{"a": 2}'), ScoredRow("high", probabilities, None, per_class("shap"), "shap",
                                             {"ticket": "T-1"}, 0.33, -0.01)),
        (record(302, b'{"a": 3}'), ScoredRow(7351.5, None, None, [], None, None, prediction_warning=True)),
        (record(303, b'{"a": 4}'), ScoredRow(1351.0, None, None, [], None, None, prediction_warning=False)),
        (record(304, b'{"a": 5}'), ScoredRow(120.5, None, None, [], None, None, adjusted_prediction=98.25,
                                             vendor_fields={"adjustedPredictionValues": [{"label": "Claims",
                                                                                           "value": 98.25}]})),
        (record(305, b'{"a": 6}', key=None),
         ScoredRow(55.0, None, None, explanations("shap"), "shap", {"customer_id": HOSTILE[1]}, 0.1, 0.2,
                   prediction_warning=True, adjusted_prediction=50.0,
                   vendor_fields={HOSTILE[2]: HOSTILE[4], "n": None})),
    ]
    return rows


def datarobot_wire() -> list[dict[str, Any]]:
    produced: list[dict[str, Any]] = []
    for explanations_topic in (None, "churn-explanations"):
        outputs = Outputs(pipeline="priority", backend="datarobot", deployment="65f1c0de9a3b4c2d1e0f7a83",
                          predictions="churn-predictions", dead_letter="churn-dead-letter",
                          explanations=explanations_topic)
        pairs = datarobot_fields()
        batches = [outputs.batch([r for r, _ in pairs], [o for _, o in pairs], 4.5)]
        if explanations_topic:
            batches.append(outputs.explained([r for r, _ in pairs], [o for _, o in pairs]))
        for batch in batches:
            for (topic, key, value, headers), owner in zip(batch.messages, batch.owners, strict=True):
                produced.append({"topic": topic, "key": key.decode() if key else None,
                                 "value": value.decode("utf-8") if value is not None else None,
                                 "headers": [[name, data.decode()] for name, data in headers], "owner": owner})
    return produced


def test_datarobot_field_records_are_byte_for_byte_the_golden_ones() -> None:
    lines = [orjson.dumps(entry).decode() for entry in datarobot_wire()]
    if os.environ.get("SG_WRITE_GOLDEN") == "1":
        GOLDEN_DATAROBOT_FIELDS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = GOLDEN_DATAROBOT_FIELDS.read_text(encoding="utf-8").split("\n")[:-1]
    assert lines == expected
    values = [orjson.loads(entry["value"]) for entry in datarobot_wire() if entry["topic"] == "churn-predictions"]
    assert [v.get("prediction_warning") for v in values[:6]] == [None, None, True, False, None, True]
    assert [e["class"] for e in values[0]["explanations"]] == ["medium", "high", HOSTILE[0]]
    assert values[4]["adjusted_prediction"] == 98.25 and "vendor_fields" in values[4]


def test_the_fast_writer_and_the_document_agree_on_the_new_fields() -> None:
    from gateway.stream.records import PredictionWriter, dumps, prediction_document

    names: dict[str, Any] = {"pipeline": "p", "backend": "datarobot", "deployment": "d", "latency_ms": 1.0}
    for source, row in datarobot_fields():
        for embed in (True, False):
            written = PredictionWriter(embed_explanations=embed, **names).write(source, row)
            assert written == dumps(prediction_document(source, row, embed_explanations=embed, **names))
