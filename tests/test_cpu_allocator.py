"""CPU runs keep freed memory in the process: large tensors come from malloc's heap, not from mmap."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pytest
import torch

from harness.engine.cpu_allocator import retain_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_large_tensors_come_from_the_heap_once_applied():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    libc.mallinfo2.restype = MallInfo2
    assert retain_freed_memory()
    size = 64 << 20  # above glibc's largest mmap threshold (32 MB)
    before = libc.mallinfo2()
    tensor = torch.ones(size, dtype=torch.uint8)
    during = libc.mallinfo2()
    assert during.hblkhd - before.hblkhd < size  # not a fresh mapping
    assert during.uordblks - before.uordblks >= size  # in use from the heap
    del tensor
    assert libc.mallinfo2().arena >= during.arena  # and kept when freed: the heap was not trimmed
