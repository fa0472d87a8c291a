"""Replay speed against libCacheSim, measured in one run on the same files.

Run: python benchmarks/replay.py [--objects 100000] [--requests 5000000] [--cache 10000]
                                 [--repeat 5] [--traces zipf,uniform] [--alpha 1.0]

Two traces, each one oracleGeneral file, a cache of 10 000 objects:

* ``zipf`` (low miss): the usual cache-study workload, Zipf alpha = 1.0 (``--alpha``) over
  100 000 objects, 5 000 000 requests;
* ``uniform`` (high miss): uniform over ten times the cache (100 000 objects), 5 000 000
  requests: nine accesses in ten fault.

For each engine and trace the median of --repeat interleaved rounds of requests per second,
where epcsim's time runs from starting to read the trace to the end of the simulation (its
wall_s) and libcachesim's is its ``LRU.process_trace`` call on a fresh reader; compilation
happens before timing. Besides the ratio of the medians, each round's own ratio
(``round_ratios``: the engines of one round run seconds apart), libcachesim's slowest and
fastest round, and for ``sgx`` the simulated faults per second (faults over replay_s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import libcachesim as lcs
from _machine import machine

from epcsim.sim.replay import ReplayConfig, replay_chunks
from epcsim.workload.generators import uniform, zipf
from epcsim.workload.traces import open_trace, write_oracle_general


def libcachesim_rps(path: str, cache: int, policy: str) -> tuple[float, float]:
    reader = lcs.TraceReader(path, trace_type=lcs.TraceType.ORACLE_GENERAL_TRACE,
                             reader_init_params=lcs.ReaderInitParam(ignore_obj_size=True))
    c = {"lru": lcs.LRU, "fifo": lcs.FIFO, "clock": lcs.Clock}[policy](cache)
    t = time.perf_counter()
    miss, _ = c.process_trace(reader)
    dt = time.perf_counter() - t
    return reader.get_num_of_req() / dt if hasattr(reader, "get_num_of_req") else 0.0, miss


def epcsim_run(path: str, cache: int, policy: str) -> dict:  # type: ignore[type-arg]
    cfg = ReplayConfig(policy=policy, epc_pages=cache)
    res = replay_chunks(cfg, lambda: open_trace(path, "oracleGeneral"))
    return res.summary


def measure(path: str, cache: int, repeat: int, n: int, n_objects: int) -> dict[str, object]:
    """Interleaved rounds of libcachesim's LRU and epcsim's lru and sgx on one file."""
    out: dict[str, object] = {}
    # Compile on a small EPC; still room for the VA pages of every object (one per 512).
    for policy in ("lru", "sgx"):
        epcsim_run(path, max(1000, n_objects // 64), policy)
    runs: dict[str, list[dict]] = {"lru": [], "sgx": []}  # type: ignore[type-arg]
    lru = []
    for _ in range(repeat):
        reader = lcs.TraceReader(path, trace_type=lcs.TraceType.ORACLE_GENERAL_TRACE,
                                 reader_init_params=lcs.ReaderInitParam(ignore_obj_size=True))
        peer_cache = lcs.LRU(cache)
        t = time.perf_counter()
        miss, _ = peer_cache.process_trace(reader)
        lru.append((n / (time.perf_counter() - t), miss))
        for policy in ("lru", "sgx"):
            runs[policy].append(epcsim_run(path, cache, policy))
    for policy in ("lru", "sgx"):
        rs = runs[policy]
        d: dict[str, object] = {
            "requests_per_s": statistics.median(r["requests_per_s"] for r in rs),
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "replay_s": statistics.median(r["replay_s"] for r in rs),
            "miss_ratio": rs[0]["miss_ratio"], "compile_s": rs[0]["compile_s"],
        }
        if policy == "sgx":
            d["faults"] = rs[0]["faults"]
            d["faults_per_s"] = statistics.median(r["faults"] / r["replay_s"] for r in rs)
        out[f"epcsim_{policy}"] = d
    peer_rates = [r for r, _ in lru]
    out["libcachesim_lru"] = {"requests_per_s": statistics.median(peer_rates),
                              "requests_per_s_min": min(peer_rates),
                              "requests_per_s_max": max(peer_rates),
                              "miss_ratio": lru[0][1]}
    peer = statistics.median(peer_rates)
    for policy in ("lru", "sgx"):
        d = out[f"epcsim_{policy}"]  # type: ignore[assignment]
        d["ratio_vs_libcachesim_lru"] = d["requests_per_s"] / peer  # type: ignore[operator]
        # Each round's engines ran seconds apart: its own ratio cancels the host's drift
        # between rounds, and the spread shows how much of the ratio is the peer's noise.
        paired = [r["requests_per_s"] / p for r, p in zip(runs[policy], peer_rates, strict=True)]
        d["round_ratios"] = paired
        d["round_ratio_median"] = statistics.median(paired)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=5_000_000)
    ap.add_argument("--cache", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--traces", default="zipf,uniform")
    ap.add_argument("--alpha", type=float, default=1.0, help="the Zipf trace's skew")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = run(a, tmp)
    print(json.dumps(out, indent=2))


def run(a: argparse.Namespace, tmp: str) -> dict[str, object]:
    out: dict[str, object] = {"machine": machine(), "requests": a.requests, "cache": a.cache}
    for name in a.traces.split(","):
        path = os.path.join(tmp, f"{name}.oracleGeneral")
        if name == "zipf":
            objects = a.objects
            write_oracle_general(path, zipf(objects, a.requests, alpha=a.alpha, seed=1))
        elif name == "uniform":
            objects = 10 * a.cache
            write_oracle_general(path, uniform(objects, a.requests, seed=1))
        else:
            raise SystemExit(f"unknown trace {name!r}: zipf or uniform")
        out[name] = {"objects": objects,
                     **measure(path, a.cache, a.repeat, a.requests, objects)}
        print(f"{name}: done", file=sys.stderr, flush=True)
        os.unlink(path)
    return out


if __name__ == "__main__":
    main()
