"""Replays under ``perf record`` with names for numba's compiled code.

Run:
    perf record -F 4000 -o perf.data python benchmarks/perfmap.py [--policy sgx] [--repeat 6]
                                                                  [--trace zipf|uniform]
                                                                  [--alpha 1.0]
    perf report -i perf.data --no-children --sort sym

numba's code lives in anonymous memory that perf cannot name. After the engine is loaded
(warm cache) this writes ``/tmp/perf-<pid>.map``, which ``perf report`` reads: the address of
every compiled function found in the process, named by its Python qualified name. The
engine's callees are compiled into its own object code, so their names come from the object
code numba keeps in epcsim's cache files (``nm`` of the ELF image in each ``.nbc``); each is
then looked up in every loaded library. A function's extent is taken up to the next known
address. ``--objdump DIR`` also writes there the machine code of each named function as it
sits in memory (``<address>.bin``, with ``index.txt`` naming them), for
``objdump -D -b binary -m i386:x86-64 --adjust-vma=0x<address> DIR/<address>.bin``: the
sampled addresses are then the disassembly's own (the cache may hold other versions of a
function, and the loaded one is the one that ran).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from epcsim.jitcache import code_dir
from epcsim.sim.replay import ReplayConfig, replay_chunks
from epcsim.workload.generators import uniform, zipf
from epcsim.workload.traces import open_trace, write_oracle_general

_ELF = b"\x7fELF"


def cached_objects() -> list[bytes]:
    """The object code in every numba cache file of epcsim's (:mod:`epcsim.jitcache`)."""
    out = []
    for f in code_dir().rglob("*.nbc"):
        data = f.read_bytes()
        i = data.find(_ELF)
        if i >= 0:
            out.append(data[i:])
    return out


def short_name(mangled: str) -> str:
    """``loop_over.<locals>.reclaim_batches`` from numba's mangled ``_ZN<len><name>...``."""
    i = mangled.find("_ZN")
    if i < 0:
        return mangled
    i += 3
    parts = []
    while i < len(mangled) and mangled[i].isdigit():
        j = i
        while mangled[j].isdigit():
            j += 1
        n = int(mangled[i:j])
        parts.append(mangled[j:j + n].replace("_3clocals_3e", "<locals>"))
        i = j + n
    # The first parts are the module path; keep the function's own qualified name.
    return ".".join(parts[-3:]) if parts else mangled


def function_names(objects: list[bytes]) -> dict[str, str]:
    names: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, obj in enumerate(objects):
            p = os.path.join(tmp, f"{k}.o")
            Path(p).write_bytes(obj)
            nm = subprocess.run(["nm", "--defined-only", p], capture_output=True, text=True)
            for line in nm.stdout.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in "tTW":
                    names.setdefault(parts[2], short_name(parts[2]))
    return names


def mapped_regions() -> list[tuple[int, int]]:
    """The address ranges mapped in this process (``/proc/self/maps``)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = line.split()[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def write_map(names: dict[str, str], dump: str | None) -> int:
    from numba.core.dispatcher import Dispatcher

    libs = {}
    for o in gc.get_objects():
        if isinstance(o, Dispatcher):
            for cres in o.overloads.values():
                libs[id(cres.library)] = cres.library
                names[cres.fndesc.llvm_func_name] = o.py_func.__qualname__
    found: set[tuple[int, str]] = set()
    for lib in libs.values():
        for mangled, name in names.items():
            try:
                addr = lib.get_pointer_to_function(mangled)
            except Exception:   # not in this library
                continue
            if addr:
                found.add((addr, name))
    rows = sorted(found)
    regions = mapped_regions()
    lines = []
    for i, (addr, name) in enumerate(rows):
        size = min(rows[i + 1][0] - addr if i + 1 < len(rows) else 1 << 16, 1 << 20)
        lines.append(f"{addr:x} {size:x} {name}\n")
        if dump:
            # Up to the next function may cross into memory that is not mapped.
            end = next((hi for lo, hi in regions if lo <= addr < hi), addr)
            Path(dump, f"{addr:x}.bin").write_bytes(ctypes.string_at(addr, min(size, end - addr)))
    Path(f"/tmp/perf-{os.getpid()}.map").write_text("".join(lines))
    if dump:
        Path(dump, "index.txt").write_text("".join(lines))   # the map, beside the code
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default="sgx", choices=["sgx", "lru", "fifo", "clock"])
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=5_000_000)
    ap.add_argument("--cache", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--objdump", metavar="DIR", default=None)
    ap.add_argument("--trace", default="zipf", choices=["zipf", "uniform"],
                    help="the trace of benchmarks/replay.py to replay (uniform: high miss)")
    ap.add_argument("--alpha", type=float, default=1.0, help="the Zipf trace's skew")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, f"{a.trace}.oracleGeneral")
    write_oracle_general(path, zipf(a.objects, a.requests, alpha=a.alpha, seed=1)
                         if a.trace == "zipf" else uniform(a.objects, a.requests, seed=1))

    def run() -> dict:  # type: ignore[type-arg]
        cfg = ReplayConfig(policy=a.policy, epc_pages=a.cache)
        return replay_chunks(cfg, lambda: open_trace(path, "oracleGeneral")).summary

    run()   # compile or load, so that the map sees the engine
    if a.objdump:
        os.makedirs(a.objdump, exist_ok=True)
    n = write_map(function_names(cached_objects()), a.objdump)
    print(f"{n} compiled functions named in /tmp/perf-{os.getpid()}.map", file=sys.stderr)
    walls = [run()["replay_s"] for _ in range(a.repeat)]
    print(f"replay_s median {statistics.median(walls):.3f} of {a.repeat}", file=sys.stderr)


if __name__ == "__main__":
    main()
