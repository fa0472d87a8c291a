"""Compile time, as a user meets it: a first run, a rerun after an edit, the test suite.

Run: python benchmarks/compile.py [--rounds 3] [--only NAME ...] [--pytest] [--profile]
                                  [--passes] [--against OTHER/src]

Each measure runs ``epcsim`` in fresh processes with ``EPCSIM_CACHE_DIR`` set to a temporary
folder (so nothing comes from the user's cache, and the user's cache is left alone), on a
copy of ``src/`` where a measure edits a file, and prints the median of ``--rounds``:

* ``demo_cold``: ``epcsim demo`` with an empty cache, to its summary (seconds of wall time);
* ``replay_cold``: the first ``epcsim replay --policy sgx`` with an empty cache: its
  ``compile_s`` and wall time;
* ``comment_edit``: after a warm run, one comment appended to ``report/html.py`` (a file with
  no compiled code), the replay again: its ``compile_s`` and whether anything compiled;
* ``write_edit``: after a warm ``epcsim demo``, an edit to the driver's ``write``
  (``kernel/encl.py``, ``drv_write``), the demo again (wall seconds);
* ``pytest`` (with ``--pytest``; minutes): ``epcsim demo``, then the README's test command's
  ``pytest`` on 2 workers over the cache the demo left (wall seconds of pytest).

``--profile`` instead lists the functions a cold ``epcsim demo`` compiles, with the seconds
each took (a function compiled into its callers counts in theirs too). ``--passes`` instead
gives the CPU seconds of each of numba's passes in a cold ``warm_up(sgx)`` in one process
(the side process off), each pass without the compiles of callees inside it.

``--against OTHER/src`` (the ``src`` folder of a worktree of another commit) runs
``demo_cold`` and ``replay_cold`` on both trees in each round, in alternating order, and
reports both (``NAME@against``): the machine's speed drifts by tens of percent within an
hour, so a change is judged by pairs measured in the same minutes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
COMPILING = "epcsim: compiling "

# An edit to the driver's write that changes its code, not what it does.
WRITE_EDIT = ("    e = ep_encl_of(ds, oid)\n    ds.ep[oid].desc &= ~np.uint8(EP_BEING_RECLAIMED)\n",
              "    e = ep_encl_of(ds, oid)\n    arg = arg | 0\n"
              "    ds.ep[oid].desc &= ~np.uint8(EP_BEING_RECLAIMED)\n")


def _epcsim(src: Path, cache: Path, *args: str) -> tuple[float, str, str]:
    """Run ``epcsim ARGS`` on the sources in ``src``: (wall seconds, stdout, stderr)."""
    env = dict(os.environ, EPCSIM_CACHE_DIR=str(cache), PYTHONPATH=str(src),
               PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "epcsim", *args], env=env, capture_output=True,
                       text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"epcsim {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return wall, r.stdout, r.stderr


def _src_copy(tmp: Path) -> Path:
    dst = tmp / "src"
    shutil.copytree(ROOT / "src", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _trace(tmp: Path) -> Path:
    """200 000 Zipf accesses over 4096 pages, a quarter writes."""
    import numpy as np

    rng = np.random.default_rng(1)
    t = np.zeros(200_000, np.dtype([("obj", np.uint64), ("write", np.bool_)]))
    t["obj"] = (rng.zipf(1.2, t.shape[0]) - 1) % 4096
    t["write"] = rng.random(t.shape[0]) < 0.25
    path = tmp / "trace.npy"
    np.save(path, t)
    return path


def _replay(src: Path, cache: Path, trace: Path) -> tuple[float, dict[str, Any], bool]:
    wall, out, err = _epcsim(src, cache, "replay", str(trace), "--format", "npy",
                             "--epc-pages", "1024", "--policy", "sgx", "--json")
    return wall, json.loads(out), COMPILING in err


def demo_cold(tmp: Path, src: Path = ROOT / "src") -> dict[str, float]:
    wall, _, _ = _epcsim(src, tmp / "cache", "demo", "--json")
    return {"wall_s": wall}


def replay_cold(tmp: Path, src: Path = ROOT / "src") -> dict[str, float]:
    wall, doc, _ = _replay(src, tmp / "cache", _trace(tmp))
    return {"compile_s": doc["compile_s"], "wall_s": wall}


def comment_edit(tmp: Path) -> dict[str, float]:
    src, trace = _src_copy(tmp), _trace(tmp)
    _replay(src, tmp / "cache", trace)
    with open(src / "epcsim" / "report" / "html.py", "a") as f:
        f.write("# a comment, appended\n")
    wall, doc, compiled = _replay(src, tmp / "cache", trace)
    return {"compile_s": doc["compile_s"], "compiled": float(compiled), "wall_s": wall}


def write_edit(tmp: Path) -> dict[str, float]:
    src = _src_copy(tmp)
    _epcsim(src, tmp / "cache", "demo", "--json")
    path = src / "epcsim" / "kernel" / "encl.py"
    text = path.read_text()
    assert text.count(WRITE_EDIT[0]) >= 1, "drv_write moved: update WRITE_EDIT"
    start = text.index("def drv_write(")
    at = text.index(WRITE_EDIT[0], start)
    path.write_text(text[:at] + WRITE_EDIT[1] + text[at + len(WRITE_EDIT[0]):])
    wall, _, err = _epcsim(src, tmp / "cache", "demo", "--json")
    return {"wall_s": wall, "compiled": float(COMPILING in err)}


def pytest_after_demo(tmp: Path) -> dict[str, float]:
    cache = tmp / "cache"
    _epcsim(ROOT / "src", cache, "demo", "--json")
    env = dict(os.environ, EPCSIM_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2"], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"pytest failed:\n{r.stdout[-3000:]}")
    return {"wall_s": wall}


MEASURES = {"demo_cold": demo_cold, "replay_cold": replay_cold,
            "comment_edit": comment_edit, "write_edit": write_edit}


def profile(top: int) -> None:
    """The functions a cold demo compiles, slowest first."""
    code = f"""
