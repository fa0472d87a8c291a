"""The driver's paging paths (the kernel's SGX code): VA pages, the
backing store and its PCMD pages, SECS write-back, aging, dying enclaves, fault retries on
-EBUSY, EWB's ETRACK/IPI escalation and release."""

from __future__ import annotations

import numpy as np
import pytest
from drvkit import (
    BASE,
    Built,
    assert_all_free,
    assert_clean,
    check_enclave,
    create,
    machine,
    small_enclave,
)

from epcsim.arch import PAGE_SIZE, SGX_NR_LOW_PAGES
from epcsim.hw.epc import EPCM_VALID
from epcsim.kernel.encl import (
    EP_EVICTED,
    EP_PRESENT,
    EP_RECORD,
    EP_YOUNG,
    MAX_ENCLAVES,
    NONE,
    SGX_ENCL_DEAD,
    ep_records,
)
from epcsim.kernel.instance import KIND_DRIVER, Kernel
from epcsim.kernel.main import P_WAKE
from epcsim.kernel.mm import MAP_FIXED, MAP_SHARED, PROT_READ, PROT_WRITE
from epcsim.kernel.vdso import EENTER, EEXIT, SgxEnclaveRun
from epcsim.selftest.loader import (
    HEAP,
    op_get_from_address,
    op_nop,
    op_put_to_address,
    setup_test_encl,
)
from epcsim.selftest.loader import TestEncl as Encl

SHARED = MAP_SHARED | MAP_FIXED


def ep(k: Kernel, e: int, index: int) -> int:
    return int(k.sgx.ds.e_first[e]) + index


def resident(k: Kernel, e: int, index: int) -> bool:
    return int(k.sgx.ds.ep_epc[ep(k, e, index)]) >= 0


def evict_all(k: Kernel) -> None:
    """Reclaim until the LRU is empty (young pages need a second pass)."""
    for _ in range(8):
        if not k.mgr.lru_pages:
            return
        k.mgr.reclaim_pages(k.mgr.lru_pages)
    assert k.mgr.lru_pages == 0


def run_op(encl: Encl, op, tcs: int | None = None) -> SgxEnclaveRun:  # type: ignore[no-untyped-def]
    run = SgxEnclaveRun(tcs=encl.tcs[0] if tcs is None else tcs)
    assert encl.thread.enter(run, EENTER, op) == 0
    assert run.function == EEXIT, (run.exception_vector, hex(run.exception_addr))
    return run


def read(encl: Encl, addr: int) -> int:
    op = op_get_from_address(addr)
    run_op(encl, op)
    return int(op.values["value"])


# ---------------------------------------------------------------------------- VA pages

@pytest.mark.parametrize("npages,nva", [(1, 1), (511, 1), (512, 2), (1023, 2), (1024, 3)])
def test_one_va_page_per_512_pages_counting_the_secs(npages: int, nva: int) -> None:
    k = machine(1100)
    b = create(k, 2048)
    assert int(k.sgx.ds.e_nva[b.e]) == 1           # ECREATE's grow: for the SECS
    b.add(0, npages, measure=False)
    ds = k.sgx.ds
    assert int(ds.e_page_cnt[b.e]) == npages + 1
    assert int(ds.e_nva[b.e]) == nva
    assert k.sgx.counters(b.e)["va_pages"] == nva
    c = k.mgr.census()
    assert c["untracked"] == 1 + nva and c["lru"] == npages    # VA pages are never reclaimable
    for va in k.sgx.owner.va_pages(b.e):
        assert k.cpu.epcm(k.cpu.page_addr(int(ds.va_epc[va])))["pt"] == 3   # PT_VA
    check_enclave(k, b.e)
    assert b.file.close() == 0
    assert_all_free(k)


