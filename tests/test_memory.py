"""
netbore.memory: giving freed start-up heap back to the operating system.
"""

from __future__ import annotations

import ctypes
import sys

import pytest

from netbore import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_returns_freed_pages_on_glibc() -> None:
    if memory._malloc_trim is None:
        pytest.skip("no malloc_trim (not glibc)")
    malloc = ctypes.CDLL(None).malloc
    free = ctypes.CDLL(None).free
    malloc.restype = ctypes.c_void_p
    free.argtypes = [ctypes.c_void_p]
    # Many blocks below the mmap threshold, then all freed: whole free
    # pages on the heap that only a trim gives back.
    blocks = [malloc(64 * 1024) for _ in range(64)]
    for block in blocks:
        free(block)
    assert memory.release_free_heap() is True


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", None)
    assert memory.release_free_heap() is False
