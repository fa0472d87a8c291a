"""What a first run compiles: numba's compile time per function during ``epcsim demo``.

Run: python benchmarks/compile.py [--top 25]

Sets ``NUMBA_CACHE_DIR`` to an empty temporary folder (so nothing is loaded from a cache,
and the project's caches are left alone), listens to numba's compile events while the
demo's scenario runs, and prints the seconds each function took to compile. A function
compiled into its callers counts in theirs too, so the column does not add up to the total.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from typing import Any

from _machine import machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=25, help="how many functions to list")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="epcsim-numba-") as cache:
        # numba reads the variable when it is first imported, so set it before any import.
        os.environ["NUMBA_CACHE_DIR"] = cache
        from numba.core import event

        seconds: collections.Counter[str] = collections.Counter()
        times: collections.Counter[str] = collections.Counter()

        class Listener(event.Listener):
            def __init__(self) -> None:
                self.started: dict[tuple[int, Any], float] = {}

            def on_start(self, ev: Any) -> None:
                self.started[id(ev.data["dispatcher"]), ev.data["args"]] = time.perf_counter()

            def on_end(self, ev: Any) -> None:
                t0 = self.started.pop((id(ev.data["dispatcher"]), ev.data["args"]))
                d = ev.data["dispatcher"]
                name = getattr(d, "py_func", d).__qualname__
                seconds[name] += time.perf_counter() - t0
                times[name] += 1

        event.register("numba:compile", Listener())
        t0 = time.perf_counter()
        from epcsim.demo_scenario import run_demo

        run_demo()
        total = time.perf_counter() - t0
    print(json.dumps({
        "machine": machine(),
        "total_s": round(total, 1),
        "functions": [{"name": n, "compiles": times[n], "seconds": round(s, 1)}
                      for n, s in seconds.most_common(args.top)],
    }, indent=2))


if __name__ == "__main__":
    main()