import collections, json, time
from numba.core import event
seconds, times, started = collections.Counter(), collections.Counter(), {{}}
class L(event.Listener):
    def on_start(self, ev):
        started[id(ev.data["dispatcher"]), ev.data["args"]] = time.perf_counter()
    def on_end(self, ev):
        t0 = started.pop((id(ev.data["dispatcher"]), ev.data["args"]))
        d = ev.data["dispatcher"]
        name = getattr(d, "py_func", d).__qualname__
        seconds[name] += time.perf_counter() - t0
        times[name] += 1
event.register("numba:compile", L())
t0 = time.perf_counter()
from epcsim.demo_scenario import run_demo
run_demo()
print(json.dumps({{"total_s": round(time.perf_counter() - t0, 1), "compiles": sum(times.values()),
    "functions": [{{"name": n, "compiles": times[n], "seconds": round(s, 1)}}
                  for n, s in seconds.most_common({top})]}}, indent=2))
"""
    with tempfile.TemporaryDirectory(prefix="epcsim-compile-") as tmp:
        env = dict(os.environ, EPCSIM_CACHE_DIR=tmp, PYTHONPATH=str(ROOT / "src"))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True)
    doc = json.loads(r.stdout)
    doc["machine"] = machine()
    print(json.dumps(doc, indent=2))


def passes(top: int) -> None:
    """CPU seconds of each of numba's compiler passes in a cold ``warm_up(sgx)``, one process,
    no side process: what a change to how rules compile (the inliner, lowering) saves,
    apart from how the work is split between processes. A pass's time excludes the
    compiles of callees that run inside it."""
    code = f"""
import collections, json, time
from numba.core import compiler_machinery as cm
own, runs, stack = collections.Counter(), collections.Counter(), []
run_pass = cm.PassManager._runPass
def timed(self, index, pss, state):
    stack.append(0.0)
    t = time.process_time()
    try:
        return run_pass(self, index, pss, state)
    finally:
        took = time.process_time() - t
        inner = stack.pop()
        own[pss.name()] += took - inner
        runs[pss.name()] += 1
        if stack:
            stack[-1] += took
cm.PassManager._runPass = timed
t0 = time.process_time()
from epcsim.sim.replay import ReplayConfig, warm_up
warm_up(ReplayConfig(policy="sgx", epc_pages=10000))
print(json.dumps({{"cpu_s": round(time.process_time() - t0, 2),
    "passes": [{{"name": n, "runs": runs[n], "cpu_s": round(s, 2)}}
               for n, s in own.most_common({top})]}}, indent=2))
"""
    with tempfile.TemporaryDirectory(prefix="epcsim-compile-") as tmp:
        env = dict(os.environ, EPCSIM_CACHE_DIR=tmp, PYTHONPATH=str(ROOT / "src"),
                   EPCSIM_SIDE_COMPILE="0")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True)
    doc = json.loads(r.stdout)
    doc["machine"] = machine()
    print(json.dumps(doc, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", choices=sorted(MEASURES) + ["pytest"])
    ap.add_argument("--pytest", action="store_true", help="also time the test suite")
    ap.add_argument("--profile", action="store_true", help="list a cold demo's compiles")
    ap.add_argument("--passes", action="store_true",
                    help="CPU of numba's passes in a cold warm_up(sgx), one process")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--against", type=Path, metavar="SRC",
                    help="another tree's src folder (a worktree of another commit): each "
                         "round of demo_cold and replay_cold runs both, alternating which "
                         "goes first (the machine's speed drifts; compare pairs)")
    args = ap.parse_args()
    if args.profile:
        profile(args.top)
        return
    if args.passes:
        passes(args.top)
        return
    names = args.only or list(MEASURES) + (["pytest"] if args.pytest else [])
    fns = dict(MEASURES, pytest=pytest_after_demo)
    results: dict[str, Any] = {}
    for name in names:
        measures = {name: fns[name]}
        if args.against is not None and name in ("demo_cold", "replay_cold"):
            if not (args.against / "epcsim").is_dir():
                raise SystemExit(f"--against: no epcsim package in {args.against}")
            measures[f"{name}@against"] = functools.partial(fns[name], src=args.against)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in measures}
        for i in range(args.rounds):
            order = list(measures) if i % 2 == 0 else list(reversed(measures))
            for key in order:
                with tempfile.TemporaryDirectory(prefix="epcsim-compile-") as tmp:
                    runs[key].append(measures[key](Path(tmp)))
                print(f"{key} round {i + 1}: {runs[key][-1]}", file=sys.stderr, flush=True)
        for key, rounds in runs.items():
            results[key] = {k: round(statistics.median(r[k] for r in rounds), 2)
                            for k in rounds[0]}
            results[key]["rounds"] = rounds
    print(json.dumps({"machine": machine(), "rounds": args.rounds, "median": results},
                     indent=2))


if __name__ == "__main__":
    main()
