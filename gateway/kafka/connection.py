"""The configured Kafka connection: aiokafka keyword arguments (consumer, producer, probe), and the
one translation of aiokafka's connection and authentication failures into a line an operator can act on.

aiokafka reports a failed start as ``KafkaConnectionError("Unable to bootstrap from [...]")`` and
only logs the cause; a refused SCRAM login on some brokers even surfaces as ``KeyError('v')``.
:func:`start_failure` connects once more to find the cause, and :func:`connection_failure` says it
with the listener (server and security protocol) and the SASL mechanism, never the password.
"""

from __future__ import annotations

import asyncio
import ssl
import traceback
from collections.abc import Awaitable
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn
from aiokafka.helpers import create_ssl_context

from gateway.config import KafkaConfig
from gateway.errors import KafkaError

# aiokafka's client keyword arguments: untyped in aiokafka, so Any at this boundary.
ClientOptions = dict[str, Any]

DIAGNOSE_TIMEOUT_S = 10.0
# Members learn of a rebalance at their next heartbeat: the default (session / 3, 3.3 s) was the
# stall of a scale-in. A few heartbeats a second per member cost the coordinator next to nothing.
HEARTBEAT_MAX_MS = 100
# aiokafka's producer functions that send InitProducerId when an idempotent producer starts.
_INIT_PRODUCER_ID = frozenset({"_maybe_wait_for_pid", "_do_init_pid"})

_AUTH_ERRORS = (kafka_errors.SaslAuthenticationFailed, kafka_errors.AuthenticationFailedError,
                kafka_errors.AuthenticationMethodNotSupported, kafka_errors.UnsupportedSaslMechanismError,
                kafka_errors.IllegalSaslStateError, kafka_errors.ClusterAuthorizationFailedError)
_CONNECTION_SETTINGS = frozenset({"client_id", "security_protocol", "ssl_context", "sasl_mechanism",
                                  "sasl_plain_username", "sasl_plain_password", "sasl_kerberos_service_name",
                                  "sasl_kerberos_domain_name", "sasl_oauth_token_provider"})


class KafkaStartError(KafkaError):
    """The broker refused or could not be reached with the configured settings; the message is the
    one line to show (server, security protocol, mechanism, cause), free of secrets."""


def client_options(kafka: KafkaConfig) -> ClientOptions:
    """Connection and security options shared by the consumer, the producer and the probe."""
    options: ClientOptions = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile,
            keyfile=kafka.ssl_keyfile)
    if kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    return options


