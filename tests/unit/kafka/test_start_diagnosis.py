"""The start-up diagnosis tells a refused InitProducerId (the idempotent producer's first request)
from the same error code answering anything else; tests/integration/test_idempotence_refused.py
shows it against the real tansu broker."""

from __future__ import annotations

from aiokafka import errors as kafka_errors

from gateway.config import parse_config
from gateway.kafka.connection import connection_failure

QLIK = {"type": "qlik", "url": "https://h/api/v1/ml/deployments/d/realtime-predictions/actions/run"}
KAFKA = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9092"},
                      "pipelines": [{"name": "p", "input_topic": "in", "backend": QLIK,
                                     "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}, {}).kafka


def _do_init_pid() -> None:  # named as aiokafka's sender names the step that sends InitProducerId
    raise kafka_errors.UnknownError()


def _other_request() -> None:
    raise kafka_errors.UnknownError()


def raised(step: object) -> BaseException:
    try:
        step()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_refused_init_producer_id_names_the_setting() -> None:
    assert connection_failure(raised(_do_init_pid), KAFKA) == (
        "the broker refused an idempotent producer (InitProducerId: UnknownError): set "
        "kafka.enable_idempotence to false for a broker without idempotent producers")


def test_the_same_error_from_another_request_is_said_as_it_is() -> None:
    assert connection_failure(raised(_other_request), KAFKA) == "UnknownError (PLAINTEXT): [Error -1] UnknownError"
