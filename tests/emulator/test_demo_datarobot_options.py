"""The demo's DataRobot step over real HTTP: prediction warnings on the customer outside the range,
and the multiclass explanation request refused as DataRobot's error table documents."""

from __future__ import annotations

import aiohttp

from gateway.commands.demo.datarobot_options import lines, showcase
from gateway.emulator import Emulator


async def test_the_demo_shows_a_warning_and_the_multiclass_refusal(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        shown = await showcase(emulator.url, session)
    assert [warning for _, warning in shown.warnings] == [False, False, True]
    assert shown.warnings[2][0] > 4000 >= shown.warnings[1][0]
    assert shown.warning_query == "predictionWarningEnabled=true"
    assert (shown.multiclass_status, shown.multiclass_message) == (
        422, "Multiclass models cannot be used for Prediction Explanations")
    assert shown.multiclass_query == "maxExplanations=3&explanationNumTopClasses=2"
    text = "\n".join(lines(shown))
    assert "prediction_warning=true" in text and "HTTP 422" in text
