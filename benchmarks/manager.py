"""EPC manager throughput and state size (metadata mode).

Run: python benchmarks/manager.py [--pages N] [--repeat R] [--cgroups]

- alloc/free pairs per second: ``sgx_alloc_epc_page`` then ``sgx_encl_free_epc_page``
  (with its EREMOVE), through the Python API and from a compiled loop;
- reclaimed pages per second: an enclave twice the EPC is added page by page, every
  allocation past the EPC reclaiming directly (batches of 16: EBLOCK, ETRACK, EWB);
- manager state in bytes per EPC page.

``--cgroups`` measures instead the reclaim path with no cgroup attached against the EPC cgroup
attached with no limit anywhere (the root and one child ``/bench``, which every page is
charged to), the two interleaved within each repeat (in alternating order) so that a shared
machine's load falls on both alike; medians of R repeats:

- reclaimed pages per second, compiled: a compiled loop adds pages (``sgx_alloc_epc_page``
  with reclaim, EADD, mark reclaimable) to a full EPC, every allocation reclaiming directly
  (with cgroups: the charge, then global reclaim walking the hierarchy);
- reclaimed pages per second, API-driven: the same through the Python API, as above.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))

from _machine import machine
from minimal_owner import MinimalOwner

from epcsim.arch import PageType, secinfo_flags
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor
from epcsim.jit import njit_closure
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.main import (
    EpcManager,
    sgx_encl_free_epc_page,
    sgx_mark_page_reclaimable,
)


def rig(pages: int, cgroups: bool = False) -> tuple[Processor, MinimalOwner, EpcManager]:
    cpu = Processor(epc_size=pages * 4096)
    own = MinimalOwner(cpu, 1)
    mgr = EpcManager(cpu, [own])
    if cgroups:
        # Configured, limited nowhere: every page is charged to /bench and sits on its LRU.
        cg = EpcCgroups(mgr)
        cg.mkdir("/bench")
        cg.enter("/bench")
    own.create(mgr, 0)
    return cpu, own, mgr


def bench_pairs_api(pages: int, n: int) -> float:
    _, _, mgr = rig(pages)
    t = time.perf_counter()
    for _ in range(n):
        mgr.free(mgr.alloc(0, 0, True))
    return n / (time.perf_counter() - t)


def make_loop(alloc):  # type: ignore[no-untyped-def]
    @njit_closure
    def loop(os, ms, st, n):  # type: ignore[no-untyped-def]
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


_add_loops: dict[int, object] = {}


def make_add_loop(alloc):  # type: ignore[no-untyped-def]
    """A compiled loop of page adds: allocate with reclaim, EADD, mark reclaimable."""
    hit = _add_loops.get(id(alloc))
    if hit is not None:
        return hit

    @njit_closure
    def add_loop(os, ms, st, n, first, secs, base, secinfo):  # type: ignore[no-untyped-def]
        for i in range(n):
            page = alloc(os, ms, st, 0, 0, True, 0)
            if page < 0:
                return i
            L.eadd(st, page, secs, base + (first + i) * 4096, secinfo, 0, True)
            sgx_mark_page_reclaimable(ms, page)
        return n

    _add_loops[id(alloc)] = add_loop
    return add_loop


def bench_reclaim_compiled(pages: int, cgroups: bool) -> float:
    cpu, own, mgr = rig(pages, cgroups)
    loop = make_add_loop(mgr.fns.alloc)
    secs = int(own.state.secs[0])
    si = secinfo_flags(PageType.REG, 3)
    fill = mgr.sgx_nr_free_pages
    args = (secs, 0x100_0000_0000, si)
    assert loop(mgr.owner_states(), mgr.ms, cpu.st, fill, 0, *args) == fill
    t = time.perf_counter()
    done = loop(mgr.owner_states(), mgr.ms, cpu.st, 2 * pages, fill, *args)
    dt = time.perf_counter() - t
    assert done == 2 * pages
    return mgr.counters()["written"] / dt


def bench_reclaim(pages: int, cgroups: bool = False) -> float:
    _cpu, own, mgr = rig(pages, cgroups)
    for _ in range(mgr.sgx_nr_free_pages):
        own.add(mgr, 0)
    t = time.perf_counter()
    for _ in range(pages):
        own.add(mgr, 0)
    dt = time.perf_counter() - t
    return mgr.counters()["written"] / dt


def compare_cgroups(pages: int, repeat: int) -> dict[str, object]:
    """No cgroup vs. cgroups attached but unlimited, interleaved (ABBA) in one process."""
    for cg in (False, True):          # compile both variants before timing anything
        bench_reclaim_compiled(256, cg)
    runs: dict[str, list[float]] = {f"{m}_{v}": [] for m in ("compiled", "api")
                                    for v in ("no_cgroup", "cgroups_unlimited")}
    for r in range(repeat):
        order = (False, True) if r % 2 == 0 else (True, False)
        for cg in order:
            v = "cgroups_unlimited" if cg else "no_cgroup"
            runs[f"compiled_{v}"].append(bench_reclaim_compiled(pages, cg))
            runs[f"api_{v}"].append(bench_reclaim(pages // 4, cg))
    med = {k: statistics.median(x) for k, x in runs.items()}
    return {
        "reclaimed_pages_per_s_median": {k: round(v) for k, v in med.items()},
        "ratio_cgroups_over_none": {
            m: round(med[f"{m}_cgroups_unlimited"] / med[f"{m}_no_cgroup"], 3)
            for m in ("compiled", "api")},
        "runs": {k: [round(x) for x in v] for k, v in runs.items()},
        "pages": pages, "repeat": repeat, "load_before": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=32768)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cgroups", action="store_true",
                    help="reclaim with no cgroup vs. cgroups attached but unlimited")
    a = ap.parse_args()
    if a.cgroups:
        load = os.getloadavg()
        r = compare_cgroups(a.pages, a.repeat)
        r["load_before"], r["load_after"] = load, os.getloadavg()
        r["machine"] = machine()
        print(json.dumps(r, indent=2))
        return
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
