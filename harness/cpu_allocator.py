"""Keep freed CPU memory inside the process, so that large tensors stop costing page faults.

glibc's malloc serves every request above its mmap threshold (32 MB at most) with a fresh
mapping and returns it to the kernel when freed; the next tensor of that size faults every page
in again, zeroed by the kernel. A training step allocates and frees dozens of score-sized
tensors ([B, H, T, K], 38 MB at the benchmark shape), so on CPU that costs as much as some of
the matrix products: one Transformer-XL attention layer's forward and backward at the benchmark
shape took 0.61 s with glibc's defaults and 0.46 s with freed memory kept. PyTorch's CPU
performance guide recommends jemalloc or tcmalloc for the same reason; this is the version that
needs no install: no mmap for large blocks, and no trimming of the heap's free top.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

#: mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
DESCRIPTION = "glibc malloc keeping freed memory (no mmap for large blocks, no heap trimming)"


@functools.cache
def retain_freed_memory() -> bool:
    """Apply it to this process; False where the C library is not glibc (nothing changes)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
