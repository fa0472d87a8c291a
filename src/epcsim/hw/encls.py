"""ENCLS, ENCLU and ENCLV leaves over the EPCM arrays.

Each leaf is split the way the SDM pseudocode is: the *operand* checks (alignment, "is this
address in the EPC", fields of PAGEINFO/SECINFO that must be zero) need only the operands
and run in :mod:`epcsim.hw.cpu`; the checks that read the EPCM, in architectural order,
and the effects run here, compiled. The kernel model's hot paths call these functions
directly with page numbers it already knows to be EPC pages.

Every function returns an integer: 0 for success, an ``SgxReturn`` value, a fault
``FAULT | (operand << 8) | vector`` (the Linux encoding of a faulting ENCLS, with the
operand that faulted so the caller can report the address), ``VMEXIT | qualification`` for
an SGX_CONFLICT exit of a guest leaf, or ``NEED_ROW`` when a model table must grow first.
A fault or an error code leaves no state changed (Intel SDM vol. 3D), except EWB's
SGX_VA_SLOT_OCCUPIED, which completes.
"""

from __future__ import annotations

import numpy as np
from numba.core.types import boolean, int64

from epcsim.hw.epc import (
    EPCM_BLOCKED,
    EPCM_MODIFIED,
    EPCM_PENDING,
    EPCM_PERM_MASK,
    EPCM_PR,
    EPCM_R,
    EPCM_SECINFO_MASK,
    EPCM_VALID,
    EPCM_W,
    EPCM_X,
    EPT_NONE,
    G_CONTENT,
    G_CPUSVN,
    G_LOCKED,
    G_MAC_KEY,
    G_NEXT_EID,
    G_NEXT_VERSION,
    G_NLOCKED,
    G_NULL_PAGE,
    G_RDSEED_FAILS,
    G_RSV_TOP,
    G_SECS_FREE_TOP,
    G_UCODE_SVN,
    G_VA_FREE_TOP,
    G_XLOG_N,
    NO_PAGE,
    SECS_LOCK_EPOCH,
    SECS_LOCK_MEASURE,
    SECS_LOCK_TRACKING,
    V_EPT_BASE,
    V_GUEST,
    V_VM,
    VC_CONFLICT,
    VC_ELDU,
    VC_EPT,
    VERSION_MAX,
    X_A,
    X_AUX,
    X_BLOCKED,
    X_CTX,
    X_EID,
    X_LIN,
    X_MAC,
    X_SECINFO,
    X_SECS,
    X_SLOT,
    X_VA,
    X_VER,
    HwState,
)
from epcsim.hw.tlb import TLB_HIT, TLB_MISS, tlb_fill, tlb_fills, tlb_lookup, tlb_tag
from epcsim.hw.tracking import (
    enter_epoch,
    leave_epoch,
    lps_inside,
    start_tracking_cycle,
    tracking_correct,
)
from epcsim.jit import deferred, njit, njit_inline

# Page types (arch.PageType), as plain ints for compiled code.
PT_SECS = 0
PT_TCS = 1
PT_REG = 2
PT_VA = 3
PT_TRIM = 4
PT_SS_FIRST = 5
PT_SS_REST = 6

# Return codes (arch.SgxReturn).
SUCCESS = 0
INVALID_SIG_STRUCT = 1
INVALID_ATTRIBUTE = 2
BLKSTATE = 3
INVALID_MEASUREMENT = 4
NOTBLOCKABLE = 5
PG_INVLD = 6
EPC_PAGE_CONFLICT = 7
INVALID_SIGNATURE = 8
MAC_COMPARE_FAIL = 9
PAGE_NOT_BLOCKED = 10
NOT_TRACKED = 11
VA_SLOT_OCCUPIED = 12
CHILD_PRESENT = 13
ENCLAVE_ACT = 14
ENTRYEPOCH_LOCKED = 15
INVALID_EINITTOKEN = 16
PREV_TRK_INCMPL = 17
PG_IS_SECS = 18
PAGE_ATTRIBUTES_MISMATCH = 19
PAGE_NOT_MODIFIABLE = 20
PAGE_NOT_DEBUGGABLE = 21
INVALID_COUNTER = 25
PG_NONEPC = 26
TRACK_NOT_REQUIRED = 27
INSUFFICIENT_ENTROPY = 29
EPC_NOT_READY = 30
NO_UPDATE = 31

# Non-error outcomes.
FAULT = 0x40000000
VMEXIT = 0x20000000
NEED_ROW = 0x10000000
UD = 6
GP = 13
PF = 14

# Which operand a fault concerns (the address a #PF reports).
OP_RCX = 0       # the target EPC page
OP_SECS = 1      # PAGEINFO.SECS, or RBX when RBX names a SECS
OP_RDX = 2       # the VA slot (EWB/ELDx) or the source page (EACCEPTCOPY)
OP_RBX = 3       # an RBX operand that is a page of the enclave (SECINFO, ENCLV page)

# Contexts a leaf executes in.
CTX_HOST = 0     # VMX root or bare metal
CTX_GUEST = 1    # a guest with "enable EPC virtualization extensions" set

# SGX_CONFLICT exit qualifications.
Q_TRACKING_RESOURCE = 0
Q_TRACKING_REFERENCE = 1
Q_PAGE_EXCEPTION = 2
Q_PAGE_ERROR = 3

# ELDx ``secs`` operand that failed its alignment check (NO_PAGE: not an EPC page).
SECS_MISALIGNED = -2

# SECS-table lock bit: the open tracking cycle was started by the host (ETRACKC).
SECS_TRACK_BY_HOST = 0x10

# Indices of the EWB/ELDx record (what ends up in PCMD plus the version).
W_EID = 0        # EID bound into the MAC header (0 for SECS and VA)
W_LINADDR = 1
W_SECINFO = 2    # page type << 8 | R/W/X/PENDING/MODIFIED/PR
W_VERSION = 3
W_MAC = 4        # metadata-mode MAC (content mode adds the AES-GCM tag)
W_PCMD_EID = 5   # PCMD.ENCLAVEID
W_AUX = 6        # state carried with the page: TCS byte, or a VA page's version row
W_ROW = 7        # model row of the enclave (or version table) the page belonged to
W_LEN = 8

RDINFO_BLOCKED = 1 << 16
RDINFO_CHILDPRESENT = 1
RDINFO_VIRTCHILDPRESENT = 2

MASK64 = 0xFFFFFFFFFFFFFFFF


@njit
def fault(vector: int, operand: int) -> int:
    return FAULT | (operand << 8) | vector


@njit
def is_fault(code: int) -> bool:
    return (code & FAULT) != 0


@njit_inline
def page_locked(st: HwState, page: int) -> bool:
    """True when an injected concurrent leaf holds ``page`` (Intel SDM vol. 3D)."""
    return st.g[G_NLOCKED] != 0 and _locked_by_another(st, page)


@njit
def _locked_by_another(st: HwState, page: int) -> bool:
    for i in range(np.int64(st.g[G_NLOCKED])):
        if np.int64(st.g[G_LOCKED + i]) == page:
            return True
    return False


@njit_inline
def lock_fault(ctx: int, operand: int) -> int:
    """A lock conflict: #GP on bare metal, an SGX_CONFLICT exit in an extended guest."""
    if ctx == CTX_GUEST:
        return VMEXIT | Q_PAGE_EXCEPTION
    return fault(GP, operand)


