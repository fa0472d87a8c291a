"""The process's heap: how glibc's malloc places the model's large tables.

glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with a
mapping of its own, whose pages the kernel zero-fills on first touch and which ``free`` hands
back at once. Each time such a block is freed the threshold rises to its size, up to 32 MiB,
and from then on blocks below it come from the heap instead, where ``calloc`` must write
every byte it reuses and where a freed block stays resident until the heap's top is free.

A replay allocates a trace chunk's columns again and again and frees them (megabytes each),
so after the first chunk the threshold stood above them; tables of tens of megabytes sized
for pages a run never touches (``np.zeros``) then became resident as a whole, and freed
chunk buffers stayed: 5 to 8 bytes per simulated page of peak RSS on the scale matrix's
uniform cells (BENCHMARKS.md, 2026-12-07 "heap"). Setting the threshold fixes it where glibc
would move it; at 1 MiB the small buffers of the interpreter and numpy still come from the
heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3     # mallopt(3) parameter number in glibc's malloc.h
MMAP_THRESHOLD = 1 << 20


@functools.cache
def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` for the rest of the process (once).

    Returns whether it was set: False where the C library is not glibc (musl, macOS,
    Windows), whose allocators never move a threshold, so nothing needs fixing there.
    """
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
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes))
