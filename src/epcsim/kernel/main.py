"""The EPC memory manager: free lists, ``alloc(owner, reclaim)``, the reclaim LRU, ksgxd.

The kernel's ``arch/x86/kernel/cpu/sgx/main.c``, as the 2018 design had it: the manager owns
every EPC page and reclaims through the owner protocol (:mod:`epcsim.kernel.owner`), so it
knows no owner. Pages are integers; per page the manager keeps 14 bytes:

==========  ====  ===============================================================
``nxt/prv``  4+4  links of the one list the page is on (a node's free list or the LRU)
``where``    1    FREE, LRU, ISOLATED, UNTRACKED (in use, not reclaimable), LEAKED;
                  bit 7 is the policy's reference bit (clock)
``kind``     1    owner kind (index into the owner table)
``oid``      4    owner id (meaning is the owner's: an enclave page, a vEPC page...)
==========  ====  ===============================================================

Lists: one free list per NUMA node (allocation takes the head, freeing appends to the tail, so
each node is FIFO) and one reclaim LRU (head = oldest), as in kernel-sgx.md §2.

EPC cgroups (kernel-sgx.md §7.2) add, only when attached, one more LRU per cgroup after the
global one (the root cgroup's LRU *is* the global one), a ``cg`` entry per page naming the
cgroup it is charged to, and a charge table ``cgt`` of which the manager reads three columns
(parent, usage, reclaimed): enough to put a page on its cgroup's LRU and to uncharge it when
it is freed. Every decision about limits is made by the charge operations handed to
:func:`make_reclaimer` (:class:`ChargeOps`), as owners are handed over; with no cgroup
attached ``cg`` and ``cgt`` are empty and the per-page state stays 14 bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from epcsim.arch import SGX_NR_HIGH_PAGES, SGX_NR_LOW_PAGES, SGX_NR_TO_SCAN, SGX_NR_TO_SCAN_MAX
from epcsim.dlist import dl_del, dl_move_tail, dl_push_tail
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor
from epcsim.jit import (
    from_words,
    njit,
    njit_closure,
    njit_closure_inline,
    njit_inline,
    state_words,
    unmanaged,
)
from epcsim.kernel.owner import WRITE_FREED, WRITE_RETRY, Dispatch, Owner, dispatch_for

# errno values the kernel returns (negated).
ENOMEM = 12
EBUSY = 16
EAGAIN = 11
EFAULT = 14

# Where a page is.
W_FREE = 0
W_LRU = 1
W_ISOLATED = 2
W_UNTRACKED = 3
W_LEAKED = 4
W_MASK = 0x7F
W_REF = 0x80

NO_LINK = -1
HINT_AHEAD = 4      # pages ahead of the batch's head whose owner records are prefetched

# Policies.
POLICY_SGX = 0     # the kernel's: FIFO list, second chance on the owner's accessed bit, batch
POLICY_LRU = 1     # move to the tail on every access; evict the head
POLICY_FIFO = 2    # evict the head; accesses change nothing
POLICY_CLOCK = 3   # one reference bit, set on access; the head with the bit set gets a second
POLICY_NAMES = {"sgx": POLICY_SGX, "lru": POLICY_LRU, "fifo": POLICY_FIFO, "clock": POLICY_CLOCK}

# Parameters and scalars (MgrState.p).
P_LOW = 0
P_HIGH = 1
P_BATCH = 2
P_POLICY = 3
P_WAKE = 4          # ksgxd has been woken and not yet gone back to sleep
P_CPU = 5           # 1 while ksgxd runs (whose virtual CPU the work is charged to)
P_NR_FREE = 6       # sgx_nr_free_pages
P_NNODES = 7
P_EV_N = 8          # events logged so far (counted only while the event log is on)
P_CG = 9            # the cgroup of the task allocating now (``current``'s misc cgroup)
P_LEN = 16

# Counters (MgrState.cnt): kernel names where the kernel has one.
COUNTERS = (
    "alloc", "alloc_ebusy", "alloc_enomem", "alloc_eagain", "freed", "leaks",
    "isolated", "get_failed", "refused_young", "rotated", "blocked", "written", "write_retry",
    "etrack", "ipi", "ewb", "eldu", "direct_reclaims", "ksgxd_wakeups", "ksgxd_batches",
    "reclaimed_direct", "reclaimed_ksgxd", "ewb_ksgxd", "etrack_ksgxd", "ipi_ksgxd",
)
C = {name: i for i, name in enumerate(COUNTERS)}
C_ALLOC, C_ALLOC_EBUSY, C_ALLOC_ENOMEM, C_ALLOC_EAGAIN, C_FREED, C_LEAKS = range(6)
(C_ISOLATED, C_GET_FAILED, C_REFUSED, C_ROTATED, C_BLOCKED, C_WRITTEN,
 C_WRITE_RETRY) = range(6, 13)
C_ETRACK, C_IPI, C_EWB, C_ELDU = range(13, 17)
C_DIRECT, C_WAKEUPS, C_KSGXD_BATCHES, C_RECLAIMED_DIRECT, C_RECLAIMED_KSGXD = range(17, 22)
C_EWB_KSGXD, C_ETRACK_KSGXD, C_IPI_KSGXD = range(22, 25)

# Event log records (MgrState.ev rows: event, page, arg).
EV_ALLOC = 1
EV_FREE = 2
EV_ISOLATE = 3
EV_REFUSE = 4
EV_WRITE = 5
EV_LEAK = 6
EV_GET_FAILED = 7
EV_ROTATE = 8
EV_WAKE = 9
EV_NAMES = {EV_ALLOC: "alloc", EV_FREE: "free", EV_ISOLATE: "isolate", EV_REFUSE: "refuse",
            EV_WRITE: "write", EV_LEAK: "leak", EV_GET_FAILED: "get_failed",
            EV_ROTATE: "rotate", EV_WAKE: "wake"}


class MgrState(NamedTuple):
    nxt: np.ndarray     # i32 per page
    prv: np.ndarray     # i32 per page
    where: np.ndarray   # u8 per page
    kind: np.ndarray    # u8 per page
    oid: np.ndarray     # u32 per page
    head: np.ndarray    # i64 per list: NUMA nodes 0..n-1, then the LRU at index n
    tail: np.ndarray    # i64 per list
    count: np.ndarray   # i64 per list
    cnt: np.ndarray     # i64 counters
    p: np.ndarray       # i64 parameters and scalars
    ev: np.ndarray      # i64 [cap, 3] event log (cap 0: off)
    chunk: np.ndarray   # i64 [batch]: the pages of the batch being reclaimed
    cg: np.ndarray      # u16 per page: the cgroup it is charged to (length 0: no cgroups)
    cgt: np.ndarray     # i64 [cgroups, columns] charge table (0 rows: no cgroups)


# Columns of the charge table the manager itself maintains; the cgroup controller owns the rest.
CGT_PARENT = 0      # parent cgroup, -1 for the root
CGT_USAGE = 1       # pages charged to the cgroup's subtree (misc.current / 4096)
CGT_RECLAIMED = 2   # pages written back from this cgroup's own LRU
CGT_MANAGER_COLS = 3


# ----------------------------------------------------------------------------- lists

@njit_inline
def list_push_tail(ms: MgrState, lst: int, page: int) -> None:
    dl_push_tail(ms.head, ms.tail, ms.nxt, ms.prv, lst, page)
    ms.count[lst] += 1


@njit_inline
def list_pop_head(ms: MgrState, lst: int) -> int:
    page = ms.head[lst]
    if page == NO_LINK:
        return NO_LINK
    list_del(ms, lst, page)
    return page


@njit_inline
def list_del(ms: MgrState, lst: int, page: int) -> None:
    dl_del(ms.head, ms.tail, ms.nxt, ms.prv, lst, page)
    ms.count[lst] -= 1


@njit_inline
def lru_list(ms: MgrState) -> int:
    return ms.p[P_NNODES]


@njit_inline
def page_lru(ms: MgrState, page: int) -> int:
    """``sgx_epc_page_lru``: the LRU of the cgroup the page is charged to (root: global)."""
    if ms.cg.shape[0] == 0:
        return ms.p[P_NNODES]
    return ms.p[P_NNODES] + np.int64(ms.cg[page])


@njit_inline
def cg_charge(ms: MgrState, cg: int) -> None:
    """Count one page in ``cg`` and every ancestor (the limits were checked by the caller)."""
    c = cg
    while c >= 0:
        ms.cgt[c, CGT_USAGE] += 1
        c = ms.cgt[c, CGT_PARENT]


@njit_inline
def cg_uncharge(ms: MgrState, cg: int) -> None:
    c = cg
    while c >= 0:
        ms.cgt[c, CGT_USAGE] -= 1
        c = ms.cgt[c, CGT_PARENT]


@njit_inline
def where(ms: MgrState, page: int) -> int:
    return ms.where[page] & W_MASK


@njit_inline
def set_where(ms: MgrState, page: int, w: int) -> None:
    ms.where[page] = w


@njit_inline
def log(ms: MgrState, event: int, page: int, arg: int) -> None:
    # With the log off (a replay) not even the count is kept: five events per fault each
    # loaded and stored the one counter, a chain through memory across the whole batch.
    if ms.ev.shape[0] == 0:
        return
    n = ms.p[P_EV_N]
    if n < ms.ev.shape[0]:
        ms.ev[n, 0] = event
        ms.ev[n, 1] = page
        ms.ev[n, 2] = arg
    ms.p[P_EV_N] = n + 1


@njit_inline
def page_node(st: Any, page: int) -> int:
    for i in range(st.sec_first.shape[0]):
        if st.sec_first[i] <= page < st.sec_first[i] + st.sec_npages[i]:
            return np.int64(st.sec_node[i])
    return 0


# ----------------------------------------------------------------------------- free lists

@njit_inline
def sgx_free_epc_page(ms: MgrState, st: Any, page: int) -> None:
    """Return a page already in the uninitialised EPCM state to its node's free list."""
    if ms.cg.shape[0] != 0:
        # The page remembers its cgroup from allocation to here (sgx_cgroup_uncharge).
        cg_uncharge(ms, np.int64(ms.cg[page]))
        ms.cg[page] = 0
    set_where(ms, page, W_FREE)
    ms.kind[page] = 0
    ms.oid[page] = 0
    list_push_tail(ms, page_node(st, page), page)
    ms.p[P_NR_FREE] += 1
    ms.cnt[C_FREED] += 1
    log(ms, EV_FREE, page, 0)


