"""``pipelines[].challenger`` and ``outputs.comparisons``: defaults, and mistakes named by their key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, DataRobotBackend, QlikBackend, json_schema, parse_config

QLIK_URL = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/c35f4b70-3ce4-4a30-b62b-2aef16943bc4/realtime-predictions/actions/run"
DATAROBOT_URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/0123456789abcdef01234567/predictions"


def doc(challenger: Any = None, **pipeline: Any) -> dict[str, Any]:
    outputs = {"predictions": "p", "dead_letter": "d", **pipeline.pop("outputs", {})}
    entry: dict[str, Any] = {"name": "churn", "input_topic": "in", "backend": {"type": "qlik", "url": QLIK_URL},
                             "outputs": outputs, **pipeline}
    if challenger is not None:
        entry["challenger"] = challenger
    return {"kafka": {"bootstrap_servers": "b:9092"}, "pipelines": [entry]}


def test_no_challenger_by_default() -> None:
    pipeline = parse_config(doc(), {}).pipelines[0]
    assert pipeline.challenger is None and pipeline.outputs.comparisons is None


def test_a_challenger_of_another_vendor_with_its_defaults() -> None:
    config = parse_config(doc({"backend": {"type": "datarobot", "url": DATAROBOT_URL}},
                              outputs={"comparisons": "cmp"}), {})
    challenger = config.pipelines[0].challenger
    assert challenger is not None and isinstance(challenger.backend, DataRobotBackend)
    assert isinstance(config.pipelines[0].backend, QlikBackend)
    assert (challenger.sample_rate, challenger.tolerance, challenger.request_timeout_s) == (1.0, 0.0, 10)
    assert challenger.concurrency.max_in_flight_requests == 16


@pytest.mark.parametrize(("challenger", "extra", "message"), [
    ({"backend": {"type": "qlik", "url": QLIK_URL}}, {},
     "pipelines[0].outputs.comparisons: required with a challenger"),
    ({"backend": {"type": "qlik", "url": QLIK_URL}, "sample_rate": 1.5}, {"outputs": {"comparisons": "cmp"}},
     "pipelines[0].challenger.sample_rate"),
    ({"sample_rate": 0.5}, {"outputs": {"comparisons": "cmp"}}, "pipelines[0].challenger.backend"),
    ({"backend": {"type": "qlik", "url": QLIK_URL}}, {"outputs": {"comparisons": "p"}},
     "pipelines[0].outputs.comparisons: must differ from outputs.predictions"),
    ({"backend": {"type": "qlik", "url": QLIK_URL}},
     {"outputs": {"comparisons": "cmp"}, "delivery": "exactly_once"},
     "pipelines[0].challenger: not available with delivery exactly_once"),
])
def test_mistakes_name_their_key(challenger: Any, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc(challenger, **extra), {})
    assert message in str(caught.value)


def test_the_schema_describes_the_challenger() -> None:
    pipeline = json_schema()["$defs"]["PipelineConfig"]["properties"]
    assert "challenger" in pipeline
