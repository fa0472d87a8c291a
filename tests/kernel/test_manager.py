"""The EPC manager: allocation outcomes, watermarks, freeing, NUMA, the owner protocol."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest
from rig import Rig

from epcsim.arch import PageType, Secs, secinfo_flags
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor
from epcsim.jit import njit
from epcsim.kernel.main import (
    EBUSY,
    ENOMEM,
    HINT_AHEAD,
    HINT_AHEAD_FAR,
    P_EV_N,
    W_FREE,
    W_ISOLATED,
    W_LEAKED,
    W_LRU,
    W_UNTRACKED,
    WALK_PREFETCH_FROM,
    EpcManager,
)
from epcsim.kernel.owner import WRITE_FREED, WRITE_RETRY, Owner, OwnerOps


def test_alloc_returns_a_free_page(rig: Rig) -> None:
    before = rig.mgr.sgx_nr_free_pages
    page = rig.mgr.alloc(0, 0, False)
    assert page >= 0
    assert rig.mgr.where(page) == W_UNTRACKED
    assert rig.mgr.sgx_nr_free_pages == before - 1
    rig.mgr.check()


def test_alloc_without_reclaim_gives_ebusy_when_none_free(rig: Rig) -> None:
    pages = rig.fill(0, rig.mgr.sgx_nr_free_pages)
    assert all(p >= 0 for p in pages) and rig.mgr.sgx_nr_free_pages == 0
    assert rig.mgr.alloc(0, 0, False) == -EBUSY
    assert rig.mgr.counters()["alloc_ebusy"] == 1
    rig.mgr.check()


def test_alloc_with_reclaim_reclaims_directly(rig: Rig) -> None:
    rig.fill(0, rig.mgr.sgx_nr_free_pages)
    page = rig.owner.add(rig.mgr, 0, reclaim=True)
    assert page >= 0
    c = rig.mgr.counters()
    assert c["direct_reclaims"] >= 1 and c["written"] >= 1 and c["ewb"] >= 1
    assert c["reclaimed_direct"] == c["written"] and c["reclaimed_ksgxd"] == 0
    assert int(rig.owner.state.evicted[0]) == c["written"]
    rig.mgr.check()


def test_alloc_enomem_when_nothing_free_and_nothing_reclaimable(rig: Rig) -> None:
    while rig.mgr.alloc(0, 0, False) >= 0:   # unreclaimable pages, never on the LRU
        pass
    assert rig.mgr.lru_pages == 0
    assert rig.mgr.alloc(0, 0, True) == -ENOMEM
    assert rig.mgr.alloc(0, 0, False) == -ENOMEM
    assert not rig.mgr.ksgxd_awake   # the early -ENOMEM return wakes nobody
    rig.mgr.check()


def test_ksgxd_woken_below_low_watermark() -> None:
    r = Rig(pages=256)
    free = r.mgr.sgx_nr_free_pages
    r.fill(0, free - 32)                 # exactly 32 left: not below the watermark
    assert not r.mgr.ksgxd_awake
    r.fill(0, 1)                         # 31 left
    assert r.mgr.ksgxd_awake and r.mgr.counters()["ksgxd_wakeups"] == 1
    batches = r.mgr.run_ksgxd()
    assert batches >= 1 and not r.mgr.ksgxd_awake
    assert r.mgr.sgx_nr_free_pages >= 64
    c = r.mgr.counters()
    assert c["reclaimed_ksgxd"] == c["written"] > 0 and c["ewb_ksgxd"] == c["ewb"]
    r.mgr.check()


@pytest.mark.parametrize("hot", [False, True])
def test_ksgxd_sleeps_iff_high_watermark_or_lru_empty(hot: bool) -> None:
    r = Rig(pages=300)
    pages = r.fill(0, r.mgr.sgx_nr_free_pages - 10)
    if hot:  # every page young: the first pass only rotates, the second writes
        r.owner.state.accessed[[p for p in pages if p >= 0]] = 1
    r.mgr.run_ksgxd()
    assert r.mgr.sgx_nr_free_pages >= 64 or r.mgr.lru_pages == 0
    if hot:
        assert r.mgr.counters()["refused_young"] > 0
    # a woken ksgxd with an empty LRU goes straight back to sleep
    r2 = Rig(pages=128)
    while r2.mgr.alloc(0, 0, False) >= 0:
        pass
    r2.mgr.ms.p[4] = 1
    assert r2.mgr.run_ksgxd() == 0 and not r2.mgr.ksgxd_awake


def test_free_eremoves_and_returns_the_page(rig: Rig) -> None:
    page = rig.owner.add(rig.mgr, 0)
    free = rig.mgr.sgx_nr_free_pages
    assert rig.mgr.unmark_reclaimable(page) == 0
    assert rig.mgr.free(page) == 0
    assert rig.mgr.where(page) == W_FREE and rig.mgr.sgx_nr_free_pages == free + 1
    assert not rig.cpu.st.flags[page] & 0x40
    rig.mgr.check()


def test_failing_eremove_leaks_the_page(rig: Rig) -> None:
    rig.owner.add(rig.mgr, 0)
    secs = int(rig.owner.state.secs[0])
    free = rig.mgr.sgx_nr_free_pages
    assert rig.mgr.free(secs) == L.CHILD_PRESENT
    assert rig.mgr.where(secs) == W_LEAKED
    assert rig.mgr.counters()["leaks"] == 1 and rig.mgr.sgx_nr_free_pages == free
    rig.mgr.check()


def test_unmark_isolated_page_is_ebusy(rig: Rig) -> None:
    page = rig.owner.add(rig.mgr, 0)
    rig.mgr.ms.where[page] = W_ISOLATED   # as while the reclaimer holds it
    from epcsim.kernel.main import list_del, lru_list
    list_del(rig.mgr.ms, lru_list(rig.mgr.ms), page)
    assert rig.mgr.unmark_reclaimable(page) == -EBUSY


def test_numa_prefers_the_callers_node_then_falls_back() -> None:
    r = Rig(pages=64, nodes=2, n_enclaves=1)
    node_of = r.cpu.page_node
    got = [r.mgr.alloc(0, 0, False, node=1) for _ in range(r.mgr.sgx_nr_free_pages)]
    nodes = [node_of(p) for p in got]
    first_zero = nodes.index(0)
    assert set(nodes[:first_zero]) == {1} and set(nodes[first_zero:]) == {0}
    assert r.mgr.sgx_total_bytes() == {0: 32 * 4096, 1: 32 * 4096}
    r.mgr.check()


def test_manager_state_is_at_most_16_bytes_per_page() -> None:
    cpu = Processor(epc_size=1 << 30)

    class Nop(Owner):
        ops = OwnerOps(*([_nop] * 5))
        state = np.zeros(1)
    mgr = EpcManager(cpu, [Nop()])
    assert mgr.bytes_per_page() <= 16


@njit
def _nop(os: Any, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return 1


# ---------------------------------------------------------------- the protocol's order

class TraceState(NamedTuple):
    log: np.ndarray        # [cap, 3]: op, page, manager event index at the call
    n: np.ndarray          # [1]
    refuse: np.ndarray     # u8 per page: reclaim says no
    dying: np.ndarray      # u8 per page: get says no
    retry: np.ndarray      # u8 per page: write says retry
    secs: np.ndarray       # [1]
    va: np.ndarray         # [1]
    out: np.ndarray


OP_GET, OP_PUT, OP_RECLAIM, OP_BLOCK, OP_WRITE = range(5)


@njit
def _trace(os: TraceState, ms: Any, op: int, page: int) -> None:
    i = os.n[0]
    os.log[i, 0] = op
    os.log[i, 1] = page
    os.log[i, 2] = ms.p[P_EV_N]
    os.n[0] = i + 1


@njit
def t_get(os: TraceState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    _trace(os, ms, OP_GET, page)
    return 0 if os.dying[page] else 1


@njit
def t_put(os: TraceState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    _trace(os, ms, OP_PUT, page)
    return 0


@njit
def t_reclaim(os: TraceState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    _trace(os, ms, OP_RECLAIM, page)
    return 0 if os.refuse[page] else 1


@njit
def t_block(os: TraceState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    _trace(os, ms, OP_BLOCK, page)
    return L.eblock(st, page)


@njit
def t_write(os: TraceState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    _trace(os, ms, OP_WRITE, page)
    if os.retry[page]:
        return WRITE_RETRY
    L.etrack(st, os.secs[0], 0)
    slot = os.n[0] % 512
    L.ewb(st, page, os.va[0], slot, 0, os.out)
    return WRITE_FREED


class TraceOwner(Owner):
    ops = OwnerOps(t_get, t_put, t_reclaim, t_block, t_write)

    def __init__(self, cpu: Processor) -> None:
        n = cpu.npages
        self.state = TraceState(np.zeros((4096, 3), dtype=np.int64), np.zeros(1, np.int64),
                                np.zeros(n, np.uint8), np.zeros(n, np.uint8),
                                np.zeros(n, np.uint8), np.zeros(1, np.int64),
                                np.zeros(1, np.int64), np.zeros(L.W_LEN, np.uint64))

    def calls(self) -> list[tuple[int, int, int]]:
        n = int(self.state.n[0])
        return [tuple(int(x) for x in row) for row in self.state.log[:n]]  # type: ignore


def _trace_rig(owner_cls: type[TraceOwner] | None = None, epc_pages: int = 64
               ) -> tuple[Processor, TraceOwner, EpcManager, list[int]]:
    cpu = Processor(epc_size=epc_pages * 4096)
    own = (owner_cls or TraceOwner)(cpu)
    mgr = EpcManager(cpu, [own], events=4096)
    secs, va = mgr.alloc(0, 0, True), mgr.alloc(0, 0, True)
    cpu.ecreate_page(secs, Secs(size=1 << 20, baseaddr=1 << 32, ssaframesize=1, attributes=4,
                                xfrm=3))
    cpu.epa_page(va)
    own.state.secs[0], own.state.va[0] = secs, va
    pages = []
    for i in range(20):
        p = mgr.alloc(0, 0, True)
        cpu.eadd_page(p, secs, (1 << 32) + i * 4096, secinfo_flags(PageType.REG, 3))
        mgr.mark_reclaimable(p)
        pages.append(p)
    own.state.n[0] = 0
    return cpu, own, mgr, pages


def test_owner_protocol_runs_in_the_v13_order() -> None:
    _cpu, own, mgr, pages = _trace_rig()
    own.state.refuse[pages[1]] = 1       # young: back to the tail
    own.state.dying[pages[2]] = 1        # owner torn down: dropped from the reclaimer
    mgr.reclaim_pages(16)
    calls = own.calls()
    ops = [c[0] for c in calls]
    batch = pages[:16]
    # 1. get on every isolated page, in LRU order
    assert [c[1] for c in calls if c[0] == OP_GET] == batch
    last_get = max(i for i, op in enumerate(ops) if op == OP_GET)
    first_reclaim = ops.index(OP_RECLAIM)
    assert last_get < first_reclaim
    survivors = [p for p in batch if p != pages[2]]
    assert [c[1] for c in calls if c[0] == OP_RECLAIM] == survivors
    # 2. the refused page is put right after its reclaim and goes back to the LRU tail
    i = next(k for k, c in enumerate(calls) if c[:2] == (OP_RECLAIM, pages[1]))
    assert calls[i + 1][:2] == (OP_PUT, pages[1])
    assert mgr.where(pages[1]) == W_LRU and int(mgr.ms.tail[-1]) == pages[1]
    written = [p for p in survivors if p != pages[1]]
    # 3. block all before the first write
    blocks = [k for k, c in enumerate(calls) if c[0] == OP_BLOCK]
    writes = [k for k, c in enumerate(calls) if c[0] == OP_WRITE]
    assert [calls[k][1] for k in blocks] == written and max(blocks) < min(writes)
    # 4. write then put, per page; the page is freed only after put
    for k in writes:
        page = calls[k][1]
        assert calls[k + 1][:2] == (OP_PUT, page)
        frees = [j for j, e in enumerate(mgr.events()) if e[:2] == ("free", page)]
        assert frees and frees[-1] >= calls[k + 1][2]
        assert mgr.where(page) == W_FREE
    assert mgr.where(pages[2]) == W_UNTRACKED and mgr.counters()["get_failed"] == 1
    mgr.check()


OP_HINT = 5


@njit
def t_prefetch(os: TraceState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    _trace(os, ms, OP_HINT, page)
    return 0


class HintedTraceOwner(TraceOwner):
    ops = OwnerOps(t_get, t_put, t_reclaim, t_block, t_write, t_prefetch)


@pytest.mark.parametrize(("epc_pages", "ahead"), [(64, HINT_AHEAD),
                                                   (WALK_PREFETCH_FROM, HINT_AHEAD_FAR)])
def test_the_prefetch_hint_runs_ahead_of_the_batch_and_changes_nothing(
        epc_pages: int, ahead: int) -> None:
    def run(owner_cls: type[TraceOwner]) -> tuple[list[tuple[int, int]], dict[str, int]]:
        _cpu, own, mgr, pages = _trace_rig(owner_cls, epc_pages)
        own.state.refuse[pages[1]] = 1
        own.state.dying[pages[2]] = 1
        mgr.reclaim_pages(8)
        mgr.check()
        return [c[:2] for c in own.calls()], mgr.counters()

    plain, plain_counters = run(TraceOwner)
    hinted, hinted_counters = run(HintedTraceOwner)
    _cpu, _own, _mgr, pages = _trace_rig(HintedTraceOwner, epc_pages)
    # The hint is the only difference: the five operations and the counters are the same.
    assert [c for c in hinted if c[0] != OP_HINT] == plain
    assert hinted_counters == plain_counters
    # Hints follow the LRU from its head, ``ahead`` pages ahead of the page being isolated:
    # further on an EPC whose manager's tables outgrow the caches.
    hints = [p for op, p in hinted if op == OP_HINT]
    assert hints == pages[:ahead + 8]
    for p in pages[:8]:
        assert hinted.index((OP_HINT, p)) < hinted.index((OP_GET, p))
    got = [k for k, c in enumerate(hinted) if c[0] == OP_GET]
    assert hinted[got[0] - 1] == (OP_HINT, pages[ahead])


def test_only_owners_with_a_hint_make_the_batch_walk_for_one() -> None:
    from epcsim.kernel.encl import DRIVER_OPS
    from epcsim.kernel.owner import dispatch_for
    assert not dispatch_for([TraceOwner.ops]).hints
    assert dispatch_for([HintedTraceOwner.ops]).hints
    assert dispatch_for([TraceOwner.ops, DRIVER_OPS]).hints


def test_write_retry_returns_the_page_to_the_lru_tail() -> None:
    _cpu, own, mgr, pages = _trace_rig()
    own.state.retry[pages[0]] = 1
    mgr.reclaim_pages(4)
    assert mgr.where(pages[0]) == W_LRU and int(mgr.ms.tail[-1]) == pages[0]
    assert mgr.counters()["write_retry"] == 1
    mgr.check()


def test_a_fault_allocates_from_the_faulting_cpus_node_first() -> None:
    """``numa_node_id()``: the NUMA walk starts at the node of the CPU that faults."""
    from epcsim.hw.cpu import Processor
    from epcsim.kernel.instance import Kernel

    cpu = Processor(epc_size=256 * 4096, nodes=2, n_lps=4, content=False)
    assert [cpu.lp_node(lp) for lp in range(4)] == [0, 0, 1, 1]
    k = Kernel(cpu)
    for lp, node in ((0, 0), (3, 1)):
        k.mgr.current_node = cpu.lp_node(lp)
        page = k.mgr.alloc(0, 0, True)
        assert page >= 0 and cpu.page_node(page) == node
        k.mgr.free(page)


def test_a_host_boot_removes_every_page_a_previous_kernel_left() -> None:
    """On the EPC a previous kernel left (SECSes with children, a thread inside none), a
    host's boot removes every page, children first and then their SECS, without the
    guest's EPT (its walk is deferred and never compiled by it: tests/sim/test_replay.py)."""
    from epcsim.hw.epc import EPCM_VALID, V_GUEST
    from epcsim.kernel import main as M

    rig = Rig(pages=64, n_enclaves=2)
    rig.fill(0, 9)
    rig.fill(1, 4)
    assert rig.cpu.st.vmcs[V_GUEST] == 0    # a host
    assert int((rig.cpu.st.flags & EPCM_VALID != 0).sum()) > 0
    ms = M.make_mgr_state(rig.cpu, low=4, high=8, batch=4, policy=M.POLICY_SGX)
    assert int(M.sanitize_pages(ms, rig.cpu.st)) == 0
    assert int((rig.cpu.st.flags & EPCM_VALID != 0).sum()) == 0