@njit_inline
def take_free_page(ms: MgrState, node: int) -> int:
    """``__sgx_alloc_epc_page``: the head of the first non-empty free list from ``node`` on."""
    n = ms.p[P_NNODES]
    start = node if 0 <= node < n else 0
    lst = start
    for _ in range(n):
        page = list_pop_head(ms, lst)
        if page != NO_LINK:
            ms.p[P_NR_FREE] -= 1
            return page
        lst += 1            # not ``% n``: a division costs more than the rest of the loop
        if lst == n:
            lst = 0
    return NO_LINK


@njit_inline
def sgx_encl_free_epc_page(ms: MgrState, st: Any, page: int) -> int:
    """EREMOVE the page and free it; a failing EREMOVE leaks it, as the kernel does."""
    w = where(ms, page)
    if w == W_LRU:
        list_del(ms, page_lru(ms, page), page)
    rc = L.eremove(st, page, L.CTX_HOST)
    if rc != 0:
        set_where(ms, page, W_LEAKED)
        ms.cnt[C_LEAKS] += 1
        log(ms, EV_LEAK, page, rc)
        return rc
    sgx_free_epc_page(ms, st, page)
    return 0


@njit_inline
def sgx_mark_page_reclaimable(ms: MgrState, page: int) -> None:
    set_where(ms, page, W_LRU)
    list_push_tail(ms, page_lru(ms, page), page)


