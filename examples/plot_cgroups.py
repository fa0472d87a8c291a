"""Plot per-cgroup EPC usage over virtual time from a run's ``cgroup_series.parquet``.

Run: python examples/plot_cgroups.py RUN_DIR OUT.png   (RUN_DIR from ``epcsim run --out``;
matplotlib comes with the ``plots`` extra: ``python3 -m pip install '.[plots]'``)
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyarrow.parquet as pq


def main(run_dir: str, out: str) -> None:
    series = pq.read_table(f"{run_dir}/cgroup_series.parquet").to_pylist()
    cgroups = pq.read_table(f"{run_dir}/cgroups.parquet").to_pylist()
    limits = {(r["node"], r["path"]): r["max"] for r in cgroups}
    nodes = sorted({r["node"] for r in series})
    fig, axes = plt.subplots(len(nodes), 1, figsize=(8, 3.2 * len(nodes)), squeeze=False)
    for ax, node in zip(axes[:, 0], nodes):
        paths = sorted({r["path"] for r in series if r["node"] == node})
        for p in paths:
            pts = [(r["t_s"], r["current"] / 2**20) for r in series
                   if r["node"] == node and r["path"] == p]
            line, = ax.plot([t for t, _ in pts], [c for _, c in pts], label=p)
            lim = limits.get((node, p), -1)
            if lim is not None and lim >= 0:
                ax.axhline(lim / 2**20, color=line.get_color(), ls="--", lw=0.8)
        ax.set_title(f"node {node}: misc.current per pod (dashed: misc.max)")
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel("EPC (MiB)")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