@njit_inline
def is_child_type(pt: int) -> bool:
    return pt == PT_REG or pt == PT_TCS or pt == PT_TRIM or pt == PT_SS_FIRST or pt == PT_SS_REST


@njit_inline
def valid(st: HwState, page: int) -> bool:
    return (st.epcm[page].bits & EPCM_VALID) != 0


@njit_inline
def is_valid_secs(st: HwState, page: int) -> bool:
    return valid(st, page) and st.epcm[page].pt == PT_SECS


@njit_inline
def initialized(st: HwState, row: int) -> bool:
    return (st.secs[row].s_attr & 1) != 0


@njit_inline
def page_linaddr(st: HwState, page: int) -> int:
    """ENCLAVEADDRESS of a child page."""
    return np.int64(st.secs[st.epcm[page].row].s_base) + (np.int64(st.epcm[page].lin) << 12)


@njit_inline
def in_elrange(st: HwState, row: int, linaddr: int) -> bool:
    base = np.int64(st.secs[row].s_base)
    return base <= linaddr < base + np.int64(st.secs[row].s_size)


@njit
def _mix(h: np.uint64, w: np.uint64) -> np.uint64:
    h ^= w
    h *= np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return h


# One odd multiplier per field of the EWB record (from the splitmix and xxhash families).
_MAC_K = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
          0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)


@njit
def metadata_mac(key: int, version: int, eid: int, linaddr: int, secinfo: int, aux: int,
                 pcmd_eid: int) -> int:
    """A keyed 32-bit MAC over the EWB record, for metadata mode (no page bytes).

    Each field is multiplied by its own odd constant (a bijection, so a change to any one
    field changes the sum) and the products are folded together before one final mix: the
    six multiplies are independent, where a chain of mixes made every EWB and ELDU wait for
    twelve multiplies in a row. It is a model's integrity check, not cryptography; content
    mode seals with AES-GCM.

    Unsigned 64-bit arithmetic wraps in numba and numpy alike (the interpreter's overflow
    warnings are silenced in :mod:`epcsim.jit`), so both paths agree bit for bit.
    """
    h = (np.uint64(version) * np.uint64(_MAC_K[0])) ^ (np.uint64(eid) * np.uint64(_MAC_K[1]))
    h ^= (np.uint64(linaddr) * np.uint64(_MAC_K[2])) ^ (np.uint64(secinfo) * np.uint64(_MAC_K[3]))
    h ^= (np.uint64(aux) * np.uint64(_MAC_K[4])) ^ (np.uint64(pcmd_eid) * np.uint64(_MAC_K[5]))
    h = _mix(np.uint64(key), h)
    # The high 32 bits: the PCMD's MAC is kept for every evicted page, and at 4 bytes it is
    # half of what 8 were (a forged blob passes with odds of 2^-32, docs/fidelity.md). A
    # plain non-negative int64 in compiled code: numba compares mixed signed/unsigned 64-bit
    # integers through float64, which would lose low bits.
    return np.int64(h >> np.uint64(32))


@njit
def _pop_secs_row(st: HwState) -> int:
    """A free row of the SECS table (the caller checked that one is left)."""
    top = np.int64(st.g[G_SECS_FREE_TOP]) - 1
    st.g[G_SECS_FREE_TOP] = top
    return np.int64(st.secs[top].s_free)


@njit
def _push_secs_row(st: HwState, row: int) -> None:
    top = np.int64(st.g[G_SECS_FREE_TOP])
    st.secs[top].s_free = row
    st.g[G_SECS_FREE_TOP] = top + 1


@njit
def _pop_va_row(st: HwState) -> int:
    """A free row of the version table (the caller checked that one is left)."""
    top = np.int64(st.g[G_VA_FREE_TOP]) - 1
    st.g[G_VA_FREE_TOP] = top
    return np.int64(st.va_free[top])


@njit
def _push_va_row(st: HwState, row: int) -> None:
    top = np.int64(st.g[G_VA_FREE_TOP])
    st.va_free[top] = row
    st.g[G_VA_FREE_TOP] = top + 1


@njit
def _zero_page(st: HwState, page: int) -> None:
    if st.g[G_CONTENT] != 0:
        st.data[page, :] = 0


@njit
def set_entry(st: HwState, page: int, flags: int, pt: int, row: int, lin: int, tcs: int) -> None:
    """Fill a freshly allocated EPCM entry (no blocked epoch yet)."""
    st.epcm[page].bits = flags
    st.epcm[page].pt = pt
    st.epcm[page].row = row
    st.epcm[page].lin = lin
    st.epcm[page].bepoch = 0
    st.epcm[page].tcs = tcs


# --------------------------------------------------------------------------- EPT

# A guest's leaves name EPC pages by guest page number. Every leaf maps each EPC operand
# through the EPT first (host context: one branch). A guest page the host evicted is an EPT
# violation: the host's exit handler reloads it before the guest's leaf runs, so the guest
# never sees it. The handler's mechanism is here (ELDUC/ELDBC into a page of the reserve the
# host filled in advance, EDECVIRTCHILD or ESETCONTEXT, an exit counted); its policy (what
# to evict, how large a reserve, where the reserve comes from) is the host kernel's
# (epcsim.kernel.virt), which refills the reserve after every guest operation.

@njit_inline
def ctx_of(st: HwState, ctx: int) -> int:
    """The context a leaf runs in: a guest view's VMCS overrides the caller's claim."""
    if st.vmcs[V_GUEST] != 0:
        return CTX_GUEST
    return ctx


@njit_inline
def tx(st: HwState, page: int) -> int:
    """An EPC operand as the processor addresses it (guest: through the EPT)."""
    if st.vmcs[V_GUEST] == 0 or page < 0:
        return page
    return guest_ept_walk(st, page, False)


@njit_inline
def txw(st: HwState, page: int) -> int:
    """An operand the leaf makes VALID: an unpopulated guest page gets a host page first."""
    if st.vmcs[V_GUEST] == 0 or page < 0:
        return page
    return guest_ept_walk(st, page, True)


@njit
def ept_walk(st: HwState, page: int, populate: bool) -> int:
    i = np.int64(st.vmcs[V_EPT_BASE]) + page
    st.xrec[i, X_A] = 1
    h = np.int64(st.ept[i])
    if h >= 0:
        return h
    if h == EPT_NONE:
        null = np.int64(st.g[G_NULL_PAGE]) - 1
        if not populate and null >= 0:
            # An unpopulated page is invalid: the host's never-valid page answers the same.
            return null
        return ept_take(st, i)
    return ept_reload(st, i)


# Every leaf with an EPC operand calls the walk, and only a guest runs it: the leaves call it
# deferred (jit.deferred), so a machine without virtual machines never compiles the walk, the
# exit handler's reload and what that calls (2-3 s of a first replay's compile). A guest's
# processor compiles it when it is made (vmx.GuestCpu).
guest_ept_walk = deferred(ept_walk, int64, (None, int64, boolean))


