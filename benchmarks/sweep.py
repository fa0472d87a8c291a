"""Sweep throughput on 1 and 2 local worker processes (points per second).

Run: python benchmarks/sweep.py [--points 16] [--requests 3000000] [--policy lru] [--repeat 3]
     [--kinds warm,cold]

A grid of ``--points`` EPC sizes over the two-enclave example. Two measures, each the median
of ``--repeat`` runs:

- warm: the workers have compiled the engine before the clock starts (a long sweep's steady
  state); the points run through ``compute_point``, the function ``epcsim sweep`` runs.
- cold: ``epcsim sweep --workers N`` as a user runs it, from process start, so every worker's
  start and compile is inside the time.

It prints the load average next to the numbers: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path

from _machine import machine

from epcsim.sweep.execute import compute_point
from epcsim.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(tmp: Path, points: int, requests: int, policy: str) -> Path:
    sizes = [f"{8 + i}MiB" for i in range(points)]
    path = tmp / "bench.toml"
    path.write_text(f'[sweep]\nbase = "{ROOT / "examples" / "two_enclaves.toml"}"\n[grid]\n'
                    f'"platform.epc_size" = {json.dumps(sizes)}\n'
                    f'"kernel.policy" = ["{policy}"]\n"run.requests" = [{requests}]\n')
    return path


def warm(spec_path: Path, workers: int) -> float:
    spec = load_sweep(spec_path)
    jobs = [(i, p, spec.scenario_for(p), str(spec.base_dir))
            for i, p in enumerate(spec.points())]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        # One compile per worker before timing: as many slow first points as workers.
        wait([pool.submit(compute_point, *jobs[0]) for _ in range(workers)])
        t = time.perf_counter()
        wait([pool.submit(compute_point, *j) for j in jobs])
        return time.perf_counter() - t


def cold(spec_path: Path, workers: int, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "epcsim", "sweep", str(spec_path), "--workers",
                    str(workers), "--out", str(out), "--json"], check=True, env=env,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3_000_000)
    ap.add_argument("--policy", default="lru")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kinds", default="warm,cold", help="warm, cold or both")
    a = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        spec = sweep_file(tmp, a.points, a.requests, a.policy)
        for kind in a.kinds.split(","):
            rates = {}
            for workers in (1, 2):
                times = []
                for r in range(a.repeat):
                    load = os.getloadavg()[0]
                    dt = warm(spec, workers) if kind == "warm" else cold(
                        spec, workers, tmp / f"out-{workers}-{r}")
                    times.append(dt)
                    print(f"  {kind} workers={workers} run {r}: {dt:.2f} s "
                          f"(load average before: {load:.2f})", flush=True)
                rates[workers] = a.points / statistics.median(times)
                print(f"{kind} workers={workers}: median {statistics.median(times):.2f} s, "
                      f"{rates[workers]:.3f} points/s", flush=True)
            print(f"{kind}: 2 workers / 1 worker = {rates[2] / rates[1]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
