"""Hostile input for the gateway, each record labelled with what must become of it.

Two families, both mixed into one stream:

* **bad** records, which must each reach the dead-letter topic at a named stage with a reason:
  invalid JSON, JSON that is not an object, invalid UTF-8, a lone surrogate, NaN/Infinity
  literals, nesting past the parser's depth limit, nested or list feature values, a 1 MB value
  (over the scenario's ``batching.max_bytes``), values the model cannot read (``"$80.00"`` as a
  fee, ``"maybe"`` as a boolean, 1e300, a 30-digit integer) and tombstones;
* **awkward but valid** records, which must each be predicted with the ``note`` passthrough column
  exactly as sent: strings full of commas, quotes, CR/LF, control characters (NUL included),
  spreadsheet formulas, look-alikes of CSV and JSON syntax (``null``, ``"],["``, empty, blanks),
  unusual Unicode, plus missing, null and extra features and unknown categories, which the model
  imputes or ignores.

Every record carries its kind in a ``chaos-kind`` header, which the gateway must carry over to
the output, so the books can be checked per record without a side table.
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.chaos_campaign import ScenarioResult
from gateway.commands.demo.sample_data import CHURN_FEATURES, churn_features
from testkit.ledger import Outputs

KIND_HEADER = "chaos-kind"
PREDICTED = "predicted"
DEAD_LETTER = "dead_letter"
HUGE_BYTES = 1_048_576

# Strings that have broken CSV writers, JSON-to-CSV shortcuts and readers somewhere.
AWKWARD_NOTES: tuple[str, ...] = (
    "plain words", "a,b,c", ",,,,", '"', '""', '"quoted", and, commas', "line\nbreak", "crlf\r\nline",
    "lone\rcarriage", "\n", "\r\n", "trailing newline\n", " leading and trailing spaces ", " ", "",
    "tab\tseparated\tvalues", 'mixed "q" , \n and \r\n "", end', "null", "true", "false", "NaN",
    "None", "NA", "1e5", "0007", "-0", "],[", '","', "[1,2]", '{"a": 1}', "\\", "\\n", "\\u0000",
    "back\\slash\\\"quote", "\x00", "nul\x00inside", "bell\x07 and escape\x1b[31m", "\x01\x02\x03\x1f\x7f",
    "\x85next line", "line\u2028separator\u2029paragraph", "\ufeffbyte order mark", "zero\u200bwidth",
    "emoji 😀👍🏽", "עברית RTL", "e\u0301 combining", "中文字符", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@import", "'single'", "x" * 5000,
)


@dataclass(frozen=True, slots=True)
class Hostile:
    """One record to produce and what must become of it."""

    kind: str
    outcome: str  # PREDICTED or DEAD_LETTER
    stages: frozenset[str]  # acceptable dead-letter stages (empty when predicted)
    key: bytes | None
    value: bytes | None


Maker = Callable[[random.Random], bytes | None]


def _good(rng: random.Random) -> dict[str, object]:
    row: dict[str, object] = churn_features(rng)
    row["note"] = rng.choice(AWKWARD_NOTES)
    return row


def _dump(row: object) -> bytes:
    return orjson.dumps(row)


def _with(feature: str, value: object) -> Maker:
    def make(rng: random.Random) -> bytes:
        row = _good(rng)
        row[feature] = value
        return _dump(row)
    return make


def _invalid_json(rng: random.Random) -> bytes:
    whole = _dump(_good(rng))
    return rng.choice([whole[: len(whole) // 2], whole + b" trailing", b"{'PlanType': 'Basic'}",
                       b"{PlanType: 1}", b"", b"   ", b"{", b"}", b'{"a":1,}', b"\x00\x01"])


def _not_object(rng: random.Random) -> bytes:
    return rng.choice([b"[1, 2, 3]", b'"just a string"', b"42", b"null", b"true", b"3.5", b"[]",
                       _dump(list(churn_features(rng).values()))])


def _invalid_utf8(rng: random.Random) -> bytes:
    whole = _dump(_good(rng))
    return rng.choice([whole.replace(b'"note"', b'"no\xfft\xfe"', 1), b'{"PlanType": "\xc0\xaf"}',
                       b'{"PlanType": "caf\xc3"}', b"\xff\xfe{}", b'{"note": "\xed\xa0\x80"}'])


def _nan_literal(rng: random.Random) -> bytes:
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
    return _dump(_good(rng)).replace(b'"BaseFee":', b'"BaseFee":' + literal + b',"was":', 1)


def _deep_document(rng: random.Random) -> bytes:
    depth = rng.randint(2_000, 50_000)
    return rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])


def _deep_feature(rng: random.Random) -> bytes:
    """A feature nested below the parser's depth limit (written by hand: serialisers stop earlier)."""
    depth = rng.randint(2, 500)
    opening, closing = (b"[", b"]") if rng.random() < 0.5 else (b'{"x":', b"}")
    nested = opening * depth + b'"Basic"' + closing * depth
    return _dump(_good(rng)).replace(b'"PlanType":', b'"PlanType":' + nested + b',"was":', 1)