@njit
def ept_take(st: HwState, i: int) -> int:
    """Map EPT entry ``i`` to a page of the reserve, and log it for the host."""
    top = np.int64(st.g[G_RSV_TOP])
    if top == 0:
        raise RuntimeError("EPT violation with the host's reserve empty")
    st.g[G_RSV_TOP] = top - 1
    h = np.int64(st.rsv[top - 1])
    st.ept[i] = h
    n = np.int64(st.g[G_XLOG_N])
    st.xlog[n] = i
    st.g[G_XLOG_N] = n + 1
    st.vcnt[st.vmcs[V_VM], VC_EPT] += 1
    return h


@njit
def ept_reload(st: HwState, i: int) -> int:
    """The exit handler for a host-evicted page: its SECS first, then the page itself."""
    pt = (np.int64(st.xrec[i, X_SECINFO]) >> 8) & 0xFF
    secs = NO_PAGE
    if is_child_type(pt):
        j = np.int64(st.xrec[i, X_SECS])
        secs = np.int64(st.ept[j])
        if secs < 0:
            secs = ept_reload_one(st, j, NO_PAGE)
    return ept_reload_one(st, i, secs)


@njit
def ept_reload_one(st: HwState, i: int, secs: int) -> int:
    guest = st.vmcs[V_GUEST]
    st.vmcs[V_GUEST] = 0            # VM exit: the handler's leaves run in VMX root
    h = ept_take(st, i)
    pt = (np.int64(st.xrec[i, X_SECINFO]) >> 8) & 0xFF
    va = np.int64(st.xrec[i, X_VA])
    if va >= 0 and valid(st, va) and st.epcm[va].pt == PT_VA:
        # The version ELDUC consumes: content mode's AES-GCM open uses it (vmx.complete_exits).
        st.xrec[i, X_VER] = st.va_slots[st.epcm[va].row, st.xrec[i, X_SLOT]]
    rc = eldu_at(st, h, np.int64(st.xrec[i, X_VA]), np.int64(st.xrec[i, X_SLOT]), secs,
                 np.int64(st.xrec[i, X_LIN]), np.int64(st.xrec[i, X_SECINFO]),
                 np.int64(st.xrec[i, X_EID]), np.int64(st.xrec[i, X_MAC]),
                 np.int64(st.xrec[i, X_AUX]), st.xrec[i, X_BLOCKED] != 0,
                 True, CTX_HOST, 0, -1)
    if rc != SUCCESS:
        raise RuntimeError("ELDUC of a host-evicted guest page failed")
    if is_child_type(pt):
        virtchild(st, h, secs, -1)
    elif pt == PT_SECS:
        esetcontext(st, h, np.int64(st.xrec[i, X_CTX]))
    st.xrec[i, X_VA] = NO_PAGE
    st.vcnt[st.vmcs[V_VM], VC_ELDU] += 1
    st.vmcs[V_GUEST] = guest        # VM entry: the guest's leaf resumes
    return h


# --------------------------------------------------------------------------- ENCLS (SGX1)

@njit
def ecreate(st: HwState, target: int, base: int, size: int, ssaframesize: int,
            miscselect: int, attributes: int, xfrm: int, secs_ok: bool, context: int) -> int:
    """ECREATE after its operand checks; ``secs_ok`` is the validation of the copied SECS."""
    target = txw(st, target)
    if page_locked(st, target):
        return fault(GP, OP_RCX)
    if valid(st, target):
        return fault(PF, OP_RCX)
    if not secs_ok:
        return fault(GP, OP_RCX)
    if st.g[G_SECS_FREE_TOP] == 0:
        return NEED_ROW
    row = _pop_secs_row(st)
    st.secs[row].s_eid = st.g[G_NEXT_EID]
    st.g[G_NEXT_EID] += 1
    st.secs[row].s_page = target
    st.secs[row].s_base = base
    st.secs[row].s_size = size
    st.secs[row].s_attr = attributes
    st.secs[row].s_xfrm = xfrm
    st.secs[row].s_ssa = ssaframesize
    st.secs[row].s_misc = miscselect
    st.secs[row].s_chld = 0
    st.secs[row].s_vchld = 0
    st.secs[row].s_ctx = context
    st.secs[row].s_cbepoch = 0
    st.secs[row].s_refcnt = 0
    st.secs[row].s_prev = 0
    st.secs[row].s_lock = 0
    set_entry(st, target, EPCM_VALID, PT_SECS, row, 0, 0)
    return SUCCESS


@njit
def free_target_and_secs(st: HwState, target: int, secs: int) -> int:
    """EADD's and EAUG's common EPCM checks: a free, unlocked target and a resident SECS."""
    if page_locked(st, target):
        return fault(GP, OP_RCX)
    if valid(st, target):
        return fault(PF, OP_RCX)
    if page_locked(st, secs):
        return fault(GP, OP_SECS)
    if not is_valid_secs(st, secs):
        return fault(PF, OP_SECS)
    return SUCCESS


@njit
def eadd(st: HwState, target: int, secs: int, linaddr: int, secinfo: int, tcs_aux: int,
         tcs_ok: bool) -> int:
    """EADD after its operand checks (SECINFO type is REG or TCS, reserved bits clear)."""
    target = txw(st, target)
    secs = tx(st, secs)
    rc = free_target_and_secs(st, target, secs)
    if rc != SUCCESS:
        return rc
    row = np.int64(st.epcm[secs].row)
    pt = (secinfo >> 8) & 0xFF
    perms = secinfo & EPCM_PERM_MASK
    if pt == PT_TCS:
        if not tcs_ok:
            return fault(GP, OP_RCX)
        perms = 0
    elif (perms & EPCM_W) != 0 and (perms & EPCM_R) == 0:
        return fault(GP, OP_RCX)
    if not in_elrange(st, row, linaddr):
        return fault(GP, OP_RCX)
    if (st.secs[row].s_lock & SECS_LOCK_MEASURE) != 0:
        return fault(GP, OP_SECS)
    if initialized(st, row):
        return fault(GP, OP_SECS)
    set_entry(st, target, EPCM_VALID | perms, pt, row,
              (linaddr - np.int64(st.secs[row].s_base)) >> 12, tcs_aux if pt == PT_TCS else 0)
    st.secs[row].s_chld += 1
    return SUCCESS


@njit
def eextend(st: HwState, secs: int, chunk_page: int) -> int:
    """EEXTEND's EPCM checks; the caller measures the chunk on success."""
    secs = tx(st, secs)
    chunk_page = tx(st, chunk_page)
    if page_locked(st, chunk_page):
        return fault(GP, OP_RCX)
    pt = st.epcm[chunk_page].pt
    if not valid(st, chunk_page) or (pt != PT_REG and pt != PT_TCS):
        return fault(PF, OP_RCX)
    row = np.int64(st.epcm[chunk_page].row)
    if not is_valid_secs(st, secs) or st.secs[row].s_page != secs:
        return fault(GP, OP_SECS)
    if (st.secs[row].s_lock & SECS_LOCK_MEASURE) != 0 or initialized(st, row):
        return fault(GP, OP_SECS)
    return SUCCESS


@njit
def einit_secs_check(st: HwState, secs: int) -> int:
    """EINIT step 3: the SECS operand must be a resident, uninitialized SECS."""
    secs = tx(st, secs)
    if page_locked(st, secs):
        return fault(GP, OP_SECS)
    if not is_valid_secs(st, secs):
        return fault(PF, OP_SECS)
    row = np.int64(st.epcm[secs].row)
    if (st.secs[row].s_lock & SECS_LOCK_MEASURE) != 0 or initialized(st, row):
        return fault(GP, OP_SECS)
    return SUCCESS


