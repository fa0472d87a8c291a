"""The EPC cgroup: the misc controller's ``sgx_epc`` resource, as the v16 series designed it.

The EPC cgroup series, step by step. A cgroup v2 hierarchy whose nodes carry

* ``misc.capacity`` (the EPC, in bytes), ``misc.max``, ``misc.current``, ``misc.peak`` and
  ``misc.events`` (``max``: charges refused at this cgroup's limit);
* their own LRU of reclaimable pages (the root's is the global LRU): the manager keeps them
  as extra lists after the global one;
* a memory-cgroup side, ``memory.max`` / ``memory.current`` for the backing store of
  evicted pages, charged when the reclaimer allocates backing and uncharged when the backing
  is truncated.

The charge path (:func:`make_sgx_cgroup_charge`) is handed to the manager at assembly as a
:class:`~epcsim.kernel.main.ChargeOps`, so :mod:`epcsim.kernel.main` knows no cgroup.

Charging (``sgx_cgroup_try_charge``): loop { the misc charge succeeds -> done, at once; the
charging cgroup's subtree LRUs are all empty -> -ENOMEM; no reclaim allowed (fault path) ->
queue the charging cgroup's async work, -EBUSY; else reclaim from its subtree, fairly over
descendants (``next_cg``) }. Asynchronous reclaim thus starts only from a refused charge, and
``misc.events`` counts every refusal, retries included. Unreclaimable pages (SECS, VA,
virtual EPC) are charged but never on an LRU, so a cgroup full of them gets -ENOMEM.

Options for designs the series tried and dropped (off by default; docs/cgroups.md says why):
``sgx_epc.low`` / ``sgx_epc.high`` soft limits (RFC 2022, dropped when the controller moved
to misc, which has ``max`` only) and the EPC OOM killer (v2-v5, dropped in v6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE, SGX_NR_LOW_PAGES, SGX_NR_TO_SCAN
from epcsim.jit import njit, njit_closure, njit_inline
from epcsim.kernel.main import (
    CGT_MANAGER_COLS,
    CGT_PARENT,
    CGT_RECLAIMED,
    CGT_USAGE,
    EBUSY,
    ENOMEM,
    ERESTARTSYS,
    L_COUNT,
    P_CG,
    P_NNODES,
    P_NOW,
    P_SIGPENDING,
    P_WAKE,
    P_WAKE_AT,
    W_FREE,
    W_PENDING,
    ChargeOps,
    EpcManager,
    cg_charge,
    cg_uncharge,
    nr_pending,
    queue_ksgxd_work,
    wait_for_pending,
)

# The series' constants (epc_cgroup.c, sgx.h).
SGX_NR_TO_SCAN_MAX = 32                   # the most pages one reclaim call may take
SGX_CG_MIN_FREE_PAGE = SGX_NR_LOW_PAGES   # headroom a cgroup's async reclaimer keeps
SGX_CG_LOW_LIMIT = 4 * SGX_CG_MIN_FREE_PAGE  # below this max, no headroom is kept

# Charge-table columns owned by the controller (the manager's are 0..2).
CG_MAX = CGT_MANAGER_COLS          # misc.max in pages, -1: "max"
CG_PEAK = CG_MAX + 1               # misc.peak in pages
CG_EVENTS_MAX = CG_MAX + 2         # misc.events max
CG_NEXT = CG_MAX + 3               # next_cg: where the next reclaim of this subtree starts
CG_ASYNC = CG_MAX + 4              # reclaim work queued
CG_LIVE = CG_MAX + 5               # 1 while the cgroup exists
CG_CHILD = CG_MAX + 6              # first child
CG_SIBLING = CG_MAX + 7            # next sibling
CG_MEM_MAX = CG_MAX + 8            # memory.max in pages (backing store), -1: "max"
CG_MEM_USAGE = CG_MAX + 9          # memory.current in pages (hierarchical)
CG_MEM_EVENTS = CG_MAX + 10        # memory.events max: backing refused at this limit
CG_LOW = CG_MAX + 11               # option: sgx_epc.low in pages (0: none)
CG_HIGH = CG_MAX + 12              # option: sgx_epc.high in pages (-1: none)
CG_EVENTS_LOW = CG_MAX + 13        # global reclaim had to dip below low
CG_EVENTS_HIGH = CG_MAX + 14       # charges that went over high (and were throttled)
CG_OOM = CG_MAX + 15               # option: the EPC OOM killer is on for this cgroup
CG_OOM_KILLS = CG_MAX + 16         # enclaves torn down by it
CG_COLS = CG_MAX + 17

ROOT = 0
NONE = -1
UNLIMITED = 1 << 62


# ----------------------------------------------------------------------------- the hierarchy

@njit
def preorder_next(ms: Any, c: int, root: int) -> int:
    """The live cgroup after ``c`` in a pre-order walk of ``root``'s subtree (wraps)."""
    child = ms.cgt[c, CG_CHILD]
    if child != NONE:
        return child
    while c != root:
        sib = ms.cgt[c, CG_SIBLING]
        if sib != NONE:
            return sib
        c = ms.cgt[c, CGT_PARENT]
    return root