def _wrong_type(rng: random.Random) -> bytes:
    row = _good(rng)
    feature = rng.choice(CHURN_FEATURES)
    row[feature] = rng.choice([{"amount": 80}, [1, 2], [], {}, ["Basic"]])
    return _dump(row)


def _huge(rng: random.Random) -> bytes:
    row = _good(rng)
    row["note"] = rng.choice("abc,\"\n") * HUGE_BYTES
    return _dump(row)


def _unreadable(rng: random.Random) -> bytes:
    row = _good(rng)
    feature, value = rng.choice([("BaseFee", "$80.00"), ("BaseFee", "eighty"), ("HasRenewed", "maybe"),
                                 ("ServiceRating", "4,5"), ("NumberOfPenalties", "two")])
    row[feature] = value
    return _dump(row)


def _out_of_range(rng: random.Random) -> bytes:
    row = _good(rng)
    row["BaseFee"] = rng.choice([1e300, -1e300, 1e13])
    return _dump(row)


def _huge_integer(rng: random.Random) -> bytes:
    huge = b'"NumberOfPenalties":123456789012345678901234567890,"was":'
    return _dump(_good(rng)).replace(b'"NumberOfPenalties":', huge, 1)


def _tombstone(rng: random.Random) -> None:
    return None


def _missing(rng: random.Random) -> bytes:
    row = _good(rng)
    for feature in rng.sample(CHURN_FEATURES, rng.randint(1, len(CHURN_FEATURES))):
        del row[feature]
    return _dump(row)


def _nulls(rng: random.Random) -> bytes:
    row = _good(rng)
    for feature in rng.sample(CHURN_FEATURES, rng.randint(1, 4)):
        row[feature] = None
    return _dump(row)


def _extra(rng: random.Random) -> bytes:
    row = _good(rng)
    for name in rng.sample(["a,b", '"quoted"', "new\nline", "note2", "", "__gateway_row", "rowId", "😀"], 3):
        row[name] = rng.choice((*AWKWARD_NOTES[:20], 1, 2.5, True, None))
    return _dump(row)


def _unknown_category(rng: random.Random) -> bytes:
    row = _good(rng)
    row["PlanType"] = rng.choice(AWKWARD_NOTES)
    return _dump(row)


def _stringy(rng: random.Random) -> bytes:
    row = _good(rng)
    row["BaseFee"] = str(row["BaseFee"])
    row["HasRenewed"] = rng.choice(["true", "False", "1", "no"])
    row["NumberOfPenalties"] = f" {row['NumberOfPenalties']} "
    return _dump(row)


def _awkward(rng: random.Random) -> bytes:
    return _dump(_good(rng))


DECODE = frozenset({"decode"})
VALIDATE = frozenset({"validate"})
SCORE = frozenset({"score"})

# kind -> (maker, dead-letter stages or None when it must be predicted, weight)
BAD_KINDS: dict[str, tuple[Maker, frozenset[str], float]] = {
    "invalid_json": (_invalid_json, DECODE, 14),
    "not_object": (_not_object, DECODE, 12),
    "invalid_utf8": (_invalid_utf8, DECODE, 10),
    "nan_literal": (_nan_literal, DECODE, 10),
    "deep_document": (_deep_document, DECODE, 4),
    "deep_feature": (_deep_feature, VALIDATE, 8),
    "wrong_type": (_wrong_type, VALIDATE, 14),
    "unreadable_value": (_unreadable, SCORE, 5),
    "out_of_range": (_out_of_range, SCORE, 2),
    "huge_integer": (_huge_integer, SCORE, 2),
    "tombstone": (_tombstone, DECODE, 4),
}
HUGE_KIND = "huge_value"
GOOD_KINDS: dict[str, tuple[Maker, float]] = {
    "awkward_note": (_awkward, 50),
    "missing_features": (_missing, 10),
    "null_features": (_nulls, 10),
    "extra_features": (_extra, 10),
    "unknown_category": (_unknown_category, 10),
    "stringy_values": (_stringy, 10),
}