@njit
def eremove(st: HwState, target: int, ctx: int) -> int:
    return eremove_inline(st, target, ctx)


@njit_inline
def eremove_inline(st: HwState, target: int, ctx: int) -> int:
    """EREMOVE, spliced into a caller that runs it on every page (the boot's sanitize: a
    call per page doubled a boot's time)."""
    target = tx(st, target)
    ctx = ctx_of(st, ctx)
    if page_locked(st, target):
        return lock_fault(ctx, OP_RCX)
    f = st.epcm[target].bits
    if (f & EPCM_VALID) == 0:
        return SUCCESS
    pt = np.int64(st.epcm[target].pt)
    if pt == PT_VA:
        _push_va_row(st, np.int64(st.epcm[target].row))
        st.epcm[target].bits = 0
        return SUCCESS
    row = np.int64(st.epcm[target].row)
    if pt == PT_SECS:
        if st.secs[row].s_chld != 0:
            return CHILD_PRESENT
        if ctx == CTX_GUEST and st.secs[row].s_vchld != 0:
            return CHILD_PRESENT
        st.secs[row].s_page = NO_PAGE
        _push_secs_row(st, row)
        st.epcm[target].bits = 0
        return SUCCESS
    accepted_trim = pt == PT_TRIM and (f & EPCM_MODIFIED) == 0
    if not accepted_trim and lps_inside(st, row) > 0:
        return ENCLAVE_ACT
    st.epcm[target].bits = 0
    st.secs[row].s_chld -= 1
    return SUCCESS


@njit
def edbg_check(st: HwState, page: int, write: bool, offset: int) -> int:
    """EDBGRD/EDBGWR EPCM checks; the caller moves the 8 bytes on success."""
    page = tx(st, page)
    if page_locked(st, page):
        return fault(GP, OP_RCX)
    if not valid(st, page):
        return fault(PF, OP_RCX)
    pt = np.int64(st.epcm[page].pt)
    if write:
        if pt != PT_REG and pt != PT_TCS:
            return fault(PF, OP_RCX)
    elif pt != PT_REG and pt != PT_TCS and pt != PT_VA:
        return fault(PF, OP_RCX)
    if (st.epcm[page].bits & (EPCM_PENDING | EPCM_MODIFIED)) != 0:
        return PAGE_NOT_DEBUGGABLE
    if pt == PT_TCS and offset >= 72:
        return fault(GP, OP_RCX)
    if pt != PT_VA and (st.secs[st.epcm[page].row].s_attr & 2) == 0:
        return fault(GP, OP_RCX)
    return SUCCESS


@njit
def epa(st: HwState, target: int) -> int:
    target = txw(st, target)
    if page_locked(st, target):
        return fault(GP, OP_RCX)
    if valid(st, target):
        return fault(PF, OP_RCX)
    if st.g[G_VA_FREE_TOP] == 0:
        return NEED_ROW
    row = _pop_va_row(st)
    st.va_slots[row, :] = 0
    _zero_page(st, target)
    set_entry(st, target, EPCM_VALID, PT_VA, row, 0, 0)
    return SUCCESS


@njit
def eblock(st: HwState, target: int) -> int:
    target = tx(st, target)
    if page_locked(st, target):
        return EPC_PAGE_CONFLICT
    if not valid(st, target):
        return PG_INVLD
    pt = np.int64(st.epcm[target].pt)
    if pt == PT_SECS:
        return PG_IS_SECS
    if not is_child_type(pt):
        return NOTBLOCKABLE
    if (st.epcm[target].bits & EPCM_BLOCKED) != 0:
        return BLKSTATE
    row = np.int64(st.epcm[target].row)
    if (st.secs[row].s_lock & SECS_LOCK_EPOCH) != 0:
        return ENTRYEPOCH_LOCKED
    st.epcm[target].bits |= EPCM_BLOCKED
    st.epcm[target].bepoch = st.secs[row].s_cbepoch
    return SUCCESS


@njit
def etrack(st: HwState, secs: int, ctx: int) -> int:
    secs = tx(st, secs)
    if st.vmcs[V_GUEST] != 0:
        return etrack_guest(st, secs)
    return etrack_host(st, secs, ctx)


@njit
def etrack_guest(st: HwState, secs: int) -> int:
    """A guest's ETRACK: an SGX_CONFLICT exit is the host's to resolve.

    A conflict with a tracking cycle the host started (ETRACKC) is hidden: the host kicks
    the LPs still inside (AEX), which completes its cycle, and resumes the guest at the
    ETRACK, which now succeeds. Any other conflict is the guest's own and the handler
    reflects the architectural result of bare metal.
    """
    rc = etrack_host(st, secs, CTX_GUEST)
    if (rc & VMEXIT) == 0:
        return rc
    st.vcnt[st.vmcs[V_VM], VC_CONFLICT] += 1
    row = np.int64(st.epcm[secs].row)
    if (st.secs[row].s_lock & SECS_TRACK_BY_HOST) != 0 and (rc & 0xFF) == Q_TRACKING_REFERENCE:
        for lp in range(st.lp.shape[0]):
            if st.lp[lp].lp_row == row:
                aex(st, lp)
        return etrack_host(st, secs, CTX_GUEST)
    return etrack_host(st, secs, CTX_HOST)


@njit
def etrack_host(st: HwState, secs: int, ctx: int) -> int:
    if page_locked(st, secs):
        return lock_fault(ctx, OP_RCX)
    if valid(st, secs) and st.epcm[secs].pt == PT_SECS:
        row = np.int64(st.epcm[secs].row)
        if (st.secs[row].s_lock & SECS_LOCK_TRACKING) != 0:
            if ctx == CTX_GUEST:
                return VMEXIT | Q_TRACKING_RESOURCE
            return fault(GP, OP_RCX)
    if not is_valid_secs(st, secs):
        return fault(PF, OP_RCX)
    row = np.int64(st.epcm[secs].row)
    if st.secs[row].s_prev != 0:
        if ctx == CTX_GUEST:
            return VMEXIT | Q_TRACKING_REFERENCE
        return PREV_TRK_INCMPL
    start_tracking_cycle(st, row)
    st.secs[row].s_lock &= ~np.uint8(SECS_TRACK_BY_HOST)
    return SUCCESS