def test_va_pages_hold_every_evicted_page_and_the_secs() -> None:
    """512 children and the SECS all evicted: 513 slots over the two VA pages."""
    k = machine(600)
    b = create(k, 1024)
    b.add(0, 512, measure=False)
    assert b.init() == 0
    evict_all(k)
    ds = k.sgx.ds
    assert int(ds.e_secs[b.e]) == NONE
    s = check_enclave(k, b.e)
    assert s["evicted"] == 512 and s["secs_resident"] == 0 and s["va_pages"] == 2
    assert sum(int(ds.va_used[va]) for va in k.sgx.owner.va_pages(b.e)) == 513
    assert k.mgr.census()["untracked"] == 2          # only the VA pages stay in the EPC
    # Slots are distinct.
    slots = {(int(ds.ep_va[i]), int(ds.ep_slot[i])) for i in range(ep(k, b.e, 0),
                                                                  ep(k, b.e, 512))}
    slots.add((int(ds.e_secs_va[b.e]), int(ds.e_secs_slot[b.e])))
    assert len(slots) == 513
    assert b.file.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- backing store

def _pcmd_pages(k: Kernel, b: Built, indices: set[int]) -> int:
    """Backing pages holding a PCMD, by the kernel's layout."""
    backing = k.sgx.owner.backing[b.e]
    return len({backing.pcmd_offset(i) >> 12 for i in indices})


def _evicted(k: Kernel, b: Built) -> set[int]:
    ds = k.sgx.ds
    first = int(ds.e_first[b.e])
    return {i - first for i in range(first, first + (b.size >> 12))
            if int(ds.ep_flags[i]) & EP_EVICTED}


def test_enclave_rows_fit_ep_encl() -> None:
    """ep_encl is u16: new_enclave refuses a row it could not hold, and reuses freed rows."""
    k = machine(64)
    owner = k.driver_owner
    assert MAX_ENCLAVES == 65535 and np.iinfo(owner.state.ep_encl.dtype).max >= MAX_ENCLAVES - 1
    rows = [owner.new_enclave() for _ in range(MAX_ENCLAVES)]
    assert sorted(rows) == list(range(MAX_ENCLAVES))
    with pytest.raises(RuntimeError, match="at most 65535 enclaves at once"):
        owner.new_enclave()
    owner.free_enclave(rows[100])
    assert owner.new_enclave() == rows[100]
    with pytest.raises(RuntimeError):
        owner.new_enclave()


# The Python views of packed fields: the range a value may take.
PACKED = {"ep_type": (0, 15), "ep_prot": (0, 7), "ep_va": (-1, (1 << 22) - 1),
          "ep_slot": (0, 511), "ep_encl": (0, 65534)}


