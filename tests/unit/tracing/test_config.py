"""The ``tracing:`` section: absent is off, the keys and their checks, secret headers redacted by ``check``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.commands.check import render
from gateway.config import Config, ConfigError, parse_config
from gateway.tracing.provider import Tracing, traces_url
from tests.unit.tracing.support import parent_header, parse, record

SECRET = "otlp-key-5c1d9e7a2b"


def load(tracing: Any = None, *, absent: bool = False) -> Config:
    doc: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "pipelines": [{"name": "churn", "input_topic": "features", "outputs": {"predictions": "p", "dead_letter": "d"},
                       "backend": {"type": "qlik", "token": "t", "url": "http://127.0.0.1:1/api/v1/ml/deployments/"
                                                                      "churn/realtime-predictions/actions/run"}}],
    }
    if not absent:
        doc["tracing"] = tracing
    return parse_config(doc, environ={"OTLP_KEY": SECRET})


def test_absent_is_off_and_an_empty_section_is_on_with_defaults() -> None:
    assert load(absent=True).tracing is None
    assert load(None).tracing is None  # `tracing:` with nothing under it
    on = load({}).tracing
    assert on is not None
    assert (on.exporter, on.endpoint, on.sample_ratio, on.service_name) == (
        "otlp", "http://localhost:4318", 0.01, "scoring-gateway")


def test_check_shows_the_header_names_and_hides_their_values(tmp_path: Path) -> None:
    config = load({"endpoint": "https://otlp.example.com:4318", "headers": {"x-api-key": "${OTLP_KEY}"},
                   "resource_attributes": {"deployment.environment.name": "prod"}})
    shown = render(config, tmp_path / "gw.yaml")
    assert SECRET not in shown
    assert yaml.safe_load(shown)["tracing"]["headers"] == {"x-api-key": "***"}
    assert SECRET in config.secret_values()  # and scrubbed from logs
    assert config.tracing is not None and config.tracing.headers == {"x-api-key": SECRET}


@pytest.mark.parametrize(("section", "expected"), [
    ({"sample_ratio": 1.5}, "tracing.sample_ratio: must be <= 1"),
    ({"exporter": "jaeger"}, "tracing.exporter"),
    ({"endpoint": "collector:4318"}, "tracing.endpoint"),
    ({"headers": {"bad header": "x"}}, "tracing.headers"),
    ({"headers": {"x-key": "line\nbreak"}}, "tracing.headers"),
    ({"sample_rate": 0.1}, "tracing.sample_rate: unknown key (did you mean 'sample_ratio'?)"),
])
def test_mistakes_name_their_key(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(section)
    assert any(line.startswith(expected) for line in caught.value.errors), caught.value.errors


def test_the_endpoint_is_a_collector_address_or_its_traces_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://gw.example.com/otlp/v1/traces") == "https://gw.example.com/otlp/v1/traces"


def test_exporter_none_propagates_without_recording() -> None:
    config = load({"exporter": "none", "sample_ratio": 1.0})
    assert config.tracing is not None
    tracing = Tracing(config.tracing)
    assert tracing.processor is None
    pipeline = tracing.pipeline(config.pipelines[0])
    records = [record(0, [parent_header(0xA1, 0xB2)]), record(1)]
    trace = pipeline.start(records)
    assert trace is not None
    messages: list[Any] = [("p", r.key, b"{}", r.headers) for r in records]
    trace.stamp(messages, [0, 1])
    trace.published()
    (sampled_trace, span, flag), (new_trace, _, new_flag) = (parse(dict(m[3])["traceparent"]) for m in messages)
    assert (sampled_trace, flag) == (0xA1, True) and span != 0xB2
    assert new_trace not in (0, 0xA1) and new_flag  # the ratio (1.0) started a trace for the other
    tracing.shutdown()
