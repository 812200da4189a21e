"""``/_emulator/config``, ``/_emulator/stats`` and ``/_emulator/deployments`` over HTTP."""

from __future__ import annotations

import re
import uuid

import orjson

from tests.emulator.conftest import datarobot_url, post, qlik_url
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, csv_text, qlik_body


async def get(http, url):
    async with http.get(url) as response:
        return response.status, orjson.loads(await response.read())


async def configure(http, emulator, **options):
    status, _, raw = await post(http, emulator.url + "/_emulator/config", data=orjson.dumps(options),
                                headers={"Content-Type": "application/json"})
    return status, orjson.loads(raw)


async def test_deployments_listing_has_the_product_shape(http, emulator):
    status, doc = await get(http, emulator.url + "/_emulator/deployments")
    assert status == 200 and list(doc) == ["deployments"]
    entries = {d["name"]: d for d in doc["deployments"]}
    assert set(entries) == {"churn", "customer_value", "support_priority", "churn_challenger"}
    keys = ["name", "kind", "target", "classes", "features", "qlik_id", "datarobot_id"]
    for entry in entries.values():
        assert list(entry) == keys
        assert str(uuid.UUID(entry["qlik_id"])) == entry["qlik_id"]
        assert re.fullmatch(r"[0-9a-f]{24}", entry["datarobot_id"])
    churn = entries["churn"]
    assert (churn["kind"], churn["target"], churn["classes"], churn["features"]) == (
        "binary", "Churned", ["no", "yes"], CHURN_FEATURES)
    assert (entries["customer_value"]["kind"], entries["customer_value"]["classes"]) == ("regression", None)
    assert entries["support_priority"]["kind"] == "multiclass"
    assert entries["support_priority"]["classes"] == ["high", "low", "medium"]
    challenger = entries["churn_challenger"]
    assert (challenger["target"], challenger["classes"], challenger["features"]) == ("Churned", ["no", "yes"],
                                                                                     CHURN_FEATURES)
    # The ids listed are the ids served.
    body = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
    status, _, _ = await post(http, qlik_url(emulator, churn["qlik_id"]), data=body)
    assert status == 200
    status, _, _ = await post(http, datarobot_url(emulator, churn["datarobot_id"]),
                              data=csv_text(CHURN_FEATURES, SEED_ROWS).encode(), headers={"Content-Type": "text/csv"})
    assert status == 200


async def test_config_changes_take_effect_live(http, anonymous, emulator):
    status, current = await get(http, emulator.url + "/_emulator/config")
    assert status == 200
    assert current["latency_ms"] == 0 and current["error_rate"] == {} and current["seed"] == 7
    assert current["explanation_algorithm"] == "shap" and current["token"] is None
    assert current["crash_value"] is None and current["max_concurrent_requests"] is None

    status, current = await configure(http, emulator, error_rate={"503": 1.0}, latency_ms=5)
    assert status == 200 and current["error_rate"] == {"503": 1.0} and current["latency_ms"] == 5
    body = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
    assert (await post(http, qlik_url(emulator), data=body))[0] == 503

    # Keys not given keep their values; a given error_rate map replaces the previous one.
    status, current = await configure(http, emulator, error_rate={"429": 1.0})
    assert current["error_rate"] == {"429": 1.0} and current["latency_ms"] == 5
    assert (await post(http, qlik_url(emulator), data=body))[0] == 429

    status, current = await configure(http, emulator, error_rate={}, token="abc", datarobot_key="k")
    assert current["token"] == "***" and current["datarobot_key"] == "***"  # never echoed
    assert (await post(http, qlik_url(emulator), data=body))[0] == 401
    assert (await post(http, qlik_url(emulator), data=body, headers={"Authorization": "Bearer abc"}))[0] == 200
    status, current = await configure(http, emulator, token=None)
    assert current["token"] is None
    assert (await post(http, qlik_url(emulator), data=body))[0] == 200  # any bearer token again
    assert (await post(anonymous, qlik_url(emulator), data=body))[0] == 401  # but one is required

    status, current = await configure(http, emulator, crash_value=5, max_concurrent_requests=2)
    assert status == 200 and current["crash_value"] == "5" and current["max_concurrent_requests"] == 2
    assert (await post(http, qlik_url(emulator), data=body))[0] == 500  # the first customer has 5 tickets
    status, current = await configure(http, emulator, crash_value=None, max_concurrent_requests=None)
    assert current["crash_value"] is None and current["max_concurrent_requests"] is None
    assert (await post(http, qlik_url(emulator), data=body))[0] == 200