def test_enclave_page_fields_are_one_record_table_and_survive_growth() -> None:
    """An enclave page's fields are one 16-byte record (one cache line for all of them) in
    one C-contiguous table, which compiled code indexes with a constant record size; every
    ``ep_*`` view is a field of it, or bits of one (type and protection, VA page and slot),
    or the enclave kept per group of 32 entries; each view writes only its own bits, and
    growing the table keeps every value."""
    k = machine(64)
    owner = k.driver_owner
    fields = {"ep_" + ("flags" if n == "desc" else n): n for n in EP_RECORD.names
              if n != "type"}
    views = [*fields, *PACKED]
    assert sorted(n for n in dir(owner.state) if n.startswith("ep_")) == sorted(views)
    assert owner.state.ep.flags.c_contiguous and owner.state.ep.dtype.names == EP_RECORD.names
    e = owner.new_enclave()
    owner.reserve_pages(e, 100)
    ds = owner.state
    first = int(ds.e_first[e])
    assert first % 32 == 0
    before = {n: np.asarray(getattr(ds, n)[first:first + 100]).copy() for n in views}
    assert (before["ep_epc"] == NONE).all() and (before["ep_va"] == NONE).all()
    assert (before["ep_encl"] == e).all()
    rng = np.random.default_rng(5)
    for n, fld in fields.items():
        view = getattr(ds, n)
        assert np.shares_memory(view, ds.ep) and view.strides == (EP_RECORD.itemsize,)
        info = np.iinfo(view.dtype)
        vals = rng.integers(max(info.min, -1000), min(info.max, 1000), 100).astype(view.dtype)
        view[first:first + 100] = vals
        assert ds.ep[first + 7][fld] == vals[7]       # the view writes the record
        before[n] = vals
    # The packed views read what the fields now hold.
    before.update({n: np.asarray(getattr(ds, n)[first:first + 100]).copy() for n in PACKED})
    assert (before["ep_va"] == before["ep_va_slot"] >> 9).all()
    # Packed views: random values one at a time and as a slice; each leaves the others.
    for n, (lo, hi) in PACKED.items():
        if n == "ep_encl":
            continue
        view = getattr(ds, n)
        vals = rng.integers(lo, hi + 1, 100)
        view[first:first + 50] = vals[:50]
        for i in range(50, 100):
            view[first + i] = int(vals[i])
        before[n] = vals
        before["ep_va_slot"] = (before["ep_va"] << 9) | before["ep_slot"]
        for m in views:
            assert (np.asarray(getattr(ds, m)[first:first + 100]) == before[m]).all(), (n, m)
    assert int(ds.ep[first + 3]["va_slot"]) == (int(before["ep_va"][3]) << 9) \
        + int(before["ep_slot"][3])
    assert int(ds.ep[first + 3]["type"]) == int(before["ep_type"][3]) \
        | (int(before["ep_prot"][3]) << 4)
    cap = ds.ep.shape[0]
    f = owner.new_enclave()
    owner.reserve_pages(f, 4 * cap)      # past the capacity: the table grows
    ds = owner.state
    assert ds.ep.shape[0] > cap and ds.ep.flags.c_contiguous
    for n in views:
        assert (np.asarray(getattr(ds, n)[first:first + 100]) == before[n]).all(), n
    first_f = int(ds.e_first[f])
    assert (ds.ep_epc[first_f:first_f + 4 * cap] == NONE).all()
    assert (ds.ep_encl[first_f:first_f + 4 * cap] == f).all()
    assert int(ds.ep_encl[first_f + 5]) == f and int(ds.ep_encl[first + 99]) == e
    # Fancy indices and masks select records, as a field's array would.
    picks = np.array([first, first_f + 40, first + 33])
    assert list(ds.ep_encl[picks]) == [e, f, e]
    mask = np.zeros(len(ds.ep_encl), np.bool_)
    mask[[first + 1, first_f + 64]] = True
    assert list(ds.ep_encl[mask]) == [e, f]
    # A released range comes back with every field empty, its neighbours untouched.
    owner.release_pages(e, 100)
    g = owner.new_enclave()
    owner.reserve_pages(g, 100)
    ds = owner.state
    assert int(ds.e_first[g]) == first
    empty = ep_records(1)[0]
    for n, fld in fields.items():
        assert (getattr(ds, n)[first:first + 100] == empty[fld]).all(), n
    assert (ds.ep_type[first:first + 100] == 0).all() and (ds.ep_prot[first:first + 100] == 0).all()
    assert (ds.ep_va[first:first + 100] == NONE).all()
    assert (ds.ep_encl[first:first + 100] == g).all()
    assert (ds.ep_encl[first_f:first_f + 4 * cap] == f).all()
    # A packed view reads in its field's own type: a check over a whole ELRANGE (may_map)
    # takes a byte a page for its temporaries, not eight.
    assert ds.ep_prot[first:first + 100].dtype == ds.ep_type[first:first + 100].dtype == np.uint8
    assert ds.ep_va[first:first + 100].dtype == ds.ep_slot[first:first + 100].dtype == np.int32
    assert ds.ep_encl[first:first + 100].dtype == np.uint16
    # Sixteen bytes at their natural alignment: no record spans two cache lines.
    assert EP_RECORD.itemsize == 16 and ds.ep.ctypes.data % 16 == 0
    assert all(EP_RECORD.fields[n][1] % EP_RECORD.fields[n][0].itemsize == 0
               for n in EP_RECORD.names)
    assert ds.ep.nbytes == ds.ep.shape[0] * 16