@njit_inline
def sgx_unmark_page_reclaimable(ms: MgrState, page: int) -> int:
    """Take a page off the LRU: -EBUSY while the reclaimer holds it isolated."""
    w = where(ms, page)
    if w == W_ISOLATED:
        return -EBUSY
    if w == W_LRU:
        list_del(ms, page_lru(ms, page), page)
        set_where(ms, page, W_UNTRACKED)
    return 0


@njit_inline
def sgx_should_reclaim(ms: MgrState, watermark: int) -> bool:
    return ms.p[P_NR_FREE] < watermark and lru_pages(ms) > 0


@njit_inline
def lru_pages(ms: MgrState) -> int:
    """Pages on every LRU (the global one, and each cgroup's when cgroups are attached)."""
    n = ms.p[P_NNODES]
    if ms.head.shape[0] == n + 1:
        return ms.count[n]
    return np.int64(ms.count[n:].sum())


@njit_inline
def touch(ms: MgrState, page: int) -> None:
    """An access the policy sees (the kernel's own policy sees accesses through owners)."""
    policy = ms.p[P_POLICY]
    if policy == POLICY_LRU:
        if where(ms, page) == W_LRU:
            dl_move_tail(ms.head, ms.tail, ms.nxt, ms.prv, page_lru(ms, page), page)
    elif policy == POLICY_CLOCK:
        ms.where[page] |= W_REF


@njit_inline
def _counted(ms: MgrState, counter: int, ksgxd_counter: int) -> None:
    ms.cnt[counter] += 1
    if ms.p[P_CPU] == 1:
        ms.cnt[ksgxd_counter] += 1


@njit_inline
def count_etrack(ms: MgrState) -> None:
    """Owners report the ETRACKs, IPIs and EWBs of their write operation here."""
    _counted(ms, C_ETRACK, C_ETRACK_KSGXD)


@njit_inline
def count_ipi(ms: MgrState) -> None:
    _counted(ms, C_IPI, C_IPI_KSGXD)


@njit_inline
def count_ewb(ms: MgrState) -> None:
    _counted(ms, C_EWB, C_EWB_KSGXD)


# ----------------------------------------------------------------------------- assembly

class Reclaimer(NamedTuple):
    """The manager's compiled entry points for one owner table."""

    reclaim_pages: Any
    alloc: Any
    ksgxd: Any
    cache: bool
    reclaim_list: Any = None
    alloc_free: Any = None


class ChargeOps(NamedTuple):
    """What a resource controller hands the manager at assembly (the EPC cgroup's charging).

    All are compiled; the manager calls them and never looks at how they decide:

    ``try_charge(os, ms, st, reclaim)``  charge ``current``'s cgroup one page, reclaiming
        from its subtree as needed: the cgroup (>= 0), or -ENOMEM / -EBUSY / -EAGAIN
    ``commit(ms, page, cg)``    the page now belongs to ``cg`` (freeing it uncharges)
    ``cancel(ms, cg)``          undo a charge whose physical allocation failed
    ``reclaim_global(os, ms, st, nr)``  global reclaim (ksgxd, physical EPC exhausted)
    ``lru_pages(ms)``           pages on all LRUs (``sgx_can_reclaim_global``)
    ``async_work(os, ms, st)``  run queued per-cgroup reclaim work; returns batches run
    """

    try_charge: Any
    commit: Any
    cancel: Any
    reclaim_global: Any
    lru_pages: Any
    async_work: Any


ChargeFactory = Any   # (reclaim_list, cache) -> ChargeOps

_reclaimers: dict[tuple[int, bool, int], Reclaimer] = {}


