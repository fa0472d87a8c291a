"""The TLB of each logical processor, for enclave-mode accesses.

SGX checks the EPCM when a translation is put into a TLB, not on every access, and the PTE's
accessed bit is set by the page walk that fills it (Intel SDM vol. 3D; Costan and Devadas,
"Intel SGX Explained", 5.1). A translation that stays cached is used without either: the
kernel's ``sgx_encl_test_and_clear_young`` clears the accessed bit without a flush, so a
page used through a cached translation looks old to the next aging pass; an entry made
before EBLOCK stays usable until the LP leaves enclave mode (EEXIT and AEX flush its
enclave entries).

The model keeps the second-level TLB (the one whose miss walks), set-associative, per LP:

* ``st.tlb[lp]``: u32 tags, set ``s`` in ways ``s*W .. s*W+W-1``. A tag is the page's offset
  in the enclave's ELRANGE above the set bits, plus one, shifted left over a write bit: a
  write through an entry a read filled walks again, as the hardware walks to set the PTE's
  dirty bit.
* ``st.tlb_way[lp, s]``: the LP's flush generation when the set was last filled (high byte)
  and its fill count ``c`` (low byte): ways ``0 .. min(c, W)-1`` are valid, the next fill
  takes way ``c`` while ``c < W``, then ``c - W`` round robin (``c`` runs on in
  ``W .. 2W-1``). A hit writes nothing, where the hardware's pseudo-LRU updates its bits.
* ``st.lp[lp].lp_tlbg``: the flush generation: a set filled in an older one is empty, so a
  flush is one increment (and once in 256, a clear of the LP's fill counts).
* ``st.epcm[page].tlbw``: the way the page's last fill went to, in whichever LP. A lookup
  tries that way first: one compare instead of one per way (a set of 12 ways cost some
  9 ns more a lookup when full). While an LP is alone in its enclave (``lp_shared`` 0:
  no other LP was inside since it entered) it is the only one to fill the enclave's pages,
  and entries do not move, so a page that is not at its way is not in the LP's TLB; an LP
  that shared its enclave looks at every way, as before.

Per LP that is 4 bytes per entry and 2 per set (6.25 KiB for 1536 entries of 12 ways).
Only pages inside ELRANGE go through the model (the enclave's own translations, the ones
EEXIT and AEX flush); instruction fetches always walk. With no columns (``tlb_entries`` 0,
and every guest's view) every access walks, which is the model without a TLB.
"""

from __future__ import annotations

import numpy as np

from epcsim.hw.epc import G_TLB_SHIFT, G_TLB_WAYS, HwState
from epcsim.jit import njit, njit_inline

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
def tlb_fills(st: HwState, lp: int, s: int) -> int:
    """Set ``s``'s fill count in the LP's current generation (0: empty)."""
    v = np.int64(st.tlb_way[lp, s])
    return v & 0xFF if (v >> 8) == np.int64(st.lp[lp].lp_tlbg) else 0


@njit_inline
def tlb_lookup(st: HwState, lp: int, s: int, tag: int, write: bool, page: int,
               fills: int) -> int:
    """TLB_HIT, TLB_MISS, or the way of the entry a read filled when a write finds it (a
    miss too: the write walks, and its fill replaces that entry). ``page``: the EPC page
    the PTE maps the address to (NO_PAGE: none); ``fills``: :func:`tlb_fills` of the set."""
    ways = np.int64(st.g[G_TLB_WAYS])
    first = s * ways
    valid = min(fills, ways)
    if valid == 0:
        # The set is empty since the last flush: on a replay under reclaim, most lookups
        # (a fault's AEX flushed the TLB a few accesses before).
        return TLB_MISS
    way = TLB_MISS
    hint = np.int64(st.epcm[page].tlbw) if page >= 0 else ways
    if hint < valid and (np.int64(st.tlb[lp, first + hint]) | 1) == tag:
        way = hint
    elif page < 0 or st.lp[lp].lp_shared != 0:
        # No early exit: which way holds a hot page is as random as the trace, so a branch
        # per way mispredicted on about every hit. A page is in at most one way of its set
        # (a fill follows a miss, or replaces the read's entry), so a sum finds it.
        found = 0
        for w in range(valid):
            found += w + 1 if (np.int64(st.tlb[lp, first + w]) | 1) == tag else 0
        way = found - 1
    if way == TLB_MISS or not write or np.int64(st.tlb[lp, first + way]) == tag:
        return TLB_HIT if way != TLB_MISS else TLB_MISS
    return way


@njit_inline
def tlb_fill(st: HwState, lp: int, s: int, tag: int, write: bool, way: int,
             page: int, fills: int) -> None:
    """Put the translation of an address to EPC page ``page`` a walk found in set ``s``:
    in ``way`` when it upgrades a read's entry for a write, else in the set's next way.
    ``fills``: :func:`tlb_fills` of the set before the walk (a walk fills no TLB)."""
    ways = np.int64(st.g[G_TLB_WAYS])
    if way < 0:
        c = fills
        if c < ways:
            way = c
            c += 1
        else:
            way = c - ways
            c = c + 1 if c + 1 < 2 * ways else ways
        st.tlb_way[lp, s] = (np.int64(st.lp[lp].lp_tlbg) << 8) | c
    st.tlb[lp, s * ways + way] = tag if write else tag ^ 1
    st.epcm[page].tlbw = way


@njit_inline
def tlb_flush(st: HwState, lp: int) -> None:
    """Drop every entry of ``lp``'s TLB (EEXIT, AEX)."""
    g = (np.int64(st.lp[lp].lp_tlbg) + 1) & 0xFF
    st.lp[lp].lp_tlbg = g
    if g == 0:
        tlb_clear(st, lp)


@njit
def tlb_clear(st: HwState, lp: int) -> None:
    """The generation wrapped: sets filled 256 flushes ago would look filled again."""
    for s in range(st.tlb_way.shape[1]):
        st.tlb_way[lp, s] = 0


def tlb_entries(st: HwState, lp: int) -> int:
    """Valid entries of ``lp``'s TLB (tests and reports)."""
    v = st.tlb_way[lp].astype(np.int64)
    fills = np.where((v >> 8) == int(st.lp_tlbg[lp]), v & 0xFF, 0)
    return int(np.minimum(fills, int(st.g[G_TLB_WAYS])).sum())
