"""The one translation of aiokafka's connection and login failures (gateway.kafka.connection.connection_failure)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from aiokafka import errors as kafka_errors

from gateway.config import parse_config
from gateway.kafka.connection import KafkaStartError, connection_failure, producer_options, start_client
from gateway.kafka.embedded import free_port

PASSWORD = "pw-never-shown-9c1d"


def kafka(**settings: Any) -> Any:
    doc = {"kafka": {"bootstrap_servers": "127.0.0.1:9092", **settings},
           "pipelines": [{"name": "p", "input_topic": "in",
                          "backend": {"type": "qlik",
                                      "url": "https://h/api/v1/ml/deployments/d/realtime-predictions/actions/run"},
                          "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}
    return parse_config(doc, {}).kafka


SCRAM = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "gateway",
         "sasl_password": PASSWORD}


def untrusted() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "unable to get local issuer certificate"
    return exc


@pytest.mark.parametrize(("exc", "settings", "expected"), [
    (kafka_errors.SaslAuthenticationFailed("Authentication failed during authentication due to invalid credentials"
                                           " with SASL mechanism SCRAM-SHA-512"), SCRAM,
     "authentication failed (SASL_PLAINTEXT SCRAM-SHA-512 as 'gateway'): SaslAuthenticationFailed: Authentication "
     "failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"),
    (KeyError("v"), SCRAM,
     "authentication failed (SASL_PLAINTEXT SCRAM-SHA-512 as 'gateway'): the broker refused the SCRAM login "
     "(wrong user or password)"),
    (kafka_errors.UnsupportedSaslMechanismError(), SCRAM,
     "authentication failed (SASL_PLAINTEXT SCRAM-SHA-512 as 'gateway'): the listener does not offer SASL "
     "mechanism SCRAM-SHA-512"),
    (kafka_errors.IllegalSaslStateError(), SCRAM,
     "authentication failed (SASL_PLAINTEXT SCRAM-SHA-512 as 'gateway'): the listener refused the SASL "
     "handshake: is it a SASL listener?"),
    (untrusted(), {"security_protocol": "SSL"},
     "TLS handshake failed (SSL): the broker's certificate is not trusted: unable to get local issuer certificate "
     "(ssl_cafile must name the CA that signed it)"),
    (kafka_errors.KafkaConnectionError("Connection at 127.0.0.1:1 closed"), {"security_protocol": "SSL"},
     "the broker closed the connection during the handshake (SSL): it may require a client certificate "
     "(ssl_certfile, ssl_keyfile) or another security_protocol"),
    (kafka_errors.KafkaConnectionError("Connection at 127.0.0.1:1 closed"), {},
     "the broker closed the connection during the handshake (PLAINTEXT): the listener may expect TLS or SASL: "
     "check security_protocol (it is PLAINTEXT)"),
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), {},
     "unreachable: [Errno 111] Connect call failed ('127.0.0.1', 1)"),
    (kafka_errors.InvalidSessionTimeoutError(), {"session_timeout_ms": 2000},
     "the broker refuses kafka.session_timeout_ms 2000: it must lie within the broker's "
     "group.min.session.timeout.ms and group.max.session.timeout.ms (6000 and 1800000 by default)"),
    (TimeoutError(), {},
     "no answer within 3s (unreachable, or security_protocol PLAINTEXT does not match the listener)"),
])
def test_failures_are_said_by_what_to_fix(exc: BaseException, settings: dict[str, Any], expected: str) -> None:
    line = connection_failure(exc, kafka(**settings), 3.0)
    assert line == expected
    assert PASSWORD not in line


async def test_a_client_that_cannot_bootstrap_is_diagnosed_in_one_line() -> None:
    """aiokafka's own error says only "Unable to bootstrap"; the cause is found by connecting again."""
    port = free_port()
    settings = kafka(bootstrap_servers=f"127.0.0.1:{port}")

    async def start() -> None:
        raise kafka_errors.KafkaConnectionError(f"Unable to bootstrap from [('127.0.0.1', {port}, 2)]")

    with pytest.raises(KafkaStartError) as caught:
        await asyncio.wait_for(start_client(start(), settings), 30)
    message = str(caught.value)
    assert message.startswith(f"kafka 127.0.0.1:{port}: unreachable: ") and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_producer_is_idempotent_unless_switched_off() -> None:
    assert producer_options(kafka())["enable_idempotence"] is True
    assert producer_options(kafka())["acks"] == "all"
    assert producer_options(kafka(enable_idempotence=False))["enable_idempotence"] is False