def make_reclaimer(d: Dispatch, inline_batch: bool = False,
                   charge: ChargeFactory | None = None) -> Reclaimer:
    """Close the reclaim batch, allocation and ksgxd over an owner table's dispatchers.

    ``charge``, when given, is called with the compiled batch (over one LRU) and returns the
    :class:`ChargeOps` allocation and ksgxd go through.
    """
    hit = _reclaimers.get((id(d), inline_batch, id(charge)))
    if hit is not None:
        return hit
    get, put, reclaim, block, write = d.get, d.put, d.reclaim, d.block, d.write
    hint, hints = d.prefetch, d.hints
    closure_inline = functools.partial(njit_closure_inline, cache=d.cache)
    closure = functools.partial(njit_closure, cache=d.cache)
    inline = inline_batch and charge is None

    @closure_inline
    def reclaim_batch(os: Any, ms: MgrState, st: Any, nr: int, lst: int) -> int:
        """One batch from LRU ``lst`` in the v13 order: isolate+get, reclaim, block all,
        write+put, free.

        Returns the number of pages isolated (what the cgroup series calls "attempted").
        Refused pages go back to the tail of their own cgroup's LRU.
        """
        policy = ms.p[P_POLICY]
        # The batch's own array, not a new one per call: with one page per miss the
        # allocation cost more than the rest of the batch.
        nr = min(nr, ms.chunk.shape[0])
        chunk = ms.chunk
        n = 0
        isolated = 0
        budget = 2 * ms.count[lst] + 1
        q = NO_LINK
        if hints:
            # The owner records of the pages a few places behind the head start loading
            # while the head's are used: one cache miss after another otherwise.
            q = ms.head[lst]
            for _ in range(HINT_AHEAD):
                if q == NO_LINK:
                    break
                hint(os, ms.kind[q], ms, st, q, ms.oid[q], 0)
                q = ms.nxt[q]
        while isolated < nr and ms.count[lst] > 0 and budget > 0:
            budget -= 1
            page = list_pop_head(ms, lst)
            if hints and q != NO_LINK:
                hint(os, ms.kind[q], ms, st, q, ms.oid[q], 0)
                q = ms.nxt[q]
            if policy == POLICY_CLOCK and (ms.where[page] & W_REF) != 0:
                ms.where[page] &= W_MASK
                list_push_tail(ms, lst, page)
                ms.cnt[C_ROTATED] += 1
                log(ms, EV_ROTATE, page, 0)
                continue
            set_where(ms, page, W_ISOLATED)
            isolated += 1
            ms.cnt[C_ISOLATED] += 1
            log(ms, EV_ISOLATE, page, 0)
            if get(os, ms.kind[page], ms, st, page, ms.oid[page], 0) == 0:
                set_where(ms, page, W_UNTRACKED)
                ms.cnt[C_GET_FAILED] += 1
                log(ms, EV_GET_FAILED, page, 0)
                continue
            chunk[n] = page
            n += 1
        age = 1 if policy == POLICY_SGX else 0
        m = 0
        for i in range(n):
            page = chunk[i]
            if reclaim(os, ms.kind[page], ms, st, page, ms.oid[page], age) == 0:
                set_where(ms, page, W_LRU)
                list_push_tail(ms, page_lru(ms, page), page)
                put(os, ms.kind[page], ms, st, page, ms.oid[page], 0)
                ms.cnt[C_REFUSED] += 1
                log(ms, EV_REFUSE, page, 0)
            else:
                chunk[m] = page
                m += 1
        for i in range(m):
            page = chunk[i]
            block(os, ms.kind[page], ms, st, page, ms.oid[page], 0)
            ms.cnt[C_BLOCKED] += 1
        for i in range(m):
            page = chunk[i]
            kind = ms.kind[page]
            oid = ms.oid[page]
            verdict = write(os, kind, ms, st, page, oid, 0)
            put(os, kind, ms, st, page, oid, 0)
            log(ms, EV_WRITE, page, verdict)
            if verdict == WRITE_FREED:
                ms.cnt[C_WRITTEN] += 1
                if ms.p[P_CPU] == 1:
                    ms.cnt[C_RECLAIMED_KSGXD] += 1
                else:
                    ms.cnt[C_RECLAIMED_DIRECT] += 1
                if ms.cg.shape[0] != 0:
                    ms.cgt[np.int64(ms.cg[page]), CGT_RECLAIMED] += 1
                sgx_free_epc_page(ms, st, page)
            elif verdict == WRITE_RETRY:
                ms.cnt[C_WRITE_RETRY] += 1
                set_where(ms, page, W_LRU)
                list_push_tail(ms, page_lru(ms, page), page)
            else:
                set_where(ms, page, W_UNTRACKED)
        return isolated

    def loop_over(step: Any, compiled: bool) -> Any:
        """One batch by ``step``, or ksgxd's loop of them, in one function.

        numba passes a compiled call every array of the state tuples, over six hundred
        words for the driver's, and ksgxd runs batch after batch: calling the batch once per
        batch spent a tenth of an ``sgx`` replay copying them. Over the driver this is one
        compiled function holding the one copy of the batch, entered by ksgxd once per
        wakeup and by allocation's direct reclaim once per batch.
        """
        @closure_inline
        def run_batches(os: Any, ms: MgrState, st: Any, nr: int, lst: int) -> int:
            """On ksgxd's CPU (``P_CPU`` 1) its loop: batches from LRU ``lst`` until free
            >= high or nothing is reclaimable, returning the batches run; elsewhere one
            batch, returning the pages isolated.

            The mode is read from the state, not passed: LLVM unswitched the loop on an
            argument, compiling the batch twice (a 320 s compile took 530 s).
            """
            batches = 0
            idle = 0
            while ms.p[P_CPU] == 0 or (ms.p[P_NR_FREE] < ms.p[P_HIGH] and all_lru_pages(ms) > 0):
                before = ms.p[P_NR_FREE]
                isolated = step(os, ms, st, nr, lst)
                if ms.p[P_CPU] == 0:
                    return isolated
                batches += 1
                ms.cnt[C_KSGXD_BATCHES] += 1
                if ms.p[P_NR_FREE] == before:
                    idle += 1
                    if idle > 2 * (all_lru_pages(ms) // max(ms.p[P_BATCH], 1) + 2):
                        break
                else:
                    idle = 0
            return batches
        if not compiled:
            return run_batches

        @closure
        def batches_words(wos: Any, wms: Any, wst: Any, nr: int, lst: int) -> int:
            return run_batches(from_words(wos), from_words(wms), from_words(wst), nr, lst)

        @closure_inline
        def reclaim_batches(os: Any, ms: MgrState, st: Any, nr: int, lst: int) -> int:
            """The compiled batches, entered with the states as words (one pointer each,
            where the tuples were over six hundred words a call)."""
            return batches_words(state_words(os), state_words(ms), state_words(st), nr, lst)
        return reclaim_batches

    if charge is None:
        @closure_inline
        def try_charge(os: Any, ms: MgrState, st: Any, do_reclaim: bool) -> int:
            return 0

        @closure_inline
        def commit(ms: MgrState, page: int, cg: int) -> None:
            pass

        @closure_inline
        def cancel(ms: MgrState, cg: int) -> None:
            pass

        @closure_inline
        def all_lru_pages(ms: MgrState) -> int:
            return ms.count[lru_list(ms)]

        @closure_inline
        def async_work(os: Any, ms: MgrState, st: Any) -> int:
            return 0

        # A batch over light owners is spliced into allocation and ksgxd (one page per miss:
        # a call would cost more than the batch).
        reclaim_batches = loop_over(reclaim_batch, not inline)
        if inline:
            sgx_reclaim_list = reclaim_batch
        else:
            @closure_inline
            def sgx_reclaim_list(os: Any, ms: MgrState, st: Any, nr: int, lst: int) -> int:
                return reclaim_batches(os, ms, st, nr, lst)
    else:
        @closure
        def sgx_reclaim_list(os: Any, ms: MgrState, st: Any, nr: int, lst: int) -> int:
            """One batch, compiled once for the cgroups' walks and allocation."""
            return reclaim_batch(os, ms, st, nr, lst)

        ops = charge(sgx_reclaim_list, d.cache)
        try_charge, commit, cancel = ops.try_charge, ops.commit, ops.cancel
        all_lru_pages, async_work = ops.lru_pages, ops.async_work
        reclaim_global = ops.reclaim_global

        @closure_inline
        def global_batch(os: Any, ms: MgrState, st: Any, nr: int, lst: int) -> int:
            return reclaim_global(os, ms, st, nr)

        reclaim_batches = loop_over(global_batch, False)

    if charge is None:
        @closure_inline
        def sgx_reclaim_pages(os: Any, ms: MgrState, st: Any, nr: int) -> int:
            """One batch from the global LRU."""
            return sgx_reclaim_list(os, ms, st, nr, lru_list(ms))

        reclaim_global = sgx_reclaim_pages

    @closure_inline
    def sgx_alloc_epc_page(os: Any, ms: MgrState, st: Any, kind: int, oid: int,
                           do_reclaim: bool, node: int) -> int:
        """A free page for (kind, oid), or -ENOMEM / -EBUSY as the kernel returns them."""
        cg = try_charge(os, ms, st, do_reclaim)
        if cg < 0:
            if cg == -ENOMEM:
                ms.cnt[C_ALLOC_ENOMEM] += 1
            elif cg == -EBUSY:
                ms.cnt[C_ALLOC_EBUSY] += 1
            else:
                ms.cnt[C_ALLOC_EAGAIN] += 1
            return cg
        rc = 0
        idle = 0
        while True:
            page = take_free_page(ms, node)
            if page != NO_LINK:
                set_where(ms, page, W_UNTRACKED)
                ms.kind[page] = kind
                ms.oid[page] = oid
                commit(ms, page, cg)
                ms.cnt[C_ALLOC] += 1
                log(ms, EV_ALLOC, page, kind)
                rc = page
                break
            if all_lru_pages(ms) == 0:
                ms.cnt[C_ALLOC_ENOMEM] += 1
                cancel(ms, cg)
                return -ENOMEM
            if not do_reclaim:
                ms.cnt[C_ALLOC_EBUSY] += 1
                rc = -EBUSY
                cancel(ms, cg)
                break
            ms.cnt[C_DIRECT] += 1
            before = ms.p[P_NR_FREE]
            reclaim_global(os, ms, st, ms.p[P_BATCH])
            if ms.p[P_NR_FREE] == before:
                idle += 1
                # The kernel would spin in cond_resched(); a sequential model with no other
                # thread to make progress must not, so a reclaimer that frees nothing over
                # two passes of the whole LRU gives up with -EAGAIN.
                if idle > 2 * (all_lru_pages(ms) // max(ms.p[P_BATCH], 1) + 2):
                    ms.cnt[C_ALLOC_EAGAIN] += 1
                    rc = -EAGAIN
                    cancel(ms, cg)
                    break
            else:
                idle = 0
        if ms.p[P_NR_FREE] < ms.p[P_LOW] and all_lru_pages(ms) > 0 and ms.p[P_WAKE] == 0:
            ms.p[P_WAKE] = 1
            ms.cnt[C_WAKEUPS] += 1
            log(ms, EV_WAKE, 0, ms.p[P_NR_FREE])
        return rc

    @closure
    def ksgxd(os: Any, ms: MgrState, st: Any) -> int:
        """Run the woken reclaimer until free >= high or nothing is reclaimable; sleep.

        Queued per-cgroup reclaim work runs first, on the same CPU (the model's workqueue).
        """
        if ms.p[P_WAKE] == 0:
            return 0
        ms.p[P_CPU] = 1
        batches = async_work(os, ms, st)
        batches += reclaim_batches(os, ms, st, ms.p[P_BATCH], lru_list(ms))
        ms.p[P_CPU] = 0
        ms.p[P_WAKE] = 0
        return batches

    @closure
    def sgx_alloc_free_pages(os: Any, ms: MgrState, st: Any, kind: int, oid: int, node: int,
                             out: np.ndarray) -> int:
        """Allocations while the free lists hold pages, into ``out``: how many were made.

        Each is :func:`sgx_alloc_epc_page` as a caller would make it, wakeup included; with
        a free page there, no allocation reclaims (only a charge could, and a manager with
        a resource controller does not call this), so ``do_reclaim`` is False and the
        reclaim path is not compiled in.
        """
        n = 0
        while n < out.shape[0] and ms.p[P_NR_FREE] > 0:
            page = sgx_alloc_epc_page(os, ms, st, kind, oid, False, node)
            if page < 0:
                break
            out[n] = page
            n += 1
        return n

    r = Reclaimer(reclaim_global, sgx_alloc_epc_page, ksgxd, d.cache, sgx_reclaim_list,
                  sgx_alloc_free_pages)
    _reclaimers[(id(d), inline_batch, id(charge))] = r
    return r


def make_mgr_state(cpu: Processor, *, low: int, high: int, batch: int, policy: int,
                   events: int = 0) -> MgrState:
    n = cpu.npages
    nnodes = max(s.node for s in cpu.sections) + 1
    p = np.zeros(P_LEN, dtype=np.int64)
    p[P_LOW], p[P_HIGH], p[P_BATCH], p[P_POLICY], p[P_NNODES] = low, high, batch, policy, nnodes
    return MgrState(
        nxt=np.full(n, NO_LINK, dtype=np.int32), prv=np.full(n, NO_LINK, dtype=np.int32),
        where=np.full(n, W_UNTRACKED, dtype=np.uint8), kind=np.zeros(n, dtype=np.uint8),
        oid=np.zeros(n, dtype=np.uint32),
        head=np.full(nnodes + 1, NO_LINK, dtype=np.int64),
        tail=np.full(nnodes + 1, NO_LINK, dtype=np.int64),
        count=np.zeros(nnodes + 1, dtype=np.int64),
        cnt=np.zeros(len(COUNTERS), dtype=np.int64), p=p,
        ev=np.zeros((events, 3), dtype=np.int64),
        chunk=np.zeros(max(batch, SGX_NR_TO_SCAN_MAX), dtype=np.int64),
        cg=np.zeros(0, dtype=np.uint16), cgt=np.zeros((0, CGT_MANAGER_COLS), dtype=np.int64),
    )


def with_charge_table(ms: MgrState, ncg: int, columns: int) -> MgrState:
    """``ms`` with room for ``ncg`` cgroups: their LRUs, a ``cg`` per page, the table.

    Existing rows, lists and charges are kept (the table grows as cgroups are created).
    """
    nn = int(ms.p[P_NNODES])
    old = ms.cgt.shape[0]
    nlists = nn + max(ncg, 1)
    head = np.full(nlists, NO_LINK, dtype=np.int64)
    tail = np.full(nlists, NO_LINK, dtype=np.int64)
    count = np.zeros(nlists, dtype=np.int64)
    k = ms.head.shape[0]
    head[:k], tail[:k], count[:k] = ms.head, ms.tail, ms.count
    cgt = np.zeros((ncg, columns), dtype=np.int64)
    cgt[:old, : ms.cgt.shape[1]] = ms.cgt
    cg = ms.cg if ms.cg.shape[0] else np.zeros(ms.where.shape[0], dtype=np.uint16)
    return ms._replace(head=head, tail=tail, count=count, cg=cg, cgt=cgt)


@njit
def sanitize_pages(ms_: MgrState, st_: Any) -> int:
    """Boot: EREMOVE every page, twice (a SECS fails while its children exist), then free.

    Returns the number of pages left dirty.
    """
    ms = unmanaged(ms_)
    st = unmanaged(st_)
    n = ms.where.shape[0]
    dirty = np.ones(n, dtype=np.bool_)
    for _ in range(2):
        for page in range(n):
            if dirty[page] and L.eremove_inline(st, page, L.CTX_HOST) == 0:
                dirty[page] = False
                sgx_free_epc_page(ms, st, page)
    return np.int64(dirty.sum())


class EpcManager:
    """One kernel's EPC manager over a :class:`~epcsim.hw.cpu.Processor`.

    ``owners`` is the owner table: an owner's kind is its index. The manager imports no
    owner; it drives them through their :class:`~epcsim.kernel.owner.OwnerOps`.
    """

    def __init__(self, cpu: Processor, owners: Sequence[Owner], *,
                 low: int = SGX_NR_LOW_PAGES, high: int = SGX_NR_HIGH_PAGES,
                 batch: int = SGX_NR_TO_SCAN, policy: str = "sgx", events: int = 0) -> None:
        if policy not in POLICY_NAMES:
            raise ValueError(f"unknown reclaim policy {policy!r}; "
                             f"choose one of {', '.join(POLICY_NAMES)}")
        if not 0 <= low <= high:
            raise ValueError("watermarks must satisfy 0 <= low <= high")
        if batch < 1:
            raise ValueError("the reclaim batch needs at least one page")
        if not owners:
            raise ValueError("the manager needs at least one owner kind")
        self.cpu = cpu
        self.owners = list(owners)
        self.policy = policy
        self.ms = make_mgr_state(cpu, low=low, high=high, batch=batch,
                                 policy=POLICY_NAMES[policy], events=events)
        self.fns = make_reclaimer(dispatch_for([o.ops for o in self.owners]),
                                  all(o.inline_reclaim for o in self.owners))
        self.charge: ChargeFactory | None = None
        # Called when an allocation gets -ENOMEM; True when it freed something worth a retry
        # (the EPC cgroup's optional OOM killer sets it).
        self.on_enomem: Callable[[], bool] | None = None
        # Hands an in-use page's charge to another cgroup (page, cgroup), for pages nobody
        # may refuse (KVM's exit reserve); set by the resource controller when it attaches.
        self.move_charge: Callable[[int, int], None] | None = None
        self.dirty = int(sanitize_pages(self.ms, cpu.st))

    def attach_charge(self, charge: ChargeFactory, ncg: int, columns: int) -> None:
        """Assemble the manager with a resource controller's :class:`ChargeOps`.

        Called before any page is allocated to an owner (pages allocated earlier would be
        charged to nobody), and again with a larger ``ncg`` when the controller grows.
        """
        self.ms = with_charge_table(self.ms, ncg, columns)
        if self.charge is not charge:
            self.charge = charge
            self.fns = make_reclaimer(dispatch_for([o.ops for o in self.owners]),
                                      all(o.inline_reclaim for o in self.owners), charge)

    # -------------------------------------------------------------- state passed to code
    @contextmanager
    def current(self, cg: int) -> Iterator[None]:
        """Allocate as a task of misc cgroup ``cg`` (``current``, whose cgroup
        ``sgx_alloc_epc_page`` charges), then put the task back; ignored with no cgroups."""
        p = self.ms.p
        before = int(p[P_CG])
        p[P_CG] = cg
        try:
            yield
        finally:
            p[P_CG] = before

    def owner_states(self) -> tuple[Any, ...]:
        return tuple(o.state for o in self.owners)

    def _sync_owners(self) -> None:
        """Let owners finish in Python what compiled reclaim started (content-mode sealing)."""
        for o in self.owners:
            o.sync()

    # -------------------------------------------------------------- the kernel's calls
    def alloc(self, kind: int, oid: int, reclaim: bool, node: int = 0) -> int:
        """``sgx_alloc_epc_page``: a page number, or -ENOMEM / -EBUSY (negated errno)."""
        if not 0 <= kind < len(self.owners):
            raise ValueError(f"no owner of kind {kind}")
        page = int(self.fns.alloc(self.owner_states(), self.ms, self.cpu.st, kind, oid,
                                  reclaim, node))
        self._sync_owners()
        while page == -ENOMEM and self.on_enomem is not None and self.on_enomem():
            page = int(self.fns.alloc(self.owner_states(), self.ms, self.cpu.st, kind, oid,
                                      reclaim, node))
            self._sync_owners()
        return page

    def alloc_free(self, kind: int, oid: int, n: int, node: int = 0) -> np.ndarray:
        """Up to ``n`` of :meth:`alloc`'s pages in one compiled call, as many as the free
        lists hold: the pages in the order :meth:`alloc` would have returned them.

        For provisioning many pages at once (an enclave's VA pages); the caller goes on one
        :meth:`alloc` at a time for the rest, which may reclaim. Empty with a resource
        controller attached: its charge may reclaim even while pages are free.
        """
        if not 0 <= kind < len(self.owners):
            raise ValueError(f"no owner of kind {kind}")
        if self.charge is not None or n <= 0:
            return np.zeros(0, dtype=np.int64)
        out = np.empty(n, dtype=np.int64)
        got = int(self.fns.alloc_free(self.owner_states(), self.ms, self.cpu.st, kind, oid,
                                      node, out))
        self._sync_owners()
        return out[:got]

    def free(self, page: int) -> int:
        """``sgx_encl_free_epc_page``: EREMOVE and free; a failing EREMOVE leaks the page."""
        return int(sgx_encl_free_epc_page(self.ms, self.cpu.st, page))

    def free_written(self, page: int) -> None:
        """``sgx_free_epc_page`` of a page EWB already invalidated."""
        sgx_free_epc_page(self.ms, self.cpu.st, page)

    def mark_reclaimable(self, page: int) -> None:
        sgx_mark_page_reclaimable(self.ms, page)

    def unmark_reclaimable(self, page: int) -> int:
        return int(sgx_unmark_page_reclaimable(self.ms, page))

    def touch(self, page: int) -> None:
        touch(self.ms, page)

    def reclaim_pages(self, nr: int | None = None) -> int:
        """One ``sgx_reclaim_pages`` batch on the caller's CPU; returns pages isolated."""
        n = int(self.ms.p[P_BATCH]) if nr is None else nr
        if n > self.ms.chunk.shape[0]:
            self.ms = self.ms._replace(chunk=np.zeros(n, dtype=np.int64))
        isolated = int(self.fns.reclaim_pages(self.owner_states(), self.ms, self.cpu.st, n))
        self._sync_owners()
        return isolated

    def reclaim_direct(self) -> None:
        """``sgx_reclaim_direct``: one batch if free pages are below the low watermark."""
        if sgx_should_reclaim(self.ms, int(self.ms.p[P_LOW])):
            self.reclaim_pages()

    def run_ksgxd(self) -> int:
        """Let a woken ksgxd run to sleep on its own CPU; returns the batches it ran."""
        batches = int(self.fns.ksgxd(self.owner_states(), self.ms, self.cpu.st))
        self._sync_owners()
        return batches

    # -------------------------------------------------------------- what the kernel exports
    @property
    def sgx_nr_free_pages(self) -> int:
        return int(self.ms.p[P_NR_FREE])

    @property
    def ksgxd_awake(self) -> bool:
        return bool(self.ms.p[P_WAKE])

    @property
    def lru_pages(self) -> int:
        return int(self.ms.count[int(self.ms.p[P_NNODES]):].sum())

    def sgx_total_bytes(self) -> dict[int, int]:
        """Bytes of EPC per NUMA node (sysfs ``node/nodeN/x86/sgx_total_bytes``)."""
        out: dict[int, int] = {}
        for s in self.cpu.sections:
            out[s.node] = out.get(s.node, 0) + s.size
        return out

    def counters(self) -> dict[str, int]:
        d = {name: int(self.ms.cnt[i]) for i, name in enumerate(COUNTERS)}
        d["sgx_nr_free_pages"] = self.sgx_nr_free_pages
        return d

    def where(self, page: int) -> int:
        return int(self.ms.where[page]) & W_MASK

    def events(self) -> list[tuple[str, int, int]]:
        n = min(int(self.ms.p[P_EV_N]), self.ms.ev.shape[0])
        return [(EV_NAMES[int(e)], int(p), int(a)) for e, p, a in self.ms.ev[:n]]

    def census(self) -> dict[str, int]:
        """How many pages are in each place (each page is in exactly one)."""
        w = self.ms.where & W_MASK
        return {"free": int((w == W_FREE).sum()), "lru": int((w == W_LRU).sum()),
                "isolated": int((w == W_ISOLATED).sum()),
                "untracked": int((w == W_UNTRACKED).sum()), "leaked": int((w == W_LEAKED).sum())}

    def bytes_per_page(self) -> float:
        per_page = sum(getattr(self.ms, f).nbytes
                       for f in ("nxt", "prv", "where", "kind", "oid", "cg"))
        fixed = sum(getattr(self.ms, f).nbytes
                    for f in ("head", "tail", "count", "cnt", "p", "cgt"))
        return (per_page + fixed) / self.cpu.npages

    def check(self) -> None:
        """Assert the manager's invariants (kernel-sgx.md §10); raise AssertionError."""
        ms = self.ms
        n = self.cpu.npages
        w = ms.where & W_MASK
        seen = np.zeros(n, dtype=np.int64)
        nn = int(ms.p[P_NNODES])
        for lst in range(ms.head.shape[0]):
            page, prev, k = int(ms.head[lst]), NO_LINK, 0
            while page != NO_LINK:
                assert k <= n, "list cycle"
                assert int(ms.prv[page]) == prev, f"broken back link at page {page}"
                seen[page] += 1
                expect = W_LRU if lst >= nn else W_FREE
                assert w[page] == expect, f"page {page} on list {lst} but where={w[page]}"
                if lst >= nn and ms.cg.shape[0]:
                    assert int(ms.cg[page]) == lst - nn, f"page {page} on a foreign LRU"
                if lst < nn:
                    assert self.cpu.page_node(page) == lst, f"page {page} on a foreign node"
                    assert not self.cpu.st.flags[page] & 0x40, f"free page {page} is VALID"
                prev, page, k = page, int(ms.nxt[page]), k + 1
            assert int(ms.tail[lst]) == prev and k == int(ms.count[lst]), f"list {lst} counts"
        off_list = (w != W_FREE) & (w != W_LRU)
        assert (seen[off_list] == 0).all(), "a page off the lists is linked"
        assert (seen[~off_list] == 1).all(), "a page is on no list or on two"
        assert int((w == W_FREE).sum()) == self.sgx_nr_free_pages, "sgx_nr_free_pages drifted"
        assert sum(self.census().values()) == n
