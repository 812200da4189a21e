"""Latency model, injected errors, hangs, drops, the rate limit and seeded reproducibility."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from gateway.emulator import EmulatorOptions, start_emulator
from gateway.emulator.faults import FaultDice
from gateway.emulator.models import DEPLOYMENTS
from tests.emulator.conftest import INSTANT, datarobot_url, post, qlik_url
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, csv_text, qlik_429_sample, qlik_body, random_rows

QLIK_BODY = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
CSV_BODY = csv_text(CHURN_FEATURES, SEED_ROWS).encode()
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}


async def qlik(http, emulator, params="", body=QLIK_BODY):
    return await post(http, qlik_url(emulator) + (f"?{params}" if params else ""), data=body, headers=JSON)


async def datarobot(http, emulator, params="", body=CSV_BODY):
    return await post(http, datarobot_url(emulator) + (f"?{params}" if params else ""), data=body, headers=CSV)


async def timed(call) -> tuple[float, tuple]:
    start = time.perf_counter()
    result = await call
    return time.perf_counter() - start, result


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_error_rate_one_answers_every_request_with_that_status(http, emulator, status):
    emulator.configure(error_rate={status: 1.0}, retry_after_s=3)
    for _ in range(4):
        got, headers, raw = await qlik(http, emulator)
        assert got == status
        doc = orjson.loads(raw)
        assert doc["errors"][0]["code"] == f"HTTP-{status}"
        if status == 429:
            _, sample = qlik_429_sample()
            assert doc == orjson.loads(orjson.dumps(sample).replace(b"13 seconds", b"3 seconds"))
        got, dr_headers, raw = await datarobot(http, emulator)
        assert got == status and set(orjson.loads(raw)) == {"message"}
        for h in (headers, dr_headers):
            assert h.get("Retry-After") == ("3" if status in (429, 503) else None)
    assert emulator.stats.snapshot()["faults"]["error"] == 8
    emulator.configure(error_rate={})
    assert (await qlik(http, emulator))[0] == 200


async def test_hang_holds_until_the_client_gives_up(http, emulator):
    emulator.configure(hang_rate=1.0)
    baseline = len(asyncio.all_tasks())
    with pytest.raises(asyncio.TimeoutError):
        await post(http, qlik_url(emulator), data=QLIK_BODY, headers=JSON, timeout=aiohttp.ClientTimeout(total=0.3))
    # The client gave up, so the server cancels the held request: nothing is left running.
    deadline = time.monotonic() + 2
    while len(asyncio.all_tasks()) > baseline and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a count
        await asyncio.sleep(0.02)
    assert len(asyncio.all_tasks()) <= baseline
    assert emulator.stats.snapshot()["faults"]["hang"] == 1
    emulator.configure(hang_rate=0.0)
    assert (await datarobot(http, emulator))[0] == 200


async def test_stop_releases_hanging_requests_without_leaking_tasks(http):
    emulator = await start_emulator(EmulatorOptions(hang_rate=1.0, **INSTANT), "127.0.0.1", 0)
    baseline = len(asyncio.all_tasks())
    pending = asyncio.create_task(post(http, qlik_url(emulator), data=QLIK_BODY, headers=JSON,
                                       timeout=aiohttp.ClientTimeout(total=30)))
    await asyncio.sleep(0.2)
    assert not pending.done()
    started = time.perf_counter()
    await emulator.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending
    assert time.perf_counter() - started < 1.5
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= baseline


async def test_drop_closes_the_connection_without_a_response(http, emulator):
    emulator.configure(drop_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await qlik(http, emulator)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await datarobot(http, emulator)
    stats = emulator.stats.snapshot()
    assert stats["faults"]["drop"] == 2 and stats["requests"] == 2
    emulator.configure(drop_rate=0.0)
    assert (await qlik(http, emulator))[0] == 200


async def test_seed_makes_faults_reproducible(http, emulator):
    async def sequence(seed: int) -> list[int]:
        emulator.configure(seed=seed, error_rate={503: 0.3, 500: 0.2})
        return [(await qlik(http, emulator))[0] for _ in range(40)]

    first = await sequence(3)
    assert set(first) == {200, 500, 503}
    assert await sequence(3) == first
    assert await sequence(4) != first


async def fastest(make, times: int = 3) -> tuple[float, tuple]:
    """The quickest of ``times`` calls (and its answer): a loaded machine only ever adds time, so the
    minimum is the emulator's own latency."""
    return min([await timed(make()) for _ in range(times)], key=lambda found: found[0])


