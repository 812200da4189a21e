"""Structured logs: the JSON and text shapes, the event helper, and secret masking everywhere."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from gateway.runtime.logs import GatewayLogHandler, configure_logging, event

SECRET = "qlik-api-key-7f3a9c2e1b"
DR_KEY = "dr-key-0b1c2d3e4f"


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """Leaves the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def configured(fmt: str = "json", level: str = "INFO", secrets: tuple[str, ...] = (SECRET, DR_KEY)) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(fmt, level, secrets, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_json_lines_carry_the_standard_keys_and_typed_fields(root: logging.Logger) -> None:
    stream = configured()
    log = logging.getLogger("gateway.stream.pipeline")
    event(log, "batch_published", pipeline="churn", rows=500, latency_s=0.012, ok=True)
    log.warning("plain %s message", "library", extra={"partition": 3})
    first, second = lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert {k: v for k, v in first.items() if k != "ts"} == {
        "level": "info", "event": "batch_published", "logger": "gateway.stream.pipeline",
        "pipeline": "churn", "rows": 500, "latency_s": 0.012, "ok": True}
    assert second["event"] == "plain library message" and second["partition"] == 3 and second["level"] == "warning"


def test_fields_never_replace_the_standard_keys(root: logging.Logger) -> None:
    stream = configured()
    event(logging.getLogger("gateway"), "started", level_hint="x", logger="mine", ts="then")
    (doc,) = lines(stream)
    assert doc["logger"] == "gateway" and doc["logger_"] == "mine" and doc["ts_"] == "then"


def test_text_format_is_one_readable_line(root: logging.Logger) -> None:
    stream = configured("text")
    event(logging.getLogger("gateway.app"), "pipeline_started", pipeline="churn", note="two words")
    line = stream.getvalue().strip()
    assert re.fullmatch(r"\S+Z INFO +gateway\.app: pipeline_started pipeline=churn note=\"two words\"", line)


def test_level_filters_and_the_helper_skips_disabled_levels(root: logging.Logger) -> None:
    stream = configured(level="warning")
    log = logging.getLogger("gateway.x")
    event(log, "quiet", pipeline="churn")
    event(log, "loud", logging.ERROR, pipeline="churn")
    assert [d["event"] for d in lines(stream)] == ["loud"]


def test_event_points_at_its_caller_and_attaches_exceptions(root: logging.Logger) -> None:
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append  # type: ignore[method-assign]
    stream = configured()
    root.addHandler(capture)
    try:
        raise RuntimeError("backend exploded")
    except RuntimeError:
        event(logging.getLogger("gateway.x"), "batch_failed", logging.ERROR, exc_info=True, pipeline="churn")
    assert records[0].funcName == "test_event_points_at_its_caller_and_attaches_exceptions"
    (doc,) = lines(stream)
    assert doc["exc_type"] == "RuntimeError" and "backend exploded" in doc["exc"] and doc["pipeline"] == "churn"
    assert "exc_info" not in doc


def test_configured_secrets_are_masked_everywhere(root: logging.Logger) -> None:
    stream = configured()
    log = logging.getLogger("gateway.backend")
    log.info("token is " + SECRET)
    log.info("sending with %s and %r", SECRET, {"nested": [DR_KEY]})
    log.info("extra", extra={"url": f"https://x/?k={SECRET}", "nested": {"list": [SECRET, 1]}})
    event(log, "request", detail=f"key {DR_KEY}", attempts=2)
    try:
        raise ValueError(f"rejected credential {SECRET}")
    except ValueError:
        log.exception("call failed")
    output = stream.getvalue()
    assert SECRET not in output and DR_KEY not in output
    docs = lines(stream)
    assert docs[0]["event"] == "token is ***"
    assert docs[1]["event"] == "sending with *** and {'nested': ['***']}"
    assert docs[2]["url"] == "https://x/?k=***" and docs[2]["nested"] == {"list": ["***", 1]}
    assert docs[3]["detail"] == "key ***" and docs[3]["attempts"] == 2
    assert "rejected credential ***" in docs[4]["exc"]


def test_headers_and_credentials_are_masked_without_configuration(root: logging.Logger) -> None:
    stream = configured(secrets=())
    log = logging.getLogger("gateway.backend")
    log.info("headers %s", {"Authorization": "Bearer eyJhbGciOi.eyJzdWIi.sig-123", "DataRobot-Key": "abc-def-1234"})
    log.info("Authorization: Token 6b1c0a9e2f7d4e8a")
    log.info("Authorization: Basic dXNlcjpwYXNz")
    log.info("retrying with bearer abcdefXYZ and Token 0123456789abcdef")
    log.info("sasl_password=hunter2 user=alice")
    output = [d["event"] for d in lines(stream)]
    assert output == [
        "headers {'Authorization': 'Bearer ***', 'DataRobot-Key': '***'}",
        "Authorization: Token ***",
        "Authorization: Basic ***",
        "retrying with bearer *** and Token ***",
        "sasl_password=*** user=alice",
    ]


def test_fields_named_like_secrets_are_masked(root: logging.Logger) -> None:
    stream = configured(secrets=())
    event(logging.getLogger("gateway"), "config", token="plain-text", sasl_password="pw", datarobot_key="k",
          backend={"url": "https://x", "token": "t0k"}, max_tokens=5)
    (doc,) = lines(stream)
    assert doc["token"] == "***" and doc["sasl_password"] == "***" and doc["datarobot_key"] == "***"
    assert doc["backend"] == {"url": "https://x", "token": "***"}
    assert doc["max_tokens"] == 5


def test_ordinary_words_survive(root: logging.Logger) -> None:
    stream = configured(secrets=("abc",))  # too short to be a real secret: ignored, not masked everywhere
    log = logging.getLogger("gateway")
    messages = ["Token validation failed at abc", "basic auth is not configured", "max_tokens=5 reached",
                "the bearer of bad news"]
    for message in messages:
        log.info(message)
    assert [d["event"] for d in lines(stream)][:3] == messages[:3]


def test_a_bad_format_string_does_not_raise(root: logging.Logger) -> None:
    for handler in list(root.handlers):  # the test runner's capture handler would raise on it first
        root.removeHandler(handler)
    stream = configured()
    logging.getLogger("gateway").info("two %s %s", "only-one")
    (doc,) = lines(stream)
    assert "two %s %s" in doc["event"] and "only-one" in doc["event"]


def test_reconfiguring_replaces_the_gateway_handler(root: logging.Logger) -> None:
    configured()
    second = configured("text")
    assert sum(isinstance(h, GatewayLogHandler) for h in root.handlers) == 1
    logging.getLogger("gateway").info("hello")
    assert "hello" in second.getvalue()


def test_bad_arguments_are_rejected(root: logging.Logger) -> None:
    with pytest.raises(ValueError, match="format"):
        configure_logging("xml", "INFO", ())
    with pytest.raises(ValueError, match="level"):
        configure_logging("json", "LOUD", ())
