"""The in-process API the demo, tests and benchmarks use: start, configure, stop."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.emulator import EmulatorOptions, OptionError, start_emulator
from gateway.runtime.loop import loop_factory
from tests.emulator.conftest import post, qlik_url


async def test_start_use_and_stop(http):
    async with await start_emulator(EmulatorOptions(latency_ms=1, seed=2)) as emulator:
        assert emulator.url.startswith("http://127.0.0.1:")
        status, _, _ = await post(http, qlik_url(emulator), data=b'{"schema": [{"name": "x"}], "rows": []}')
        assert status == 400  # the churn features are missing: a real answer from a real server
        assert emulator.stats.snapshot()["routes"]["qlik"]["statuses"] == {"400": 1}
        with pytest.raises(OptionError, match="latency_ms"):
            emulator.configure(latency_ms=-5)
        assert emulator.configure(latency_ms=3).latency_ms == 3.0
        url = emulator.url
    with pytest.raises(aiohttp.ClientError):
        await post(http, url + "/_emulator/stats", data=b"")
    await emulator.stop()  # stopping twice is harmless


def test_options_are_validated_on_construction():
    with pytest.raises(OptionError, match="error_rate"):
        EmulatorOptions(error_rate={503: 0.6, 502: 0.6})
    with pytest.raises(OptionError, match="tls_cert and tls_key"):
        EmulatorOptions(tls_cert="cert.pem")
    options = EmulatorOptions(error_rate={"503": 0.25})
    assert dict(options.error_rate) == {503: 0.25}
    with pytest.raises(TypeError):
        options.error_rate[500] = 1.0  # type: ignore[index]  # a change goes through updated()


def test_the_command_runs_on_uvloop():
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory() is uvloop.new_event_loop
