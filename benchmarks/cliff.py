"""The paging cliff: slowdown against working-set size, 0.25x to 4x the EPC.

Run: python benchmarks/cliff.py [--epc-pages 4096] [--requests 400000] [--out docs/img]

One enclave on the client SGX1 cost model reads pages uniformly (and, as a second series,
Zipf alpha 1.0) over a footprint of r x EPC for each ratio r. Prints a Markdown table and
writes cliff.png; the slowdown is virtual time against the same accesses all resident.
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from epcsim.sim.replay import ReplayConfig, replay_pages
from epcsim.workload.generators import uniform, zipf

RATIOS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0)



def run(pages: np.ndarray, epc: int) -> dict:  # type: ignore[type-arg]
    return replay_pages(ReplayConfig(policy="sgx", epc_pages=epc), pages).summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epc-pages", type=int, default=4096)
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--out", default="docs/img")
    a = ap.parse_args()
    rows = []
    for r in RATIOS:
        fp = max(1, int(r * a.epc_pages))
        u = run(uniform(fp, a.requests, seed=1), a.epc_pages)
        z = run(zipf(fp, a.requests, alpha=1.0, seed=1), a.epc_pages)
        rows.append({"ratio": r, "footprint_pages": fp,
                     "uniform_slowdown": u["slowdown"], "uniform_miss": u["miss_ratio"],
                     "zipf_slowdown": z["slowdown"], "zipf_miss": z["miss_ratio"]})
    print("| working set / EPC | uniform: miss ratio | uniform: slowdown | "
          "Zipf 1.0: miss ratio | Zipf 1.0: slowdown |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['ratio']:.2f} | {row['uniform_miss']:.4f} | "
              f"{row['uniform_slowdown']:.2f} | {row['zipf_miss']:.4f} | "
              f"{row['zipf_slowdown']:.2f} |")
    os.makedirs(a.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = [row["ratio"] for row in rows]
    ax.plot(x, [row["uniform_slowdown"] for row in rows], "o-", label="uniform")
    ax.plot(x, [row["zipf_slowdown"] for row in rows], "s-", label="Zipf alpha=1.0")
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("working set / EPC size")
    ax.set_ylabel("slowdown vs. all pages resident")
    ax.set_yscale("log")
    ax.set_title(f"The EPC paging cliff ({a.epc_pages} EPC pages, client SGX1 costs)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "cliff.png"), dpi=110)
    with open(os.path.join(a.out, "cliff.json"), "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
