"""Start-up that waits for a broker that is coming: what is retried, what stops at once, the back-off."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors as kafka_errors
from aiokafka.protocol.coordination import FindCoordinatorRequest

from gateway.config import KafkaConfig
from gateway.kafka import startup
from gateway.kafka.embedded import free_port
from gateway.kafka.startup import Backoff, BrokerRefused, BrokerUnavailable, heals, wait_for_kafka

FAST = Backoff(initial_s=0.01, cap_s=0.05)


def settings(timeout_s: float = 5.0) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers="127.0.0.1:19092", group_id="g", startup_timeout_s=timeout_s)


class FakeConnection:
    """A connection that answers Metadata and FindCoordinator as told."""

    def __init__(self, topic_error: int = 0, coordinator_error: int = 0, brokers: int = 1) -> None:
        self.topic_error, self.coordinator_error, self.brokers = topic_error, coordinator_error, brokers

    async def send(self, request: Any) -> Any:
        if isinstance(request, FindCoordinatorRequest):
            return SimpleNamespace(error_code=self.coordinator_error, host="127.0.0.1", port=19093)
        return SimpleNamespace(brokers=[object()] * self.brokers,
                               topics=[(self.topic_error, name, False, []) for name in request._topics])

    def close(self) -> None:
        pass


def scripted(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> list[tuple[str, int]]:
    """``connect`` yields each outcome in turn (an exception is raised); the last one repeats."""
    calls: list[tuple[str, int]] = []
    found: Iterator[Any] = iter(outcomes)
    last: list[Any] = [None]

    async def connect(options: Any, host: str, port: int, timeout_s: float) -> Any:
        calls.append((host, port))
        outcome = next(found, last[0])
        last[0] = outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(startup, "connect", connect)
    return calls


def test_the_back_off_grows_is_capped_and_jittered() -> None:
    rng, backoff = random.Random(3), Backoff(initial_s=0.5, cap_s=10.0)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (6, 10.0), (50, 10.0)):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered: replicas do not retry in step


@pytest.mark.parametrize(("exc", "expected"), [
    (ConnectionRefusedError(111, "Connection refused"), True),
    (TimeoutError(), True),
    (OSError(-2, "Name or service not known"), True),
    (kafka_errors.KafkaConnectionError("Unable to bootstrap"), True),
    (kafka_errors.CoordinatorNotAvailableError(), True),
    (kafka_errors.SaslAuthenticationFailed("invalid credentials"), False),
    (kafka_errors.InvalidSessionTimeoutError(), False),
    (__import__("ssl").SSLCertVerificationError(1, "certificate verify failed"), False),
    (KeyError("v"), False),
])
def test_what_heals_by_waiting(exc: BaseException, expected: bool) -> None:
    assert heals(exc) is expected


async def test_an_unreachable_broker_is_retried_until_it_answers(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    calls = scripted(monkeypatch, [refused, refused, refused, FakeConnection()])
    causes: list[str | None] = []
    with caplog.at_level(logging.INFO, logger="gateway.kafka.startup"):
        assert await wait_for_kafka(settings(), ["in", "out"], asyncio.Event(), on_wait=causes.append,
                                    backoff=FAST)
    waits = [r for r in caplog.records if r.getMessage() == "kafka_waiting"]
    assert [r.attempt for r in waits] == [1, 2, 3]  # type: ignore[attr-defined]
    assert all("unreachable" in r.cause for r in waits)  # type: ignore[attr-defined]
    assert causes[-1] is None and all(c and "127.0.0.1:19092" in c for c in causes[:-1])
    assert calls[3:] == [("127.0.0.1", 19092), ("127.0.0.1", 19093)]  # bootstrap, then the coordinator
    assert any(r.getMessage() == "kafka_reachable" for r in caplog.records)


async def test_a_real_closed_port_is_waited_on_until_the_deadline() -> None:
    kafka = KafkaConfig(bootstrap_servers=f"127.0.0.1:{free_port()}", startup_timeout_s=0.5)
    with pytest.raises(BrokerUnavailable) as caught:
        await wait_for_kafka(kafka, ["in"], asyncio.Event(), backoff=FAST)
    message = str(caught.value)
    assert "unreachable" in message and "kafka.startup_timeout_s 0.5" in message and "\n" not in message


async def test_a_topic_unknown_again_and_again_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A topic created an instant ago may be unknown to one metadata answer; one still unknown after
    three attempts does not exist on a broker that does not create topics."""
    calls = scripted(monkeypatch, [FakeConnection(topic_error=3)] * 3)
    with pytest.raises(BrokerRefused) as caught:
        await wait_for_kafka(settings(), ["in"], asyncio.Event(), backoff=FAST)
    message = str(caught.value)
    assert "topic 'in' does not exist and the broker does not create topics" in message
    assert message.startswith("kafka 127.0.0.1:19092: ") and len(calls) == 3


async def test_a_topic_unknown_for_an_instant_is_waited_on(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, [FakeConnection(topic_error=3), FakeConnection()])
    assert await wait_for_kafka(settings(), ["in"], asyncio.Event(), backoff=FAST)


@pytest.mark.parametrize(("conn", "expected"), [
    (FakeConnection(topic_error=29), "not authorised to use topic 'in'"),
    (FakeConnection(coordinator_error=30), "not authorised to use consumer group 'g' (kafka.group_id)"),
    (kafka_errors.SaslAuthenticationFailed("invalid credentials"), "authentication failed"),
])
async def test_what_waiting_cannot_heal_stops_at_once(monkeypatch: pytest.MonkeyPatch, conn: Any,
                                                      expected: str) -> None:
    calls = scripted(monkeypatch, [conn])
    with pytest.raises(BrokerRefused) as caught:
        await wait_for_kafka(settings(), ["in"], asyncio.Event(), backoff=FAST)
    assert expected in str(caught.value) and str(caught.value).startswith("kafka 127.0.0.1:19092: ")
    assert len(calls) == 1


@pytest.mark.parametrize("conn", [FakeConnection(topic_error=5), FakeConnection(coordinator_error=15),
                                  FakeConnection(brokers=0)])
async def test_a_cluster_still_electing_is_waited_on(monkeypatch: pytest.MonkeyPatch, conn: FakeConnection) -> None:
    scripted(monkeypatch, [conn, conn, FakeConnection()])
    causes: list[str | None] = []
    assert await wait_for_kafka(settings(), ["in"], asyncio.Event(), on_wait=causes.append, backoff=FAST)
    assert len(causes) == 3 and causes[-1] is None


async def test_a_handshake_closed_again_and_again_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker shutting down may close a connection once; one that always does wants another protocol."""
    closed = kafka_errors.KafkaConnectionError("Connection at 127.0.0.1:19092 closed")
    calls = scripted(monkeypatch, [closed])
    with pytest.raises(BrokerRefused) as caught:
        await wait_for_kafka(settings(), ["in"], asyncio.Event(), backoff=FAST)
    assert "closed the connection during the handshake" in str(caught.value)
    assert len(calls) == startup.CLOSED_ATTEMPTS_BEFORE_STOP


async def test_a_stop_while_waiting_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, [ConnectionRefusedError(111, "Connection refused")])
    stop = asyncio.Event()
    waiting = asyncio.create_task(wait_for_kafka(settings(300), ["in"], stop, backoff=Backoff(1.0, 1.0)))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(waiting, 2) is False
