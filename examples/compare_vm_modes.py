"""Run examples/oversubscription.toml in each VM mode; print the table and draw the plot
of docs/virtualization.md.

    PYTHONPATH=src python examples/compare_vm_modes.py [--metadata] [docs/img/virtualization.png]

Guest enclave pages carry real bytes (``[run] content = true``) unless ``--metadata`` is
given; the paging decisions, and so every count but ``bytes_checked``, are the same. The
plot needs matplotlib, the ``plots`` extra (``python3 -m pip install '.[plots]'``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from epcsim.sim.runner import run_scenario
from epcsim.workload.scenario import load

HERE = Path(__file__).resolve().parent
COLS = ("name", "status", "guest_faults", "guest_ewb", "guest_eldu", "host_ewb", "host_eldu",
        "vm_exits", "conflict_exits", "balloon_pages", "balloon_returned",
        "readback_mismatches", "bytes_checked", "slowdown")


def main(out: str = "docs/img/virtualization.png", content: bool = True) -> None:
    sc0 = load(HERE / "oversubscription.toml")
    sc0 = sc0.model_copy(update={"run": sc0.run.model_copy(update={"content": content})})
    results = {}
    for mode in ("reserved", "oversubscribed", "balloon"):
        sc = sc0.model_copy(update={"virt": sc0.virt.model_copy(update={"mode": mode})})
        results[mode] = run_scenario(sc, HERE, scenario_name="oversubscription.toml")
    print("| mode | " + " | ".join(COLS) + " |")
    print("|" + "---|" * (len(COLS) + 1))
    for mode, res in results.items():
        for row in res.summary["vms"]:
            cells = [f"{row[c]:.2f}" if isinstance(row.get(c), float) else str(row.get(c, "-"))
                     for c in COLS]
            print(f"| {mode} | " + " | ".join(cells) + " |")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = [r["name"] for r in results["oversubscribed"].summary["vms"]]
    width = 0.27
    for j, mode in enumerate(results):
        rows = {r["name"]: r for r in results[mode].summary["vms"]}
        vals = [rows[n].get("slowdown", 0.0) or 0.0 for n in names]
        axes[0].bar([i + (j - 1) * width for i in range(len(names))], vals, width, label=mode)
    axes[0].set_xticks(range(len(names)), names)
    axes[0].set_ylabel("slowdown (x enclave work)")
    axes[0].set_title("slowdown per VM (reserved: 0 = did not start)")
    axes[0].legend(fontsize=8)
    for ax, mode in zip(axes[1:], ("oversubscribed", "balloon")):
        t = results[mode].tables["vm_series"].to_pylist()
        for n in names:
            d = [r for r in t if r["vm"] == n]
            ax.plot([r["ecall"] for r in d], [r["host_pages"] * 4 / 1024 for r in d],
                    label=f"VM {n}")
        ax.set_title(f"host EPC held per VM, {mode}")
        ax.set_xlabel("ECALL")
        ax.set_ylabel("MiB")
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--metadata"]
    main(*args, content="--metadata" not in sys.argv[1:])
