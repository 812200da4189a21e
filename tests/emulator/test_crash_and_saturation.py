"""The two faults a client's own logic must handle: a feature value that crashes the model (500 for
any request holding it, so bisection can isolate the row) and a cap on requests in progress (429
beyond it, as a saturated service answers)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.emulator.conftest import datarobot_url, post, qlik_url
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, csv_text, qlik_429_sample, qlik_body

JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
BASE_FEE = CHURN_FEATURES.index("BaseFee")
PLAN = CHURN_FEATURES.index("PlanType")


def rows_with(crash_at: int, count: int = 16) -> list[list]:
    rows = [list(SEED_ROWS[i % 2]) for i in range(count)]
    rows[crash_at][BASE_FEE] = 777
    return rows


async def qlik(http, emulator, rows, headers=JSON):
    return await post(http, qlik_url(emulator) + "?includeNotPredictedReason=true",
                      data=orjson.dumps(qlik_body(CHURN_FEATURES, rows)), headers=headers)


async def datarobot(http, emulator, rows, features=CHURN_FEATURES):
    return await post(http, datarobot_url(emulator), data=csv_text(features, rows).encode(), headers=CSV)


async def test_a_row_holding_the_crash_value_fails_its_request_with_the_vendors_500(http, emulator):
    emulator.configure(crash_value="777")
    rows = rows_with(crash_at=5)
    status, _, raw = await qlik(http, emulator, rows)
    assert status == 500
    doc = orjson.loads(raw)
    assert set(doc) == {"errors", "traceId"} and doc["errors"][0]["code"] == "HTTP-500"
    status, _, raw = await datarobot(http, emulator, rows)
    assert status == 500 and set(orjson.loads(raw)) == {"message"}
    # The same rows without it are fine.
    del rows[5]
    assert (await qlik(http, emulator, rows))[0] == 200
    assert (await datarobot(http, emulator, rows))[0] == 200
    stats = emulator.stats.snapshot()
    assert stats["faults"]["crash"] == 2
    assert stats["routes"]["qlik"]["statuses"] == {"200": 1, "500": 1}
    emulator.configure(crash_value=None)
    assert (await qlik(http, emulator, rows_with(crash_at=5)))[0] == 200


async def test_bisection_isolates_the_crashing_row(http, emulator):
    """What a client that bisects a failing batch does, against both vendors: one row is left."""
    emulator.configure(crash_value="777")
    rows = rows_with(crash_at=11)
    for send in (qlik, datarobot):
        failing = [list(range(len(rows)))]
        isolated: list[int] = []
        while failing:
            part = failing.pop()
            status = (await send(http, emulator, [rows[i] for i in part]))[0]
            if status == 200:
                continue
            assert status == 500
            if len(part) == 1:
                isolated += part
            else:
                failing += [part[: len(part) // 2], part[len(part) // 2:]]
        assert isolated == [11], send.__name__


@pytest.mark.parametrize("cell, crashes", [
    (777, True), ("777", True), (" 777", False), (777.0, False), ("777.0", False), (7770, False),
])
async def test_the_crash_value_is_compared_as_text(http, emulator, cell, crashes):
    emulator.configure(crash_value=777)  # a number given as the option is its text
    assert emulator.options.crash_value == "777"
    rows = [list(SEED_ROWS[0]), list(SEED_ROWS[1])]
    rows[1][BASE_FEE] = cell
    assert (await qlik(http, emulator, rows))[0] == (500 if crashes else 200)


async def test_the_crash_value_counts_in_any_feature_and_only_in_features(http, emulator):
    emulator.configure(crash_value="Gold")
    rows = [list(SEED_ROWS[0]), list(SEED_ROWS[1])]
    rows[0][PLAN] = "Gold"  # an unknown category: scored as missing, but the model crashes on it
    assert (await qlik(http, emulator, rows))[0] == 500
    assert (await datarobot(http, emulator, rows))[0] == 500
    # A column the model does not read (an id, a passthrough) never crashes it.
    features = ["CustomerId", *CHURN_FEATURES]
    extra = [["Gold", *SEED_ROWS[0]], ["c-2", *SEED_ROWS[1]]]
    status, _, _ = await post(http, qlik_url(emulator) + "?includeSource=true",
                              data=orjson.dumps(qlik_body(features, extra)), headers=JSON)
    assert status == 200
    assert (await datarobot(http, emulator, extra, features))[0] == 200
    # A boolean feature's text: "true" matches a JSON true and a CSV true.
    emulator.configure(crash_value=True)
    assert emulator.options.crash_value == "true"
    assert (await qlik(http, emulator, [SEED_ROWS[0]]))[0] == 500  # HasRenewed true
    assert (await datarobot(http, emulator, [SEED_ROWS[0]]))[0] == 500


async def slow_request(http, emulator, timeout_s: float = 10.0) -> int:
    return (await post(http, qlik_url(emulator), data=orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS)),
                       headers=JSON, timeout=aiohttp.ClientTimeout(total=timeout_s)))[0]


async def wait_for_in_progress(emulator, route: str, count: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while emulator.in_progress(route) != count:
        assert time.monotonic() < deadline, f"{count} {route} requests never were in progress"
        await asyncio.sleep(0.01)


async def test_beyond_k_requests_in_progress_the_answer_is_429(http, emulator):
    emulator.configure(max_concurrent_requests=2, latency_ms=600, retry_after_s=4)
    holders = [asyncio.create_task(slow_request(http, emulator)) for _ in range(2)]
    await wait_for_in_progress(emulator, "qlik", 2)
    _, sample = qlik_429_sample()
    for _ in range(3):
        status, headers, raw = await post(http, qlik_url(emulator), data=b"{}", headers=JSON)
        assert status == 429 and headers["Retry-After"] == "4"
        assert orjson.loads(raw) == orjson.loads(orjson.dumps(sample).replace(b"13 seconds", b"4 seconds"))
    # The limit is per vendor, as each vendor is its own service.
    status, _, _ = await datarobot(http, emulator, SEED_ROWS)
    assert status == 200
    assert await asyncio.gather(*holders) == [200, 200]
    # The slots are free again once the answers are out.
    await wait_for_in_progress(emulator, "qlik", 0)
    emulator.configure(latency_ms=0)
    assert (await qlik(http, emulator, SEED_ROWS))[0] == 200
    assert emulator.stats.snapshot()["faults"]["concurrency_limited"] == 3


async def test_datarobot_saturation_uses_its_own_429_body(http, emulator):
    emulator.configure(max_concurrent_requests=1, latency_ms=600, retry_after_s=2)
    holder = asyncio.create_task(post(http, datarobot_url(emulator), data=csv_text(CHURN_FEATURES, SEED_ROWS).encode(),
                                      headers=CSV))
    await wait_for_in_progress(emulator, "datarobot", 1)
    status, headers, raw = await datarobot(http, emulator, SEED_ROWS)
    assert status == 429 and headers["Retry-After"] == "2" and set(orjson.loads(raw)) == {"message"}
    assert (await holder)[0] == 200


async def test_a_change_at_run_time_applies_to_the_next_request(http, emulator):
    emulator.configure(latency_ms=800)
    holder = asyncio.create_task(slow_request(http, emulator))
    await wait_for_in_progress(emulator, "qlik", 1)
    emulator.configure(max_concurrent_requests=1)  # the one in progress now fills the service
    assert (await qlik(http, emulator, SEED_ROWS))[0] == 429
    emulator.configure(max_concurrent_requests=None, latency_ms=0)
    assert (await qlik(http, emulator, SEED_ROWS))[0] == 200  # at once, while the first still runs
    assert not holder.done()
    assert await holder == 200


async def test_a_hanging_request_holds_its_slot_until_the_client_gives_up(http, emulator):
    emulator.configure(max_concurrent_requests=1, hang_rate=1.0)
    hanging = asyncio.create_task(slow_request(http, emulator, timeout_s=1.0))
    await wait_for_in_progress(emulator, "qlik", 1)
    emulator.configure(hang_rate=0.0)
    assert (await qlik(http, emulator, SEED_ROWS))[0] == 429
    with pytest.raises(asyncio.TimeoutError):
        await hanging
    await wait_for_in_progress(emulator, "qlik", 0)  # the server cancelled the held request
    assert (await qlik(http, emulator, SEED_ROWS))[0] == 200
