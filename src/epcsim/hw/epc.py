"""EPC sections and the EPCM, as a few wide tables.

The EPCM is a table of records indexed by EPC page number (the position of a page across
all sections in enumeration order). Physical address <-> page number is arithmetic over
at most eight sections, as ``sgx_epc_section`` does in the kernel.

Per EPC page the model keeps one packed 16-byte record (``EPCM_RECORD``):

============  =====  ====================================================================
``bits``      u8     R, W, X, PENDING, MODIFIED, PR (the SECINFO bit positions), VALID,
                     BLOCKED (called ``bits``: a numpy record's ``flags`` is not a field)
``pt``        u8     page type
``tcs``       u8     TCS busy (bit 7), NSSA (bits 6:4), CSSA (bits 3:0)
``row``       u32    the enclave's row in the SECS table (SECS/REG/TCS/TRIM pages), or the
                     VA page's row in the version table (VA pages)
``lin``       u32    ENCLAVEADDRESS as a page offset from the enclave's BASEADDR
``bepoch``    u32    epoch recorded by EBLOCK/EMODPR/EMODT (for "tracking correct")
``tlbw``      u8     not architectural: the TLB way the page's last fill went to, in
                     whichever LP filled it (:mod:`epcsim.hw.tlb`: a lookup tries it first)
============  =====  ====================================================================

ENCLAVESECS is derived: a child's SECS is the page recorded in its enclave's row. Children
only exist while their SECS is resident (EWB of a SECS with children fails), so this is
the same relation the hardware keeps, without a second 8-byte field per page.

Per-enclave state (the hidden SECS fields: EID, CHLDCNT, VIRTCHILDCNT, ENCLAVECONTEXT,
epoch counters, INIT) is a record per row of the SECS table, per-LP state a record per
logical processor (:mod:`epcsim.hw.tracking`) and its TLB (:mod:`epcsim.hw.tlb`). All of it
is gathered in one :class:`HwState` of fifteen tables, so that a compiled leaf takes one
argument and a call between compiled functions passes a few arrays, not forty
(docs/design.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from epcsim.arch import PAGE_SHIFT, PAGE_SIZE, SGX_MAX_EPC_SECTIONS, SGX_VA_SLOT_COUNT
from epcsim.jit import field, state_class, table

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
# The largest version: a VA slot keeps 32 bits of the processor's 64 (4 bytes of state per
# evicted page instead of 8); past it versions start again at 1 (docs/fidelity.md).
VERSION_MAX = (1 << 32) - 1
G_CONTENT = 2         # 1 when every EPC page holds bytes
G_SECS_FREE_TOP = 3   # entries in the free-row stack of the SECS table
G_VA_FREE_TOP = 4     # entries in the free-row stack of the version table
G_MAC_KEY = 5         # key of the metadata-mode MAC (content mode uses AES-GCM)
G_MAX_ENCL_LOG2 = 6   # log2 of the largest enclave in 64-bit mode (CPUID.12H:EDX[15:8])
G_NLOCKED = 7         # number of injected lock conflicts from G_LOCKED on
G_OVERSUB = 8         # 1 when the part implements the OVERSUB leaves (CPUID.12H:EAX[6])
G_SGX2 = 9            # 1 when the part implements SGX2 (EAUG, EMODPR, EMODT, EACCEPT...)
G_RSV_TOP = 10        # host pages in the exit handler's reserve (``rsv``)
G_XLOG_N = 11         # entries in ``xlog`` since the host last read it
G_NULL_PAGE = 12      # 1 + a host page that is never valid (unpopulated guest pages), or 0
G_CPUSVN = 13         # the SVN the SGX keys derive from (EUPDATESVN raises it)
G_UCODE_SVN = 14      # the SVN of the microcode loaded at run time (> G_CPUSVN: update pending)
G_RDSEED_FAILS = 15   # EUPDATESVNs still to find the entropy source exhausted (injected)
G_LOCKED = 16         # MAX_LOCKED EPC pages "in use by another leaf" (injected conflicts)
MAX_LOCKED = 8
G_TLB_WAYS = G_LOCKED + MAX_LOCKED   # ways of each set of an LP's TLB (0: no TLB modelled)
G_TLB_SHIFT = G_TLB_WAYS + 1         # log2 of the sets: a page offset's bits above the set
G_LEN = G_TLB_SHIFT + 1

# The executing context's VMCS and the EPC its CPUID reports (``HwState.vmcs``): the host's
# has V_GUEST 0 and the host's sections; each guest view has its own.
V_GUEST = 0           # 1 while a guest runs (leaves translate their EPC operands)
V_EPT_BASE = 1        # the guest's first entry in ``ept``
V_NPAGES = 2          # guest EPC pages (entries of ``ept`` the guest owns)
V_VM = 3              # the VM's row in ``vcnt``
V_NSEC = 4            # EPC sections
V_SEC_FIRST = 8       # SGX_MAX_EPC_SECTIONS first page numbers, one per section
V_SEC_NPAGES = V_SEC_FIRST + SGX_MAX_EPC_SECTIONS     # pages of each section
V_SEC_NODE = V_SEC_NPAGES + SGX_MAX_EPC_SECTIONS      # NUMA node of each section
V_LEN = V_SEC_NODE + SGX_MAX_EPC_SECTIONS

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

# SECS-table lock bits (injected concurrency, Intel SDM vol. 3D).
SECS_LOCK_PAGE = 0x1        # the SECS page itself is in use by another leaf
SECS_LOCK_TRACKING = 0x2    # another ETRACK/ETRACKC owns the tracking resource
SECS_LOCK_EPOCH = 0x4       # ETRACK is updating the entry epoch (EBLOCK: ENTRYEPOCH_LOCKED)
SECS_LOCK_MEASURE = 0x8     # EADD/EEXTEND/EINIT of another thread owns the measurement

NO_PAGE = -1

# One EPCM entry per EPC page, packed (16 bytes).
EPCM_RECORD = np.dtype([("bits", np.uint8), ("pt", np.uint8), ("tcs", np.uint8),
                        ("row", np.uint32), ("lin", np.uint32), ("bepoch", np.uint32),
                        ("tlbw", np.uint8)])

# One row of the SECS table per enclave ever created and not yet removed: the SECS fields
# the leaves read and the hidden ones (EID, CHLDCNT, VIRTCHILDCNT, ENCLAVECONTEXT, epochs).
# ``s_free`` is not a field of the row: entry k of that column is entry k of the stack of
# free rows (the stack is never longer than the table).
SECS_RECORD = np.dtype([
    ("s_eid", np.uint64),     # EID
    ("s_page", np.int64),     # EPC page of the SECS, NO_PAGE while evicted
    ("s_base", np.uint64),    # BASEADDR
    ("s_size", np.uint64),    # SIZE
    ("s_attr", np.uint64),    # ATTRIBUTES.FLAGS
    ("s_xfrm", np.uint64),
    ("s_ctx", np.uint64),     # ENCLAVECONTEXT
    ("s_ssa", np.uint32),     # SSAFRAMESIZE
    ("s_misc", np.uint32),    # MISCSELECT
    ("s_chld", np.uint32),    # CHLDCNT (resident children)
    ("s_vchld", np.uint32),   # VIRTCHILDCNT
    ("s_cbepoch", np.uint32),  # current epoch
    ("s_refcnt", np.uint32),  # LPs inside that entered in the current epoch
    ("s_prev", np.uint32),    # LPs inside that entered in the previous epoch
    ("s_lock", np.uint8),     # injected lock bits
    ("s_free", np.int64),     # the free-row stack's storage
    # Not architectural: the last LP that entered, so that an IPI to the CPUs running an
    # enclave with one thread inside finds it without looking at every LP.
    ("s_lp", np.int32),
])

# One record per logical processor (aligned: the hit path reads it on every access).
LP_RECORD = np.dtype([("lp_row", np.int64),     # enclave row it is inside, NO_PAGE outside
                      ("lp_tcs", np.int64),     # EPC page of the TCS in use
                      ("lp_base", np.int64),    # BASEADDR of that enclave (its TLB's tags
                                                # are pages of ELRANGE)
                      ("lp_epoch", np.uint32),  # entry epoch
                      ("lp_tlbg", np.uint16),   # TLB flush generation (epcsim.hw.tlb)
                      # 1 once another LP was inside its enclave since it entered: its
                      # TLB's fills no longer alone set the pages' ``tlbw`` (epcsim.hw.tlb)
                      ("lp_shared", np.uint16)],
                     align=True)


@state_class
class HwState(NamedTuple):
    """Every table of the processor model. Compiled leaves take it as one argument.

    The properties give the Python side a view of one field or column (``st.flags``,
    ``st.s_chld``, ``st.lp_row``...); compiled code reads the records themselves
    (``st.epcm[page].bits``, ``st.secs[row].s_chld``).
    """

    epcm: np.ndarray          # EPCM_RECORD per EPC page
    data: np.ndarray          # u8 [npages, 4096] in content mode, else [1, 4096]
    secs: np.ndarray          # SECS_RECORD per row
    va_slots: np.ndarray      # u32 [rows, 512]: the version table, a row per VA page
    va_free: np.ndarray       # i64 stack of free rows of the version table
    lp: np.ndarray            # LP_RECORD per logical processor
    g: np.ndarray             # u64 [G_LEN] scalars and injected conflicts
    vmcs: np.ndarray          # i64 [V_LEN] the executing context (each guest view has its own)
    # virtualization (zero-length until a virtual EPC exists; see epcsim.hw.vmx)
    ept: np.ndarray           # i64 guest EPC page (+ V_EPT_BASE) -> host page, or EPT_*
    xrec: np.ndarray          # i64 [len(ept), X_LEN] records of host-evicted guest pages
    rsv: np.ndarray           # i64 free host pages the exit handler may use at once
    xlog: np.ndarray          # i64 EPT entries the exit handler filled since the host looked
    vcnt: np.ndarray          # i64 [VMs, VC_LEN] exits per VM
    # the TLB of each logical processor (zero columns: none modelled; see epcsim.hw.tlb)
    tlb: np.ndarray           # u32 [LPs, entries]: tags, set s in columns s*ways..s*ways+ways-1
    tlb_way: np.ndarray       # u16 [LPs, sets]: generation and fill count of each set

    # sections, as the executing context's CPUID reports them
    @property
    def sec_first(self) -> np.ndarray:
        return self.vmcs[V_SEC_FIRST:V_SEC_FIRST + int(self.vmcs[V_NSEC])]

    @property
    def sec_npages(self) -> np.ndarray:
        return self.vmcs[V_SEC_NPAGES:V_SEC_NPAGES + int(self.vmcs[V_NSEC])]

    @property
    def sec_node(self) -> np.ndarray:
        return self.vmcs[V_SEC_NODE:V_SEC_NODE + int(self.vmcs[V_NSEC])]

    @property
    def locked(self) -> np.ndarray:
        return self.g[G_LOCKED:G_LOCKED + MAX_LOCKED]


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


def _field_view(tbl: str, name: str) -> property:
    def get(self: HwState) -> np.ndarray:
        return field(getattr(self, tbl), name)
    get.__doc__ = f"Field ``{name}`` of every record of ``{tbl}`` (a view)."
    return property(get)


# The Python side's names for the fields: ``st.flags[page]``, ``st.s_chld[row]``...
for _name, _field in (("flags", "bits"), ("pt", "pt"), ("tcs", "tcs"), ("row", "row"),
                      ("lin", "lin"), ("bepoch", "bepoch")):
    setattr(HwState, _name, _field_view("epcm", _field))
for _field in SECS_RECORD.names:
    setattr(HwState, _field, _field_view("secs", _field))
for _field in LP_RECORD.names:
    setattr(HwState, _field, _field_view("lp", _field))


def _grow_rows(arr: np.ndarray, rows: int) -> np.ndarray:
    shape = (rows,) + arr.shape[1:]
    out = np.zeros(shape, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return table(out)


def section_words(sections: list[EpcSection]) -> np.ndarray:
    """The sections' part of a VMCS: their count, first pages, sizes and nodes."""
    v = np.zeros(V_LEN, dtype=np.int64)
    v[V_NSEC] = len(sections)
    acc = 0
    for i, s in enumerate(sections):
        v[V_SEC_FIRST + i] = acc
        v[V_SEC_NPAGES + i] = s.npages
        v[V_SEC_NODE + i] = s.node
        acc += s.npages
    return v


