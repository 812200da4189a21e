"""Start-up that waits for a broker that is coming, and stops at once for one that refuses.

A pod that starts before its broker, or during a Kafka rolling restart, would otherwise exit and
enter the orchestrator's crash-loop back-off (up to five minutes without scoring for a few seconds
of broker absence). Before any client starts, the gateway probes what its clients will need:

1. a connection to a bootstrap server, handshakes (TLS, SASL) included;
2. the metadata of every topic it reads and writes (asked the way the producer asks: a broker that
   creates topics creates them now, one that does not says which are missing);
3. the consumer group's coordinator, found and connected to.

What heals by waiting (connection refused or reset, no answer, a name that does not resolve yet,
no coordinator or leader elected yet) is tried again with capped, jittered exponential back-off
until ``kafka.startup_timeout_s`` has passed, one log line per attempt. What waiting cannot heal
(a refused login, a TLS failure, a missing topic the broker will not create, an authorisation the
broker denies) stops start-up at once with its one-line cause.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.metadata import MetadataRequest

from gateway.config import KafkaConfig
from gateway.errors import KafkaError
from gateway.kafka.connection import (
    ClientOptions,
    broker_addresses,
    client_options,
    connect,
    connection_failure,
)

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_S = 10.0
# A broker that closes the connection during the handshake may be shutting down (it heals) or may
# expect another security protocol (it does not): after this many attempts in a row it counts as
# the second.
CLOSED_ATTEMPTS_BEFORE_STOP = 3
# A topic still unknown after this many attempts (about 1.5 s with the default back-off) does not
# exist on a broker that does not create topics: start-up stops, naming it.
MISSING_ATTEMPTS_BEFORE_STOP = 3

_HEALS = (kafka_errors.KafkaConnectionError, kafka_errors.NodeNotReadyError, kafka_errors.RequestTimedOutError,
          kafka_errors.NoBrokersAvailable, kafka_errors.CoordinatorNotAvailableError,
          kafka_errors.NotCoordinatorError, kafka_errors.CoordinatorLoadInProgressError,
          kafka_errors.LeaderNotAvailableError, kafka_errors.BrokerNotAvailableError,
          kafka_errors.NotLeaderForPartitionError, kafka_errors.KafkaTimeoutError)


class BrokerRefused(KafkaError):
    """The broker answered, and what it answered will not change by waiting."""


class BrokerUnavailable(KafkaError):
    """The broker could not be reached (or had no coordinator) for all of ``kafka.startup_timeout_s``."""


class _Passing(Exception):
    """A cause that may heal by waiting; ``closed`` when the broker ended the handshake, ``missing``
    when it named a topic unknown (a topic created a moment ago can be unknown to a broker's
    metadata for an instant, so only an answer that persists stops start-up)."""

    def __init__(self, cause: str, closed: bool = False, missing: bool = False) -> None:
        super().__init__(cause)
        self.closed = closed
        self.missing = missing


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential from ``initial_s``, capped at ``cap_s``, with equal jitter (half of each delay
    random), so replicas started together do not knock on the broker in step."""

    initial_s: float = 0.5
    cap_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap_s, self.initial_s * 2.0 ** min(attempt - 1, 30))
        return ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)


def heals(exc: BaseException) -> bool:
    """Whether waiting can cure ``exc`` (a connection or broker-state failure, not a refusal)."""
    if isinstance(exc, ssl.SSLError):  # an OSError, but a certificate does not change by waiting
        return False
    return isinstance(exc, (TimeoutError, OSError, *_HEALS))


def _closed(exc: BaseException) -> bool:
    return isinstance(exc, kafka_errors.KafkaConnectionError) and "closed" in str(exc)


async def probe(kafka: KafkaConfig, topics: Sequence[str], timeout_s: float) -> None:
    """One attempt: returns when a bootstrap server, the topics and the coordinator answer; raises
    :class:`BrokerRefused` or ``_Passing``."""
    try:
        options = client_options(kafka)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerRefused(f"kafka: cannot load the TLS files: {exc}") from None
    passing: list[str] = []
    closed = True
    missing = False
    for host, port in broker_addresses(kafka.bootstrap_servers):
        where = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(connect(options, host, port, timeout_s), timeout_s)
        except Exception as exc:  # classified: a failure that heals or one that does not
            line = f"{where}: {connection_failure(exc, kafka, timeout_s)}"
            if not heals(exc):
                raise BrokerRefused(f"kafka {line}") from None
            passing.append(line)
            closed = closed and _closed(exc)
            continue
        try:
            await _check(conn, kafka, options, topics, timeout_s)
            return
        except _Passing as exc:
            passing.append(f"{where}: {exc}")
            closed = False
            missing = missing or exc.missing
        except BrokerRefused as exc:
            raise BrokerRefused(f"kafka {where}: {exc}") from None
        finally:
            conn.close()
    raise _Passing("; ".join(passing), closed, missing)


