"""The replay engine: a trace of enclave page accesses through the kernel model, compiled.

Policy ``sgx`` replays the whole kernel: every tenant of the trace is an enclave built
through the uapi (a TCS, its SSA frame and a stack page, then its pages added with EAUG on
first touch and accepted with EACCEPT, as an SGX2 enclave with dynamic memory does); the
manager runs with its watermarks, ksgxd and batches of 16; the driver owner writes pages
back with EBLOCK/ETRACK/IPI/EWB and the fault path loads them with ELDU. Every step is a
call of the same compiled functions the Python API uses: the leaves of
:mod:`epcsim.hw.encls`, the manager of :mod:`epcsim.kernel.main`, the driver of
:mod:`epcsim.kernel.encl`.

Policies ``lru``, ``fifo`` and ``clock`` replay the manager's one-page-per-miss policies
(watermarks 0, batch 1, direct reclaim on the faulting thread) with a page-cache owner that
runs no leaves: the cross-check with cache simulators. Their EWB/ELDU counts are the
evictions and loads those policies would cause.

Virtual time: the thread's clock advances by the cost model's ``request`` cycles per access
plus its own stalls (AEX, #PF, ELDU or EAUG, ERESUME, waiting for ksgxd on -EBUSY). ksgxd
runs on its own CPU with its own clock; the thread waits for it only when an allocation
finds no free page.
"""

from __future__ import annotations

import functools
import gc
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from epcsim.arch import Attribute, PageType, Secinfo, Secs, secinfo_flags
from epcsim.heap import fix_mmap_threshold
from epcsim.hw import encls as L
from epcsim.hw.baremetal import tcs_image
from epcsim.hw.cpu import Processor
from epcsim.hw.crypto import mrenclave, sign_sigstruct
from epcsim.jit import (
    compile_for,
    njit,
    njit_closure,
    njit_inline,
    prefetch,
    state_class,
    table,
    tables,
)
from epcsim.kernel import main as M
from epcsim.kernel.encl import (
    E_BASE,
    E_CHILD,
    E_FIRST,
    E_SECS,
    EP_PRESENT,
    EP_YOUNG,
    EPCM_PREFETCH_FROM,
    FAULT_EAUG,
    FAULT_ELDU,
    FAULT_SECS,
    NONE,
    SGX_VA_SLOT_COUNT,
    VA_EPC,
    VM_FAULT_MASK,
    VM_FAULT_NOPAGE,
    VM_FAULT_RETRY,
    driver_rules,
    ep_slot_of,
    ep_va_of,
    va_pages_for,
)
from epcsim.kernel.instance import KIND_DRIVER, Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_PAGE_MEASURE,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
)
from epcsim.kernel.main import EpcManager
from epcsim.kernel.mm import MAP_FIXED, MAP_SHARED, PROT_READ, PROT_WRITE
from epcsim.kernel.owner import WRITE_FREED, Owner, OwnerOps
from epcsim.sim import costs as K
from epcsim.workload.traces import Chunk, TraceReader, read_ahead

POLICIES = ("sgx", "lru", "fifo", "clock")

# Layout of a replay enclave: TCS, SSA frame, stack, then the trace's pages.
R_TCS, R_SSA, R_STACK = 0, 1, 2
R_FIRST = 3

# Replay counters (the first RC_LEN words of RState.v; ``rs.cnt`` on the Python side).
RC_REQUESTS, RC_HITS, RC_FAULTS, RC_EAUG, RC_ELDU, RC_EBUSY, RC_AEX, RC_ERESUME, \
    RC_EACCEPT, RC_SIGBUS, RC_IPI_AEX, RC_WALKS = range(12)
RC_LEN = 12

# Clocks (the next CL_LEN words of RState.v from V_CLK; ``rs.clk``): the thread's (ksgxd's is
# the manager's, ``EpcManager.ksgxd_clock``), a spare word,
# and the stall split by category.
CL_THREAD, CL_UNUSED, CL_WORK, CL_FAULT, CL_WAIT, CL_NEXT_SAMPLE, CL_STEP = range(7)
CL_LEN = 7
V_CLK = RC_LEN
V_SERIES_N = V_CLK + CL_LEN     # samples in ``series``
V_FLOG_N = V_SERIES_N + 1       # faults logged (also past the log's end)
V_LEN = V_FLOG_N + 1

# Columns of the tenant table (RState.t, one row per tenant id).
T_ENCL = 0      # the tenant's enclave in the driver (-1: none)
T_LP = 1        # the logical processor of its thread
T_ROW = 2       # its position in the machine's tenant order
T_STACK = 3     # EPC page of its pinned stack
T_REQ, T_FAULTS, T_EAUG, T_ELDU = 4, 5, 6, 7   # its counters (``rs.e_cnt``)
T_NODE = 8      # the NUMA node of its logical processor (where its faults allocate first)
T_LEN = 9

# Series columns: virtual time, free pages, faults, EWBs.
S_T, S_FREE, S_FAULTS, S_EWB = range(4)

# The fault log's entries when ReplayConfig.fault_log is None: one for every FAULT_LOG_EPC
# EPC pages, at least FAULT_LOG_MIN and at most FAULT_LOG_MAX. An entry is 24 bytes, so the
# log takes at most 1.5 bytes per EPC page above its floor of 1.5 MiB (a small run keeps its
# first 65 536 faults), whatever the trace's length: a log of 2^20 entries on every EPC size
# was 12 bytes a simulated page on the smallest cells of the scale matrix.
FAULT_LOG_EPC = 16
FAULT_LOG_MIN = 1 << 16
FAULT_LOG_MAX = 1 << 20

# How many requests ahead the engine prefetches a request's table entries.
AHEAD = 32

# Samples the series keeps at most (32 bytes each, and 4 a sampled tenant, whose long-form
# table has a row per sample and tenant: 2^16 x 64 rows at most): past half of it, every
# other sample goes and the step doubles (Replay._coarsen_series). 32 768 to 65 536 points
# are more than a plot shows; the series is a constant of 2 MiB at most, which the scale
# matrix's smallest cells (1.5 Mi simulated pages) see as up to 1.4 bytes per page.
MAX_SERIES = 1 << 16

# Tenants whose EPC usage is sampled with the series (the first ones of the trace).
SAMPLED_TENANTS = 64


class ReplayError(RuntimeError):
    """The replay could not continue (an enclave got SIGBUS: nothing reclaimable)."""


@state_class
class RState(NamedTuple):
    v: np.ndarray         # i64 [V_LEN]: counters, clocks (cycles), how full the logs are
    cost: np.ndarray      # i64 [K_LEN]
    t: np.ndarray         # i64 [tenants, T_LEN]
    series: np.ndarray    # i64 [cap, 4]
    flog: np.ndarray      # i64 [cap, 3]: virtual time, tenant, page (the OS-visible
                          # faults, in the result's layout: the result is a view of it)
    # Per-enclave usage at each sample, for the first SAMPLED_TENANTS tenants (a trace may
    # have thousands; a column each would outweigh the state).
    tseries: np.ndarray   # i32 [cap, sampled]: EPC pages the tenant holds
    t_sampled: np.ndarray  # i64 [sampled]: the tenant id of each column

    # The Python side's views.
    @property
    def cnt(self) -> np.ndarray:
        return self.v[:RC_LEN]

    @property
    def clk(self) -> np.ndarray:
        return self.v[V_CLK:V_CLK + CL_LEN]

    @property
    def series_n(self) -> np.ndarray:
        return self.v[V_SERIES_N:V_SERIES_N + 1]

    @property
    def flog_n(self) -> np.ndarray:
        return self.v[V_FLOG_N:V_FLOG_N + 1]

    @property
    def e_of_tenant(self) -> np.ndarray:
        return self.t[:, T_ENCL]

    @property
    def e_lp(self) -> np.ndarray:
        return self.t[:, T_LP]

    @property
    def e_row(self) -> np.ndarray:
        return self.t[:, T_ROW]

    @property
    def e_stack(self) -> np.ndarray:
        return self.t[:, T_STACK]

    @property
    def e_cnt(self) -> np.ndarray:
        """[tenants, 4]: requests, faults, eaug, eldu."""
        return self.t[:, T_REQ:T_REQ + 4]


# ----------------------------------------------------------------------------- page-cache owner

# A cache page that is not resident: never loaded, or written back (its copy is in the
# backing store, so the next miss is an ELDU, not an EAUG). One table for both answers: the
# miss path reads one random entry instead of two.
CP_NEW = -1
CP_WRITTEN_BACK = -2