async def test_latency_model_and_multipliers(http, emulator):
    emulator.configure(latency_ms=60)
    plain, (status, _, _) = await fastest(lambda: qlik(http, emulator))
    assert status == 200 and 0.06 <= plain < 0.5

    emulator.configure(latency_ms=40, per_row_ms=1.0)
    body = orjson.dumps(qlik_body(CHURN_FEATURES, random_rows(DEPLOYMENTS[0].model, 100)))
    rows_time, (status, _, _) = await fastest(lambda: qlik(http, emulator, body=body))
    assert status == 200 and 0.14 <= rows_time < 0.6  # 40 + 100 × 1 ms

    emulator.configure(latency_ms=50, per_row_ms=0, shap_multiplier=3, xemp_multiplier=5)
    plain, _ = await fastest(lambda: qlik(http, emulator))
    shap, _ = await fastest(lambda: qlik(http, emulator, "includeShap=true"))
    assert 2.2 <= shap / plain <= 4.0
    plain, (_, headers, _) = await fastest(lambda: datarobot(http, emulator))
    assert 45 <= int(headers["X-DataRobot-Execution-Time"]) < 500
    xemp, (status, headers, _) = await fastest(
        lambda: datarobot(http, emulator, "maxExplanations=3&explanationAlgorithm=xemp"))
    assert status == 200 and 3.5 <= xemp / plain <= 6.5
    assert int(headers["X-DataRobot-Execution-Time"]) >= 240
    shap, _ = await fastest(lambda: datarobot(http, emulator, "maxExplanations=3"))  # the deployments' default: SHAP
    assert 2.2 <= shap / plain <= 4.0


def test_jitter_is_bounded_and_seeded():
    """The modelled latency: 20 ms plus up to 60 ms of jitter, the same draws for the same seed."""
    options = EmulatorOptions(latency_ms=20, per_row_ms=0, jitter_ms=60)

    def draws(seed: int) -> list[float]:
        dice = FaultDice(seed)
        return [dice.latency_s(options, 10, None) for _ in range(200)]

    first = draws(5)
    assert all(0.02 <= d <= 0.08 for d in first) and max(first) - min(first) > 0.05
    assert draws(5) == first and draws(6) != first


async def test_jitter_reaches_the_answers(http, emulator):
    """Served, the jitter varies the time a request takes; a loaded machine only ever adds to it."""
    emulator.configure(seed=5, latency_ms=20, jitter_ms=60)
    found = [int((await datarobot(http, emulator))[1]["X-DataRobot-Execution-Time"]) for _ in range(8)]
    assert min(found) >= 19 and max(found) - min(found) > 5


async def test_rate_limit_is_per_vendor_route_set(http, emulator):
    emulator.configure(rate_limit_per_minute=2)
    assert [(await qlik(http, emulator))[0] for _ in range(3)] == [200, 200, 429]
    assert [(await datarobot(http, emulator))[0] for _ in range(2)] == [200, 200]
    status, headers, raw = await datarobot(http, emulator)
    assert status == 429 and 58 <= int(headers["Retry-After"]) <= 60 and "message" in orjson.loads(raw)
    assert emulator.stats.snapshot()["faults"]["rate_limited"] == 2
    emulator.configure(rate_limit_per_minute=None)
    assert (await qlik(http, emulator))[0] == 200


def test_the_default_latency_model():
    """A few ms per request plus a per-row cost; SHAP 2× and XEMP 100× the plain latency."""
    dice, defaults = FaultDice(1), EmulatorOptions()
    assert (defaults.latency_ms, defaults.per_row_ms, defaults.shap_multiplier, defaults.xemp_multiplier) == (
        5.0, 0.02, 2.0, 100.0)
    assert dice.latency_s(defaults, 10, None) == pytest.approx(0.0052)
    assert dice.latency_s(defaults, 10, "shap") == pytest.approx(0.0104)
    assert dice.latency_s(defaults, 10, "xemp") == pytest.approx(0.52)
    assert dice.latency_s(defaults, 500, None) == pytest.approx(0.015)
    instant = EmulatorOptions(**INSTANT)
    assert [dice.latency_s(instant, 500, kind) for kind in (None, "shap", "xemp")] == [0.0, 0.0, 0.0]


def execution_ms(headers) -> int:
    return int(headers["X-DataRobot-Execution-Time"])


async def test_with_the_defaults_xemp_is_far_slower_than_plain_and_shap(http):
    body = csv_text(CHURN_FEATURES, random_rows(DEPLOYMENTS[0].model, 10)).encode()
    async with await start_emulator(EmulatorOptions(seed=1)) as emulator:
        plain = execution_ms((await datarobot(http, emulator, body=body))[1])
        shap = execution_ms((await datarobot(http, emulator, "maxExplanations=3&explanationAlgorithm=shap", body))[1])
        elapsed, (status, headers, _) = await timed(
            datarobot(http, emulator, "maxExplanations=3&explanationAlgorithm=xemp", body))
    assert status == 200
    assert plain >= 5 and shap >= 10  # 5.2 ms and 10.4 ms modelled, rounded to whole ms
    assert execution_ms(headers) >= 520 and 0.52 <= elapsed < 5.0


async def test_zero_latency_must_be_asked_for_and_is_instant(http):
    body = csv_text(CHURN_FEATURES, random_rows(DEPLOYMENTS[0].model, 10)).encode()
    async def ten_in_a_row() -> list[tuple]:
        return [await datarobot(http, emulator, "maxExplanations=3&explanationAlgorithm=xemp", body)
                for _ in range(10)]

    async with await start_emulator(EmulatorOptions(seed=1, **INSTANT)) as emulator:
        elapsed, answers = await timed(ten_in_a_row())
    assert all(status == 200 for status, _, _ in answers)
    assert elapsed < 2.0  # the default model would take 10 × 520 ms
    assert max(execution_ms(headers) for _, headers, _ in answers) < 500
