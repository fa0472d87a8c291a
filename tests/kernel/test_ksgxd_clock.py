"""ksgxd on its own clock: the pages it frees are free when the caller's clock passes them.

The manager keeps the calling thread's clock (``mgr.now``) and ksgxd's (``ksgxd_clock``); a
woken ksgxd works from the moment it was woken, each EBLOCK, ETRACK, IPI and EWB taking its
cycles on its own clock, and each page it writes back becomes free at the moment its EWB
ends there (docs/design.md, "ksgxd's clock").
"""

from __future__ import annotations

import numpy as np
import pytest
from rig import Rig

from epcsim.kernel.main import EBUSY, W_PENDING

COSTS = {"eblock": 1000, "etrack": 2000, "ewb": 10000, "ipi": 3000}


def _woken(**kw: object) -> Rig:
    """A rig whose free pages just fell below the low watermark at time 0."""
    r = Rig(pages=256, **kw)
    r.mgr.set_ksgxd_costs(**COSTS)
    r.fill(0, r.mgr.sgx_nr_free_pages - 31)
    assert r.mgr.ksgxd_awake and r.mgr.now == 0
    return r


def test_pages_ksgxd_frees_are_pending_until_the_callers_clock_passes_them() -> None:
    r = _woken()
    free = r.mgr.sgx_nr_free_pages
    r.mgr.run_ksgxd()
    c = r.mgr.counters()
    # Its work is on its own clock, and nothing it freed is free at the caller's now.
    assert c["ksgxd_cycles"] == r.mgr.ksgxd_clock > 0
    assert c["ksgxd_cycles"] == (c["blocked"] * COSTS["eblock"] + c["ewb"] * COSTS["ewb"]
                                 + c["etrack"] * COSTS["etrack"]
                                 + (c["ipi"] + c["tlb_shootdowns"]) * COSTS["ipi"])
    assert r.mgr.sgx_nr_free_pages == free
    assert r.mgr.pending_pages == c["written"] >= 64 - free
    assert r.mgr.census()["pending"] == r.mgr.pending_pages
    r.mgr.check()
    # Once the caller's clock passes ksgxd's, the next allocation finds them all free.
    r.mgr.now = r.mgr.ksgxd_clock
    assert r.mgr.alloc(0, 0, False) >= 0
    assert r.mgr.pending_pages == 0
    assert r.mgr.sgx_nr_free_pages == free + c["written"] - 1
    r.mgr.check()


def test_a_fault_that_finds_nothing_free_gets_ebusy_and_waits_for_ksgxds_first_page() -> None:
    r = _woken()
    r.mgr.run_ksgxd()
    r.fill(0, r.mgr.sgx_nr_free_pages, reclaim=False)     # the visible free pages, gone
    pending = r.mgr.pending_pages
    assert r.mgr.alloc(0, 0, False) == -EBUSY
    # The thread's clock moved to the end of ksgxd's first EWB (its re-faults spun until
    # then): that page, and only the pages freed by then, are free now.
    first = r.mgr.now
    assert 0 < first < r.mgr.ksgxd_clock
    assert r.mgr.counters()["wait_cycles"] == first
    assert 0 < r.mgr.sgx_nr_free_pages < pending
    assert r.mgr.pending_pages == pending - r.mgr.sgx_nr_free_pages
    assert r.mgr.alloc(0, 0, False) >= 0                 # the retried fault succeeds
    r.mgr.check()


def test_a_caller_that_may_reclaim_waits_for_ksgxd_instead_of_reclaiming_beside_it() -> None:
    r = _woken()
    r.mgr.run_ksgxd()
    r.fill(0, r.mgr.sgx_nr_free_pages, reclaim=False)
    before = r.mgr.counters()
    assert r.mgr.alloc(0, 0, True) >= 0
    after = r.mgr.counters()
    assert after["direct_reclaims"] == before["direct_reclaims"]
    assert after["wait_cycles"] > 0
    r.mgr.check()


def test_ksgxd_woken_while_its_clock_runs_ahead_goes_on_from_there() -> None:
    r = _woken()
    r.mgr.run_ksgxd()
    end = r.mgr.ksgxd_clock
    wakeups = r.mgr.counters()["ksgxd_wakeups"]
    r.fill(0, r.mgr.sgx_nr_free_pages, reclaim=False)     # below low again, at now 0
    assert r.mgr.ksgxd_awake
    # Still busy on its own CPU at the caller's now: a wake-up of a running thread.
    assert r.mgr.counters()["ksgxd_wakeups"] == wakeups
    r.mgr.run_ksgxd()
    assert r.mgr.ksgxd_clock >= end
    r.mgr.check()


def test_instant_mode_frees_at_once() -> None:
    r = _woken(ksgxd="instant")
    free = r.mgr.sgx_nr_free_pages
    r.mgr.run_ksgxd()
    assert r.mgr.pending_pages == 0 and r.mgr.sgx_nr_free_pages >= 64 > free
    assert r.mgr.ksgxd_clock > 0           # it still reports its busy time
    assert (r.mgr.ms.where == W_PENDING).sum() == 0
    r.mgr.check()


def test_an_unknown_ksgxd_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="ksgxd mode"):
        Rig(pages=64, ksgxd="eager")


def test_pages_freed_in_one_splice_leave_the_lists_as_freed_one_by_one() -> None:
    # With the event log on, pending pages reach the free list one by one; off (a replay),
    # a record's pages in one splice. Both leave the same lists, links and records.
    rigs = [Rig(pages=256, events=100_000), Rig(pages=256)]
    for r in rigs:
        r.mgr.set_ksgxd_costs(**COSTS)
        r.fill(1, r.mgr.sgx_nr_free_pages - 31)     # enclave 1: the pages' owner id is 1
        r.mgr.run_ksgxd()
        assert r.mgr.pending_pages > 8
        r.mgr.now = r.mgr.ksgxd_clock // 2          # some of them first
        assert r.mgr.alloc(0, 0, False) >= 0
        assert 0 < r.mgr.pending_pages
        r.mgr.now = r.mgr.ksgxd_clock
        assert r.mgr.alloc(0, 0, False) >= 0
        assert r.mgr.pending_pages == 0
        r.mgr.check()
    logged, spliced = (r.mgr.ms for r in rigs)
    for name in ("links", "lists", "pages", "pend", "cnt"):
        assert np.array_equal(getattr(logged, name), getattr(spliced, name)), name
