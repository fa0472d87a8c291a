"""Workloads of real programs: algorithms over real data, emitting the pages they touch.

Each program lays its data structures out in a simulated address space of ``size`` bytes
(regions one after another, each starting on a page), runs the algorithm over real numpy
arrays in compiled code, and records the enclave pages its loads and stores touch. A trace
is three equal-length arrays: ``page`` (int64, 0-based within the program's space),
``write`` (bool) and ``thread`` (int32, the program thread that made the access).

What a record is
    Every load and store is counted (``Trace.counts``: per region, reads and writes in
    machine words), but a thread's access to one of the last ``tlb`` distinct pages it
    recorded makes no new record: that page was touched a few records ago, so it is
    resident and mapped, and recording every word would make traces hundreds of times
    longer without a fault more. A store to such a page turns its record into a write. With
    ``tlb = 1`` only runs of accesses to one page are merged.

Bounded memory
    A trace stops after ``accesses`` records (the program stops with it); its arrays are
    13 bytes a record. The program's data are real arrays of about ``size`` bytes, plus the
    generated graph's edge list (BFS, PageRank) or the key distribution (kvstore), each
    smaller than ``size``. So generating a trace holds at most about
    ``2 * size + 13 * accesses`` bytes.

Programs that serve requests (``btree``, ``kvstore``) run until the trace is full (or
until they have served ``accesses`` requests, when requests make fewer records); the others
end, and a caller that needs more accesses runs them again (:func:`accesses`).
Randomness comes from a splitmix64 stream seeded by ``seed`` alone, so a trace is the same
on every run and platform, compiled or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from epcsim.jit import njit

__all__ = ["PROGRAMS", "Param", "Program", "ProgramError", "Trace", "accesses", "check_params",
           "generate"]

PAGE = 4096
MIN_SIZE = 64 * 1024
MAX_SIZE = 4 << 30
MAX_ACCESSES = 1 << 31

# ---------------------------------------------------------------------------- emitting


@njit
def _acc(E: Any, t: int, r: int, addr: int, w: bool, k: int) -> None:
    """Thread ``t`` made ``k`` word accesses to region ``r`` at byte ``addr``."""
    pg, wr, th, st, win, cnt = E
    if w:
        cnt[r, 1] += k
    else:
        cnt[r, 0] += k
    p = addr >> 12
    size = win.shape[1]
    j = 0
    while j < size and win[t, j, 0] != p:
        j += 1
    if j < size:
        rec = win[t, j, 1]
        if w and rec >= 0:
            wr[rec] = True
    else:
        n = st[0]
        if n >= st[1]:
            st[2] = 1   # full: the program stops at its next check
            return
        pg[n] = p
        wr[n] = w
        th[n] = t
        st[0] = n + 1
        rec = n
        j = size - 1
    # most recent first: the window is a tiny LRU of the thread's pages
    while j > 0:
        win[t, j, 0] = win[t, j - 1, 0]
        win[t, j, 1] = win[t, j - 1, 1]
        j -= 1
    win[t, 0, 0] = p
    win[t, 0, 1] = rec


@njit
def _acc_range(E: Any, t: int, r: int, addr: int, nbytes: int, w: bool) -> None:
    """A sequential access of ``nbytes`` from ``addr``: each page it covers, in order."""
    if nbytes <= 0:
        return
    first = addr >> 12
    last = (addr + nbytes - 1) >> 12
    for p in range(first, last + 1):
        lo = max(addr, p << 12)
        hi = min(addr + nbytes, (p + 1) << 12)
        _acc(E, t, r, lo, w, (hi - lo + 7) // 8)


@njit
def _rand(rs: np.ndarray) -> np.uint64:
    """splitmix64: the next 64 random bits of the stream in ``rs[0]``."""
    rs[0] += np.uint64(0x9E3779B97F4A7C15)
    z = rs[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit
def _below(rs: np.ndarray, n: int) -> int:
    return int(_rand(rs) % np.uint64(n))


@njit
def _unit(rs: np.ndarray) -> float:
    return float(_rand(rs) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit
def _key(seed: int, i: int) -> int:
    """The i-th distinct key (a bijective mix of i), never 0 (0 marks an empty slot)."""
    z = np.uint64(i) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return int(z >> np.uint64(2)) + 1


# ---------------------------------------------------------------------------- cipher


@njit
def _chacha_block(key: np.ndarray, counter: int, out: np.ndarray) -> None:
    """One ChaCha20 block (RFC 8439) for ``key`` (8 words), ``counter`` and a zero nonce."""
    m = 0xFFFFFFFF
    x = np.empty(16, np.int64)
    x[0], x[1], x[2], x[3] = 0x61707865, 0x3320646E, 0x79622D32, 0x6B206574
    for i in range(8):
        x[4 + i] = key[i]
    x[12] = counter & m
    x[13] = 0
    x[14] = 0
    x[15] = 0
    s = x.copy()
    for _ in range(10):
        for q in range(8):
            if q < 4:
                a, b, c, d = q, 4 + q, 8 + q, 12 + q
            else:
                a, b, c, d = q - 4, 4 + (q - 3) % 4, 8 + (q - 2) % 4, 12 + (q - 1) % 4
            s[a] = (s[a] + s[b]) & m
            v = s[d] ^ s[a]
            s[d] = ((v << 16) | (v >> 16)) & m
            s[c] = (s[c] + s[d]) & m
            v = s[b] ^ s[c]
            s[b] = ((v << 12) | (v >> 20)) & m
            s[a] = (s[a] + s[b]) & m
            v = s[d] ^ s[a]
            s[d] = ((v << 8) | (v >> 24)) & m
            s[c] = (s[c] + s[d]) & m
            v = s[b] ^ s[c]
            s[b] = ((v << 7) | (v >> 25)) & m
    for i in range(16):
        out[i] = (s[i] + x[i]) & m


@njit
def _cipher(E: Any, buf: np.ndarray, key: np.ndarray, ctx_base: int, buf_base: int,
            threads: int, chunk: int, passes: int) -> None:
    words = buf.shape[0]
    part = (words // threads) // 16 * 16
    cw = chunk // 4
    steps = (part + cw - 1) // cw
    ks = np.empty(16, np.int64)
    counters = np.zeros(threads, np.int64)
    for _ in range(passes):
        for s in range(steps):
            for t in range(threads):
                lo = t * part + s * cw
                hi = min(t * part + part, lo + cw)
                if lo >= hi:
                    continue
                ctx = ctx_base + t * PAGE
                # EVP_EncryptUpdate: read the context (key, counter), encrypt, store counter
                _acc_range(E, t, 0, ctx, 40, False)
                for b in range(lo, hi, 16):
                    _chacha_block(key, counters[t], ks)
                    counters[t] += 1
                    _acc_range(E, t, 1, buf_base + 4 * b, 64, False)
                    for i in range(16):
                        buf[b + i] = buf[b + i] ^ ks[i]
                    _acc_range(E, t, 1, buf_base + 4 * b, 64, True)
                _acc(E, t, 0, ctx + 32, True, 1)
                if E[3][2]:
                    return


# ---------------------------------------------------------------------------- sort


@njit
def _sort(E: Any, data: np.ndarray, aux: np.ndarray, data_base: int, aux_base: int,
          rs: np.ndarray) -> None:
    n = data.shape[0]
    for i in range(n):
        data[i] = _rand(rs) >> np.uint64(1)
        _acc(E, 0, 0, data_base + 8 * i, True, 1)
    src, dst = data, aux
    sb, db, sr, dr = data_base, aux_base, 0, 1
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j = lo, mid
            for k in range(lo, hi):
                # each element is loaded once, when it becomes the head of its run
                if j >= hi or (i < mid and src[i] <= src[j]):
                    _acc(E, 0, sr, sb + 8 * i, False, 1)
                    dst[k] = src[i]
                    i += 1
                else:
                    _acc(E, 0, sr, sb + 8 * j, False, 1)
                    dst[k] = src[j]
                    j += 1
                _acc(E, 0, dr, db + 8 * k, True, 1)
            if E[3][2]:
                return
        src, dst = dst, src
        sb, db = db, sb
        sr, dr = dr, sr
        width *= 2
    if sr == 1:
        for k in range(n):
            _acc(E, 0, 1, aux_base + 8 * k, False, 1)
            data[k] = aux[k]
            _acc(E, 0, 0, data_base + 8 * k, True, 1)


# ---------------------------------------------------------------------------- matmul


@njit
def _matmul(E: Any, a: np.ndarray, b: np.ndarray, c: np.ndarray, bases: np.ndarray,
            block: int, threads: int, rs: np.ndarray) -> None:
    n = a.shape[0]
    for r in range(2):
        m = a if r == 0 else b
        for i in range(n):
            for j in range(n):
                m[i, j] = _unit(rs)
            _acc_range(E, 0, r, bases[r] + 8 * n * i, 8 * n, True)
    for i in range(n):
        c[i, :] = 0.0
        _acc_range(E, 0, 2, bases[2] + 8 * n * i, 8 * n, True)
    nb = (n + block - 1) // block
    per_ii = nb * nb
    mine = (nb + threads - 1) // threads
    for s in range(mine * per_ii):
        for t in range(threads):
            ii = t + threads * (s // per_ii)
            if ii >= nb:
                continue
            jj = (s % per_ii) // nb
            kk = s % nb
            i0, j0, k0 = ii * block, jj * block, kk * block
            i1, j1, k1 = min(n, i0 + block), min(n, j0 + block), min(n, k0 + block)
            w = j1 - j0
            for i in range(i0, i1):
                for k in range(k0, k1):
                    _acc(E, t, 0, bases[0] + 8 * (n * i + k), False, 1)
                    x = a[i, k]
                    _acc_range(E, t, 1, bases[1] + 8 * (n * k + j0), 8 * w, False)
                    _acc_range(E, t, 2, bases[2] + 8 * (n * i + j0), 8 * w, False)
                    for j in range(j0, j1):
                        c[i, j] += x * b[k, j]
                    _acc_range(E, t, 2, bases[2] + 8 * (n * i + j0), 8 * w, True)
        if E[3][2]:
            return


# ---------------------------------------------------------------------------- B-tree
# A CLRS B-tree of minimum degree d in a pool of nodes of W words each:
# word 0 key count, 1 leaf flag, then 2d-1 keys, 2d-1 values and 2d child numbers.


@njit
def _bt_off(d: int) -> tuple[int, int, int]:
    return 2, 2 + (2 * d - 1), 2 + 2 * (2 * d - 1)


@njit
def _bt_word(E: Any, t: int, base: int, W: int, node: int, word: int, w: bool) -> None:
    _acc(E, t, 0, base + 8 * (node * W + word), w, 1)


@njit
def _bt_search(E: Any, pool: np.ndarray, base: int, W: int, d: int, root: int, key: int,
               t: int) -> tuple[int, int]:
    """(node, slot) holding ``key``, or (-1, -1); every probe of the binary search read."""
    ko, _, co = _bt_off(d)
    x = root
    while True:
        _bt_word(E, t, base, W, x, 0, False)
        n = pool[x, 0]
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            _bt_word(E, t, base, W, x, ko + mid, False)
            if pool[x, ko + mid] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < n:
            _bt_word(E, t, base, W, x, ko + lo, False)
            if pool[x, ko + lo] == key:
                return x, lo
        _bt_word(E, t, base, W, x, 1, False)
        if pool[x, 1] == 1:
            return -1, -1
        _bt_word(E, t, base, W, x, co + lo, False)
        x = pool[x, co + lo]


@njit
def _bt_split(E: Any, pool: np.ndarray, base: int, W: int, d: int, x: int, i: int,
              z: int, t: int) -> None:
    """Split the full child i of x, moving its upper half to the new node z."""
    ko, vo, co = _bt_off(d)
    y = pool[x, co + i]
    pool[z, 1] = pool[y, 1]
    pool[z, 0] = d - 1
    for j in range(d - 1):
        pool[z, ko + j] = pool[y, ko + j + d]
        pool[z, vo + j] = pool[y, vo + j + d]
    _acc_range(E, t, 0, base + 8 * (y * W + ko + d), 8 * (d - 1), False)
    _acc_range(E, t, 0, base + 8 * (y * W + vo + d), 8 * (d - 1), False)
    if pool[y, 1] == 0:
        for j in range(d):
            pool[z, co + j] = pool[y, co + j + d]
        _acc_range(E, t, 0, base + 8 * (y * W + co + d), 8 * d, False)
    _acc_range(E, t, 0, base + 8 * z * W, 8 * W, True)
    pool[y, 0] = d - 1
    _bt_word(E, t, base, W, y, 0, True)
    n = pool[x, 0]
    for j in range(n, i, -1):
        pool[x, co + j + 1] = pool[x, co + j]
    pool[x, co + i + 1] = z
    for j in range(n - 1, i - 1, -1):
        pool[x, ko + j + 1] = pool[x, ko + j]
        pool[x, vo + j + 1] = pool[x, vo + j]
    pool[x, ko + i] = pool[y, ko + d - 1]
    pool[x, vo + i] = pool[y, vo + d - 1]
    pool[x, 0] = n + 1
    _acc_range(E, t, 0, base + 8 * (x * W + ko + i), 8 * (n - i + 1), True)
    _acc_range(E, t, 0, base + 8 * (x * W + vo + i), 8 * (n - i + 1), True)
    _acc_range(E, t, 0, base + 8 * (x * W + co + i + 1), 8 * (n - i + 1), True)
    _bt_word(E, t, base, W, x, 0, True)


@njit
def _bt_insert(E: Any, pool: np.ndarray, base: int, W: int, d: int, meta: np.ndarray,
               key: int, val: int, t: int) -> None:
    """CLRS B-TREE-INSERT with splits on the way down; meta = [root, nodes used]."""
    ko, vo, co = _bt_off(d)
    r = meta[0]
    _bt_word(E, t, base, W, r, 0, False)
    if pool[r, 0] == 2 * d - 1:
        s = meta[1]
        meta[1] += 1
        pool[s, 0] = 0
        pool[s, 1] = 0
        pool[s, co] = r
        _acc_range(E, t, 0, base + 8 * s * W, 16, True)
        _bt_word(E, t, base, W, s, co, True)
        meta[0] = s
        z = meta[1]
        meta[1] += 1
        _bt_split(E, pool, base, W, d, s, 0, z, t)
        r = s
    x = r
    while True:
        n = pool[x, 0]
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            _bt_word(E, t, base, W, x, ko + mid, False)
            if pool[x, ko + mid] < key:
                lo = mid + 1
            else:
                hi = mid
        _bt_word(E, t, base, W, x, 1, False)
        if pool[x, 1] == 1:
            for j in range(n, lo, -1):
                pool[x, ko + j] = pool[x, ko + j - 1]
                pool[x, vo + j] = pool[x, vo + j - 1]
            pool[x, ko + lo] = key
            pool[x, vo + lo] = val
            pool[x, 0] = n + 1
            _acc_range(E, t, 0, base + 8 * (x * W + ko + lo), 8 * (n - lo + 1), True)
            _acc_range(E, t, 0, base + 8 * (x * W + vo + lo), 8 * (n - lo + 1), True)
            _bt_word(E, t, base, W, x, 0, True)
            return
        _bt_word(E, t, base, W, x, co + lo, False)
        c = pool[x, co + lo]
        _bt_word(E, t, base, W, c, 0, False)
        if pool[c, 0] == 2 * d - 1:
            z = meta[1]
            meta[1] += 1
            _bt_split(E, pool, base, W, d, x, lo, z, t)
            _bt_word(E, t, base, W, x, ko + lo, False)
            if key > pool[x, ko + lo]:
                lo += 1
            c = pool[x, co + lo]
            _bt_word(E, t, base, W, c, 0, False)
        x = c


@njit
def _bt_level(E: Any, pool: np.ndarray, base: int, d: int, keys: np.ndarray,
              vals: np.ndarray, children: np.ndarray, per: int, first: int,
              up_keys: np.ndarray, up_vals: np.ndarray) -> tuple[int, int]:
    """One level of a bottom-up bulk load: nodes of ``per`` keys from sorted ``keys``, the
    key after each node promoted to the level above (a last single key joins the last
    node instead). Internal when ``children`` is not empty. Returns (nodes, promoted)."""
    ko, vo, co = _bt_off(d)
    W = pool.shape[1]
    n = keys.shape[0]
    leaf = children.shape[0] == 0
    i, x, up, ch = 0, first, 0, 0
    while i < n or x == first:
        k = min(per, n - i)
        if n - i - k == 1:
            k += 1
        pool[x, 0] = k
        pool[x, 1] = 1 if leaf else 0
        for j in range(k):
            pool[x, ko + j] = keys[i + j]
            pool[x, vo + j] = vals[i + j]
        if not leaf:
            for j in range(k + 1):
                pool[x, co + j] = children[ch + j]
            ch += k + 1
        # the node is written whole, front to back, as a bulk loader fills a page
        _acc_range(E, 0, 0, base + 8 * x * W, 8 * (co + (0 if leaf else k + 1)), True)
        i += k
        x += 1
        if i < n:
            up_keys[up] = keys[i]
            up_vals[up] = vals[i]
            up += 1
            i += 1
    return x - first, up


@njit
def _btree(E: Any, pool: np.ndarray, base: int, d: int, meta: np.ndarray, seed: int,
           threads: int, insert_ratio: float, keys: np.ndarray, vals: np.ndarray, per: int,
           rs: np.ndarray) -> None:
    """Bulk-load the sorted ``keys`` with ``vals`` (each key's number), then serve lookups and
    inserts (an update of an existing key once the pool is full) from ``threads``, until
    the trace is full. ``meta`` = [root, nodes used, keys, lookups, lookups found]."""
    W = pool.shape[1]
    M = pool.shape[0]
    _, _, co = _bt_off(d)
    n = keys.shape[0]
    cur_k, cur_v = keys, vals
    children = np.zeros(0, np.int64)
    used = 0
    while True:
        up_k = np.empty(max(1, cur_k.shape[0]), np.int64)
        up_v = np.empty(max(1, cur_k.shape[0]), np.int64)
        made, up = _bt_level(E, pool, base, d, cur_k, cur_v, children, per, used, up_k,
                             up_v)
        children = np.arange(used, used + made)
        used += made
        if made == 1:
            break
        cur_k, cur_v = up_k[:up], up_v[:up]
    meta[0], meta[1], meta[2] = used - 1, used, n
    height = 1
    x = meta[0]
    while pool[x, 1] == 0:
        x = pool[x, co]
        height += 1
    vo = 2 + (2 * d - 1)
    served = 0
    # requests that stay in the window make no record: count them too, so a tree that
    # fits the window still ends
    while not E[3][2] and served < E[3][1]:
        served += threads
        for t in range(threads):
            # an insert allocates at most one node per level, plus a new root
            if _unit(rs) < insert_ratio and meta[1] + height + 2 <= M:
                _bt_insert(E, pool, base, W, d, meta, _key(seed, meta[2]), meta[2], t)
                meta[2] += 1
                height = 1
                x = meta[0]
                while pool[x, 1] == 0:
                    x = pool[x, co]
                    height += 1
                continue
            k = _below(rs, meta[2])
            node, slot = _bt_search(E, pool, base, W, d, meta[0], _key(seed, k), t)
            meta[3] += 1
            if node >= 0:
                meta[4] += 1
                if pool[node, vo + slot] != k:
                    meta[4] -= 1   # found a key whose value is not its number: a bug
                if _unit(rs) < insert_ratio:
                    # an insert of a key already there updates its value in place
                    _bt_word(E, t, base, W, node, vo + slot, True)
                else:
                    _bt_word(E, t, base, W, node, vo + slot, False)


# ---------------------------------------------------------------------------- hash join


@njit
def _hashjoin(E: Any, rel_r: np.ndarray, rel_s: np.ndarray, table: np.ndarray,
              bases: np.ndarray, threads: int, match: float, seed: int,
              rs: np.ndarray, result: np.ndarray) -> None:
    """Load R and S, build a linear-probing table on R, probe it with S; the matches go
    to each thread's output page. ``result`` = [matches, checksum]."""
    nr = rel_r.shape[0]
    ns = rel_s.shape[0]
    slots = table.shape[0]
    for i in range(nr):
        rel_r[i, 0] = _key(seed, i)
        rel_r[i, 1] = i
        _acc(E, 0, 0, bases[0] + 16 * i, True, 2)
    for i in range(ns):
        if _unit(rs) < match:
            rel_s[i, 0] = _key(seed, _below(rs, nr))
        else:
            rel_s[i, 0] = _key(seed, nr + i)
        rel_s[i, 1] = i
        _acc(E, 0, 1, bases[1] + 16 * i, True, 2)
    if E[3][2]:
        return
    part_r = (nr + threads - 1) // threads
    for s in range(part_r):
        for t in range(threads):
            i = t * part_r + s
            if i >= nr or i >= (t + 1) * part_r:
                continue
            _acc(E, t, 0, bases[0] + 16 * i, False, 2)
            k = rel_r[i, 0]
            h = k % slots
            while True:
                _acc(E, t, 2, bases[2] + 16 * h, False, 1)
                if table[h, 0] == 0:
                    break
                h = (h + 1) % slots
            table[h, 0] = k
            table[h, 1] = rel_r[i, 1]
            _acc(E, t, 2, bases[2] + 16 * h, True, 2)
        if E[3][2]:
            return
    part_s = (ns + threads - 1) // threads
    outpos = np.zeros(threads, np.int64)
    for s in range(part_s):
        for t in range(threads):
            i = t * part_s + s
            if i >= ns or i >= (t + 1) * part_s:
                continue
            _acc(E, t, 1, bases[1] + 16 * i, False, 2)
            k = rel_s[i, 0]
            h = k % slots
            while True:
                _acc(E, t, 2, bases[2] + 16 * h, False, 1)
                if table[h, 0] == 0:
                    break
                if table[h, 0] == k:
                    _acc(E, t, 2, bases[2] + 16 * h + 8, False, 1)
                    result[0] += 1
                    result[1] += table[h, 1] ^ rel_s[i, 1]
                    # the output tuple, into the thread's page-sized buffer
                    _acc(E, t, 3, bases[3] + PAGE * t + 16 * (outpos[t] % 256), True, 2)
                    outpos[t] += 1
                h = (h + 1) % slots
        if E[3][2]:
            return


# ---------------------------------------------------------------------------- graphs


@njit
def _rmat_edges(nv: int, ne: int, rs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R-MAT edges (a, b, c = 0.57, 0.19, 0.19, Graph500's) over ``nv`` vertices, the
    vertex numbers permuted so the hubs are spread out."""
    scale = 1
    while (1 << scale) < nv:
        scale += 1
    perm = np.arange(nv)
    for i in range(nv - 1, 0, -1):
        j = _below(rs, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    src = np.empty(ne, np.int64)
    dst = np.empty(ne, np.int64)
    e = 0
    while e < ne:
        u = 0
        v = 0
        for _ in range(scale):
            x = _unit(rs)
            u <<= 1
            v <<= 1
            if x < 0.57:
                pass
            elif x < 0.76:
                v |= 1
            elif x < 0.95:
                u |= 1
            else:
                u |= 1
                v |= 1
        if u < nv and v < nv and u != v:
            src[e] = perm[u]
            dst[e] = perm[v]
            e += 1
    return src, dst


def _csr(src: np.ndarray, dst: np.ndarray, nv: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(src, kind="stable")
    offsets = np.zeros(nv + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=nv), out=offsets[1:])
    return offsets, dst[order].astype(np.int32)


@njit
def _load_seq(E: Any, r: int, base: int, nbytes: int) -> None:
    """Fill a region as the program reads its input into it: one pass of stores."""
    step = 64 * PAGE
    for lo in range(0, nbytes, step):
        _acc_range(E, 0, r, base + lo, min(step, nbytes - lo), True)


@njit
def _bfs(E: Any, offsets: np.ndarray, targets: np.ndarray, level: np.ndarray,
         queue: np.ndarray, bases: np.ndarray, threads: int, sources: int,
         rs: np.ndarray, reached: np.ndarray, roots: np.ndarray) -> None:
    """Level-synchronous BFS from ``sources`` random roots; the frontier's vertices are
    dealt to the threads in turn. ``reached[s]``: vertices reached from root s."""
    nv = level.shape[0]
    _load_seq(E, 0, bases[0], 8 * (nv + 1))
    _load_seq(E, 1, bases[1], 4 * targets.shape[0])
    for s in range(sources):
        # a root with out-edges, as Graph500 picks them (a few tries, then any vertex)
        root = _below(rs, nv)
        for _ in range(64):
            if offsets[root + 1] > offsets[root]:
                break
            root = _below(rs, nv)
        roots[s] = root
        level[:] = -1
        _load_seq(E, 2, bases[2], 4 * nv)
        level[root] = 0
        queue[0] = root
        _acc(E, 0, 2, bases[2] + 4 * root, True, 1)
        _acc(E, 0, 3, bases[3], True, 1)
        head, tail, depth = 0, 1, 0
        while head < tail:
            end = tail
            for q in range(head, end):
                t = (q - head) % threads
                _acc(E, t, 3, bases[3] + 4 * q, False, 1)
                u = queue[q]
                _acc(E, t, 0, bases[0] + 8 * u, False, 2)
                for e in range(offsets[u], offsets[u + 1]):
                    _acc(E, t, 1, bases[1] + 4 * e, False, 1)
                    v = targets[e]
                    _acc(E, t, 2, bases[2] + 4 * v, False, 1)
                    if level[v] < 0:
                        level[v] = depth + 1
                        _acc(E, t, 2, bases[2] + 4 * v, True, 1)
                        queue[tail] = v
                        _acc(E, t, 3, bases[3] + 4 * tail, True, 1)
                        tail += 1
                if E[3][2]:
                    return
            head = end
            depth += 1
        reached[s] = tail


@njit
def _pagerank(E: Any, offsets: np.ndarray, sources: np.ndarray, outdeg: np.ndarray,
              rank: np.ndarray, nxt: np.ndarray, bases: np.ndarray, threads: int,
              iterations: int, damping: float) -> int:
    """Pull PageRank over in-edges; thread t owns a contiguous range of vertices. Returns
    the iterations done; the ranks end in ``rank`` (after an even count) or ``nxt``."""
    nv = rank.shape[0]
    _load_seq(E, 0, bases[0], 8 * (nv + 1))
    _load_seq(E, 1, bases[1], 4 * sources.shape[0])
    _load_seq(E, 2, bases[2], 4 * nv)
    rank[:] = 1.0 / nv
    _load_seq(E, 3, bases[3], 8 * nv)
    part = (nv + threads - 1) // threads
    cur, new = rank, nxt
    cb, nb_, cr, nr = bases[3], bases[4], 3, 4
    for it in range(iterations):
        for i in range(part):
            for t in range(threads):
                v = t * part + i
                if v >= nv or v >= (t + 1) * part:
                    continue
                _acc(E, t, 0, bases[0] + 8 * v, False, 2)
                acc = 0.0
                for e in range(offsets[v], offsets[v + 1]):
                    _acc(E, t, 1, bases[1] + 4 * e, False, 1)
                    u = sources[e]
                    _acc(E, t, cr, cb + 8 * u, False, 1)
                    _acc(E, t, 2, bases[2] + 4 * u, False, 1)
                    acc += cur[u] / outdeg[u]
                new[v] = (1.0 - damping) / nv + damping * acc
                _acc(E, t, nr, nb_ + 8 * v, True, 1)
            if E[3][2]:
                return it
        cur, new = new, cur
        cb, nb_ = nb_, cb
        cr, nr = nr, cr
    return iterations


# ---------------------------------------------------------------------------- kvstore
# memcached's layout: a bucket array of item addresses, then slabs of ``slab`` bytes, each
# cut into the chunks of one size class. An item: next address, key, value length, class,
# then the value. Item words live in ``mem`` (the arena as 8-byte words).


@njit
def _kv_load(E: Any, mem: np.ndarray, nbuckets: int, area_lo: int, slab: int,
             classes: np.ndarray, seed: int, value_size: int, rs: np.ndarray) -> int:
    """Load keys 0, 1, ... until a slab cannot be had; the count loaded."""
    top = mem.shape[0] * 8
    ncls = classes.shape[0]
    cur = np.zeros(ncls, np.int64)     # next free chunk of the class's current slab
    end = np.zeros(ncls, np.int64)
    brk = area_lo
    n = 0
    while not E[3][2]:
        vlen = value_size // 2 + _below(rs, value_size + 1)
        need = 32 + vlen
        c = 0
        while c < ncls - 1 and classes[c] < need:
            c += 1
        if cur[c] + classes[c] > end[c]:
            if brk + slab > top:
                break
            cur[c] = brk
            end[c] = brk + slab
            brk += slab
        it = cur[c]
        cur[c] += classes[c]
        key = _key(seed, n)
        b = key % nbuckets
        _acc(E, 0, 0, 8 * b, False, 1)
        mem[it // 8] = mem[b]
        mem[it // 8 + 1] = key
        mem[it // 8 + 2] = vlen
        mem[it // 8 + 3] = c
        _acc_range(E, 0, 1, it, 32 + vlen, True)
        mem[b] = it
        _acc(E, 0, 0, 8 * b, True, 1)
        n += 1
    return n


@njit
def _kv_find(E: Any, mem: np.ndarray, nbuckets: int, key: int, t: int) -> int:
    b = key % nbuckets
    _acc(E, t, 0, 8 * b, False, 1)
    it = mem[b]
    while it != 0:
        _acc_range(E, t, 1, it, 16, False)
        if mem[it // 8 + 1] == key:
            return it
        it = mem[it // 8]
    return 0


@njit
def _kv_serve(E: Any, mem: np.ndarray, nbuckets: int, n: int, seed: int, cdf: np.ndarray,
              get_ratio: float, threads: int, rs: np.ndarray, meta: np.ndarray) -> None:
    """Zipf gets and sets over the ``n`` keys loaded, request by request in turn from each
    thread, until the trace is full. ``meta`` = [gets, sets, keys not found]."""
    nk = cdf.shape[0]
    served = 0
    while not E[3][2] and served < E[3][1]:
        served += threads
        for t in range(threads):
            x = _unit(rs)
            lo, hi = 0, nk - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if cdf[mid] <= x:
                    lo = mid + 1
                else:
                    hi = mid
            # ranks scattered over the keys, so the hot items are not the first loaded
            key = _key(seed, (lo * 2654435761) % n)
            it = _kv_find(E, mem, nbuckets, key, t)
            if it == 0:
                meta[2] += 1
                continue
            vlen = mem[it // 8 + 2]
            if _unit(rs) < get_ratio:
                meta[0] += 1
                _acc_range(E, t, 1, it + 32, vlen, False)
            else:
                meta[1] += 1
                _acc_range(E, t, 1, it + 32, vlen, True)


# ---------------------------------------------------------------------------- registry


class ProgramError(ValueError):
    """A bad parameter; the message names it."""


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    lo: float
    hi: float
    help: str

    def parse(self, value: Any, prefix: str = "") -> Any:
        label = f"{prefix}{self.name}"
        if self.type is int:
            if isinstance(value, bool):
                raise ProgramError(f"{label}: an integer, not {value!r}")
            if isinstance(value, str):
                try:
                    value = int(value.replace("_", ""), 0)
                except ValueError:
                    raise ProgramError(f"{label}: not an integer: {value!r}") from None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, (int, np.integer)):
                raise ProgramError(f"{label}: an integer, not {value!r}")
            v: Any = int(value)
        else:
            if isinstance(value, bool):
                raise ProgramError(f"{label}: a number, not {value!r}")
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ProgramError(f"{label}: not a number: {value!r}") from None
            if not math.isfinite(v):
                raise ProgramError(f"{label}: not a finite number: {value!r}")
        if not self.lo <= v <= self.hi:
            raise ProgramError(f"{label}: must be in [{self.lo:g}, {self.hi:g}], got {v:g}")
        return v

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.__name__, "default": self.default,
                "min": self.lo, "max": self.hi, "help": self.help}


@dataclass
class Trace:
    """A program's accesses and what it laid out: ``regions`` are (name, first page,
    pages); ``counts`` maps a region to (word reads, word writes) of the whole run."""

    page: np.ndarray
    write: np.ndarray
    thread: np.ndarray
    regions: list[tuple[str, int, int]]
    counts: dict[str, tuple[int, int]]
    complete: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def footprint_pages(self) -> int:
        return sum(r[2] for r in self.regions)


class _Layout:
    def __init__(self) -> None:
        self.regions: list[tuple[str, int, int]] = []
        self.top = 0

    def add(self, name: str, nbytes: int) -> int:
        base = self.top
        pages = max(1, -(-nbytes // PAGE))
        self.regions.append((name, base // PAGE, pages))
        self.top += pages * PAGE
        return base


def _emitter(cap: int, threads: int, regions: int, tlb: int) -> tuple[np.ndarray, ...]:
    win = np.full((threads, tlb, 2), -1, np.int64)
    return (np.empty(cap, np.int64), np.zeros(cap, np.bool_), np.zeros(cap, np.int32),
            np.array([0, cap, 0], np.int64), win, np.zeros((regions, 2), np.int64))


def _finish(E: tuple[np.ndarray, ...], layout: _Layout, **info: Any) -> Trace:
    n = int(E[3][0])
    counts = {name: (int(E[5][i, 0]), int(E[5][i, 1]))
              for i, (name, _, _) in enumerate(layout.regions)}
    return Trace(E[0][:n].copy(), E[1][:n].copy(), E[2][:n].copy(), layout.regions, counts,
                 complete=not E[3][2], info=info)


def _cipher_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    threads = p["threads"]
    lay = _Layout()
    ctx = lay.add("context", threads * PAGE)
    words = (size - threads * PAGE) // 64 * 16
    if words // threads < 16:
        raise ProgramError(f"size: too small for {threads} threads")
    base = lay.add("buffer", 4 * words)
    rs = np.array([seed], np.uint64)
    buf = np.empty(words, np.int64)
    for i in range(0, words, 1 << 16):
        buf[i:i + (1 << 16)] = (np.arange(i, min(words, i + (1 << 16))) * 2654435761) & 0xFFFFFFFF
    key = np.array([int(_rand(rs)) & 0xFFFFFFFF for _ in range(8)], np.int64)
    E = _emitter(E_args[0], threads, 2, E_args[1])
    _cipher(E, buf, key, ctx, base, threads, p["chunk"], p["passes"])
    return _finish(E, lay, checksum=int(buf.sum() & 0xFFFFFFFF))


def _sort_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    n = size // 16 // 512 * 512
    lay = _Layout()
    db = lay.add("data", 8 * n)
    ab = lay.add("aux", 8 * n)
    data = np.empty(n, np.uint64)
    aux = np.empty(n, np.uint64)
    E = _emitter(E_args[0], 1, 2, E_args[1])
    _sort(E, data, aux, db, ab, np.array([seed], np.uint64))
    done = not E[3][2]
    return _finish(E, lay, n=n, sorted=bool(done and np.all(data[:-1] <= data[1:])),
                   smallest=int(data.min()))


def _matmul_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    n = math.isqrt(size // 24)
    while n > 1 and 3 * (-(-8 * n * n // PAGE)) * PAGE > size:
        n -= 1
    block = min(p["block"], n)
    lay = _Layout()
    bases = np.array([lay.add(x, 8 * n * n) for x in ("A", "B", "C")], np.int64)
    a, b, c = (np.empty((n, n)) for _ in range(3))
    threads = p["threads"]
    E = _emitter(E_args[0], threads, 3, E_args[1])
    _matmul(E, a, b, c, bases, block, threads, np.array([seed], np.uint64))
    ok = not E[3][2] and n <= 256 and bool(np.allclose(c, a @ b))
    return _finish(E, lay, n=n, block=block, verified=ok, checksum=float(c.sum()))


def _bt_nodes(n: int, per: int) -> int:
    """Nodes a bulk load of ``n`` keys at ``per`` keys a node makes (as _bt_level)."""
    total = 0
    while True:
        nodes = up = 0
        i = 0
        while i < n or nodes == 0:
            k = min(per, n - i)
            if n - i - k == 1:
                k += 1
            i += k
            nodes += 1
            if i < n:
                up += 1
                i += 1
        total += nodes
        if nodes == 1:
            return total
        n = up


def _btree_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    node = p["node"]
    words = node // 8
    maxk = (words - 3) // 3
    if maxk % 2 == 0:
        maxk -= 1
    d = (maxk + 1) // 2
    nodes = size // node
    if nodes < 8 or maxk < 3:
        raise ProgramError(f"size: a B-tree of {node}-byte nodes needs at least {8 * node} "
                           "bytes and nodes of at least 96 bytes")
    per = max(1, min(maxk - 1, int(p["fill"] * maxk)))
    n = p["keys"]
    if n < 0:
        # as many keys as leave a tenth of the pool for the nodes inserts split off
        n = int(nodes * 0.9) * per
        while n > 1 and _bt_nodes(n, per) > nodes * 0.9:
            n = int(n * 0.97)
    elif n == 0 or _bt_nodes(n, per) + 2 > nodes:
        raise ProgramError(f"keys: {n} keys do not fit {nodes} nodes of {node} bytes "
                           f"at {per} keys a node")
    lay = _Layout()
    base = lay.add("nodes", nodes * node)
    pool = np.zeros((nodes, words), np.int64)
    unsorted = _keys(seed, n)
    vals = np.argsort(unsorted, kind="stable")
    keys = unsorted[vals]
    meta = np.zeros(5, np.int64)
    threads = p["threads"]
    E = _emitter(E_args[0], threads, 1, E_args[1])
    _btree(E, pool, base, d, meta, seed, threads, p["insert_ratio"], keys, vals, per,
           np.array([seed], np.uint64))
    return _finish(E, lay, degree=d, per_node=per, nodes_used=int(meta[1]),
                   keys=int(meta[2]), root=int(meta[0]), lookups=int(meta[3]),
                   found=int(meta[4]))


@njit
def _keys(seed: int, n: int) -> np.ndarray:
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = _key(seed, i)
    return out


def _hashjoin_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    ratio, threads = p["ratio"], p["threads"]
    nr = max(1, (size - threads * PAGE) // (16 + 32 + 16 * ratio))

    def lay_for(nr: int) -> _Layout:
        lay = _Layout()
        for name, nbytes in (("R", 16 * nr), ("S", 16 * nr * ratio), ("table", 32 * nr),
                             ("output", threads * PAGE)):
            lay.add(name, nbytes)
        return lay

    while nr > 1 and lay_for(nr).top > size:
        nr -= 1
    lay = lay_for(nr)
    bases = np.array([PAGE * r[1] for r in lay.regions], np.int64)
    rel_r = np.zeros((nr, 2), np.int64)
    rel_s = np.zeros((nr * ratio, 2), np.int64)
    table = np.zeros((2 * nr, 2), np.int64)
    result = np.zeros(2, np.int64)
    E = _emitter(E_args[0], threads, 4, E_args[1])
    _hashjoin(E, rel_r, rel_s, table, bases, threads, p["match"], seed,
              np.array([seed], np.uint64), result)
    return _finish(E, lay, r=nr, s=nr * ratio, matches=int(result[0]))


def _graph(size: int, seed: int, p: dict[str, Any], per_vertex: int,
           per_edge: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    deg = p["degree"]
    nv = size // (per_vertex + per_edge * deg)
    if nv < 16:
        raise ProgramError(f"size: too small for a graph of average degree {deg}")
    rs = np.array([seed], np.uint64)
    return nv, *_rmat_edges(nv, nv * deg, rs), rs


def _bfs_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    nv, src, dst, rs = _graph(size - 5 * PAGE, seed, p, 16, 4)
    offsets, targets = _csr(src, dst, nv)
    del src, dst
    lay = _Layout()
    bases = np.array([lay.add("offsets", 8 * (nv + 1)), lay.add("targets", 4 * len(targets)),
                      lay.add("level", 4 * nv), lay.add("queue", 4 * nv)], np.int64)
    level = np.empty(nv, np.int32)
    queue = np.empty(nv, np.int32)
    reached = np.zeros(p["sources"], np.int64)
    roots = np.full(p["sources"], -1, np.int64)
    threads = p["threads"]
    E = _emitter(E_args[0], threads, 4, E_args[1])
    _bfs(E, offsets, targets, level, queue, bases, threads, p["sources"], rs, reached, roots)
    return _finish(E, lay, vertices=nv, edges=len(targets), reached=reached.tolist(),
                   roots=roots.tolist())


def _pagerank_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    nv, src, dst, _ = _graph(size - 6 * PAGE, seed, p, 28, 4)
    # pull over in-edges: the CSR of the reversed graph
    offsets, sources = _csr(dst, src, nv)
    outdeg = np.maximum(np.bincount(src, minlength=nv), 1).astype(np.int32)
    del src, dst
    lay = _Layout()
    bases = np.array([lay.add("offsets", 8 * (nv + 1)), lay.add("sources", 4 * len(sources)),
                      lay.add("outdeg", 4 * nv), lay.add("rank", 8 * nv),
                      lay.add("next", 8 * nv)], np.int64)
    rank = np.empty(nv)
    nxt = np.empty(nv)
    threads = p["threads"]
    E = _emitter(E_args[0], threads, 5, E_args[1])
    done = _pagerank(E, offsets, sources, outdeg, rank, nxt, bases, threads,
                     p["iterations"], p["damping"])
    return _finish(E, lay, vertices=nv, edges=len(sources), iterations=int(done),
                   ranks=(rank if done % 2 == 0 else nxt).copy())


def _kvstore_run(size: int, seed: int, p: dict[str, Any], E_args: tuple[int, int]) -> Trace:
    vs = p["value_size"]
    # a slab of at most 1/64 of the store, so the partly filled last slab of each size
    # class leaves little of the store untouched
    slab = min(p["slab"], max(PAGE, size // 64 // PAGE * PAGE))
    est = max(16, size // (vs + 64))
    nb = 1 << max(4, (est - 1).bit_length())
    while 8 * nb > size // 4:
        nb //= 2
    lay = _Layout()
    lay.add("buckets", 8 * nb)
    area = lay.top
    slabs = (size - area) // slab
    if slabs < 1:
        raise ProgramError(f"size: too small for one slab of {slab} bytes")
    lay.add("slabs", slabs * slab)
    classes = []
    c = 96.0
    while c < slab / 2:
        classes.append(int(c) // 8 * 8)
        c *= 1.25
    classes.append(slab)
    mem = np.zeros(lay.top // 8, np.int64)
    rs = np.array([seed], np.uint64)
    threads = p["threads"]
    E = _emitter(E_args[0], threads, 2, E_args[1])
    n = _kv_load(E, mem, nb, area, slab, np.array(classes, np.int64), seed, vs, rs)
    meta = np.zeros(3, np.int64)
    if n and not E[3][2]:
        cdf = np.cumsum(np.exp(-p["alpha"] * np.log(np.arange(1, n + 1, dtype=np.float64))))
        cdf /= cdf[-1]
        cdf[-1] = 1.0  # every draw lands on a key
        _kv_serve(E, mem, nb, n, seed, cdf, p["get_ratio"], threads, rs, meta)
    return _finish(E, lay, keys=n, gets=int(meta[0]), sets=int(meta[1]),
                   missing=int(meta[2]), buckets=nb, slab=slab)


def _threads(default: int = 1) -> Param:
    return Param("threads", int, default, 1, 64, "program threads; accesses interleave "
                 "between them")


@dataclass(frozen=True)
class Program:
    name: str
    summary: str
    params: tuple[Param, ...]
    run: Any
    serves: bool   # runs until the trace is full, instead of ending

    def param(self, name: str, prefix: str = "") -> Param:
        for p in self.params + COMMON:
            if p.name == name:
                return p
        raise ProgramError(f"{prefix}{name}: {self.name} has no parameter {name!r} (it takes "
                           f"{', '.join(q.name for q in self.params + COMMON)})")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "serves": self.serves,
                "params": [q.as_dict() for q in self.params + COMMON]}


COMMON = (
    Param("accesses", int, 1_000_000, 1, MAX_ACCESSES - 1, "records at most; the program "
          "stops when the trace is full"),
    Param("tlb", int, 4, 1, 64, "a thread's last distinct pages whose accesses make no new "
          "record"),
)

PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program("btree", "a B-tree of 64-bit keys: a bulk load, then lookups and inserts",
            (Param("node", int, 4096, 256, 65536, "node size in bytes"),
             Param("insert_ratio", float, 0.1, 0.0, 1.0, "share of requests that insert"),
             Param("fill", float, 0.7, 0.0, 1.0, "share of a node's keys the bulk load "
                   "fills (room for inserts)"),
             Param("keys", int, -1, -1, 1 << 40, "keys bulk-loaded (-1: as many as fill "
                   "nine tenths of the nodes)"),
             _threads()), _btree_run, True),
    Program("hashjoin", "a hash join: build a linear-probing table on R, probe it with S",
            (Param("ratio", int, 4, 1, 64, "|S| / |R|"),
             Param("match", float, 1.0, 0.0, 1.0, "share of S tuples with a match in R"),
             _threads()), _hashjoin_run, False),
    Program("bfs", "breadth-first search over a power-law (R-MAT) graph in CSR",
            (Param("degree", int, 16, 1, 256, "average out-degree"),
             Param("sources", int, 4, 1, 1 << 20, "searches, each from a random root"),
             _threads()), _bfs_run, False),
    Program("pagerank", "pull PageRank over a power-law (R-MAT) graph's in-edges",
            (Param("degree", int, 16, 1, 256, "average degree"),
             Param("iterations", int, 10, 1, 1 << 20, "power iterations"),
             Param("damping", float, 0.85, 0.0, 1.0, "damping factor"),
             _threads()), _pagerank_run, False),
    Program("kvstore", "a memcached-like key-value store: hash table and slab allocator "
            "under Zipf gets and sets",
            (Param("value_size", int, 256, 8, 1 << 20, "mean value length in bytes "
                   "(uniform over half to one and a half times it)"),
             Param("alpha", float, 0.99, 0.0, 5.0, "Zipf exponent of the keys requested"),
             Param("get_ratio", float, 0.9, 0.0, 1.0, "share of requests that are gets"),
             Param("slab", int, 1 << 20, PAGE, 1 << 30, "slab size in bytes"),
             _threads()), _kvstore_run, True),
    Program("sort", "bottom-up merge sort of 64-bit keys with an auxiliary array",
            (), _sort_run, False),
    Program("matmul", "blocked dense matrix multiply C = A x B of doubles",
            (Param("block", int, 64, 1, 4096, "block edge in elements"),
             _threads()), _matmul_run, False),
    Program("cipher", "ChaCha20 (RFC 8439) over a buffer in chunks, as an EVP update loop",
            (Param("chunk", int, 16384, 64, 1 << 26, "bytes per update call (a multiple "
                   "of 64)"),
             Param("passes", int, 4, 1, 1 << 20, "passes over the buffer"),
             _threads()), _cipher_run, False),
)}


def check_params(name: str, size: Any, params: dict[str, Any],
                 prefix: str = "") -> tuple[Program, int, dict[str, Any]]:
    """The program, its size in bytes and every parameter parsed, defaults filled in;
    ProgramError names what is wrong (``prefix`` goes before a parameter's name)."""
    prog = PROGRAMS.get(name)
    if prog is None:
        raise ProgramError(f"{prefix}workload: no workload {name!r} (programs: "
                           f"{', '.join(PROGRAMS)})")
    if isinstance(size, str):
        from epcsim.workload.scenario import parse_size

        try:
            size = parse_size(size)
        except ValueError as e:
            raise ProgramError(f"{prefix}size: {e}") from None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ProgramError(f"{prefix}size: a size in bytes, not {size!r}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ProgramError(f"{prefix}size: must be from {MIN_SIZE} bytes (64 KiB) to 4 GiB, "
                           f"got {int(size)}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[key] = prog.param(key, prefix).parse(value, prefix)
    for q in prog.params + COMMON:
        out.setdefault(q.name, q.default)
    if name == "cipher" and out["chunk"] % 64:
        raise ProgramError(f"{prefix}chunk: a multiple of 64 bytes, got {out['chunk']}")
    if name == "btree" and out["node"] % 8:
        raise ProgramError(f"{prefix}node: a multiple of 8 bytes, got {out['node']}")
    return prog, int(size), out


def generate(name: str, size: Any, *, seed: int = 0, **params: Any) -> Trace:
    """Run program ``name`` over ``size`` bytes with ``seed``; see the module's notes."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ProgramError(f"seed: a non-negative integer, not {seed!r}")
    prog, nbytes, p = check_params(name, size, params)
    return prog.run(nbytes, int(seed), p, (p["accesses"], p["tlb"]))


def accesses(name: str, size: Any, n: int, *, seed: int = 0,
             **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n`` (page, write) accesses: the program's trace, run again from its start
    (the same seed) as often as a program that ends needs to fill ``n``."""
    params = {k: v for k, v in params.items() if k != "accesses"}
    tr = generate(name, size, seed=seed, accesses=max(1, n), **params)
    if len(tr.page) == 0:
        raise ProgramError(f"size: {name} made no accesses")
    return np.resize(tr.page, n), np.resize(tr.write, n)
