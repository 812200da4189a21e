"""The configured Kafka connection settings as aiokafka keyword arguments (consumer and producer)."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context


def client_options(kafka: Any) -> dict[str, Any]:
    """Connection and security options shared by the consumer, the producer and the probe."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=getattr(kafka, "ssl_certfile", None),
            keyfile=getattr(kafka, "ssl_keyfile", None))
    if kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    return options


def consumer_options(kafka: Any) -> dict[str, Any]:
    session = int(kafka.session_timeout_ms)
    heartbeat = getattr(kafka, "heartbeat_interval_ms", None) or max(100, session // 3)
    return {
        **client_options(kafka),
        "group_id": kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": getattr(kafka, "auto_offset_reset", "earliest"),
        "session_timeout_ms": session,
        "heartbeat_interval_ms": int(heartbeat),
        "max_poll_records": getattr(kafka, "max_poll_records", 2000),
        # How long the broker may hold a fetch waiting for data: the default 500 ms is paid as
        # end-to-end latency whenever the input is not saturated.
        "fetch_max_wait_ms": 10,
        # A rebalance waits for in-flight work of revoked partitions (shutdown_timeout_s at most).
        "rebalance_timeout_ms": max(session, 60000),
    }


def producer_options(kafka: Any) -> dict[str, Any]:
    return {
        **client_options(kafka),
        "acks": "all",
        "linger_ms": getattr(kafka, "producer_linger_ms", 0),
        # Large batches: one send_batch carries a whole scored batch for a partition.
        "max_batch_size": 262144,
        "max_request_size": 4 * 1048576,
        "enable_idempotence": False,  # the id field is the idempotency key (at-least-once)
    }
