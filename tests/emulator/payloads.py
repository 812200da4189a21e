"""Request bodies and reference documents for the emulator's tests."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from tests.vendor_samples import QLIK as QLIK_SAMPLES
from tests.vendor_samples import datarobot_json

CHURN_FEATURES = ["PlanType", "NumberOfPenalties", "HasRenewed", "BaseFee", "ServiceTickets",
                  "AdditionalFeatureSpend", "ServiceRating", "Promotion"]
# The Qlik tutorial's two customers, exactly as its request sends them.
SEED_ROWS: list[list[Any]] = [["Standard", 1, True, 50.0, 5, 15.5, 4.2, True],
                              ["Premium", 3, False, 80.0, 2, 25.0, 3.8, False]]


def seed_request() -> dict[str, Any]:
    """The Qlik tutorial's request body for its two customers."""
    return json.loads((QLIK_SAMPLES / "realtime-request.tutorial.json").read_text(encoding="utf-8"))


def seed_response() -> dict[str, Any]:
    """The Qlik tutorial's response to that request, with SHAP values and reasons."""
    return json.loads((QLIK_SAMPLES / "realtime-response-shap.tutorial.json").read_text(encoding="utf-8"))


def qlik_429_sample() -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and JSON body of qlik.dev's documented 429 response."""
    text = (QLIK_SAMPLES / "error-429-rate-limit.qlik-dev.txt").read_text(encoding="utf-8")
    head, _, body = text.partition("\n\n")
    headers = {}
    for line in head.splitlines():
        name, _, value = line.lstrip("< ").partition(":")
        if value:
            headers[name.strip().lower()] = value.strip()
    return headers, json.loads(body)


def datarobot_sample(name: str) -> Any:
    return datarobot_json(name)


def random_values(model_features: list[str], rng: random.Random, kinds: dict[str, str]) -> list[Any]:
    """One row of plausible typed values for the given features (kinds from the model's terms)."""
    row: list[Any] = []
    for name in model_features:
        kind = kinds[name]
        if kind == "boolean":
            row.append(rng.random() < 0.5)
        elif kind.startswith("categorical:"):
            row.append(rng.choice(kind.split(":", 1)[1].split("|")))
        elif kind == "integer":
            row.append(rng.randint(0, 8))
        else:
            row.append(round(rng.uniform(0.0, 100.0), 2))
    return row


def feature_kinds(model: Any) -> dict[str, str]:
    from gateway.emulator.features import NumericTerm

    kinds: dict[str, str] = {}
    for term in model.terms:
        if isinstance(term, NumericTerm):
            kinds[term.name] = "integer" if term.integer else "number"
        elif term.boolean:
            kinds[term.name] = "boolean"
        else:
            kinds[term.name] = "categorical:" + "|".join(str(level) for level in term.effects)
    return kinds


def random_rows(model: Any, count: int, seed: int = 1) -> list[list[Any]]:
    rng = random.Random(seed)
    kinds = feature_kinds(model)
    features = list(model.features)
    rows = [random_values(features, rng, kinds) for _ in range(count)]
    if "ServiceRating" in features:  # keep ratings on their 1-5 scale
        i = features.index("ServiceRating")
        for row in rows:
            row[i] = round(rng.uniform(1.0, 5.0), 1)
    return rows


def qlik_body(features: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"schema": [{"name": f} for f in features], "rows": rows}


def csv_text(features: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        text = str(value)
        return '"' + text.replace('"', '""') + '"' if re.search(r'[",\r\n]', text) else text
    return "\n".join([",".join(features)] + [",".join(cell(v) for v in row) for row in rows]) + "\n"
