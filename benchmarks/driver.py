"""Fault throughput of the driver: ELDU with reclaim on an enclave twice the EPC.

Run: python benchmarks/driver.py [--epc-pages N] [--accesses A] [--repeat R]

An enclave built by the selftests' loader with a heap of twice the EPC is read page by page
in a random order from inside (one thread, one operation per access). Nearly every access
finds its page evicted: #PF, the fault path allocates without reclaim, ELDU (the SECS first
when it was evicted too), and ksgxd runs whenever the allocation reports -EBUSY.
Reports faults per second (median of R runs) in metadata and content mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from _machine import machine

from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.kernel.vdso import EENTER, EEXIT, SgxEnclaveRun
from epcsim.selftest.loader import HEAP, op_get_from_address, setup_test_encl


def bench(epc_pages: int, accesses: int, content: bool, seed: int) -> dict[str, float]:
    cpu = Processor(epc_size=epc_pages * 4096, content=content, n_lps=2, seed=seed)
    k = Kernel(cpu)
    encl = setup_test_encl(k, 2 * epc_pages * 4096)
    rng = np.random.default_rng(seed)
    pages = rng.integers(0, 2 * epc_pages, accesses)
    e = encl.file.e
    before = k.sgx.counters(e)
    run = SgxEnclaveRun(tcs=encl.tcs[0])
    t = time.perf_counter()
    for p in pages:
        encl.thread.enter(run, EENTER, op_get_from_address(encl.base + HEAP + int(p) * 4096))
        assert run.function == EEXIT
    dt = time.perf_counter() - t
    after = k.sgx.counters(e)
    faults = after["faults"] - before["faults"]
    return {"faults_per_s": faults / dt, "accesses_per_s": accesses / dt,
            "eldu": after["eldu"] - before["eldu"], "faults": faults,
            "ewb": k.mgr.counters()["ewb"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epc-pages", type=int, default=8192)
    ap.add_argument("--accesses", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    bench(256, 200, False, 0)  # compile
    out: dict[str, object] = {"machine": machine(), "epc_pages": a.epc_pages,
                              "enclave_pages": 2 * a.epc_pages, "accesses": a.accesses}
    for mode, content in (("metadata", False), ("content", True)):
        runs = [bench(a.epc_pages, a.accesses, content, s) for s in range(a.repeat)]
        out[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
