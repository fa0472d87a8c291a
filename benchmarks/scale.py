"""Scale: peak memory per simulated page over a matrix of trace shapes.

Run: python benchmarks/scale.py [--epc 1Mi,4Mi,16Mi] [--footprint 0.5,1,2,8]
                                [--requests 1,4] [--touch uniform,zipf] [--file]
     python benchmarks/scale.py --cell EPC_PAGES FOOTPRINT_PAGES REQUESTS TOUCH [--file PATH]

Each cell replays one enclave (``--policy sgx``) whose pages are first touched once in
order (every page is added with EAUG; past the EPC, ksgxd writes older pages back), then
touched ``requests x footprint`` more times, uniformly or by Zipf (alpha 1.0), generated in
chunks so the trace is never held; with ``--file`` the parent writes each cell's trace to
an oracleGeneral file first (in chunks, a temporary directory) and the cell replays that
file, as ``epcsim replay`` does. The replay's configuration is the default one (its fault
log included) but for the EPC size. A cell runs in a process of its own and reports:

* ``rss_per_page``: peak RSS (getrusage) less the peak RSS of the same process after a
  tiny replay (numba, the compiled code, the interpreter) and less the trace when the
  replay holds it (``trace_bytes_held``: a trace under 1 GiB is kept after the footprint
  scan, read once instead of twice), per simulated page (EPC pages plus enclave pages);
* ``state_per_page``: the summary's ``state_bytes`` per simulated page;
* the replay's time, faults and requests per second.

The matrix prints one JSON object with the cells sorted worst first (by ``rss_per_page``).
The goal (BENCHMARKS.md): at most 32 bytes per simulated page in the worst cell.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from _machine import machine

from epcsim.sim.replay import R_FIRST, ReplayConfig, replay_chunks
from epcsim.workload.traces import _OG_RECORD, Chunk, open_trace

# Requests per generated chunk: 0.8 MB of trace at a time, and about 3 MB of the
# generator's temporaries (the Zipf draw's floats). A trace longer than the replay keeps is
# generated again during the replay, on the thread that reads ahead, so these constants
# stand beside the model's state at its peak: with chunks of 2^18 requests (3.4 MB, 10 MB of
# temporaries) they added 4-7 bytes per page to the smallest cells (1.5-3 Mi pages).
STEP = 1 << 16



def _pages(text: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, mult in units.items():
        if text.endswith(suffix):
            return int(float(text[:-2]) * mult)
    return int(text)


def _chunks(footprint: int, requests: int, touch: str):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    for start in range(0, footprint, STEP):
        obj = np.arange(start, min(start + STEP, footprint), dtype=np.uint64)
        yield Chunk(obj, np.full(len(obj), 0, np.uint32), np.full(len(obj), False))
    for start in range(0, requests, STEP):
        n = min(STEP, requests - start)
        if touch == "zipf":
            # Zipf with alpha 1 by inverse transform: rank = N**u has density 1/rank; a
            # page per rank by a fixed permutation. No table over the footprint is held.
            u = rng.random(n)
            rank = np.minimum(np.exp(u * np.log(footprint)).astype(np.int64), footprint - 1)
            obj = ((rank * 2654435761) % footprint).astype(np.uint64)
        else:
            obj = rng.integers(0, footprint, n).astype(np.uint64)
        yield Chunk(obj, np.full(n, 0, np.uint32), np.full(n, False))


def write_cell(path: str, footprint: int, requests: int, touch: str) -> None:
    """The cell's trace as an oracleGeneral file, a chunk at a time (no next-access times:
    -1, which the replay does not read)."""
    with open(path, "wb") as f:
        for ch in _chunks(footprint, requests, touch):
            rec = np.zeros(len(ch.obj), _OG_RECORD)
            rec["obj_id"] = ch.obj
            rec["obj_size"] = 4096
            rec["next_access_vtime"] = -1
            f.write(rec.tobytes())


def _replay(epc: int, footprint: int, requests: int, touch: str,
            path: str | None = None) -> dict[str, float]:
    t = time.perf_counter()
    if path is None:
        def factory():  # type: ignore[no-untyped-def]
            return _chunks(footprint, requests, touch)
    else:
        def factory():  # type: ignore[no-untyped-def]
            return open_trace(path, "oracleGeneral")
    res = replay_chunks(ReplayConfig(policy="sgx", epc_pages=epc), factory)
    s = res.summary
    return {"faults": s["faults"], "requests": s["requests"], "replay_s": s["replay_s"],
            "total_s": time.perf_counter() - t, "requests_per_s": s["requests_per_s"],
            "state_bytes": s["state_bytes"], "trace_bytes_held": s["trace_bytes_held"]}


def cell(epc: int, footprint: int, requests: int, touch: str,
         path: str | None = None) -> dict[str, object]:
    """One cell, in this process: a tiny replay first (the baseline, from a file of its
    own when the cell replays ``path``), then the cell."""
    if path is None:
        _replay(256, 512, 1024, touch)
    else:
        tiny = path + ".tiny"
        write_cell(tiny, 512, 1024, touch)
        _replay(256, 512, 1024, touch, tiny)
        os.unlink(tiny)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    r = _replay(epc, footprint, requests, touch, path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pages = epc + footprint + R_FIRST
    held = int(r["trace_bytes_held"])
    return {"epc_pages": epc, "footprint_pages": footprint, "requests": requests,
            "touch": touch, "from_file": path is not None, "peak_rss_gib": peak / (1 << 30),
            "rss_per_page": (peak - base - held) / pages,
            "trace_held_per_page": held / pages,
            "state_per_page": r["state_bytes"] / pages, **r}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", nargs=4, metavar=("EPC", "FOOTPRINT", "REQUESTS", "TOUCH"))
    ap.add_argument("--epc", default="1Mi,4Mi,16Mi")
    ap.add_argument("--footprint", default="0.5,1,2,8", help="times the EPC")
    ap.add_argument("--requests", default="1,4", help="times the footprint")
    ap.add_argument("--touch", default="uniform,zipf")
    ap.add_argument("--file", nargs="?", const="", default=None, metavar="PATH",
                    help="replay each cell from an oracleGeneral file (with --cell: that "
                    "file, already written)")
    a = ap.parse_args()
    if a.cell:
        e, f, r, touch = a.cell
        print(json.dumps(cell(int(e), int(f), int(r), touch, a.file or None)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        tmp = scratch if a.file is not None else None
        cells = _matrix(a, tmp)
    cells.sort(key=lambda c: -float(c["rss_per_page"]))
    print(json.dumps({"machine": machine(), "cells": cells}, indent=2))


def _matrix(a: argparse.Namespace, tmp: str | None) -> list[dict]:  # type: ignore[type-arg]
    """Each cell in a process of its own; with ``tmp``, from a file written there first
    (a file of up to 15 GB, removed with the folder even when the run is stopped)."""
    cells = []
    for epc in (_pages(x) for x in a.epc.split(",")):
        for mult in (float(x) for x in a.footprint.split(",")):
            footprint = int(epc * mult)
            for rmult in (float(x) for x in a.requests.split(",")):
                for touch in a.touch.split(","):
                    cmd = [sys.executable, __file__, "--cell", str(epc), str(footprint),
                           str(int(footprint * rmult)), touch]
                    if tmp is not None:
                        path = os.path.join(tmp, "cell.oracleGeneral")
                        write_cell(path, footprint, int(footprint * rmult), touch)
                        cmd += ["--file", path]
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if tmp is not None:
                        os.unlink(path)
                    if out.returncode != 0:
                        print(f"cell {cmd[3:]} failed: {out.stderr.strip()[-300:]}",
                              file=sys.stderr)
                        continue
                    c = json.loads(out.stdout.strip().splitlines()[-1])
                    print(f"cell epc={epc} footprint={footprint} x{rmult} {touch}: "
                          f"{c['rss_per_page']:.1f} B/page RSS, "
                          f"{c['state_per_page']:.1f} B/page state", file=sys.stderr,
                          flush=True)
                    cells.append(c)
    return cells


if __name__ == "__main__":
    main()
