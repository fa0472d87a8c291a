"""Enclaves, enclave pages, VA pages, the backing store, the fault path: the driver owner.

The kernel's ``encl.c`` and the enclave half of ``main.c``'s reclaimer. State is arrays:

* **enclaves** (``e_*``): flags (CREATED, INITIALIZED, DEBUG, DEAD), reference count, ELRANGE,
  the SECS's EPC page (or where its blob is while evicted), ``secs_child_cnt``, ``page_cnt``
  (pages that may need a VA slot), the list of VA pages;
* **enclave pages** (``ep_*``), one dense range per enclave indexed by page offset in ELRANGE
  (the kernel's ``page_array``): EPC page or -1, VA page and slot while evicted, type, flags
  (exists, BEING_RECLAIMED, the PTE's present and accessed bits), the maximum protection, and
  the PCMD fields of the evicted copy;
* **VA pages** (``va_*``): EPC page, 512-bit slot map, links of the enclave's VA list.

The owner operations (get/put/reclaim/block/write) are compiled functions over these arrays
and the processor's; the manager reaches them only through the owner table.
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType
from epcsim.dlist import dl_del, dl_push_head, dl_push_tail
from epcsim.hw import encls as L
from epcsim.hw.cpu import ArchFault, Processor
from epcsim.hw.crypto import SEALED_SIZE
from epcsim.hw.epc import EPCM_SECINFO_MASK, G_CONTENT, G_SGX2
from epcsim.hw.tlb import tlb_modelled
from epcsim.hw.tracking import lps_inside
from epcsim.jit import (
    field,
    njit,
    njit_closure,
    njit_inline,
    njit_linked,
    prefetch,
    state_class,
    table,
    trailing_zeros,
)
from epcsim.kernel.backing import Backing
from epcsim.kernel.cgroup import mem_cgroup_charge, mem_cgroup_may_charge
from epcsim.kernel.main import (
    C_ELDU,
    C_WRITTEN,
    EBUSY,
    ENOMEM,
    P_CG,
    P_NODE,
    EpcManager,
    count_etrack,
    count_ewb,
    count_ipi,
    count_tlb_shootdown,
    sgx_encl_free_epc_page,
    sgx_mark_page_reclaimable,
)
from epcsim.kernel.owner import WRITE_FREED, Owner, OwnerOps

# enum sgx_encl_flags (and the model's DEAD: the last reference is gone).
SGX_ENCL_IOCTL = 1 << 0
SGX_ENCL_DEBUG = 1 << 1
SGX_ENCL_CREATED = 1 << 2
SGX_ENCL_INITIALIZED = 1 << 3
SGX_ENCL_DEAD = 1 << 8
# The model's stand-ins for ``encl->lock``, which the fault path and the ioctls hold across
# an allocation and its ELDU/EAUG, and which the reclaimer's write takes: a reclaimer that
# runs meanwhile (ksgxd, docs/design.md "When ksgxd runs") must not write the SECS after the
# enclave's last child, as it would only get the lock once the fault has added a child.
SGX_ENCL_LOCKED = 1 << 9       # a driver rule holds the enclave's lock
SGX_ENCL_SECS_LATE = 1 << 10   # the last child went out meanwhile: the SECS may follow

# Enclave-page flags.
EP_EXISTS = 1 << 0             # an entry in page_array
EP_BEING_RECLAIMED = 1 << 1    # SGX_ENCL_PAGE_BEING_RECLAIMED
EP_PRESENT = 1 << 2            # the PTE maps the page (zapped by the reclaimer)
EP_YOUNG = 1 << 3              # the PTE's accessed bit
EP_EVICTED = 1 << 4            # the page's copy is in the backing store

SGX_VA_SLOT_COUNT = 512
MAX_ENCLAVES = 0xFFFF  # ep_encl is u16
NONE = -1

# Packed fields of an enclave page's record (EP_RECORD). The page type takes the low bits of
# its byte and vm_max_prot_bits the rest, as the kernel's sgx_encl_page keeps both in one
# word's bitfields. The VA slot of an evicted page is one i32, the VA page's id above the
# slot's index (SGX_VA_SLOT_COUNT slots a VA page): NONE reads as VA NONE.
TYPE_BITS = 4
TYPE_MASK = (1 << TYPE_BITS) - 1
VA_SLOT_BITS = 9
assert 1 << VA_SLOT_BITS == SGX_VA_SLOT_COUNT
# VA pages the i32 can name: 2^22, whose slots hold 8 TiB of evicted pages.
MAX_VA_PAGES = 1 << (31 - VA_SLOT_BITS)
# Entries of an enclave's range come in whole groups of this many (one PCMD backing page
# each, :func:`_range_length`): the enclave a page belongs to is kept once per group.
PCMDS_PER_PAGE = 32
GROUP_SHIFT = 5
assert 1 << GROUP_SHIFT == PCMDS_PER_PAGE


class PackedField:
    """One field of the records packed into bits of a wider one, or kept once per ``group``
    records, as the Python side reads and writes it: ``view[i]``, ``view[a:b]`` (arrays),
    ``view[i] = v``, ``view[a:b] = v``. ``bits`` -1 takes every bit from ``shift`` up,
    with the sign (the VA id over the slot)."""

    def __init__(self, raw: np.ndarray, shift: int, bits: int, group: int = 1) -> None:
        self.raw, self.shift, self.bits, self.group = raw, shift, bits, group
        self.dtype = raw.dtype

    def __len__(self) -> int:
        return self.raw.shape[0] * self.group

    def _rows(self, idx: Any) -> Any:
        if self.group == 1:
            return idx
        if isinstance(idx, slice):
            return np.arange(*idx.indices(len(self))) // self.group
        return _positions(idx) // self.group

    def __getitem__(self, idx: Any) -> Any:
        # In the field's own type: a check over a whole ELRANGE (``may_map``) then takes a
        # byte a page for its temporaries, as it did when the field had a byte of its own.
        if self.group > 1:
            return self._grouped(idx)
        v = self.raw[idx]
        if self.bits < 0:
            return v >> self.shift
        return (v >> self.shift) & ((1 << self.bits) - 1)

    def _grouped(self, idx: Any) -> Any:
        g = self.group
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            if step != 1 or stop <= start:
                return self.raw[np.arange(start, stop, step) // g]
            lo = start // g
            return np.repeat(self.raw[lo:(stop - 1) // g + 1], g)[start - lo * g:stop - lo * g]
        if isinstance(idx, (int, np.integer)):
            return self.raw[idx // g]
        return self.raw[_positions(idx) // g]

    def __setitem__(self, idx: Any, value: Any) -> None:
        rows = self._rows(idx)
        if self.shift == 0 and self.bits >= 8 * self.raw.itemsize:
            self.raw[rows] = value
            return
        mask = (1 << self.bits) - 1 if self.bits >= 0 else -1
        old = np.asarray(self.raw[rows]).astype(np.int64)
        keep = ~(mask << self.shift) if self.bits >= 0 else (1 << self.shift) - 1
        new = (old & keep) | ((np.asarray(value, dtype=np.int64) & mask) << self.shift)
        self.raw[rows] = new.astype(self.raw.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self[:])
        return out if dtype is None else out.astype(dtype)


def _positions(idx: Any) -> Any:
    """An index of records as their positions (a boolean mask selects where it is true)."""
    arr = np.asarray(idx)
    return np.nonzero(arr)[0] if arr.dtype == np.bool_ else arr


@njit_inline
def ep_encl_of(ds: Any, ep: int) -> int:
    """The enclave whose range holds page record ``ep``."""
    return np.int64(ds.gencl[ep >> GROUP_SHIFT])


@njit_inline
def ep_va_of(ds: Any, ep: int) -> int:
    """The VA page holding the evicted page's version, or NONE."""
    return np.int64(ds.ep[ep].va_slot) >> VA_SLOT_BITS


@njit_inline
def ep_slot_of(ds: Any, ep: int) -> int:
    return np.int64(ds.ep[ep].va_slot) & (SGX_VA_SLOT_COUNT - 1)


@njit_inline
def ep_type_of(ds: Any, ep: int) -> int:
    return np.int64(ds.ep[ep].type) & TYPE_MASK


@njit_inline
def ep_prot_of(ds: Any, ep: int) -> int:
    return np.int64(ds.ep[ep].type) >> TYPE_BITS


