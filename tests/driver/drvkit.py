"""Helpers for the driver tests: machines, enclaves built through the uapi, and the checks
every test repeats (manager invariants, nothing leaked, the EPC census)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from epcsim.arch import PAGE_SIZE, Attribute, PageType, Secinfo, Secs, secinfo_flags
from epcsim.hw.baremetal import tcs_image
from epcsim.hw.cpu import Processor
from epcsim.hw.crypto import mrenclave, sign_sigstruct
from epcsim.hw.epc import EPCM_VALID
from epcsim.kernel.encl import (
    EP_EVICTED,
    EP_EXISTS,
    NONE,
    SGX_ENCL_INITIALIZED,
    SGX_VA_SLOT_COUNT,
)
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_PAGE_MEASURE,
    EnclaveFile,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
)

BASE = 0x10_0000_0000
R, W, X = 1, 2, 4
SECINFO_TCS = secinfo_flags(PageType.TCS)
SECINFO_RX = secinfo_flags(PageType.REG, R | X)
SECINFO_RW = secinfo_flags(PageType.REG, R | W)


def machine(pages: int = 128, *, content: bool = False, sgx2: bool = True, n_lps: int = 2,
            events: int = 0, **kernel_kw: int) -> Kernel:
    cpu = Processor(epc_size=pages * PAGE_SIZE, content=content, n_lps=n_lps, sgx2=sgx2)
    return Kernel(cpu, events=events, **kernel_kw)


def secs_bytes(size: int, base: int = BASE, attributes: int = int(Attribute.MODE64BIT),
               ssaframesize: int = 1, xfrm: int = 3) -> bytes:
    return Secs(size=size, baseaddr=base, ssaframesize=ssaframesize, attributes=attributes,
                xfrm=xfrm).pack()


def add_arg(offset: int, npages: int = 1, secinfo: int = SECINFO_RW, *, data: bytes | None = None,
            measure: bool = True, reserved: bytes = bytes(56), src_addr: int = 0
            ) -> SgxEnclaveAddPages:
    data = data if data is not None else bytes(npages * PAGE_SIZE)
    return SgxEnclaveAddPages(src=data, offset=offset, length=npages * PAGE_SIZE,
                              secinfo=Secinfo(flags=secinfo, reserved=reserved).pack(),
                              flags=SGX_PAGE_MEASURE if measure else 0, src_addr=src_addr)


@dataclass
class Built:
    """An enclave under construction through the uapi, with what signing it needs."""

    kernel: Kernel
    file: EnclaveFile
    size: int
    base: int = BASE
    attributes: int = int(Attribute.MODE64BIT)
    records: list[tuple[int, int, bytes | None]] = field(default_factory=list)

    @property
    def e(self) -> int:
        return self.file.e

    def add(self, offset: int, npages: int = 1, secinfo: int = SECINFO_RW, *,
            data: bytes | None = None, measure: bool = True) -> int:
        data = data if data is not None else bytes(npages * PAGE_SIZE)
        arg = add_arg(offset, npages, secinfo, data=data, measure=measure)
        rc = self.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg)
        assert rc == 0, f"ADD_PAGES at {offset:#x}: {rc}"
        assert arg.count == npages * PAGE_SIZE
        for i in range(npages):
            chunk = data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
            self.records.append((offset + i * PAGE_SIZE, secinfo, chunk if measure else None))
        return rc

    def sigstruct(self, **kw: int) -> bytes:
        kw.setdefault("attributes", self.attributes)
        return sign_sigstruct(mrenclave(1, self.size, self.records), xfrm=3, **kw)

    def init(self) -> int:
        return self.file.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(self.sigstruct()))


def create(k: Kernel, npages: int = 8, *, attributes: int = int(Attribute.MODE64BIT),
           base: int = BASE) -> Built:
    f = k.open_enclave()
    size = npages * PAGE_SIZE
    rc = f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs_bytes(size, base, attributes)))
    assert rc == 0, f"CREATE: {rc}"
    return Built(k, f, size, base, attributes)


def small_enclave(k: Kernel, npages: int = 8, *, attributes: int = int(Attribute.MODE64BIT),
                  init: bool = True) -> Built:
    """TCS at page 0 (SSA at page 3), code (RX) at page 1, data (RW) at pages 2-3; the rest of
    ELRANGE has no pages."""
    b = create(k, npages, attributes=attributes)
    b.add(0, 1, SECINFO_TCS, data=tcs_image(ossa=3 * PAGE_SIZE, nssa=1, oentry=PAGE_SIZE))
    b.add(PAGE_SIZE, 1, SECINFO_RX, data=b"\xc3" * PAGE_SIZE)
    b.add(2 * PAGE_SIZE, 2, SECINFO_RW)
    if init:
        assert b.init() == 0
    return b


# ------------------------------------------------------------------------------ checks

def assert_clean(k: Kernel) -> None:
    """The manager's invariants hold and no EPC page was leaked."""
    k.mgr.check()
    assert k.mgr.census()["leaked"] == 0
    assert k.sgx.leaks == 0
    assert k.mgr.counters()["leaks"] == 0