@state_class
class CacheState(NamedTuple):
    resident: np.ndarray  # i32 per cache page index: EPC page, CP_NEW or CP_WRITTEN_BACK
    cnt: np.ndarray       # i64 [2]: writes (EWB), loads (ELDU)
    starts: np.ndarray    # i64 per tenant in index order: its first cache page index
    held: np.ndarray      # i64 per tenant in index order: cache pages resident in the EPC


@njit_inline
def _tenant_row(os: CacheState, oid: int) -> int:
    """The tenant (in index order) whose range holds cache page ``oid``."""
    if os.starts.shape[0] == 1:
        return 0
    return np.searchsorted(os.starts, oid, side="right") - 1


@njit_inline
def c_true(os: CacheState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return 1


@njit_inline
def c_nop(os: CacheState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return 0


@njit_inline
def c_write(os: CacheState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    os.resident[oid] = CP_WRITTEN_BACK
    os.cnt[0] += 1
    # The write-back is the one place a page leaves its tenant: find the tenant's range.
    os.held[_tenant_row(os, oid)] -= 1
    M.count_ewb(ms)
    return WRITE_FREED


class CacheOwner(Owner):
    name = "page-cache"
    ops = OwnerOps(c_true, c_nop, c_true, c_nop, c_write)
    inline_reclaim = True

    def __init__(self, pages: int, starts: np.ndarray) -> None:
        self.state = tables(CacheState(np.full(pages, CP_NEW, np.int32),
                                       np.zeros(2, np.int64), np.asarray(starts, np.int64),
                                       np.zeros(len(starts), np.int64)))


# ----------------------------------------------------------------------------- shared helpers

@njit
def _held_sgx(os: Any, rs: RState, n: int) -> None:
    """Each sampled enclave's EPC pages: its SECS's resident children, and the SECS."""
    ds = os[KIND_DRIVER]
    for j in range(rs.t_sampled.shape[0]):
        e = rs.t[rs.t_sampled[j], T_ENCL]
        rs.tseries[n, j] = ds.encl[e, E_CHILD] + (1 if ds.encl[e, E_SECS] != NONE else 0)


@njit
def _held_cache(os: Any, rs: RState, n: int) -> None:
    cs = os[0]
    for j in range(rs.t_sampled.shape[0]):
        rs.tseries[n, j] = cs.held[j]


@njit_inline
def _log_fault(rs: RState, tenant: int, page: int) -> None:
    n = rs.v[V_FLOG_N]
    if n < rs.flog.shape[0]:
        rs.flog[n, 0] = rs.v[V_CLK + CL_THREAD]
        rs.flog[n, 1] = tenant
        rs.flog[n, 2] = page
    rs.v[V_FLOG_N] = n + 1


@njit_inline
def stall(rs: RState, cycles: int) -> None:
    rs.v[V_CLK + CL_THREAD] += cycles
    rs.v[V_CLK + CL_FAULT] += cycles


@njit_inline
def kernel_call(ms: Any, rs: RState) -> None:
    """The thread enters the kernel: the manager's clock is the thread's."""
    ms.p[M.P_NOW] = rs.v[V_CLK + CL_THREAD]


@njit_inline
def kernel_return(ms: Any, rs: RState) -> None:
    """Back from the kernel: time the thread spent waiting for ksgxd's pages there."""
    waited = ms.p[M.P_NOW] - rs.v[V_CLK + CL_THREAD]
    if waited > 0:
        rs.v[V_CLK + CL_WAIT] += waited
        rs.v[V_CLK + CL_THREAD] = ms.p[M.P_NOW]


@njit_inline
def walked(ds: Any, rs: RState, ep: int) -> None:
    """An access of the fault path's thread walked (its TLB was flushed by the AEX)."""
    ds.ep[ep].desc |= np.uint8(EP_YOUNG)
    rs.v[RC_WALKS] += 1
    rs.v[V_CLK + CL_THREAD] += rs.cost[K.K_PAGE_WALK]


@njit_inline
def sgx_hit(os: Any, ms: Any, st: Any, rs: RState, t: int, ep: int, page: int,
            write: bool) -> int:
    """The hit path alone: a resident page and a thread inside. Returns the cycles it
    stalled (a page walk, when the TLB did not hold the page), or -1 for no hit.

    ``ep`` is the page's record (:meth:`Replay.entries`). -1 changes nothing, so the full
    access path can run from the start. Only a walk sets the PTE's accessed bit.
    """
    ds = os[KIND_DRIVER]
    lp = rs.t[t, T_LP]
    if st.lp[lp].lp_row == NONE:
        return -1
    epc = np.int64(ds.ep[ep].epc)
    if epc < 0 or (ds.ep[ep].desc & EP_PRESENT) == 0:
        return -1
    e = rs.t[t, T_ENCL]
    lin = ds.encl[e, E_BASE] + ((R_FIRST + page) << 12)
    code = L.enclave_access(st, lp, epc, lin, write, False)
    if code > 0:
        return -1
    M.touch(ms, epc)
    if code == L.WALKED:
        ds.ep[ep].desc |= np.uint8(EP_YOUNG)
        rs.v[RC_WALKS] += 1
        return rs.cost[K.K_PAGE_WALK]
    return 0


@njit_inline
def cache_hit(os: Any, ms: Any, st: Any, rs: RState, t: int, ep: int, page: int,
              write: bool) -> int:
    epc = os[0].resident[ep]
    if epc < 0:
        return -1
    M.touch(ms, epc)
    return 0


@njit_inline
def sgx_ahead(os: Any, ep: int) -> None:
    """The record of the page a request some way ahead will touch: its one line (EPC index,
    flags), all a hit reads."""
    prefetch(os[KIND_DRIVER].ep, ep)


@njit_inline
def cache_ahead(os: Any, ep: int) -> None:
    prefetch(os[0].resident, ep)


@njit_inline
def sgx_large(os: Any, st: Any) -> bool:
    """Whether the EPCM outgrows the caches (:data:`~epcsim.kernel.encl.EPCM_PREFETCH_FROM`,
    with VA pages in use): decided once a chunk, so that a replay that fits the caches pays
    no test per request."""
    return st.epcm.shape[0] >= EPCM_PREFETCH_FROM and os[KIND_DRIVER].va.shape[0] > 0


@njit_inline
def cache_large(os: Any, st: Any) -> bool:
    return False


@njit_inline
def sgx_ahead_fault(os: Any, st: Any, ep: int, large: bool) -> None:
    """The version a request a few requests later would check in an ELDU.

    Its page's record is in the cache by now (:func:`sgx_ahead`); when the page is out,
    the ELDU will read the version in its VA slot, whose address needs two of the
    record's fields first. Without a branch: whether a page is out is as random as the
    trace, so a test mispredicted on about every fault; a page that is not out has no
    VA page (NONE) and fetches a line of VA page 0's slots instead, which costs less.
    On a large EPC, also the EPCM entry a hit's page walk will check (a resident page's;
    page 0's for one that is out).
    """
    ds = os[KIND_DRIVER]
    if ds.va.shape[0] == 0:
        return
    if large:
        prefetch(st.epcm, max(np.int64(ds.ep[ep].epc), 0))
    va = max(ep_va_of(ds, ep), 0)
    row = np.int64(st.epcm[ds.va[va, VA_EPC]].row)
    prefetch(st.va_slots, row * st.va_slots.shape[1] + ep_slot_of(ds, ep))


@njit_inline
def sgx_ahead_va(os: Any, st: Any, ep: int) -> None:
    """On a large EPC, the EPCM entry of the VA page of a request some requests ahead of
    :func:`sgx_ahead_fault`'s: that function reads it to find the VA slot's address, and
    over 100 000 EPC pages it was the load the loop waited on most (2-3 % less time)."""
    ds = os[KIND_DRIVER]
    prefetch(st.epcm, ds.va[max(ep_va_of(ds, ep), 0), VA_EPC])


def make_engine(reclaimer: M.Reclaimer, kind: int, sgx: bool, ahead_by: int = AHEAD) -> Any:
    """Close the replay loop over a kernel's compiled entry points: the driver's fault path
    (``sgx``: the same compiled rule the driver's Python API runs) or the manager's
    allocation (one page per miss).

    ``ahead_by``: how many requests ahead to prefetch table entries (0: none).
    """
    alloc = reclaimer.alloc
    vma_fault = driver_rules(reclaimer, kind).vma_fault if sgx else None
    closure = functools.partial(njit_closure, cache=reclaimer.cache)

    # Run once per fault: linked into the loop, not called through a cell (jit.njit_closure).
    @functools.partial(njit_closure, cache=reclaimer.cache, link=True)
    def sgx_access(os: Any, ms: Any, st: Any, rs: RState, t: int, ep: int, page: int,
                   write: bool) -> int:
        """One access of tenant ``t`` to its page ``page`` (record ``ep``, of
        :meth:`Replay.entries`): the enclave's thread, the kernel's fault path
        (:func:`epcsim.kernel.encl.driver_rules`), the clocks."""
        ds = os[KIND_DRIVER]
        c = rs.cost
        e = rs.t[t, T_ENCL]
        lp = rs.t[t, T_LP]
        base = ds.encl[e, E_BASE]
        lin = base + ((R_FIRST + page) << 12)
        tcs = np.int64(ds.ep[ds.encl[e, E_FIRST] + R_TCS].epc)
        if st.lp[lp].lp_row == NONE:
            # An IPI of the reclaimer forced an AEX: the AEP resumes the thread.
            L.eresume(st, lp, tcs, base)
            rs.v[RC_IPI_AEX] += 1
            stall(rs, c[K.K_AEX] + c[K.K_ERESUME])
        epc = np.int64(ds.ep[ep].epc)
        # The hit test missed the TLB, or an AEX emptied it since: the access walks.
        if epc >= 0 and (ds.ep[ep].desc & EP_PRESENT) != 0 and \
                L.enclave_walk(st, lp, epc, lin, write, False) == L.WALKED:
            walked(ds, rs, ep)
            M.touch(ms, epc)
            rs.v[RC_HITS] += 1
            return 0
        added = False
        stalled = 0
        ms.p[M.P_NODE] = rs.t[t, T_NODE]       # numa_node_id() of the faulting CPU
        while True:
            # #PF: the thread leaves the enclave, the kernel's fault handler runs.
            L.aex(st, lp)
            rs.v[RC_AEX] += 1
            rs.v[RC_FAULTS] += 1
            rs.t[t, T_FAULTS] += 1
            _log_fault(rs, t, page)
            stall(rs, c[K.K_AEX] + c[K.K_PF] + c[K.K_FAULT_SW])
            # Progress: ksgxd wrote pages back, or pages it wrote back became free.
            written = ms.cnt[M.C_WRITTEN] + ms.cnt[M.C_FREED]
            kernel_call(ms, rs)
            code = vma_fault(os, ms, st, e, ep, PROT_READ | PROT_WRITE, True)
            kernel_return(ms, rs)
            if (code & FAULT_SECS) != 0:
                stall(rs, c[K.K_ELDU])
            if (code & FAULT_ELDU) != 0:
                rs.v[RC_ELDU] += 1
                rs.t[t, T_ELDU] += 1
                stall(rs, c[K.K_ELDU])
            if (code & FAULT_EAUG) != 0:
                added = True
                rs.v[RC_EAUG] += 1
                rs.t[t, T_EAUG] += 1
                stall(rs, c[K.K_EAUG])
            outcome = code & VM_FAULT_MASK
            if outcome != VM_FAULT_NOPAGE and outcome != VM_FAULT_RETRY:
                return -1
            L.eresume(st, lp, tcs, base)
            rs.v[RC_ERESUME] += 1
            stall(rs, c[K.K_ERESUME])
            if outcome == VM_FAULT_NOPAGE:
                break
            # -EBUSY: the access faults again, and the woken ksgxd runs as that fault comes
            # in. When that ksgxd wrote nothing back and none of the pages it wrote back
            # became free, twice in a row (its cgroup's pages refused, memory.max full),
            # the fault never ends: the kernel would spin until
            # a signal; the thread gets SIGBUS (docs/replay.md). The first -EBUSY may come
            # before ksgxd was woken, so it is a third in a row.
            rs.v[RC_EBUSY] += 1
            stalled = stalled + 1 if ms.cnt[M.C_WRITTEN] + ms.cnt[M.C_FREED] == written else 0
            if stalled >= 3:
                return -1
        epc = np.int64(ds.ep[ep].epc)
        if added:
            # The new page is PENDING: the access faults again (EPCM) and the enclave's
            # handler accepts it with a SECINFO on its stack.
            L.aex(st, lp)
            L.eresume(st, lp, tcs, base)
            if L.eaccept(st, lp, rs.t[t, T_STACK], base + (R_STACK << 12),
                         (L.PT_REG << 8) | 0x3 | 0x8, epc, lin) != 0:
                return -1
            rs.v[RC_EACCEPT] += 1
            stall(rs, c[K.K_AEX] + c[K.K_PF] + c[K.K_ERESUME] + c[K.K_EACCEPT])
        # The fault's AEX flushed the thread's TLB: the access walks.
        if L.enclave_walk(st, lp, epc, lin, write, False) != L.WALKED:
            return -1
        walked(ds, rs, ep)
        return 1

    @closure
    def cache_access(os: Any, ms: Any, st: Any, rs: RState, t: int, idx: int, page: int,
                     write: bool) -> int:
        cs = os[0]
        c = rs.cost
        epc = np.int64(cs.resident[idx])
        if epc >= 0:
            M.touch(ms, epc)
            rs.v[RC_HITS] += 1
            return 0
        rs.v[RC_FAULTS] += 1
        rs.t[t, T_FAULTS] += 1
        _log_fault(rs, t, page)
        stall(rs, c[K.K_AEX] + c[K.K_PF] + c[K.K_FAULT_SW] + c[K.K_ERESUME])
        before = epc   # CP_NEW or CP_WRITTEN_BACK: the miss cannot evict its own page
        epc = alloc(os, ms, st, kind, idx, True, 0)
        if epc < 0:
            return -1
        if before == CP_WRITTEN_BACK:
            cs.cnt[1] += 1
            ms.cnt[M.C_ELDU] += 1
            rs.v[RC_ELDU] += 1
            rs.t[t, T_ELDU] += 1
            stall(rs, c[K.K_ELDU])
        else:
            rs.v[RC_EAUG] += 1
            rs.t[t, T_EAUG] += 1
            stall(rs, c[K.K_EAUG])
        cs.resident[idx] = epc
        cs.held[rs.t[t, T_ROW]] += 1
        M.sgx_mark_page_reclaimable(ms, epc)
        return 1

    held = _held_sgx if sgx else _held_cache

    @closure
    def sample(os: Any, ms: Any, rs: RState) -> None:
        while rs.v[V_CLK + CL_THREAD] >= rs.v[V_CLK + CL_NEXT_SAMPLE]:
            n = rs.v[V_SERIES_N]
            if n < rs.series.shape[0]:
                rs.series[n, S_T] = rs.v[V_CLK + CL_NEXT_SAMPLE]
                # Pages ksgxd wrote back are the enclaves' no more: free, on its clock.
                rs.series[n, S_FREE] = ms.p[M.P_NR_FREE] + M.nr_pending(ms)
                rs.series[n, S_FAULTS] = rs.v[RC_FAULTS]
                rs.series[n, S_EWB] = ms.cnt[M.C_EWB]
                held(os, rs, n)
                rs.v[V_SERIES_N] = n + 1
            rs.v[V_CLK + CL_NEXT_SAMPLE] += rs.v[V_CLK + CL_STEP]

    access = sgx_access if sgx else cache_access
    hit = sgx_hit if sgx else cache_hit
    ahead = sgx_ahead if sgx else cache_ahead
    large = sgx_large if sgx else cache_large
    version_by = ahead_by // 8

    @closure
    def replay_chunk(os: Any, ms: Any, st: Any, rs: RState, tenants: np.ndarray,
                     pages: np.ndarray, writes: np.ndarray, entries: np.ndarray) -> int:
        """Replay one chunk; returns the index of a request that failed, or -1.

        ``entries`` holds each request's entry in its owner's table (:meth:`Replay.entries`),
        computed before the call, on the reading thread when there is one: the prefetches
        ahead, the hit test and the fault path then load one index instead of a tenant's
        enclave and the enclave's first record.

        Returns ``-2 - i`` after request ``i`` when the series is more than half full, so
        the caller can grow it and go on from request ``i + 1`` (no sample is dropped).

        The hit path keeps the thread's clock and the request count in locals: they reach
        the arrays before anything else reads them (a miss, a sample, the return).
        """
        work = rs.cost[K.K_REQUEST]
        large_epc = large(os, st)
        now = rs.v[V_CLK + CL_THREAD]
        next_sample = rs.v[V_CLK + CL_NEXT_SAMPLE]
        hits = 0
        n = pages.shape[0]
        ret = -1
        done = n
        for i in range(n):
            if ahead_by > 0 and i + ahead_by < n:
                ahead(os, entries[i + ahead_by])
            if sgx and large_epc and version_by > 0 and i + 3 * version_by < n:
                sgx_ahead_va(os, st, entries[i + 3 * version_by])
            if sgx and version_by > 0 and i + version_by < n:
                sgx_ahead_fault(os, st, entries[i + version_by], large_epc)
            t = np.int64(tenants[i])
            page = np.int64(pages[i])
            now += work
            stalled = hit(os, ms, st, rs, t, entries[i], page, writes[i])
            if stalled >= 0:
                hits += 1
                now += stalled
            else:
                rs.v[V_CLK + CL_THREAD] = now
                if access(os, ms, st, rs, t, entries[i], page, writes[i]) < 0:
                    rs.v[RC_SIGBUS] += 1
                    ret = i
                    done = i + 1
                    break
                now = rs.v[V_CLK + CL_THREAD]
            if now >= next_sample:
                rs.v[V_CLK + CL_THREAD] = now
                sample(os, ms, rs)
                next_sample = rs.v[V_CLK + CL_NEXT_SAMPLE]
                if rs.v[V_SERIES_N] > rs.series.shape[0] // 2 and i + 1 < n:
                    ret = -2 - i
                    done = i + 1
                    break
        rs.v[V_CLK + CL_THREAD] = now
        rs.v[V_CLK + CL_WORK] += done * work
        rs.v[RC_REQUESTS] += done
        # Each tenant's requests, counted after the loop: nothing reads them during it,
        # and an increment per request in it was a store the next request's waited for.
        if rs.t.shape[0] == 1:
            rs.t[0, T_REQ] += done
        else:
            for j in range(done):
                rs.t[np.int64(tenants[j]), T_REQ] += 1
        rs.v[RC_HITS] += hits
        return ret

    return replay_chunk


_engines: dict[tuple[int, bool], Any] = {}


def engine_args(tenants: np.ndarray, pages: np.ndarray,
                writes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The request columns as the engine takes them: one set of argument types, so the
    engine :func:`warm_up` compiled is the one that runs (another would compile anew)."""
    return (table(np.ascontiguousarray(tenants, dtype=np.uint32)),
            table(np.ascontiguousarray(pages, dtype=np.int64)),
            table(np.ascontiguousarray(writes, dtype=np.bool_)))


def engine_for(mgr: EpcManager, sgx: bool) -> Any:
    key = (id(mgr.fns), sgx)
    eng = _engines.get(key)
    if eng is None:
        eng = make_engine(mgr.fns, KIND_DRIVER, sgx)
        _engines[key] = eng
    return eng


# ----------------------------------------------------------------------------- id mapping

@njit
def _hash_insert(keys: np.ndarray, tens: np.ndarray, vals: np.ndarray, next_id: np.ndarray,
                 obj: np.ndarray, tenant: np.ndarray, out: np.ndarray, insert: bool) -> int:
    """Map (tenant, object id) to a dense page number per tenant (open addressing)."""
    mask = keys.shape[0] - 1
    added = 0
    for i in range(obj.shape[0]):
        k = obj[i]
        t = np.int64(tenant[i])
        h = (k ^ (np.uint64(t) * np.uint64(0x9E3779B97F4A7C15))) * np.uint64(0xBF58476D1CE4E5B9)
        j = np.int64(h >> np.uint64(20)) & mask
        while True:
            if vals[j] < 0:
                if not insert:
                    out[i] = -1
                    break
                keys[j] = k
                tens[j] = t
                vals[j] = next_id[t]
                next_id[t] += 1
                out[i] = vals[j]
                added += 1
                break
            if keys[j] == k and tens[j] == t:
                out[i] = vals[j]
                break
            j = (j + 1) & mask
    return added


@njit
def _tenant_max(obj: np.ndarray, tenant: np.ndarray, maxes: np.ndarray) -> int:
    """Fold a chunk into the largest object id per tenant; a tenant id out of range, or -1."""
    limit = maxes.shape[0]
    for i in range(obj.shape[0]):
        t = np.int64(tenant[i])
        if t >= limit:
            return t
        o = np.int64(min(obj[i], np.uint64(1 << 62)))
        maxes[t] = max(maxes[t], o)
    return -1


def _max_obj(ch: Any) -> int:
    """A chunk's largest id when its reader found it (``Chunk.max_obj``), else -1; any
    object with ``obj``, ``tenant`` and ``write`` arrays is a chunk."""
    return int(getattr(ch, "max_obj", -1))


class IdMap:
    """Object ids to dense page numbers per tenant; identity when ids are already dense."""

    def __init__(self, max_tenants: int = 1 << 16) -> None:
        self.identity = True
        self.max_tenants = max_tenants
        self.footprint = np.zeros(0, dtype=np.int64)   # pages per tenant
        self._keys = np.zeros(0, dtype=np.uint64)
        self._tens = np.zeros(0, dtype=np.int64)
        self._vals = np.zeros(0, dtype=np.int64)
        self._count = 0
        # The next page number of each tenant, for the hash table only: half a megabyte
        # that a trace numbered by identity never needs.
        self._next = np.zeros(0, dtype=np.int64)
        self.tenant_ids: list[int] = []
        self.kept: list[Any] | None = None     # the trace's chunks, when scan kept them

    # Ids are page numbers while every tenant's largest id, summed, stays below this: 1 TiB
    # of enclave pages, the largest host the scale goals name. Past it (sparse ids: hashes,
    # addresses) a hash table numbers the pages a trace touches; for a dense trace that
    # large it would cost 24 bytes a page and more, where the identity costs nothing.
    IDENTITY_LIMIT = 1 << 28

    # Bytes of trace a scan keeps per simulated page at most, while it cannot know the
    # trace's length before its end: fewer than the replay's state per page (21 to 27), so
    # chunks kept and then dropped because the trace was longer never held more memory
    # than the replay will (a 1 GiB trace dropped before a 0.9 GB state was the peak).
    KEEP_PER_PAGE = 16

    def scan(self, factory: Callable[[], Iterable[Any]], keep_bytes: int = 0,
             epc_pages: int = 0) -> int:
        """First pass: each tenant's footprint. Returns the number of requests.

        Object ids below ``IDENTITY_LIMIT`` are used as page numbers directly; otherwise the
        trace is read again into a hash table that numbers pages in order of first use.
        Chunks are kept in ``self.kept`` so that a trace that fits in memory is read once
        (``self.kept`` is None when it did not fit): a reader that bounds its length before
        it is read (``most_requests()``, else ``count()``) is kept when the bound fits
        ``keep_bytes``; otherwise chunks are kept while they take at most ``keep_bytes``
        and ``KEEP_PER_PAGE`` bytes per simulated page (``epc_pages`` plus the footprint so
        far), so that a trace found too long was never held at more than that.
        """
        reader = factory()
        quick = getattr(reader, "scan_ids", None)
        found = quick() if quick is not None else None
        if found is not None and found[1] < self.IDENTITY_LIMIT:
            # One tenant, dense enough for identity: the footprint without decoding a
            # chunk; the replay reads the trace again, decoding ahead of itself.
            total, top = found
            self.kept = None
            self.footprint = np.full(1 if top >= 0 else 0, top + 1, dtype=np.int64)
            self.tenant_ids = [0] if top >= 0 else []
            return total
        total = 0
        maxes = np.full(self.max_tenants, -1, dtype=np.int64)
        count = getattr(reader, "count", None)
        length = count() if count is not None else None
        bound = getattr(reader, "most_requests", None)
        most = bound() if bound is not None else length
        fits = most is not None and most * REQUEST_BYTES <= keep_bytes
        if length is not None and not fits:
            keep_bytes = 0          # known too long: nothing is kept to be dropped
        self.kept = [] if keep_bytes > 0 else None
        held = 0
        pages = epc_pages
        for ch in reader:
            total += ch.obj.shape[0]
            if self.kept is not None:
                held += ch.obj.nbytes + ch.tenant.nbytes + ch.write.nbytes
                if held <= keep_bytes and (fits or held <= self.KEEP_PER_PAGE * pages):
                    self.kept.append(ch)
                else:
                    self.kept = None
            if not ch.obj.shape[0]:
                continue
            top = _max_obj(ch)
            if top >= 0:   # one tenant, its largest id found while decoding
                maxes[0] = max(maxes[0], top)
                bad = -1
            else:
                bad = _tenant_max(ch.obj, ch.tenant, maxes)
            if bad >= 0:
                raise ValueError(f"tenant id {bad} is too large (at most "
                                 f"{self.max_tenants - 1})")
            # Footprints (largest id + 1) up to the limit in sum: 1 TiB exactly is identity.
            footprint = int(maxes[maxes >= 0].sum()) + int((maxes >= 0).sum())
            if maxes.max() >= self.IDENTITY_LIMIT or footprint > self.IDENTITY_LIMIT:
                self.identity = False
                break
            pages = epc_pages + footprint
        if self.identity:
            seen = np.nonzero(maxes >= 0)[0]
            n = int(seen.max()) + 1 if seen.size else 0
            self.footprint = np.zeros(n, dtype=np.int64)
            self.footprint[seen] = maxes[seen] + 1
        else:
            self.kept = None
            total = 0
            for ch in factory():
                total += ch.obj.shape[0]
                self._insert(ch)
            n = int(np.nonzero(self._next)[0].max()) + 1 if self._next.any() else 0
            self.footprint = self._next[:n].copy()
        self.tenant_ids = [t for t in range(len(self.footprint)) if self.footprint[t] > 0]
        return total

    def _ensure(self, more: int) -> None:
        if self._next.shape[0] == 0:
            self._next = np.zeros(self.max_tenants, dtype=np.int64)
        need = 2 * (self._count + more)
        if self._keys.shape[0] >= need:
            return
        cap = 1 << max(10, (need - 1).bit_length())
        old = (self._keys, self._tens, self._vals)
        self._keys = np.zeros(cap, dtype=np.uint64)
        self._tens = np.zeros(cap, dtype=np.int64)
        self._vals = np.full(cap, -1, dtype=np.int64)
        live = old[2] >= 0
        if live.any():
            nxt = np.zeros(self.max_tenants, dtype=np.int64)
            out = np.empty(int(live.sum()), dtype=np.int64)
            order = np.argsort(old[2][live], kind="stable")
            keys, tens = old[0][live][order], old[1][live][order]
            # Re-insert in dense order per tenant so every page keeps its number.
            for t in np.unique(tens):
                sel = tens == t
                _hash_insert(self._keys, self._tens, self._vals, nxt, keys[sel],
                             tens[sel].astype(np.uint32), out[: int(sel.sum())], True)

    def _insert(self, ch: Any) -> None:
        self._ensure(ch.obj.shape[0])
        out = np.empty(ch.obj.shape[0], dtype=np.int64)
        self._count += _hash_insert(self._keys, self._tens, self._vals, self._next,
                                    ch.obj.astype(np.uint64), ch.tenant, out, True)

    def map(self, ch: Any) -> np.ndarray:
        if self.identity:
            # Every id is below IDENTITY_LIMIT: the same bits as int64, no copy.
            return ch.obj.view(np.int64)
        out = np.empty(ch.obj.shape[0], dtype=np.int64)
        _hash_insert(self._keys, self._tens, self._vals, self._next, ch.obj.astype(np.uint64),
                     ch.tenant, out, False)
        return out

    def bytes(self) -> int:
        return self._keys.nbytes + self._tens.nbytes + self._vals.nbytes + self._next.nbytes

    def kept_bytes(self) -> int:
        """The trace held in memory after the scan (read once instead of twice)."""
        if self.kept is None:
            return 0
        return sum(ch.obj.nbytes + ch.tenant.nbytes + ch.write.nbytes for ch in self.kept)


# ----------------------------------------------------------------------------- the run

@dataclass
class ReplayConfig:
    policy: str = "sgx"
    epc_pages: int = 24576
    platform: K.Platform = field(default_factory=lambda: K.PRESETS["client-sgx1"])
    low: int = 32
    high: int = 64
    batch: int = 16
    series_step_s: float = 0.001
    # Faults kept in the fault log (the first ones); None: one per FAULT_LOG_EPC EPC pages,
    # within [FAULT_LOG_MIN, FAULT_LOG_MAX] (fault_log_entries).
    fault_log: int | None = None
    # A host shared with virtual machines (policy ``sgx`` only): the kernel runs the KVM
    # owner beside the driver, and the processor has ``extra_lps`` more logical processors
    # for their vCPUs, after the replay's own.
    kvm: bool = False
    extra_lps: int = 0
    seed: int = 0
    # When the pages ksgxd frees are free (policy ``sgx``): at its own clock, or at once.
    ksgxd: str = "clock"

    def __post_init__(self) -> None:
        # Here, not where the log is allocated: that is after the trace's scan and the
        # engine's compile, and every caller (the CLI, the API, scenarios) builds a config.
        if self.fault_log is not None and self.fault_log < 0:
            raise ValueError(f"fault_log must be 0 or more (got {self.fault_log})")


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    per_enclave: list[dict[str, Any]]
    series: np.ndarray
    faults: np.ndarray
    held: np.ndarray          # [samples, k]: EPC pages of each sampled tenant (series times)
    held_tenants: np.ndarray  # [k]: which tenant each column of ``held`` is


def fault_log_entries(cfg: ReplayConfig) -> int:
    """The fault log's capacity for ``cfg`` (:data:`FAULT_LOG_EPC`)."""
    if cfg.fault_log is not None:
        return int(cfg.fault_log)
    return min(FAULT_LOG_MAX, max(FAULT_LOG_MIN, cfg.epc_pages // FAULT_LOG_EPC))


def tlb_for(entries: int, ways: int, pages: int) -> tuple[int, int]:
    """The TLB the replay's processor gets for the platform's, when no tenant touches more
    than ``pages`` pages: the fewest sets (4 at least) in which those pages, consecutive in
    every ELRANGE, fill no set beyond its ways.

    A TLB that never evicts holds exactly the pages used since the last flush, whatever
    its sets, so it answers every lookup as the platform's TLB does when that one never
    evicts either; it takes less memory: thousands of small tenants would otherwise each
    hold a full TLB (6.25 KiB for 1536 entries), and touch it all over.
    """
    if entries == 0:
        return 0, ways
    sets = entries // ways
    fewer = 4
    while fewer < sets and -(-pages // fewer) > ways:
        fewer *= 2
    return fewer * ways, ways


@functools.cache
def _thread_image() -> tuple[tuple[int, int, bytes], ...]:
    """The pages EADDed to every replay enclave: its thread's TCS, SSA frame and stack."""
    tcs = tcs_image(ossa=R_SSA * 4096, nssa=1, oentry=0)
    rw = secinfo_flags(PageType.REG, PROT_READ | PROT_WRITE)
    return ((R_TCS * 4096, secinfo_flags(PageType.TCS), tcs),
            (R_SSA * 4096, rw, bytes(4096)), (R_STACK * 4096, rw, bytes(4096)))


@functools.cache
def _sigstruct(size: int) -> bytes:
    """The SIGSTRUCT of a replay enclave of ``size`` bytes.

    MRENCLAVE covers ECREATE's SIZE and SSAFRAMESIZE and each EADD's offset, SECINFO and
    contents, not the base address, so enclaves of one size are one signed image, as an
    enclave binary is signed once and loaded many times. Signing (RSA-3072, about 1 ms)
    was a third of building each enclave; a trace over thousands of tenants, whose sizes
    are powers of two, now signs a few images.
    """
    return sign_sigstruct(mrenclave(1, size, _thread_image()),
                          attributes=int(Attribute.MODE64BIT))


class Replay:
    """Build the machine for a trace's footprint, then replay its chunks."""

    def __init__(self, cfg: ReplayConfig, footprint: np.ndarray, tenant_ids: list[int]) -> None:
        if cfg.policy not in POLICIES:
            raise ValueError(f"unknown policy {cfg.policy!r}; choose one of "
                             f"{', '.join(POLICIES)}")
        if cfg.epc_pages < 16:
            raise ValueError("the EPC needs at least 16 pages")
        self.cfg = cfg
        self.sgx = cfg.policy == "sgx"
        self.tenant_ids = tenant_ids
        self.footprint = footprint
        ntenants = len(footprint)
        cost = cfg.platform.costs.vector()
        if not (self.sgx and cfg.platform.tlb_entries):
            # Without a TLB every access walks, as it did before the TLB was modelled: the
            # walk is part of the work of a request, not a stall of its own.
            cost[K.K_PAGE_WALK] = 0
        step = max(1, int(cfg.series_step_s * cfg.platform.ghz * 1e9))
        v = np.zeros(V_LEN, np.int64)
        v[V_CLK + CL_NEXT_SAMPLE] = step
        v[V_CLK + CL_STEP] = step
        t = np.zeros((ntenants, T_LEN), np.int64)
        t[:, T_ENCL:T_STACK + 1] = -1
        self.rs = tables(RState(
            v=v, cost=cost, t=t,
            series=np.zeros((4096, 4), np.int64),
            flog=np.zeros((fault_log_entries(cfg), 3), np.int64),
            tseries=np.zeros((4096, min(len(tenant_ids), SAMPLED_TENANTS)), np.int32),
            t_sampled=np.asarray(tenant_ids[:SAMPLED_TENANTS], np.int64)))
        for row, t in enumerate(tenant_ids):
            self.rs.e_row[t] = row
        if self.sgx:
            self._build_sgx()
        else:
            self._build_cache()
        self.engine = engine_for(self.mgr, self.sgx)

    # -------------------------------------------------------------- machines
    def _build_cache(self) -> None:
        cfg = self.cfg
        total = int(self.footprint.sum())
        self.cpu = Processor(epc_size=cfg.epc_pages * 4096, n_lps=1)
        acc = 0
        for t in self.tenant_ids:
            self.rs.e_of_tenant[t] = acc
            acc += int(self.footprint[t])
        self.owner = CacheOwner(max(total, 1), self.rs.e_of_tenant[self.tenant_ids])
        self.mgr = EpcManager(self.cpu, [self.owner], low=0, high=0, batch=1,
                              policy=cfg.policy)

    def _build_sgx(self) -> None:
        cfg = self.cfg
        n = len(self.tenant_ids)
        # CPUID.12H:EDX[15:8]: parts with large EPCs report large enclaves; give every
        # footprint of the trace room for its ELRANGE.
        largest = max(int(self.footprint[t]) for t in self.tenant_ids) + R_FIRST
        log2 = max(36, (largest * 4096 - 1).bit_length() + 1)
        if log2 > 44:
            raise ReplayError(f"a footprint of {largest} pages exceeds the largest enclave "
                              f"the model supports (2^44 bytes)")
        entries, ways = tlb_for(cfg.platform.tlb_entries, cfg.platform.tlb_ways,
                                largest - R_FIRST)
        self.cpu = Processor(epc_size=cfg.epc_pages * 4096, n_lps=n + 1 + cfg.extra_lps,
                             max_enclave_log2=log2, tlb_entries=entries, tlb_ways=ways)
        self.kernel = Kernel(self.cpu, low=cfg.low, high=cfg.high, batch=cfg.batch,
                             policy="sgx", kvm=cfg.kvm, ksgxd=cfg.ksgxd,
                             costs=cfg.platform.costs)
        self.mgr = self.kernel.mgr
        self.files = []
        self._most_vas: list[int] = []    # the VA pages each enclave holds at most
        base = 0x100_0000_0000
        for lp, t in enumerate(self.tenant_ids):
            pages = R_FIRST + int(self.footprint[t])
            size = 8192
            while size < pages * 4096:
                size <<= 1
            base = -(-base // size) * size
            self._build_enclave(lp, t, base, size, pages)
            base += size
        self._most_vas = np.array(self._most_vas, np.int64)
        self.states = self.mgr.owner_states()

    def _build_enclave(self, lp: int, t: int, base: int, size: int, pages: int) -> None:
        k = self.kernel
        f = k.open_enclave()
        # Records for the pages the trace can touch, not for the whole power-of-two ELRANGE.
        k.sgx.limit_records(f.e, pages)
        secs = Secs(size=size, baseaddr=base, ssaframesize=1, attributes=Attribute.MODE64BIT,
                    xfrm=3)
        if f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs.pack())):
            raise ReplayError("ECREATE of the replay enclave failed (EPC too small?)")
        image = _thread_image()
        for off, flags, data in image:
            arg = SgxEnclaveAddPages(src=data, offset=off, length=4096,
                                     secinfo=Secinfo(flags=flags).pack(), flags=SGX_PAGE_MEASURE)
            if f.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg):
                raise ReplayError("building the replay enclave failed (EPC too small?)")
        if f.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(_sigstruct(size))):
            raise ReplayError("EINIT of the replay enclave failed")
        e = f.e
        drv, ds = k.sgx, k.sgx.ds
        # The fault path adds a VA page every 512 pages it adds (sgx_encl_grow), and VA pages
        # are never reclaimed: an EPC too small for them all, the enclave's SECS and its
        # thread's pages would end in SIGBUS part of the way. Say so before the first request.
        pages = int(self.footprint[t])
        have = int(ds.e_page_cnt[e])
        vas = va_pages_for(have + pages)
        if vas + 1 + R_FIRST > self.cfg.epc_pages:
            raise ReplayError(f"not enough EPC for the replay enclave's VA pages: tenant {t}'s "
                              f"{pages} pages need {vas} resident VA pages (one per "
                              f"{SGX_VA_SLOT_COUNT} pages) beside its thread's, and the EPC "
                              f"has {self.cfg.epc_pages}; give more --epc-pages")
        # Rows for them in the model's tables, so the compiled fault path finds them.
        self._most_vas.append(vas)
        drv.owner.reserve_va_rows(vas - va_pages_for(have))
        mm = k.new_mm(f"tenant{t}")
        f.mmap(mm, base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED)
        # The thread's TCS, SSA frame and stack stay resident: pinned off the LRU.
        for r in (R_TCS, R_SSA, R_STACK):
            ep = int(ds.e_first[e]) + r
            epc = drv.load_page(e, ep)
            self.mgr.unmark_reclaimable(epc)
            ds.ep_flags[ep] |= EP_PRESENT
        self.cpu.aspace[lp] = mm
        self.cpu.eenter(lp, base)
        self.rs.t[t, T_ENCL] = e
        self.rs.t[t, T_LP] = lp
        self.rs.t[t, T_NODE] = self.cpu.lp_node(lp)
        self.rs.t[t, T_STACK] = int(ds.ep_epc[int(ds.e_first[e]) + R_STACK])
        self.files.append(f)

    def grow_tenant(self, t: int, pages: int) -> None:
        """A one-pass replay met a larger id of its one tenant: a longer page table.

        Only the page-cache owner's table depends on the footprint (an enclave's ELRANGE
        cannot grow); it grows by half at least, so a trace whose ids rise chunk by chunk
        copies it a few times, not once per chunk.
        """
        if self.sgx or len(self.tenant_ids) != 1:
            raise ValueError("only a page-cache replay of one tenant can grow")
        cs = self.owner.state
        have = cs.resident.shape[0]
        if pages > have:
            resident = np.full(max(pages, have + have // 2), CP_NEW, np.int32)
            resident[:have] = cs.resident
            self.owner.state = cs._replace(resident=table(resident))
        self.footprint[t] = max(int(self.footprint[t]), pages)

    # -------------------------------------------------------------- replay
    def entries(self, tenants: np.ndarray, pages: np.ndarray) -> np.ndarray:
        """Each request's entry in its owner's table, the engine's fourth column: under
        ``sgx`` the driver's record of the page (its enclave's first record, past the
        thread's own pages, plus the page), otherwise its page-cache slot.

        An enclave's records stay where they are for its life, so the entries of a chunk
        can be computed before its turn, on the thread that reads ahead.
        """
        pages = np.asarray(pages, dtype=np.int64)
        e = self.rs.e_of_tenant
        if self.sgx:
            first = self.mgr.owner_states()[0].e_first
            base = np.where(e >= 0, first[np.maximum(e, 0)] + R_FIRST, 0)
        else:
            base = e
        if len(self.tenant_ids) == 1:
            b = int(base[self.tenant_ids[0]])
            return pages if b == 0 else pages + b
        return base[tenants] + pages

    def feed(self, tenants: np.ndarray, pages: np.ndarray, writes: np.ndarray,
             entries: np.ndarray | None = None) -> None:
        """Replay requests; ``entries`` (of :meth:`entries`) when computed already."""
        tenants, pages, writes = engine_args(tenants, pages, writes)
        if self.run_engine(tenants, pages, writes, 0, entries) >= 0:
            raise ReplayError(f"request {int(self.rs.cnt[RC_REQUESTS])}: the enclave got "
                              f"SIGBUS (no EPC page could be found)")

    def run_engine(self, tenants: np.ndarray, pages: np.ndarray, writes: np.ndarray,
                   start: int, entries: np.ndarray | None = None) -> int:
        """Replay requests ``start`` on (of :func:`engine_args`' types), growing the series
        as the engine asks; returns -1, or the index of the request that failed."""
        entries = table(np.ascontiguousarray(self.entries(tenants, pages) if entries is None
                                             else entries, dtype=np.int64))
        while True:
            self._grow_series()
            if self.sgx:
                self._reserve_va_rows()
            # The owners' tuples are read at every call: a VM sharing the host replaces
            # the KVM owner's when it opens /dev/sgx_vepc or maps its EPT range.
            bad = self.engine(self.mgr.owner_states(), self.mgr.ms, self.cpu.st, self.rs,
                              tenants[start:], pages[start:], writes[start:],
                              entries[start:])
            if bad >= 0:
                return start + bad
            if bad == -1:
                return -1
            start += -bad - 1

    def _reserve_va_rows(self) -> None:
        """Rows for every VA page the enclaves may still add (one per 512 pages an enclave
        adds), in the driver's and the processor's tables: compiled code cannot grow them,
        and a VM sharing the host takes rows between chunks."""
        ds = self.kernel.sgx.ds
        e = self.rs.t[self.tenant_ids, T_ENCL]
        self.kernel.driver_owner.reserve_va_rows(
            int(np.maximum(self._most_vas - ds.e_nva[e], 0).sum()))

    def _grow_series(self) -> None:
        rs = self.rs
        if rs.series_n[0] > rs.series.shape[0] // 2 and rs.series.shape[0] >= MAX_SERIES:
            self._coarsen_series()
        elif rs.series_n[0] > rs.series.shape[0] // 2:
            cap = rs.series.shape[0]
            bigger = np.zeros((cap * 2, 4), np.int64)
            bigger[:cap] = rs.series
            held = np.zeros((cap * 2, rs.tseries.shape[1]), np.int32)
            held[:cap] = rs.tseries
            self.rs = rs._replace(series=table(bigger), tseries=table(held))

    def _coarsen_series(self) -> None:
        """Keep the samples at even multiples of the step and double it: the series of a
        run however long (or of a step however short) stays within MAX_SERIES samples."""
        rs = self.rs
        n = int(rs.series_n[0])
        kept = rs.series[1:n:2].copy(), rs.tseries[1:n:2].copy()
        m = len(kept[0])
        rs.series[:m], rs.tseries[:m] = kept
        rs.series[m:], rs.tseries[m:] = 0, 0
        step = 2 * int(rs.v[V_CLK + CL_STEP])
        rs.v[V_SERIES_N] = m
        rs.v[V_CLK + CL_STEP] = step
        rs.v[V_CLK + CL_NEXT_SAMPLE] = -(-int(rs.v[V_CLK + CL_NEXT_SAMPLE]) // step) * step

    def result(self, wall_s: float) -> ReplayResult:
        rs, cfg = self.rs, self.cfg
        if self.sgx:
            self.mgr.idle()      # the trace is over: ksgxd's last write-backs end
        c = self.mgr.counters()
        ghz = cfg.platform.ghz
        requests = int(rs.cnt[RC_REQUESTS])
        faults = int(rs.cnt[RC_FAULTS])
        thread = int(rs.clk[CL_THREAD])
        work = int(rs.clk[CL_WORK])
        summary: dict[str, Any] = {
            "policy": cfg.policy, "platform": cfg.platform.name, "epc_pages": cfg.epc_pages,
            "enclaves": len(self.tenant_ids), "footprint_pages": int(self.footprint.sum()),
            "requests": requests, "hits": int(rs.cnt[RC_HITS]), "faults": faults,
            "miss_ratio": faults / requests if requests else 0.0,
            "eaug": int(rs.cnt[RC_EAUG]), "eldu": int(rs.cnt[RC_ELDU]),
            "ewb": c["ewb"], "etrack": c["etrack"], "ipi": c["ipi"],
            "ebusy_waits": int(rs.cnt[RC_EBUSY]), "ipi_aex": int(rs.cnt[RC_IPI_AEX]),
            "tlb_entries": cfg.platform.tlb_entries if self.sgx else 0,
            "fault_log": int(rs.flog.shape[0]),
            "tlb_walks": int(rs.cnt[RC_WALKS]),
            "tlb_shootdowns": c["tlb_shootdowns"],
            "ksgxd_wakeups": c["ksgxd_wakeups"], "ksgxd_batches": c["ksgxd_batches"],
            "reclaimed_ksgxd": c["reclaimed_ksgxd"], "reclaimed_direct": c["reclaimed_direct"],
            "virtual_time_s": thread / (ghz * 1e9),
            "virtual_time_breakdown_s": {
                "work": work / (ghz * 1e9),
                "faults": int(rs.clk[CL_FAULT]) / (ghz * 1e9),
                "waiting_for_ksgxd": int(rs.clk[CL_WAIT]) / (ghz * 1e9),
                "page_walks": int(rs.cnt[RC_WALKS]) * int(rs.cost[K.K_PAGE_WALK]) / (ghz * 1e9),
            },
            "ksgxd": cfg.ksgxd,
            "ksgxd_busy_s": c["ksgxd_cycles"] / (ghz * 1e9),
            "slowdown": thread / work if work else 1.0,
            "wall_s": wall_s,
            "requests_per_s": requests / wall_s if wall_s > 0 else 0.0,
            "sgx_nr_free_pages": self.mgr.sgx_nr_free_pages,
        }
        per = []
        for t in self.tenant_ids:
            r, f, a, d = (int(x) for x in rs.e_cnt[t])
            per.append({"tenant": t, "pages": int(self.footprint[t]), "requests": r,
                        "faults": f, "eaug": a, "eldu": d,
                        "miss_ratio": f / r if r else 0.0})
        n = int(rs.series_n[0])
        m = min(int(rs.flog_n[0]), rs.flog.shape[0])
        # A view, not a copy: a copy doubled the log's memory at the end of the run (the
        # log's pages past ``m`` were never written, so they were never resident).
        faults = rs.flog[:m]
        return ReplayResult(summary, per, rs.series[:n].copy(), faults,
                            rs.tseries[:n].copy(), rs.t_sampled.copy())


Beside = Callable[["Replay"], Callable[[float], None]]


def replay_chunks(cfg: ReplayConfig, reader_factory: Any, *, progress: Any = None,
                  beside: Beside | None = None, slices: int = 1,
                  make_replay: Any = None) -> ReplayResult:
    """Replay a trace: ``reader_factory()`` yields chunks (called twice: scan, then replay;
    once for a one-page-per-miss policy over a binary trace without tenants).

    ``progress(n)`` is told of each ``n`` requests replayed; one with a ``stage(text)``
    method is also told what runs before the first request (the scan, the build).

    ``make_replay(cfg, footprint, tenant_ids)`` builds the machine instead of
    :class:`Replay` (a subclass: enclaves in EPC cgroups, ``sim/capacity.py``).

    ``wall_s`` runs from starting to read the trace to the end of the simulation; compiling
    the engine (once per process, before that) is reported apart as ``compile_s``.

    ``beside`` shares the machine with other work (virtual machines): called once with the
    built :class:`Replay`, it returns a function that is given, after each of ``slices``
    equal parts of the trace, the fraction of requests replayed so far, and runs its own
    share up to there on the same processor and kernel.
    """
    fix_mmap_threshold()
    reader_factory = _in_pieces(reader_factory)
    warm = time.perf_counter()
    warm_up(cfg)
    compile_s = time.perf_counter() - warm
    # The replay makes no reference cycles; a collection of a large process's objects in
    # the middle of it took up to a tenth of a run, so the collector waits until the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        ids = IdMap()
        one = None
        if cfg.policy != "sgx" and make_replay is None and beside is None:
            one = _replay_one_pass(cfg, reader_factory, progress)
        if one is not None:
            rp, t1 = one
        else:
            rp, t1 = _replay_two_passes(cfg, reader_factory, ids, progress, beside, slices,
                                        make_replay)
        t2 = time.perf_counter()
    finally:
        if collecting:
            gc.enable()
    res = rp.result(t2 - t0)
    res.summary["compile_s"] = compile_s
    res.summary["setup_s"] = t1 - t0
    res.summary["replay_s"] = t2 - t1
    res.summary["id_map"] = "identity" if ids.identity else "hash"
    res.summary["passes"] = 1 if one is not None else 2
    res.summary["state_bytes"] = state_bytes(rp) + ids.bytes()
    # Not the model's state: the trace itself, kept after the scan when it fits KEEP_BYTES.
    res.summary["trace_bytes_held"] = ids.kept_bytes()
    res.summary["state_bytes_per_page"] = res.summary["state_bytes"] / max(
        1, cfg.epc_pages + int(rp.footprint.sum()))
    return res


def replay_pages(cfg: ReplayConfig, pages: np.ndarray,
                 writes: np.ndarray | None = None) -> ReplayResult:
    """Replay one enclave's accesses held in memory (page numbers; ``writes`` per access,
    none by default) as :func:`replay_chunks` replays a trace of one chunk."""
    n = len(pages)
    w = np.zeros(n, np.bool_) if writes is None else np.asarray(writes, np.bool_)

    def chunks() -> Iterable[Chunk]:
        yield Chunk(np.asarray(pages).astype(np.uint64), np.zeros(n, np.uint32), w)
    return replay_chunks(cfg, chunks)


def _replay_one_pass(cfg: ReplayConfig, reader_factory: Any,
                     progress: Any) -> tuple[Replay, float] | None:
    """Read the trace once: a one-page-per-miss policy over one tenant whose chunks carry
    their largest id (binary formats without tenants) needs no footprint scan first, since
    its page table can grow as larger ids come.

    Returns the machine and when its first chunk began, or None when the trace is not such a
    trace (found at its first chunk, or, with ids past ``IdMap.IDENTITY_LIMIT``, later: the
    requests replayed so far are then dropped and the caller starts again in two passes).
    """
    rp: Replay | None = None
    t1 = 0.0
    done = 0
    for ch in read_ahead(reader_factory()):
        n = ch.obj.shape[0]
        if n == 0:
            continue
        top = _max_obj(ch)
        if top < 0 or top >= IdMap.IDENTITY_LIMIT:
            if done and progress is not None:
                progress(-done)
            return None
        if rp is None:
            rp = Replay(cfg, np.array([top + 1], dtype=np.int64), [0])
            t1 = time.perf_counter()
        elif top >= rp.footprint[0]:
            rp.grow_tenant(0, top + 1)
        # Identity: ids below IDENTITY_LIMIT are page numbers, the same bits as int64.
        rp.feed(ch.tenant, ch.obj.view(np.int64), ch.write)
        done += n
        if progress is not None:
            progress(n)
    return None if rp is None else (rp, t1)


def _stage(progress: Any, text: str) -> None:
    """Name the work before the first request: a trace over thousands of tenants builds
    as many enclaves first (about a millisecond each), a large trace is scanned whole."""
    say = getattr(progress, "stage", None)
    if say is not None:
        say(text)


# Requests per piece the read-ahead thread prepares: the columns it computes for a piece
# (8 bytes a request) exist for at most three pieces at a time, 1.5 MiB whatever the
# reader's chunks are; a piece replays in about 10 ms, so the calls cost nothing.
PIECE = 1 << 16


def _in_pieces(factory: Any) -> Any:
    """``factory``, whose trace readers decode chunks of ``PIECE`` requests at most: the
    decoded chunks in flight (up to three, beside the file's pages being decoded) are then
    a few megabytes, not the 40 MB of three chunks of a million requests, which the smallest
    scale cells saw as 20 bytes per simulated page more."""
    def make() -> Any:
        reader = factory()
        if isinstance(reader, TraceReader) and reader.chunk_requests > PIECE:
            reader.chunk_requests = PIECE
        return reader
    return make


def _pieces(chunks: Iterable[Any], size: int = PIECE) -> Iterator[Any]:
    """The chunks cut into pieces of at most ``size`` requests (views, no copy)."""
    for ch in chunks:
        n = ch.obj.shape[0]
        if n <= size:
            yield ch
            continue
        for a in range(0, n, size):
            yield Chunk(ch.obj[a:a + size], ch.tenant[a:a + size], ch.write[a:a + size])


def _replay_two_passes(cfg: ReplayConfig, reader_factory: Any, ids: IdMap, progress: Any,
                       beside: Beside | None, slices: int,
                       make_replay: Any) -> tuple[Replay, float]:
    """Scan the trace for each tenant's footprint, build the machine, replay."""
    _stage(progress, "scanning the trace")
    total = ids.scan(reader_factory, keep_bytes=KEEP_BYTES, epc_pages=cfg.epc_pages)
    if not ids.tenant_ids:
        raise ValueError("the trace has no requests")
    n = len(ids.tenant_ids)
    _stage(progress, f"building {n} enclave{'s' if n != 1 else ''}" if cfg.policy == "sgx"
           else "building the page tables")
    rp = (make_replay or Replay)(cfg, ids.footprint, ids.tenant_ids)
    step = beside(rp) if beside is not None else None
    part = max(1, -(-total // max(1, slices)))
    done = 0

    def prepare(ch: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        pages = ids.map(ch)
        return ch, pages, rp.entries(ch.tenant, pages)

    t1 = time.perf_counter()
    # Kept chunks too: their ids are mapped on the other thread while the engine runs.
    chunks = ids.kept if ids.kept is not None else reader_factory()
    for ch, pages, entries in read_ahead(_pieces(chunks), prepare=prepare):
        n = ch.obj.shape[0]
        width = part if step is not None else max(n, 1)
        for a in range(0, n, width):
            b = min(n, a + width)
            rp.feed(ch.tenant[a:b], pages[a:b], ch.write[a:b], entries[a:b])
            done += b - a
            if step is not None:
                step(done / total)
        if progress is not None:
            progress(n)
    if step is not None:
        step(1.0)
    return rp, t1


# A trace up to this size is read once and kept for the replay pass; a larger one is read
# twice (footprint scan, then replay), so a trace larger than memory still replays.
KEEP_BYTES = 1 << 30
# What a kept request takes: its id, tenant and write flag.
REQUEST_BYTES = 8 + 4 + 1

_warmed: set[str] = set()


def _tiny(cls: type[Replay], policy: str, kvm: bool,
          platform: K.Platform | None = None) -> Replay:
    """The small machine :func:`warm_up` replays on and :func:`compile_ahead` types the
    engine with: one tenant of 600 pages on 64 EPC pages (the default platform when none
    is given)."""
    cfg = ReplayConfig(policy=policy, epc_pages=64, low=4, high=8, batch=4, fault_log=4,
                       kvm=kvm and policy == "sgx")
    if platform is not None:
        cfg.platform = platform
    return cls(cfg, np.array([600], dtype=np.int64), [0])


def warm_up(cfg: ReplayConfig) -> None:
    """Compile the engine for ``cfg.policy`` on a tiny machine (once per process)."""
    kind = ("sgx+kvm" if cfg.kvm else "sgx") if cfg.policy == "sgx" else "cache"
    if kind in _warmed:
        return
    rp = _tiny(Replay, cfg.policy, cfg.kvm, cfg.platform)
    pages = (np.arange(512, dtype=np.int64) * 7) % 128
    rp.feed(np.zeros(512, np.uint32), pages, np.zeros(512, np.bool_))
    rp.result(1.0)
    _warmed.add(kind)


# The processor's leaves of the sgx engine, in the order a side process compiles them
# (compile_ahead): first those only the reclaim and fault paths call, then those the build
# of an enclave also enters from Python. The command meanwhile builds its kernel, whose
# boot and reclaim path it compiles itself; by the time it reaches these, they are in the
# cache (BENCHMARKS.md, "Compile time": the first replay's compile, 41 s alone, 24 s beside
# a side, on two busy cores).
_AHEAD_LEAVES = ("ewb", "eblock", "etrack", "eaccept", "eresume", "aex", "eldu_at", "eaug",
                 "epa")
_AHEAD_ENTRIES = ("ecreate", "eadd", "eextend", "eenter")


def _sample_args(fn: Any, st: Any, out: np.ndarray) -> tuple[Any, ...]:
    """Arguments of a leaf's types: the processor's state, the EWB record, and zeros (an
    int64 for each ``int``, a boolean for each ``bool``)."""
    args: list[Any] = []
    for name, p in inspect.signature(fn.py_func).parameters.items():
        args.append(st if name == "st" else out if name == "out"
                    else False if p.annotation == "bool" else 0)
    return tuple(args)


class _Shell(Replay):
    """A replay's machine with no enclave built: the engine's argument types, no more."""

    def _build_enclave(self, lp: int, t: int, base: int, size: int, pages: int) -> None:
        self._most_vas.append(0)


def compile_ahead(policy: str = "sgx", kvm: bool = False) -> None:
    """Compile what :func:`warm_up` of ``policy`` needs late, without running it: the
    fault path's leaves, then the engine (the work of the side process a first replay
    starts beside itself, :mod:`epcsim.compiling`). The engine is compiled for the types
    of a machine that has no enclave, which are those of every replay's (``kvm``: of a
    host shared with virtual machines)."""
    if policy == "sgx":
        st = Processor(epc_size=64 * 4096, n_lps=2).st
        out = table(np.zeros(L.W_LEN, dtype=np.uint64))
        if kvm:
            # The guest's EPT walk, which the leaves call deferred: the command's first VM
            # needs it (vmx.GuestCpu).
            compile_for(L.ept_walk, (st, 0, False))
        for name in _AHEAD_LEAVES + _AHEAD_ENTRIES:
            fn = getattr(L, name)
            compile_for(fn, _sample_args(fn, st, out), python=name in _AHEAD_ENTRIES)
    rp = _tiny(_Shell, policy, kvm)
    cols = engine_args(np.zeros(4, np.uint32), np.zeros(4, np.int64), np.zeros(4, np.bool_))
    compile_for(rp.engine, (rp.mgr.owner_states(), rp.mgr.ms, rp.cpu.st, rp.rs, *cols,
                            table(np.zeros(4, np.int64))), python=True)


def state_bytes(rp: Replay) -> int:
    """Bytes of every array of the processor, the manager and the owners."""
    total = 0
    for tup in (rp.cpu.st, rp.mgr.ms, *rp.mgr.owner_states()):
        total += sum(a.nbytes for a in tup if isinstance(a, np.ndarray))
    # The replay's own counters; its series and fault log are results, not state.
    return total + sum(a.nbytes for name, a in rp.rs._asdict().items()
                       if name not in ("series", "flog", "tseries"))