def test_backing_store_pcmd_accounting() -> None:
    k = machine(256, content=True)
    b = create(k, 128)
    pattern = b"".join(bytes([i + 1]) * PAGE_SIZE for i in range(70))
    b.add(0, 70, data=pattern, measure=False)       # uninitialised: the SECS stays put
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE, 128 * PAGE_SIZE, PROT_READ | PROT_WRITE, SHARED) == 0
    backing = k.sgx.owner.backing[b.e]
    assert backing.pcmd_offset(0) == b.size + PAGE_SIZE
    assert backing.pcmd_offset(32) - backing.pcmd_offset(0) == PAGE_SIZE

    def expect(indices: set[int]) -> None:
        assert _evicted(k, b) == indices
        n_pcmd = _pcmd_pages(k, b, indices)
        assert k.sgx.counters(b.e)["backing_bytes"] == (len(indices) + n_pcmd) * PAGE_SIZE
        assert set(backing.pcmd) == indices          # a sealed copy per evicted page
        check_enclave(k, b.e)

    expect(set())
    k.mgr.reclaim_pages(32)                          # pages 0..31: one PCMD page
    expect(set(range(32)))
    assert k.sgx.counters(b.e)["backing_bytes"] == 33 * PAGE_SIZE
    k.mgr.reclaim_pages(1)                           # page 32 starts the second PCMD page
    expect(set(range(33)))
    assert k.sgx.counters(b.e)["backing_bytes"] == 35 * PAGE_SIZE
    k.mgr.reclaim_pages(37)
    expect(set(range(70)))
    assert k.sgx.counters(b.e)["backing_bytes"] == 73 * PAGE_SIZE

    def fault(i: int) -> None:
        assert k.handle_page_fault(mm, BASE + i * PAGE_SIZE, 0) == "fixed"
        epc = int(k.sgx.ds.ep_epc[ep(k, b.e, i)])
        assert epc >= 0
        assert (k.cpu.st.data[epc] == i + 1).all(), f"page {i} came back with other bytes"

    fault(32)                                        # one PCMD left on the second page
    expect(set(range(70)) - {32})
    for i in range(64, 70):                          # the third PCMD page empties
        fault(i)
    expect(set(range(64)) - {32})
    assert k.sgx.counters(b.e)["backing_bytes"] == (63 + 2) * PAGE_SIZE
    for i in range(33, 64):
        fault(i)
    expect(set(range(32)))
    assert k.sgx.counters(b.e)["backing_bytes"] == 33 * PAGE_SIZE
    for i in range(32):
        fault(i)
    expect(set())
    assert k.sgx.counters(b.e)["eldu"] == 70
    assert b.file.close() == 0
    assert_all_free(k)


def test_backing_store_counts_the_evicted_secs() -> None:
    """an evicted SECS has its contents at ``size`` and its PCMD at index size/4096."""
    k = machine(128)
    b = small_enclave(k, 64)                        # 4 children; SECS PCMD on its own page
    evict_all(k)
    assert int(k.sgx.ds.e_secs[b.e]) == NONE
    backing = k.sgx.owner.backing[b.e]
    pcmd = {backing.pcmd_offset(i) >> 12 for i in (0, 1, 2, 3, b.size >> 12)}
    assert len(pcmd) == 2
    assert k.sgx.counters(b.e)["backing_bytes"] == (4 + 1 + 2) * PAGE_SIZE
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ, SHARED) == 0
    assert k.handle_page_fault(mm, BASE + 2 * PAGE_SIZE, 0) == "fixed"   # SECS, then page 2
    assert k.sgx.counters(b.e)["backing_bytes"] == (3 + 1) * PAGE_SIZE
    check_enclave(k, b.e)
    assert b.file.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- SECS