@njit
def ewb(st: HwState, target: int, va_page: int, slot: int, ctx: int, out: np.ndarray) -> int:
    """EWB: evict ``target`` into VA slot ``slot`` of ``va_page``; fill ``out`` (W_*)."""
    target = tx(st, target)
    va_page = tx(st, va_page)
    ctx = ctx_of(st, ctx)
    if page_locked(st, target):
        return lock_fault(ctx, OP_RCX)
    if page_locked(st, va_page):
        return lock_fault(ctx, OP_RDX)
    if not valid(st, target):
        return fault(PF, OP_RCX)
    if not valid(st, va_page) or st.epcm[va_page].pt != PT_VA:
        return fault(PF, OP_RDX)
    pt = np.int64(st.epcm[target].pt)
    f = np.int64(st.epcm[target].bits)
    row = np.int64(st.epcm[target].row)
    if is_child_type(pt):
        if (f & EPCM_BLOCKED) == 0:
            return PAGE_NOT_BLOCKED
        if not tracking_correct(st, target):
            return NOT_TRACKED
    elif pt == PT_SECS:
        if st.secs[row].s_chld != 0:
            return CHILD_PRESENT
        if ctx == CTX_GUEST and st.secs[row].s_vchld != 0:
            return CHILD_PRESENT
    version = np.int64(st.g[G_NEXT_VERSION])
    # 32-bit versions, 1 to 2^32 - 1 and round again (0 marks a free slot): docs/fidelity.md
    st.g[G_NEXT_VERSION] = version + 1 if version < VERSION_MAX else 1
    if is_child_type(pt):
        eid = np.int64(st.secs[row].s_eid)
        out[W_EID] = eid
        out[W_PCMD_EID] = eid
        out[W_LINADDR] = page_linaddr(st, target)
        out[W_AUX] = st.epcm[target].tcs
    elif pt == PT_SECS:
        out[W_EID] = 0
        out[W_PCMD_EID] = st.secs[row].s_eid
        out[W_LINADDR] = 0
        out[W_AUX] = 0
    else:
        out[W_EID] = 0
        out[W_PCMD_EID] = 0
        out[W_LINADDR] = 0
        out[W_AUX] = row
    out[W_SECINFO] = (pt << 8) | (f & EPCM_SECINFO_MASK)
    out[W_VERSION] = version
    out[W_ROW] = row
    out[W_MAC] = metadata_mac(np.int64(st.g[G_MAC_KEY]), version, np.int64(out[W_EID]),
                              np.int64(out[W_LINADDR]), np.int64(out[W_SECINFO]),
                              np.int64(out[W_AUX]),
                              np.int64(out[W_PCMD_EID]))
    va_row = np.int64(st.epcm[va_page].row)
    rc = SUCCESS
    if st.va_slots[va_row, slot] != 0:
        rc = VA_SLOT_OCCUPIED
    st.va_slots[va_row, slot] = np.uint32(version)
    st.epcm[target].bits = 0
    if is_child_type(pt):
        st.secs[row].s_chld -= 1
    elif pt == PT_SECS:
        st.secs[row].s_page = NO_PAGE
    return rc


@njit
def find_evicted_secs_row(st: HwState, eid: int) -> int:
    """The enclave whose SECS blob names ``eid``; its row outlives the eviction."""
    for r in range(st.secs.shape[0]):
        if st.secs[r].s_eid == eid and st.secs[r].s_page == NO_PAGE and eid != 0:
            return r
    return NO_PAGE


@njit
def eldu(st: HwState, target: int, va_page: int, slot: int, secs: int, linaddr: int,
         secinfo: int, pcmd_eid: int, mac: int, aux: int, blocked: bool, conflict_codes: bool,
         ctx: int, context: int, verdict: int) -> int:
    """ELDU/ELDB (and ELDUC/ELDBC with ``conflict_codes``): reload an evicted page.

    ``secs`` is ignored unless the PCMD names a child type. ``verdict`` is -1 in metadata
    mode (check the 64-bit ``mac``), else the AES-GCM result of content mode (1 verified).
    """
    target = txw(st, target)
    va_page = tx(st, va_page)
    if is_child_type((secinfo >> 8) & 0xFF):
        secs = tx(st, secs)
    return eldu_at(st, target, va_page, slot, secs, linaddr, secinfo, pcmd_eid, mac, aux,
                   blocked, conflict_codes, ctx_of(st, ctx), context, verdict)


@njit
def eldu_at(st: HwState, target: int, va_page: int, slot: int, secs: int, linaddr: int,
            secinfo: int, pcmd_eid: int, mac: int, aux: int, blocked: bool,
            conflict_codes: bool, ctx: int, context: int, verdict: int) -> int:
    """ELDU on EPCM indices (the host's exit handler reloads through this)."""
    if page_locked(st, target) or page_locked(st, va_page):
        if conflict_codes:
            if ctx == CTX_GUEST and page_locked(st, target):
                return VMEXIT | Q_PAGE_ERROR
            return EPC_PAGE_CONFLICT
        return lock_fault(ctx, OP_RCX if page_locked(st, target) else OP_RDX)
    if valid(st, target):
        return fault(PF, OP_RCX)
    if not valid(st, va_page) or st.epcm[va_page].pt != PT_VA:
        return fault(PF, OP_RDX)
    pt = (secinfo >> 8) & 0xFF
    eid = 0
    row = NO_PAGE
    if is_child_type(pt):
        if secs < 0:  # the caller found PAGEINFO.SECS misaligned or outside the EPC
            return fault(GP if secs == SECS_MISALIGNED else PF, OP_SECS)
        if page_locked(st, secs):
            if conflict_codes:
                return EPC_PAGE_CONFLICT
            return lock_fault(ctx, OP_SECS)
        if not is_valid_secs(st, secs):
            return fault(PF, OP_SECS)
        row = np.int64(st.epcm[secs].row)
        eid = np.int64(st.secs[row].s_eid)
    version = np.int64(st.va_slots[st.epcm[va_page].row, slot])
    if verdict < 0:
        # A child's MAC header carries the EID of the SECS named in PAGEINFO, not the PCMD's
        # ENCLAVEID (Intel SDM vol. 3D), so EWB's record is checked against that EID.
        ok = mac == metadata_mac(np.int64(st.g[G_MAC_KEY]), version, eid, linaddr, secinfo, aux,
                                 eid if is_child_type(pt) else pcmd_eid)
    else:
        ok = verdict == 1
    if version == 0 or not ok:
        return MAC_COMPARE_FAIL
    if pt == PT_SECS:
        row = find_evicted_secs_row(st, pcmd_eid)
        if row == NO_PAGE:  # a SECS blob of an enclave that no longer exists
            return MAC_COMPARE_FAIL
    st.va_slots[st.epcm[va_page].row, slot] = 0
    f = EPCM_VALID | (secinfo & EPCM_SECINFO_MASK)
    st.epcm[target].pt = pt
    st.epcm[target].bepoch = 0
    st.epcm[target].tcs = 0
    if is_child_type(pt):
        if blocked:
            f |= EPCM_BLOCKED
            st.epcm[target].bepoch = st.secs[row].s_cbepoch
        st.epcm[target].row = row
        st.epcm[target].lin = (linaddr - np.int64(st.secs[row].s_base)) >> 12
        st.epcm[target].tcs = aux
        st.secs[row].s_chld += 1
    elif pt == PT_SECS:
        st.epcm[target].row = row
        st.epcm[target].lin = 0
        st.secs[row].s_page = target
        st.secs[row].s_ctx = context
    else:
        st.epcm[target].row = aux
        st.epcm[target].lin = 0
    st.epcm[target].bits = f
    return SUCCESS


# --------------------------------------------------------------------------- ENCLS (SGX2)

