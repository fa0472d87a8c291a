"""The TLB of each logical processor, for enclave-mode accesses.

SGX checks the EPCM when a translation is put into a TLB, not on every access, and the PTE's
accessed bit is set by the page walk that fills it (Intel SDM vol. 3D; sgx-arch.md 1.5). A
translation that stays cached is used without either: the kernel's
``sgx_encl_test_and_clear_young`` clears the accessed bit without a flush, so a page used
through a cached translation looks old to the next aging pass; an entry made before EBLOCK
stays usable until the LP leaves enclave mode (EEXIT and AEX flush its enclave entries).

The model keeps the second-level TLB (the one whose miss walks), set-associative, per LP:

* ``st.tlb[lp]``: u32 tags, set ``s`` in ways ``s*W .. s*W+W-1``. A tag is the page's offset
  in the enclave's ELRANGE above the set bits, plus one (0 is an empty way), shifted left
  over a write bit: a write through an entry a read filled walks again, as the hardware
  walks to set the PTE's dirty bit.
* ``st.tlb_way[lp, s]``: 0 while set ``s`` is empty, else 1 + the way it filled last; the
  next fill takes the way after it (round robin: a hit writes nothing, where the hardware's
  pseudo-LRU updates its bits).
* ``st.lp[lp].lp_tlbn``: fills since the last flush, so a flush of an empty TLB reads
  nothing and a flush of a used one clears only the sets it filled.

Per LP that is 4 bytes per entry and one per set (6.1 KiB for 1536 entries of 12 ways).
Only pages inside ELRANGE go through the model (the enclave's own translations, the ones
EEXIT and AEX flush); instruction fetches always walk. With no columns (``tlb_entries`` 0,
and every guest's view) every access walks, which is the model without a TLB.
"""

from __future__ import annotations

import numpy as np

from epcsim.hw.epc import G_TLB_SHIFT, G_TLB_WAYS, HwState
from epcsim.jit import njit_inline

TLB_MISS = -1       # no entry: the access walks, then fills
TLB_HIT = -2


@njit_inline
def tlb_modelled(st: HwState) -> bool:
    return st.tlb.shape[1] != 0


@njit_inline
def tlb_tag(st: HwState, lp: int, linaddr: int) -> tuple[int, int]:
    """(set, tag with the write bit set) of ``linaddr`` in ``lp``'s TLB, or (-1, 0) for an
    address the model's TLB does not hold."""
    off = (linaddr - st.lp[lp].lp_base) >> 12
    if st.tlb.shape[1] == 0 or (off >> 32) != 0:
        return -1, 0
    shift = np.int64(st.g[G_TLB_SHIFT])
    return off & ((np.int64(1) << shift) - 1), (((off >> shift) + 1) << 1) | 1


@njit_inline
def tlb_lookup(st: HwState, lp: int, s: int, tag: int, write: bool) -> int:
    """TLB_HIT, TLB_MISS, or the way of the entry a read filled when a write finds it (a
    miss too: the write walks, and its fill replaces that entry)."""
    ways = np.int64(st.g[G_TLB_WAYS])
    first = s * ways
    rd = 0 if write else 1
    for w in range(ways):
        t = np.int64(st.tlb[lp, first + w])
        if (t | 1) == tag:
            return TLB_HIT if (t | rd) == tag else w
    return TLB_MISS


@njit_inline
def tlb_fill(st: HwState, lp: int, s: int, tag: int, write: bool, way: int) -> None:
    """Put the translation a walk found in set ``s``: in ``way`` when it upgrades a read's
    entry for a write, else in the set's next way."""
    ways = np.int64(st.g[G_TLB_WAYS])
    if way < 0:
        way = np.int64(st.tlb_way[lp, s]) % ways
        st.tlb_way[lp, s] = way + 1
    st.tlb[lp, s * ways + way] = tag if write else tag ^ 1
    st.lp[lp].lp_tlbn += 1


@njit_inline
def tlb_flush(st: HwState, lp: int) -> None:
    """Drop every entry of ``lp``'s TLB (EEXIT, AEX)."""
    if st.lp[lp].lp_tlbn == 0:
        return
    ways = np.int64(st.g[G_TLB_WAYS])
    for s in range(st.tlb_way.shape[1]):
        if st.tlb_way[lp, s] != 0:
            st.tlb_way[lp, s] = 0
            for w in range(s * ways, s * ways + ways):
                st.tlb[lp, w] = 0
    st.lp[lp].lp_tlbn = 0


def tlb_entries(st: HwState, lp: int) -> int:
    """Valid entries of ``lp``'s TLB (tests and reports)."""
    return int(np.count_nonzero(st.tlb[lp]))