MAX_TLB_ENTRIES = 1 << 16
MAX_TLB_WAYS = 127   # a set's fill count runs up to twice its ways in a byte


def check_tlb(entries: int, ways: int) -> None:
    """Reject a TLB the model cannot hold: ``entries`` must be ``ways`` times a power of two
    of at least 4 sets (0 entries: no TLB)."""
    if entries == 0:
        return
    if not 0 < entries <= MAX_TLB_ENTRIES:
        raise ValueError(f"a TLB of {entries} entries: at most {MAX_TLB_ENTRIES}")
    if not 1 <= ways <= MAX_TLB_WAYS:
        raise ValueError(f"a TLB of {ways} ways: between 1 and {MAX_TLB_WAYS}")
    sets = entries // ways
    # A set is picked by a page's low bits, and a tag holds the rest of a 32-bit page offset
    # with a write bit: four sets at least keep it in 32 bits.
    if entries % ways or sets < 4 or sets & (sets - 1):
        raise ValueError(f"a TLB of {entries} entries and {ways} ways: the entries must be the "
                         f"ways times a power of two (4 sets at least), e.g. {ways * 128}")


def make_state(sections: list[EpcSection], *, n_lps: int, content: bool, mac_key: int,
               max_enclave_log2: int, oversub: bool, sgx2: bool,
               secs_rows: int = 16, va_rows: int = 16, tlb_entries: int = 0,
               tlb_ways: int = 1) -> HwState:
    """Allocate the tables of a fresh processor: every EPC page invalid, every TLB empty.

    Each LP's TLB costs ``tlb_entries`` x 4 bytes of tags and 2 bytes per set.
    """
    validate_sections(sections)
    check_tlb(tlb_entries, tlb_ways)
    sets = tlb_entries // tlb_ways if tlb_entries else 0
    npages = sum(s.npages for s in sections)
    g = np.zeros(G_LEN, dtype=np.uint64)
    g[G_NEXT_EID] = 1
    g[G_NEXT_VERSION] = 1
    g[G_CONTENT] = 1 if content else 0
    g[G_MAC_KEY] = mac_key & 0xFFFFFFFFFFFFFFFF
    g[G_MAX_ENCL_LOG2] = max_enclave_log2
    g[G_OVERSUB] = 1 if oversub else 0
    g[G_SGX2] = 1 if sgx2 else 0
    g[G_TLB_WAYS] = tlb_ways if tlb_entries else 0
    g[G_TLB_SHIFT] = max(sets, 1).bit_length() - 1
    lp = np.zeros(n_lps, dtype=LP_RECORD)
    lp["lp_row"] = NO_PAGE
    lp["lp_tcs"] = NO_PAGE
    st = HwState(
        epcm=table(np.zeros(npages, dtype=EPCM_RECORD)),
        data=table(np.zeros((npages if content else 1, PAGE_SIZE), dtype=np.uint8)),
        secs=table(np.zeros(0, dtype=SECS_RECORD)),
        va_slots=table(np.zeros((0, SGX_VA_SLOT_COUNT), dtype=np.uint32)),
        va_free=table(np.zeros(0, dtype=np.int64)),
        lp=table(lp), g=table(g), vmcs=table(section_words(sections)),
        ept=table(np.zeros(0, dtype=np.int64)),
        xrec=table(np.zeros((0, X_LEN), dtype=np.int64)), rsv=table(np.zeros(0, np.int64)),
        xlog=table(np.zeros(0, dtype=np.int64)), vcnt=table(np.zeros((0, VC_LEN), np.int64)),
        tlb=table(np.zeros((n_lps, tlb_entries), np.uint32)),
        tlb_way=table(np.zeros((n_lps, sets), np.uint16)),
    )
    st = grow_secs_table(st, secs_rows)
    return grow_va_table(st, va_rows)


def grow_secs_table(st: HwState, min_free: int = 1) -> HwState:
    """Return a state whose SECS table has at least ``min_free`` free rows."""
    top = int(st.g[G_SECS_FREE_TOP])
    if top >= min_free:
        return st
    old = st.secs.shape[0]
    new = max(16, old + old // 4, old + min_free - top)
    secs = _grow_rows(st.secs, new)
    secs["s_page"][old:] = NO_PAGE
    added = np.arange(new - 1, old - 1, -1, dtype=np.int64)  # lowest row on top of the stack
    secs["s_free"][top: top + added.size] = added
    st.g[G_SECS_FREE_TOP] = top + added.size
    return st._replace(secs=secs)


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
    return st._replace(va_slots=_grow_rows(st.va_slots, new), va_free=table(free))


def epcm_bytes_per_page(st: HwState) -> float:
    """Bytes of EPCM and section state per EPC page (metadata mode)."""
    n = st.epcm.shape[0]
    return (st.epcm.nbytes + st.vmcs.nbytes) / n
