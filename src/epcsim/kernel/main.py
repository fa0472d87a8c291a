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
each node is FIFO) and one reclaim LRU (head = oldest), as in the kernel's SGX code.

EPC cgroups (the EPC cgroup series) add, only when attached, one more LRU per cgroup after the
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
from epcsim.dlist import NEXT, dl_del, dl_move_tail, dl_push_tail, dl_splice_head_to_tail
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor
from epcsim.hw.epc import V_NSEC, V_SEC_FIRST, V_SEC_NODE, V_SEC_NPAGES
from epcsim.jit import field, njit, njit_closure, njit_inline, prefetch, state_class, table
from epcsim.kernel.owner import WRITE_FREED, WRITE_RETRY, Dispatch, Owner, dispatch_for

# errno values the kernel returns (negated).
ENOMEM = 12
EBUSY = 16
EAGAIN = 11
EIO = 5
# arch/x86/include/asm/archrandom.h: how often RDRAND/RDSEED callers retry.
RDRAND_RETRY_LOOPS = 10
EFAULT = 14
ERESTARTSYS = 512   # include/linux/errno.h: the syscall is restarted or fails with EINTR

# Where a page is.
W_FREE = 0
W_LRU = 1
W_ISOLATED = 2
W_UNTRACKED = 3
W_LEAKED = 4
W_PENDING = 5       # written back by ksgxd, free once ksgxd's clock passes it (``pend``)
W_MASK = 0x7F
W_REF = 0x80

NO_LINK = -1
# Pages ahead of the batch's head whose owner records are prefetched: HINT_AHEAD while the
# manager's tables stay cached, HINT_AHEAD_FAR from WALK_PREFETCH_FROM EPC pages (900 KB of
# records and links), where the hint's walk also prefetches the next page's links and record.
# Over 100 000 EPC pages and a million enclave pages a hint 4 pages ahead landed too late (12:
# 6-8 % less time); over 10 000 the longer walk at each batch's start cost 1-2 % (BENCHMARKS.md,
# eighth session).
HINT_AHEAD = 4
HINT_AHEAD_FAR = 12
WALK_PREFETCH_FROM = 1 << 16

# Policies.
POLICY_SGX = 0     # the kernel's: FIFO list, second chance on the owner's accessed bit, batch
POLICY_LRU = 1     # move to the tail on every access; evict the head
POLICY_FIFO = 2    # evict the head; accesses change nothing
POLICY_CLOCK = 3   # one reference bit, set on access; the head with the bit set gets a second
# When the pages ksgxd frees are free: at its own clock (the kernel's thread on another CPU),
# or at once (the model before ksgxd had a clock; for comparison).
KSGXD_MODES = ("clock", "instant")
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
P_NODE = 10         # numa_node_id(): the node of the CPU running the kernel's code now
# Virtual time, in cycles (docs/design.md, "ksgxd's clock"): the calling thread's now, ksgxd's
# clock, when it was last woken, the ring of pending frees (``pend``), and the cycles of
# ksgxd's own work, which its clock advances by.
P_NOW = 11          # the clock of the thread calling into the kernel (set by the caller)
P_KCLK = 12         # ksgxd's clock: where its last piece of work ended
P_WAKE_AT = 13      # the caller's now when ksgxd was woken
P_PEND_HEAD = 14    # oldest record of the ring in ``pend``
P_PEND_LEN = 15     # records in the ring
P_KSGXD_INSTANT = 16    # 1: pages ksgxd frees are free at once (the model before its clock)
P_COST_EBLOCK = 17
P_COST_ETRACK = 18
P_COST_EWB = 19
P_COST_IPI = 20
P_SIGPENDING = 21   # signal_pending(current): a signal waits for the allocating task
P_LEN = 24

# Rows of ``pend`` after the first (the pending list's head, tail and count): one record per
# distinct moment ksgxd freed pages at (its clock, how many). Records are merged into the
# newest when the ring is full, which only delays pages, never frees one early.
PEND_RING = 1024      # a power of two: a record's index is masked, not divided
R_STAMP, R_COUNT = 0, 1

# Counters (MgrState.cnt): kernel names where the kernel has one.
COUNTERS = (
    "alloc", "alloc_ebusy", "alloc_enomem", "alloc_eagain", "freed", "leaks",
    "isolated", "get_failed", "refused_young", "rotated", "blocked", "written", "write_retry",
    "etrack", "ipi", "ewb", "eldu", "direct_reclaims", "ksgxd_wakeups", "ksgxd_batches",
    "reclaimed_direct", "reclaimed_ksgxd", "ewb_ksgxd", "etrack_ksgxd", "ipi_ksgxd",
    "ksgxd_cycles", "wait_cycles", "alloc_erestartsys", "tlb_shootdowns",
)
C = {name: i for i, name in enumerate(COUNTERS)}
C_ALLOC, C_ALLOC_EBUSY, C_ALLOC_ENOMEM, C_ALLOC_EAGAIN, C_FREED, C_LEAKS = range(6)
(C_ISOLATED, C_GET_FAILED, C_REFUSED, C_ROTATED, C_BLOCKED, C_WRITTEN,
 C_WRITE_RETRY) = range(6, 13)
