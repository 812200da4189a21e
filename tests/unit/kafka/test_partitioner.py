"""The fast murmur2 against aiokafka's (the Java client's algorithm): the same partition for any key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as reference

from gateway.kafka.partitioner import VECTOR_MIN_KEYS, murmur2, murmur2_many, partition_of, partitions_of


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


def test_a_batch_of_keys_hashes_as_each_key_alone() -> None:
    """The vectorised hash against the loop, in batches mixing every length from 0 to 63 bytes
    (so every tail length and word count), and batches of one length only."""
    rng = random.Random(12)
    for _ in range(200):
        keys = [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(VECTOR_MIN_KEYS, 300))]
        assert murmur2_many(keys).tolist() == [murmur2(key) for key in keys]
    for length in (0, 1, 2, 3, 4, 5, 8, 13):
        keys = [rng.randbytes(length) for _ in range(VECTOR_MIN_KEYS)]
        assert murmur2_many(keys).tolist() == [murmur2(key) for key in keys], length


@pytest.mark.parametrize("count", [1, VECTOR_MIN_KEYS - 1, VECTOR_MIN_KEYS, 500])
def test_partitions_of_a_batch_are_the_default_partitioners(count: int) -> None:
    rng = random.Random(count)
    keys = [b"customer-%d" % rng.randrange(10**9) for _ in range(count)]
    for partitions in (1, 4, 7):
        assert partitions_of(keys, partitions) == [partition_of(key, partitions) for key in keys]
