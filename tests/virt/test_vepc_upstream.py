"""Upstream /dev/sgx_vepc: faults without reclaim, release, REMOVE_ALL, KVM's leaves
(the kernel's virt.c)."""

from __future__ import annotations

import errno
import sys

from virtkit import guest_eadd, guest_ecreate, host, prefault, vepc

from epcsim.arch import PAGE_SIZE, Attribute, PageType, Secs, SgxReturn, secinfo_flags
from epcsim.hw.baremetal import BareMetal
from epcsim.hw.epc import EPCM_VALID
from epcsim.kernel.main import W_UNTRACKED
from epcsim.kernel.mm import MAP_PRIVATE, PROT_READ, PROT_WRITE
from epcsim.kernel.virt import SGX_IOC_VEPC_REMOVE_ALL, sgx_virt_ecreate, sgx_virt_einit

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/driver")
from drvkit import small_enclave


def test_mmap_must_be_shared() -> None:
    k = host()
    f = k.open_vepc()
    mm = k.new_mm()
    assert mm.mmap(f, 0x7F00_0000_0000, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE) == -errno.EINVAL


def test_fault_allocates_untracked_pages() -> None:
    k = host(64)
    f, mm, addr = vepc(k, 16)
    assert prefault(k, mm, addr, 16) == "fixed"
    pages = f.populated()
    assert len(pages) == 16 and len(set(pages)) == 16
    # Never on the reclaimer's list, and raw: no EPCM entry is valid yet.
    assert k.mgr.lru_pages == 0
    assert all(k.mgr.where(p) == W_UNTRACKED for p in pages)
    assert not any(int(k.cpu.st.flags[p]) & EPCM_VALID for p in pages)
    assert k.mgr.sgx_nr_free_pages == 64 - 16
    # A second fault on a populated page changes nothing.
    assert prefault(k, mm, addr, 1) == "fixed" and f.populated() == pages


def test_reserved_vm_that_does_not_fit_gets_sigbus_at_start() -> None:
    k = host(64)
    f, mm, addr = vepc(k, 80)
    assert prefault(k, mm, addr, 80) == "sigbus"   # -ENOMEM: nothing to reclaim
    assert len(f.populated()) == 64
    assert k.mgr.counters()["alloc_enomem"] >= 1
    f.release()
    assert k.mgr.sgx_nr_free_pages == 64


def test_fault_retries_while_ksgxd_frees_host_enclave_pages() -> None:
    k = host(64, low=4, high=8)
    small_enclave(k, 32)              # host enclave pages sit on the reclaim list
    free = k.mgr.sgx_nr_free_pages
    f, mm, addr = vepc(k, free + 2)
    assert prefault(k, mm, addr, free + 2) == "fixed"   # -EBUSY, retry after ksgxd
    assert k.fault_retries == 0      # the vEPC path retries itself; the counter is the driver's
    assert k.mgr.counters()["alloc_ebusy"] >= 1
    assert len(f.populated()) == free + 2


def _split_enclave(k):  # type: ignore[no-untyped-def]
    """A guest enclave whose SECS is in vEPC A and whose children are in vEPC B."""
    a, mm, addr = vepc(k, 2)
    b, _, addr_b = vepc(k, 4, mm, addr + (1 << 30))
    assert prefault(k, mm, addr, 2) == "fixed"
    assert prefault(k, mm, addr_b, 4) == "fixed"
    secs = a.populated()[0]
    guest_ecreate(k, secs)
    for i, page in enumerate(b.populated()):
        guest_eadd(k, page, secs, i)
    return a, b, secs


def test_remove_all_counts_secs_with_children_elsewhere() -> None:
    k = host(64)
    a, b, _secs = _split_enclave(k)
    assert a.ioctl(SGX_IOC_VEPC_REMOVE_ALL, 0) == 1       # the SECS: children in B
    assert b.ioctl(SGX_IOC_VEPC_REMOVE_ALL, 0) == 0
    assert a.ioctl(SGX_IOC_VEPC_REMOVE_ALL, 0) == 0       # retried after B
    # REMOVE_ALL keeps the pages (the guest reboots on them) but every EPCM entry is free.
    assert len(a.populated()) == 2 and len(b.populated()) == 4
    assert not (k.cpu.st.flags & EPCM_VALID).any()