@njit_inline
def lru_count(ms: Any, c: int) -> int:
    return ms.lists[ms.p[P_NNODES] + c, L_COUNT]


@njit
def sgx_cgroup_lru_empty(ms: Any, root: int) -> bool:
    """Whether no cgroup of ``root``'s subtree has a page on its LRU."""
    c = root
    while True:
        if lru_count(ms, c) > 0:
            return False
        c = preorder_next(ms, c, root)
        if c == root:
            return True


@njit
def misc_cg_try_charge(ms: Any, cg: int) -> bool:
    """One page against every ``misc.max`` on the path to the root; count the refusal."""
    c = cg
    while c >= 0:
        m = ms.cgt[c, CG_MAX]
        if m >= 0 and ms.cgt[c, CGT_USAGE] + 1 > m:
            ms.cgt[c, CG_EVENTS_MAX] += 1
            return False
        c = ms.cgt[c, CGT_PARENT]
    cg_charge(ms, cg)
    c = cg
    while c >= 0:
        if ms.cgt[c, CGT_USAGE] > ms.cgt[c, CG_PEAK]:
            ms.cgt[c, CG_PEAK] = ms.cgt[c, CGT_USAGE]
        c = ms.cgt[c, CGT_PARENT]
    return True


@njit
def sgx_cgroup_max_pages(ms: Any, cg: int) -> int:
    """The tightest ``misc.max`` on the path to the root, in pages."""
    best = UNLIMITED
    c = cg
    while c >= 0:
        m = ms.cgt[c, CG_MAX]
        if 0 <= m < best:
            best = m
        c = ms.cgt[c, CGT_PARENT]
    return best


@njit
def sgx_cgroup_should_reclaim(ms: Any, cg: int) -> bool:
    """Async reclaim keeps SGX_CG_MIN_FREE_PAGE of headroom, unless the limit is tiny."""
    if sgx_cgroup_lru_empty(ms, cg):
        return False
    m = sgx_cgroup_max_pages(ms, cg)
    if m > SGX_CG_LOW_LIMIT:
        m -= SGX_CG_MIN_FREE_PAGE
    return ms.cgt[cg, CGT_USAGE] >= m


@njit
def sgx_cgroup_next_get(ms: Any, root: int) -> int:
    """``root->next_cg``, advanced in pre-order so no busy cgroup starves its siblings."""
    nxt = ms.cgt[root, CG_NEXT]
    if nxt < 0 or ms.cgt[nxt, CG_LIVE] == 0:
        nxt = root
    ms.cgt[root, CG_NEXT] = preorder_next(ms, nxt, root)
    return nxt


