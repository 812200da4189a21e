"""The four DataRobot query keys over real HTTP: the gateway's codec (and ``check --probe``) sends
them as the seed spells them, asserted on the request the emulator received; the emulator answers
prediction warnings on ``customer_value`` rows outside its range, refuses multiclass explanations
as the seed's error table says, and the warnings land in the output records."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiokafka.structs import ConsumerRecord

from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.factory import make_codec, make_ssl_context
from gateway.commands.check import probe_backend
from gateway.config import parse_config
from gateway.emulator import Emulator
from gateway.stream.outputs import Outputs
from tests.emulator.conftest import datarobot_url, post

VALUE_ROWS = [  # a modest customer (inside 0–4000) and one far beyond the range the model expects
    {"PlanType": "Basic", "TenureMonths": 12, "BaseFee": 50.0, "AdditionalFeatureSpend": 10.0,
     "ServiceRating": 4.0, "HasRenewed": True},
    {"PlanType": "Enterprise", "TenureMonths": 120, "BaseFee": 90.0, "AdditionalFeatureSpend": 40.0,
     "ServiceRating": 4.9, "HasRenewed": True}]
PRIORITY_ROWS = [{"Channel": "phone", "OpenTickets": 3, "WaitMinutes": 20.0, "ServiceRating": 3.1,
                  "PlanType": "Premium", "IsOutage": True}]


def query_of(path: str) -> str:
    return path.partition("?")[2]


async def send(http: aiohttp.ClientSession, codec: DataRobotCodec, rows: list[dict[str, Any]]) -> tuple[int, Any]:
    request = codec.encode(None, rows)
    status, headers, body = await post(http, request.url, data=request.body, headers=request.headers)
    return status, codec.decode(request, status, headers["Content-Type"], body) if status == 200 else body


async def test_each_parameter_reaches_the_emulator_as_the_seed_spells_it(emulator: Emulator, http):
    codec = DataRobotCodec(url=datarobot_url(emulator, "customer_value"), token="t", max_bytes=None,
                           max_explanations=2, explanation_num_top_classes=3, prediction_warning_enabled=True,
                           exclude_adjusted_predictions=False)
    status, _ = await send(http, codec, VALUE_ROWS)
    assert status == 200
    assert query_of(emulator.received[-1]) == ("maxExplanations=2&explanationNumTopClasses=3"
                                               "&predictionWarningEnabled=true&excludeAdjustedPredictions=false")
    names = DataRobotCodec(url=datarobot_url(emulator, "customer_value"), token="t", max_bytes=None,
                           max_explanations=1, explanation_class_names=("low", "très haut/ü"))
    status, _ = await send(http, names, VALUE_ROWS)
    assert status == 200
    assert query_of(emulator.received[-1]) == (
        "maxExplanations=1&explanationClassNames=low&explanationClassNames=tr%C3%A8s%20haut/%C3%BC")
    async with http.get(f"{emulator.url}/_emulator/requests") as response:
        assert (await response.json())["requests"][-2:] == list(emulator.received)[-2:]


async def test_warnings_mark_the_rows_outside_the_range_in_json_and_csv(emulator: Emulator, http):
    for response_format in ("json", "csv"):
        codec = DataRobotCodec(url=datarobot_url(emulator, "customer_value"), token="t", max_bytes=None,
                               prediction_warning_enabled=True, response_format=response_format)
        status, rows = await send(http, codec, VALUE_ROWS)
        assert status == 200
        assert [row.prediction_warning for row in rows] == [False, True], response_format
        assert rows[1].prediction > 4000 and all(row.vendor_fields is None for row in rows)
    plain = DataRobotCodec(url=datarobot_url(emulator, "customer_value"), token="t", max_bytes=None)
    _, rows = await send(http, plain, VALUE_ROWS)
    assert [row.prediction_warning for row in rows] == [None, None]  # not asked: not reported


async def test_a_deployment_without_warnings_adds_nothing(emulator: Emulator, http):
    codec = DataRobotCodec(url=datarobot_url(emulator, "support_priority"), token="t", max_bytes=None,
                           prediction_warning_enabled=True)
    status, rows = await send(http, codec, PRIORITY_ROWS)
    assert status == 200 and rows[0].prediction_warning is None and rows[0].vendor_fields is None


async def test_multiclass_explanations_follow_the_seeds_error_table(emulator: Emulator, http):
    for selector in ({"explanation_num_top_classes": 2}, {"explanation_class_names": ("high", "low")}):
        codec = DataRobotCodec(url=datarobot_url(emulator, "support_priority"), token="t", max_bytes=None,
                               max_explanations=3, **selector)  # type: ignore[arg-type]
        status, body = await send(http, codec, PRIORITY_ROWS)
        assert status == 422
        assert orjson.loads(body) == {"message": "Multiclass models cannot be used for Prediction Explanations"}
    both = datarobot_url(emulator, "support_priority") + "?explanationNumTopClasses=2&explanationClassNames=a"
    status, _, body = await post(http, both, data=b"Channel\nphone\n", headers={"Content-Type": "text/csv"})
    assert (status, orjson.loads(body)["message"]) == (
        422, "explanationNumTopClasses and explanationClassNames are mutually exclusive")
    for name, value in (("predictionWarningEnabled", "maybe"), ("excludeAdjustedPredictions", "")):
        status, _, body = await post(http, f"{datarobot_url(emulator)}?{name}={value}", data=b"a\n1\n",
                                     headers={"Content-Type": "text/csv"})
        assert status == 422 and "Bool" in orjson.loads(body)["message"]


async def test_the_warning_lands_in_the_output_record(emulator: Emulator, http):
    codec = DataRobotCodec(url=datarobot_url(emulator, "customer_value"), token="t", max_bytes=None,
                           prediction_warning_enabled=True)
    _, rows = await send(http, codec, VALUE_ROWS)
    records = [ConsumerRecord("customers", 0, offset, 1_763_800_000_000, 0, b"k", orjson.dumps(row), None, 1, 1, [])
               for offset, row in enumerate(VALUE_ROWS)]
    outputs = Outputs(pipeline="value", backend="datarobot", deployment=codec.deployment,
                      predictions="value-predictions", dead_letter="value-dlq", explanations=None)
    published = outputs.batch(records, rows, 3.0)
    values = [orjson.loads(value) for _, _, value, _ in published.messages]
    assert [v["prediction_warning"] for v in values] == [False, True]


async def test_check_probe_sends_the_parameters_once(emulator: Emulator):
    raw = {"kafka": {"bootstrap_servers": "127.0.0.1:9"},
           "pipelines": [{"name": "value", "input_topic": "customers",
                          "backend": {"type": "datarobot", "url": datarobot_url(emulator, "customer_value"),
                                      "token": "t", "max_explanations": 2, "explanation_class_names": ["a b"],
                                      "prediction_warning_enabled": True, "exclude_adjusted_predictions": True},
                          "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}
    pipeline = parse_config(raw, {}).pipelines[0]
    before = len(emulator.received)
    async with aiohttp.ClientSession() as session:
        result = await probe_backend(pipeline, session, 5.0, make_codec, make_ssl_context)
    assert result.ok, result.line()
    sent = list(emulator.received)[before:]
    assert [query_of(path) for path in sent] == [
        "maxExplanations=2&explanationClassNames=a%20b&predictionWarningEnabled=true&excludeAdjustedPredictions=true"]
