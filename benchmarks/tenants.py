"""A trace over many tenants: the time before the first request, and the whole replay.

Run: python benchmarks/tenants.py [--tenants 2000] [--pages 200] [--requests 400000]
                                  [--epc-pages 100000] [--repeat 3]

Under ``--policy sgx`` every tenant is an enclave built through the uapi (ECREATE, three
EADDs with their 48 EEXTENDs, EINIT, VA pages, mmap) before the first request, so a trace
spread over thousands of tenants spends most of its wall time there. Writes one CSV trace
(``tenant,obj``, uniform over tenants and pages, seed 1), replays it ``--repeat`` times and
prints, as JSON, the medians of ``setup_s`` (scan and build), ``replay_s`` and ``wall_s``,
the build time per enclave, the state per simulated page (EPC and enclave pages: with many
small enclaves what each enclave costs whatever its size dominates it, docs/replay.md), and
the counters that show every run did the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import numpy as np
from _machine import machine

from epcsim.sim.replay import ReplayConfig, replay_chunks
from epcsim.workload.traces import open_trace, write_csv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=2000)
    ap.add_argument("--pages", type=int, default=200, help="pages per tenant")
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--epc-pages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    path = os.path.join(tempfile.mkdtemp(), "tenants.csv")
    write_csv(path, rng.integers(0, a.pages, a.requests).astype(np.uint64),
              tenant=rng.integers(0, a.tenants, a.requests).astype(np.uint32))
    cfg = ReplayConfig(policy="sgx", epc_pages=a.epc_pages)
    runs = [replay_chunks(cfg, lambda: open_trace(path, "csv")).summary
            for _ in range(a.repeat + 1)][1:]   # the first loads (or compiles) the engine
    setup = statistics.median(r["setup_s"] for r in runs)
    out = {"machine": machine(), "tenants": a.tenants, "pages_per_tenant": a.pages,
           "requests": a.requests, "epc_pages": a.epc_pages,
           "setup_s": setup, "replay_s": statistics.median(r["replay_s"] for r in runs),
           "wall_s": statistics.median(r["wall_s"] for r in runs),
           "setup_ms_per_enclave": 1000 * setup / runs[0]["enclaves"],
           "state_bytes_per_page": runs[0]["state_bytes_per_page"],
           "counters": {k: runs[0][k] for k in ("enclaves", "faults", "eaug", "eldu", "ewb")},
           "same_counters_every_run": all(
               all(r[k] == runs[0][k] for k in ("faults", "eldu", "ewb")) for r in runs)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
