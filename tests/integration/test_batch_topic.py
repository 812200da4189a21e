"""The topic range mode on a real broker: exactly the records between two timestamps, read from all
four partitions without joining the pipeline's consumer group or committing its offsets."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from testkit.topics import churn_features
from tests.integration.batch_support import batch_config, output_files, read_table, run_batch

pytestmark = pytest.mark.integration

RECORDS = 400
BASE_MS = 1_700_000_000_000
STEP_MS = 100


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


async def produce(topics) -> dict[tuple[int, int], tuple[int, bool]]:
    """RECORDS records, record i on partition i % 4 stamped BASE + i × STEP; every 50th is not JSON.
    Returns (partition, offset) -> (i, valid)."""
    producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, linger_ms=0)
    await producer.start()
    try:
        sent = []
        for i in range(RECORDS):
            valid = i % 50 != 7
            value = orjson.dumps(churn_features(i)) if valid else b"{not json"
            sent.append((i, valid, await producer.send(topics.input, value, key=b"k%d" % i, partition=i % 4,
                                                       timestamp_ms=BASE_MS + i * STEP_MS)))
        placed = {}
        for i, valid, future in sent:
            meta = await future
            placed[(meta.partition, meta.offset)] = (i, valid)
        return placed
    finally:
        await producer.stop()


async def test_records_between_two_timestamps(broker, topics, emu, tmp_path):
    placed = await produce(topics)
    start_ms, end_ms = BASE_MS + 100 * STEP_MS, BASE_MS + 300 * STEP_MS + STEP_MS // 2
    wanted = {where: i for where, (i, _) in placed.items() if start_ms <= BASE_MS + i * STEP_MS < end_ms}
    invalid = {where for where, (i, valid) in placed.items() if where in wanted and not valid}
    assert len(wanted) == 201 and invalid
    config = batch_config(tmp_path, {"type": "qlik", "url": emu.qlik_url()}, bootstrap=topics.bootstrap,
                          input_topic=topics.input, kafka={"bootstrap_servers": topics.bootstrap,
                                                           "group_id": topics.group})
    out = tmp_path / "out"
    done = await asyncio.to_thread(run_batch, config, "--start", iso(start_ms), "--end", iso(end_ms),
                                   "--writeback", str(out))
    assert done.returncode == 0, done.stderr
    assert output_files(out) == {f"churn{s}.parquet" for s in ("", "_shap", "_source", "_coord_shap",
                                                               "_not_predicted")}
    source = read_table(out / "churn_source.parquet")
    read = list(zip(source.column("kafka_partition").to_pylist(), source.column("kafka_offset").to_pylist(),
                    strict=True))
    assert sorted(read) == sorted(wanted), "exactly the records in the range, each once"
    assert read == sorted(read), "partition order, then offset order"
    stamps = source.column("kafka_timestamp_ms").to_pylist()
    assert all(start_ms <= ts < end_ms for ts in stamps)
    predicted = read_table(out / "churn.parquet").column("automl_row_index").to_pylist()
    refused = read_table(out / "churn_not_predicted.parquet")
    assert sorted(predicted + refused.column("automl_row_index").to_pylist()) == list(range(len(wanted)))
    by_row = dict(zip(source.column("automl_row_index").to_pylist(), read, strict=True))
    assert {by_row[r] for r in refused.column("automl_row_index").to_pylist()} == invalid
    assert all("not valid JSON" in reason for reason in refused.column("not_predicted_reason").to_pylist())
    assert set((await topics.committed()).values()) == {None}, "the pipeline's group offsets were touched"


async def test_earliest_to_latest_reads_everything(broker, topics, emu, tmp_path):
    placed = await produce(topics)
    config = batch_config(tmp_path, {"type": "qlik", "url": emu.qlik_url()}, bootstrap=topics.bootstrap,
                          input_topic=topics.input)
    out = tmp_path / "out"
    done = await asyncio.to_thread(run_batch, config, "--start", "earliest", "--end", "latest",
                                   "--writeback", str(out), "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert (out / "churn_source.csv").exists(), f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    source = read_table(out / "churn_source.csv")
    read = zip(source.column("kafka_partition").to_pylist(), source.column("kafka_offset").to_pylist(), strict=True)
    assert sorted(read) == sorted(placed)
