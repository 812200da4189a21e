"""Every Qlik error the emulator produces, for its cause, in the ``Failure`` shape."""

from __future__ import annotations

import orjson
import pytest

from tests.emulator.conftest import post, qlik_url
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, qlik_429_sample, qlik_body

JSON = {"Content-Type": "application/json"}
SEED_BODY = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))


def assert_failure(status: int, raw: bytes, expected_status: int, *detail_words: str) -> dict:
    assert status == expected_status, raw
    doc = orjson.loads(raw)
    assert set(doc) == {"errors", "traceId"} and isinstance(doc["traceId"], str) and doc["traceId"]
    (error,) = doc["errors"]
    assert error["code"] == f"HTTP-{expected_status}"
    assert isinstance(error["title"], str) and error["title"]
    for word in detail_words:
        assert word in error["detail"], error["detail"]
    return error


BAD_REQUESTS = [
    ("malformed JSON", "", b'{"schema": [', ["not valid JSON"]),
    ("not an object", "", b"[1, 2]", ["JSON object"]),
    ("unknown property", "", orjson.dumps({**qlik_body(CHURN_FEATURES, SEED_ROWS), "extra": 1}), ["extra"]),
    ("schema missing", "", orjson.dumps({"rows": SEED_ROWS}), ["schema"]),
    ("schema entry without name", "", orjson.dumps({"schema": [{"nom": "x"}], "rows": []}), ["schema[0]"]),
    ("schema entry with type", "", orjson.dumps({"schema": [{"name": "x", "type": "numeric"}], "rows": []}),
     ["schema[0]"]),
    ("duplicate column", "", orjson.dumps(qlik_body([*CHURN_FEATURES, "BaseFee"], [[*r, 1] for r in SEED_ROWS])),
     ["BaseFee", "more than once"]),
    ("rows not a list", "", orjson.dumps({"schema": [{"name": f} for f in CHURN_FEATURES], "rows": {}}), ["rows"]),
    ("row too short", "", orjson.dumps(qlik_body(CHURN_FEATURES, [SEED_ROWS[0], SEED_ROWS[1][:7]])),
     ["rows[1]", "7 values", "8 columns"]),
    ("row not a list", "", orjson.dumps(qlik_body(CHURN_FEATURES, [SEED_ROWS[0], "x"])), ["rows[1]"]),
    ("missing feature", "", orjson.dumps(qlik_body(CHURN_FEATURES[:-1], [r[:-1] for r in SEED_ROWS])),
     ["Missing required feature", "Promotion"]),
    ("unknown parameter", "includeShapp=true", SEED_BODY, ["Unknown query parameter", "includeShapp"]),
    ("boolean not true/false", "includeShap=yes", SEED_BODY, ["includeShap", "true or false"]),
    ("boolean capitalised", "includeSource=True", SEED_BODY, ["includeSource"]),
    ("repeated parameter", "includeShap=true&includeShap=false", SEED_BODY, ["more than once"]),
    ("empty index", "index=", SEED_BODY, ["index"]),
    ("index not in schema", "index=AccountID", SEED_BODY, ["AccountID", "not in the schema"]),
]


@pytest.mark.parametrize("params, body, words", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
async def test_bad_requests_get_400_failure(http, emulator, params, body, words):
    url = qlik_url(emulator) + (f"?{params}" if params else "")
    status, _, raw = await post(http, url, data=body, headers=JSON)
    assert_failure(status, raw, 400, *words)


async def test_unknown_deployment_is_404(http, emulator):
    status, _, raw = await post(http, qlik_url(emulator, "0b0e4a2c-0000-4000-8000-000000000000"),
                                data=SEED_BODY, headers=JSON)
    assert_failure(status, raw, 404, "not found")


async def test_wrong_method_and_unknown_path_answer_in_qlik_format(http, emulator):
    async with http.get(qlik_url(emulator)) as response:
        assert_failure(response.status, await response.read(), 405)
    status, _, raw = await post(http, emulator.url + "/api/v1/ml/deployments/churn/nowhere", data=SEED_BODY)
    assert_failure(status, raw, 404)


async def test_bearer_token_is_checked_when_configured(anonymous, emulator):
    emulator.configure(token="s3cret")
    status, _, raw = await post(anonymous, qlik_url(emulator), data=SEED_BODY, headers=JSON)
    assert_failure(status, raw, 401, "bearer token is required")
    status, _, raw = await post(anonymous, qlik_url(emulator), data=SEED_BODY,
                                headers={**JSON, "Authorization": "Bearer wrong"})
    assert_failure(status, raw, 401, "not valid")
    status, _, raw = await post(anonymous, qlik_url(emulator), data=SEED_BODY,
                                headers={**JSON, "Authorization": "Token s3cret"})
    assert_failure(status, raw, 401)
    status, _, _ = await post(anonymous, qlik_url(emulator), data=SEED_BODY,
                              headers={**JSON, "Authorization": "Bearer s3cret"})
    assert status == 200


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Token abc", "Basic dXNlcjprZXk="])
async def test_a_request_without_a_bearer_token_is_401_by_default(anonymous, emulator, authorization):
    """As Qlik Cloud: every real-time request needs an API key or OAuth token as a bearer token."""
    headers = JSON if authorization is None else {**JSON, "Authorization": authorization}
    status, _, raw = await post(anonymous, qlik_url(emulator), data=SEED_BODY, headers=headers)
    error = assert_failure(status, raw, 401, "bearer token is required")
    assert error["title"] == "Unauthorized"
    assert emulator.stats.snapshot()["routes"]["qlik"]["statuses"] == {"401": 1}


async def test_any_bearer_token_is_accepted_by_default(anonymous, emulator):
    for token in ("anything", "x", "a.b.c-jwt-like"):
        status, _, _ = await post(anonymous, qlik_url(emulator), data=SEED_BODY,
                                  headers={**JSON, "Authorization": f"Bearer {token}"})
        assert status == 200


async def test_rate_limit_answers_the_documented_429(http, emulator):
    sample_headers, sample_body = qlik_429_sample()
    emulator.configure(rate_limit_per_minute=2)
    for _ in range(2):
        status, _, _ = await post(http, qlik_url(emulator), data=SEED_BODY, headers=JSON)
        assert status == 200
    status, headers, raw = await post(http, qlik_url(emulator), data=SEED_BODY, headers=JSON)
    assert status == 429
    wait = int(headers["Retry-After"])
    assert 58 <= wait <= 60  # the real wait: the oldest admitted request leaves the 60 s window
    assert headers["Content-Type"].startswith(sample_headers["content-type"])
    expected = orjson.loads(orjson.dumps(sample_body).replace(b"13 seconds", f"{wait} seconds".encode()))
    assert orjson.loads(raw) == expected
