"""``consumer_lag{topic,partition}`` is the broker's end offset minus the group's committed offset,
checked against the broker itself (ListOffsets through a consumer's ``end_offsets``, OffsetFetch
through the admin API's ``list_consumer_group_offsets``) during and after a run.

During: the backend refuses the token, so the pipeline holds what it fetched and commits nothing
more while new input arrives; the figure must count every record not yet committed, fetched or not.
After: the backend is healed, everything is committed, and the lag falls to 0.
"""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiokafka.errors import KafkaError

from testkit.brokers.admin import end_offsets, group_offsets
from testkit.processes import InProcessGateway
from testkit.topics import churn_features, gateway_config
from testkit.waits import async_wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]


def lag_samples(text: str, topic: str) -> dict[int, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("scoring_gateway_consumer_lag{") and f'topic="{topic}"' in line:
            partition = int(line.split('partition="', 1)[1].split('"', 1)[0])
            found[partition] = float(line.rsplit(" ", 1)[1])
    return found


async def broker_lag(topics) -> dict[int, int]:
    ends = await end_offsets(topics.bootstrap, topics.input, topics.partitions)
    committed = await group_offsets(topics.bootstrap, topics.group, topics.input)
    return {p: end - committed.get(p, 0) for p, end in ends.items()}


@pytest.mark.timeout(240)
async def test_consumer_lag_is_end_offset_minus_committed_offset(topics, emu) -> None:
    first, second = 2000, 1200
    await topics.produce([orjson.dumps(churn_features(i)) for i in range(first)], [b"k%d" % i for i in range(first)])
    doc = gateway_config(topics, {"type": "qlik", "url": emu.qlik_url(), "token": "t"},
                         batching={"max_rows": 100, "linger_ms": 5}, retry={"max_backoff_ms": 300})
    async with InProcessGateway(doc) as gw, aiohttp.ClientSession() as http:
        async def metrics() -> str:
            async with http.get(gw.admin_url + "/metrics") as r:
                return await r.text()

        async def agrees(expect_total: int | None) -> dict[int, float] | None:
            """The gateway's figures equal the broker's, partition by partition (and sum to the total)."""
            try:
                expected = await broker_lag(topics)
            except KafkaError:  # the group's coordinator is still being elected right after the start
                return None
            shown = lag_samples(await metrics(), topics.input)
            if shown != {p: float(v) for p, v in expected.items()}:
                return None
            return shown if expect_total is None or sum(expected.values()) == expect_total else None

        await async_wait_until(lambda: agrees(0), 60, "lag 0 once the first records are committed", interval_s=0.3)

        emu.configure(error_rate={"401": 1.0})  # the pipeline halts, holding what it fetched
        await topics.produce([orjson.dumps(churn_features(i)) for i in range(first, first + second)],
                             [b"k%d" % i for i in range(first, first + second)])
        during = await async_wait_until(lambda: agrees(second), 60, "lag to count the uncommitted records",
                                        interval_s=0.3)
        assert sum(during.values()) == second and all(v > 0 for v in during.values())
        consumed = sum(float(line.rsplit(" ", 1)[1]) for line in (await metrics()).splitlines()
                       if line.startswith("scoring_gateway_records_consumed_total{"))
        assert consumed > first  # some of the held records were fetched: position alone would undercount

        emu.configure(error_rate={})
        after = await async_wait_until(lambda: agrees(0), 90, "lag 0 after the backend is healed", interval_s=0.3)
    assert set(after) == set(range(topics.partitions))
    committed = await group_offsets(topics.bootstrap, topics.group, topics.input)
    assert sum(committed.values()) == first + second