C_ETRACK, C_IPI, C_EWB, C_ELDU = range(13, 17)
C_DIRECT, C_WAKEUPS, C_KSGXD_BATCHES, C_RECLAIMED_DIRECT, C_RECLAIMED_KSGXD = range(17, 22)
C_EWB_KSGXD, C_ETRACK_KSGXD, C_IPI_KSGXD = range(22, 25)
# ksgxd's busy cycles on its own CPU; the cycles allocating threads waited for its pages.
C_KSGXD_CYCLES, C_WAIT_CYCLES = 25, 26
C_ALLOC_ERESTARTSYS = 27
C_TLB_SHOOTDOWN = 28

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


# Per EPC page: where it is, its owner kind and owner id (PAGE_RECORD, 6 bytes); its list
# links are a table of their own (``links``: next, prev), so that the list operations of
# :mod:`epcsim.dlist` serve the manager and the driver's VA lists alike.
PAGE_RECORD = np.dtype([("where", np.uint8), ("kind", np.uint8), ("oid", np.uint32)])

# Columns of ``lists`` (one row per list: each node's free list, then the LRUs).
L_HEAD, L_TAIL, L_COUNT = 0, 1, 2
L_LEN = 3


@state_class
class MgrState(NamedTuple):
    links: np.ndarray   # i32 [pages, 2]: next and prev on the page's list
    pages: np.ndarray   # PAGE_RECORD per page
    lists: np.ndarray   # i64 [lists, L_LEN]: NUMA nodes 0..n-1, then the LRU at index n
    cnt: np.ndarray     # i64 counters
    p: np.ndarray       # i64 parameters and scalars
    ev: np.ndarray      # i64 [cap, 3] event log (cap 0: off)
    chunk: np.ndarray   # i64 [batch]: the pages of the batch being reclaimed
    cg: np.ndarray      # u16 per page: the cgroup it is charged to (length 0: no cgroups)
    cgt: np.ndarray     # i64 [cgroups, columns] charge table (0 rows: no cgroups)
    pend: np.ndarray    # i64 [1 + PEND_RING, 3]: row 0 the list of pages ksgxd wrote back
                        # and its clock has not passed (head, tail, count); then the ring

    # The Python side's views of single fields.
    @property
    def nxt(self) -> np.ndarray:
        return self.links[:, 0]

    @property
    def prv(self) -> np.ndarray:
        return self.links[:, 1]

    @property
    def where(self) -> np.ndarray:
        return field(self.pages, "where")

    @property
    def kind(self) -> np.ndarray:
        return field(self.pages, "kind")

    @property
    def oid(self) -> np.ndarray:
        return field(self.pages, "oid")

    @property
    def head(self) -> np.ndarray:
        return self.lists[:, L_HEAD]

    @property
    def tail(self) -> np.ndarray:
        return self.lists[:, L_TAIL]

    @property
    def count(self) -> np.ndarray:
        return self.lists[:, L_COUNT]


# Columns of the charge table the manager itself maintains; the cgroup controller owns the rest.
CGT_PARENT = 0      # parent cgroup, -1 for the root
CGT_USAGE = 1       # pages charged to the cgroup's subtree (misc.current / 4096)
CGT_RECLAIMED = 2   # pages written back from this cgroup's own LRU
CGT_MANAGER_COLS = 3

i64 = np.int64


# ----------------------------------------------------------------------------- lists

@njit_inline
def list_push_tail(ms: MgrState, lst: int, page: int) -> None:
    counted_push_tail(ms.lists, ms.links, lst, page)


@njit_inline
def counted_push_tail(lists: np.ndarray, links: np.ndarray, lst: int, page: int) -> None:
    """Append ``page`` to list ``lst`` of ``lists`` (``ms.lists``, or the pending list in
    ``ms.pend``) and count it."""
    dl_push_tail(lists, links, lst, page)
    lists[lst, L_COUNT] += 1


@njit_inline
def counted_del(lists: np.ndarray, links: np.ndarray, lst: int, page: int) -> None:
    dl_del(lists, links, lst, page)
    lists[lst, L_COUNT] -= 1


@njit_inline
def list_pop_head(ms: MgrState, lst: int) -> int:
    page = ms.lists[lst, L_HEAD]
    if page == NO_LINK:
        return NO_LINK
    list_del(ms, lst, page)
    return page


@njit_inline
def list_del(ms: MgrState, lst: int, page: int) -> None:
    counted_del(ms.lists, ms.links, lst, page)


@njit_inline
def lru_list(ms: MgrState) -> int:
    return ms.p[P_NNODES]


@njit_inline
def page_lru(ms: MgrState, page: int) -> int:
    """``sgx_epc_page_lru``: the LRU of the cgroup the page is charged to (root: global)."""
    if ms.cg.shape[0] == 0:
        return ms.p[P_NNODES]
    return ms.p[P_NNODES] + np.int64(ms.cg[page])


@njit
def cg_charge(ms: MgrState, cg: int) -> None:
    """Count one page in ``cg`` and every ancestor (the limits were checked by the caller)."""
    c = cg
    while c >= 0:
        ms.cgt[c, CGT_USAGE] += 1
        c = ms.cgt[c, CGT_PARENT]


