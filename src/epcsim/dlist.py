"""Doubly linked lists threaded through tables.

The kernel keeps pages on ``list_head`` lists; the model keeps the same lists in tables:
row ``item`` of ``links`` holds the item's next (column 0) and previous (column 1)
neighbour, row ``lst`` of ``ends`` the list's head (column 0) and tail (column 1); -1 ends a
list. The tables may have more columns after those (the manager's ``lists`` keeps a count,
the driver's enclave table its other fields). One item is on at most one list of a family
at a time.
"""

from __future__ import annotations

import numpy as np

from epcsim.jit import njit_inline

END = -1
NEXT, PREV = 0, 1
HEAD, TAIL = 0, 1


@njit_inline
def dl_push_tail(ends: np.ndarray, links: np.ndarray, lst: int, item: int) -> None:
    dl_append_run(ends, links, lst, item, item)


@njit_inline
def dl_append_run(ends: np.ndarray, links: np.ndarray, lst: int, first: int,
                  last: int) -> None:
    """Append the run ``first`` .. ``last``, already linked among themselves, to the tail
    of list ``lst`` (one item: ``first == last``)."""
    t = ends[lst, TAIL]
    links[first, PREV] = t
    links[last, NEXT] = END
    if t == END:
        ends[lst, HEAD] = first
    else:
        links[t, NEXT] = first
    ends[lst, TAIL] = last


@njit_inline
def dl_push_head(ends: np.ndarray, links: np.ndarray, lst: int, item: int) -> None:
    h = ends[lst, HEAD]
    links[item, PREV] = END
    links[item, NEXT] = h
    if h == END:
        ends[lst, TAIL] = item
    else:
        links[h, PREV] = item
    ends[lst, HEAD] = item


@njit_inline
def dl_del(ends: np.ndarray, links: np.ndarray, lst: int, item: int) -> None:
    p = links[item, PREV]
    n = links[item, NEXT]
    if p == END:
        ends[lst, HEAD] = n
    else:
        links[p, NEXT] = n
    if n == END:
        ends[lst, TAIL] = p
    else:
        links[n, PREV] = p
    links[item, NEXT] = END
    links[item, PREV] = END


@njit_inline
def dl_move_tail(ends: np.ndarray, links: np.ndarray, lst: int, item: int) -> None:
    """``list_move_tail`` for an item already on ``lst``: the LRU's hit path, in one step."""
    t = ends[lst, TAIL]
    if t == item:
        return
    p = links[item, PREV]
    n = links[item, NEXT]     # not END: the item is not the tail
    if p == END:
        ends[lst, HEAD] = n
    else:
        links[p, NEXT] = n
    links[n, PREV] = p
    links[item, PREV] = t
    links[item, NEXT] = END
    links[t, NEXT] = item
    ends[lst, TAIL] = item


@njit_inline
def dl_splice_head_to_tail(src: np.ndarray, src_lst: int, dst: np.ndarray, dst_lst: int,
                           links: np.ndarray, last: int) -> None:
    """Move the items of list ``src_lst`` of ``src`` from its head to ``last`` (on it) to the
    tail of list ``dst_lst`` of ``dst``, in order: what moving them one by one leaves, in
    four stores."""
    first = src[src_lst, HEAD]
    rest = links[last, NEXT]
    src[src_lst, HEAD] = rest
    if rest == END:
        src[src_lst, TAIL] = END
    else:
        links[rest, PREV] = END
    dl_append_run(dst, links, dst_lst, first, last)