def test_secs_written_back_after_its_last_child() -> None:
    k = machine(128, events=10_000)
    b = small_enclave(k)                             # 4 children, initialised
    ds = k.sgx.ds
    secs = int(ds.e_secs[b.e])
    k.mgr.reclaim_pages(3)
    assert int(ds.e_secs[b.e]) == secs               # one child is still resident
    assert k.sgx.counters(b.e)["secs_ewb"] == 0
    assert k.cpu.secs_info(k.cpu.page_addr(secs))["chldcnt"] == 1
    check_enclave(k, b.e)
    k.mgr.reclaim_pages(1)
    c = k.sgx.counters(b.e)
    assert c["ewb"] == 4 and c["secs_ewb"] == 1
    assert int(ds.e_secs[b.e]) == NONE
    assert not int(k.cpu.st.flags[secs]) & EPCM_VALID
    assert k.mgr.census() == {"free": 127, "lru": 0, "isolated": 0, "untracked": 1,
                              "leaked": 0, "pending": 0}   # the VA page
    check_enclave(k, b.e)

    # The next fault brings the SECS back first, then the child.
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE + 2 * PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ, SHARED) == 0
    n = len(k.mgr.events())
    assert k.handle_page_fault(mm, BASE + 3 * PAGE_SIZE, 0) == "fixed"
    allocs = [page for name, page, _ in k.mgr.events()[n:] if name == "alloc"]
    new_secs = int(ds.e_secs[b.e])
    assert allocs == [new_secs, int(ds.ep_epc[ep(k, b.e, 3)])]
    c = k.sgx.counters(b.e)
    assert c["secs_eldu"] == 1 and c["eldu"] == 1
    info = k.cpu.secs_info(k.cpu.page_addr(new_secs))
    assert info["chldcnt"] == 1 and info["eid"] == int(ds.e_eid[b.e])
    epcm = k.cpu.epcm(k.cpu.page_addr(int(ds.ep_epc[ep(k, b.e, 3)])))
    assert epcm["enclavesecs"] == k.cpu.page_addr(new_secs)
    # A second fault needs no SECS reload.
    assert k.handle_page_fault(mm, BASE + 2 * PAGE_SIZE, 0) == "fixed"
    assert k.sgx.counters(b.e)["secs_eldu"] == 1
    check_enclave(k, b.e)
    assert b.file.close() == 0
    assert_all_free(k)


def test_secs_of_uninitialised_enclave_never_written_back() -> None:
    k = machine(128)
    b = small_enclave(k, init=False)
    secs = int(k.sgx.ds.e_secs[b.e])
    evict_all(k)
    k.mgr.reclaim_pages(16)
    c = k.sgx.counters(b.e)
    assert c["ewb"] == 4 and c["evicted"] == 4 and c["secs_ewb"] == 0
    assert int(k.sgx.ds.e_secs[b.e]) == secs
    assert k.cpu.secs_info(k.cpu.page_addr(secs))["chldcnt"] == 0
    check_enclave(k, b.e)
    # It can still be built and initialised: EADD and EINIT need the SECS resident.
    b.add(4 * PAGE_SIZE)
    assert b.init() == 0
    check_enclave(k, b.e)
    assert b.file.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- aging

def test_young_pages_survive_one_aging_pass() -> None:
    k = machine(128, content=True)
    encl = setup_test_encl(k)
    e = encl.file.e
    ds = k.sgx.ds
    data_ep = k.sgx.ep_of(e, encl.data_page)
    run_op(encl, op_put_to_address(encl.data_page, 0x1122334455667788))
    # The fault made the PTE present and old; the access then set the accessed bit.
    assert int(ds.ep_flags[data_ep]) & EP_PRESENT
    assert int(ds.ep_flags[data_ep]) & EP_YOUNG
    first, n = int(ds.e_first[e]), encl.size >> 12
    young = int(((ds.ep_flags[first:first + n] & EP_YOUNG) != 0).sum())
    refused = k.mgr.counters()["refused_young"]
    lru = k.mgr.lru_pages
    k.mgr.reclaim_pages(lru)
    assert k.mgr.counters()["refused_young"] - refused == young
    assert int(ds.ep_epc[data_ep]) >= 0, "a young page was reclaimed"
    assert not int(ds.ep_flags[data_ep]) & EP_YOUNG, "aging did not clear the accessed bit"
    assert k.mgr.lru_pages == young
    check_enclave(k, e)
    k.mgr.reclaim_pages(k.mgr.lru_pages)             # second pass: now it is old
    assert int(ds.ep_epc[data_ep]) == NONE
    assert k.mgr.lru_pages == 0
    check_enclave(k, e)
    assert read(encl, encl.data_page) == 0x1122334455667788
    assert encl.close() == 0
    assert_all_free(k)