@njit
def cg_uncharge(ms: MgrState, cg: int) -> None:
    c = cg
    while c >= 0:
        ms.cgt[c, CGT_USAGE] -= 1
        c = ms.cgt[c, CGT_PARENT]


@njit_inline
def where(ms: MgrState, page: int) -> int:
    return ms.pages[page].where & W_MASK


@njit_inline
def set_where(ms: MgrState, page: int, w: int) -> None:
    ms.pages[page].where = w


@njit_inline
def log(ms: MgrState, event: int, page: int, arg: int) -> None:
    # With the log off (a replay) not even the count is kept: five events per fault each
    # loaded and stored the one counter, a chain through memory across the whole batch.
    if ms.ev.shape[0] != 0:
        log_event(ms, event, page, arg)


@njit
def log_event(ms: MgrState, event: int, page: int, arg: int) -> None:
    n = ms.p[P_EV_N]
    if n < ms.ev.shape[0]:
        ms.ev[n, 0] = event
        ms.ev[n, 1] = page
        ms.ev[n, 2] = arg
    ms.p[P_EV_N] = n + 1


@njit_inline
def page_node(st: Any, page: int) -> int:
    """The NUMA node of an EPC page, from the sections the processor enumerates."""
    v = st.vmcs
    for i in range(v[V_NSEC]):
        first = v[V_SEC_FIRST + i]
        if first <= page < first + v[V_SEC_NPAGES + i]:
            return v[V_SEC_NODE + i]
    return 0


# ----------------------------------------------------------------------------- free lists

@njit
def sgx_free_epc_page(ms: MgrState, st: Any, page: int) -> None:
    """Return a page already in the uninitialised EPCM state to its node's free list.

    On ksgxd's CPU the page is free at ksgxd's clock, not at the caller's now: it waits on
    the pending list until a thread's clock passes it (:func:`release_pending`). Its cgroup
    is uncharged at once: ksgxd and the cgroup's asynchronous reclaim run on that clock, and
    a worker that still counted the pages it had freed would never see its cgroup shrink.
    """
    if ms.cg.shape[0] != 0:
        # The page remembers its cgroup from allocation to here (sgx_cgroup_uncharge).
        cg_uncharge(ms, np.int64(ms.cg[page]))
        ms.cg[page] = 0
    if ms.p[P_CPU] == 1 and ms.p[P_KSGXD_INSTANT] == 0:
        pend_page(ms, page)
        return
    free_now(ms, st, page)


@njit_inline
def mark_free(ms: MgrState, page: int) -> None:
    """A free page's own fields: where it is, and no owner."""
    set_where(ms, page, W_FREE)
    ms.pages[page].kind = 0
    ms.pages[page].oid = 0


@njit
def free_now(ms: MgrState, st: Any, page: int) -> None:
    """Put an uncharged page on its node's free list."""
    mark_free(ms, page)
    list_push_tail(ms, page_node(st, page), page)
    ms.p[P_NR_FREE] += 1
    ms.cnt[C_FREED] += 1
    log(ms, EV_FREE, page, 0)


# ----------------------------------------------------------------------------- ksgxd's clock

@njit_inline
def on_ksgxd_cpu(ms: MgrState, cost: int) -> None:
    """Work done on ksgxd's CPU (``ms.p[cost]`` cycles) advances its clock."""
    if ms.p[P_CPU] == 1:
        ms.p[P_KCLK] += ms.p[cost]
        ms.cnt[C_KSGXD_CYCLES] += ms.p[cost]


@njit
def pend_page(ms: MgrState, page: int) -> None:
    """ksgxd freed ``page`` at its clock: pending until the allocating thread's clock
    passes that moment."""
    set_where(ms, page, W_PENDING)
    counted_push_tail(ms.pend, ms.links, 0, page)
    # The ring's size is the constant, so the index is a mask: a 64-bit division by the
    # table's length per pending page was about 1 % of a high-miss replay.
    mask = PEND_RING - 1
    stamp = ms.p[P_KCLK]
    n = ms.p[P_PEND_LEN]
    if n > 0:
        last = 1 + ((ms.p[P_PEND_HEAD] + n - 1) & mask)
        if ms.pend[last, R_STAMP] == stamp or n == PEND_RING:
            ms.pend[last, R_STAMP] = max(stamp, ms.pend[last, R_STAMP])
            ms.pend[last, R_COUNT] += 1
            return
    r = 1 + ((ms.p[P_PEND_HEAD] + n) & mask)
    ms.pend[r, R_STAMP] = stamp
    ms.pend[r, R_COUNT] = 1
    ms.p[P_PEND_LEN] = n + 1


