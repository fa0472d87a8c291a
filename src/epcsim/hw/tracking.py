"""Logical processors, enclave entry and exit, and the ETRACK epoch model.

The hardware's tracking microarchitecture is not public; this is the behaviourally
equivalent model of sgx-arch.md §5.3::

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
from epcsim.jit import njit_inline as njit


@njit
def lbepoch(st: HwState, row: int) -> int:
    """The last epoch whose tracking cycle has completed (-1 when none has)."""
    cb = np.int64(st.s_cbepoch[row])
    if st.s_prev[row] == 0:
        return cb - 1
    return cb - 2


@njit
def tracking_correct(st: HwState, page: int) -> bool:
    """True when no LP can still hold a TLB entry created before ``page`` was blocked."""
    return np.int64(st.bepoch[page]) <= lbepoch(st, np.int64(st.row[page]))


@njit
def lps_inside(st: HwState, row: int) -> int:
    return np.int64(st.s_refcnt[row]) + np.int64(st.s_prev[row])


@njit
def enter_epoch(st: HwState, lp: int, row: int, tcs_page: int) -> None:
    st.lp_row[lp] = row
    st.lp_epoch[lp] = st.s_cbepoch[row]
    st.lp_tcs[lp] = tcs_page
    st.s_refcnt[row] += 1


@njit
def leave_epoch(st: HwState, lp: int) -> None:
    """EEXIT and AEX: the LP's enclave TLB entries are flushed and it leaves its epoch."""
    row = st.lp_row[lp]
    if st.lp_epoch[lp] == st.s_cbepoch[row]:
        st.s_refcnt[row] -= 1
    else:
        st.s_prev[row] -= 1
    st.lp_row[lp] = NO_PAGE
    st.lp_tcs[lp] = NO_PAGE


@njit
def start_tracking_cycle(st: HwState, row: int) -> None:
    """ETRACK's effect: LPs inside now belong to the previous epoch."""
    st.s_prev[row] = st.s_refcnt[row]
    st.s_refcnt[row] = 0
    st.s_cbepoch[row] += 1
