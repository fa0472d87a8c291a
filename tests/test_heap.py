"""glibc's mmap threshold, fixed for a replay (epcsim.heap): a block of a chunk's size is a
mapping of its own, handed back when freed, however large the blocks freed before it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes
import sys
import numpy as np
from epcsim.heap import fix_mmap_threshold

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2

def mapped():   # bytes of blocks malloc serves with mappings of their own
    return libc.mallinfo2().hblkhd

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
a = np.ones(8 << 20, np.uint8)   # a mapped block; freeing it raises glibc's threshold to 8 MiB
del a
before = mapped()
b = np.ones(6 << 20, np.uint8)   # below the raised threshold: from the heap, unless fixed
print(mapped() - before)
"""

glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _mapped(mode: str) -> int:
    # glibc fixes its threshold itself when a malloc variable is set, and a dask Nanny
    # (the sweep tests' local cluster) sets MALLOC_TRIM_THRESHOLD_ in its own process's
    # environment before it spawns a worker and leaves it there (distributed/nanny.py),
    # for every later child to inherit. The probe starts from glibc's defaults.
    env = {k: v for k, v in os.environ.items() if "MALLOC" not in k and "TUNABLES" not in k}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, env=env)
    return int(out.stdout)


@pytest.mark.skipif(not glibc,
                    reason="only glibc's malloc moves its mmap threshold (and has mallinfo2)")
def test_a_chunk_sized_block_is_a_mapping_of_its_own() -> None:
    assert _mapped("moving") < 1 << 20     # glibc as it is: from the heap, kept there when freed
    assert _mapped("fixed") >= 6 << 20     # the threshold fixed: a mapping, unmapped when freed


def test_fixing_twice_is_harmless() -> None:
    from epcsim.heap import fix_mmap_threshold
    assert fix_mmap_threshold() == fix_mmap_threshold()
