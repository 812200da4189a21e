"""After a DataRobot demo run: two more requests that show what DataRobot's query options do, through
the gateway's own codec and the emulator over HTTP.

* ``prediction_warning_enabled`` on ``customer_value`` (a regression with prediction warnings on):
  three customers, the last far beyond the range the model expects, and each one's
  ``prediction_warning`` as the output record would carry it;
* ``explanation_num_top_classes`` on ``support_priority`` (multiclass): the emulator answers as
  DataRobot's error table documents, 422 "Multiclass models cannot be used for Prediction
  Explanations", which a pipeline would dead-letter with that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.errors import vendor_message
from gateway.json_types import JsonObject, JsonValue, Row

TOKEN = "demo-token"
CUSTOMERS: list[JsonObject] = [  # tenures of 1, 3 and 12 years: the last customer's value is outside 0–4000
    {"PlanType": "Basic", "TenureMonths": 12, "BaseFee": 45.0, "AdditionalFeatureSpend": 5.0, "ServiceRating": 3.9,
     "HasRenewed": False},
    {"PlanType": "Premium", "TenureMonths": 36, "BaseFee": 80.0, "AdditionalFeatureSpend": 25.0,
     "ServiceRating": 4.4, "HasRenewed": True},
    {"PlanType": "Enterprise", "TenureMonths": 144, "BaseFee": 90.0, "AdditionalFeatureSpend": 40.0,
     "ServiceRating": 4.9, "HasRenewed": True}]
TICKET: JsonObject = {"Channel": "phone", "OpenTickets": 3, "WaitMinutes": 25.0, "ServiceRating": 3.1,
                      "PlanType": "Premium", "IsOutage": True}


@dataclass(frozen=True, slots=True)
class Showcase:
    warnings: list[tuple[float, bool | None]]  # (predicted lifetime value, prediction_warning) per customer
    warning_query: str
    multiclass_status: int
    multiclass_message: str
    multiclass_query: str


async def showcase(emulator_url: str, session: aiohttp.ClientSession) -> Showcase:
    async with session.get(f"{emulator_url}/_emulator/deployments") as response:
        ids = {d["name"]: d["datarobot_id"] for d in (await response.json())["deployments"]}
    url = f"{emulator_url}/predApi/v1.0/deployments/{{}}/predictions".format
    warned = DataRobotCodec(url=url(ids["customer_value"]), token=TOKEN, max_bytes=None,
                            prediction_warning_enabled=True)
    status, content_type, body = await _send(session, warned, CUSTOMERS)
    rows = warned.decode(warned.encode(None, CUSTOMERS), status, content_type, body)
    explained = DataRobotCodec(url=url(ids["support_priority"]), token=TOKEN, max_bytes=None, max_explanations=3,
                               explanation_num_top_classes=2)
    status, _, body = await _send(session, explained, [TICKET])
    return Showcase([(_number(row.prediction), row.prediction_warning) for row in rows],
                    warned.request_url.partition("?")[2], status, vendor_message(body),
                    explained.request_url.partition("?")[2])


def _number(prediction: JsonValue) -> float:
    """A regression prediction (a JSON number) as a float."""
    if isinstance(prediction, (int, float)):
        return float(prediction)
    raise TypeError(f"expected a numeric prediction, got {prediction!r}")


async def _send(session: aiohttp.ClientSession, codec: DataRobotCodec,
                rows: Sequence[Row]) -> tuple[int, str, bytes]:
    request = codec.encode(None, rows)
    async with session.post(request.url, data=request.body, headers=request.headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


def lines(shown: Showcase) -> list[str]:
    out = ["[bold]DataRobot query options[/] (customer_value and support_priority deployments):",
           f"  prediction warnings   ?{shown.warning_query}"]
    for value, warning in shown.warnings:
        out.append(f"    lifetime value {value:10.1f}  prediction_warning={str(warning).lower()}")
    out += [f"  multiclass classes    ?{shown.multiclass_query}",
            f"    HTTP {shown.multiclass_status}: {shown.multiclass_message} (as DataRobot documents)"]
    return out