@njit
def eaug(st: HwState, target: int, secs: int, linaddr: int, pt: int) -> int:
    """EAUG after operand checks; ``pt`` is PT_REG unless a shadow-stack page was asked for."""
    target = txw(st, target)
    secs = tx(st, secs)
    rc = free_target_and_secs(st, target, secs)
    if rc != SUCCESS:
        return rc
    row = np.int64(st.epcm[secs].row)
    if not initialized(st, row):
        return fault(GP, OP_SECS)
    if not in_elrange(st, row, linaddr):
        return fault(GP, OP_RCX)
    _zero_page(st, target)
    set_entry(st, target, EPCM_VALID | EPCM_R | EPCM_W | EPCM_PENDING, pt, row,
              (linaddr - np.int64(st.secs[row].s_base)) >> 12, 0)
    st.secs[row].s_chld += 1
    return SUCCESS


@njit
def emodpr(st: HwState, perms: int, target: int) -> int:
    target = tx(st, target)
    if page_locked(st, target):
        return EPC_PAGE_CONFLICT
    if not valid(st, target):
        return fault(PF, OP_RCX)
    f = np.int64(st.epcm[target].bits)
    if (f & (EPCM_PENDING | EPCM_MODIFIED)) != 0:
        return PAGE_NOT_MODIFIABLE
    if st.epcm[target].pt != PT_REG:
        return fault(PF, OP_RCX)
    row = np.int64(st.epcm[target].row)
    if not initialized(st, row):
        return fault(GP, OP_RCX)
    st.epcm[target].bits = (f & ~EPCM_PERM_MASK) | (f & perms & EPCM_PERM_MASK) | EPCM_PR
    st.epcm[target].bepoch = st.secs[row].s_cbepoch
    return SUCCESS


@njit
def emodt(st: HwState, new_pt: int, target: int, nssa: int) -> int:
    target = tx(st, target)
    if page_locked(st, target):
        return EPC_PAGE_CONFLICT
    if not valid(st, target):
        return fault(PF, OP_RCX)
    old = np.int64(st.epcm[target].pt)
    if not ((old == PT_REG and (new_pt == PT_TCS or new_pt == PT_TRIM))
            or (old == PT_TCS and new_pt == PT_TRIM)):
        return fault(PF, OP_RCX)
    f = np.int64(st.epcm[target].bits)
    if (f & (EPCM_PENDING | EPCM_MODIFIED)) != 0:
        return PAGE_NOT_MODIFIABLE
    row = np.int64(st.epcm[target].row)
    if not initialized(st, row):
        return fault(GP, OP_RCX)
    st.epcm[target].bits = EPCM_VALID | EPCM_MODIFIED | (f & EPCM_BLOCKED)
    st.epcm[target].pt = new_pt
    st.epcm[target].bepoch = st.secs[row].s_cbepoch
    if new_pt == PT_TCS:
        st.epcm[target].tcs = (nssa & 0x7) << 4
    return SUCCESS


# --------------------------------------------------------------------------- OVERSUB

@njit
def erdinfo(st: HwState, page: int, out: np.ndarray) -> int:
    """ERDINFO for an EPC page; out = [STATUS, FLAGS, ENCLAVECONTEXT]."""
    page = tx(st, page)
    if page_locked(st, page):
        return EPC_PAGE_CONFLICT
    if not valid(st, page):
        return PG_INVLD
    f = np.int64(st.epcm[page].bits)
    pt = np.int64(st.epcm[page].pt)
    flags = (f & EPCM_SECINFO_MASK) | (pt << 8)
    if (f & EPCM_BLOCKED) != 0:
        flags |= RDINFO_BLOCKED
    status = 0
    context = 0
    if pt == PT_SECS:
        row = np.int64(st.epcm[page].row)
        if st.secs[row].s_chld != 0:
            status |= RDINFO_CHILDPRESENT
        if st.secs[row].s_vchld != 0:
            status |= RDINFO_VIRTCHILDPRESENT
        context = np.int64(st.secs[row].s_ctx)
    elif is_child_type(pt):
        context = np.int64(st.secs[st.epcm[page].row].s_ctx)
    out[0] = status
    out[1] = flags
    out[2] = context
    return SUCCESS


@njit
def etrackc(st: HwState, page: int, ctx: int) -> int:
    page = tx(st, page)
    ctx = ctx_of(st, ctx)
    if page_locked(st, page):
        return EPC_PAGE_CONFLICT
    if not valid(st, page):
        return PG_INVLD
    pt = np.int64(st.epcm[page].pt)
    if pt != PT_SECS and not is_child_type(pt):
        return TRACK_NOT_REQUIRED
    row = np.int64(st.epcm[page].row)
    if (st.secs[row].s_lock & SECS_LOCK_TRACKING) != 0:
        if ctx == CTX_GUEST:
            return VMEXIT | Q_TRACKING_RESOURCE
        return EPC_PAGE_CONFLICT
    if st.secs[row].s_prev != 0:
        if ctx == CTX_GUEST:
            return VMEXIT | Q_TRACKING_REFERENCE
        return PREV_TRK_INCMPL
    start_tracking_cycle(st, row)
    if ctx == CTX_HOST:
        st.secs[row].s_lock |= np.uint8(SECS_TRACK_BY_HOST)
    else:
        st.secs[row].s_lock &= ~np.uint8(SECS_TRACK_BY_HOST)
    return SUCCESS


@njit
def virtchild(st: HwState, page: int, secs: int, delta: int) -> int:
    """EINCVIRTCHILD (delta +1) / EDECVIRTCHILD (delta -1)."""
    pt = np.int64(st.epcm[page].pt)
    if not valid(st, page) or not (is_child_type(pt) or pt == PT_SECS):
        return fault(PF, OP_RBX)
    if not is_valid_secs(st, secs):
        return fault(PF, OP_RCX)
    row = np.int64(st.epcm[secs].row)
    if st.epcm[page].row != row:
        return fault(GP, OP_RBX)
    if page_locked(st, page) or page_locked(st, secs):
        return EPC_PAGE_CONFLICT
    v = np.int64(st.secs[row].s_vchld) + delta
    if v < 0 or v > 0xFFFFFFFF:
        return INVALID_COUNTER
    st.secs[row].s_vchld = v
    return SUCCESS


@njit
def esetcontext(st: HwState, secs: int, context: int) -> int:
    if not is_valid_secs(st, secs):
        return fault(PF, OP_RCX)
    if page_locked(st, secs):
        return EPC_PAGE_CONFLICT
    st.secs[st.epcm[secs].row].s_ctx = context
    return SUCCESS


@njit
def eupdatesvn(st: HwState) -> int:
    """Take the run-time microcode's SVN as CPUSVN, with keys derived anew, on an empty EPC."""
    for p in range(st.epcm.shape[0]):
        if (st.epcm[p].bits & EPCM_VALID) != 0:
            return EPC_NOT_READY
    if st.g[G_RDSEED_FAILS] > 0:
        st.g[G_RDSEED_FAILS] -= np.uint64(1)
        return INSUFFICIENT_ENTROPY
    if st.g[G_UCODE_SVN] <= st.g[G_CPUSVN]:
        return NO_UPDATE
    st.g[G_CPUSVN] = st.g[G_UCODE_SVN]
    # New cryptographic assets: what was sealed under the old keys no longer verifies.
    st.g[G_MAC_KEY] = _mix(st.g[G_MAC_KEY], st.g[G_CPUSVN])
    return SUCCESS


# --------------------------------------------------------------------------- ENCLU

