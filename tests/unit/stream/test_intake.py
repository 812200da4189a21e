"""The intake's per-record loop: every fetched record is tracked, and either joins a batch or is
refused with the reason ``decode_value`` gives (decode) or the codec's check gives (validate)."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from gateway.backends.qlik.codec import QlikCodec
from gateway.delivery.offsets import OffsetTracker
from gateway.kafka.source import decode_value
from gateway.stream.batcher import Batch, Batcher
from gateway.stream.intake import Intake, Rejects
from gateway.stream.records import STAGE_DECODE, STAGE_VALIDATE


class CountingMetrics:
    def __init__(self) -> None:
        self.consumed_total = 0
        self.inflight = 0

    def consumed(self, n: int) -> None:
        self.consumed_total += n

    def inflight_records(self, n: int) -> None:
        self.inflight = n


def record(offset: int, value: bytes | None) -> Any:
    return ConsumerRecord("in", 0, offset, 0, 0, None, value, None, len(value or b""), 0, [])


def test_take_batches_what_is_sendable_and_refuses_the_rest_with_reasons() -> None:
    values = [b'{"a": 1, "id": 1}', b"{not json", None, b"[1, 2]", b'{"a": NaN}', b'{"a": {"b": 1}, "id": 2}',
              b'{"a": 2}', b'{"a": 3, "id": 3}', b"\xff\xfe"]
    records = [record(offset, value) for offset, value in enumerate(values)]
    dispatched: list[Batch] = []
    refused: Rejects = []
    tracker, metrics = OffsetTracker(), CountingMetrics()
    codec = QlikCodec(url="http://127.0.0.1:1/api/v1/ml/deployments/d/realtime-predictions/actions/run",
                      token=None, max_bytes=None, index_column="id")
    intake = Intake(source=None, batcher=Batcher(2, 1_000_000, 10), codec=codec, tracker=tracker,  # type: ignore[arg-type]
                    metrics=metrics, max_in_flight=100, max_poll_records=100,  # type: ignore[arg-type]
                    holding=lambda: False, slot_free=lambda: False, dispatch=dispatched.append, reject=refused.extend)
    intake._take({TopicPartition("in", 0): records})
    assert [r.offset for batch in dispatched for r in batch.records] == [0, 7]
    by_offset = {r.offset: why for r, why in refused}
    assert sorted(by_offset) == [1, 2, 3, 4, 5, 6, 8]
    for offset in (1, 2, 3, 4, 8):
        expected = decode_value(values[offset])
        assert by_offset[offset].stage == STAGE_DECODE
        assert by_offset[offset].reason == expected.reason  # type: ignore[union-attr]
    assert by_offset[5].stage == by_offset[6].stage == STAGE_VALIDATE
    assert by_offset[5].reason == "feature 'a': a dict is not a scalar feature value"
    assert by_offset[6].reason == "index column 'id' is missing or null"
    assert metrics.consumed_total == intake.in_flight == len(values)
    assert tracker.outstanding() == len(values)
