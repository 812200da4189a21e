import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.delivery.offsets import OffsetOrderError, OffsetTracker


def test_commits_only_the_contiguous_acknowledged_prefix():
    t = OffsetTracker()
    t.track("p0", [0, 1, 2, 3])
    t.ack("p0", [1, 2])
    assert t.committable() == {}
    t.ack("p0", [0])
    assert t.committable() == {"p0": 3}
    t.committed({"p0": 3})
    assert t.committable() == {}
    t.ack("p0", [3])
    assert t.committable() == {"p0": 4}


def test_gaps_in_offsets_do_not_block_commits():
    t = OffsetTracker()
    t.track("p", [10, 15, 20])
    t.ack("p", [20, 10, 15])
    assert t.committable() == {"p": 21}


def test_tracking_backwards_breaks_the_invariant():
    t = OffsetTracker()
    t.track("p", [5, 6])
    with pytest.raises(OffsetOrderError):
        t.track("p", [6])


def test_acks_for_forgotten_partitions_are_ignored():
    t = OffsetTracker()
    t.track("p", [0, 1])
    t.forget(["p"])
    t.ack("p", [0, 1])
    assert t.committable() == {}
    assert t.outstanding() == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60), st.randoms())
def test_committed_offset_never_passes_an_unacknowledged_record(gaps, rnd: random.Random):
    offsets, o = [], 0
    for g in gaps:
        o += g
        offsets.append(o)
    t = OffsetTracker()
    t.track("p", offsets)
    order = offsets[:]
    rnd.shuffle(order)
    acked: set[int] = set()
    for off in order:
        t.ack("p", [off])
        acked.add(off)
        commit = t.committable().get("p")
        if commit is not None:
            # everything below the commit point is acknowledged
            assert all(x in acked for x in offsets if x < commit)
            t.committed({"p": commit})
    assert t.committable() == {} and t.outstanding("p") == 0