def test_faulted_page_starts_old() -> None:
    """the fault clears the accessed bit; only a later access sets it."""
    k = machine(128)
    b = small_enclave(k)
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE + 2 * PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ, SHARED) == 0
    ds = k.sgx.ds
    ds.ep_flags[ep(k, b.e, 2)] |= np.uint8(EP_YOUNG)
    assert k.handle_page_fault(mm, BASE + 2 * PAGE_SIZE, 0) == "fixed"
    assert not int(ds.ep_flags[ep(k, b.e, 2)]) & EP_YOUNG
    k.mgr.reclaim_pages(16)
    assert k.sgx.counters(b.e)["evicted"] == 4
    assert b.file.close() == 0
    assert_all_free(k)


def test_eenter_and_eresume_set_the_tcs_accessed_bit() -> None:
    """EENTER's and ERESUME's TCS operand is a linear address: its page walk sets the PTE's
    accessed bit, so a TCS a thread keeps entering through is young when it is aged (without
    it ksgxd evicted a faulting thread's TCS and its data page in turn, forever)."""
    k = machine(128, content=True)
    encl = setup_test_encl(k)
    ds = k.sgx.ds
    tcs_ep = k.sgx.ep_of(encl.file.e, encl.tcs[0])
    data_ep = k.sgx.ep_of(encl.file.e, encl.data_page)
    read(encl, encl.data_page)                      # both pages resident and mapped
    ds.ep_flags[tcs_ep] &= ~np.uint8(EP_YOUNG)
    run_op(encl, op_nop())
    assert int(ds.ep_flags[tcs_ep]) & EP_YOUNG, "EENTER"

    def age_tcs_and_zap_data(ctx) -> None:  # type: ignore[no-untyped-def]
        ds.ep_flags[tcs_ep] &= ~np.uint8(EP_YOUNG)
        ds.ep_flags[data_ep] &= ~np.uint8(EP_PRESENT)

    op = op_get_from_address(encl.data_page)
    op.steps.insert(0, age_tcs_and_zap_data)
    aex = encl.thread.aex
    run_op(encl, op)                   # the load faults; the kernel maps it; ERESUME
    assert encl.thread.aex == aex + 1
    assert int(ds.ep_flags[tcs_ep]) & EP_YOUNG, "ERESUME"
    assert encl.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- dying enclaves

@pytest.mark.parametrize("how", ["dead-flag", "refcount-0"])
def test_dying_enclave_pages_dropped_by_get_and_freed_by_release(how: str) -> None:
    k = machine(128)
    b = small_enclave(k)
    other = small_enclave(k, 8)
    ds = k.sgx.ds
    before = ds.ep_epc[ep(k, b.e, 0):ep(k, b.e, 4)].copy()
    if how == "dead-flag":
        ds.e_flags[b.e] |= SGX_ENCL_DEAD
    else:
        ds.e_ref[b.e] = 0
    c0 = k.mgr.counters()
    k.mgr.reclaim_pages(8)                           # b's four pages, then other's four
    c1 = k.mgr.counters()
    assert c1["get_failed"] - c0["get_failed"] == 4
    assert k.sgx.counters(b.e)["ewb"] == 0
    assert (ds.ep_epc[ep(k, b.e, 0):ep(k, b.e, 4)] == before).all()
    for epc in before:
        assert k.mgr.where(int(epc)) == 3            # W_UNTRACKED: off the LRU, still in use
        assert int(k.cpu.st.flags[int(epc)]) & EPCM_VALID
    assert k.sgx.counters(other.e)["evicted"] == 4   # a live enclave is reclaimed as usual
    assert_clean(k)
    if how == "refcount-0":
        ds.e_ref[b.e] = 1                            # the file's reference, for release
    assert b.file.close() == 0
    assert_clean(k)
    for epc in before:
        assert k.mgr.where(int(epc)) == 0            # W_FREE
    check_enclave(k, other.e)
    assert other.file.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- -EBUSY faults

