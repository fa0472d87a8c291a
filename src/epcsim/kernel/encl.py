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

from typing import Any, NamedTuple

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType
from epcsim.dlist import dl_del, dl_push_head, dl_push_tail
from epcsim.hw import encls as L
from epcsim.hw.cpu import ArchFault, Processor
from epcsim.hw.crypto import SEALED_SIZE
from epcsim.hw.epc import EPCM_SECINFO_MASK
from epcsim.jit import njit, njit_inline, prefetch, prefetch_last, trailing_zeros
from epcsim.kernel.backing import Backing
from epcsim.kernel.cgroup import mem_cgroup_charge, mem_cgroup_may_charge
from epcsim.kernel.main import (
    C_ELDU,
    P_CG,
    EpcManager,
    count_etrack,
    count_ewb,
    count_ipi,
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

# Enclave-page flags.
EP_EXISTS = 1 << 0             # an entry in page_array
EP_BEING_RECLAIMED = 1 << 1    # SGX_ENCL_PAGE_BEING_RECLAIMED
EP_PRESENT = 1 << 2            # the PTE maps the page (zapped by the reclaimer)
EP_YOUNG = 1 << 3              # the PTE's accessed bit
EP_EVICTED = 1 << 4            # the page's copy is in the backing store

SGX_VA_SLOT_COUNT = 512
MAX_ENCLAVES = 0xFFFF  # ep_encl is u16
NONE = -1


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


class DState(NamedTuple):
    # enclaves
    e_flags: np.ndarray     # i64
    e_ref: np.ndarray       # i64 kref
    e_base: np.ndarray      # i64
    e_size: np.ndarray      # i64
    e_first: np.ndarray     # i64 first index of the enclave's pages in ep_*
    e_secs: np.ndarray      # i64 EPC page of the SECS, NONE while evicted
    e_secs_va: np.ndarray   # i64 VA id holding the SECS's version
    e_secs_slot: np.ndarray
    e_secs_mac: np.ndarray  # i64 PCMD fields of the evicted SECS
    e_eid: np.ndarray       # i64 the SECS's EID
    e_child: np.ndarray     # i64 secs_child_cnt
    e_page_cnt: np.ndarray  # i64 page_cnt (VA provisioning)
    e_va_head: np.ndarray   # i64 VA list
    e_va_tail: np.ndarray
    e_nva: np.ndarray       # i64 VA pages
    e_evicted: np.ndarray   # i64 pages in the backing store (contents)
    e_pcmd_pages: np.ndarray  # i64 backing pages holding at least one PCMD
    e_cnt: np.ndarray       # i64 [enclaves, EC_LEN]
    e_cg: np.ndarray        # i64 the cgroup of the process that opened the enclave
    # enclave pages: one packed EP_RECORD each (epc i32, desc u8, type u8, encl u16,
    # va i32, slot u16, secinfo u8, aux u8, prot u8, mac i64), a numpy record array so
    # that ``ds.ep[i].desc`` reads the same compiled and interpreted; the Python side
    # mostly uses the ``ep_*`` views below
    ep: np.ndarray
    pcmd_use: np.ndarray    # u8 per 32 entries of ep_* (one PCMD backing page): PCMDs in use
    # VA pages
    va_epc: np.ndarray      # i64
    va_encl: np.ndarray     # i64
    va_next: np.ndarray     # i64
    va_prev: np.ndarray     # i64
    va_used: np.ndarray     # i64
    va_bits: np.ndarray     # u64 [nva, 8]
    # scratch and queues
    out: np.ndarray         # u64 EWB record
    sq: np.ndarray          # i64 [cap, SQ_REC + W_LEN]
    sq_n: np.ndarray        # i64 [1]

    # A field of every enclave page, as a strided view of the records (Python side).
    @property
    def ep_epc(self) -> np.ndarray:
        return self.ep["epc"]          # NONE while not in the EPC

    @property
    def ep_flags(self) -> np.ndarray:
        # EP_* bits; the record calls them desc, as the kernel's sgx_encl_page does (and
        # a numpy record's ``flags`` attribute is the array flags, not a field).
        return self.ep["desc"]

    @property
    def ep_type(self) -> np.ndarray:
        return self.ep["type"]         # PageType

    @property
    def ep_encl(self) -> np.ndarray:
        return self.ep["encl"]         # enclave row (new_enclave keeps them below 65535)

    @property
    def ep_va(self) -> np.ndarray:
        return self.ep["va"]           # VA id holding the version while evicted

    @property
    def ep_slot(self) -> np.ndarray:
        return self.ep["slot"]

    @property
    def ep_secinfo(self) -> np.ndarray:
        return self.ep["secinfo"]      # PCMD.SECINFO flags (bits 0-5); the type byte is type

    @property
    def ep_aux(self) -> np.ndarray:
        return self.ep["aux"]          # state sealed with the page (TCS)

    @property
    def ep_prot(self) -> np.ndarray:
        return self.ep["prot"]         # vm_max_prot_bits (PROT_READ|WRITE|EXEC)

    @property
    def ep_mac(self) -> np.ndarray:
        return self.ep["mac"]          # PCMD.MAC (metadata mode)


# ----------------------------------------------------------------------------- VA slots

@njit_inline
def va_list_del(ds: DState, e: int, va: int) -> None:
    dl_del(ds.e_va_head, ds.e_va_tail, ds.va_next, ds.va_prev, e, va)


@njit_inline
def va_list_add_head(ds: DState, e: int, va: int) -> None:
    dl_push_head(ds.e_va_head, ds.e_va_tail, ds.va_next, ds.va_prev, e, va)


@njit_inline
def va_list_add_tail(ds: DState, e: int, va: int) -> None:
    dl_push_tail(ds.e_va_head, ds.e_va_tail, ds.va_next, ds.va_prev, e, va)


@njit_inline
def sgx_alloc_va_slot(ds: DState, e: int) -> tuple[int, int]:
    """The first free slot of the first VA page; a page that fills moves to the tail."""
    va = ds.e_va_head[e]
    if va == NONE:
        return NONE, NONE
    for w in range(8):
        word = ds.va_bits[va, w]
        if word != np.uint64(0xFFFFFFFFFFFFFFFF):
            b = np.int64(trailing_zeros(~word))
            ds.va_bits[va, w] = word | (np.uint64(1) << np.uint64(b))
            ds.va_used[va] += 1
            if ds.va_used[va] == SGX_VA_SLOT_COUNT:
                va_list_del(ds, e, va)
                va_list_add_tail(ds, e, va)
            return va, w * 64 + b
    return NONE, NONE


@njit_inline
def sgx_free_va_slot(ds: DState, e: int, va: int, slot: int, to_head: bool) -> None:
    w = slot >> 6
    b = np.uint64(slot & 63)
    ds.va_bits[va, w] &= ~(np.uint64(1) << b)
    ds.va_used[va] -= 1
    if to_head:
        va_list_del(ds, e, va)
        va_list_add_head(ds, e, va)


@njit
def va_pages_add(ds: DState, e: int, vas: np.ndarray, epcs: np.ndarray) -> None:
    """Enclave ``e``'s new VA pages: VA id ``vas[i]`` at EPC page ``epcs[i]``, empty."""
    for i in range(vas.shape[0]):
        va = vas[i]
        ds.va_epc[va] = epcs[i]
        ds.va_encl[va] = e
        ds.va_used[va] = 0
        ds.va_bits[va, :] = 0
        va_list_add_head(ds, e, va)
        ds.e_nva[e] += 1


# ----------------------------------------------------------------------------- backing

@njit_inline
def pcmd_index(ds: DState, e: int, index: int) -> int:
    """The enclave's PCMD backing page of page ``index`` (32 PCMDs share one page).

    Enclave ranges start and end on multiples of 32 entries, so one counter per group of
    32 entries of ``ep_*`` serves every enclave.
    """
    return (ds.e_first[e] + index) >> 5


@njit_inline
def backing_store(ds: DState, ms: Any, e: int, index: int) -> None:
    ds.e_evicted[e] += 1
    pi = pcmd_index(ds, e, index)
    grown = 1
    if ds.pcmd_use[pi] == 0:
        ds.e_pcmd_pages[e] += 1
        grown = 2
    ds.pcmd_use[pi] += 1
    # The backing is shmem of the enclave's process: charged to its memory cgroup.
    mem_cgroup_charge(ms, ds.e_cg[e], grown)


@njit_inline
def backing_drop(ds: DState, ms: Any, e: int, index: int) -> None:
    """After ELDU: the contents page is truncated, and the PCMD page once it is all zero."""
    ds.e_evicted[e] -= 1
    pi = pcmd_index(ds, e, index)
    ds.pcmd_use[pi] -= 1
    shrunk = 1
    if ds.pcmd_use[pi] == 0:
        ds.e_pcmd_pages[e] -= 1
        shrunk = 2
    mem_cgroup_charge(ms, ds.e_cg[e], -shrunk)


# ----------------------------------------------------------------------------- EWB

@njit_inline
def ipi_enclave_cpus(st: Any, ms: Any, e_row: int) -> None:
    """IPI every CPU that may run the enclave: each LP inside takes an AEX."""
    count_ipi(ms)
    for lp in range(st.lp_row.shape[0]):
        if st.lp_row[lp] == e_row:
            L.aex(st, lp)


@njit_inline
def sgx_encl_ewb(ds: DState, ms: Any, st: Any, e: int, epc: int, secs: int) -> tuple[int, int, int]:
    """EWB with the kernel's escalation: plain, after ETRACK, after IPIs.

    Returns (result, VA id, slot). The slot is freed again when EWB fails.
    """
    va, slot = sgx_alloc_va_slot(ds, e)
    if va == NONE:
        return -1, NONE, NONE
    va_epc = ds.va_epc[va]
    rc = L.ewb(st, epc, va_epc, slot, L.CTX_HOST, ds.out)
    if rc == L.NOT_TRACKED:
        L.etrack(st, secs, L.CTX_HOST)
        count_etrack(ms)
        rc = L.ewb(st, epc, va_epc, slot, L.CTX_HOST, ds.out)
        if rc == L.NOT_TRACKED:
            # The mask is computed after ETRACK: CPUs entering later join the new epoch.
            ipi_enclave_cpus(st, ms, np.int64(st.row[secs]))
            rc = L.ewb(st, epc, va_epc, slot, L.CTX_HOST, ds.out)
    count_ewb(ms)
    if rc != 0 and rc != L.VA_SLOT_OCCUPIED:
        sgx_free_va_slot(ds, e, va, slot, False)
        return rc, NONE, NONE
    return rc, va, slot


@njit_inline
def queue_seal(ds: DState, epc: int, ep: int, secs_of: int) -> None:
    if sealing(ds):
        n = ds.sq_n[0]
        ds.sq[n, SQ_EPC] = epc
        ds.sq[n, SQ_EP] = ep
        ds.sq[n, SQ_SECS_OF] = secs_of
        for i in range(L.W_LEN):
            ds.sq[n, SQ_REC + i] = np.int64(ds.out[i])
        ds.sq_n[0] = n + 1


@njit_inline
def sealing(ds: DState) -> bool:
    """Content mode: the queue has room (metadata mode gives it one unused row)."""
    return ds.sq.shape[0] > 1


@njit
def encl_ewb_secs(ds: DState, ms: Any, st: Any, e: int) -> None:
    """The SECS follows its last child out (initialised enclaves only)."""
    secs = ds.e_secs[e]
    rc, va, slot = sgx_encl_ewb(ds, ms, st, e, secs, secs)
    if rc == 0 or rc == L.VA_SLOT_OCCUPIED:
        ds.e_secs_va[e] = va
        ds.e_secs_slot[e] = slot
        ds.e_secs_mac[e] = np.int64(ds.out[L.W_MAC])
        ds.e_cnt[e, EC_SECS_EWB] += 1
        # Its backing: contents at ``size``, PCMD at page index size/4096 (§1.5).
        backing_store(ds, ms, e, ds.e_size[e] >> 12)
        queue_seal(ds, secs, NONE, e)
        # EWB left the page invalid; EREMOVE of an invalid page is a no-op, then free.
        sgx_encl_free_epc_page(ms, st, secs)
        ds.e_secs[e] = NONE


# ----------------------------------------------------------------------------- the owner

@njit_inline
def drv_get(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    e = ds.ep[oid].encl
    if (ds.e_flags[e] & SGX_ENCL_DEAD) != 0 or ds.e_ref[e] <= 0:
        return 0
    ds.e_ref[e] += 1
    return 1


@njit_inline
def drv_put(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    ds.e_ref[ds.ep[oid].encl] -= 1
    return 0


@njit_inline
def drv_reclaim(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """Age by the PTE accessed bit (test and clear); refuse young pages; reserve the rest."""
    if arg == 1 and (ds.ep[oid].desc & EP_YOUNG) != 0:
        ds.ep[oid].desc &= ~np.uint8(EP_YOUNG)
        return 0
    # sgx_encl_alloc_backing: a contents page and perhaps a PCMD page, or skip the page.
    if not mem_cgroup_may_charge(ms, ds.e_cg[ds.ep[oid].encl], 2):
        return 0
    ds.ep[oid].desc |= np.uint8(EP_BEING_RECLAIMED)
    return 1


@njit_inline
def drv_block(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """Zap the PTEs, then EBLOCK (failure only warns in the kernel)."""
    ds.ep[oid].desc &= ~np.uint8(EP_PRESENT | EP_YOUNG)
    return L.eblock(st, page)


@njit_inline
def drv_write(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """``sgx_reclaimer_write``: EWB, bookkeeping, and the SECS after its last child."""
    e = np.int64(ds.ep[oid].encl)
    ds.ep[oid].desc &= ~np.uint8(EP_BEING_RECLAIMED)
    rc, va, slot = sgx_encl_ewb(ds, ms, st, e, page, ds.e_secs[e])
    if rc == 0 or rc == L.VA_SLOT_OCCUPIED:
        ds.ep[oid].va = va
        ds.ep[oid].slot = slot
        ds.ep[oid].mac = np.int64(ds.out[L.W_MAC])
        ds.ep[oid].secinfo = np.int64(ds.out[L.W_SECINFO]) & EPCM_SECINFO_MASK
        ds.ep[oid].aux = np.int64(ds.out[L.W_AUX])
        ds.ep[oid].desc |= np.uint8(EP_EVICTED)
        backing_store(ds, ms, e, oid - ds.e_first[e])
        ds.e_cnt[e, EC_EWB] += 1
        queue_seal(ds, page, oid, NONE)
    ds.ep[oid].epc = NONE
    ds.e_child[e] -= 1
    if ds.e_child[e] == 0 and (ds.e_flags[e] & SGX_ENCL_INITIALIZED) != 0:
        encl_ewb_secs(ds, ms, st, e)
    # A failed EWB still frees the page (the kernel WARNs): "should never happen".
    return WRITE_FREED


@njit_inline
def drv_prefetch(ds: DState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """The page's record: its first bytes (flags, enclave) and its last (the MAC), the two
    lines a record may span."""
    prefetch(ds.ep, oid)
    prefetch_last(ds.ep, oid)
    return 0


DRIVER_OPS = OwnerOps(drv_get, drv_put, drv_reclaim, drv_block, drv_write, drv_prefetch)


# ----------------------------------------------------------------------------- ELDU

@njit_inline
def eldu_done(ds: DState, ms: Any, st: Any, ep: int, epc: int) -> None:
    """Bookkeeping after a child's ELDU: ``__sgx_encl_eldu`` and ``__sgx_encl_load_page``."""
    e = np.int64(ds.ep[ep].encl)
    sgx_free_va_slot(ds, e, np.int64(ds.ep[ep].va), np.int64(ds.ep[ep].slot), True)
    backing_drop(ds, ms, e, ep - ds.e_first[e])
    ds.ep[ep].va = NONE
    ds.ep[ep].desc &= ~np.uint8(EP_EVICTED)
    ds.ep[ep].epc = epc
    ds.e_child[e] += 1
    ds.e_cnt[e, EC_ELDU] += 1
    ms.cnt[C_ELDU] += 1
    ms.oid[epc] = ep
    sgx_mark_page_reclaimable(ms, epc)


@njit
def secs_eldu_done(ds: DState, ms: Any, e: int, epc: int) -> None:
    sgx_free_va_slot(ds, e, ds.e_secs_va[e], ds.e_secs_slot[e], True)
    backing_drop(ds, ms, e, ds.e_size[e] >> 12)
    ds.e_secs[e] = epc
    ds.e_secs_va[e] = NONE
    ds.e_cnt[e, EC_SECS_ELDU] += 1
    ms.cnt[C_ELDU] += 1
    ms.oid[epc] = e


@njit_inline
def eldu_metadata(ds: DState, ms: Any, st: Any, ep: int, epc: int) -> int:
    """ELDU of a child in metadata mode, then the bookkeeping. Returns the leaf result."""
    e = np.int64(ds.ep[ep].encl)
    secs = ds.e_secs[e]
    lin = ds.e_base[e] + ((ep - ds.e_first[e]) << 12)
    secinfo = (np.int64(ds.ep[ep].type) << 8) | np.int64(ds.ep[ep].secinfo)
    rc = L.eldu(st, epc, ds.va_epc[ds.ep[ep].va], np.int64(ds.ep[ep].slot), secs, lin,
                secinfo, ds.e_eid[e], ds.ep[ep].mac, np.int64(ds.ep[ep].aux),
                False, False, L.CTX_HOST, 0, -1)
    if rc == 0:
        eldu_done(ds, ms, st, ep, epc)
    return rc


@njit
def secs_eldu_metadata(ds: DState, ms: Any, st: Any, e: int, epc: int) -> int:
    secinfo = PageType.SECS << 8
    rc = L.eldu(st, epc, ds.va_epc[ds.e_secs_va[e]], ds.e_secs_slot[e], NONE, 0, secinfo,
                ds.e_eid[e], ds.e_secs_mac[e], 0, False, False, L.CTX_HOST, 0, -1)
    if rc == 0:
        secs_eldu_done(ds, ms, e, epc)
    return rc


# ----------------------------------------------------------------------------- Python side

def _grow(arr: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
    out = np.full((n,) + arr.shape[1:], fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


_E_FIELDS = {"e_flags": 0, "e_ref": 0, "e_base": 0, "e_size": 0, "e_first": 0, "e_secs": NONE,
             "e_secs_va": NONE, "e_secs_slot": NONE, "e_secs_mac": 0, "e_eid": 0, "e_child": 0,
             "e_page_cnt": 0, "e_va_head": NONE, "e_va_tail": NONE, "e_nva": 0,
             "e_evicted": 0, "e_pcmd_pages": 0, "e_cnt": 0, "e_cg": 0}
PCMDS_PER_PAGE = 32
# An enclave page's fields live in one packed 25-byte record, DState.ep. A fault reads the
# page's EPC index and flags, then its ELDU the type, SECINFO, aux, MAC and VA slot, and the
# reclaimer's get and age test the enclave and flags: in separate tables each of those was
# its own cache miss; in one record they share one or two lines. Packed (no padding), so the
# bytes per page are the same. Compiled code indexes the record table itself: the record's
# size is then a constant of the code, where a strided view of one field carries its stride
# at run time (a multiply, and a register or a reload, at every access).
# One row per field, in record order: name, type, value of a page not in use.
_EP_LAYOUT = (("epc", np.int32, NONE), ("desc", np.uint8, 0), ("type", np.uint8, 0),
              ("encl", np.uint16, 0), ("va", np.int32, NONE), ("slot", np.uint16, 0),
              ("secinfo", np.uint8, 0), ("aux", np.uint8, 0), ("prot", np.uint8, 0),
              ("mac", np.int64, 0))
EP_RECORD = np.dtype([(name, kind) for name, kind, _ in _EP_LAYOUT])
_VA_FIELDS = {"va_epc": NONE, "va_encl": NONE, "va_next": NONE, "va_prev": NONE, "va_used": 0,
              "va_bits": 0}


def _ep_empty() -> np.ndarray:
    one = np.zeros(1, EP_RECORD)
    for name, _, fill in _EP_LAYOUT:
        one[name] = fill
    return one.view(np.uint8)


# The bytes of a record not in use, which tables are filled from.
_EP_EMPTY = _ep_empty()


def ep_records(n: int) -> np.ndarray:
    """``n`` enclave-page records, each field at its empty value."""
    rec = np.empty(n, EP_RECORD).view(np.recarray)
    ep_clear(rec, 0, n)
    return rec


def ep_clear(rec: np.ndarray, start: int, stop: int) -> None:
    """Records ``start`` to ``stop`` of the table ``rec`` back to their empty values.

    The first record is written, then the records done so far are copied after themselves,
    doubling: a few dozen copies of contiguous bytes. Broadcasting the 25-byte record over
    the rows copied it record by record (33 M records, an enclave of 128 GiB, in 0.7 s;
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
        **{k: np.full(0, v, dtype=i64) for k, v in _E_FIELDS.items() if k != "e_cnt"},
        e_cnt=np.zeros((0, EC_LEN), dtype=i64),
        ep=ep_records(0),
        pcmd_use=np.zeros(1, np.uint8),
        va_epc=np.zeros(0, i64), va_encl=np.zeros(0, i64), va_next=np.zeros(0, i64),
        va_prev=np.zeros(0, i64), va_used=np.zeros(0, i64),
        va_bits=np.zeros((0, 8), dtype=np.uint64),
        out=np.zeros(L.W_LEN, dtype=np.uint64),
        # One compiled call writes back at most the EPC's worth of pages.
        sq=np.zeros((npages + 64 if content else 1, SQ_REC + L.W_LEN), dtype=i64),
        sq_n=np.zeros(1, dtype=i64),
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
        self._free_va: list[int] = []
        self._ranges: list[tuple[int, int]] = []   # free (start, length) in ep_*
        self._ep_top = 0
        self._sealed: np.ndarray | None = None     # pages being sealed, as AES-GCM output
        self._sealed_bytes = memoryview(b"")

    # -------------------------------------------------------------- table management
    def _replace(self, **kw: np.ndarray) -> None:
        self.state = self.state._replace(**kw)

    def _refill(self, free: list[int], fields: dict[str, int], least: int) -> None:
        """With no row left in ``free``, double the tables of ``fields`` (at least ``least``
        rows); the new rows are handed out in ascending order."""
        if free:
            return
        n = getattr(self.state, next(iter(fields))).shape[0]
        new = max(least, 2 * n)
        self._replace(**{k: _grow(getattr(self.state, k), new, v) for k, v in fields.items()})
        free.extend(range(new - 1, n - 1, -1))

    def new_enclave(self) -> int:
        self._refill(self._free_encl, _E_FIELDS, 8)
        if self._free_encl[-1] >= MAX_ENCLAVES:
            # ep_encl is u16: a row it cannot hold would alias another enclave.
            raise RuntimeError(f"at most {MAX_ENCLAVES} enclaves at once")
        e = self._free_encl.pop()
        for k, v in _E_FIELDS.items():
            getattr(self.state, k)[e] = v
        return e

    def reserve_pages(self, e: int, npages: int) -> None:
        """Give enclave ``e`` a dense range of ``npages`` enclave-page entries."""
        npages = -(-npages // PCMDS_PER_PAGE) * PCMDS_PER_PAGE
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
                self._replace(ep=rec, pcmd_use=_grow(self.state.pcmd_use,
                                                     new // PCMDS_PER_PAGE + 1))
                fresh = True    # the range's records were made empty just now
        sl = slice(start, start + npages)
        if not fresh:
            ep_clear(self.state.ep, start, start + npages)
        self.state.pcmd_use[start // PCMDS_PER_PAGE:(start + npages) // PCMDS_PER_PAGE] = 0
        self.state.ep_encl[sl] = e
        self.state.e_first[e] = start

    def release_pages(self, e: int, npages: int) -> None:
        npages = -(-npages // PCMDS_PER_PAGE) * PCMDS_PER_PAGE
        start = int(self.state.e_first[e])
        self.state.ep_flags[start:start + npages] = 0
        self._ranges.append((start, npages))

    def free_enclave(self, e: int) -> None:
        b = self.backing.pop(e, None)
        if b is not None:
            b.close()
        self._free_encl.append(e)

    def new_va(self, e: int, epc: int) -> int:
        return int(self.new_vas(e, np.array([epc], dtype=np.int64))[0])

    def new_vas(self, e: int, epcs: np.ndarray) -> np.ndarray:
        """VA ids for the VA pages at EPC pages ``epcs``, each put at the head of the
        enclave's list in turn (the last one first); one compiled call for them all."""
        vas = np.empty(len(epcs), dtype=np.int64)
        for i in range(len(epcs)):
            self._refill(self._free_va, _VA_FIELDS, 16)
            vas[i] = self._free_va.pop()
        va_pages_add(self.state, e, vas, np.ascontiguousarray(epcs, dtype=np.int64))
        return vas

    def drop_va(self, va: int) -> None:
        ds = self.state
        va_list_del(ds, int(ds.va_encl[va]), va)
        ds.e_nva[int(ds.va_encl[va])] -= 1
        ds.va_epc[va] = NONE
        ds.va_encl[va] = NONE
        self._free_va.append(va)

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

VM_FAULT_NOPAGE = 0     # fixed: the access is retried and succeeds
VM_FAULT_RETRY = 1      # -EBUSY: nothing changed, the access faults again (ksgxd frees pages)
VM_FAULT_SIGBUS = 2

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
        # The sealed page ELDU reads from the backing file: ciphertext, then MAC.
        self._sealed_bytes = memoryview(bytearray(SEALED_SIZE))
        self.attributes: dict[int, int] = {}
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
        return int(self.ds.e_first[e]) + ((addr - int(self.ds.e_base[e])) >> 12)

    def in_elrange(self, e: int, addr: int) -> bool:
        base, size = int(self.ds.e_base[e]), int(self.ds.e_size[e])
        return base <= addr < base + size

    def flags(self, e: int) -> int:
        return int(self.ds.e_flags[e])

    def _free(self, page: int) -> None:
        if self.mgr.free(page) != 0:
            self.leaks += 1

    # -------------------------------------------------------------- VA pages
    def grow(self, e: int, reclaim: bool) -> int:
        """``sgx_encl_grow``: a new VA page every 512 pages that may need a slot.

        Returns the new VA id, -1 when none was needed, or -errno.
        """
        ds = self.ds
        va = NONE
        if int(ds.e_page_cnt[e]) % SGX_VA_SLOT_COUNT == 0:
            epc = self.mgr.alloc(self.kind, e, reclaim)
            if epc < 0:
                return epc
            if self.cpu.epa_page(epc) != 0:  # pragma: no cover - EPA only faults
                self._free(epc)
                return -14
            va = self.owner.new_va(e, epc)
        self.ds.e_page_cnt[e] += 1
        return va

    def grow_many(self, e: int, n: int, reclaim: bool) -> int:
        """``n`` calls of :meth:`grow` at once: the VA pages ``n`` more pages need."""
        ds = self.ds
        self._current(e)
        have = int(ds.e_page_cnt[e])
        need = va_pages_for(have + n) - va_pages_for(have)
        self.cpu.reserve_va_rows(need)
        done = 0
        while done < need:
            # What the free lists hold in one call each for allocation, EPA and the VA list
            # (an enclave of 128 GiB needs 65 536 VA pages); past that one page at a time,
            # since each allocation may then reclaim.
            pages = self.mgr.alloc_free(self.kind, e, need - done)
            if pages.shape[0] == 0:
                epc = self.mgr.alloc(self.kind, e, reclaim)
                if epc < 0:
                    return epc
                pages = np.array([epc], dtype=np.int64)
            self.cpu.epa_pages(pages)
            self.owner.new_vas(e, pages)
            done += pages.shape[0]
        ds.e_page_cnt[e] = have + n
        return 0

    def shrink(self, e: int, va: int) -> None:
        self.ds.e_page_cnt[e] -= 1
        if va != NONE:
            epc = int(self.ds.va_epc[va])
            self.owner.drop_va(va)
            self._free(epc)

    # -------------------------------------------------------------- lifecycle
    def open(self) -> int:
        """``sgx_open``: a new enclave with one reference (the file's)."""
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
            first, n = int(ds.e_first[e]), int(ds.e_size[e]) >> 12
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
        first, n = int(ds.e_first[e]), int(ds.e_size[e]) >> 12
        for ep in np.nonzero(ds.ep_flags[first:first + n] & EP_EXISTS)[0]:
            self.remove_page(e, first + int(ep))
        if ds.e_secs[e] != NONE:
            if ds.e_child[e] == 0:
                self._free(int(ds.e_secs[e]))
            else:
                self.leaks += 1
            ds.e_secs[e] = NONE
        for va in self.owner.va_pages(e):
            epc = int(ds.va_epc[va])
            self.owner.drop_va(va)
            self._free(epc)

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
        self.owner.reserve_pages(e, secs.size >> 12)
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

    def load_secs(self, e: int) -> int:
        """``sgx_encl_load_secs``: reload an evicted SECS before any child."""
        ds = self.ds
        if ds.e_secs[e] != NONE:
            return 0
        epc = self.mgr.alloc(self.kind, e, False)
        if epc < 0:
            return epc
        if self.cpu.content:
            b = self.owner.backing[e]
            va = int(ds.e_secs_va[e])
            rc = self._eldu(epc, int(ds.va_epc[va]), int(ds.e_secs_slot[e]), NONE, b,
                            b.secs_index(), 0, 0)
            if rc == 0:
                b.truncate(b.secs_index())
                secs_eldu_done(ds, self.mgr.ms, e, epc)
        else:
            rc = secs_eldu_metadata(ds, self.mgr.ms, self.cpu.st, e, epc)
        if rc != 0:
            self._free(epc)
            return -14
        return 0

    def load_page(self, e: int, ep: int) -> int:
        """``__sgx_encl_load_page``: the EPC page of a resident page, or ELDU it back."""
        ds = self.ds
        epc = int(ds.ep_epc[ep])
        if epc != NONE:
            return -16 if ds.ep_flags[ep] & EP_BEING_RECLAIMED else epc
        self._current(e)
        rc = self.load_secs(e)
        if rc < 0:
            return rc
        epc = self.mgr.alloc(self.kind, ep, False)
        if epc < 0:
            return epc
        st = self.cpu.st
        if self.cpu.content:
            b = self.owner.backing[e]
            index = ep - int(ds.e_first[e])
            va = int(ds.ep_va[ep])
            # PAGEINFO.LINADDR comes from the page's place in ELRANGE, never from the file.
            rc = self._eldu(epc, int(ds.va_epc[va]), int(ds.ep_slot[ep]), int(ds.e_secs[e]),
                            b, index, int(ds.e_base[e]) + (index << 12), int(ds.ep_aux[ep]))
            if rc == 0:
                b.truncate(index)
                eldu_done(ds, self.mgr.ms, st, ep, epc)
        else:
            rc = eldu_metadata(ds, self.mgr.ms, st, ep, epc)
        if rc != 0:
            self._free(epc)
            return -14
        return epc

    def vma_fault(self, e: int, addr: int, vma_prot: int) -> int:
        """``sgx_vma_fault``: make the PTE for ``addr`` present, or say why not."""
        ds = self.ds
        if e < 0 or self.flags(e) & SGX_ENCL_DEAD:
            return VM_FAULT_SIGBUS
        self._current(e)
        ds.e_cnt[e, EC_FAULTS] += 1
        ep = self.ep_of(e, addr)
        if not ds.ep_flags[ep] & EP_EXISTS:
            if self.sgx2:
                return self.eaug_page(e, addr, ep)
            return VM_FAULT_SIGBUS
        if vma_prot & ~int(ds.ep_prot[ep]):
            return VM_FAULT_SIGBUS
        rc = self.load_page(e, ep)
        if rc == -16:
            ds.e_cnt[e, EC_EBUSY] += 1
            return VM_FAULT_RETRY
        if rc < 0:
            ds.e_cnt[e, EC_SIGBUS] += 1
            return VM_FAULT_SIGBUS
        # vmf_insert_pfn, then test_and_clear_young: a faulted page starts old.
        ds.ep_flags[ep] = (int(ds.ep_flags[ep]) | EP_PRESENT) & ~EP_YOUNG
        return VM_FAULT_NOPAGE

    def eaug_page(self, e: int, addr: int, ep: int) -> int:
        """``sgx_encl_eaug_page``: add a PENDING page on first touch of an SGX2 enclave."""
        from epcsim.kernel.mm import PROT_EXEC, PROT_READ, PROT_WRITE

        ds = self.ds
        if not self.flags(e) & SGX_ENCL_INITIALIZED:
            return VM_FAULT_SIGBUS
        rc = self.load_secs(e)
        if rc == -16:
            return VM_FAULT_RETRY
        if rc < 0:
            return VM_FAULT_SIGBUS
        epc = self.mgr.alloc(self.kind, ep, False)
        if epc == -16:
            ds.e_cnt[e, EC_EBUSY] += 1
            return VM_FAULT_RETRY
        if epc < 0:
            return VM_FAULT_SIGBUS
        va = self.grow(e, False)
        if va == -16:
            self._free(epc)
            return VM_FAULT_RETRY
        if va < NONE:
            self._free(epc)
            return VM_FAULT_SIGBUS
        try:
            self.cpu.eaug_page(epc, int(ds.e_secs[e]), addr & ~0xFFF)
        except Exception:
            self._free(epc)
            self.shrink(e, va)
            return VM_FAULT_SIGBUS
        ds.ep_flags[ep] = EP_EXISTS | EP_PRESENT
        ds.ep_type[ep] = PageType.REG
        ds.ep_prot[ep] = PROT_READ | PROT_WRITE | PROT_EXEC
        ds.ep_epc[ep] = epc
        ds.e_child[e] += 1
        ds.e_cnt[e, EC_EAUG] += 1
        self.mgr.mark_reclaimable(epc)
        return VM_FAULT_NOPAGE

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
        ds.ep_va[ep] = NONE
        return 0

    # -------------------------------------------------------------- release
    def release(self, e: int) -> int:
        """``sgx_encl_release``: EREMOVE every page, the SECS last, free the VA pages.

        Returns the number of EPC pages leaked (EREMOVE failed).
        """
        ds = self.ds
        before = self.leaks
        ds.e_flags[e] |= SGX_ENCL_DEAD
        n = int(ds.e_size[e]) >> 12
        if self.flags(e) & SGX_ENCL_CREATED:
            self._free_epc_pages(e)
            self.owner.release_pages(e, n)
        ds.e_ref[e] = 0
        self.owner.free_enclave(e)
        self.attributes.pop(e, None)
        return self.leaks - before

    def counters(self, e: int) -> dict[str, int]:
        ds = self.ds
        out = {name: int(ds.e_cnt[e, i]) for i, name in enumerate(ENCL_COUNTERS)}
        first, n = int(ds.e_first[e]), int(ds.e_size[e]) >> 12
        flags = ds.ep_flags[first:first + n]
        out["resident"] = int((ds.ep_epc[first:first + n] >= 0).sum())
        out["evicted"] = int(((flags & EP_EVICTED) != 0).sum())
        out["va_pages"] = int(ds.e_nva[e])
        out["backing_bytes"] = (int(ds.e_evicted[e]) + int(ds.e_pcmd_pages[e])) * PAGE_SIZE
        return out
