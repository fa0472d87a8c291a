"""Doubly linked lists threaded through index arrays.

The kernel keeps pages on ``list_head`` lists; the model keeps the same lists as arrays:
``nxt``/``prv`` give each item's neighbours, ``head``/``tail`` give each list's ends, -1 ends
a list. One item is on at most one list of a family at a time.
"""

from __future__ import annotations

import numpy as np

from epcsim.jit import njit_inline

END = -1


@njit_inline
def dl_push_tail(head: np.ndarray, tail: np.ndarray, nxt: np.ndarray, prv: np.ndarray,
                 lst: int, item: int) -> None:
    t = tail[lst]
    prv[item] = t
    nxt[item] = END
    if t == END:
        head[lst] = item
    else:
        nxt[t] = item
    tail[lst] = item


@njit_inline
def dl_push_head(head: np.ndarray, tail: np.ndarray, nxt: np.ndarray, prv: np.ndarray,
                 lst: int, item: int) -> None:
    h = head[lst]
    prv[item] = END
    nxt[item] = h
    if h == END:
        tail[lst] = item
    else:
        prv[h] = item
    head[lst] = item


@njit_inline
def dl_del(head: np.ndarray, tail: np.ndarray, nxt: np.ndarray, prv: np.ndarray,
           lst: int, item: int) -> None:
    p = prv[item]
    n = nxt[item]
    if p == END:
        head[lst] = n
    else:
        nxt[p] = n
    if n == END:
        tail[lst] = p
    else:
        prv[n] = p
    nxt[item] = END
    prv[item] = END


@njit_inline
def dl_move_tail(head: np.ndarray, tail: np.ndarray, nxt: np.ndarray, prv: np.ndarray,
                 lst: int, item: int) -> None:
    """``list_move_tail`` for an item already on ``lst``: the LRU's hit path, in one step."""
    t = tail[lst]
    if t == item:
        return
    p = prv[item]
    n = nxt[item]     # not END: the item is not the tail
    if p == END:
        head[lst] = n
    else:
        nxt[p] = n
    prv[n] = p
    prv[item] = t
    nxt[item] = END
    nxt[t] = item
    tail[lst] = item