def consumer_options(kafka: KafkaConfig) -> ClientOptions:
    session = int(kafka.session_timeout_ms)
    heartbeat = kafka.heartbeat_interval_ms or min(max(100, session // 3), HEARTBEAT_MAX_MS)
    return {
        **client_options(kafka),
        "group_id": kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "session_timeout_ms": session,
        "heartbeat_interval_ms": int(heartbeat),
        "max_poll_records": kafka.max_poll_records,
        # How long the broker may hold a fetch waiting for data: the default 500 ms is paid as
        # end-to-end latency whenever the input is not saturated.
        "fetch_max_wait_ms": 10,
        # A rebalance waits for in-flight work of revoked partitions (shutdown_timeout_s at most).
        "rebalance_timeout_ms": max(session, 60000),
    }


def producer_options(kafka: KafkaConfig) -> ClientOptions:
    return {
        **client_options(kafka),
        "acks": "all",
        "linger_ms": kafka.producer_linger_ms,
        # Large batches: one send_batch carries a whole scored batch for a partition.
        "max_batch_size": 262144,
        "max_request_size": 4 * 1048576,
        # The broker drops a retried produce it already wrote (no duplicates from the producer's own
        # retries); the output ``id`` stays the consumers' key for duplicates after a crash.
        "enable_idempotence": kafka.enable_idempotence,
    }


def broker_addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    """``host[:port]`` entries (port 9092 when left out, as Kafka clients do); IPv6 in brackets."""
    addresses = []
    for entry in bootstrap_servers.split(","):
        host, port = entry.strip(), 9092
        head, sep, tail = host.rpartition(":")
        if sep and tail.isdigit() and (not head.startswith("[") or head.endswith("]")):
            host, port = head, int(tail)
        addresses.append((host.strip("[]"), port))
    return addresses


async def connect(options: ClientOptions, host: str, port: int, timeout_s: float) -> Any:  # aiokafka AIOKafkaConnection
    """One broker connection, handshakes (TLS, SASL) included: where auth failures surface."""
    settings = {key: value for key, value in options.items() if key in _CONNECTION_SETTINGS}
    return await create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **settings)


def connection_failure(exc: BaseException, kafka: KafkaConfig, timeout_s: float | None = None) -> str:
    """Why connecting failed, by what the operator must fix, naming the security protocol and the
    SASL mechanism; the caller puts the server in front."""
    protocol = kafka.security_protocol
    sasl = protocol.startswith("SASL_")
    login = f"{protocol} {kafka.sasl_mechanism} as {kafka.sasl_username!r}" if sasl else protocol
    if isinstance(exc, kafka_errors.InvalidSessionTimeoutError):
        return (f"the broker refuses kafka.session_timeout_ms {kafka.session_timeout_ms}: it must lie within "
                "the broker's group.min.session.timeout.ms and group.max.session.timeout.ms "
                "(6000 and 1800000 by default)")
    if isinstance(exc, _AUTH_ERRORS) or (sasl and isinstance(exc, KeyError)):
        return f"authentication failed ({login}): {_auth_cause(exc, kafka)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS handshake failed ({protocol}): the broker's certificate is not trusted: "
                f"{exc.verify_message or exc.reason} (ssl_cafile must name the CA that signed it)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({protocol}): {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        wait = f"{timeout_s:g}s" if timeout_s is not None else "the request timeout"
        return (f"no answer within {wait} (unreachable, or security_protocol {protocol} does not match "
                "the listener)")
    if isinstance(exc, kafka_errors.KafkaConnectionError) and "closed" in str(exc):
        hint = ("it may require a client certificate (ssl_certfile, ssl_keyfile) or another security_protocol"
                if protocol in ("SSL", "SASL_SSL") else
                f"the listener may expect TLS or SASL: check security_protocol (it is {protocol})")
        return f"the broker closed the connection during the handshake ({login}): {hint}"
    if isinstance(exc, ConnectionResetError) and protocol in ("SSL", "SASL_SSL"):
        return f"the connection was reset during the TLS handshake ({protocol}): is it a TLS listener?"
    if isinstance(exc, (OSError, kafka_errors.KafkaConnectionError)):
        return f"unreachable: {exc}"
    if _refused_idempotence(exc):
        return (f"the broker refused an idempotent producer (InitProducerId: {type(exc).__name__}): set "
                "kafka.enable_idempotence to false for a broker without idempotent producers")
    return f"{type(exc).__name__} ({login}): {exc}"


def _refused_idempotence(exc: BaseException) -> bool:
    """The broker answered the idempotent producer's ``InitProducerId`` with an error. aiokafka raises
    the bare error code (``UnknownError``) from the producer's start; only where it was raised says
    which request it answered."""
    return isinstance(exc, kafka_errors.BrokerResponseError) and any(
        frame.f_code.co_name in _INIT_PRODUCER_ID for frame, _ in traceback.walk_tb(exc.__traceback__))


def _auth_cause(exc: BaseException, kafka: KafkaConfig) -> str:
    if isinstance(exc, KeyError):  # a SCRAM exchange the broker ended with an error instead of its proof
        return "the broker refused the SCRAM login (wrong user or password)"
    if isinstance(exc, kafka_errors.UnsupportedSaslMechanismError):
        return f"the listener does not offer SASL mechanism {kafka.sasl_mechanism}"
    if isinstance(exc, kafka_errors.IllegalSaslStateError):
        return "the listener refused the SASL handshake: is it a SASL listener?"
    detail = str(exc).strip() or type(exc).__name__
    if detail.startswith("[Error"):  # aiokafka's "[Error 58] SaslAuthenticationFailed: ..." form
        detail = detail.split(":", 1)[-1].strip() or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"


async def start_failure(exc: BaseException, kafka: KafkaConfig,
                        timeout_s: float = DIAGNOSE_TIMEOUT_S) -> KafkaStartError:
    """A client's failed ``start()`` as one line. aiokafka keeps only "Unable to bootstrap", so each
    bootstrap server is connected to once more, with the same settings, to learn the cause."""
    cause: list[str] = []
    if isinstance(exc, kafka_errors.KafkaConnectionError) and "bootstrap" in str(exc):
        options = client_options(kafka)
        for host, port in broker_addresses(kafka.bootstrap_servers):
            try:
                conn = await asyncio.wait_for(connect(options, host, port, timeout_s), timeout_s)
            except Exception as found:  # the cause being looked for
                cause.append(f"{host}:{port}: {connection_failure(found, kafka, timeout_s)}")
            else:
                conn.close()
    else:
        cause.append(f"{kafka.bootstrap_servers}: {connection_failure(exc, kafka)}")
    if not cause:  # it connects now: the failure was passing
        cause.append(f"{kafka.bootstrap_servers}: {connection_failure(exc, kafka)}")
    return KafkaStartError("kafka " + "; ".join(cause))


async def start_client(start: Awaitable[None], kafka: KafkaConfig) -> None:
    """Await a client's ``start()``; a connection or login failure is raised as one readable line."""
    try:
        await start
    except (kafka_errors.KafkaError, OSError, KeyError) as exc:  # KeyError: a refused SCRAM login (tansu)
        raise await start_failure(exc, kafka) from None


async def topic_partitions(consumer: Any, topic: str) -> set[int]:  # Any: an AIOKafkaConsumer
    """The partitions of ``topic`` from fresh metadata. A consumer that assigns rather than
    subscribes knows no topic's partitions yet; ``topics()`` fetches the metadata but returns only
    names, so the cluster view it fetched is asked directly."""
    cluster = await consumer._client.fetch_all_metadata()
    return set(cluster.partitions_for_topic(topic) or ())
