"""Keep freed CPU memory inside the process, so that large tensors stop costing page faults.

glibc's malloc serves every request above its mmap threshold (32 MB at most) with a fresh
mapping and returns it to the kernel when freed; the next tensor of that size faults every page
in again, zeroed by the kernel. A training step allocates and frees dozens of score-sized
tensors ([B, H, T, K], 38 MB at the benchmark shape). Transformer-XL's training step at the
benchmark shape (three runs each): with glibc's defaults 6.0-7.0 s, of which 2.0-2.5 s in the
kernel, 580k-630k page faults; with freed memory kept 5.1-5.9 s, 0.4-0.7 s, 19k-37k. Full
attention and sliding window, whose flash kernels allocate nothing that large, are unchanged. PyTorch's CPU
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
