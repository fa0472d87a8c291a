"""Logical processors, enclave entry and exit, and the ETRACK epoch model.

The hardware's tracking microarchitecture is not public; this is the behaviourally
equivalent model of Intel SDM vol. 3D::

    SECS:  cbepoch            current epoch
           refcnt             LPs inside that entered in the current epoch
           prev               LPs inside that entered in epoch cbepoch-1
    LP:    entry_epoch        epoch recorded at EENTER/ERESUME
    EPCM:  bepoch             epoch recorded by EBLOCK (and EMODPR/EMODT)

Because ETRACK refuses to start a cycle while ``prev > 0``, no LP inside an enclave has an
entry epoch older than ``cbepoch - 1``, so two counters are enough.
"""

from __future__ import annotations

import numpy as np

from epcsim.hw.epc import NO_PAGE, HwState
from epcsim.hw.tlb import tlb_flush
from epcsim.jit import njit, njit_inline


@njit_inline
def lbepoch(st: HwState, row: int) -> int:
    """The last epoch whose tracking cycle has completed (-1 when none has)."""
    cb = np.int64(st.secs[row].s_cbepoch)
    if st.secs[row].s_prev == 0:
        return cb - 1
    return cb - 2


@njit_inline
def tracking_correct(st: HwState, page: int) -> bool:
    """True when no LP can still hold a TLB entry created before ``page`` was blocked."""
    return np.int64(st.epcm[page].bepoch) <= lbepoch(st, np.int64(st.epcm[page].row))


@njit_inline
def lps_inside(st: HwState, row: int) -> int:
    return np.int64(st.secs[row].s_refcnt) + np.int64(st.secs[row].s_prev)


@njit_inline
def enter_epoch(st: HwState, lp: int, row: int, tcs_page: int) -> None:
    # Alone inside, an LP's TLB holds only what it filled, each page at the way its EPCM
    # entry names (epcsim.hw.tlb). With two inside, both stop relying on that: the one
    # already there is ``s_lp`` when it is alone; when ``s_lp`` left since, the one inside
    # was marked when it stopped being alone.
    inside = lps_inside(st, row)
    other = np.int64(st.secs[row].s_lp)
    if inside == 1 and 0 <= other < st.lp.shape[0]:
        st.lp[other].lp_shared = 1
    st.lp[lp].lp_shared = 1 if inside > 0 else 0
    st.lp[lp].lp_row = row
    st.lp[lp].lp_epoch = st.secs[row].s_cbepoch
    st.lp[lp].lp_tcs = tcs_page
    st.lp[lp].lp_base = np.int64(st.secs[row].s_base)
    st.secs[row].s_refcnt += 1
    st.secs[row].s_lp = lp


@njit_inline
def leave_epoch(st: HwState, lp: int) -> None:
    """EEXIT and AEX: the LP's enclave TLB entries are flushed and it leaves its epoch."""
    row = st.lp[lp].lp_row
    if st.lp[lp].lp_epoch == st.secs[row].s_cbepoch:
        st.secs[row].s_refcnt -= 1
    else:
        st.secs[row].s_prev -= 1
    st.lp[lp].lp_row = NO_PAGE
    st.lp[lp].lp_tcs = NO_PAGE
    tlb_flush(st, lp)


@njit
def start_tracking_cycle(st: HwState, row: int) -> None:
    """ETRACK's effect: LPs inside now belong to the previous epoch."""
    st.secs[row].s_prev = st.secs[row].s_refcnt
    st.secs[row].s_refcnt = 0
    st.secs[row].s_cbepoch += 1
