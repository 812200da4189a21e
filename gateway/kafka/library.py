"""The Kafka client library the gateway runs on: the one place that names it.

Everything else reaches a broker through the seam's ``KafkaClients`` (``gateway.kafka.client``); a
pipeline built with no clients of its own gets these.
"""

from __future__ import annotations

from gateway.config import KafkaConfig
from gateway.kafka.aiokafka_client import AiokafkaClients
from gateway.kafka.client import KafkaClients


def make_clients(kafka: KafkaConfig) -> KafkaClients:
    return AiokafkaClients(kafka)
