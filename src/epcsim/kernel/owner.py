"""The page-owner protocol: how the reclaimer drives every kind of EPC page.

The design of the 2018 series (v11-v13, ``struct sgx_epc_page_ops``): the EPC manager knows
pages only as integers with an owner *kind* and an owner *id*; to reclaim a page it calls the
kind's five operations, in this order, on a batch of up to ``SGX_NR_TO_SCAN`` pages:

=========  ==================================================================================
``get``     pin the owner; 0 when the owner is being torn down (the page is dropped from the
            reclaimer, and the owner's release path frees it)
``reclaim`` may this page go now? (age check, and reserve it); 0 refuses: the page goes back
            to the LRU tail and the owner is put
``block``   EBLOCK (and whatever must precede it, such as zapping mappings)
``write``   ETRACK/IPIs as needed, EWB, bookkeeping; returns a ``WRITE_*`` verdict
``put``     unpin the owner
=========  ==================================================================================

An owner may also give a sixth function, ``prefetch``, which the batch calls on the page
``HINT_AHEAD`` places behind the one it is isolating: a hint that starts loading what the
operations will read and changes nothing. The kernel has no such operation; it lets the
model overlap the cache misses of a batch's pages (each page's owner record is cold when it
reaches the head of the LRU) instead of taking them one after another.

A written page returns to the free list only after ``put``: "otherwise the page could be
reallocated and put() called on the wrong impl" (v13).

Every operation has the same signature, so one dispatcher serves all five::

    op(owner_state, mgr_state, hw_state, page, owner_id, arg) -> int

``arg`` is 1 for ``reclaim`` when the policy asks the owner to age the page (test and clear
its accessed bit), else 0. An owner is a compiled function per operation plus its state;
:func:`make_dispatch` closes over the owners' functions, as C hands over an ops pointer, so
the manager imports no owner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from epcsim.jit import cacheable, njit_closure, njit_inline

WRITE_FREED = 0     # the page was written back (or is gone): free it after put
WRITE_RETRY = 1     # the owner could not write it now: back to the LRU tail
WRITE_KEPT = 2      # the owner keeps the page and untracks it (it will free it itself)


@njit_inline
def no_prefetch(os: Any, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return 0


class OwnerOps(NamedTuple):
    """The five operations of one owner kind, each a compiled function, and the hint."""

    get: Callable[..., int]
    put: Callable[..., int]
    reclaim: Callable[..., int]
    block: Callable[..., int]
    write: Callable[..., int]
    prefetch: Callable[..., int] = no_prefetch


class Owner:
    """A kind of EPC page owner: its operations and its current state tuple.

    Subclasses keep their state in ``self.state`` (a named tuple of arrays) and may replace
    it when arrays grow; the manager fetches it at every call.
    """

    ops: OwnerOps
    state: Any
    name: str = "owner"
    # Owners whose operations are a few loads and stores may have the reclaim batch inlined
    # into allocation; owners that run leaves keep it one compiled call.
    inline_reclaim: bool = False

    def sync(self) -> None:
        """Called after every manager call that may have reclaimed this owner's pages."""


def make_dispatch(fns: Sequence[Callable[..., int]], k: int = 0,
                  cache: bool = False) -> Callable[..., int]:
    """A compiled ``d(owner_states, kind, ms, st, page, oid, arg)`` that calls ``fns[kind]``.

    Built as a chain of closures with the kind as a compile-time constant, so the tuple of
    owner states may hold a different type per kind.
    """
    f = fns[k]
    if k == len(fns) - 1:
        @functools.partial(njit_closure, cache=cache, inline=True)
        def last(os: Any, kind: int, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
            return f(os[k], ms, st, page, oid, arg)
        return last
    rest = make_dispatch(fns, k + 1, cache)

    @functools.partial(njit_closure, cache=cache, inline=True)
    def step(os: Any, kind: int, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
        if kind == k:
            return f(os[k], ms, st, page, oid, arg)
        return rest(os, kind, ms, st, page, oid, arg)
    return step


class Dispatch(NamedTuple):
    get: Callable[..., int]
    put: Callable[..., int]
    reclaim: Callable[..., int]
    block: Callable[..., int]
    write: Callable[..., int]
    prefetch: Callable[..., int]
    cache: bool   # every owner is epcsim's own: closures over them may be cached on disk
    hints: bool   # some owner gives a prefetch (else the batch skips the walk for hints)


_cache: dict[tuple[int, ...], Dispatch] = {}


def dispatch_for(owners: Sequence[OwnerOps]) -> Dispatch:
    """The dispatchers of the five operations and the hint for an owner table (memoised
    per table)."""
    key = tuple(id(f) for ops in owners for f in ops)
    d = _cache.get(key)
    if d is None:
        cache = cacheable(*(f for ops in owners for f in ops))
        hints = any(ops.prefetch is not no_prefetch for ops in owners)
        d = Dispatch(*(make_dispatch([ops[i] for ops in owners], 0, cache) for i in range(6)),
                     cache, hints)
        _cache[key] = d
    return d