def assert_all_free(k: Kernel) -> None:
    assert_clean(k)
    # Pages ksgxd wrote back are free when the caller's clock reaches its own.
    assert k.mgr.census()["pending"] == k.mgr.pending_pages
    k.mgr.idle()
    assert k.mgr.pending_pages == 0
    c = k.mgr.census()
    assert c["free"] == k.cpu.npages, c
    assert k.mgr.sgx_nr_free_pages == k.cpu.npages
    assert not (k.cpu.st.flags & EPCM_VALID).any(), "an EPCM entry is still VALID"


def page_eid(k: Kernel, epc: int) -> int:
    st = k.cpu.st
    return int(st.s_eid[int(st.row[epc])])


def va_bit(k: Kernel, va: int, slot: int) -> bool:
    ds = k.sgx.ds
    return bool((int(ds.va_bits[va, slot >> 6]) >> (slot & 63)) & 1)


def hw_va_version(k: Kernel, va: int, slot: int) -> int:
    """The version the processor holds in that VA slot (0: empty)."""
    st = k.cpu.st
    va_epc = int(k.sgx.ds.va_epc[va])
    return int(st.va_slots[int(st.row[va_epc]), slot])


def check_enclave(k: Kernel, e: int) -> dict[str, int]:
    """The per-enclave invariants of the kernel's SGX code for a live enclave.

    Returns the enclave's resident/evicted page counts.
    """
    ds = k.sgx.ds
    cpu = k.cpu
    st = cpu.st
    first, n = int(ds.e_first[e]), int(ds.e_size[e]) >> 12
    eid = int(ds.e_eid[e])
    vas = set(k.sgx.owner.va_pages(e))
    assert len(vas) == int(ds.e_nva[e])
    resident = evicted = 0
    for ep in range(first, first + n):
        flags = int(ds.ep_flags[ep])
        if not flags & EP_EXISTS:
            assert int(ds.ep_epc[ep]) == NONE, f"page {ep - first} without entry holds EPC"
            continue
        epc = int(ds.ep_epc[ep])
        if epc >= 0:
            resident += 1
            assert not flags & EP_EVICTED
            assert int(st.flags[epc]) & EPCM_VALID, f"page {ep - first}: EPCM entry not VALID"
            assert page_eid(k, epc) == eid, f"page {ep - first}: EPC page of another enclave"
            lin = int(ds.e_base[e]) + ((ep - first) << 12)
            assert cpu.epcm(cpu.page_addr(epc))["enclaveaddress"] == lin
        else:
            evicted += 1
            assert flags & EP_EVICTED, f"page {ep - first}: neither resident nor evicted"
            va, slot = int(ds.ep_va[ep]), int(ds.ep_slot[ep])
            assert va in vas, f"page {ep - first}: VA page {va} is not the enclave's"
            assert va_bit(k, va, slot), f"page {ep - first}: VA slot {slot} not marked used"
            assert hw_va_version(k, va, slot) != 0, f"page {ep - first}: VA slot is empty"
    # secs_child_cnt counts resident children only.
    assert int(ds.e_child[e]) == resident, (int(ds.e_child[e]), resident)
    secs = int(ds.e_secs[e])
    if secs != NONE:
        assert int(st.flags[secs]) & EPCM_VALID
        info = cpu.secs_info(cpu.page_addr(secs))
        assert info["chldcnt"] == resident
        assert info["eid"] == eid
        secs_evicted = 0
    else:
        # invariant 3: an evicted SECS means no resident children and an initialised enclave.
        assert resident == 0
        assert int(ds.e_flags[e]) & SGX_ENCL_INITIALIZED
        va, slot = int(ds.e_secs_va[e]), int(ds.e_secs_slot[e])
        assert va in vas and va_bit(k, va, slot) and hw_va_version(k, va, slot) != 0
        secs_evicted = 1
    # invariant 4: VA capacity >= page_cnt >= evicted pages (+ the SECS).
    used = sum(int(ds.va_used[va]) for va in vas)
    assert used == evicted + secs_evicted, (used, evicted, secs_evicted)
    assert len(vas) * SGX_VA_SLOT_COUNT >= int(ds.e_page_cnt[e]) >= evicted + secs_evicted
    for va in vas:
        assert int(st.flags[int(ds.va_epc[va])]) & EPCM_VALID
        assert int(np.unpackbits(ds.va_bits[va].view(np.uint8)).sum()) == int(ds.va_used[va])
    return {"resident": resident, "evicted": evicted, "secs_resident": 1 - secs_evicted,
            "va_pages": len(vas)}