def va_pages_for(page_cnt: int) -> int:
    """The VA pages an enclave of ``page_cnt`` pages holds: :meth:`SgxDriver.grow` adds one
    whenever the count reaches a multiple of ``SGX_VA_SLOT_COUNT``."""
    return -(-page_cnt // SGX_VA_SLOT_COUNT)

# Per-enclave counters (e_cnt columns).
EC_FAULTS, EC_ELDU, EC_EWB, EC_EAUG, EC_SECS_EWB, EC_SECS_ELDU, EC_EBUSY, EC_SIGBUS = range(8)
ENCL_COUNTERS = ("faults", "eldu", "ewb", "eaug", "secs_ewb", "secs_eldu", "ebusy_retries",
                 "sigbus")
EC_LEN = len(ENCL_COUNTERS)

# Seal-queue columns (content mode): EWBs whose bytes the Python side must seal.
SQ_EPC, SQ_EP, SQ_SECS_OF = 0, 1, 2
SQ_REC = 3  # then the W_LEN words of the EWB record


# Columns of the enclave table (``DState.encl``, one row per enclave). The VA list's ends
# come first: :mod:`epcsim.dlist` reads a list's head and tail from columns 0 and 1.
(E_VA_HEAD, E_VA_TAIL, E_FLAGS, E_REF, E_BASE, E_SIZE, E_FIRST, E_SECS, E_SECS_VA, E_SECS_SLOT,
 E_SECS_MAC, E_EID, E_CHILD, E_PAGE_CNT, E_NVA, E_EVICTED, E_PCMD_PAGES, E_CG,
 E_NROWS) = range(19)
E_CNT = 19                  # the EC_LEN per-enclave counters from here
E_LEN = E_CNT + EC_LEN
# What a new row holds: everything 0 but these.
_E_NONE = (E_VA_HEAD, E_VA_TAIL, E_SECS, E_SECS_VA, E_SECS_SLOT)
# The Python side's names for the columns (``ds.e_flags[e]``...).
_E_NAMES = ("e_va_head", "e_va_tail", "e_flags", "e_ref", "e_base", "e_size", "e_first",
            "e_secs", "e_secs_va", "e_secs_slot", "e_secs_mac", "e_eid", "e_child",
            "e_page_cnt", "e_nva", "e_evicted", "e_pcmd_pages", "e_cg", "e_nrows")

# Columns of the VA-page table (``DState.va``); the list links first, as for the enclaves.
VA_NEXT, VA_PREV, VA_EPC, VA_ENCL, VA_USED = range(5)
VA_LEN = 5
_VA_NAMES = ("va_next", "va_prev", "va_epc", "va_encl", "va_used")

# The driver's scalars (``DState.dp``). Rows of the VA-page table not in use are a list
# threaded through their VA_NEXT column, so that compiled code can take one.
D_VA_FREE = 0               # first free row of the VA-page table, or NONE
D_VA_NFREE = 1              # free rows
D_SQ_N = 2                  # rows queued in ``sq``
D_LOAD_PAGE = 3             # content mode: the EPC page a fault asks Python to load into
D_LOAD_SECS = 4             # ... and whether what it loads is the SECS (1) or the page (0)
D_DID = 5                   # what the fault in progress did (FAULT_ELDU, FAULT_SECS)
D_LEN = 6


@state_class
class DState(NamedTuple):
    encl: np.ndarray        # i64 [enclaves, E_LEN]: flags, kref, ELRANGE, the SECS's EPC page
                            # (or the VA slot and MAC of its evicted blob), the EID,
                            # secs_child_cnt, page_cnt, the VA list, backing counts, the
                            # cgroup of the process that opened it, the counters
    # enclave pages: one 16-byte EP_RECORD each (epc i32, desc u8, type u8 with the
    # protection bits above the page type, secinfo u8, aux u8, va_slot i32, mac u32), a
    # numpy record array so that ``ds.ep[i].desc`` reads the same compiled and
    # interpreted; the Python side mostly uses the ``ep_*`` views below
    ep: np.ndarray
    pcmd_use: np.ndarray    # u8 per 32 entries of ep_* (one PCMD backing page): PCMDs in use
    gencl: np.ndarray       # u16 per 32 entries of ep_*: the enclave whose range holds them
    va: np.ndarray          # i64 [VA pages, VA_LEN]: list links, EPC page, enclave, slots used
    va_bits: np.ndarray     # u64 [VA pages, 8]: the slot map
    dp: np.ndarray          # i64 [D_LEN] the driver's scalars
    out: np.ndarray         # u64 EWB record
    sq: np.ndarray          # i64 [cap, SQ_REC + W_LEN]: EWBs whose bytes Python seals

    @property
    def e_cnt(self) -> np.ndarray:
        return self.encl[:, E_CNT:E_CNT + EC_LEN]

    @property
    def sq_n(self) -> np.ndarray:
        return self.dp[D_SQ_N:D_SQ_N + 1]

    # A field of every enclave page, as a strided view of the records (Python side).
    @property
    def ep_epc(self) -> np.ndarray:
        return field(self.ep, "epc")      # NONE while not in the EPC

    @property
    def ep_flags(self) -> np.ndarray:
        # EP_* bits; the record calls them desc, as the kernel's sgx_encl_page does (and
        # a numpy record's ``flags`` attribute is the array flags, not a field).
        return field(self.ep, "desc")

    @property
    def ep_type(self) -> PackedField:
        return PackedField(field(self.ep, "type"), 0, TYPE_BITS)        # PageType

    @property
    def ep_prot(self) -> PackedField:
        # vm_max_prot_bits (PROT_READ|WRITE|EXEC), above the type as in sgx_encl_page
        return PackedField(field(self.ep, "type"), TYPE_BITS, 8 - TYPE_BITS)

    @property
    def ep_encl(self) -> PackedField:
        # enclave row (new_enclave keeps them below 65535), one per group of 32 entries
        return PackedField(self.gencl, 0, 16, group=PCMDS_PER_PAGE)

    @property
    def ep_va_slot(self) -> np.ndarray:
        return field(self.ep, "va_slot")  # VA id << 9 | slot while evicted, else NONE

    @property
    def ep_va(self) -> PackedField:
        return PackedField(field(self.ep, "va_slot"), VA_SLOT_BITS, -1)  # VA id, or NONE

    @property
    def ep_slot(self) -> PackedField:
        return PackedField(field(self.ep, "va_slot"), 0, VA_SLOT_BITS)

    @property
    def ep_secinfo(self) -> np.ndarray:
        return field(self.ep, "secinfo")  # PCMD.SECINFO flags (bits 0-5); the type byte is type

    @property
    def ep_aux(self) -> np.ndarray:
        return field(self.ep, "aux")      # state sealed with the page (TCS)

    @property
    def ep_mac(self) -> np.ndarray:
        return field(self.ep, "mac")      # PCMD.MAC (metadata mode)


def _column(tbl: str, col: int) -> property:
    def get(self: DState) -> np.ndarray:
        return getattr(self, tbl)[:, col]  # type: ignore[no-any-return]
    return property(get)


for _i, _name in enumerate(_E_NAMES):
    setattr(DState, _name, _column("encl", _i))
for _i, _name in enumerate(_VA_NAMES):
    setattr(DState, _name, _column("va", _i))


# ----------------------------------------------------------------------------- VA slots

@njit_inline
def va_list_del(ds: DState, e: int, va: int) -> None:
    dl_del(ds.encl, ds.va, e, va)


@njit_inline
def va_list_add_head(ds: DState, e: int, va: int) -> None:
    dl_push_head(ds.encl, ds.va, e, va)


@njit_inline
def va_list_add_tail(ds: DState, e: int, va: int) -> None:
    dl_push_tail(ds.encl, ds.va, e, va)


@njit
def sgx_alloc_va_slot(ds: DState, e: int) -> tuple[int, int]:
    """The first free slot of the first VA page; a page that fills moves to the tail."""
    va = ds.encl[e, E_VA_HEAD]
    if va == NONE:
        return NONE, NONE
    for w in range(8):
        word = ds.va_bits[va, w]
        if word != np.uint64(0xFFFFFFFFFFFFFFFF):
            b = np.int64(trailing_zeros(~word))
            ds.va_bits[va, w] = word | (np.uint64(1) << np.uint64(b))
            ds.va[va, VA_USED] += 1
            if ds.va[va, VA_USED] == SGX_VA_SLOT_COUNT:
                va_list_del(ds, e, va)
                va_list_add_tail(ds, e, va)
            return va, w * 64 + b
    return NONE, NONE


@njit
def sgx_free_va_slot(ds: DState, e: int, va: int, slot: int, to_head: bool) -> None:
    w = slot >> 6
    b = np.uint64(slot & 63)
    ds.va_bits[va, w] &= ~(np.uint64(1) << b)
    ds.va[va, VA_USED] -= 1
    if to_head:
        va_list_del(ds, e, va)
        va_list_add_head(ds, e, va)


@njit
def va_page_add(ds: DState, e: int, epc: int) -> int:
    """Enclave ``e``'s new VA page at EPC page ``epc``, empty, at the head of its list: its
    VA id, or NONE when the table has no free row (the caller reserves rows first)."""
    va = ds.dp[D_VA_FREE]
    if va == NONE:
        return NONE
    ds.dp[D_VA_FREE] = ds.va[va, VA_NEXT]
    ds.dp[D_VA_NFREE] -= 1
    ds.va[va, VA_EPC] = epc
    ds.va[va, VA_ENCL] = e
    ds.va[va, VA_USED] = 0
    ds.va_bits[va, :] = 0
    va_list_add_head(ds, e, va)
    ds.encl[e, E_NVA] += 1
    return va


@njit
def va_page_drop(ds: DState, va: int) -> int:
    """Take VA page ``va`` off its enclave's list; its row is free again. Returns its EPC
    page, which the caller frees."""
    e = ds.va[va, VA_ENCL]
    epc = ds.va[va, VA_EPC]
    va_list_del(ds, e, va)
    ds.encl[e, E_NVA] -= 1
    ds.va[va, VA_EPC] = NONE
    ds.va[va, VA_ENCL] = NONE
    ds.va[va, VA_NEXT] = ds.dp[D_VA_FREE]
    ds.dp[D_VA_FREE] = va
    ds.dp[D_VA_NFREE] += 1
    return epc


# ----------------------------------------------------------------------------- backing

@njit_inline
def secs_pcmd_index(ds: DState, e: int) -> int:
    """The index the SECS's PCMD counts under: the kernel's is page PFN_DOWN(size), one
    past the enclave's pages; the model keeps a group of 32 entries for it after the
    enclave's records, so that it never shares another enclave's counter."""
    return -(-ds.encl[e, E_NROWS] // PCMDS_PER_PAGE) * PCMDS_PER_PAGE


@njit_inline
def pcmd_index(ds: DState, e: int, index: int) -> int:
    """The enclave's PCMD backing page of page ``index`` (32 PCMDs share one page).

    Enclave ranges start and end on multiples of 32 entries, so one counter per group of
    32 entries of ``ep_*`` serves every enclave.
    """
    return (ds.encl[e, E_FIRST] + index) >> 5


@njit_inline
def backing_store(ds: DState, ms: Any, e: int, index: int) -> None:
    ds.encl[e, E_EVICTED] += 1
    pi = pcmd_index(ds, e, index)
    grown = 1
    if ds.pcmd_use[pi] == 0:
        ds.encl[e, E_PCMD_PAGES] += 1
        grown = 2
    ds.pcmd_use[pi] += 1
    # The backing is shmem of the enclave's process: charged to its memory cgroup.
    mem_cgroup_charge(ms, ds.encl[e, E_CG], grown)


@njit_inline
def backing_drop(ds: DState, ms: Any, e: int, index: int) -> None:
    """After ELDU: the contents page is truncated, and the PCMD page once it is all zero."""
    ds.encl[e, E_EVICTED] -= 1
    pi = pcmd_index(ds, e, index)
    ds.pcmd_use[pi] -= 1
    shrunk = 1
    if ds.pcmd_use[pi] == 0:
        ds.encl[e, E_PCMD_PAGES] -= 1
        shrunk = 2
    mem_cgroup_charge(ms, ds.encl[e, E_CG], -shrunk)


# ----------------------------------------------------------------------------- EWB

@njit
def aex_enclave_cpus(st: Any, e_row: int) -> int:
    """An IPI reaches every CPU running the enclave (the model's stand-in for the mms'
    cpumasks): each LP inside takes an AEX. Returns how many did.

    The SECS's tracking counts the LPs inside; with one, the LP that entered last is
    usually it, so a host of thousands of single-threaded enclaves looks at one LP."""
    n = lps_inside(st, e_row)
    if n == 0:
        return 0
    lp = np.int64(st.secs[e_row].s_lp)
    if n == 1 and 0 <= lp < st.lp.shape[0] and st.lp[lp].lp_row == e_row:
        L.aex(st, lp)
        return 1
    done = 0
    for lp in range(st.lp.shape[0]):
        if st.lp[lp].lp_row == e_row:
            L.aex(st, lp)
            done += 1
            if done == n:
                break
    return done


@njit
def ipi_enclave_cpus(st: Any, ms: Any, e_row: int) -> None:
    """IPI every CPU that may run the enclave: each LP inside takes an AEX."""
    count_ipi(ms)
    aex_enclave_cpus(st, e_row)


@njit_linked
def sgx_encl_ewb(ds: DState, ms: Any, st: Any, e: int, epc: int, secs: int) -> tuple[int, int, int]:
    """EWB with the kernel's escalation: plain, after ETRACK, after IPIs.

    Returns (result, VA id, slot). The slot is freed again when EWB fails.
    """
    va, slot = sgx_alloc_va_slot(ds, e)
    if va == NONE:
        return -1, NONE, NONE
    va_epc = ds.va[va, VA_EPC]
    rc = L.ewb(st, epc, va_epc, slot, L.CTX_HOST, ds.out)
    if rc == L.NOT_TRACKED:
        L.etrack(st, secs, L.CTX_HOST)
        count_etrack(ms)
        rc = L.ewb(st, epc, va_epc, slot, L.CTX_HOST, ds.out)
        if rc == L.NOT_TRACKED:
            # The mask is computed after ETRACK: CPUs entering later join the new epoch.
            ipi_enclave_cpus(st, ms, np.int64(st.epcm[secs].row))
            rc = L.ewb(st, epc, va_epc, slot, L.CTX_HOST, ds.out)
    count_ewb(ms)
    if rc != 0 and rc != L.VA_SLOT_OCCUPIED:
        sgx_free_va_slot(ds, e, va, slot, False)
        return rc, NONE, NONE
    return rc, va, slot


@njit_inline
def queue_seal(ds: DState, epc: int, ep: int, secs_of: int) -> None:
    """Content mode: queue what EWB wrote; Python seals the page's bytes (still in the
    page) before anything allocates it again (``DriverOwner.sync``)."""
    if sealing(ds):
        n = ds.dp[D_SQ_N]
        ds.sq[n, SQ_EPC] = epc
        ds.sq[n, SQ_EP] = ep
        ds.sq[n, SQ_SECS_OF] = secs_of
        for i in range(L.W_LEN):
            ds.sq[n, SQ_REC + i] = np.int64(ds.out[i])
        ds.dp[D_SQ_N] = n + 1


@njit_inline
def sealing(ds: DState) -> bool:
    """Content mode: the queue has room (metadata mode gives it one unused row)."""
    return ds.sq.shape[0] > 1


@njit
def encl_ewb_secs(ds: DState, ms: Any, st: Any, e: int) -> None:
    """The SECS follows its last child out (initialised enclaves only)."""
    secs = ds.encl[e, E_SECS]
    rc, va, slot = sgx_encl_ewb(ds, ms, st, e, secs, secs)
    if rc == 0 or rc == L.VA_SLOT_OCCUPIED:
        ds.encl[e, E_SECS_VA] = va
        ds.encl[e, E_SECS_SLOT] = slot
        ds.encl[e, E_SECS_MAC] = np.int64(ds.out[L.W_MAC])
        ds.encl[e, E_CNT + EC_SECS_EWB] += 1
        # Its backing: contents at ``size``, PCMD at page index size/4096.
        backing_store(ds, ms, e, secs_pcmd_index(ds, e))
        queue_seal(ds, secs, NONE, e)
        # EWB left the page invalid; EREMOVE of an invalid page is a no-op, then free.
        sgx_encl_free_epc_page(ms, st, secs)
        ds.encl[e, E_SECS] = NONE


# ----------------------------------------------------------------------------- the owner

@njit_inline
def drv_get(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    e = ep_encl_of(ds, oid)
    if (ds.encl[e, E_FLAGS] & SGX_ENCL_DEAD) != 0 or ds.encl[e, E_REF] <= 0:
        return 0
    ds.encl[e, E_REF] += 1
    return 1


@njit_inline
def drv_put(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    ds.encl[ep_encl_of(ds, oid), E_REF] -= 1
    return 0


@njit_inline
def drv_reclaim(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """Age by the PTE accessed bit (test and clear); refuse young pages; reserve the rest."""
    if arg == 1 and (ds.ep[oid].desc & EP_YOUNG) != 0:
        ds.ep[oid].desc &= ~np.uint8(EP_YOUNG)
        return 0
    # sgx_encl_alloc_backing: a contents page and perhaps a PCMD page, or skip the page.
    if not mem_cgroup_may_charge(ms, ds.encl[ep_encl_of(ds, oid), E_CG], 2):
        return 0
    ds.ep[oid].desc |= np.uint8(EP_BEING_RECLAIMED)
    return 1


@njit_inline
def drv_block(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """Zap the PTEs, then EBLOCK (failure only warns in the kernel).

    ``zap_vma_ptes`` of a present PTE flushes the TLBs of the CPUs running the mm: its IPI
    forces each LP inside the enclave out (AEX), which drops the translation its TLB may
    hold. Without the TLB model nothing holds one, and no LP is forced out here.
    """
    if (ds.ep[oid].desc & EP_PRESENT) != 0 and tlb_modelled(st):
        if aex_enclave_cpus(st, np.int64(st.epcm[L.tx(st, page)].row)) != 0:
            count_tlb_shootdown(ms)
    ds.ep[oid].desc &= ~np.uint8(EP_PRESENT | EP_YOUNG)
    return L.eblock(st, page)


@njit
def drv_write(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """``sgx_reclaimer_write``: EWB, bookkeeping, and the SECS after its last child."""
    e = ep_encl_of(ds, oid)
    ds.ep[oid].desc &= ~np.uint8(EP_BEING_RECLAIMED)
    rc, va, slot = sgx_encl_ewb(ds, ms, st, e, page, ds.encl[e, E_SECS])
    if rc == 0 or rc == L.VA_SLOT_OCCUPIED:
        ds.ep[oid].va_slot = (va << VA_SLOT_BITS) | slot
        ds.ep[oid].mac = np.uint32(ds.out[L.W_MAC])
        ds.ep[oid].secinfo = np.int64(ds.out[L.W_SECINFO]) & EPCM_SECINFO_MASK
        ds.ep[oid].aux = np.int64(ds.out[L.W_AUX])
        ds.ep[oid].desc |= np.uint8(EP_EVICTED)
        backing_store(ds, ms, e, oid - ds.encl[e, E_FIRST])
        ds.encl[e, E_CNT + EC_EWB] += 1
        queue_seal(ds, page, oid, NONE)
    ds.ep[oid].epc = NONE
    ds.encl[e, E_CHILD] -= 1
    if ds.encl[e, E_CHILD] == 0 and (ds.encl[e, E_FLAGS] & SGX_ENCL_INITIALIZED) != 0:
        if (ds.encl[e, E_FLAGS] & SGX_ENCL_LOCKED) != 0:
            ds.encl[e, E_FLAGS] |= SGX_ENCL_SECS_LATE
        else:
            encl_ewb_secs(ds, ms, st, e)
    # A failed EWB still frees the page (the kernel WARNs): "should never happen".
    return WRITE_FREED


# From this many EPC pages (an EPCM of 960 KB) the EPCM entry of a page is prefetched too, by
# the reclaimer's hint (EBLOCK and EWB read the victim's) and the replay ahead of a request
# (a hit's page walk reads it): 3.6 % less time over 100 000 EPC pages, 2 % more over 10 000,
# whose EPCM stays cached (BENCHMARKS.md, eighth session).
EPCM_PREFETCH_FROM = 1 << 16


@njit
def drv_prefetch(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """The page's record (one line), the enclave of its group, and on a large EPC the page's
    EPCM entry."""
    prefetch(ds.ep, oid)
    prefetch(ds.gencl, oid >> GROUP_SHIFT)
    if st.epcm.shape[0] >= EPCM_PREFETCH_FROM:
        prefetch(st.epcm, page)
    return 0


DRIVER_OPS = OwnerOps(drv_get, drv_put, drv_reclaim, drv_block, drv_write, drv_prefetch)


# ----------------------------------------------------------------------------- ELDU

@njit
def eldu_done(ds: DState, ms: Any, st: Any, ep: int, epc: int) -> None:
    """Bookkeeping after a child's ELDU: ``__sgx_encl_eldu`` and ``__sgx_encl_load_page``."""
    e = ep_encl_of(ds, ep)
    sgx_free_va_slot(ds, e, ep_va_of(ds, ep), ep_slot_of(ds, ep), True)
    backing_drop(ds, ms, e, ep - ds.encl[e, E_FIRST])
    ds.ep[ep].va_slot = NONE
    ds.ep[ep].desc &= ~np.uint8(EP_EVICTED)
    ds.ep[ep].epc = epc
    ds.encl[e, E_CHILD] += 1
    ds.encl[e, E_CNT + EC_ELDU] += 1
    ms.cnt[C_ELDU] += 1
    ms.pages[epc].oid = ep
    sgx_mark_page_reclaimable(ms, epc)


@njit
def secs_eldu_done(ds: DState, ms: Any, e: int, epc: int) -> None:
    sgx_free_va_slot(ds, e, ds.encl[e, E_SECS_VA], ds.encl[e, E_SECS_SLOT], True)
    backing_drop(ds, ms, e, secs_pcmd_index(ds, e))
    ds.encl[e, E_SECS] = epc
    ds.encl[e, E_SECS_VA] = NONE
    ds.encl[e, E_CNT + EC_SECS_ELDU] += 1
    ms.cnt[C_ELDU] += 1
    ms.pages[epc].oid = e


@njit
def eldu_metadata(ds: DState, ms: Any, st: Any, ep: int, epc: int) -> int:
    """ELDU of a child in metadata mode, then the bookkeeping. Returns the leaf result."""
    e = ep_encl_of(ds, ep)
    secs = ds.encl[e, E_SECS]
    lin = ds.encl[e, E_BASE] + ((ep - ds.encl[e, E_FIRST]) << 12)
    secinfo = (ep_type_of(ds, ep) << 8) | np.int64(ds.ep[ep].secinfo)
    rc = L.eldu(st, epc, ds.va[ep_va_of(ds, ep), VA_EPC], ep_slot_of(ds, ep), secs, lin,
                secinfo, ds.encl[e, E_EID], np.int64(ds.ep[ep].mac), np.int64(ds.ep[ep].aux),
                False, False, L.CTX_HOST, 0, -1)
    if rc == 0:
        eldu_done(ds, ms, st, ep, epc)
    return rc


@njit
def secs_eldu_metadata(ds: DState, ms: Any, st: Any, e: int, epc: int) -> int:
    secinfo = PageType.SECS << 8
    rc = L.eldu(st, epc, ds.va[ds.encl[e, E_SECS_VA], VA_EPC], ds.encl[e, E_SECS_SLOT], NONE, 0,
                secinfo,
                ds.encl[e, E_EID], ds.encl[e, E_SECS_MAC], 0, False, False, L.CTX_HOST, 0, -1)
    if rc == 0:
        secs_eldu_done(ds, ms, e, epc)
    return rc


# ----------------------------------------------------------------------------- the fault path

# What a fault ends in (``code & VM_FAULT_MASK``), as ``sgx_vma_fault`` returns it.
VM_FAULT_NOPAGE = 0     # fixed: the access is retried and succeeds
VM_FAULT_RETRY = 1      # -EBUSY: nothing changed, the access faults again (ksgxd frees pages)
VM_FAULT_SIGBUS = 2
VM_FAULT_ENOMEM = 3     # an allocation got -ENOMEM: SIGBUS, unless an OOM killer frees pages
VM_FAULT_LOAD = 4       # content mode: load the page at ``dp[D_LOAD_PAGE]``, then fault again
VM_FAULT_NOROW = 5      # a table of the model must grow first (the caller reserves rows)
VM_FAULT_AGAIN = 6      # content mode: seal what ksgxd wrote back, then run the fault again
VM_FAULT_MASK = 0xF
# What it did on the way, for the caller's costs (the replay's clocks).
FAULT_EAUG = 1 << 4     # a new page was added (SGX2)
FAULT_ELDU = 1 << 5     # the page was loaded back
FAULT_SECS = 1 << 6     # the enclave's SECS was loaded back first

PROT_RWX = 7            # PROT_READ | PROT_WRITE | PROT_EXEC: what an EAUGed page may map
ELOAD = -1000           # not an errno: the page must be loaded by content mode's Python half
ENOSPC = 28
EFAULT = 14


@njit
def shrink(ds: DState, ms: Any, st: Any, e: int, va: int) -> None:
    """Undo :func:`sgx_encl_grow` after a failure: the count, and the VA page it added."""
    ds.encl[e, E_PAGE_CNT] -= 1
    if va != NONE:
        sgx_encl_free_epc_page(ms, st, va_page_drop(ds, va))


@njit_inline
def encl_lock(ds: DState, e: int) -> None:
    ds.encl[e, E_FLAGS] |= SGX_ENCL_LOCKED


@njit
def encl_unlock(ds: DState, ms: Any, st: Any, e: int) -> None:
    """Release the enclave's lock; a SECS whose last child the reclaimer wrote meanwhile
    follows it now, if the enclave has still no child in the EPC."""
    flags = ds.encl[e, E_FLAGS]
    ds.encl[e, E_FLAGS] = flags & ~(SGX_ENCL_LOCKED | SGX_ENCL_SECS_LATE)
    if (flags & SGX_ENCL_SECS_LATE) != 0 and ds.encl[e, E_CHILD] == 0 \
            and ds.encl[e, E_SECS] != NONE:
        encl_ewb_secs(ds, ms, st, e)


class DriverRules(NamedTuple):
    """The driver's compiled paths that allocate EPC pages, for one kernel's manager."""

    grow: Any
    load_secs: Any
    load_page: Any
    vma_fault: Any


_rules: dict[tuple[int, int], DriverRules] = {}


def driver_rules(reclaimer: Any, kind: int) -> DriverRules:
    """The fault path and its parts, closed over a manager's allocation (memoised).

    The Python API (:class:`SgxDriver`) and the replay engine (:mod:`epcsim.sim.replay`)
    both call these: there is one fault path.
    """
    key = (id(reclaimer), kind)
    hit = _rules.get(key)
    if hit is not None:
        return hit
    alloc = reclaimer.alloc
    ksgxd = reclaimer.ksgxd
    closure = functools.partial(njit_closure, cache=reclaimer.cache)
    # The rules a replayed fault runs once each: linked into their callers (jit.njit_closure).
    linked = functools.partial(njit_closure, cache=reclaimer.cache, link=True)

    @functools.partial(njit_closure, cache=reclaimer.cache, inline=True)
    def fault_alloc(os: Any, ms: Any, st: Any, oid: int) -> int:
        """An allocation of the fault path: no reclaim under the mmap lock. A ksgxd it
        wakes runs when the next fault comes in (:func:`sgx_vma_fault`)."""
        return alloc(os, ms, st, kind, oid, False, ms.p[P_NODE])

    @closure
    def sgx_encl_grow(os: Any, ms: Any, st: Any, e: int, reclaim: bool) -> int:
        """A new VA page every 512 pages that may need a slot: its VA id, NONE when none
        was needed, or -errno (-ENOSPC: no free row in the model's tables)."""
        ds = os[kind]
        va = NONE
        if ds.encl[e, E_PAGE_CNT] % SGX_VA_SLOT_COUNT == 0:
            if ds.dp[D_VA_NFREE] == 0:
                return -ENOSPC
            if reclaim:
                epc = alloc(os, ms, st, kind, e, True, ms.p[P_NODE])
            else:
                epc = fault_alloc(os, ms, st, e)
            if epc < 0:
                return epc
            rc = L.epa(st, epc)
            if rc != 0:
                sgx_encl_free_epc_page(ms, st, epc)
                return -ENOSPC if rc == L.NEED_ROW else -EFAULT
            va = va_page_add(ds, e, epc)
        ds.encl[e, E_PAGE_CNT] += 1
        return va

    @functools.partial(njit_closure, cache=reclaimer.cache, inline=True)
    def sgx_encl_load_secs(os: Any, ms: Any, st: Any, e: int) -> int:
        """Reload an evicted SECS before any child: 0, or -errno, or ELOAD."""
        ds = os[kind]
        if ds.encl[e, E_SECS] != NONE:
            return 0
        epc = fault_alloc(os, ms, st, e)
        if epc < 0:
            return epc
        if st.g[G_CONTENT] != 0:
            ds.dp[D_LOAD_PAGE] = epc
            ds.dp[D_LOAD_SECS] = 1
            return ELOAD
        if secs_eldu_metadata(ds, ms, st, e, epc) != 0:
            sgx_encl_free_epc_page(ms, st, epc)
            return -EFAULT
        ds.dp[D_DID] |= FAULT_SECS
        return 0

    @linked
    def sgx_encl_load_page(os: Any, ms: Any, st: Any, e: int, ep: int) -> int:
        """``__sgx_encl_load_page``: the EPC page of a resident page, or ELDU it back;
        -errno, or ELOAD (content mode)."""
        ds = os[kind]
        epc = np.int64(ds.ep[ep].epc)
        if epc != NONE:
            return -EBUSY if (ds.ep[ep].desc & EP_BEING_RECLAIMED) != 0 else epc
        rc = sgx_encl_load_secs(os, ms, st, e)
        if rc < 0:
            return rc
        epc = fault_alloc(os, ms, st, ep)
        if epc < 0:
            return epc
        if st.g[G_CONTENT] != 0:
            ds.dp[D_LOAD_PAGE] = epc
            ds.dp[D_LOAD_SECS] = 0
            return ELOAD
        if eldu_metadata(ds, ms, st, ep, epc) != 0:
            sgx_encl_free_epc_page(ms, st, epc)
            return -EFAULT
        ds.dp[D_DID] |= FAULT_ELDU
        return epc

    @closure
    def sgx_encl_eaug_page(os: Any, ms: Any, st: Any, e: int, ep: int) -> int:
        """Add a PENDING page on first touch of an SGX2 enclave."""
        ds = os[kind]
        if (ds.encl[e, E_FLAGS] & SGX_ENCL_INITIALIZED) == 0:
            return VM_FAULT_SIGBUS
        rc = sgx_encl_load_secs(os, ms, st, e)
        if rc == -EBUSY:
            return VM_FAULT_RETRY
        if rc == ELOAD:
            return VM_FAULT_LOAD
        if rc == -ENOMEM:
            return VM_FAULT_ENOMEM
        if rc < 0:
            return VM_FAULT_SIGBUS
        epc = fault_alloc(os, ms, st, ep)
        if epc == -EBUSY:
            ds.encl[e, E_CNT + EC_EBUSY] += 1
            return VM_FAULT_RETRY
        if epc == -ENOMEM:
            return VM_FAULT_ENOMEM
        if epc < 0:
            return VM_FAULT_SIGBUS
        va = sgx_encl_grow(os, ms, st, e, False)
        if va < NONE:
            sgx_encl_free_epc_page(ms, st, epc)
            if va == -EBUSY:
                return VM_FAULT_RETRY
            if va == -ENOMEM:
                return VM_FAULT_ENOMEM
            if va == -ENOSPC:
                return VM_FAULT_NOROW
            return VM_FAULT_SIGBUS
        lin = ds.encl[e, E_BASE] + ((ep - ds.encl[e, E_FIRST]) << 12)
        if L.eaug(st, epc, ds.encl[e, E_SECS], lin, L.PT_REG) != 0:
            sgx_encl_free_epc_page(ms, st, epc)
            shrink(ds, ms, st, e, va)
            return VM_FAULT_SIGBUS
        ds.ep[ep].desc = EP_EXISTS | EP_PRESENT
        ds.ep[ep].type = PageType.REG | (PROT_RWX << TYPE_BITS)
        ds.ep[ep].epc = epc
        ds.encl[e, E_CHILD] += 1
        ds.encl[e, E_CNT + EC_EAUG] += 1
        sgx_mark_page_reclaimable(ms, epc)
        return VM_FAULT_NOPAGE | FAULT_EAUG

    @functools.partial(njit_closure, cache=reclaimer.cache, inline=True)
    def fault_in(os: Any, ms: Any, st: Any, e: int, ep: int, vma_prot: int) -> int:
        ds = os[kind]
        if (ds.ep[ep].desc & EP_EXISTS) == 0:
            if st.g[G_SGX2] != 0:
                return sgx_encl_eaug_page(os, ms, st, e, ep)
            return VM_FAULT_SIGBUS
        if (vma_prot & ~ep_prot_of(ds, ep)) != 0:
            return VM_FAULT_SIGBUS
        rc = sgx_encl_load_page(os, ms, st, e, ep)
        if rc == -EBUSY:
            ds.encl[e, E_CNT + EC_EBUSY] += 1
            return VM_FAULT_RETRY
        if rc == ELOAD:
            return VM_FAULT_LOAD
        if rc == -ENOMEM:
            return VM_FAULT_ENOMEM
        if rc < 0:
            ds.encl[e, E_CNT + EC_SIGBUS] += 1
            return VM_FAULT_SIGBUS
        # vmf_insert_pfn, then test_and_clear_young: a faulted page starts old.
        ds.ep[ep].desc = (ds.ep[ep].desc | np.uint8(EP_PRESENT)) & ~np.uint8(EP_YOUNG)
        return VM_FAULT_NOPAGE

    @closure
    def load_secs_locked(os: Any, ms: Any, st: Any, e: int) -> int:
        """:func:`sgx_encl_load_secs` under the enclave's lock (kept while content mode
        loads the page)."""
        ds = os[kind]
        encl_lock(ds, e)
        rc = sgx_encl_load_secs(os, ms, st, e)
        if rc != ELOAD:
            encl_unlock(ds, ms, st, e)
        return rc

    @closure
    def load_page_locked(os: Any, ms: Any, st: Any, e: int, ep: int) -> int:
        """:func:`sgx_encl_load_page` under the enclave's lock (an ioctl's)."""
        ds = os[kind]
        encl_lock(ds, e)
        rc = sgx_encl_load_page(os, ms, st, e, ep)
        if rc != ELOAD:
            encl_unlock(ds, ms, st, e)
        return rc

    @linked
    def sgx_vma_fault(os: Any, ms: Any, st: Any, e: int, ep: int, vma_prot: int,
                      first: bool) -> int:
        """``sgx_vma_fault`` of enclave ``e``'s page ``ep`` (its index in ``ds.ep``):
        a VM_FAULT_* outcome with FAULT_* bits of what it did.

        ``first`` is False when content mode comes back after loading a page or sealing
        pages, the same fault going on.

        A ksgxd that an earlier allocation woke runs first, as the fault comes in: woken, it
        runs on another CPU while the thread that woke it finishes its fault and retires the
        access, so a page the thread just faulted in is young when ksgxd ages it (docs/
        design.md, "When ksgxd runs"). In content mode, pages it wrote back hold their bytes
        until Python seals them: the fault comes back (VM_FAULT_AGAIN) before it allocates.
        """
        ds = os[kind]
        if e < 0 or (ds.encl[e, E_FLAGS] & SGX_ENCL_DEAD) != 0:
            return VM_FAULT_SIGBUS
        ms.p[P_CG] = ds.encl[e, E_CG]
        if first:
            ds.encl[e, E_CNT + EC_FAULTS] += 1
            ds.dp[D_DID] = 0
            written = ms.cnt[C_WRITTEN]
            ksgxd(os, ms, st)
            if st.g[G_CONTENT] != 0 and ms.cnt[C_WRITTEN] != written:
                return VM_FAULT_AGAIN
        encl_lock(ds, e)
        code = fault_in(os, ms, st, e, ep, vma_prot) | ds.dp[D_DID]
        if (code & VM_FAULT_MASK) != VM_FAULT_LOAD:
            encl_unlock(ds, ms, st, e)
        return code

    r = DriverRules(sgx_encl_grow, load_secs_locked, load_page_locked, sgx_vma_fault)
    _rules[key] = r
    return r


# ----------------------------------------------------------------------------- Python side

def _grow(arr: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
    out = np.full((n,) + arr.shape[1:], fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return table(out)


def _empty_rows(n: int, width: int, none_cols: tuple[int, ...]) -> np.ndarray:
    rows = np.zeros((n, width), dtype=np.int64)
    rows[:, list(none_cols)] = NONE
    return rows


# An enclave page's fields live in one 16-byte record, DState.ep. A fault reads the page's
# EPC index and flags, then its ELDU the type, SECINFO, aux, MAC and VA slot, and the
# reclaimer's age test the flags: in separate tables each of those was its own cache miss;
# in one record they share one line. Sixteen bytes, each field at its natural alignment, so
# that a record never spans two lines (21 bytes spanned two in three records of eight, and
# the replay over a large trace prefetched both); the protection bits share the type's
# byte, the VA slot is one i32, and the enclave is kept per group of 32 records
# (``gencl``), which a range always starts and ends on. Compiled code indexes the record
# table itself: the record's size is then a constant of the code, where a strided view of
# one field carries its stride at run time (a multiply, and a register or a reload, at
# every access).
# One row per field, in record order: name, type, value of a page not in use.
_EP_LAYOUT = (("epc", np.int32, NONE), ("desc", np.uint8, 0), ("type", np.uint8, 0),
              ("secinfo", np.uint8, 0), ("aux", np.uint8, 0), ("va_slot", np.int32, NONE),
              ("mac", np.uint32, 0))
EP_RECORD = np.dtype([(name, kind) for name, kind, _ in _EP_LAYOUT])
assert EP_RECORD.itemsize == 16
_VA_NONE = (VA_NEXT, VA_PREV, VA_EPC, VA_ENCL)


def _ep_empty() -> np.ndarray:
    one = np.zeros(1, EP_RECORD)
    for name, _, fill in _EP_LAYOUT:
        one[name] = fill
    return one.view(np.uint8)


def _range_length(nrows: int) -> int:
    """The entries an enclave of ``nrows`` page records takes: whole groups of 32 (one PCMD
    backing page each), and one group more for its SECS's PCMD (:func:`secs_pcmd_index`)."""
    return -(-nrows // PCMDS_PER_PAGE) * PCMDS_PER_PAGE + PCMDS_PER_PAGE


# The bytes of a record not in use, which tables are filled from.
_EP_EMPTY = _ep_empty()


def ep_records(n: int) -> np.ndarray:
    """``n`` enclave-page records, each field at its empty value."""
    rec = table(np.empty(n, EP_RECORD))
    ep_clear(rec, 0, n)
    return rec


def ep_clear(rec: np.ndarray, start: int, stop: int) -> None:
    """Records ``start`` to ``stop`` of the table ``rec`` back to their empty values.

    The first record is written, then the records done so far are copied after themselves,
    doubling: a few dozen copies of contiguous bytes. Broadcasting the record over the rows
    copied it record by record (33 M records, an enclave of 128 GiB, in 0.7 s;
    assigning a numpy record to the slice was slower still).
    """
    if stop <= start:
        return
    size = EP_RECORD.itemsize
    flat = rec.view(np.ndarray).view(np.uint8)[start * size: stop * size]
    flat[:size] = _EP_EMPTY
    done = size
    while done < flat.shape[0]:
        k = min(done, flat.shape[0] - done)
        flat[done: done + k] = flat[:k]
        done += k


def make_dstate(content: bool, npages: int) -> DState:
    i64 = np.int64
    return DState(
        encl=table(np.zeros((0, E_LEN), dtype=i64)),
        ep=ep_records(0),
        pcmd_use=table(np.zeros(1, np.uint8)),
        gencl=table(np.zeros(1, np.uint16)),
        va=table(np.zeros((0, VA_LEN), dtype=i64)),
        va_bits=table(np.zeros((0, 8), dtype=np.uint64)),
        dp=table(np.array([NONE, 0, 0, NONE, 0, 0], dtype=i64)),
        out=table(np.zeros(L.W_LEN, dtype=np.uint64)),
        # One compiled call writes back at most the EPC's worth of pages.
        sq=table(np.zeros((npages + 64 if content else 1, SQ_REC + L.W_LEN), dtype=i64)),
    )


class DriverOwner(Owner):
    """The enclave driver as an owner of EPC pages (kind chosen by the kernel instance)."""

    name = "driver"
    ops = DRIVER_OPS

    def __init__(self, cpu: Processor, backing_dir: str | None = None) -> None:
        self.cpu = cpu
        self.state = make_dstate(cpu.content, cpu.npages)
        self.backing: dict[int, Backing] = {}
        self.backing_dir = backing_dir
        self._free_encl: list[int] = []
        self._ranges: list[tuple[int, int]] = []   # free (start, length) in ep_*
        self._ep_top = 0
        self._sealed: np.ndarray | None = None     # pages being sealed, as AES-GCM output
        self._sealed_bytes = memoryview(b"")

    # -------------------------------------------------------------- table management
    def _replace(self, **kw: np.ndarray) -> None:
        self.state = self.state._replace(**kw)

    def _refill(self, free: list[int], tables: tuple[str, ...], none_cols: tuple[int, ...],
                least: int) -> None:
        """With no row left in ``free``, double ``tables`` (at least ``least`` rows; the
        first table's ``none_cols`` start at NONE); the new rows are handed out in ascending
        order."""
        if free:
            return
        first = getattr(self.state, tables[0])
        n = first.shape[0]
        new = max(least, 2 * n)
        grown = {k: _grow(getattr(self.state, k), new) for k in tables}
        grown[tables[0]][n:] = _empty_rows(new - n, first.shape[1], none_cols)
        self._replace(**grown)
        free.extend(range(new - 1, n - 1, -1))

    def new_enclave(self) -> int:
        self._refill(self._free_encl, ("encl",), _E_NONE, 8)
        if self._free_encl[-1] >= MAX_ENCLAVES:
            # ep_encl is u16: a row it cannot hold would alias another enclave.
            raise RuntimeError(f"at most {MAX_ENCLAVES} enclaves at once")
        e = self._free_encl.pop()
        self.state.encl[e] = _empty_rows(1, E_LEN, _E_NONE)[0]
        return e

    def reserve_pages(self, e: int, npages: int) -> None:
        """Give enclave ``e`` a dense range of ``npages`` enclave-page entries, and a group
        of 32 after them for its SECS's PCMD (:func:`secs_pcmd_index`)."""
        self.state.e_nrows[e] = npages
        npages = _range_length(npages)
        start = None
        fresh = False
        for i, (s, n) in enumerate(self._ranges):
            if n >= npages:
                start = s
                self._ranges[i] = (s + npages, n - npages)
                break
        if start is None:
            start = self._ep_top
            self._ep_top += npages
            cap = self.state.ep.shape[0]
            if self._ep_top > cap:
                new = max(self._ep_top, 2 * cap)
                rec = ep_records(new)
                rec[:cap] = self.state.ep
                groups = new // PCMDS_PER_PAGE + 1
                self._replace(ep=rec, pcmd_use=_grow(self.state.pcmd_use, groups),
                              gencl=_grow(self.state.gencl, groups))
                fresh = True    # the range's records were made empty just now
        if not fresh:
            ep_clear(self.state.ep, start, start + npages)
        self.state.pcmd_use[start // PCMDS_PER_PAGE:(start + npages) // PCMDS_PER_PAGE] = 0
        self.state.gencl[start // PCMDS_PER_PAGE:(start + npages) // PCMDS_PER_PAGE] = e
        self.state.e_first[e] = start

    def release_pages(self, e: int, npages: int) -> None:
        npages = _range_length(npages)
        start = int(self.state.e_first[e])
        self.state.ep_flags[start:start + npages] = 0
        self._ranges.append((start, npages))

    def free_enclave(self, e: int) -> None:
        b = self.backing.pop(e, None)
        if b is not None:
            b.close()
        self._free_encl.append(e)

    def reserve_va_rows(self, n: int) -> None:
        """Rows for at least ``n`` more VA pages in the VA-page table (and as many in the
        processor's version table), so compiled code that adds VA pages finds them."""
        ds = self.state
        free = int(ds.dp[D_VA_NFREE])
        if free < n:
            old = ds.va.shape[0]
            if old + n - free > MAX_VA_PAGES:
                # A page record names its VA page in 22 bits (EP_RECORD's va_slot).
                raise RuntimeError(f"at most {MAX_VA_PAGES} VA pages at once (their slots "
                                   f"hold 8 TiB of evicted enclave pages)")
            new = min(max(16, 2 * old, old + n - free), MAX_VA_PAGES)
            va = _grow(ds.va, new)
            va[old:] = _empty_rows(new - old, VA_LEN, _VA_NONE)
            # The new rows go on the free list, the lowest first.
            va[old:new - 1, VA_NEXT] = np.arange(old + 1, new)
            va[new - 1, VA_NEXT] = ds.dp[D_VA_FREE]
            ds.dp[D_VA_FREE] = old
            ds.dp[D_VA_NFREE] = free + new - old
            self._replace(va=va, va_bits=_grow(ds.va_bits, new))
        self.cpu.reserve_va_rows(n)

    def new_va(self, e: int, epc: int) -> int:
        self.reserve_va_rows(1)
        return int(va_page_add(self.state, e, epc))

    def drop_va(self, va: int) -> int:
        """Forget VA page ``va``; returns its EPC page, which the caller frees."""
        return int(va_page_drop(self.state, va))

    def va_pages(self, e: int) -> list[int]:
        out, va = [], int(self.state.e_va_head[e])
        while va != NONE:
            out.append(va)
            va = int(self.state.va_next[va])
        return out

    def sync(self) -> None:
        self.drain_seals()

    # -------------------------------------------------------------- content mode
    def drain_seals(self) -> None:
        """Seal the bytes of every page the compiled reclaimer wrote back since last time,
        and store them in the backing files, a chunk of the queue at a time."""
        ds = self.state
        n = int(ds.sq_n[0])
        for first in range(0, n, SEAL_CHUNK):
            self._seal(ds, ds.sq[first:min(n, first + SEAL_CHUNK)])
        ds.sq_n[0] = 0

    def _seal(self, ds: DState, rows: np.ndarray) -> None:
        if self._sealed is None:
            self._sealed = np.empty((SEAL_CHUNK, SEALED_SIZE), dtype=np.uint8)
            self._sealed_bytes = memoryview(self._sealed.reshape(-1))
        records = rows[:, SQ_REC:].astype(np.uint64)   # the queue holds them as i64
        self.cpu.seal_batch(rows[:, SQ_EPC].tolist(), records, self._sealed)
        out = self._sealed_bytes
        for k, (ep, secs_of, secinfo, eid) in enumerate(zip(
                rows[:, SQ_EP].tolist(), rows[:, SQ_SECS_OF].tolist(),
                records[:, L.W_SECINFO].tolist(), records[:, L.W_PCMD_EID].tolist())):
            if ep != NONE:
                e = int(ds.ep_encl[ep])
                b, index = self.backing[e], ep - int(ds.e_first[e])
            else:   # a SECS: its row names its enclave
                b = self.backing[secs_of]
                index = b.secs_index()
            b.store_sealed(index, out[k * SEALED_SIZE:(k + 1) * SEALED_SIZE], secinfo, eid)


# Pages sealed per call: bounds the staging buffer (4 KiB and a MAC a page).
SEAL_CHUNK = 256


def page_offset(ds: DState, ep: int) -> int:
    return ep - int(ds.e_first[int(ds.ep_encl[ep])])


__all__ = ["DRIVER_OPS", "Backing", "DState", "DriverOwner", "EpcManager"]


# ----------------------------------------------------------------------------- the driver

SGX_EINIT_SPIN_COUNT = 20
SGX_EINIT_SLEEP_COUNT = 50


class SgxDriver:
    """``/dev/sgx_enclave``: enclave lifecycle, VA pages, backing store and the fault path.

    Errors are returned as negative errno values, as the kernel's internal functions do;
    :mod:`epcsim.kernel.ioctl` turns them into the uapi's results.
    """

    def __init__(self, cpu: Processor, mgr: EpcManager, owner: DriverOwner, kind: int) -> None:
        self.cpu = cpu
        self.mgr = mgr
        self.owner = owner
        self.kind = kind
        self.sgx2 = cpu.sgx2
        self.leaks = 0
        self.last_eldu = 0   # the last content-mode ELDU's result (what the leaf returned)
        self.last_fault = 0  # what the last fault did (VM_FAULT_* | FAULT_*)
        # The sealed page ELDU reads from the backing file: ciphertext, then MAC.
        self._sealed_bytes = memoryview(bytearray(SEALED_SIZE))
        self.attributes: dict[int, int] = {}
        self._record_limit: dict[int, int] = {}
        self.attributes_mask: dict[int, int] = {}
        self.einit_result: dict[int, int] = {}
        self.current_e = -1
        owner.driver = self

    @property
    def ds(self) -> DState:
        return self.owner.state

    # -------------------------------------------------------------- helpers
    def ep_of(self, e: int, addr: int) -> int:
        """Index in ``ep_*`` of the enclave page at ``addr`` (which must be in ELRANGE)."""
        # The row's cells directly, not through the column views: every access of the
        # Python API comes here.
        encl = self.ds.encl
        index = (addr - int(encl[e, E_BASE])) >> 12
        if index >= int(encl[e, E_NROWS]):
            raise IndexError(f"page {index} of enclave {e} is past the "
                             f"{int(encl[e, E_NROWS])} page records kept for it "
                             f"(SgxDriver.limit_records)")
        return int(encl[e, E_FIRST]) + index

    def limit_records(self, e: int, npages: int) -> None:
        """Keep page records for the first ``npages`` pages of ``e``'s ELRANGE only, before
        its ECREATE. The kernel's page array is sparse; the model's is dense over ELRANGE,
        which a power of two can make twice the pages an enclave uses: the replay, which
        knows its pages, keeps records for those alone."""
        self._record_limit[e] = npages

    def in_elrange(self, e: int, addr: int) -> bool:
        encl = self.ds.encl
        base = int(encl[e, E_BASE])
        return base <= addr < base + int(encl[e, E_SIZE])

    def flags(self, e: int) -> int:
        return int(self.ds.e_flags[e])

    def _free(self, page: int) -> None:
        if self.mgr.free(page) != 0:
            self.leaks += 1

    # -------------------------------------------------------------- VA pages
    @property
    def rules(self) -> DriverRules:
        """The compiled paths for the manager as it is now (a cgroup attached later
        assembles it anew)."""
        return driver_rules(self.mgr.fns, self.kind)

    def _call(self, rule: Any, *args: Any) -> int:
        """Run a compiled rule with a free row in each table it may take one from; an
        allocation's -ENOMEM tries the manager's OOM hook and runs the rule again."""
        while True:
            self.owner.reserve_va_rows(1)
            rc = int(rule(self.mgr.owner_states(), self.mgr.ms, self.cpu.st, *args))
            self.mgr._sync_owners()
            if rc == -ENOMEM and self.mgr.on_enomem is not None and self.mgr.on_enomem():
                continue
            return rc

    def grow(self, e: int, reclaim: bool) -> int:
        """``sgx_encl_grow``: a new VA page every 512 pages that may need a slot.

        Returns the new VA id, -1 when none was needed, or -errno.
        """
        return self._call(self.rules.grow, e, reclaim)

    def shrink(self, e: int, va: int) -> None:
        self.ds.e_page_cnt[e] -= 1
        if va != NONE:
            self._free(self.owner.drop_va(va))

    # -------------------------------------------------------------- lifecycle
    def open(self) -> int:
        """``sgx_open``: a new enclave with one reference (the file's)."""
        ret = self.mgr.sgx_inc_usage_count()
        if ret:
            raise OSError(-ret, f"open /dev/sgx_enclave: {os.strerror(-ret)} (EUPDATESVN)")
        e = self.owner.new_enclave()
        self.ds.e_ref[e] = 1
        self.ds.e_cg[e] = self.mgr.ms.p[P_CG]
        return e

    def _current(self, e: int) -> None:
        """The enclave's process is ``current``: its pages are charged to its cgroup."""
        self.mgr.ms.p[P_CG] = self.ds.e_cg[e]
        self.current_e = e

    def oom_kill(self, cgroups: set[int]) -> bool:
        """The EPC OOM killer of the v2-v5 cgroup series (dropped in v6), as an option.

        Picks the live enclave of ``cgroups`` holding the most EPC pages (not the one
        allocating now), marks it dead, zaps and frees every page it has, SECS and VA
        pages included, and keeps its row until its file is closed. Its threads get
        SIGBUS at their next fault. Returns whether an enclave was torn down.
        """
        ds = self.ds
        best, most = -1, 0
        for e in range(ds.e_flags.shape[0]):
            if (e == self.current_e or int(ds.e_cg[e]) not in cgroups
                    or not ds.e_flags[e] & SGX_ENCL_CREATED or ds.e_flags[e] & SGX_ENCL_DEAD
                    or ds.e_ref[e] <= 0):
                continue
            first, n = int(ds.e_first[e]), int(ds.e_nrows[e])
            held = int((ds.ep_epc[first:first + n] >= 0).sum()) + int(ds.e_nva[e]) + int(
                ds.e_secs[e] != NONE)
            if held > most:
                best, most = e, held
        if best < 0:
            return False
        self.teardown(best)
        return True

    def teardown(self, e: int) -> None:
        """Free every EPC page of ``e`` now; the row stays until :meth:`release`."""
        self.ds.e_flags[e] |= SGX_ENCL_DEAD
        self._free_epc_pages(e)

    def _free_epc_pages(self, e: int) -> None:
        """Every EPC page of ``e``: its pages, then its SECS (a leak if children remain),
        then its VA pages."""
        ds = self.ds
        first, n = int(ds.e_first[e]), int(ds.e_nrows[e])
        for ep in np.nonzero(ds.ep_flags[first:first + n] & EP_EXISTS)[0]:
            self.remove_page(e, first + int(ep))
        if ds.e_secs[e] != NONE:
            if ds.e_child[e] == 0:
                self._free(int(ds.e_secs[e]))
            else:
                self.leaks += 1
            ds.e_secs[e] = NONE
        elif ds.e_secs_va[e] != NONE:
            # The SECS followed its last child out: its slot and its backing go with the
            # enclave (the backing is the enclave file's shmem, charged to its memcg).
            sgx_free_va_slot(ds, e, int(ds.e_secs_va[e]), int(ds.e_secs_slot[e]), False)
            backing_drop(ds, self.mgr.ms, e, int(secs_pcmd_index(ds, e)))
            ds.e_secs_va[e] = NONE
        for va in self.owner.va_pages(e):
            self._free(self.owner.drop_va(va))

    def create(self, e: int, raw_secs: bytes) -> int:
        """``sgx_encl_create``."""
        from epcsim.arch import Attribute, Secs

        ds = self.ds
        if self.flags(e) & SGX_ENCL_CREATED:
            return -22
        self._current(e)
        secs = Secs.unpack(raw_secs)
        va = self.grow(e, True)
        if va < NONE:
            return va
        epc = self.mgr.alloc(self.kind, e, True)
        if epc < 0:
            self.shrink(e, va)
            return epc
        ok = self.cpu.secs_acceptable(secs)
        try:
            self.cpu.ecreate_page(epc, secs, raw_secs, ok=ok, context=self.cpu.page_addr(epc))
        except Exception:
            self._free(epc)
            self.shrink(e, va)
            return -5  # -EIO: the hardware refused the SECS
        ds.e_secs[e] = epc
        ds.e_base[e] = secs.baseaddr
        ds.e_size[e] = secs.size
        ds.e_eid[e] = self.cpu.secs_info(self.cpu.page_addr(epc))["eid"]
        ds.e_flags[e] |= SGX_ENCL_CREATED | (SGX_ENCL_DEBUG if secs.attributes
                                              & Attribute.DEBUG else 0)
        self.attributes[e] = secs.attributes
        self.attributes_mask[e] = int(Attribute.DEBUG | Attribute.MODE64BIT | Attribute.KSS
                                      | Attribute.AEXNOTIFY)
        self.owner.reserve_pages(e, min(secs.size >> 12,
                                        self._record_limit.pop(e, secs.size >> 12)))
        self.owner.backing[e] = Backing(secs.size, self.owner.backing_dir)
        return 0

    def add_page(self, e: int, offset: int, data: bytes, secinfo: int, measure: bool) -> int:
        """``sgx_encl_add_page``: EADD (and 16 EEXTENDs) of one page."""
        from epcsim.kernel.mm import PROT_READ, PROT_WRITE

        ds = self.ds
        ep = int(ds.e_first[e]) + (offset >> 12)
        if ds.ep_flags[ep] & EP_EXISTS:
            return -16  # -EBUSY: an entry already exists at that address
        self._current(e)
        epc = self.mgr.alloc(self.kind, ep, True)
        if epc < 0:
            return epc
        va = self.grow(e, True)
        if va < NONE:
            self._free(epc)
            return va
        secs = int(ds.e_secs[e])
        lin = int(ds.e_base[e]) + offset
        try:
            self.cpu.eadd_page(epc, secs, lin, secinfo, data)
        except Exception:
            self._free(epc)
            self.shrink(e, va)
            return -5
        pt = (secinfo >> 8) & 0xFF
        ds.ep_flags[ep] = EP_EXISTS
        ds.ep_type[ep] = pt
        ds.ep_epc[ep] = epc
        ds.ep_prot[ep] = (PROT_READ | PROT_WRITE) if pt == PageType.TCS else secinfo & 0x7
        ds.e_child[e] += 1
        if measure:
            try:
                for off in range(0, PAGE_SIZE, 256):
                    self.cpu.eextend_page(secs, epc, off)
            except Exception:
                ds.ep_flags[ep] = 0
                ds.ep_epc[ep] = NONE
                ds.e_child[e] -= 1
                self._free(epc)
                return -5
        self.mgr.mark_reclaimable(epc)
        return 0

    def init(self, e: int, sigstruct: bytes) -> int:
        """``sgx_encl_init``: EINIT with the launch-control MSRs set to the signer."""
        from epcsim.arch import SgxReturn, SigStruct
        from epcsim.hw.crypto import mrsigner

        if not self.flags(e) & SGX_ENCL_CREATED or self.flags(e) & SGX_ENCL_INITIALIZED:
            return -22
        sig = SigStruct.unpack(sigstruct)
        if sig.vendor not in (0, 0x8086):
            return -22
        attrs, mask = self.attributes[e], self.attributes_mask[e]
        if attrs & ~mask:
            return -13  # -EACCES: e.g. PROVISIONKEY without SGX_IOC_ENCLAVE_PROVISION
        reserved = 0xFFFFFFFFFFFFFFFF & ~0x7FF | (1 << 3) | (1 << 8) | (1 << 9)
        if sig.attributes & sig.attributemask & reserved or sig.miscselect & sig.miscmask & ~1:
            return -22
        # XFRM likewise; the processor supports legacy XFRM (x87 | SSE) only.
        if sig.xfrm & sig.xfrmmask & ~0x3:
            return -22
        secs = int(self.ds.e_secs[e])
        rc = SgxReturn.SGX_UNMASKED_EVENT
        try:
            for _ in range(SGX_EINIT_SLEEP_COUNT):
                for _ in range(SGX_EINIT_SPIN_COUNT):
                    self.cpu.lepubkeyhash = mrsigner(sig.modulus)
                    rc = self.cpu.einit_page(secs, sigstruct)
                    if rc != SgxReturn.SGX_UNMASKED_EVENT:
                        break
                if rc != SgxReturn.SGX_UNMASKED_EVENT:
                    break
        except Exception:
            return -5
        if rc != 0:
            self.einit_result[e] = int(rc)
            return -1   # -EPERM
        self.ds.e_flags[e] |= SGX_ENCL_INITIALIZED
        return 0

    # -------------------------------------------------------------- loading pages
    def _eldu(self, epc: int, va_epc: int, slot: int, secs: int, b: Backing, index: int,
              linaddr: int, aux: int) -> int:
        """ELDU of what backing page ``index`` holds now; the leaf's result, or -vector if it
        faulted.

        The backing store is the OS's memory and may hold anything (a PCMD naming another page
        type makes ELDU fault on the SECS operand): the kernel's ``encls_faulted`` fixup turns
        a fault into an error (-EFAULT) rather than an oops, and so does this.
        """
        pcmd = b.load_into(index, self._sealed_bytes)
        if pcmd is None:
            rc = -1
        else:
            secinfo, eid = pcmd
            mac = self._sealed_bytes[PAGE_SIZE:]
            try:
                rc = int(self.cpu.eldu_sealed(epc, va_epc, slot, secs, secinfo, eid, linaddr,
                                              mac, self._sealed_bytes, aux=aux))
            except ArchFault as f:
                rc = -f.vector
        self.last_eldu = rc
        return rc

    def _load_content(self, e: int, ep: int) -> int:
        """Content mode's half of a load the compiled rule asked for (``VM_FAULT_LOAD`` or
        ELOAD): ELDU of the sealed page from the backing file into the page the rule
        allocated; 0, or -EFAULT (the page is freed again)."""
        ds = self.ds
        epc = int(ds.dp[D_LOAD_PAGE])
        b = self.owner.backing[e]
        if ds.dp[D_LOAD_SECS]:
            va = int(ds.e_secs_va[e])
            rc = self._eldu(epc, int(ds.va_epc[va]), int(ds.e_secs_slot[e]), NONE, b,
                            b.secs_index(), 0, 0)
            if rc == 0:
                b.truncate(b.secs_index())
                secs_eldu_done(ds, self.mgr.ms, e, epc)
                ds.dp[D_DID] |= FAULT_SECS
        else:
            index = ep - int(ds.e_first[e])
            va = int(ds.ep_va[ep])
            # PAGEINFO.LINADDR comes from the page's place in ELRANGE, never from the file.
            rc = self._eldu(epc, int(ds.va_epc[va]), int(ds.ep_slot[ep]), int(ds.e_secs[e]),
                            b, index, int(ds.e_base[e]) + (index << 12), int(ds.ep_aux[ep]))
            if rc == 0:
                b.truncate(index)
                eldu_done(ds, self.mgr.ms, self.cpu.st, ep, epc)
                ds.dp[D_DID] |= FAULT_ELDU
        if rc != 0:
            self._free(epc)
            return -14
        return 0

    def _unlock(self, e: int) -> None:
        encl_unlock(self.ds, self.mgr.ms, self.cpu.st, e)
        self.mgr._sync_owners()

    def load_secs(self, e: int) -> int:
        """``sgx_encl_load_secs``: reload an evicted SECS before any child; 0 or -errno."""
        self._current(e)
        while True:
            rc = self._call(self.rules.load_secs, e)
            if rc != ELOAD:
                return rc
            rc = self._load_content(e, NONE)
            if rc < 0:
                self._unlock(e)
                return rc

    def load_page(self, e: int, ep: int) -> int:
        """``__sgx_encl_load_page``: the EPC page of a resident page, or ELDU it back."""
        self._current(e)
        while True:
            rc = self._call(self.rules.load_page, e, ep)
            if rc != ELOAD:
                return rc
            rc = self._load_content(e, ep)
            if rc < 0:
                self._unlock(e)
                return rc

    def vma_fault(self, e: int, addr: int, vma_prot: int) -> int:
        """``sgx_vma_fault``: make the PTE for ``addr`` present, or say why not
        (VM_FAULT_NOPAGE, VM_FAULT_RETRY or VM_FAULT_SIGBUS)."""
        if e < 0 or self.flags(e) & SGX_ENCL_DEAD:
            return VM_FAULT_SIGBUS
        self.current_e = e
        ep = self.ep_of(e, addr)
        first = True
        while True:
            code = self._call(self.rules.vma_fault, e, ep, vma_prot, first)
            first = False
            self.last_fault = code
            outcome = code & VM_FAULT_MASK
            if outcome == VM_FAULT_LOAD:
                if self._load_content(e, ep) < 0:
                    self._unlock(e)
                    if self.ds.ep_flags[ep] & EP_EXISTS:
                        self.ds.e_cnt[e, EC_SIGBUS] += 1
                    return VM_FAULT_SIGBUS
                continue
            if outcome == VM_FAULT_ENOMEM:
                if self.mgr.on_enomem is not None and self.mgr.on_enomem():
                    continue
                # -ENOMEM that no OOM hook helped: SIGBUS, counted on the load path as any
                # failed load is.
                if self.ds.ep_flags[ep] & EP_EXISTS:
                    self.ds.e_cnt[e, EC_SIGBUS] += 1
                return VM_FAULT_SIGBUS
            if outcome == VM_FAULT_AGAIN:
                continue
            if outcome == VM_FAULT_NOROW:   # pragma: no cover - _call reserves the rows
                raise RuntimeError("a table of the driver was full during a fault")
            return outcome

    # -------------------------------------------------------------- SGX2 helpers
    def etrack(self, e: int) -> int:
        """``sgx_enclave_etrack``: ETRACK, IPI and retry on failure; IPI on success."""
        from epcsim.kernel.main import count_etrack

        st = self.cpu.st
        secs = int(self.ds.e_secs[e])
        row = int(st.row[secs])
        count_etrack(self.mgr.ms)
        if L.etrack(st, secs, L.CTX_HOST) != 0:
            ipi_enclave_cpus(st, self.mgr.ms, row)
            count_etrack(self.mgr.ms)
            if L.etrack(st, secs, L.CTX_HOST) != 0:
                return -14
        ipi_enclave_cpus(st, self.mgr.ms, row)
        return 0

    def remove_page(self, e: int, ep: int) -> int:
        """EREMOVE a resident enclave page and forget it (REMOVE_PAGES, release)."""
        ds = self.ds
        epc = int(ds.ep_epc[ep])
        if epc != NONE:
            if self.mgr.unmark_reclaimable(epc) != 0:
                return -16
            ds.ep_flags[ep] &= ~np.uint8(EP_PRESENT)
            if self.mgr.free(epc) != 0:
                self.leaks += 1
            ds.e_child[e] -= 1
        elif ds.ep_flags[ep] & EP_EVICTED:
            e_ = int(ds.ep_encl[ep])
            sgx_free_va_slot(ds, e_, int(ds.ep_va[ep]), int(ds.ep_slot[ep]), False)
            backing_drop(ds, self.mgr.ms, e_, ep - int(ds.e_first[e_]))
            self.owner.backing[e_].truncate(ep - int(ds.e_first[e_]))
        ds.ep_flags[ep] = 0
        ds.ep_epc[ep] = NONE
        ds.ep_va_slot[ep] = NONE
        return 0

    # -------------------------------------------------------------- release
    def release(self, e: int) -> int:
        """``sgx_encl_release``: EREMOVE every page, the SECS last, free the VA pages.

        Returns the number of EPC pages leaked (EREMOVE failed).
        """
        ds = self.ds
        before = self.leaks
        ds.e_flags[e] |= SGX_ENCL_DEAD
        if self.flags(e) & SGX_ENCL_CREATED:
            self._free_epc_pages(e)
            self.owner.release_pages(e, int(ds.e_nrows[e]))
        ds.e_ref[e] = 0
        self.owner.free_enclave(e)
        self.attributes.pop(e, None)
        self.mgr.sgx_dec_usage_count()
        return self.leaks - before

    def counters(self, e: int) -> dict[str, int]:
        ds = self.ds
        out = {name: int(ds.e_cnt[e, i]) for i, name in enumerate(ENCL_COUNTERS)}
        first, n = int(ds.e_first[e]), int(ds.e_nrows[e])
        flags = ds.ep_flags[first:first + n]
        out["resident"] = int((ds.ep_epc[first:first + n] >= 0).sum())
        out["evicted"] = int(((flags & EP_EVICTED) != 0).sum())
        out["va_pages"] = int(ds.e_nva[e])
        out["backing_bytes"] = (int(ds.e_evicted[e]) + int(ds.e_pcmd_pages[e])) * PAGE_SIZE
        return out
