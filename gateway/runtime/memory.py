"""Memory settings for scoring at full speed: the C allocator keeps freed pages, and the cyclic
collector runs rarely (``collect_less_often``); ``tune_for_batches`` applies both.

A scored batch allocates its output records at once (one ``bytes`` per record, each from a fresh
serialiser buffer) and frees them together once the broker has them. glibc's ``malloc`` then trims
the top of the heap back to the kernel, and the next batch takes the same pages again, one page
fault at a time: measured on this class of machine, that made serialising a record that is kept
until the batch is published cost about 3 µs instead of 0.1 µs. Raising the trim threshold (and
padding each heap growth) keeps those pages in the process for the next batch. Peak memory is
unchanged, still bounded by ``max_in_flight_records``; up to ``TRIM_THRESHOLD`` of freed memory may
stay resident between batches.

Only glibc has ``mallopt``; elsewhere (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2

TRIM_THRESHOLD = 64 * 1024 * 1024
TOP_PAD = 16 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Tune glibc's allocator for batch-sized bursts; True when it applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_TOP_PAD, TOP_PAD))
    log.debug("malloc_tuned", extra={"applied": applied})
    return applied


# A gen-0 collection every GEN0_THRESHOLD container allocations instead of CPython's 700.
GEN0_THRESHOLD = 50_000


def collect_less_often() -> None:
    """Make the cyclic collector run less often and skip what start-up built.

    Each record allocates a handful of containers (its feature dict, request row, output tuple),
    none of them in a cycle, and they live until the batch is published. With CPython's default
    threshold the collector ran every ~700 allocations, traversing thousands of in-flight records
    each time, and a full collection traversed every module and config object as well. Freezing
    what exists at start-up moves it out of the collector's reach; the higher threshold makes
    young collections rare. Cycles are still collected, only in larger, rarer sweeps.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


def tune_for_batches() -> None:
    """Both settings, as every command that scores at full speed (run, batch, demo) applies them."""
    keep_freed_memory()
    collect_less_often()