def hostile_stream(bad: int, good: int, huge: int, seed: int = 11) -> Iterator[Hostile]:
    """``bad`` dead-letter-bound records (``huge`` of them 1 MB values) shuffled into ``good`` ones."""
    rng = random.Random(seed)
    plan: list[str] = [HUGE_KIND] * min(huge, bad)
    plan += rng.choices(list(BAD_KINDS), [w for _, _, w in BAD_KINDS.values()], k=bad - len(plan))
    plan += rng.choices(list(GOOD_KINDS), [w for _, w in GOOD_KINDS.values()], k=good)
    rng.shuffle(plan)
    for i, kind in enumerate(plan):
        key = _key(rng, i)
        if kind == "tombstone" and key is None:
            key = b"tombstone"  # Kafka needs a key or a value
        if kind == HUGE_KIND:
            yield Hostile(kind, DEAD_LETTER, VALIDATE, key, _huge(rng))
        elif kind in BAD_KINDS:
            make, stages, _ = BAD_KINDS[kind]
            yield Hostile(kind, DEAD_LETTER, stages, key, make(rng))
        else:
            yield Hostile(kind, PREDICTED, frozenset(), key, GOOD_KINDS[kind][0](rng))


def _key(rng: random.Random, i: int) -> bytes | None:
    """Mostly customer ids; some keys are absent or not text at all (the output key must match)."""
    draw = rng.random()
    if draw < 0.05:
        return None
    if draw < 0.10:
        return bytes([0xFF, 0x00, rng.randrange(256)]) + b",\n\""
    return b"CUST-%05d" % rng.randrange(2_000)


# ---- what became of it ----------------------------------------------------------------------

def judge_hostile(inputs: dict[str, Any], outputs: Outputs, result: ScenarioResult) -> None:
    """Each input against its kind's promise: predicted with ``note`` intact, or dead-lettered at
    an expected stage with a reason and the original bytes."""
    predictions = {doc["id"]: doc for doc in outputs.predictions}
    dead = {doc["id"]: doc for doc in outputs.dead_letters}
    per_kind: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    examples: list[str] = []
    for rid, record in inputs.items():
        headers = dict(record.headers or ())
        kind = headers.get(KIND_HEADER, b"?").decode()
        per_kind[kind] += 1
        if kind == HUGE_KIND:
            stages: frozenset[str] | None = VALIDATE
        else:
            stages = BAD_KINDS[kind][1] if kind in BAD_KINDS else None
        problem = _judge_one(record, predictions.get(rid), dead.get(rid), stages,
                             outputs.prediction_headers.get(rid) or outputs.dead_letter_headers.get(rid))
        if problem:
            wrong[kind] += 1
            if len(examples) < 8:
                examples.append(f"{kind} {rid}: {problem}")
    result.notes["hostile_kinds"] = {k: {"records": n, "wrong": wrong[k]} for k, n in sorted(per_kind.items())}
    bad = sum(n for k, n in per_kind.items() if k in BAD_KINDS or k == HUGE_KIND)
    result.notes["hostile_bad"] = bad
    result.notes["hostile_good"] = sum(per_kind.values()) - bad
    result.check("every good record predicted with its note intact, every bad one dead-lettered "
                 "at its stage with a reason and its original bytes", not wrong, "; ".join(examples))


def _judge_one(record: Any, prediction: dict[str, Any] | None, dead: dict[str, Any] | None,
               stages: frozenset[str] | None, headers: list[tuple[str, bytes]] | None) -> str | None:
    if headers is not None and (KIND_HEADER, dict(record.headers or ()).get(KIND_HEADER)) not in headers:
        return "input headers not carried over"
    if stages is None:  # must be predicted
        if prediction is None:
            return f"not predicted: {dead and dead.get('stage')} {dead and str(dead.get('reason'))[:120]}"
        sent = orjson.loads(record.value).get("note")
        echoed = (prediction.get("passthrough") or {}).get("note")
        return None if echoed == sent else f"note changed: sent {sent!r:.60} got {echoed!r:.60}"
    if dead is None:
        return "not dead-lettered" + (" (predicted)" if prediction else "")
    if dead.get("stage") not in stages:
        return f"stage {dead.get('stage')} not in {sorted(stages)}: {str(dead.get('reason'))[:120]}"
    if not dead.get("reason"):
        return "no reason"
    raw = dead["raw"].encode() if "raw" in dead else base64.b64decode(dead.get("raw_base64", ""))
    return None if raw == (record.value or b"") else "raw bytes differ from the input"
