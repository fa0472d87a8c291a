"""Leaf throughput and EPCM bytes per EPC page.

Run: python benchmarks/leaves.py [--pages N] [--repeat R]

Measures (median of R runs):
- compiled: an EBLOCK -> EWB -> ELDU cycle over every REG page of an enclave, driven by a
  numba loop over the same compiled leaves the API uses (metadata mode);
- api: the same cycle through the page-level Python API (metadata and content mode);
- EPCM + section state in bytes per EPC page, for a 64 GiB EPC (16 M pages).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from _machine import machine

from epcsim.arch import PageType
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor
from epcsim.hw.epc import epcm_bytes_per_page
from epcsim.jit import njit, table


def build(cpu: Processor, npages: int) -> tuple[int, np.ndarray, int]:
    """One initialised enclave with ``npages`` REG pages; returns (secs, pages, va page)."""
    from epcsim.hw.baremetal import BareMetal, Segment, tcs_image

    bm = BareMetal(cpu)
    encl = bm.build([Segment(0, tcs_image(ossa=0x1000), PageType.TCS),
                     Segment(0x1000, bytes(npages * 4096), measure=False)])
    pages = np.array([cpu.page_index(encl.pages[encl.base + 0x1000 + i * 4096])
                      for i in range(npages)], dtype=np.int64)
    va = cpu.page_index(bm.epa())
    return cpu.page_index(encl.secs), pages, va


@njit
def cycle(st, secs, pages, va, out, spare):  # type: ignore[no-untyped-def]
    """EBLOCK all, ETRACK, EWB each into its own slot, ELDU each back into a spare page."""
    n = pages.shape[0]
    for i in range(n):
        L.eblock(st, pages[i])
    L.etrack(st, secs, 0)
    recs = np.empty((n, L.W_LEN), dtype=np.uint64)
    for i in range(n):
        L.ewb(st, pages[i], va, i % 512, 0, out)
        recs[i, :] = out
    for i in range(n):
        target = pages[i]
        L.eldu(st, target, va, i % 512, secs, np.int64(recs[i, L.W_LINADDR]),
               np.int64(recs[i, L.W_SECINFO]), np.int64(recs[i, L.W_PCMD_EID]),
               np.int64(recs[i, L.W_MAC]), np.int64(recs[i, L.W_AUX]), False, False, 0, 0, -1)
    return 3 * n + 1


def bench_compiled(npages: int) -> float:
    cpu = Processor(epc_size=(npages + 64) * 4096)
    secs, pages, va = build(cpu, npages)
    out = table(np.zeros(L.W_LEN, dtype=np.uint64))
    cycle(cpu.st, secs, pages[:8], va, out, 0)  # compile
    t = time.perf_counter()
    leaves = 0
    for start in range(0, npages, 512):
        leaves += cycle(cpu.st, secs, pages[start:start + 512], va, out, 0)
    return leaves / (time.perf_counter() - t)


def bench_api(npages: int, content: bool) -> float:
    cpu = Processor(epc_size=(npages + 64) * 4096, content=content)
    secs, pages, va = build(cpu, npages)
    t = time.perf_counter()
    leaves = 0
    for start in range(0, npages, 512):
        chunk = pages[start:start + 512]
        for p in chunk:
            cpu.eblock_page(int(p))
        cpu.etrack_page(secs)
        sealed = [cpu.ewb_page(int(p), va, i)[1] for i, p in enumerate(chunk)]
        for i, (p, s) in enumerate(zip(chunk, sealed)):
            cpu.eldu_page(int(p), va, i, secs, s)
        leaves += 3 * len(chunk) + 1
    return leaves / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    results = {
        "compiled_leaves_per_s": statistics.median(bench_compiled(a.pages)
                                                   for _ in range(a.repeat)),
        "api_metadata_leaves_per_s": statistics.median(bench_api(a.pages // 4, False)
                                                       for _ in range(a.repeat)),
        "api_content_leaves_per_s": statistics.median(bench_api(a.pages // 8, True)
                                                      for _ in range(a.repeat)),
    }
    big = Processor(epc_size=64 << 30)
    results["epcm_bytes_per_epc_page"] = epcm_bytes_per_page(big.st)
    results["machine"] = machine()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
