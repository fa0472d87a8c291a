"""A seeded random workload on the manager; prints its event sequence as JSON.

Run as a script so a test can compare the compiled path with ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from rig import Rig


def run(seed: int, steps: int = 600) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    r = Rig(pages=160, n_enclaves=3, events=100_000)
    held: list[int] = []
    for _ in range(steps):
        op = rng.integers(0, 10)
        if op < 5:
            p = r.owner.add(r.mgr, int(rng.integers(0, 3)), bool(rng.integers(0, 4)))
            if p >= 0:
                held.append(p)
        elif op < 7 and held:
            p = held.pop(int(rng.integers(0, len(held))))
            if r.mgr.where(p) in (1, 3) and r.mgr.unmark_reclaimable(p) == 0:
                r.mgr.free(p)
        elif op < 9 and held:
            p = held[int(rng.integers(0, len(held)))]
            r.owner.state.accessed[p] = 1
            r.mgr.touch(p)
        else:
            r.mgr.run_ksgxd()
        held = [p for p in held if r.mgr.where(p) != 0]
    r.mgr.check()
    return {"events": r.mgr.events(), "counters": r.mgr.counters()}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]))))
