"""The summary says how much of the trace the replay held (read once, not twice), apart from
the model's state: ``benchmarks/scale.py`` takes it off the peak RSS."""

from __future__ import annotations

import numpy as np

from epcsim.sim import replay as R
from epcsim.sim.replay import ReplayConfig, replay_chunks
from epcsim.workload.traces import Chunk


def _chunks(n: int, tenants: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    for _ in range(2):
        yield Chunk(rng.integers(0, 300, n).astype(np.uint64),
                     rng.integers(0, tenants, n).astype(np.uint32), np.zeros(n, np.bool_))


class _Counted:
    """A reader that knows its length before it is read, as the file readers do."""

    def __init__(self, n: int, tenants: int) -> None:
        self.n, self.tenants = n, tenants

    def count(self) -> int:
        return 2 * self.n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return _chunks(self.n, self.tenants)


def test_a_kept_trace_is_counted_and_a_reread_one_is_not(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = ReplayConfig(policy="sgx", epc_pages=256)
    # Its length known first: kept when it fits KEEP_BYTES, however long per page.
    s = replay_chunks(cfg, lambda: _Counted(5000, 2)).summary
    assert s["trace_bytes_held"] == 2 * 5000 * (8 + 4 + 1)
    assert s["state_bytes"] > 0
    # Its length unknown: kept while it is at most KEEP_PER_PAGE bytes a simulated page
    # (256 EPC pages and two tenants of up to 300 pages: 13.7 KB) ...
    s = replay_chunks(cfg, lambda: _chunks(200, 2)).summary
    assert s["trace_bytes_held"] == 2 * 200 * 13
    # ... and read twice when longer, so what the scan kept and dropped never outweighed
    # the state; the replay is the same either way.
    long = replay_chunks(cfg, lambda: _chunks(5000, 2)).summary
    assert long["trace_bytes_held"] == 0
    assert R.IdMap.KEEP_PER_PAGE * (256 + 600) < 2 * 5000 * 13
    kept = replay_chunks(cfg, lambda: _Counted(5000, 2)).summary
    assert (long["faults"], long["ewb"]) == (kept["faults"], kept["ewb"])
    monkeypatch.setattr(R, "KEEP_BYTES", 1000)       # too large to keep: read twice
    s = replay_chunks(cfg, lambda: _Counted(5000, 2)).summary
    assert s["trace_bytes_held"] == 0


def test_ids_are_pages_while_the_tenants_largest_ids_sum_below_the_limit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each tenant's ids alone fit, but identity would hold records for all of them: over
    the limit in sum, the hash map numbers the pages the trace touches."""
    cfg = ReplayConfig(policy="sgx", epc_pages=256)
    monkeypatch.setattr(R.IdMap, "IDENTITY_LIMIT", 1000)
    s = replay_chunks(cfg, lambda: _chunks(2000, 2)).summary   # ids < 300, 2 tenants
    assert s["id_map"] == "identity"
    s = replay_chunks(cfg, lambda: _chunks(2000, 4)).summary   # 4 x 300 > 1000
    assert s["id_map"] == "hash"
    # Footprints that add up to the limit exactly still fit it.
    monkeypatch.setattr(R.IdMap, "IDENTITY_LIMIT", 600)
    s = replay_chunks(cfg, lambda: _chunks(2000, 2)).summary
    assert s["id_map"] == "identity" and s["footprint_pages"] == 600
    assert s["footprint_pages"] <= 4 * 300