@njit
def release_pending(ms: MgrState, st: Any) -> None:
    """Free the pages ksgxd freed at or before the caller's now.

    On one node with the event log off (a replay) a record's pages move to the free list
    in one splice, as :func:`free_now` would append them one by one (the free list's order
    and every link the same); each page's own fields are still set."""
    while ms.p[P_PEND_LEN] > 0:
        r = 1 + ms.p[P_PEND_HEAD]
        if ms.pend[r, R_STAMP] > ms.p[P_NOW]:
            break
        k = ms.pend[r, R_COUNT]
        if ms.p[P_NNODES] == 1 and ms.ev.shape[0] == 0:
            page = ms.pend[0, L_HEAD]
            for i in range(k):
                if i > 0:
                    page = ms.links[page, NEXT]
                mark_free(ms, page)
            dl_splice_head_to_tail(ms.pend, 0, ms.lists, 0, ms.links, page)
            ms.pend[0, L_COUNT] -= k
            ms.lists[0, L_COUNT] += k
            ms.p[P_NR_FREE] += k
            ms.cnt[C_FREED] += k
        else:
            for _ in range(k):
                page = ms.pend[0, L_HEAD]
                counted_del(ms.pend, ms.links, 0, page)
                free_now(ms, st, page)
        ms.p[P_PEND_HEAD] = (ms.p[P_PEND_HEAD] + 1) & (PEND_RING - 1)
        ms.p[P_PEND_LEN] -= 1


@njit
def wait_for_pending(ms: MgrState, st: Any) -> None:
    """The caller spins (re-faulting, or in ``cond_resched()``) until ksgxd's first
    pending page is free: its clock moves there."""
    if ms.p[P_PEND_LEN] == 0:
        return
    stamp = ms.pend[1 + ms.p[P_PEND_HEAD], R_STAMP]
    if stamp > ms.p[P_NOW]:
        ms.cnt[C_WAIT_CYCLES] += stamp - ms.p[P_NOW]
        ms.p[P_NOW] = stamp
    release_pending(ms, st)


@njit_inline
def nr_pending(ms: MgrState) -> int:
    return ms.pend[0, L_COUNT]


@njit_inline
def wake_ksgxd(ms: MgrState) -> None:
    """``wake_up(&ksgxd_waitq)``: counted as a wake-up when ksgxd's clock says it sleeps
    (a woken thread that is still running only goes on)."""
    ms.p[P_WAKE] = 1
    ms.p[P_WAKE_AT] = ms.p[P_NOW]
    if ms.p[P_KCLK] <= ms.p[P_NOW] or ms.p[P_KSGXD_INSTANT] != 0:
        ms.cnt[C_WAKEUPS] += 1
    log(ms, EV_WAKE, 0, ms.p[P_NR_FREE])


@njit_inline
def queue_ksgxd_work(ms: MgrState) -> None:
    """Work queued for ksgxd's CPU (a cgroup's asynchronous reclaim): it runs from now."""
    if ms.p[P_WAKE] == 0:
        ms.p[P_WAKE_AT] = ms.p[P_NOW]
    ms.p[P_WAKE] = 1


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


@njit
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


@njit
def sgx_unmark_page_reclaimable(ms: MgrState, page: int) -> int:
    """Take a page off the LRU: -EBUSY while the reclaimer holds it isolated."""
    w = where(ms, page)
    if w == W_ISOLATED:
        return -EBUSY
    if w == W_LRU:
        list_del(ms, page_lru(ms, page), page)
        set_where(ms, page, W_UNTRACKED)
    return 0


@njit
def sgx_should_reclaim(ms: MgrState, watermark: int) -> bool:
    return ms.p[P_NR_FREE] < watermark and lru_pages(ms) > 0


@njit
def lru_pages(ms: MgrState) -> int:
    """Pages on every LRU (the global one, and each cgroup's when cgroups are attached)."""
    n = ms.p[P_NNODES]
    if ms.lists.shape[0] == n + 1:
        return ms.lists[n, L_COUNT]
    total = 0
    for lst in range(n, ms.lists.shape[0]):
        total += ms.lists[lst, L_COUNT]
    return total


@njit_inline
def touch(ms: MgrState, page: int) -> None:
    """An access the policy sees (the kernel's own policy sees accesses through owners)."""
    policy = ms.p[P_POLICY]
    if policy == POLICY_LRU:
        if where(ms, page) == W_LRU:
            dl_move_tail(ms.lists, ms.links, page_lru(ms, page), page)
    elif policy == POLICY_CLOCK:
        ms.pages[page].where |= W_REF


@njit_inline
def _counted(ms: MgrState, counter: int, ksgxd_counter: int, cost: int) -> None:
    ms.cnt[counter] += 1
    if ms.p[P_CPU] == 1:
        ms.cnt[ksgxd_counter] += 1
        on_ksgxd_cpu(ms, cost)


@njit_inline
def count_etrack(ms: MgrState) -> None:
    """Owners report the ETRACKs, IPIs and EWBs of their write operation here (on ksgxd's
    CPU they take their cycles on its clock)."""
    _counted(ms, C_ETRACK, C_ETRACK_KSGXD, P_COST_ETRACK)


@njit_inline
def count_ipi(ms: MgrState) -> None:
    _counted(ms, C_IPI, C_IPI_KSGXD, P_COST_IPI)


@njit_inline
def count_ewb(ms: MgrState) -> None:
    _counted(ms, C_EWB, C_EWB_KSGXD, P_COST_EWB)