def test_remove_all_ioctl_errors() -> None:
    k = host()
    a, _, _ = vepc(k, 1)
    assert a.ioctl(SGX_IOC_VEPC_REMOVE_ALL, 1) == -errno.EINVAL
    assert a.ioctl(0xA400, 0) == -errno.ENOTTY


def test_remove_all_busy_while_a_cpu_runs_inside() -> None:
    k = host(64)
    _a, b, secs = _split_enclave(k)
    # A vCPU inside the enclave: EREMOVE of its children fails with SGX_ENCLAVE_ACT.
    row = int(k.cpu.st.row[secs])
    k.cpu.st.s_refcnt[row] += 1
    assert b.ioctl(SGX_IOC_VEPC_REMOVE_ALL, 0) == -errno.EBUSY
    k.cpu.st.s_refcnt[row] -= 1


def test_release_parks_secs_as_zombie_until_every_instance_closes() -> None:
    k = host(64)
    a, b, secs = _split_enclave(k)
    vepc_total = 64 - k.mgr.sgx_nr_free_pages
    a.release()                                   # the SECS still has children in B
    assert k.vepc.zombie_secs_pages == [secs]
    assert int(k.cpu.st.flags[secs]) & EPCM_VALID
    b.release()                                   # children gone: the zombie goes too
    assert k.vepc.zombie_secs_pages == []
    assert k.mgr.sgx_nr_free_pages == 64 and vepc_total == 6
    assert not (k.cpu.st.flags & EPCM_VALID).any()
    assert k.vepc.warnings == 0
    k.mgr.check()


def test_release_children_first_leaves_no_zombie() -> None:
    k = host(64)
    a, b, _secs = _split_enclave(k)
    b.release()
    a.release()                                   # pass 1 removes the now childless SECS
    assert k.vepc.zombie_secs_pages == []
    assert k.mgr.sgx_nr_free_pages == 64


def test_release_two_passes_within_one_instance() -> None:
    k = host(64)
    a, mm, addr = vepc(k, 4)
    assert prefault(k, mm, addr, 4) == "fixed"
    pages = a.populated()
    guest_ecreate(k, pages[0])                    # SECS first in the page array
    for i, p in enumerate(pages[1:]):
        guest_eadd(k, p, pages[0], i)
    a.release()
    assert k.vepc.zombie_secs_pages == []
    assert k.mgr.sgx_nr_free_pages == 64


def test_sgx_virt_ecreate_reports_the_trap() -> None:
    k = host(64)
    a, mm, addr = vepc(k, 2)
    assert prefault(k, mm, addr, 2) == "fixed"
    bm = BareMetal(k.cpu)
    si = bm.secinfo(secinfo_flags(PageType.SECS))
    good = Secs(size=8 * PAGE_SIZE, baseaddr=0x40_0000, attributes=int(Attribute.MODE64BIT),
                ssaframesize=1, xfrm=3)
    bad = Secs(size=3 * PAGE_SIZE, baseaddr=0x40_0000, attributes=int(Attribute.MODE64BIT),
               ssaframesize=1, xfrm=3)
    page0, _page1 = a.populated()
    pi_bad = bm.pageinfo(srcpge=bm.put(bad.pack()), metadata=si)
    assert sgx_virt_ecreate(k.cpu, pi_bad, k.cpu.page_addr(page0)) == (-errno.EFAULT, 13)
    pi = bm.pageinfo(srcpge=bm.put(good.pack()), metadata=si)
    assert sgx_virt_ecreate(k.cpu, pi, k.cpu.page_addr(page0)) == (0, 0)
    assert int(k.cpu.st.pt[page0]) == PageType.SECS
    # EINIT: a misaligned SIGSTRUCT faults (#GP for KVM to inject); a bad one is an SGX code.
    tok = bm.put(bytes(512), 512)
    assert sgx_virt_einit(k.cpu, 8, tok, k.cpu.page_addr(page0), bytes(32)) == (-errno.EFAULT,
                                                                                 13)
    rc, trap = sgx_virt_einit(k.cpu, bm.put(bytes(1808)), tok, k.cpu.page_addr(page0),
                              b"\x11" * 32)
    assert trap == 0 and rc == SgxReturn.SGX_INVALID_SIG_STRUCT
    assert k.cpu.lepubkeyhash == b"\x11" * 32      # the guest's virtual MSR values
    a.release()
    assert k.mgr.sgx_nr_free_pages == 64
