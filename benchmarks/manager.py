"""EPC manager throughput and state size (metadata mode).

Run: python benchmarks/manager.py [--pages N] [--repeat R]

- alloc/free pairs per second: ``sgx_alloc_epc_page`` then ``sgx_encl_free_epc_page``
  (with its EREMOVE), through the Python API and from a compiled loop;
- reclaimed pages per second: an enclave twice the EPC is added page by page, every
  allocation past the EPC reclaiming directly (batches of 16: EBLOCK, ETRACK, EWB);
- manager state in bytes per EPC page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))

from _machine import machine  # noqa: E402
from minimal_owner import MinimalOwner  # noqa: E402

from epcsim.hw.cpu import Processor  # noqa: E402
from epcsim.jit import njit, unmanaged  # noqa: E402
from epcsim.kernel.main import EpcManager, sgx_encl_free_epc_page  # noqa: E402


def rig(pages: int) -> tuple[Processor, MinimalOwner, EpcManager]:
    cpu = Processor(epc_size=pages * 4096)
    own = MinimalOwner(cpu, 1)
    mgr = EpcManager(cpu, [own])
    own.create(mgr, 0)
    return cpu, own, mgr


def bench_pairs_api(pages: int, n: int) -> float:
    _, _, mgr = rig(pages)
    t = time.perf_counter()
    for _ in range(n):
        mgr.free(mgr.alloc(0, 0, True))
    return n / (time.perf_counter() - t)


def make_loop(alloc):  # type: ignore[no-untyped-def]
    @njit
    def loop(os, ms, st, n):  # type: ignore[no-untyped-def]
        # As the replay engine does: reference-count-free views at the compiled entry.
        os, ms, st = unmanaged(os), unmanaged(ms), unmanaged(st)
        for _ in range(n):
            sgx_encl_free_epc_page(ms, st, alloc(os, ms, st, 0, 0, True, 0))
        return n
    return loop


def bench_pairs_compiled(pages: int, n: int) -> float:
    cpu, _, mgr = rig(pages)
    loop = make_loop(mgr.fns.alloc)
    loop(mgr.owner_states(), mgr.ms, cpu.st, 10)
    t = time.perf_counter()
    loop(mgr.owner_states(), mgr.ms, cpu.st, n)
    return n / (time.perf_counter() - t)


def bench_reclaim(pages: int) -> float:
    cpu, own, mgr = rig(pages)
    for _ in range(mgr.sgx_nr_free_pages):
        own.add(mgr, 0)
    t = time.perf_counter()
    for _ in range(pages):
        own.add(mgr, 0)
    dt = time.perf_counter() - t
    return mgr.counters()["written"] / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=32768)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    med = statistics.median
    r = {
        "alloc_free_pairs_per_s_api": med(bench_pairs_api(a.pages, 50_000)
                                          for _ in range(a.repeat)),
        "alloc_free_pairs_per_s_compiled": med(bench_pairs_compiled(a.pages, 20_000_000)
                                               for _ in range(a.repeat)),
        "reclaimed_pages_per_s_api_driven": med(bench_reclaim(a.pages)
                                                for _ in range(a.repeat)),
    }
    _, _, big = rig(1 << 22)  # a 16 GiB EPC
    r["manager_bytes_per_epc_page"] = big.bytes_per_page()
    r["machine"] = machine()
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