def test_fault_retried_when_no_page_is_free() -> None:
    heap_pages = 48
    k = machine(128, content=True)
    encl = setup_test_encl(k, heap_pages * PAGE_SIZE)
    e = encl.file.e
    heap = encl.base + HEAP
    run_op(encl, op_put_to_address(heap, 0xABCDEF))
    evict_all(k)
    heap_ep = k.sgx.ep_of(e, heap)
    assert int(k.sgx.ds.ep_epc[heap_ep]) == NONE
    # The TCS, two data pages and the rest of the heap come back: the LRU is not empty, and
    # what ksgxd can free there is more than the low watermark, so that once it has run
    # the thread's next faults do not wake it again (with less, every allocation of the
    # fault path would, and the thread and ksgxd would take turns evicting each other's
    # pages).
    assert read(encl, encl.encl_buffer) == 0
    assert read(encl, encl.data_page) == 0
    for i in range(1, heap_pages):
        assert read(encl, heap + i * PAGE_SIZE) == 0
    assert k.mgr.lru_pages > SGX_NR_LOW_PAGES + 4
    # Another owner (think of a guest's vEPC: never reclaimable) takes every free page.
    hog = []
    while True:
        page = k.mgr.alloc(KIND_DRIVER, 0, False)
        if page < 0:
            assert page == -16                       # -EBUSY: the LRU is not empty
            break
        hog.append(page)
    assert k.mgr.sgx_nr_free_pages == 0
    # The hog's allocations woke ksgxd; the fault comes in before it was scheduled (the
    # model runs a woken ksgxd as the next fault comes in: here, as the fault retries).
    k.mgr.ms.p[P_WAKE] = 0
    c0 = k.mgr.counters()
    assert read(encl, heap) == 0xABCDEF
    assert k.fault_retries > 0
    assert k.sgx.counters(e)["ebusy_retries"] > 0
    c1 = k.mgr.counters()
    assert c1["alloc_ebusy"] > c0["alloc_ebusy"]
    assert c1["reclaimed_ksgxd"] > c0["reclaimed_ksgxd"]
    check_enclave(k, e)
    for page in hog:
        assert k.mgr.free(page) == 0
    assert encl.close() == 0
    assert_all_free(k)


def test_fault_sigbus_when_nothing_is_reclaimable() -> None:
    """no free EPC and an empty LRU: -ENOMEM, SIGBUS, not a retry loop."""
    k = machine(64)
    b = small_enclave(k)
    evict_all(k)
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ, SHARED) == 0
    hog = []
    while (page := k.mgr.alloc(KIND_DRIVER, 0, False)) >= 0:
        hog.append(page)
    assert page == -12
    assert k.handle_page_fault(mm, BASE + 2 * PAGE_SIZE, 0) == "sigbus"
    assert k.fault_retries == 0
    for page in hog:
        assert k.mgr.free(page) == 0
    assert k.handle_page_fault(mm, BASE + 2 * PAGE_SIZE, 0) == "fixed"
    check_enclave(k, b.e)
    assert b.file.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- EWB escalation

def _enter_directly(k: Kernel, encl: Encl, lp: int, tcs: int) -> None:
    run_op(encl, op_nop(), tcs)                      # faults the TCS in and maps it
    k.cpu.aspace[lp] = encl.mm
    assert k.cpu.eenter(lp, tcs) == 0
    assert k.cpu.inside(lp)


def test_ewb_without_threads_needs_one_etrack_per_batch() -> None:
    k = machine(128, n_lps=3)
    encl = setup_test_encl(k)
    e = encl.file.e
    c0 = k.mgr.counters()
    k.mgr.reclaim_pages(4)
    c1 = k.mgr.counters()
    assert k.sgx.counters(e)["ewb"] == 4
    # The first EWB is NOT_TRACKED, ETRACK completes the epoch for the whole batch.
    assert c1["etrack"] - c0["etrack"] == 1
    assert c1["ipi"] - c0["ipi"] == 0
    assert c1["ewb"] - c0["ewb"] == 4
    check_enclave(k, e)
    assert encl.close() == 0
    assert_all_free(k)


