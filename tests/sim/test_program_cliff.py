"""The paging cliff of real programs: the shapes docs/validation.md relies on.

No page is written back while a program fits the EPC, paging starts at the EPC's size, and
past it the slowdown grows with the footprint (SGXGauge's abrupt fall-off; the knee a
little below the EPC that the out-of-tree driver's users report).
"""

from __future__ import annotations

import pytest

from epcsim.sim.replay import ReplayConfig, replay_pages
from epcsim.workload.programs import accesses

# pages: 4 MiB, so that the watermarks (ksgxd keeps 64 pages free) sit above 0.9 of it
EPC = 1024
N = 150_000



def _run(name: str, ratio: float) -> dict:  # type: ignore[type-arg]
    pages, writes = accesses(name, int(ratio * EPC) * 4096, N, seed=1)
    return replay_pages(ReplayConfig(policy="sgx", epc_pages=EPC), pages, writes).summary


@pytest.mark.parametrize("name", ["btree", "kvstore"])
def test_cliff_shape(name: str) -> None:
    s = {r: _run(name, r) for r in (0.5, 0.9, 1.25, 2.0, 4.0)}
    # fits: every page is added once (EAUG) and none is written back or reloaded
    for r in (0.5, 0.9):
        assert s[r]["ewb"] == 0 and s[r]["eldu"] == 0, (name, r)
        # what is left is the first touch of each page (EAUG), spread over the run
        assert s[r]["slowdown"] < 2.0
    # the knee: past the EPC, pages go out and come back
    assert s[1.25]["eldu"] > 0.01 * N
    assert s[1.25]["slowdown"] - s[0.9]["slowdown"] > 5 * (s[0.9]["slowdown"]
                                                            - s[0.5]["slowdown"])
    # and the further past, the slower
    assert s[1.25]["slowdown"] < s[2.0]["slowdown"] < s[4.0]["slowdown"]
    assert s[4.0]["slowdown"] > 3 * s[0.9]["slowdown"]
