import asyncio
from types import SimpleNamespace

from gateway.stream.batcher import Batcher
from gateway.stream.ordering import KeyOrder


def rec(key, offset=0, size=10):
    return SimpleNamespace(topic="t", partition=0, offset=offset, timestamp=0, key=key,
                           value=b"x" * size, headers=())


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_cuts_by_rows():
    b = Batcher(max_rows=3, max_bytes=10**9, linger_ms=1000)
    assert b.add(rec(None), {}) is None
    assert b.add(rec(None), {}) is None
    batch = b.add(rec(None), {})
    assert batch is not None and len(batch.records) == 3 and len(b) == 0


def test_cuts_by_estimated_bytes():
    b = Batcher(max_rows=100, max_bytes=25, linger_ms=1000)
    assert b.add(rec(None, size=10), {}) is None
    assert b.add(rec(None, size=10), {}) is None
    assert len(b.add(rec(None, size=10), {}).records) == 3


def test_cuts_by_linger():
    clock = Clock()
    b = Batcher(max_rows=100, max_bytes=10**9, linger_ms=10, clock=clock)
    assert b.deadline() is None
    b.add(rec(None), {})
    assert b.deadline() == 0.010 and not b.due()
    clock.now = 0.011
    assert b.due()
    assert len(b.take().records) == 1 and b.take() is None


async def test_key_order_waits_only_for_batches_sharing_a_key():
    loop = asyncio.get_running_loop()
    order = KeyOrder()
    b = Batcher(max_rows=2, max_bytes=10**9, linger_ms=1000)
    b.add(rec(b"a"), {})
    first = b.add(rec(b"b"), {})
    b.add(rec(b"c"), {})
    second = b.add(rec(b"d"), {})
    b.add(rec(b"a"), {})
    third = b.add(rec(None), {})
    for batch in (first, second, third):
        batch.published = loop.create_future()
        order.admit(batch)
    assert first.after == [] and second.after == []
    assert third.after == [first.published]
    order.release(first)
    order.release(second)
    order.release(third)
    assert len(order) == 0