TCS_BUSY = 0x80


@njit_inline
def tcs_cssa(st: HwState, tcs: int) -> int:
    return np.int64(st.epcm[tcs].tcs) & 0xF


@njit_inline
def tcs_nssa(st: HwState, tcs: int) -> int:
    return (np.int64(st.epcm[tcs].tcs) >> 4) & 0x7


@njit
def _enter_checks(st: HwState, lp: int, tcs: int, tcs_linaddr: int) -> int:
    if st.lp[lp].lp_row != NO_PAGE:
        return fault(GP, OP_RBX)
    if not valid(st, tcs) or st.epcm[tcs].pt != PT_TCS or (st.epcm[tcs].bits & (
            EPCM_BLOCKED | EPCM_PENDING | EPCM_MODIFIED)) != 0:
        return fault(PF, OP_RBX)
    if page_linaddr(st, tcs) != tcs_linaddr:
        return fault(PF, OP_RBX)
    row = np.int64(st.epcm[tcs].row)
    if not initialized(st, row):
        return fault(GP, OP_RBX)
    if (st.epcm[tcs].tcs & TCS_BUSY) != 0:
        return fault(GP, OP_RBX)
    return SUCCESS


@njit
def eenter(st: HwState, lp: int, tcs: int, tcs_linaddr: int) -> int:
    tcs = tx(st, tcs)
    rc = _enter_checks(st, lp, tcs, tcs_linaddr)
    if rc != SUCCESS:
        return rc
    if tcs_cssa(st, tcs) >= tcs_nssa(st, tcs):
        return fault(GP, OP_RBX)
    st.epcm[tcs].tcs |= np.uint8(TCS_BUSY)
    enter_epoch(st, lp, np.int64(st.epcm[tcs].row), tcs)
    return SUCCESS


@njit
def eresume(st: HwState, lp: int, tcs: int, tcs_linaddr: int) -> int:
    tcs = tx(st, tcs)
    rc = _enter_checks(st, lp, tcs, tcs_linaddr)
    if rc != SUCCESS:
        return rc
    if tcs_cssa(st, tcs) == 0:
        return fault(GP, OP_RBX)
    st.epcm[tcs].tcs = np.uint8(TCS_BUSY | (np.int64(st.epcm[tcs].tcs) & 0x70)
                                | (tcs_cssa(st, tcs) - 1))
    enter_epoch(st, lp, np.int64(st.epcm[tcs].row), tcs)
    return SUCCESS


@njit
def eexit(st: HwState, lp: int) -> int:
    if st.lp[lp].lp_row == NO_PAGE:
        return fault(UD, OP_RBX)
    tcs = np.int64(st.lp[lp].lp_tcs)
    st.epcm[tcs].tcs &= ~np.uint8(TCS_BUSY)
    leave_epoch(st, lp)
    return SUCCESS


@njit
def aex(st: HwState, lp: int) -> int:
    """Asynchronous exit: state saved into SSA[CSSA], CSSA += 1, TLB flushed."""
    if st.lp[lp].lp_row == NO_PAGE:
        return fault(GP, OP_RBX)
    tcs = np.int64(st.lp[lp].lp_tcs)
    cssa = tcs_cssa(st, tcs) + 1
    st.epcm[tcs].tcs = np.uint8((np.int64(st.epcm[tcs].tcs) & 0x70) | (cssa & 0xF))
    leave_epoch(st, lp)
    return SUCCESS


@njit
def _own_page(st: HwState, lp: int, page: int, linaddr: int) -> bool:
    return (valid(st, page) and is_child_type(np.int64(st.epcm[page].pt))
            and st.epcm[page].row == st.lp[lp].lp_row and page_linaddr(st, page) == linaddr)


@njit
def _secinfo_page_ok(st: HwState, lp: int, page: int, linaddr: int) -> bool:
    """The SECINFO operand of EACCEPT/EMODPE: a readable, settled REG page of this enclave."""
    if page == NO_PAGE or not _own_page(st, lp, page, linaddr & ~0xFFF):
        return False
    f = st.epcm[page].bits
    return (st.epcm[page].pt == PT_REG and (f & EPCM_R) != 0
            and (f & (EPCM_PENDING | EPCM_MODIFIED | EPCM_BLOCKED)) == 0)


@njit
def eaccept(st: HwState, lp: int, secinfo_page: int, secinfo_linaddr: int, secinfo: int,
            target: int, target_linaddr: int) -> int:
    """EACCEPT: the enclave consents to an EAUG, EMODPR or EMODT of ``target``."""
    secinfo_page = tx(st, secinfo_page)
    target = tx(st, target)
    if st.lp[lp].lp_row == NO_PAGE:
        return fault(GP, OP_RBX)
    if not _secinfo_page_ok(st, lp, secinfo_page, secinfo_linaddr):
        return fault(PF, OP_RBX)
    req_pt = (secinfo >> 8) & 0xFF
    req = secinfo & EPCM_SECINFO_MASK
    if req_pt == PT_REG:
        legal = ((req & (EPCM_PR | EPCM_PENDING)) != 0) and (req & EPCM_MODIFIED) == 0
    elif req_pt == PT_TCS or req_pt == PT_TRIM:
        legal = (req & (EPCM_PR | EPCM_PENDING)) == 0 and (req & EPCM_MODIFIED) != 0
    else:
        legal = False
    if not legal:
        return fault(GP, OP_RBX)
    if target == NO_PAGE or not valid(st, target) or (st.epcm[target].bits & EPCM_BLOCKED) != 0:
        return fault(PF, OP_RCX)
    tpt = np.int64(st.epcm[target].pt)
    if (tpt != PT_REG and tpt != PT_TCS and tpt != PT_TRIM) or \
            st.epcm[target].row != st.lp[lp].lp_row:
        return fault(PF, OP_RCX)
    if page_linaddr(st, target) != target_linaddr:
        return PAGE_ATTRIBUTES_MISMATCH
    f = np.int64(st.epcm[target].bits)
    cmp_mask = EPCM_PENDING | EPCM_MODIFIED | EPCM_PERM_MASK
    if (f & cmp_mask) != (req & cmp_mask) or tpt != req_pt:
        return PAGE_ATTRIBUTES_MISMATCH
    if (f & (EPCM_MODIFIED | EPCM_PR)) != 0 and not tracking_correct(st, target):
        return NOT_TRACKED
    if tpt == PT_TCS and tcs_nssa(st, target) == 0:
        return fault(GP, OP_RCX)
    st.epcm[target].bits = f & ~(EPCM_PENDING | EPCM_MODIFIED | EPCM_PR)
    return SUCCESS


@njit
def emodpe(st: HwState, lp: int, secinfo_page: int, secinfo_linaddr: int, secinfo: int,
           target: int, target_linaddr: int) -> int:
    """EMODPE: the enclave extends R/W/X of one of its REG pages."""
    secinfo_page = tx(st, secinfo_page)
    target = tx(st, target)
    if st.lp[lp].lp_row == NO_PAGE:
        return fault(GP, OP_RBX)
    if not _secinfo_page_ok(st, lp, secinfo_page, secinfo_linaddr):
        return fault(PF, OP_RBX)
    if target == NO_PAGE or not _own_page(st, lp, target, target_linaddr):
        return fault(PF, OP_RCX)
    f = np.int64(st.epcm[target].bits)
    if (f & (EPCM_PENDING | EPCM_MODIFIED | EPCM_BLOCKED)) != 0 or st.epcm[target].pt != PT_REG:
        return fault(PF, OP_RCX)
    merged = f | (secinfo & EPCM_PERM_MASK)
    if (merged & EPCM_W) != 0 and (merged & EPCM_R) == 0:
        return fault(GP, OP_RBX)
    st.epcm[target].bits = merged
    return SUCCESS


