"""A scenario in content mode: the same requests through the driver with real page bytes.

``[run] content = true`` adds this pass to ``epcsim run``. The compiled replay engine keeps
no page contents; this pass builds one enclave per tenant (the selftests' loader, heap as
large as the tenant's pages) on a content-mode processor whose evicted pages are sealed with
AES-GCM into the on-disk backing store, and replays the scenario's requests from inside the
enclaves. Every request reads its page's counter, checks it against what the enclave last
wrote there, and writes it incremented: a run proves, byte for byte, that eviction and
reload kept every page's data. It runs the Python fault path (thousands of requests per
second, see BENCHMARKS.md), so it suits thousands to a few hundred thousand requests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.kernel.vdso import EENTER, EEXIT, Operation, SgxEnclaveRun
from epcsim.selftest.loader import HEAP, setup_test_encl

BASE = 0x10_0000_0000
STEPS_PER_ENTRY = 256


def content_run(tenants: np.ndarray, pages: np.ndarray, names: list[str], *, epc_pages: int,
                seed: int = 0, backing_dir: str | None = None) -> tuple[dict[str, Any],
                                                                        pa.Table]:
    """Replay (tenant, page) requests with contents; returns (summary, per-enclave table)."""
    cpu = Processor(epc_size=epc_pages * 4096, content=True, n_lps=2, seed=seed)
    # Its time comes from counters after the run: no clock reaches the manager, so ksgxd
    # frees at once (docs/fidelity.md).
    k = Kernel(cpu, backing_dir=backing_dir, ksgxd="instant")
    n_t = len(names)
    sizes = [int(pages[tenants == t].max()) + 1 if (tenants == t).any() else 1
             for t in range(n_t)]
    encls = [setup_test_encl(k, sizes[t] * 4096, base=BASE) for t in range(n_t)]
    shadow = [np.zeros(s, dtype=np.uint64) for s in sizes]
    bad = np.zeros(n_t, dtype=np.int64)
    reads = np.zeros(n_t, dtype=np.int64)
    backing_peak = 0

    def bump(t: int, page: int):  # type: ignore[no-untyped-def]
        addr = encls[t].base + HEAP + page * 4096

        def step(ctx) -> None:  # type: ignore[no-untyped-def]
            v = ctx.read_u64(addr)
            if v != int(shadow[t][page]):
                bad[t] += 1
            ctx.write_u64(addr, v + 1)
            shadow[t][page] = v + 1
            reads[t] += 1
        return step

    i, n = 0, len(pages)
    while i < n:
        t = int(tenants[i])
        j = i
        while j < n and j - i < STEPS_PER_ENTRY and int(tenants[j]) == t:
            j += 1
        op = Operation("requests", [bump(t, int(p)) for p in pages[i:j]])
        run = SgxEnclaveRun(tcs=encls[t].tcs[0])
        if encls[t].thread.enter(run, EENTER, op) != 0 or run.function != EEXIT:
            raise RuntimeError(f"enclave {names[t]} stopped with exception vector "
                               f"{run.exception_vector} at {run.exception_addr:#x}")
        backing_peak = max(backing_peak, sum(b.bytes_charged
                                             for b in k.driver_owner.backing.values()))
        i = j
    rows = []
    for t, encl in enumerate(encls):
        c = k.sgx.counters(encl.file.e)
        rows.append({"tenant": t, "name": names[t], "requests": int(reads[t]),
                     "mismatches": int(bad[t]), "ewb": c["ewb"] + c["secs_ewb"],
                     "eldu": c["eldu"] + c["secs_eldu"], "faults": c["faults"]})
    for encl in encls:
        encl.close()
    summary = {"requests": int(reads.sum()), "mismatches": int(bad.sum()),
               "verified": bool(bad.sum() == 0 and reads.sum() == n),
               "sealed": sum(r["ewb"] for r in rows), "opened": sum(r["eldu"] for r in rows),
               "backing_peak_bytes": backing_peak}
    return summary, pa.Table.from_pylist(rows)
