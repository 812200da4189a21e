"""The fast murmur2 against aiokafka's (the Java client's algorithm): the same partition for any key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as reference

from gateway.partitioner import murmur2, partition_of


def test_same_hash_as_the_kafka_client_for_every_length_and_byte() -> None:
    rng = random.Random(11)
    keys = [b"", b"\x00", b"\xff" * 7] + [rng.randbytes(rng.randrange(0, 64)) for _ in range(20_000)]
    for key in keys:
        assert murmur2(key) == reference(key) & 0xFFFFFFFF, key


@pytest.mark.parametrize(("key", "signed"), [
    # Utils.murmur2 of these keys as signed ints, as Apache Kafka's UtilsTest.testMurmur2 states them.
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
])
def test_hash_of_keys_the_java_client_documents(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF
    assert partition_of(key, 7) == (signed & 0x7FFFFFFF) % 7
