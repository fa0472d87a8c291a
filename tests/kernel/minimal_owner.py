"""A minimal enclave owner for the manager's tests: real leaves, no driver.

Each owner id is an enclave (one SECS, one VA page). Pages are EADDed REG pages. The owner
keeps an accessed bit per EPC page (what the driver reads from PTEs), a dying flag and a
reference count per enclave, and counts what it evicted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from epcsim.arch import PageType, Secs, secinfo_flags
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor
from epcsim.jit import njit
from epcsim.kernel.main import EpcManager, count_etrack, count_ewb, count_ipi
from epcsim.kernel.owner import WRITE_FREED, Owner, OwnerOps

BASE = 0x100_0000_0000
SPAN = 1 << 30


class MinState(NamedTuple):
    accessed: np.ndarray   # u8 per EPC page
    dying: np.ndarray      # u8 per enclave
    refs: np.ndarray       # i64 per enclave
    secs: np.ndarray       # i64 per enclave
    va: np.ndarray         # i64 per enclave
    va_used: np.ndarray    # i64 per enclave: slots handed out
    evicted: np.ndarray    # i64 per enclave
    out: np.ndarray        # u64 EWB record scratch


@njit
def m_get(os: MinState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    if os.dying[oid]:
        return 0
    os.refs[oid] += 1
    return 1


@njit
def m_put(os: MinState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    os.refs[oid] -= 1
    return 0


@njit
def m_reclaim(os: MinState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    if arg == 1 and os.accessed[page]:
        os.accessed[page] = 0
        return 0
    return 1


@njit
def m_block(os: MinState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return L.eblock(st, page)


@njit
def m_write(os: MinState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    slot = os.va_used[oid] % 512
    os.va_used[oid] += 1
    rc = L.ewb(st, page, os.va[oid], slot, 0, os.out)
    if rc == L.NOT_TRACKED:
        L.etrack(st, os.secs[oid], 0)
        count_etrack(ms)
        rc = L.ewb(st, page, os.va[oid], slot, 0, os.out)
        if rc == L.NOT_TRACKED:
            count_ipi(ms)
    count_ewb(ms)
    os.evicted[oid] += 1
    return WRITE_FREED


class MinimalOwner(Owner):
    name = "minimal"
    ops = OwnerOps(m_get, m_put, m_reclaim, m_block, m_write)

    def __init__(self, cpu: Processor, n_enclaves: int) -> None:
        n = n_enclaves
        self.cpu = cpu
        self.state = MinState(
            accessed=np.zeros(cpu.npages, dtype=np.uint8), dying=np.zeros(n, dtype=np.uint8),
            refs=np.zeros(n, dtype=np.int64), secs=np.full(n, -1, dtype=np.int64),
            va=np.full(n, -1, dtype=np.int64), va_used=np.zeros(n, dtype=np.int64),
            evicted=np.zeros(n, dtype=np.int64), out=np.zeros(L.W_LEN, dtype=np.uint64))
        self.next_lin = [0] * n

    def create(self, mgr: EpcManager, e: int) -> None:
        """SECS and VA page for enclave ``e``, allocated (unreclaimable) from the manager."""
        secs = mgr.alloc(0, e, True)
        va = mgr.alloc(0, e, True)
        assert secs >= 0 and va >= 0
        base = BASE + e * SPAN
        self.cpu.ecreate_page(secs, Secs(size=SPAN, baseaddr=base, ssaframesize=1,
                                         attributes=4, xfrm=3))
        self.cpu.epa_page(va)
        self.state.secs[e] = secs
        self.state.va[e] = va

    def add(self, mgr: EpcManager, e: int, reclaim: bool = True) -> int:
        """Allocate and EADD one REG page; mark it reclaimable. Returns the page or -errno."""
        page = mgr.alloc(0, e, reclaim)
        if page < 0:
            return page
        lin = BASE + e * SPAN + self.next_lin[e] * 4096
        self.next_lin[e] += 1
        self.cpu.eadd_page(page, int(self.state.secs[e]), lin, secinfo_flags(PageType.REG, 3))
        mgr.mark_reclaimable(page)
        return page
