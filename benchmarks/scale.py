"""Scale: a 64 GiB EPC (16 M pages) under 128 GiB of enclave memory, on one machine.

Run: python benchmarks/scale.py [--epc-gib 64] [--enclave-gib 128] [--requests N]

One enclave whose footprint is 128 GiB less the three pages of its thread (so ELRANGE is
exactly 128 GiB) is scanned sequentially once (every page is added with EAUG and, past
the EPC, ksgxd writes older pages back), then read at N random pages. Reports peak RSS
(getrusage), the bytes of state per simulated page (EPC page plus enclave page, every
array of the processor, the manager, the driver and the id map included) and the time.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import NamedTuple

import numpy as np
from _machine import machine

from epcsim.sim.replay import R_FIRST, ReplayConfig, replay_chunks


class _Chunk(NamedTuple):
    obj: np.ndarray
    tenant: np.ndarray
    write: np.ndarray


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epc-gib", type=float, default=64)
    ap.add_argument("--enclave-gib", type=float, default=128)
    ap.add_argument("--requests", type=int, default=2_000_000)
    a = ap.parse_args()
    epc = int(a.epc_gib * (1 << 30)) // 4096
    footprint = int(a.enclave_gib * (1 << 30)) // 4096 - R_FIRST
    rng = np.random.default_rng(1)
    step = 1 << 22

    def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, footprint, step):
            obj = np.arange(start, min(start + step, footprint), dtype=np.uint64)
            yield _Chunk(obj, np.zeros(len(obj), np.uint32), np.zeros(len(obj), np.bool_))
        for start in range(0, a.requests, step):
            n = min(step, a.requests - start)
            obj = rng.integers(0, footprint, n).astype(np.uint64)
            yield _Chunk(obj, np.zeros(n, np.uint32), np.zeros(n, np.bool_))

    t = time.perf_counter()
    res = replay_chunks(ReplayConfig(policy="sgx", epc_pages=epc, fault_log=1 << 16), chunks)
    s = res.summary
    out = {
        "machine": machine(), "epc_pages": epc, "enclave_pages": footprint + R_FIRST,
        "requests": s["requests"], "faults": s["faults"], "ewb": s["ewb"], "eldu": s["eldu"],
        "wall_s": s["wall_s"], "setup_s": s["setup_s"], "replay_s": s["replay_s"],
        "total_s": time.perf_counter() - t,
        "requests_per_s": s["requests_per_s"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20),
        "state_bytes": s["state_bytes"],
        "state_bytes_per_page": s["state_bytes_per_page"],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
