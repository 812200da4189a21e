"""Every documented DataRobot error body, produced for its cause (samples compared verbatim)."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest

from tests.emulator.conftest import datarobot_url, post
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, csv_text, datarobot_sample

SEED_CSV = csv_text(CHURN_FEATURES, SEED_ROWS).encode()
CSV = {"Content-Type": "text/csv"}


async def predict(http, emulator, params="", body=SEED_CSV, headers=CSV, deployment="churn"):
    url = datarobot_url(emulator, deployment) + (f"?{params}" if params else "")
    status, _, raw = await post(http, url, data=body, headers=headers)
    return status, orjson.loads(raw)


QUERY_ERRORS = [
    # (cause, query, status, body) — bodies from the contract's samples and the seed's error list.
    ("unsupported parameter", "wd=1", 422, datarobot_sample("error_422_unsupported_query_param.json")),
    ("blank passthroughColumns", "passthroughColumns=", 422,
     datarobot_sample("error_422_passthrough_columns_blank.json")),
    ("passthroughColumnsSet not all", "passthroughColumnsSet=some", 422,
     datarobot_sample("error_422_passthrough_columns_set_not_all.json")),
    ("maxCodes not an int", "maxCodes=five", 422,
     {"message": "{'max_codes': DataError(value can't be converted to int)}"}),
    ("maxExplanations not an int", "maxExplanations=2.5", 422,
     {"message": "{'max_codes': DataError(value can't be converted to int)}"}),
    ("maxExplanations=all with XEMP", "maxExplanations=all&explanationAlgorithm=xemp", 422,
     {"message": "{'max_codes': DataError(value can't be converted to int)}"}),
    ("thresholdHigh not a float", "maxExplanations=3&thresholdHigh=high", 422,
     {"message": "{'threshold_high': DataError(value can't be converted to float)}"}),
    ("thresholdLow not a float", "thresholdLow=", 422,
     {"message": "{'threshold_low': DataError(value can't be converted to float)}"}),
    ("excludeAdjustedPredictions not a bool", "excludeAdjustedPredictions=maybe", 422,
     {"message": "{'exclude_adjusted_predictions': DataError(value can't be converted to Bool)}"}),
    ("excludeAdjustedPredictions empty", "excludeAdjustedPredictions=", 422,
     {"message": "{'exclude_adjusted_predictions': DataError(value can't be converted to Bool)}"}),
    ("predictionWarningEnabled not a bool", "predictionWarningEnabled=yes please", 422,
     {"message": "'predictionWarningEnabled': value can't be converted to Bool"}),
]


@pytest.mark.parametrize("query, status, body", [c[1:] for c in QUERY_ERRORS], ids=[c[0] for c in QUERY_ERRORS])
async def test_query_errors(http, emulator, query, status, body):
    assert await predict(http, emulator, query) == (status, body)


async def test_accepted_query_parameters(http, emulator):
    query = ("maxExplanations=0&thresholdLow=0.2&thresholdHigh=0.8&explanationAlgorithm=shap&maxNgramExplanations=all"
             "&explanationNumTopClasses=2&predictionWarningEnabled=true&excludeAdjustedPredictions=True")
    status, body = await predict(http, emulator, query)
    assert status == 200 and len(body["data"]) == 2
    status, body = await predict(http, emulator, "explanationClassNames=yes&explanationClassNames=no&maxCodes=0")
    assert status == 200


async def test_passthrough_column_not_found_is_400_verbatim(http, emulator):
    assert await predict(http, emulator, "passthroughColumns=Name") == (
        400, datarobot_sample("error_400_passthrough_columns_not_found.json"))


async def test_multiclass_explanations_are_refused(http, emulator):
    body = csv_text(["Channel", "OpenTickets", "WaitMinutes", "ServiceRating", "PlanType", "IsOutage"],
                    [["phone", 1, 5.0, 4.0, "Basic", False]]).encode()
    assert await predict(http, emulator, "maxExplanations=3", body, deployment="support_priority") == (
        422, {"message": "Multiclass models cannot be used for Prediction Explanations"})
    status, _ = await predict(http, emulator, "maxExplanations=0", body, deployment="support_priority")
    assert status == 200


async def test_unknown_deployment_ids(http, emulator):
    assert await predict(http, emulator, deployment="000000000000000000000000") == (404, {"message": "Not found"})
    assert await predict(http, emulator, deployment="not-an-id") == (404, {"message": "Bad request"})
    # A Qlik UUID is the wrong format on the DataRobot routes.
    assert await predict(http, emulator, deployment="3f8e2a52-6a1b-4c2e-9d8f-4b7a1c2e5d90") == (
        404, {"message": "Bad request"})


async def test_authentication_errors(anonymous, emulator):
    emulator.configure(token="tok-1")
    assert await predict(anonymous, emulator) == (401, datarobot_sample("error_401_invalid_api_token.json"))
    assert await predict(anonymous, emulator, headers={**CSV, "Authorization": "Bearer other"}) == (
        401, datarobot_sample("error_401_invalid_api_token.json"))
    assert await predict(anonymous, emulator, headers={**CSV, "Authorization": "Basic bm90LWJhc2U2NA"}) == (
        401, datarobot_sample("error_401_invalid_api_token.json"))
    assert await predict(anonymous, emulator, headers={**CSV, "Authorization": "Bearer"}) == (
        401, datarobot_sample("error_401_no_credentials_provided.json"))


BASIC = "Basic " + base64.b64encode(b"user@example.com:any-key").decode()


@pytest.mark.parametrize("authorization, sample", [
    # "Provided an invalid or no API token key": no header, or one that carries nothing usable.
    (None, "error_401_invalid_api_token.json"),
    ("", "error_401_invalid_api_token.json"),
    ("Negotiate abc", "error_401_invalid_api_token.json"),
    ("Basic bm90LWJhc2U2NA", "error_401_invalid_api_token.json"),
    ("Basic " + base64.b64encode(b"user@example.com").decode(), "error_401_invalid_api_token.json"),
    # "Did not provide an API token key (Bearer Token Auth)".
    ("Bearer", "error_401_no_credentials_provided.json"),
    ("Token", "error_401_no_credentials_provided.json"),
])
async def test_credentials_are_required_without_a_configured_token(anonymous, emulator, authorization, sample):
    headers = CSV if authorization is None else {**CSV, "Authorization": authorization}
    assert await predict(anonymous, emulator, headers=headers) == (401, datarobot_sample(sample))


@pytest.mark.parametrize("authorization", ["Bearer any-key", "Token any-key", BASIC])
async def test_any_credentials_are_accepted_without_a_configured_token(anonymous, emulator, authorization):
    status, body = await predict(anonymous, emulator, headers={**CSV, "Authorization": authorization})
    assert status == 200 and len(body["data"]) == 2


async def test_datarobot_key_errors(http, emulator):
    emulator.configure(datarobot_key="dr-key")
    missing = datarobot_sample("error_401_datarobot_key_missing.json")
    assert await predict(http, emulator) == (401, missing)
    assert await predict(http, emulator, headers={**CSV, "DataRobot-Key": ""}) == (401, missing)
    assert await predict(http, emulator, headers={**CSV, "datarobot-key": "wrong"}) == (401, missing)
    status, _ = await predict(http, emulator, headers={**CSV, "datarobot-key": "dr-key"})
    assert status == 200


@pytest.mark.parametrize("status, body", [
    (400, datarobot_sample("error_400_mock_server_batch_scoring_fixture.json")),
    (403, datarobot_sample("error_403_api_token_not_valid_batch_scoring_comment.json")),
    (401, datarobot_sample("error_401_invalid_api_token.json")),
    (404, {"message": "Not found"}),
])
async def test_injected_statuses_use_the_documented_bodies(http, emulator, status, body):
    emulator.configure(error_rate={status: 1.0})
    assert await predict(http, emulator) == (status, body)


async def test_bodies_over_50_mb_are_413(http, emulator):
    big = b"PlanType\n" + b"Standard\n" * (51 * 1024 * 1024 // 9)
    status, body = await predict(http, emulator, body=big)
    assert status == 413 and "50 MB" in body["message"]
    # A small gzip body that inflates past the limit is refused the same way.
    bomb = gzip.compress(b"0" * (51 * 1024 * 1024), 9)
    assert len(bomb) < 1024 * 1024
    status, body = await predict(http, emulator, body=bomb, headers={**CSV, "Content-Encoding": "gzip"})
    assert status == 413 and "50 MB" in body["message"]


async def test_missing_feature_column_is_422(http, emulator):
    body = csv_text(CHURN_FEATURES[1:], [r[1:] for r in SEED_ROWS]).encode()
    status, doc = await predict(http, emulator, body=body)
    assert status == 422 and "PlanType" in doc["message"]