async def test_invalid_config_is_refused_and_changes_nothing(http, emulator):
    _, before = await get(http, emulator.url + "/_emulator/config")
    cases = [
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": "5"}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"error_rate": {"200": 0.5}}, "error_rate"),
        ({"error_rate": {"503": 0.7, "500": 0.7}}, "more than 1"),
        ({"error_rate": [503]}, "error_rate"),
        ({"hang_rate": 1.5}, "hang_rate"),
        ({"explanation_algorithm": "lime"}, "explanation_algorithm"),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"max_concurrent_requests": 2.5}, "max_concurrent_requests"),
        ({"max_concurrent_requests": "4"}, "max_concurrent_requests"),
        ({"crash_value": ""}, "crash_value"),
        ({"crash_value": [666]}, "crash_value"),
        ({"crash_value": {"BaseFee": 666}}, "crash_value"),
        ({"seed": "x"}, "seed"),
        ({"token": ""}, "token"),
        ({"tls_cert": "/tmp/cert.pem"}, "only be set when the emulator starts"),
        ({"latency_ms": 10, "unknown_knob": 1}, "unknown_knob"),
    ]
    for patch, words in cases:
        status, doc = await configure(http, emulator, **patch)
        assert status == 400 and words in doc["error"], (patch, doc)
    _, after = await get(http, emulator.url + "/_emulator/config")
    assert after == before


async def test_stats_count_requests_rows_and_faults(http, emulator):
    body = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
    csv_body = csv_text(CHURN_FEATURES, SEED_ROWS * 3).encode()
    await post(http, qlik_url(emulator), data=body)
    await post(http, qlik_url(emulator) + "?includeShap=true", data=body)
    await post(http, datarobot_url(emulator), data=csv_body, headers={"Content-Type": "text/csv"})
    await post(http, datarobot_url(emulator) + "?wd=1", data=csv_body, headers={"Content-Type": "text/csv"})
    await configure(http, emulator, error_rate={"503": 1.0})
    await post(http, qlik_url(emulator), data=body)
    status, stats = await get(http, emulator.url + "/_emulator/stats")
    assert status == 200
    assert stats["requests"] == 5 and stats["rows"] == 2 + 2 + 6
    assert stats["faults"] == {"error": 1, "hang": 0, "drop": 0, "rate_limited": 0, "concurrency_limited": 0,
                               "crash": 0}
    assert stats["routes"]["qlik"] == {"requests": 3, "rows": 4, "statuses": {"200": 2, "503": 1},
                                       "explanations": {"none": 1, "shap": 1}}
    assert stats["routes"]["datarobot"] == {"requests": 2, "rows": 6, "statuses": {"200": 1, "422": 1},
                                            "explanations": {"none": 1}}
    # Control routes are not counted.
    assert (await get(http, emulator.url + "/_emulator/stats"))[1]["requests"] == 5


async def test_a_challenger_deployment_counts_the_rows_its_champion_predicts_otherwise(http, emulator):
    from gateway.emulator.models import CHURN, CHURN_CHALLENGER
    from tests.emulator.payloads import random_rows

    rows = random_rows(CHURN, 400)
    columns = {f: [row[i] for row in rows] for i, f in enumerate(CHURN_FEATURES)}
    ours = CHURN.score({f: columns[f] for f in CHURN.features}, len(rows)).predictions
    theirs = CHURN_CHALLENGER.score({f: columns[f] for f in CHURN.features}, len(rows)).predictions
    expected = sum(1 for a, b in zip(ours, theirs, strict=True) if a != b)
    assert 0 < expected < len(rows)  # the two really disagree, on some rows only
    _, before = await get(http, emulator.url + "/_emulator/stats")
    status, _, _ = await post(http, qlik_url(emulator, "churn_challenger"),
                              data=orjson.dumps(qlik_body(CHURN_FEATURES, rows)))
    assert status == 200
    status, _, _ = await post(http, datarobot_url(emulator, "churn_challenger"),
                              data=csv_text(CHURN_FEATURES, rows).encode(), headers={"Content-Type": "text/csv"})
    assert status == 200
    _, after = await get(http, emulator.url + "/_emulator/stats")
    assert after["challenger"]["rows"] - before["challenger"]["rows"] == 2 * len(rows)
    assert after["challenger"]["disagreements"] - before["challenger"]["disagreements"] == 2 * expected
