"""The one-page-per-miss policies against plain reference implementations.

With watermarks at 0 and a batch of 1, every miss on a full EPC reclaims exactly one page,
so the manager behaves as a cache of its reclaimable pages. The references below are
written from the policies' definitions (libCacheSim's semantics: LRU moves on hit, FIFO
never does, CLOCK has one reference bit set on hit and gives the head one second chance).
"""

from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np
import pytest
from rig import Rig


def ref_misses(policy: str, trace: list[int], capacity: int) -> int:
    misses = 0
    if policy in ("lru", "fifo"):
        cache: OrderedDict[int, None] = OrderedDict()
        for x in trace:
            if x in cache:
                if policy == "lru":
                    cache.move_to_end(x)
                continue
            misses += 1
            if len(cache) >= capacity:
                cache.popitem(last=False)
            cache[x] = None
        return misses
    q: deque[int] = deque()
    ref: dict[int, bool] = {}
    for x in trace:
        if x in ref:
            ref[x] = True
            continue
        misses += 1
        if len(q) >= capacity:
            while True:
                y = q.popleft()
                if ref[y]:
                    ref[y] = False
                    q.append(y)
                else:
                    del ref[y]
                    break
        q.append(x)
        ref[x] = False
    return misses


def model_misses(policy: str, trace: list[int], pages: int) -> tuple[int, int]:
    """Replay ``trace`` (virtual page numbers) through the manager; returns (misses, capacity)."""
    r = Rig(pages=pages, n_enclaves=1, low=0, high=0, batch=1, policy=policy)
    capacity = r.mgr.sgx_nr_free_pages
    resident: dict[int, int] = {}   # vpn -> EPC page
    holder: dict[int, int] = {}     # EPC page -> vpn
    misses = 0
    for vpn in trace:
        page = resident.get(vpn)
        if page is not None:
            r.mgr.touch(page)
            continue
        misses += 1
        page = r.owner.add(r.mgr, 0, reclaim=True)
        assert page >= 0
        victim = holder.pop(page, None)
        if victim is not None:
            del resident[victim]
        resident[vpn] = page
        holder[page] = vpn
        assert r.mgr.counters()["written"] == max(0, misses - capacity)
    r.mgr.check()
    return misses, capacity


@pytest.mark.parametrize("policy", ["lru", "fifo", "clock"])
@pytest.mark.parametrize("seed", [1, 2])
def test_one_page_per_miss_policies_match_their_definitions(policy: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # a skewed trace over 3x the capacity, so the policies disagree with each other
    trace = [int(x) for x in rng.zipf(1.3, 3000) % 150]
    misses, capacity = model_misses(policy, trace, pages=52)
    assert misses == ref_misses(policy, trace, capacity)


def test_policies_differ_on_the_same_trace() -> None:
    rng = np.random.default_rng(7)
    trace = [int(x) for x in rng.zipf(1.3, 2000) % 120]
    results = {p: model_misses(p, trace, pages=42)[0] for p in ("lru", "fifo", "clock")}
    assert len(set(results.values())) > 1
