"""The one redaction rule, on the hostile strings the rest of the suite throws at logs, probes and configs."""

from __future__ import annotations

import pytest

from gateway.runtime.redaction import MASK, Redactor

SECRET = "qlik-api-key-7f3a9c2e1b"
DR_KEY = "dr-key-0b1c2d3e4f"


@pytest.mark.parametrize(("text", "masked"), [
    # credential shapes, with nothing configured (tests/unit/test_logs.py)
    ("headers {'Authorization': 'Bearer eyJhbGciOi.eyJzdWIi.sig-123', 'DataRobot-Key': 'abc-def-1234'}",
     "headers {'Authorization': 'Bearer ***', 'DataRobot-Key': '***'}"),
    ("Authorization: Token 6b1c0a9e2f7d4e8a", "Authorization: Token ***"),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
    ("retrying with bearer abcdefXYZ and Token 0123456789abcdef", "retrying with bearer *** and Token ***"),
    ("sasl_password=hunter2 user=alice", "sasl_password=*** user=alice"),
    # a backend quoting the request's headers back (tests/integration/test_security.py)
    ("Invalid API token: Authorization=Bearer s3cr3t-tok DataRobot-Key=k3y-0042",
     "Invalid API token: Authorization=Bearer *** DataRobot-Key=***"),
])
def test_credential_shapes_are_masked_without_configuration(text: str, masked: str) -> None:
    assert Redactor(()).text(text) == masked


@pytest.mark.parametrize("text", ["Token validation failed at abc", "basic auth is not configured",
                                  "max_tokens=5 reached", "Invalid API token",
                                  "Unauthorized: Verify your API credentials."])
def test_ordinary_words_survive(text: str) -> None:
    assert Redactor(("abc",)).text(text) == text  # "abc" is too short to be a real secret


def test_known_secrets_are_masked_longest_first_wherever_they_are() -> None:
    redactor = Redactor((SECRET, DR_KEY, SECRET[:10], ""))
    assert redactor.known(f"https://x/?k={SECRET}&d={DR_KEY}") == f"https://x/?k={MASK}&d={MASK}"
    assert redactor.text("token abc123 and abc123x".replace("abc123", SECRET)) == "token *** and ***x"


def test_values_are_masked_by_content_and_by_field_name() -> None:
    redactor = Redactor((SECRET,))
    assert redactor.value({"url": f"https://x/?k={SECRET}", "nested": {"list": [SECRET, 1]}, "token": "t0k",
                           "max_tokens": 5}) == {"url": "https://x/?k=***", "nested": {"list": ["***", 1]},
                                                 "token": "***", "max_tokens": 5}


def test_known_alone_keeps_a_message_about_a_secret_key_readable() -> None:
    """Configuration errors name keys like ``token:`` as their subject: only known values go."""
    redactor = Redactor(("ENV-SECRET-8",))
    line = "pipelines[0].backend.token: expected a string, got a number"
    assert redactor.known(line) == line
    assert redactor.text(line) != line  # what the shape rule would have done to it
    assert redactor.known("kafka.group_id: got 'ENV-SECRET-8x'") == "kafka.group_id: got '***x'"