@njit
def eacceptcopy(st: HwState, lp: int, secinfo: int, dest: int, dest_linaddr: int,
                src: int, src_linaddr: int) -> int:
    """EACCEPTCOPY: fill a pending page from another page of the enclave and accept it."""
    dest = tx(st, dest)
    src = tx(st, src)
    if st.lp[lp].lp_row == NO_PAGE:
        return fault(GP, OP_RBX)
    req_pt = (secinfo >> 8) & 0xFF
    perms = secinfo & EPCM_PERM_MASK
    if req_pt != PT_REG or ((perms & EPCM_W) != 0 and (perms & EPCM_R) == 0):
        return fault(GP, OP_RBX)
    if src == NO_PAGE or not _own_page(st, lp, src, src_linaddr):
        return fault(PF, OP_RDX)
    sf = st.epcm[src].bits
    if st.epcm[src].pt != PT_REG or (sf & EPCM_R) == 0 or (sf & (
            EPCM_PENDING | EPCM_MODIFIED | EPCM_BLOCKED)) != 0:
        return fault(PF, OP_RDX)
    if dest == NO_PAGE:
        return fault(PF, OP_RCX)
    df = np.int64(st.epcm[dest].bits)
    want = EPCM_VALID | EPCM_PENDING | EPCM_R | EPCM_W
    # VALID and the owning enclave are part of the attribute check (Intel SDM vol. 3D).
    if (not valid(st, dest) or st.epcm[dest].pt != PT_REG or st.epcm[dest].row != st.lp[lp].lp_row
            or (df & ~EPCM_BLOCKED) != want or page_linaddr(st, dest) != dest_linaddr):
        return PAGE_ATTRIBUTES_MISMATCH
    if st.g[G_CONTENT] != 0:
        st.data[dest, :] = st.data[src, :]
    st.epcm[dest].bits = EPCM_VALID | perms
    return SUCCESS


@njit_inline
def access(st: HwState, lp: int, page: int, linaddr: int, write: bool, execute: bool) -> int:
    """The EPCM checks of an enclave-mode access at TLB fill (Intel SDM vol. 3D).

    Returns 0, or the #PF error code (with the SGX bit) the access raises.
    """
    page = tx(st, page)
    err = 0x4 | 0x1 | 0x8000  # user, present, SGX
    if write:
        err |= 0x2
    if execute:
        err |= 0x10
    if page == NO_PAGE or not valid(st, page):
        return err
    f = np.int64(st.epcm[page].bits)
    if (f & (EPCM_BLOCKED | EPCM_PENDING | EPCM_MODIFIED)) != 0 or st.epcm[page].pt != PT_REG:
        return err
    if st.epcm[page].row != st.lp[lp].lp_row or page_linaddr(st, page) != (linaddr & ~0xFFF):
        return err
    if (f & EPCM_R) == 0 and not execute:
        return err
    if write and (f & EPCM_W) == 0:
        return err
    if execute and (f & EPCM_X) == 0:
        return err
    return 0


WALKED = -1   # enclave_access: the page was walked (the PTE's accessed bit is set)


@njit_inline
def enclave_access(st: HwState, lp: int, page: int, linaddr: int, write: bool,
                   execute: bool) -> int:
    """An enclave-mode access through ``lp``'s TLB (:mod:`epcsim.hw.tlb`).

    Returns 0 when a cached translation served it (no EPCM check, no accessed bit: an
    entry made before EBLOCK still serves), ``WALKED`` when the page walk ran
    :func:`access`'s checks, passed them and filled the TLB (the walk set the PTE's accessed
    bit), else :func:`access`'s #PF error code (nothing is cached).
    """
    s, tag = tlb_tag(st, lp, linaddr)
    way = TLB_MISS
    fills = 0
    if s >= 0 and not execute:
        fills = tlb_fills(st, lp, s)
        way = tlb_lookup(st, lp, s, tag, write, page, fills)
        if way == TLB_HIT:
            return 0
    err = access(st, lp, page, linaddr, write, execute)
    if err != 0:
        return err
    if s >= 0 and not execute:
        tlb_fill(st, lp, s, tag, write, way, page, fills)
    return WALKED


@njit_inline
def enclave_walk(st: HwState, lp: int, page: int, linaddr: int, write: bool,
                 execute: bool) -> int:
    """:func:`enclave_access` where ``lp``'s TLB cannot hold the page: it was flushed (AEX,
    EEXIT) since the page last missed in it. The same walk and fill without the lookup,
    which would find nothing (and compiles into a caller as a loop)."""
    s, tag = tlb_tag(st, lp, linaddr)
    err = access(st, lp, page, linaddr, write, execute)
    if err != 0:
        return err
    if s >= 0 and not execute:
        tlb_fill(st, lp, s, tag, write, TLB_MISS, page, tlb_fills(st, lp, s))
    return WALKED



# --------------------------------------------------------------------------- content mode
# The content-mode ELDU runs with AES-GCM between its two halves, in Python.

@njit
def eldu_keys(st: HwState, va_page: int, slot: int, secs: int, pt: int) -> tuple[int, int]:
    """What opening a sealed page needs from the EPC: the version in the VA slot (0 when the
    operand is no VA page) and the EID of a child's SECS (0 when it is none)."""
    version = 0
    va_page = tx(st, va_page)
    if va_page >= 0 and valid(st, va_page) and st.epcm[va_page].pt == PT_VA:
        version = np.int64(st.va_slots[st.epcm[va_page].row, slot])
    eid = 0
    if is_child_type(pt) and secs >= 0:
        secs = tx(st, secs)
        if secs >= 0 and is_valid_secs(st, secs):
            eid = np.int64(st.secs[st.epcm[secs].row].s_eid)
    return version, eid


@njit
def eldu_content(st: HwState, target: int, va_page: int, slot: int, secs: int, linaddr: int,
                 secinfo: int, pcmd_eid: int, mac: int, aux: int, blocked: bool,
                 conflict_codes: bool, ctx: int, context: int, verdict: int,
                 plaintext: np.ndarray) -> int:
    """:func:`eldu`; on success with a verified page, its plaintext (4096 bytes) goes in."""
    code = eldu(st, target, va_page, slot, secs, linaddr, secinfo, pcmd_eid, mac, aux, blocked,
                conflict_codes, ctx, context, verdict)
    if code == SUCCESS and verdict == 1:
        target = tx(st, target)
        words = plaintext.view(np.uint64)
        if (secinfo >> 8) & 0xFF == PT_VA:
            # The page holds 512 eight-byte slots; the model keeps each version's 32 bits.
            st.va_slots[st.epcm[target].row] = words.astype(np.uint32)
        else:
            st.data[target].view(np.uint64)[:] = words
    return code
