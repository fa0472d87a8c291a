"""The whole cgroup selftest suite (run_epc_cg_selftests.sh's cases) on a 4 MiB EPC.

Run: python benchmarks/cgroup.py [--repeat R] [--epc-size BYTES]

The kernel's script needs minutes on a 4 GB-EPC server (each case runs enclaves as large as
the EPC); the model runs the same cases, same ratios, on a 4 MiB EPC. Compilation happens
once per process and is reported apart (``compile_s``: the first run minus a warm run).
Reports the median wall time of R warm runs of the whole suite, and per case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _machine import machine

from epcsim.selftest import run_suite


def once(epc_size: int) -> tuple[float, dict[str, float], bool]:
    t = time.perf_counter()
    per = {}
    ok = True
    for r in run_suite("cgroup", epc_size=epc_size):
        per[r.name] = r.seconds
        ok = ok and r.passed
    return time.perf_counter() - t, per, ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--epc-size", type=int, default=4 << 20)
    a = ap.parse_args()
    first, _, ok = once(a.epc_size)
    runs = [once(a.epc_size) for _ in range(a.repeat)]
    med = statistics.median(r[0] for r in runs)
    per = {name: statistics.median(r[1][name] for r in runs) for name in runs[0][1]}
    print(json.dumps({"machine": machine(), "epc_size": a.epc_size, "repeat": a.repeat,
                      "all_passed": ok and all(r[2] for r in runs),
                      "suite_median_s": round(med, 3), "first_run_s": round(first, 1),
                      "compile_s": round(first - med, 1),
                      "per_case_median_s": {k: round(v, 3) for k, v in per.items()}},
                     indent=2))


if __name__ == "__main__":
    main()