@njit_inline
def count_tlb_shootdown(ms: MgrState) -> None:
    """A zap's TLB shootdown: its IPI costs the sender, ksgxd's clock when ksgxd zaps."""
    ms.cnt[C_TLB_SHOOTDOWN] += 1
    on_ksgxd_cpu(ms, P_COST_IPI)


# ----------------------------------------------------------------------------- assembly

class Reclaimer(NamedTuple):
    """The manager's compiled entry points for one owner table."""

    reclaim_pages: Any
    alloc: Any
    ksgxd: Any
    cache: bool
    reclaim_list: Any = None


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


# Without a resource controller: every charge succeeds and there is no queued work.
@njit_inline
def no_try_charge(os: Any, ms: MgrState, st: Any, do_reclaim: bool) -> int:
    return 0


@njit_inline
def no_commit(ms: MgrState, page: int, cg: int) -> None:
    pass


@njit_inline
def no_cancel(ms: MgrState, cg: int) -> None:
    pass


@njit_inline
def global_lru_pages(ms: MgrState) -> int:
    return ms.lists[lru_list(ms), L_COUNT]


@njit_inline
def no_async_work(os: Any, ms: MgrState, st: Any) -> int:
    return 0


_reclaimers: dict[tuple[int, bool, int], Reclaimer] = {}


