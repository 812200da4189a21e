"""The allocator tuning applies where glibc is, and is harmless where it is not."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from gateway.runtime import memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_takes_the_settings() -> None:
    assert memory.keep_freed_memory() is True


def test_without_a_c_library_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert memory.keep_freed_memory() is False


def test_collector_runs_less_often_and_skips_start_up_objects() -> None:
    import gc

    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        memory.collect_less_often()
        assert gc.get_threshold()[0] == memory.GEN0_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