def test_ewb_with_a_thread_inside_sends_ipis() -> None:
    k = machine(128, n_lps=3)
    encl = setup_test_encl(k)
    bystander = setup_test_encl(k, base=0x20_0000_0000, lp=2)
    e = encl.file.e
    _enter_directly(k, encl, 1, encl.tcs[1])
    _enter_directly(k, bystander, 2, bystander.tcs[1])
    info = k.cpu.secs_info(k.cpu.page_addr(int(k.sgx.ds.e_secs[e])))
    assert info["lps_inside"] == 1
    target = k.sgx.ep_of(e, encl.base + HEAP)
    assert int(k.sgx.ds.ep_epc[target]) >= 0
    c0 = k.mgr.counters()
    ewb0 = k.sgx.counters(e)["ewb"]
    # The LRU holds this enclave's pages first (it was built first), then the bystander's.
    mine = k.sgx.counters(e)["resident"]
    k.mgr.reclaim_pages(mine)
    assert k.sgx.counters(bystander.file.e)["ewb"] == 0
    c1 = k.mgr.counters()
    assert c1["etrack"] - c0["etrack"] >= 1
    assert c1["ipi"] - c0["ipi"] >= 1
    assert not k.cpu.inside(1), "the IPI did not make the thread leave (AEX)"
    assert k.cpu.inside(2), "a thread of another enclave was interrupted"
    assert k.sgx.counters(e)["ewb"] > ewb0
    assert int(k.sgx.ds.ep_epc[target]) == NONE      # the page was still written back
    assert int(k.sgx.ds.ep_flags[target]) & EP_EVICTED
    check_enclave(k, e)
    assert k.cpu.eexit(2) == 0
    assert read(encl, encl.base + HEAP) == 0          # and comes back
    assert encl.close() == 0 and bystander.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- release

def test_release_frees_every_epc_page() -> None:
    k = machine(96, content=True)
    a = setup_test_encl(k, 8 * PAGE_SIZE)
    b = setup_test_encl(k, 2 * PAGE_SIZE, base=0x20_0000_0000)
    c = small_enclave(k, 16, init=False)
    run_op(a, op_put_to_address(a.base + HEAP, 1))
    run_op(b, op_put_to_address(b.base + HEAP, 2))
    evict_all(k)                                     # a's and b's SECS leave too
    run_op(a, op_put_to_address(a.base + HEAP + PAGE_SIZE, 3))   # a: SECS + some pages back
    for x in (a.file.e, b.file.e, c.e):
        check_enclave(k, x)
    assert int(k.sgx.ds.e_secs[b.file.e]) == NONE
    assert int(k.sgx.ds.e_secs[a.file.e]) != NONE
    assert k.mgr.census()["free"] < 96
    assert a.close() == 0
    assert_clean(k)
    check_enclave(k, b.file.e)
    assert b.close() == 0
    assert c.file.close() == 0
    assert_all_free(k)
    assert k.sgx.leaks == 0 and k.sgx.owner.backing == {}


def test_va_rows_stop_where_a_record_can_name_them() -> None:
    """A record names its VA page in the 22 bits above the slot: the driver reserves no
    row past MAX_VA_PAGES (8 TiB of evicted pages), and says so."""
    from epcsim.kernel.encl import MAX_VA_PAGES, VA_SLOT_BITS

    assert MAX_VA_PAGES == 1 << (31 - VA_SLOT_BITS) == 1 << 22
    owner = machine(64).driver_owner
    with pytest.raises(RuntimeError, match="at most 4194304 VA pages"):
        owner.reserve_va_rows(MAX_VA_PAGES + 1)
    assert owner.state.va.shape[0] < MAX_VA_PAGES