def make_reclaimer(d: Dispatch, inline_batch: bool = False,
                   charge: ChargeFactory | None = None) -> Reclaimer:
    """Close the reclaim batch, allocation and ksgxd over an owner table's dispatchers.

    ``charge``, when given, is called with the compiled batch (over one LRU) and returns the
    :class:`ChargeOps` allocation and ksgxd go through. ``inline_batch``: owners whose
    operations are a few loads and stores (one page per miss) have the batch compiled into
    allocation, where a call would cost more than the batch.
    """
    hit = _reclaimers.get((id(d), inline_batch, id(charge)))
    if hit is not None:
        return hit
    get, put, reclaim, block, write = d.get, d.put, d.reclaim, d.block, d.write
    hint, hints = d.prefetch, d.hints
    closure = functools.partial(njit_closure, cache=d.cache)
    inline = inline_batch and charge is None

    # The batch and the allocation run once per fault of a replay: linked into their
    # callers (jit.njit_closure).
    linked = functools.partial(njit_closure, cache=d.cache, link=True)

    @functools.partial(njit_closure, cache=d.cache, inline=inline, link=True)
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
        budget = 2 * ms.lists[lst, L_COUNT] + 1
        q = np.int64(NO_LINK)
        walk_ahead = hints and ms.pages.shape[0] >= WALK_PREFETCH_FROM
        if hints:
            # The owner records of the pages a few places behind the head start loading
            # while the head's are used: one cache miss after another otherwise.
            q = ms.lists[lst, L_HEAD]
            for _ in range(HINT_AHEAD_FAR if walk_ahead else HINT_AHEAD):
                if q == NO_LINK:
                    break
                hint(os, np.int64(ms.pages[q].kind), ms, st, q, np.int64(ms.pages[q].oid), 0)
                q = np.int64(ms.links[q, 0])
        while isolated < nr and ms.lists[lst, L_COUNT] > 0 and budget > 0:
            budget -= 1
            page = list_pop_head(ms, lst)
            if hints and q != NO_LINK:
                hint(os, np.int64(ms.pages[q].kind), ms, st, q, np.int64(ms.pages[q].oid), 0)
                q = np.int64(ms.links[q, 0])
                # The next hint reads q's links and record: they load while this page is
                # isolated (a walk of the LRU is otherwise one cache miss after another).
                if walk_ahead:
                    prefetch(ms.links, 2 * q)
                    prefetch(ms.pages, q)
            if policy == POLICY_CLOCK and (ms.pages[page].where & W_REF) != 0:
                ms.pages[page].where &= W_MASK
                list_push_tail(ms, lst, page)
                ms.cnt[C_ROTATED] += 1
                log(ms, EV_ROTATE, page, 0)
                continue
            set_where(ms, page, W_ISOLATED)
            isolated += 1
            ms.cnt[C_ISOLATED] += 1
            log(ms, EV_ISOLATE, page, 0)
            if get(os, np.int64(ms.pages[page].kind), ms, st, page,
                   np.int64(ms.pages[page].oid), 0) == 0:
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
            kind = np.int64(ms.pages[page].kind)
            oid = np.int64(ms.pages[page].oid)
            if reclaim(os, kind, ms, st, page, oid, age) == 0:
                set_where(ms, page, W_LRU)
                list_push_tail(ms, page_lru(ms, page), page)
                put(os, kind, ms, st, page, oid, 0)
                ms.cnt[C_REFUSED] += 1
                log(ms, EV_REFUSE, page, 0)
            else:
                chunk[m] = page
                m += 1
        for i in range(m):
            page = chunk[i]
            block(os, np.int64(ms.pages[page].kind), ms, st, page, np.int64(ms.pages[page].oid), 0)
            ms.cnt[C_BLOCKED] += 1
            on_ksgxd_cpu(ms, P_COST_EBLOCK)
        for i in range(m):
            page = chunk[i]
            kind = np.int64(ms.pages[page].kind)
            oid = np.int64(ms.pages[page].oid)
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

    if charge is None:
        try_charge, commit, cancel = no_try_charge, no_commit, no_cancel
        all_lru_pages, async_work = global_lru_pages, no_async_work
        sgx_reclaim_list = reclaim_batch

        @linked
        def reclaim_global(os: Any, ms: MgrState, st: Any, nr: int) -> int:
            """One batch from the global LRU."""
            return reclaim_batch(os, ms, st, nr, lru_list(ms))
    else:
        sgx_reclaim_list = reclaim_batch
        ops = charge(reclaim_batch, d.cache)
        try_charge, commit, cancel = ops.try_charge, ops.commit, ops.cancel
        all_lru_pages, async_work = ops.lru_pages, ops.async_work
        reclaim_global = ops.reclaim_global

    @closure
    def ksgxd_batches(os: Any, ms: MgrState, st: Any) -> int:
        """ksgxd's loop: batches until free >= high or nothing is reclaimable; the batches
        run."""
        batches = 0
        idle = 0
        # Pages it freed are free on its own clock, pending or not.
        while ms.p[P_NR_FREE] + nr_pending(ms) < ms.p[P_HIGH] and all_lru_pages(ms) > 0:
            before = ms.p[P_NR_FREE] + nr_pending(ms)
            reclaim_global(os, ms, st, ms.p[P_BATCH])
            batches += 1
            ms.cnt[C_KSGXD_BATCHES] += 1
            if ms.p[P_NR_FREE] + nr_pending(ms) == before:
                idle += 1
                if idle > 2 * (all_lru_pages(ms) // max(ms.p[P_BATCH], 1) + 2):
                    break
            else:
                idle = 0
        return batches

    @closure
    def ksgxd(os: Any, ms: MgrState, st: Any) -> int:
        """Run the woken reclaimer until free >= high or nothing is reclaimable; sleep.

        Queued per-cgroup reclaim work runs first, on the same CPU (the model's workqueue).
        Asleep, it does nothing. ksgxd is a thread on another CPU in the kernel; the model
        runs it at fixed moments (docs/design.md, "When ksgxd runs"), on its own clock from
        the moment it was woken or from where its last work ended, whichever is later: the
        pages it frees are free at that clock ("ksgxd's clock").
        """
        if ms.p[P_WAKE] == 0:
            return 0
        if ms.p[P_KCLK] < ms.p[P_WAKE_AT]:
            ms.p[P_KCLK] = ms.p[P_WAKE_AT]
        ms.p[P_CPU] = 1
        batches = async_work(os, ms, st)
        batches += ksgxd_batches(os, ms, st)
        ms.p[P_CPU] = 0
        ms.p[P_WAKE] = 0
        if ms.p[P_PEND_LEN] != 0:
            release_pending(ms, st)      # what it freed by the caller's now
        return batches

    @linked
    def sgx_alloc_epc_page(os: Any, ms: MgrState, st: Any, kind: int, oid: int,
                           do_reclaim: bool, node: int) -> int:
        """A free page for (kind, oid), or -ENOMEM / -EBUSY as the kernel returns them.

        Pages ksgxd freed by the caller's now (``P_NOW``) are free first. With none free,
        a caller that may reclaim waits for ksgxd's next freed page (the kernel's thread
        reclaims beside ksgxd and yields in ``cond_resched()`` while ksgxd holds the pages
        it isolated); one that may not gets -EBUSY and its clock moves to that page, as
        its re-faults would spin until then.
        """
        if ms.p[P_PEND_LEN] != 0:
            release_pending(ms, st)
        cg = try_charge(os, ms, st, do_reclaim)
        if cg < 0:
            if cg == -ENOMEM:
                ms.cnt[C_ALLOC_ENOMEM] += 1
            elif cg == -EBUSY:
                ms.cnt[C_ALLOC_EBUSY] += 1
                wait_for_pending(ms, st)
            elif cg == -ERESTARTSYS:
                ms.cnt[C_ALLOC_ERESTARTSYS] += 1
            else:
                ms.cnt[C_ALLOC_EAGAIN] += 1
            return cg
        rc = 0
        idle = 0
        while True:
            page = take_free_page(ms, node)
            if page != NO_LINK:
                set_where(ms, page, W_UNTRACKED)
                ms.pages[page].kind = kind
                ms.pages[page].oid = oid
                commit(ms, page, cg)
                ms.cnt[C_ALLOC] += 1
                log(ms, EV_ALLOC, page, kind)
                rc = page
                break
            # Pending pages stand for pages ksgxd has isolated or has yet to reach: at the
            # caller's now the kernel's LRU is not empty while they exist.
            if all_lru_pages(ms) == 0 and nr_pending(ms) == 0:
                ms.cnt[C_ALLOC_ENOMEM] += 1
                cancel(ms, cg)
                return -ENOMEM
            if not do_reclaim:
                ms.cnt[C_ALLOC_EBUSY] += 1
                rc = -EBUSY
                cancel(ms, cg)
                wait_for_pending(ms, st)
                break
            if ms.p[P_SIGPENDING] != 0:
                ms.cnt[C_ALLOC_ERESTARTSYS] += 1
                rc = -ERESTARTSYS
                cancel(ms, cg)
                break
            if nr_pending(ms) > 0:
                wait_for_pending(ms, st)
                continue
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
            wake_ksgxd(ms)
        return rc

    r = Reclaimer(reclaim_global, sgx_alloc_epc_page, ksgxd, d.cache, sgx_reclaim_list)
    _reclaimers[(id(d), inline_batch, id(charge))] = r
    return r


def make_mgr_state(cpu: Processor, *, low: int, high: int, batch: int, policy: int,
                   events: int = 0) -> MgrState:
    n = cpu.npages
    nnodes = max(s.node for s in cpu.sections) + 1
    p = np.zeros(P_LEN, dtype=np.int64)
    p[P_LOW], p[P_HIGH], p[P_BATCH], p[P_POLICY], p[P_NNODES] = low, high, batch, policy, nnodes
    pages = np.zeros(n, dtype=PAGE_RECORD)
    pages["where"] = W_UNTRACKED
    lists = np.zeros((nnodes + 1, L_LEN), dtype=np.int64)
    lists[:, L_HEAD] = NO_LINK
    lists[:, L_TAIL] = NO_LINK
    pend = np.zeros((1 + PEND_RING, L_LEN), dtype=np.int64)
    pend[0, L_HEAD] = NO_LINK
    pend[0, L_TAIL] = NO_LINK
    return MgrState(
        links=table(np.full((n, 2), NO_LINK, dtype=np.int32)), pages=table(pages),
        lists=table(lists), cnt=table(np.zeros(len(COUNTERS), dtype=np.int64)), p=table(p),
        ev=table(np.zeros((events, 3), dtype=np.int64)),
        chunk=table(np.zeros(max(batch, SGX_NR_TO_SCAN_MAX), dtype=np.int64)),
        cg=table(np.zeros(0, dtype=np.uint16)),
        cgt=table(np.zeros((0, CGT_MANAGER_COLS), dtype=np.int64)),
        pend=table(pend),
    )


def with_charge_table(ms: MgrState, ncg: int, columns: int) -> MgrState:
    """``ms`` with room for ``ncg`` cgroups: their LRUs, a ``cg`` per page, the table.

    Existing rows, lists and charges are kept (the table grows as cgroups are created).
    """
    nn = int(ms.p[P_NNODES])
    old = ms.cgt.shape[0]
    nlists = nn + max(ncg, 1)
    lists = np.zeros((nlists, L_LEN), dtype=np.int64)
    lists[:, L_HEAD] = NO_LINK
    lists[:, L_TAIL] = NO_LINK
    lists[:ms.lists.shape[0]] = ms.lists
    cgt = np.zeros((ncg, columns), dtype=np.int64)
    cgt[:old, : ms.cgt.shape[1]] = ms.cgt
    cg = ms.cg if ms.cg.shape[0] else np.zeros(ms.pages.shape[0], dtype=np.uint16)
    return ms._replace(lists=table(lists), cg=table(cg), cgt=table(cgt))


@njit
def sanitize_pages(ms: MgrState, st: Any) -> int:
    """Boot: EREMOVE every page, twice (a SECS fails while its children exist), then free.

    Returns the number of pages left dirty. A host's boot runs no guest: EREMOVE's operand
    takes the one branch of ``encls.tx``, and the guest's EPT walk behind it is called
    deferred, so the boot never compiles it.
    """
    n = ms.pages.shape[0]
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
                 batch: int = SGX_NR_TO_SCAN, policy: str = "sgx", events: int = 0,
                 ksgxd: str = "clock") -> None:
        if ksgxd not in KSGXD_MODES:
            raise ValueError(f"unknown ksgxd mode {ksgxd!r}; choose one of "
                             f"{', '.join(KSGXD_MODES)}")
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
        self.ms.p[P_KSGXD_INSTANT] = int(ksgxd == "instant")
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

    @property
    def current_node(self) -> int:
        """``numa_node_id()`` of the CPU that runs the kernel's code now."""
        return int(self.ms.p[P_NODE])

    @current_node.setter
    def current_node(self, node: int) -> None:
        self.ms.p[P_NODE] = node

    # -------------------------------------------------------------- virtual time
    @property
    def now(self) -> int:
        """The clock, in cycles, of the thread calling into the kernel. ksgxd's pages are
        free when it passes ksgxd's clock; a caller that waits for them moves it on. The
        replay sets it before each fault; the Python API's thread spends no time between
        calls unless its caller moves it (``mgr.now += cycles``)."""
        return int(self.ms.p[P_NOW])

    @now.setter
    def now(self, cycles: int) -> None:
        self.ms.p[P_NOW] = cycles
        if self.ms.p[P_PEND_LEN]:
            release_pending(self.ms, self.cpu.st)     # what ksgxd freed by then is free

    def idle(self) -> None:
        """Let the caller's clock run to ksgxd's: every page it wrote back is free (what a
        machine at rest shows, e.g. when a test counts pages after its last close)."""
        self.now = max(self.now, self.ksgxd_clock)

    @property
    def ksgxd_clock(self) -> int:
        """Where ksgxd's last work ended on its own CPU, in cycles."""
        return int(self.ms.p[P_KCLK])

    def set_ksgxd_costs(self, *, eblock: int, etrack: int, ewb: int, ipi: int) -> None:
        """The cycles ksgxd's clock advances by for each leaf and IPI it runs."""
        p = self.ms.p
        p[P_COST_EBLOCK], p[P_COST_ETRACK], p[P_COST_EWB], p[P_COST_IPI] = \
            eblock, etrack, ewb, ipi

    @property
    def signal_pending(self) -> bool:
        """``signal_pending(current)``: the allocating task has a signal waiting. Where the
        kernel checks it (the allocation's reclaim loop, the cgroup charge loop, the ioctls'
        page loops) it returns -ERESTARTSYS. The signal stays pending until the caller
        clears it (delivery is on the way back to user space, the caller's side)."""
        return bool(self.ms.p[P_SIGPENDING])

    @signal_pending.setter
    def signal_pending(self, pending: bool) -> None:
        self.ms.p[P_SIGPENDING] = int(pending)

    @property
    def pending_pages(self) -> int:
        """Pages ksgxd wrote back that the caller's clock has not reached yet."""
        return int(self.ms.pend[0, L_COUNT])

    # -------------------------------------------------------------- EUPDATESVN (6.17)
    # ``sgx_usage_count``: opens of /dev/sgx_enclave and /dev/sgx_vepc not yet released.
    usage_count = 0

    def sgx_inc_usage_count(self) -> int:
        """The first user on an idle EPC tries EUPDATESVN first; 0 or a negated errno."""
        if self.usage_count == 0:
            ret = self.sgx_update_svn()
            if ret:
                return ret
        self.usage_count += 1
        return 0

    def sgx_dec_usage_count(self) -> None:
        self.usage_count -= 1

    def sgx_update_svn(self) -> int:
        """``sgx_update_svn``: EUPDATESVN, retried while the entropy source is exhausted."""
        from epcsim.arch import SgxReturn

        if not self.cpu.eupdatesvn_supported:
            return 0
        ret = 0
        for _ in range(RDRAND_RETRY_LOOPS):
            ret = self.cpu.eupdatesvn()
            if ret != SgxReturn.SGX_INSUFFICIENT_ENTROPY:
                break
        if ret in (0, SgxReturn.SGX_NO_UPDATE):
            return 0
        if ret == SgxReturn.SGX_INSUFFICIENT_ENTROPY:
            return -EAGAIN
        return -EIO

    # -------------------------------------------------------------- the kernel's calls
    def alloc(self, kind: int, oid: int, reclaim: bool, node: int | None = None) -> int:
        """``sgx_alloc_epc_page``: a page number, or -ENOMEM / -EBUSY (negated errno).

        The NUMA walk starts at ``node``, by default the allocating CPU's
        (``numa_node_id()``: :attr:`current_node`)."""
        if node is None:
            node = int(self.ms.p[P_NODE])
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
            self.ms = self.ms._replace(chunk=table(np.zeros(n, dtype=np.int64)))
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
                "untracked": int((w == W_UNTRACKED).sum()), "leaked": int((w == W_LEAKED).sum()),
                "pending": int((w == W_PENDING).sum())}

    def bytes_per_page(self) -> float:
        per_page = sum(getattr(self.ms, f).nbytes for f in ("links", "pages", "cg"))
        fixed = sum(getattr(self.ms, f).nbytes for f in ("lists", "cnt", "p", "cgt", "pend"))
        return (per_page + fixed) / self.cpu.npages

    def check(self) -> None:
        """Assert the manager's invariants; raise AssertionError."""
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
        page, prev, k = int(ms.pend[0, L_HEAD]), NO_LINK, 0
        while page != NO_LINK:
            assert k <= n, "pending list cycle"
            assert int(ms.prv[page]) == prev, f"broken back link at pending page {page}"
            assert w[page] == W_PENDING, f"page {page} pending but where={w[page]}"
            seen[page] += 1
            prev, page, k = page, int(ms.nxt[page]), k + 1
        assert int(ms.pend[0, L_TAIL]) == prev and k == self.pending_pages, "pending counts"
        ring = ms.pend.shape[0] - 1
        recs = [1 + (int(ms.p[P_PEND_HEAD]) + i) % ring for i in range(int(ms.p[P_PEND_LEN]))]
        assert sum(int(ms.pend[r, R_COUNT]) for r in recs) == k, "pending ring counts"
        stamps = [int(ms.pend[r, R_STAMP]) for r in recs]
        assert stamps == sorted(stamps), "pending pages out of ksgxd's clock order"
        off_list = (w != W_FREE) & (w != W_LRU) & (w != W_PENDING)
        assert (seen[off_list] == 0).all(), "a page off the lists is linked"
        assert (seen[~off_list] == 1).all(), "a page is on no list or on two"
        assert int((w == W_FREE).sum()) == self.sgx_nr_free_pages, "sgx_nr_free_pages drifted"
        assert sum(self.census().values()) == n