async def _check(conn: Any, kafka: KafkaConfig, options: ClientOptions, topics: Sequence[str],  # Any: an
                 timeout_s: float) -> None:  # aiokafka AIOKafkaConnection (untyped library)
    """Topics and coordinator, on a connection that completed its handshakes."""
    try:
        metadata = await asyncio.wait_for(conn.send(MetadataRequest(list(topics), True)), timeout_s)
        if not metadata.brokers:
            raise _Passing("no broker registered yet")
        for entry in metadata.topics:  # (error_code, name, [is_internal,] partitions) by version
            _topic_state(entry[1], kafka_errors.for_code(entry[0]))
        found = await asyncio.wait_for(conn.send(FindCoordinatorRequest(kafka.group_id, 0)), timeout_s)
    except (_Passing, BrokerRefused):
        raise
    except Exception as exc:  # classified like a connection failure
        if heals(exc):
            raise _Passing(f"no answer: {connection_failure(exc, kafka, timeout_s)}") from None
        raise BrokerRefused(connection_failure(exc, kafka, timeout_s)) from None
    error = kafka_errors.for_code(found.error_code)
    if error is kafka_errors.GroupAuthorizationFailedError:
        raise BrokerRefused(f"not authorised to use consumer group {kafka.group_id!r} (kafka.group_id)")
    if error is not kafka_errors.NoError:
        if error.retriable or error in _HEALS:
            raise _Passing(f"no coordinator for group {kafka.group_id!r} yet ({error.__name__})")
        raise BrokerRefused(f"group {kafka.group_id!r}: {error.__name__}")
    try:
        coordinator = await asyncio.wait_for(connect(options, found.host, found.port, timeout_s), timeout_s)
    except Exception as exc:  # the coordinator is another broker: it may be the one still starting
        if heals(exc):
            raise _Passing(f"coordinator {found.host}:{found.port}: {connection_failure(exc, kafka, timeout_s)}"
                           ) from None
        raise BrokerRefused(f"coordinator {found.host}:{found.port}: {connection_failure(exc, kafka)}") from None
    coordinator.close()


def _topic_state(topic: str, error: type[Exception]) -> None:
    if error is kafka_errors.NoError:
        return
    if error is kafka_errors.UnknownTopicOrPartitionError:
        raise _Passing(f"topic {topic!r} does not exist and the broker does not create topics", missing=True)
    if error is kafka_errors.TopicAuthorizationFailedError:
        raise BrokerRefused(f"not authorised to use topic {topic!r}")
    if error is kafka_errors.InvalidTopicError:
        raise BrokerRefused(f"the broker refuses the topic name {topic!r}")
    raise _Passing(f"topic {topic!r} not ready ({error.__name__})")


Waiting = Callable[[str | None], None]


async def wait_for_kafka(kafka: KafkaConfig, topics: Sequence[str], stop: asyncio.Event, *,
                         on_wait: Waiting | None = None, rng: random.Random | None = None,
                         backoff: Backoff = Backoff(), attempt_timeout_s: float = ATTEMPT_TIMEOUT_S) -> bool:
    """Probe until the broker is ready (``True``) or ``stop`` is set (``False``).

    Raises :class:`BrokerRefused` at once for what waiting cannot heal, and
    :class:`BrokerUnavailable` once ``kafka.startup_timeout_s`` has passed. ``on_wait`` hears the
    cause of each failed attempt (for readiness), then ``None`` once the broker answers.
    """
    rng = rng or random.Random()
    began = time.monotonic()
    deadline = began + float(kafka.startup_timeout_s)
    attempt = closed_in_a_row = missing_in_a_row = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        try:
            await probe(kafka, topics, max(0.1, min(attempt_timeout_s, left)) if left > 0 else attempt_timeout_s)
        except _Passing as passing:
            cause = str(passing)
            closed_in_a_row = closed_in_a_row + 1 if passing.closed else 0
            missing_in_a_row = missing_in_a_row + 1 if passing.missing else 0
            if closed_in_a_row >= CLOSED_ATTEMPTS_BEFORE_STOP or missing_in_a_row >= MISSING_ATTEMPTS_BEFORE_STOP:
                raise BrokerRefused(f"kafka {cause}") from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailable(f"kafka {cause}; gave up after {attempt} attempts in "
                                        f"{time.monotonic() - began:.0f}s (kafka.startup_timeout_s "
                                        f"{kafka.startup_timeout_s:g})") from None
            delay = min(backoff.delay(attempt, rng), left)
            log.warning("kafka_waiting", extra={"attempt": attempt, "cause": cause, "retry_in_s": round(delay, 2),
                                                "gives_up_in_s": round(left, 1)})
            if on_wait is not None:
                on_wait(cause)
            if await _stopped(stop, delay):
                return False
            continue
        if on_wait is not None:
            on_wait(None)
        if attempt > 1:
            log.info("kafka_reachable", extra={"attempts": attempt,
                                               "waited_s": round(time.monotonic() - began, 1)})
        return True


async def _stopped(stop: asyncio.Event, delay_s: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return False
    return True
