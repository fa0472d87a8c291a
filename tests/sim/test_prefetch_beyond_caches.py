"""Prefetches change no result, also where the tables outgrow the caches.

Over 65 536 EPC pages the engine issues more prefetches (EPCM entries, the VA page's entry
further ahead) and the reclaimer's hint runs further: the same trace replayed by the default
engine and by one that prefetches nothing (``ahead_by=0``) must fault, evict and time alike.
"""

from __future__ import annotations

import numpy as np

from epcsim.kernel.encl import EPCM_PREFETCH_FROM
from epcsim.kernel.instance import KIND_DRIVER
from epcsim.kernel.main import WALK_PREFETCH_FROM
from epcsim.sim.replay import Replay, ReplayConfig, engine_args, make_engine

EPC = max(EPCM_PREFETCH_FROM, WALK_PREFETCH_FROM) + 4_000
PAGES = 2 * EPC


def _replay(prefetching: bool, tenants: np.ndarray, pages: np.ndarray,
            writes: np.ndarray) -> Replay:
    rp = Replay(ReplayConfig(policy="sgx", epc_pages=EPC), np.array([PAGES], np.int64), [0])
    if not prefetching:
        rp.engine = make_engine(rp.mgr.fns, KIND_DRIVER, True, ahead_by=0)
    assert rp.run_engine(tenants, pages, writes, 0) == -1
    return rp


def test_prefetching_beyond_the_caches_changes_no_result() -> None:
    rng = np.random.default_rng(5)
    obj = np.concatenate([np.arange(PAGES), rng.integers(0, PAGES, 60_000),
                          rng.integers(0, 4_000, 20_000)])
    args = engine_args(np.zeros(obj.shape[0], np.uint32), obj, rng.random(obj.shape[0]) < 0.3)
    fast = _replay(True, *args)
    plain = _replay(False, *args)
    # The tables are past the sizes from which the larger prefetches are issued.
    assert fast.cpu.st.epcm.shape[0] >= EPCM_PREFETCH_FROM
    assert np.array_equal(fast.rs.v, plain.rs.v)          # counters and clocks
    assert np.array_equal(fast.rs.t, plain.rs.t)
    assert fast.mgr.counters() == plain.mgr.counters()
    assert np.array_equal(fast.mgr.ms.links, plain.mgr.ms.links)  # the LRU's order
    # Not vacuous: the replay paged, and ksgxd's batches walked the LRU.
    c = fast.mgr.counters()
    assert c["ewb"] > 50_000 and c["ksgxd_batches"] > 1_000
