"""EPC sections and the EPCM, as arrays.

The EPCM is a struct of arrays indexed by EPC page number (the position of a page across
all sections in enumeration order). Physical address <-> page number is arithmetic over
at most eight sections, as ``sgx_epc_section`` does in the kernel.

Per EPC page the model keeps 14 bytes:

============  =====  ====================================================================
``flags``     u8     R, W, X, PENDING, MODIFIED, PR (the SECINFO bit positions), VALID,
                     BLOCKED
``pt``        u8     page type
``row``       u32    the enclave's row in the SECS table (SECS/REG/TCS/TRIM pages), or the
                     VA page's row in the version table (VA pages)
``lin``       u32    ENCLAVEADDRESS as a page offset from the enclave's BASEADDR
``bepoch``    u32    epoch recorded by EBLOCK/EMODPR/EMODT (for "tracking correct")
============  =====  ====================================================================

ENCLAVESECS is derived: a child's SECS is the page recorded in its enclave's row. Children
only exist while their SECS is resident (EWB of a SECS with children fails), so this is
the same relation the hardware keeps, without a second 8-byte field per page.

Per-enclave state (the hidden SECS fields: EID, CHLDCNT, VIRTCHILDCNT, ENCLAVECONTEXT,
epoch counters, INIT) lives in the SECS table; per-LP state in :mod:`epcsim.hw.tracking`.
All of it is gathered in one :class:`HwState` named tuple so compiled leaves take a
single argument.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from epcsim.arch import PAGE_SHIFT, PAGE_SIZE, SGX_MAX_EPC_SECTIONS, SGX_VA_SLOT_COUNT

# EPCM flag bits. R/W/X/PENDING/MODIFIED/PR sit where SECINFO.FLAGS has them, so the
# SECINFO subset that EWB binds into the MAC is ``flags & EPCM_SECINFO_MASK``.
EPCM_R = 0x01
EPCM_W = 0x02
EPCM_X = 0x04
EPCM_PENDING = 0x08
EPCM_MODIFIED = 0x10
EPCM_PR = 0x20
EPCM_VALID = 0x40
EPCM_BLOCKED = 0x80
EPCM_PERM_MASK = 0x07
EPCM_SECINFO_MASK = 0x3F

# Global scalars in ``HwState.g``.
G_NEXT_EID = 0        # next enclave id (ECREATE fetch-and-increment)
G_NEXT_VERSION = 1    # next EWB version; versions are never 0 (0 marks a free VA slot)
G_CONTENT = 2         # 1 when every EPC page holds bytes
G_SECS_FREE_TOP = 3   # entries in the free-row stack of the SECS table
G_VA_FREE_TOP = 4     # entries in the free-row stack of the version table
G_MAC_KEY = 5         # key of the metadata-mode MAC (content mode uses AES-GCM)
G_MAX_ENCL_LOG2 = 6   # log2 of the largest enclave in 64-bit mode (CPUID.12H:EDX[15:8])
G_NLOCKED = 7         # number of injected lock conflicts in ``locked``
G_OVERSUB = 8         # 1 when the part implements the OVERSUB leaves (CPUID.12H:EAX[6])
G_SGX2 = 9            # 1 when the part implements SGX2 (EAUG, EMODPR, EMODT, EACCEPT...)
G_RSV_TOP = 10        # host pages in the exit handler's reserve (``rsv``)
G_XLOG_N = 11         # entries in ``xlog`` since the host last read it
G_NULL_PAGE = 12      # 1 + a host page that is never valid (unpopulated guest pages), or 0
G_LEN = 16

# VMCS fields of the executing context (``HwState.vmcs``): the host's is all zeros.
V_GUEST = 0           # 1 while a guest runs (leaves translate their EPC operands)
V_EPT_BASE = 1        # the guest's first entry in ``ept``
V_NPAGES = 2          # guest EPC pages (entries of ``ept`` the guest owns)
V_VM = 3              # the VM's row in ``vcnt``
V_LEN = 4

# EPT entries that name no host page.
EPT_NONE = -1         # never populated, or dropped while free in the guest
EPT_EVICTED = -2      # the host wrote it back; ``xrec`` holds what ELDUC needs

# Columns of ``xrec``: the host's record of a guest page it evicted.
X_VA, X_SLOT, X_SECINFO, X_LIN, X_EID, X_MAC, X_AUX, X_SECS, X_CTX, X_BLOCKED, X_A, X_VER = \
    range(12)
X_LEN = 12            # X_SECS: the SECS's EPT index; X_A: the EPT accessed bit
# X_VER: the version the exit handler's ELDUC took from the VA slot (content mode opens the
# sealed bytes with it after the compiled leaf returns; 0 once they are in place).

# Per-VM exit counters (``vcnt`` columns).
VC_EPT, VC_ELDU, VC_CONFLICT, VC_STARVED = range(4)
VC_LEN = 4

# SECS-table lock bits (injected concurrency, sgx-arch.md §3 "Concurrency rules").
SECS_LOCK_PAGE = 0x1        # the SECS page itself is in use by another leaf
SECS_LOCK_TRACKING = 0x2    # another ETRACK/ETRACKC owns the tracking resource
SECS_LOCK_EPOCH = 0x4       # ETRACK is updating the entry epoch (EBLOCK: ENTRYEPOCH_LOCKED)
SECS_LOCK_MEASURE = 0x8     # EADD/EEXTEND/EINIT of another thread owns the measurement

NO_PAGE = -1
MAX_LOCKED = 8


class HwState(NamedTuple):
    """Every array of the processor model. Compiled leaves take it as one argument."""

    # sections
    sec_base: np.ndarray      # u64 physical base of each section
    sec_first: np.ndarray     # i64 first page number of each section
    sec_npages: np.ndarray    # i64 pages in each section
    sec_node: np.ndarray      # i32 NUMA node of each section
    # EPCM
    flags: np.ndarray         # u8
    pt: np.ndarray            # u8
    row: np.ndarray           # u32
    lin: np.ndarray           # u32
    bepoch: np.ndarray        # u32
    tcs: np.ndarray           # u8: TCS busy (bit 7), NSSA (bits 6:4), CSSA (bits 3:0)
    data: np.ndarray          # u8 [npages, 4096] in content mode, else [1, 4096]
    # SECS table (one row per enclave ever created and not yet removed)
    s_eid: np.ndarray         # u64
    s_page: np.ndarray        # i64 EPC page of the SECS, NO_PAGE while evicted
    s_base: np.ndarray        # u64 BASEADDR
    s_size: np.ndarray        # u64 SIZE
    s_attr: np.ndarray        # u64 ATTRIBUTES.FLAGS
    s_xfrm: np.ndarray        # u64
    s_ssa: np.ndarray         # u32 SSAFRAMESIZE
    s_misc: np.ndarray        # u32 MISCSELECT
    s_chld: np.ndarray        # u32 CHLDCNT (resident children)
    s_vchld: np.ndarray       # u32 VIRTCHILDCNT
    s_ctx: np.ndarray         # u64 ENCLAVECONTEXT
    s_cbepoch: np.ndarray     # u32 current epoch
    s_refcnt: np.ndarray      # u32 LPs inside that entered in the current epoch
    s_prev: np.ndarray        # u32 LPs inside that entered in the previous epoch
    s_lock: np.ndarray        # u8 injected lock bits
    s_free: np.ndarray        # i64 stack of free rows
    # version table (one row per VA page)
    va_slots: np.ndarray      # u64 [rows, 512]
    va_free: np.ndarray       # i64 stack of free rows
    # logical processors
    lp_row: np.ndarray        # i64 enclave row the LP is inside, NO_PAGE when outside
    lp_epoch: np.ndarray      # u32 entry epoch
    lp_tcs: np.ndarray        # i64 EPC page of the TCS in use
    # scalars and injected conflicts
    g: np.ndarray             # u64 [G_LEN]
    locked: np.ndarray        # i64 [MAX_LOCKED] EPC pages "in use by another leaf"
    # virtualization (zero-length until a virtual EPC exists; see epcsim.hw.vmx)
    vmcs: np.ndarray          # i64 [V_LEN] the executing context (each guest view has its own)
    ept: np.ndarray           # i64 guest EPC page (+ V_EPT_BASE) -> host page, or EPT_*
    xrec: np.ndarray          # i64 [len(ept), X_LEN] records of host-evicted guest pages
    rsv: np.ndarray           # i64 free host pages the exit handler may use at once
    xlog: np.ndarray          # i64 EPT entries the exit handler filled since the host looked
    vcnt: np.ndarray          # i64 [VMs, VC_LEN] exits per VM


@dataclass(frozen=True)
class EpcSection:
    """One CPUID.(12H, n>=2) EPC section."""

    base: int
    size: int
    node: int = 0
    protection: int = 1  # 1: confidentiality + integrity + replay (MEE); 2: TME-based

    @property
    def npages(self) -> int:
        return self.size >> PAGE_SHIFT


MAX_SECTION_BYTES = 512 << 30  # 512 GiB per socket (Intel KB 000059614)


def validate_sections(sections: list[EpcSection]) -> None:
    """Reject EPC layouts the architecture cannot enumerate."""
    if not sections:
        raise ValueError("at least one EPC section is needed")
    if len(sections) > SGX_MAX_EPC_SECTIONS:
        raise ValueError(f"at most {SGX_MAX_EPC_SECTIONS} EPC sections, got {len(sections)}")
    spans = []
    for s in sections:
        if s.base % PAGE_SIZE or s.size % PAGE_SIZE or s.size <= 0:
            raise ValueError(f"EPC section {s} must be page aligned and non-empty")
        if s.size > MAX_SECTION_BYTES:
            raise ValueError(f"EPC section of {s.size} bytes exceeds 512 GiB")
        if s.base >= 1 << 52:
            raise ValueError("EPC section base beyond 52-bit physical addresses")
        spans.append((s.base, s.base + s.size))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ValueError("EPC sections overlap")
    per_node: dict[int, int] = {}
    for s in sections:
        per_node[s.node] = per_node.get(s.node, 0) + s.size
    for node, total in per_node.items():
        if total > MAX_SECTION_BYTES:
            raise ValueError(f"node {node} has {total} bytes of EPC; at most 512 GiB per socket")


def _grow_rows(arr: np.ndarray, rows: int) -> np.ndarray:
    shape = (rows,) + arr.shape[1:]
    out = np.zeros(shape, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


def make_state(sections: list[EpcSection], *, n_lps: int, content: bool, mac_key: int,
               max_enclave_log2: int, oversub: bool, sgx2: bool,
               secs_rows: int = 16, va_rows: int = 16) -> HwState:
    """Allocate the arrays of a fresh processor: every EPC page invalid."""
    validate_sections(sections)
    npages = sum(s.npages for s in sections)
    first = np.zeros(len(sections), dtype=np.int64)
    acc = 0
    for i, s in enumerate(sections):
        first[i] = acc
        acc += s.npages
    g = np.zeros(G_LEN, dtype=np.uint64)
    g[G_NEXT_EID] = 1
    g[G_NEXT_VERSION] = 1
    g[G_CONTENT] = 1 if content else 0
    g[G_MAC_KEY] = mac_key & 0xFFFFFFFFFFFFFFFF
    g[G_MAX_ENCL_LOG2] = max_enclave_log2
    g[G_OVERSUB] = 1 if oversub else 0
    g[G_SGX2] = 1 if sgx2 else 0
    st = HwState(
        sec_base=np.array([s.base for s in sections], dtype=np.uint64),
        sec_first=first,
        sec_npages=np.array([s.npages for s in sections], dtype=np.int64),
        sec_node=np.array([s.node for s in sections], dtype=np.int32),
        flags=np.zeros(npages, dtype=np.uint8),
        pt=np.zeros(npages, dtype=np.uint8),
        row=np.zeros(npages, dtype=np.uint32),
        lin=np.zeros(npages, dtype=np.uint32),
        bepoch=np.zeros(npages, dtype=np.uint32),
        tcs=np.zeros(npages, dtype=np.uint8),
        data=np.zeros((npages if content else 1, PAGE_SIZE), dtype=np.uint8),
        s_eid=np.zeros(0, dtype=np.uint64), s_page=np.zeros(0, dtype=np.int64),
        s_base=np.zeros(0, dtype=np.uint64), s_size=np.zeros(0, dtype=np.uint64),
        s_attr=np.zeros(0, dtype=np.uint64), s_xfrm=np.zeros(0, dtype=np.uint64),
        s_ssa=np.zeros(0, dtype=np.uint32), s_misc=np.zeros(0, dtype=np.uint32),
        s_chld=np.zeros(0, dtype=np.uint32), s_vchld=np.zeros(0, dtype=np.uint32),
        s_ctx=np.zeros(0, dtype=np.uint64), s_cbepoch=np.zeros(0, dtype=np.uint32),
        s_refcnt=np.zeros(0, dtype=np.uint32), s_prev=np.zeros(0, dtype=np.uint32),
        s_lock=np.zeros(0, dtype=np.uint8), s_free=np.zeros(0, dtype=np.int64),
        va_slots=np.zeros((0, SGX_VA_SLOT_COUNT), dtype=np.uint64),
        va_free=np.zeros(0, dtype=np.int64),
        lp_row=np.full(n_lps, NO_PAGE, dtype=np.int64),
        lp_epoch=np.zeros(n_lps, dtype=np.uint32),
        lp_tcs=np.full(n_lps, NO_PAGE, dtype=np.int64),
        g=g,
        locked=np.full(MAX_LOCKED, NO_PAGE, dtype=np.int64),
        vmcs=np.zeros(V_LEN, dtype=np.int64), ept=np.zeros(0, dtype=np.int64),
        xrec=np.zeros((0, X_LEN), dtype=np.int64), rsv=np.zeros(0, dtype=np.int64),
        xlog=np.zeros(0, dtype=np.int64), vcnt=np.zeros((0, VC_LEN), dtype=np.int64),
    )
    st = grow_secs_table(st, secs_rows)
    return grow_va_table(st, va_rows)


def _state_type() -> object:
    """The numba type of every :class:`HwState` (one per set of dtypes and ranks, which
    :func:`make_state` fixes): what compiled entry points that take a state handle name."""
    from numba import typeof
    from numba.core import config

    if config.DISABLE_JIT:
        return None
    return typeof(make_state([EpcSection(base=1 << 31, size=PAGE_SIZE)], n_lps=1, content=True,
                             mac_key=0, max_enclave_log2=36, oversub=True, sgx2=True,
                             secs_rows=1, va_rows=1))


_SECS_FIELDS = ("s_eid", "s_page", "s_base", "s_size", "s_attr", "s_xfrm", "s_ssa", "s_misc",
                "s_chld", "s_vchld", "s_ctx", "s_cbepoch", "s_refcnt", "s_prev", "s_lock")


def grow_secs_table(st: HwState, min_free: int = 1) -> HwState:
    """Return a state whose SECS table has at least ``min_free`` free rows."""
    top = int(st.g[G_SECS_FREE_TOP])
    if top >= min_free:
        return st
    old = st.s_eid.shape[0]
    new = max(16, old + old // 4, old + min_free - top)
    changes = {name: _grow_rows(getattr(st, name), new) for name in _SECS_FIELDS}
    changes["s_page"][old:] = NO_PAGE
    free = np.zeros(new, dtype=np.int64)
    free[:top] = st.s_free[:top]
    added = np.arange(new - 1, old - 1, -1, dtype=np.int64)  # lowest row on top of the stack
    free[top: top + added.size] = added
    st.g[G_SECS_FREE_TOP] = top + added.size
    return st._replace(s_free=free, **changes)


def grow_va_table(st: HwState, min_free: int = 1) -> HwState:
    """Return a state whose version table has at least ``min_free`` free rows."""
    top = int(st.g[G_VA_FREE_TOP])
    if top >= min_free:
        return st
    old = st.va_slots.shape[0]
    new = max(16, old + old // 4, old + min_free - top)
    free = np.zeros(new, dtype=np.int64)
    free[:top] = st.va_free[:top]
    added = np.arange(new - 1, old - 1, -1, dtype=np.int64)
    free[top: top + added.size] = added
    st.g[G_VA_FREE_TOP] = top + added.size
    return st._replace(va_slots=_grow_rows(st.va_slots, new), va_free=free)


HW_STATE_TYPE = _state_type()


def epcm_bytes_per_page(st: HwState) -> float:
    """Bytes of EPCM and section state per EPC page (metadata mode)."""
    n = st.flags.shape[0]
    per_page = sum(getattr(st, f).nbytes for f in ("flags", "pt", "row", "lin", "bepoch", "tcs"))
    sections = sum(getattr(st, f).nbytes for f in ("sec_base", "sec_first", "sec_npages",
                                                   "sec_node"))
    return (per_page + sections) / n
