"""Miss-ratio curves across EPC sizes, from one pass over a run's accesses.

Mattson's stack algorithm: under LRU a page hits in a cache of C pages exactly when fewer
than C distinct pages were touched since its last access (its stack distance), so one pass
that measures every access's stack distance gives the miss ratio at every EPC size at once.
The distance counts the pages whose latest access lies between the two accesses, kept as
ones in a Fenwick tree indexed by time: O(log n) an access.

It is the curve of an ideal LRU; the kernel's reclaimer (second chance over a FIFO of
pages, batches, watermarks) misses more, and the report draws the run's own point beside it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from epcsim.jit import njit


@njit
def stack_distances(keys: np.ndarray, nkeys: int) -> np.ndarray:
    """Per access: the number of distinct keys since its previous access, or -1 if first."""
    n = keys.shape[0]
    tree = np.zeros(n + 1, np.int64)
    last = np.full(nkeys, -1, np.int64)
    out = np.empty(n, np.int64)
    live = 0
    for i in range(n):
        k = keys[i]
        p = last[k]
        if p < 0:
            out[i] = -1
            live += 1
        else:
            # ones at positions <= p, subtracted from all ones: those after p
            s = 0
            j = p + 1
            while j > 0:
                s += tree[j]
                j -= j & -j
            out[i] = live - s
            j = p + 1
            while j <= n:
                tree[j] -= 1
                j += j & -j
        j = i + 1
        while j <= n:
            tree[j] += 1
            j += j & -j
        last[k] = i
    return out


def curve(distances: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Miss ratio at each size: first touches plus accesses at distance >= size."""
    n = distances.shape[0]
    if n == 0:
        return np.zeros(sizes.shape[0])
    cold = int((distances < 0).sum())
    d = np.sort(distances[distances >= 0])
    reuse_misses = d.shape[0] - np.searchsorted(d, sizes, side="left")
    return (cold + reuse_misses) / n


def sizes_for(footprint: int, epc_pages: int, points: int = 64) -> np.ndarray:
    """EPC sizes from one page to past the footprint, the run's own size among them."""
    top = max(footprint, epc_pages) + 1
    s = np.unique(np.linspace(1, top, points).astype(np.int64))
    return np.unique(np.append(s, epc_pages))


def mrc_table(tenants: np.ndarray, pages: np.ndarray, names: list[str],
              epc_pages: int) -> pa.Table:
    """The curve of all enclaves sharing one LRU (``all``) and of each enclave alone."""
    tenants = tenants.astype(np.int64)
    pages = pages.astype(np.int64)
    span = np.zeros(len(names), np.int64)
    np.maximum.at(span, tenants, pages + 1)
    offset = np.concatenate(([0], np.cumsum(span)[:-1]))
    footprint = int(span.sum())
    rows: dict[str, list[object]] = {"owner": [], "epc_pages": [], "miss_ratio": []}

    def add(owner: str, keys: np.ndarray, nkeys: int) -> None:
        sizes = sizes_for(nkeys, epc_pages)
        ratios = curve(stack_distances(keys, nkeys), sizes)
        rows["owner"].extend([owner] * sizes.shape[0])
        rows["epc_pages"].extend(sizes.tolist())
        rows["miss_ratio"].extend(ratios.tolist())

    add("all", offset[tenants] + pages, footprint)
    for t, name in enumerate(names):
        mine = tenants == t
        if mine.any():
            add(name, pages[mine], int(span[t]))
    return pa.table({"owner": pa.array(rows["owner"], pa.string()),
                     "epc_pages": pa.array(rows["epc_pages"], pa.int64()),
                     "miss_ratio": pa.array(rows["miss_ratio"], pa.float64())})