@njit_inline
def fruitless_passes(ms: Any, cg: int) -> int:
    """The reclaim passes over ``cg``'s subtree that free nothing after which the model
    ends a loop the kernel would spin in until a signal: two passes' worth of its pages
    (docs/fidelity.md)."""
    return 2 * (ms.cgt[cg, CGT_USAGE] // SGX_NR_TO_SCAN + 2)


@njit_inline
def protected_by_low(ms: Any, c: int) -> bool:
    """Option ``low``: global reclaim passes over a cgroup at or under its ``low``."""
    low = ms.cgt[c, CG_LOW]
    return low > 0 and ms.cgt[c, CGT_USAGE] <= low


@njit
def mem_cgroup_may_charge(ms: Any, cg: int, npages: int) -> bool:
    """Whether the backing store may grow by ``npages`` under every ``memory.max``."""
    if ms.cgt.shape[0] == 0:
        return True
    c = cg
    while c >= 0:
        m = ms.cgt[c, CG_MEM_MAX]
        if m >= 0 and ms.cgt[c, CG_MEM_USAGE] + npages > m:
            ms.cgt[c, CG_MEM_EVENTS] += 1
            return False
        c = ms.cgt[c, CGT_PARENT]
    return True


@njit
def mem_cgroup_charge(ms: Any, cg: int, npages: int) -> None:
    """Add ``npages`` (negative: uncharge) of backing store to ``cg`` and its ancestors."""
    if ms.cgt.shape[0] == 0:
        return
    c = cg
    while c >= 0:
        ms.cgt[c, CG_MEM_USAGE] += npages
        c = ms.cgt[c, CGT_PARENT]


# ----------------------------------------------------------------------------- the charge path

def make_sgx_cgroup_charge(reclaim_list: Any, cache: bool) -> ChargeOps:
    """The v16 charge and reclaim paths, closed over the manager's batch over one LRU."""
    closure_inline = functools.partial(njit_closure, cache=cache, inline=True)
    closure = functools.partial(njit_closure, cache=cache)

    @closure
    def sgx_cgroup_reclaim_pages(os: Any, ms: Any, st: Any, root: int, nr_to_scan: int,
                                 honour_low: bool) -> int:
        """Scan ``root``'s subtree from ``next_cg`` until ``nr_to_scan`` pages were tried."""
        nn = ms.p[P_NNODES]
        cnt = 0
        skipped = 0
        nlive = 0
        c = root
        while True:
            nlive += 1
            c = preorder_next(ms, c, root)
            if c == root:
                break
        while cnt < nr_to_scan and not sgx_cgroup_lru_empty(ms, root):
            nxt = sgx_cgroup_next_get(ms, root)
            if lru_count(ms, nxt) == 0:
                skipped += 1
                if skipped > 2 * nlive:
                    break
                continue
            if honour_low and skipped <= nlive and protected_by_low(ms, nxt):
                skipped += 1
                continue
            if honour_low and protected_by_low(ms, nxt):
                ms.cgt[nxt, CG_EVENTS_LOW] += 1
            skipped = 0
            cnt += reclaim_list(os, ms, st, min(SGX_NR_TO_SCAN, SGX_NR_TO_SCAN_MAX), nn + nxt)
        return cnt

    @closure_inline
    def queue_async(ms: Any, cg: int) -> None:
        # The model's workqueue runs on ksgxd's CPU: queueing work wakes it.
        ms.cgt[cg, CG_ASYNC] = 1
        queue_ksgxd_work(ms)

    @closure
    def reclaim_from(os: Any, ms: Any, st: Any, cg: int) -> bool:
        """One reclaim pass over ``cg``'s subtree; whether its usage went down."""
        before = ms.cgt[cg, CGT_USAGE]
        sgx_cgroup_reclaim_pages(os, ms, st, cg, 1, False)
        return ms.cgt[cg, CGT_USAGE] < before

    @closure
    def sgx_cgroup_try_charge(os: Any, ms: Any, st: Any, do_reclaim: bool) -> int:
        """The series' loop: a charge that succeeds returns at once; a refused one reclaims
        from the charging cgroup's subtree (-ENOMEM once that subtree's LRUs are empty),
        or, where the caller may not reclaim (the fault path), queues the charging
        cgroup's asynchronous work and returns -EBUSY."""
        cg = ms.p[P_CG]
        idle = 0
        while not misc_cg_try_charge(ms, cg):
            # Pages ksgxd or the async worker wrote back and will have freed by their own
            # clock count as on the LRU: in the kernel they are isolated for the
            # microseconds that takes, and the charging thread spins meanwhile. It waits
            # for them (the fault path through -EBUSY) before reclaiming itself.
            if sgx_cgroup_lru_empty(ms, cg) and nr_pending(ms) == 0:
                return -ENOMEM
            if ms.p[P_SIGPENDING] != 0:
                return -ERESTARTSYS
            if not do_reclaim:
                queue_async(ms, cg)
                return -EBUSY
            if nr_pending(ms) > 0:
                wait_for_pending(ms, st)
                continue
            if reclaim_from(os, ms, st, cg):
                idle = 0
                continue
            idle += 1
            # The kernel loops until a signal (-ERESTARTSYS; the memory cgroup's OOM killer
            # sends one when the backing store is what refuses). With nobody else to make
            # progress the model ends the allocation after two fruitless passes over the
            # subtree: docs/fidelity.md lists this.
            if idle > fruitless_passes(ms, cg):
                return -ENOMEM
        # Option high: throttle a cgroup that went over its soft limit by reclaiming it back.
        c = cg
        while c >= 0:
            high = ms.cgt[c, CG_HIGH]
            if high >= 0 and ms.cgt[c, CGT_USAGE] > high:
                ms.cgt[c, CG_EVENTS_HIGH] += 1
                if do_reclaim:
                    tries = 0
                    while (ms.cgt[c, CGT_USAGE] > high and tries < 4
                           and not sgx_cgroup_lru_empty(ms, c)):
                        reclaim_from(os, ms, st, c)
                        tries += 1
                else:
                    queue_async(ms, c)
            c = ms.cgt[c, CGT_PARENT]
        # The series writes a queue_work(should_reclaim) after its loop, which a successful
        # charge never reaches (it leaves through "goto out"): nothing is queued here.
        return cg

    @closure_inline
    def commit(ms: Any, page: int, cg: int) -> None:
        ms.cg[page] = cg

    @closure_inline
    def cancel(ms: Any, cg: int) -> None:
        cg_uncharge(ms, cg)

    @closure
    def sgx_reclaim_pages_global(os: Any, ms: Any, st: Any, nr: int) -> int:
        return sgx_cgroup_reclaim_pages(os, ms, st, ROOT, nr, True)

    @closure
    def sgx_lru_pages(ms: Any) -> int:
        total = 0
        for lst in range(ms.p[P_NNODES], ms.lists.shape[0]):
            total += ms.lists[lst, L_COUNT]
        return total

    @closure
    def sgx_cgroup_async_work(os: Any, ms: Any, st: Any) -> int:
        """Each queued cgroup: reclaim while ``sgx_cgroup_should_reclaim``."""
        batches = 0
        for cg in range(ms.cgt.shape[0]):
            if ms.cgt[cg, CG_ASYNC] == 0:
                continue
            ms.cgt[cg, CG_ASYNC] = 0
            if ms.cgt[cg, CG_LIVE] == 0:
                continue
            idle = 0
            # The kernel's worker loops while should_reclaim; a fruitless pass may only have
            # aged pages, so the model gives up after two passes' worth over the subtree
            # (docs/fidelity.md), never sooner.
            while (sgx_cgroup_should_reclaim(ms, cg)
                   and idle <= fruitless_passes(ms, cg)):
                before = ms.cgt[cg, CGT_USAGE]
                sgx_cgroup_reclaim_pages(os, ms, st, cg, SGX_NR_TO_SCAN, False)
                batches += 1
                idle = idle + 1 if ms.cgt[cg, CGT_USAGE] >= before else 0
        return batches

    return ChargeOps(sgx_cgroup_try_charge, commit, cancel, sgx_reclaim_pages_global,
                     sgx_lru_pages, sgx_cgroup_async_work)


# ----------------------------------------------------------------------------- Python side

class CgroupError(ValueError):
    """A cgroup operation the kernel would refuse (the message names the errno)."""


def _pages(value: int | str | None) -> int:
    """Bytes (or "max"/None) to the table's pages; -1 is "max". Rounded down, as misc does."""
    if value is None or value == "max":
        return -1
    n = int(value)
    if n < 0:
        raise CgroupError(f"-EINVAL: a limit is a number of bytes or 'max', not {value!r}")
    return n // PAGE_SIZE


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CgroupError(f"-EINVAL: not a number of bytes: {text!r}") from None


def _bytes(pages: int) -> int | str:
    return "max" if pages < 0 else pages * PAGE_SIZE


class EpcCgroups:
    """The misc controller's ``sgx_epc`` resource over one kernel's EPC manager.

    Paths are cgroup v2 paths: ``/`` is the root, ``/kubepods/pod1`` a grandchild. Create
    the controller before any enclave allocates a page (as the kernel registers the
    resource at boot): pages allocated earlier would be charged to nobody.

    Tasks are placed with :meth:`enter` (the ``current`` task's cgroup); an enclave belongs
    to the cgroup its process was in when it opened ``/dev/sgx_enclave``, and every page it
    allocates is charged there. A ``/dev/sgx_vepc`` file remembers the cgroup of the VMM that
    opened it and charges its pages there (:mod:`epcsim.kernel.virt`); in upstream mode they
    are never on an LRU, so the cgroup treats them as unreclaimable.
    """

    def __init__(self, mgr: EpcManager, capacity: int = 16) -> None:
        if mgr.ms.p[P_NNODES] + 1 != mgr.ms.head.shape[0]:
            raise CgroupError("-EBUSY: the EPC cgroup is already attached")
        used = int(mgr.cpu.npages - mgr.sgx_nr_free_pages - mgr.dirty)
        if used:
            raise CgroupError(f"-EBUSY: {used} EPC pages were allocated before the "
                              "controller; they would be charged to nobody")
        self.mgr = mgr
        self._cap = max(capacity, 1)
        mgr.attach_charge(make_sgx_cgroup_charge, self._cap, CG_COLS)
        self.paths: dict[str, int] = {"/": ROOT}
        self._free: list[int] = list(range(self._cap - 1, 0, -1))
        self._init_row(ROOT, NONE)
        self.oom_killer: Callable[[set[int]], bool] | None = None
        mgr.move_charge = self.move_charge

    # -------------------------------------------------------------- table
    @property
    def cgt(self) -> np.ndarray:
        return self.mgr.ms.cgt

    def _init_row(self, c: int, parent: int) -> None:
        row = self.cgt[c]
        row[:] = 0
        row[CGT_PARENT] = parent
        row[CG_MAX] = -1
        row[CG_MEM_MAX] = -1
        row[CG_HIGH] = -1
        row[CG_NEXT] = c
        row[CG_LIVE] = 1
        row[CG_CHILD] = NONE
        row[CG_SIBLING] = NONE

    def _grow(self) -> None:
        old = self._cap
        self._cap *= 2
        self.mgr.attach_charge(make_sgx_cgroup_charge, self._cap, CG_COLS)
        self._free = list(range(self._cap - 1, old - 1, -1))

    @staticmethod
    def _norm(path: str) -> str:
        if not path.startswith("/"):
            raise CgroupError(f"-EINVAL: cgroup paths are absolute: {path!r}")
        parts = [p for p in path.split("/") if p]
        return "/" + "/".join(parts)

    def cgroup_id(self, path: str) -> int:
        """The row of ``path`` (what an owner stores to charge its pages there)."""
        p = self._norm(path)
        if p not in self.paths:
            raise CgroupError(f"-ENOENT: no cgroup {p}")
        return self.paths[p]

    def path_of(self, c: int) -> str:
        for p, i in self.paths.items():
            if i == c:
                return p
        raise CgroupError(f"-ENOENT: no cgroup with id {c}")

    # -------------------------------------------------------------- cgroupfs
    def mkdir(self, path: str, *, max: int | str | None = None) -> int:  # noqa: A002
        p = self._norm(path)
        if p in self.paths:
            raise CgroupError(f"-EEXIST: {p}")
        parent = self.cgroup_id(p.rsplit("/", 1)[0] or "/")
        if not self._free:
            self._grow()
        c = self._free.pop()
        self._init_row(c, parent)
        cgt = self.cgt
        cgt[c, CG_SIBLING] = cgt[parent, CG_CHILD]
        cgt[parent, CG_CHILD] = c
        self.paths[p] = c
        if max is not None:
            self.set_max(p, max)
        return c

    def makedirs(self, path: str, *, max: int | str | None = None,  # noqa: A002
                 memory_max: int | str | None = None) -> int:
        """``mkdir -p``: create ``path`` and its missing ancestors; set its limits if given."""
        p = self._norm(path)
        parts = [x for x in p.split("/") if x]
        for k in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:k])
            if sub not in self.paths:
                self.mkdir(sub)
        if max is not None:
            self.set_max(p, max)
        if memory_max is not None:
            self.set_memory_max(p, memory_max)
        return self.paths[p]

    def rmdir(self, path: str) -> None:
        """Remove an empty cgroup (no children, nothing charged)."""
        c = self.cgroup_id(path)
        cgt = self.cgt
        if c == ROOT:
            raise CgroupError("-EBUSY: the root cgroup cannot be removed")
        if cgt[c, CG_CHILD] != NONE or cgt[c, CGT_USAGE] or cgt[c, CG_MEM_USAGE]:
            raise CgroupError(f"-EBUSY: {self._norm(path)} has children or charges")
        parent = int(cgt[c, CGT_PARENT])
        prev, x = NONE, int(cgt[parent, CG_CHILD])
        while x != c:
            prev, x = x, int(cgt[x, CG_SIBLING])
        if prev == NONE:
            cgt[parent, CG_CHILD] = cgt[c, CG_SIBLING]
        else:
            cgt[prev, CG_SIBLING] = cgt[c, CG_SIBLING]
        # Any next_cg cursor pointing here restarts at its own subtree's root.
        for row in range(cgt.shape[0]):
            if cgt[row, CG_NEXT] == c:
                cgt[row, CG_NEXT] = row
        cgt[c, CG_LIVE] = 0
        del self.paths[self._norm(path)]
        self._free.append(c)

    def set_max(self, path: str, value: int | str | None) -> None:
        """``echo "sgx_epc N" > misc.max``: never evicts; only new charges see it."""
        self.cgt[self.cgroup_id(path), CG_MAX] = _pages(value)

    def set_memory_max(self, path: str, value: int | str | None) -> None:
        self.cgt[self.cgroup_id(path), CG_MEM_MAX] = _pages(value)

    def set_low(self, path: str, value: int | str | None) -> None:
        """Option (dropped in 2022): protect ``value`` bytes from global reclaim."""
        self.cgt[self.cgroup_id(path), CG_LOW] = max(_pages(value), 0)

    def set_high(self, path: str, value: int | str | None) -> None:
        """Option (dropped in 2022): reclaim a cgroup back under ``value`` after a charge."""
        self.cgt[self.cgroup_id(path), CG_HIGH] = _pages(value)

    def set_oom(self, path: str, on: bool = True,
                killer: Callable[[set[int]], bool] | None = None) -> None:
        """Option (dropped in v6): tear down an enclave when only unreclaimable pages remain.

        ``killer`` gets the ids of the cgroup's subtree and frees an enclave of it (the
        driver's :meth:`~epcsim.kernel.encl.SgxDriver.oom_kill`); the allocation that got
        -ENOMEM at this cgroup's limit is then retried.
        """
        self.cgt[self.cgroup_id(path), CG_OOM] = int(on)
        if killer is not None:
            self.oom_killer = killer
        on_any = bool(self.cgt[:, CG_OOM].any())
        self.mgr.on_enomem = self._oom if on_any else None

    def _oom(self) -> bool:
        """``sgx_epc_oom``: the allocating task's first cgroup at its limit with OOM on."""
        cgt = self.cgt
        c = int(self.mgr.ms.p[P_CG])
        while c >= 0:
            m = int(cgt[c, CG_MAX])
            full = m >= 0 and int(cgt[c, CGT_USAGE]) + 1 > m
            if full and cgt[c, CG_OOM] and self.oom_killer is not None:
                if self.oom_killer(set(self.subtree(c))):
                    cgt[c, CG_OOM_KILLS] += 1
                    return True
                return False
            c = int(cgt[c, CGT_PARENT])
        return False

    @property
    def capacity(self) -> int:
        """``misc.capacity`` of ``sgx_epc``: the sum of the EPC sections, in bytes."""
        return sum(self.mgr.sgx_total_bytes().values())

    def max(self, path: str) -> int | str:
        return _bytes(int(self.cgt[self.cgroup_id(path), CG_MAX]))

    def current(self, path: str) -> int:
        return int(self.cgt[self.cgroup_id(path), CGT_USAGE]) * PAGE_SIZE

    def peak(self, path: str) -> int:
        return int(self.cgt[self.cgroup_id(path), CG_PEAK]) * PAGE_SIZE

    def events(self, path: str) -> dict[str, int]:
        row = self.cgt[self.cgroup_id(path)]
        return {"max": int(row[CG_EVENTS_MAX]), "high": int(row[CG_EVENTS_HIGH]),
                "low": int(row[CG_EVENTS_LOW]), "oom_kill": int(row[CG_OOM_KILLS])}

    def reclaimed(self, path: str) -> int:
        """Pages written back from this cgroup's own LRU."""
        return int(self.cgt[self.cgroup_id(path), CGT_RECLAIMED])

    def memory_current(self, path: str) -> int:
        return int(self.cgt[self.cgroup_id(path), CG_MEM_USAGE]) * PAGE_SIZE

    def memory_events(self, path: str) -> dict[str, int]:
        return {"max": int(self.cgt[self.cgroup_id(path), CG_MEM_EVENTS])}

    def read(self, path: str, file: str) -> str:
        """The text of a cgroupfs file, as ``cat`` shows it."""
        if file == "misc.capacity":
            return f"sgx_epc {self.capacity}"
        if file == "misc.max":
            return f"sgx_epc {self.max(path)}"
        if file == "misc.current":
            return f"sgx_epc {self.current(path)}"
        if file == "misc.peak":
            return f"sgx_epc {self.peak(path)}"
        if file == "misc.events":
            return f"sgx_epc.max {self.events(path)['max']}"
        if file == "memory.max":
            return str(_bytes(int(self.cgt[self.cgroup_id(path), CG_MEM_MAX])))
        if file == "memory.current":
            return str(self.memory_current(path))
        raise CgroupError(f"-ENOENT: no file {file}")

    def write(self, path: str, file: str, text: str) -> None:
        """``echo TEXT > FILE``: ``misc.max`` takes ``sgx_epc N|max``."""
        if file == "misc.max":
            words = text.split()
            if len(words) != 2 or words[0] != "sgx_epc":
                raise CgroupError(f"-EINVAL: misc.max takes 'sgx_epc <bytes|max>', not {text!r}")
            self.set_max(path, words[1] if words[1] == "max" else _number(words[1]))
        elif file == "memory.max":
            t = text.strip()
            self.set_memory_max(path, t if t == "max" else _number(t))
        else:
            raise CgroupError(f"-EACCES: {file} is read-only or unknown")

    # -------------------------------------------------------------- tasks
    @property
    def current_id(self) -> int:
        return int(self.mgr.ms.p[P_CG])

    def enter(self, path: str) -> None:
        """Move the ``current`` task to ``path`` (``echo $$ > cgroup.procs``)."""
        self.mgr.ms.p[P_CG] = self.cgroup_id(path)

    def charging(self, path_or_id: str | int) -> AbstractContextManager[None]:
        """Run a block as a task of ``path_or_id`` and put ``current`` back afterwards."""
        c = path_or_id if isinstance(path_or_id, int) else self.cgroup_id(path_or_id)
        return self.mgr.current(c)

    def at_limit(self, path: str) -> str | None:
        """The first cgroup from ``path`` to the root whose ``misc.max`` refuses one more
        page, or None."""
        c = self.cgroup_id(path)
        cgt = self.cgt
        while c >= 0:
            m = int(cgt[c, CG_MAX])
            if m >= 0 and int(cgt[c, CGT_USAGE]) + 1 > m:
                return self.path_of(c)
            c = int(cgt[c, CGT_PARENT])
        return None

    def move_charge(self, page: int, to: int) -> None:
        """Hand an in-use page's charge to cgroup ``to`` without asking its limits.

        For a page nobody may refuse: KVM's exit handler maps a page of the host's reserve
        (charged to the root, as KVM's own pages are) behind a guest page of a VM whose VMM
        runs in ``to``. The page is the VM's from then on, so ``to`` is charged, past its
        ``misc.max`` if it must be (the handler cannot fail the guest), and the limit is
        enforced after the fact: ``to``'s async reclaim is queued, as after any charge that
        leaves the cgroup without headroom. The page must be off every LRU.
        """
        ms = self.mgr.ms
        cgt = self.cgt
        old = int(ms.cg[page])
        if old == to:
            return
        assert int(ms.where[page]) & 0x7F != 1, "move the charge before the page is on an LRU"
        c = old
        while c >= 0:
            cgt[c, CGT_USAGE] -= 1
            c = int(cgt[c, CGT_PARENT])
        c = to
        while c >= 0:
            cgt[c, CGT_USAGE] += 1
            cgt[c, CG_PEAK] = max(cgt[c, CG_PEAK], cgt[c, CGT_USAGE])
            c = int(cgt[c, CGT_PARENT])
        ms.cg[page] = to
        if sgx_cgroup_should_reclaim(ms, to):
            cgt[to, CG_ASYNC] = 1
            if not ms.p[P_WAKE]:
                ms.p[P_WAKE_AT] = ms.p[P_NOW]
            ms.p[P_WAKE] = 1

    # -------------------------------------------------------------- reports
    def summary(self) -> list[dict[str, Any]]:
        """Per cgroup: path, max, peak, current, events_max, reclaimed (bytes, pages)."""
        out = []
        for p, c in sorted(self.paths.items()):
            row = self.cgt[c]
            out.append({"path": p, "max": _bytes(int(row[CG_MAX])),
                        "peak": int(row[CG_PEAK]) * PAGE_SIZE,
                        "current": int(row[CGT_USAGE]) * PAGE_SIZE,
                        "events_max": int(row[CG_EVENTS_MAX]),
                        "reclaimed": int(row[CGT_RECLAIMED]),
                        "memory_current": int(row[CG_MEM_USAGE]) * PAGE_SIZE,
                        "memory_events_max": int(row[CG_MEM_EVENTS])})
        return out

    def series_rows(self, time_s: float) -> list[dict[str, Any]]:
        """One ``cgroup_series`` sample: ``misc.current`` and ``misc.max`` (NaN: "max") in
        pages per cgroup, the columns ``epcsim plot`` draws."""
        cgt = self.cgt
        return [{"time_s": time_s, "cgroup": p,
                 "current_pages": int(cgt[c, CGT_USAGE]),
                 "max_pages": float(cgt[c, CG_MAX]) if cgt[c, CG_MAX] >= 0 else float("nan")}
                for p, c in sorted(self.paths.items())]

    def subtree(self, c: int) -> list[int]:
        out, stack = [], [c]
        while stack:
            x = stack.pop()
            out.append(x)
            ch = int(self.cgt[x, CG_CHILD])
            while ch != NONE:
                stack.append(ch)
                ch = int(self.cgt[ch, CG_SIBLING])
        return out

    def check(self) -> None:
        """Assert the controller's invariants; raise AssertionError."""
        ms = self.mgr.ms
        w = ms.where & 0x7F
        # Pages ksgxd wrote back are uncharged on its clock, before the caller's reaches it.
        in_use = (w != W_FREE) & (w != W_PENDING)
        own = np.bincount(ms.cg[in_use].astype(np.int64), minlength=self.cgt.shape[0])
        own[ROOT] -= self.mgr.dirty   # left dirty at boot: in use, charged to nobody
        for p, c in self.paths.items():
            sub = self.subtree(c)
            want = int(own[sub].sum())
            got = int(self.cgt[c, CGT_USAGE])
            assert got == want, f"{p}: misc.current {got} pages, {want} charged in its subtree"
            assert int(self.cgt[c, CG_PEAK]) >= got, f"{p}: peak below current"
        used = int(in_use.sum()) - self.mgr.dirty
        assert int(self.cgt[ROOT, CGT_USAGE]) == used, "root misc.current != used EPC"
