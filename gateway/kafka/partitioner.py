"""Kafka's default partitioner for keyed records: ``murmur2(key) & 0x7fffffff`` modulo partitions.

The same hash as the Java client's ``Utils.murmur2`` (and aiokafka's), so outputs land where any
Kafka producer would put that key. aiokafka's version reads the key byte by byte in Python; this
one reads it four bytes at a time with ``struct`` and keeps the arithmetic to what 32 bits need,
which halves the cost of a key the sink has not seen yet (high-cardinality keys such as customer
ids mostly are not). :func:`partitions_of` hashes a whole batch's keys at once with numpy, one
array operation per 4-byte word for all keys, at about an eighth of the loop's cost per key.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_WORDS = struct.Struct("<I").iter_unpack
_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_M32 = np.uint32(_M)
# Below this many keys numpy's fixed cost per operation outweighs the loop's cost per key.
VECTOR_MIN_KEYS = 32


def murmur2(key: bytes) -> int:
    """MurmurHash2 (32 bits, Kafka's seed) of ``key``, as an unsigned int."""
    length = len(key)
    whole = length & ~3
    h = _SEED ^ length
    for (k,) in _WORDS(key[:whole]):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length - whole
    if rest:
        if rest == 3:
            h ^= key[whole + 2] << 16
        if rest >= 2:
            h ^= key[whole + 1] << 8
        h = ((h ^ key[whole]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition index (0-based, of ``partitions``) Kafka's default partitioner picks."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partitions_of(keys: Sequence[bytes], partitions: int) -> list[int]:
    """:func:`partition_of` for every key, in order."""
    if len(keys) < VECTOR_MIN_KEYS:
        return [partition_of(key, partitions) for key in keys]
    hashes = murmur2_many(keys)
    return ((hashes & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)).tolist()  # type: ignore[no-any-return]


def murmur2_many(keys: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """:func:`murmur2` of every key as a uint32 array: the same steps on a row per key.

    The keys are zero-padded to one width, a multiple of 4 with a word to spare past the longest
    key's whole words: each whole word is a column, and every key's tail bytes lie inside its row.
    A key's hash only takes the steps its own length calls for."""
    count = len(keys)
    lengths = np.fromiter(map(len, keys), dtype=np.uint32, count=count)
    width = (int(lengths.max()) + 4) & ~3
    cells = np.frombuffer(b"".join([key.ljust(width, b"\0") for key in keys]), dtype=np.uint8)
    cells = cells.reshape(count, width)
    words = cells.view("<u4")
    h = np.uint32(_SEED) ^ lengths
    whole = lengths >> 2
    for column in range(int(whole.max())):
        k = words[:, column] * _M32
        k ^= k >> 24
        k *= _M32
        np.copyto(h, (h * _M32) ^ k, where=whole > column)
    rest = lengths & 3
    at = (whole << 2).astype(np.intp)
    rows = np.arange(count)
    tail = cells[rows, at].astype(np.uint32)
    tail ^= np.where(rest >= 2, cells[rows, at + 1].astype(np.uint32) << 8, 0).astype(np.uint32)
    tail ^= np.where(rest == 3, cells[rows, at + 2].astype(np.uint32) << 16, 0).astype(np.uint32)
    h = np.where(rest > 0, (h ^ tail) * _M32, h)
    h ^= h >> 13
    h *= _M32
    return (h ^ (h >> 15)).astype(np.uint32, copy=False)  # (np.where loses the dtype for the checker)
