"""The program workloads against the EPC: miss-ratio curves, the paging cliff, the knee on
the client EPC, and the cost of a fault. docs/workloads.md and docs/validation.md quote it.

Run: python benchmarks/programs.py mrc|cliff|knee|fault [--out docs/img] [--accesses N]

mrc    each program over 8 MiB (2048 pages): its LRU miss-ratio curve, workload_NAME.png
cliff  each program over 0.25x to 4x an EPC of 1024 pages, replayed through the kernel
       model (client SGX1 costs): slowdown, EWB, ELDU; programs_cliff.png/.json
knee   kvstore and hashjoin from 48 to 128 MiB on the client preset's 93.5 MiB EPC
fault  cycles an enclave thread loses per fault that writes a page back and loads one
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from epcsim.sim import costs
from epcsim.sim.mrc import curve, stack_distances
from epcsim.sim.replay import ReplayConfig, replay_pages
from epcsim.workload.programs import PROGRAMS, accesses, generate

RATIOS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0)
PAGE = 4096



def replay(pages: np.ndarray, writes: np.ndarray, epc: int,
           platform: str = "client-sgx1") -> dict[str, Any]:
    cfg = ReplayConfig(policy="sgx", epc_pages=epc, platform=costs.preset(platform))
    return replay_pages(cfg, pages, writes).summary


def mrc(out: str, n: int) -> None:
    size = 8 << 20
    rows = {}
    for name in PROGRAMS:
        tr = generate(name, size, seed=1, accesses=n)
        keys = tr.page
        sizes = np.unique(np.linspace(1, tr.footprint_pages, 64).astype(np.int64))
        ratio = curve(stack_distances(keys, tr.footprint_pages), sizes)
        rows[name] = {"records": len(keys), "pages_touched": int(np.unique(keys).size),
                      "footprint_pages": tr.footprint_pages,
                      "write_share": round(float(tr.write.mean()), 3),
                      "miss_at_quarter": round(float(np.interp(tr.footprint_pages / 4, sizes,
                                                               ratio)), 4),
                      "miss_at_half": round(float(np.interp(tr.footprint_pages / 2, sizes,
                                                            ratio)), 4)}
        fig, ax = plt.subplots(figsize=(4.2, 2.6))
        ax.plot(sizes / tr.footprint_pages, ratio, "-")
        ax.set_xlabel("LRU cache / footprint")
        ax.set_ylabel("miss ratio")
        ax.set_ylim(0, max(0.05, float(ratio.max()) * 1.05))
        ax.set_title(f"{name}: 8 MiB, {len(keys):,} records", fontsize=9)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"workload_{name}.png"), dpi=80)
        plt.close(fig)
        print(name, rows[name])
    with open(os.path.join(out, "workload_mrc.json"), "w") as f:
        json.dump(rows, f, indent=2)


def cliff(out: str, n: int, epc: int = 1024) -> None:
    rows = []
    for name in PROGRAMS:
        for r in RATIOS:
            size = max(64 << 10, int(r * epc) * PAGE)
            pages, writes = accesses(name, size, n, seed=1)
            s = replay(pages, writes, epc)
            rows.append({"workload": name, "ratio": r, "size": size,
                         "slowdown": round(s["slowdown"], 3), "ewb": s["ewb"],
                         "eldu": s["eldu"], "eaug": s["eaug"],
                         "miss_ratio": round(s["miss_ratio"], 5)})
            print(rows[-1], flush=True)
    with open(os.path.join(out, "programs_cliff.json"), "w") as f:
        json.dump(rows, f, indent=1)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in PROGRAMS:
        mine = [x for x in rows if x["workload"] == name]
        ax.plot([x["ratio"] for x in mine], [x["slowdown"] for x in mine], "o-", ms=3,
                label=name)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("footprint / EPC")
    ax.set_ylabel("slowdown vs. all pages resident")
    ax.set_yscale("log")
    ax.set_title(f"The paging cliff per program ({epc} EPC pages, client SGX1 costs, "
                 f"{n:,} records)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "programs_cliff.png"), dpi=90)


def knee(out: str, n: int) -> None:
    plat = costs.preset("client-sgx1")
    rows = []
    for name in ("kvstore", "hashjoin"):
        for mib in (48, 64, 80, 88, 92, 96, 100, 112, 128):
            pages, writes = accesses(name, mib << 20, n, seed=1)
            s = replay(pages, writes, plat.epc_pages)
            rows.append({"workload": name, "mib": mib, "slowdown": round(s["slowdown"], 3),
                         "ewb": s["ewb"], "eldu": s["eldu"]})
            print(rows[-1], flush=True)
    with open(os.path.join(out, "programs_knee.json"), "w") as f:
        json.dump({"epc_pages": plat.epc_pages, "rows": rows}, f, indent=1)


def fault(out: str, n: int) -> None:
    # a footprint twice the EPC, read uniformly: nearly every fault evicts and reloads
    epc = 1024
    rng = np.random.default_rng(1)
    pages = rng.integers(0, 2 * epc, n)
    s = replay(pages, np.zeros(n, np.bool_), epc)
    ghz = costs.preset("client-sgx1").ghz
    br = s["virtual_time_breakdown_s"]
    stall = (s["virtual_time_s"] - br["work"]) * ghz * 1e9
    # the thread's stall per fault, and ksgxd's work per page it writes back on its own CPU
    doc = {"faults": s["faults"], "ewb": s["ewb"], "eldu": s["eldu"],
           "thread_cycles_per_fault": round(stall / s["faults"]),
           "ksgxd_cycles_per_ewb": round(s["ksgxd_busy_s"] * ghz * 1e9 / max(1, s["ewb"])),
           "breakdown_s": br, "slowdown": s["slowdown"]}
    print(doc)
    with open(os.path.join(out, "programs_fault.json"), "w") as f:
        json.dump(doc, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["mrc", "cliff", "knee", "fault"])
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--accesses", type=int, default=1_000_000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.perf_counter()
    {"mrc": mrc, "cliff": cliff, "knee": knee, "fault": fault}[a.what](a.out, a.accesses)
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
