"""Helpers for the virtualization tests: hosts with a KVM owner, vEPC instances mapped
into a VMM's address space, and the guest's leaves run on the pages KVM gave it."""

from __future__ import annotations

from epcsim.arch import (
    PAGE_SIZE,
    X86_PF_USER,
    X86_PF_WRITE,
    Attribute,
    PageType,
    Secs,
    secinfo_flags,
)
from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.kernel.mm import MAP_SHARED, PROT_READ, PROT_WRITE, Mm
from epcsim.kernel.virt import VepcFile

VMM_BASE = 0x7F00_0000_0000
GUEST_ELRANGE = 0x40_0000


def host(pages: int = 64, *, n_lps: int = 4, **kw: object) -> Kernel:
    cpu = Processor(epc_size=pages * PAGE_SIZE, n_lps=n_lps)
    return Kernel(cpu, kvm=True, **kw)  # type: ignore[arg-type]


def vepc(k: Kernel, npages: int, mm: Mm | None = None,
         addr: int = VMM_BASE) -> tuple[VepcFile, Mm, int]:
    """Open and map a vEPC of ``npages`` pages (QEMU's ``-object memory-backend-epc``)."""
    mm = mm or k.new_mm("qemu")
    f = k.open_vepc()
    assert mm.mmap(f, addr, npages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED) == 0
    return f, mm, addr


def prefault(k: Kernel, mm: Mm, addr: int, npages: int) -> str:
    """Touch every page as QEMU's preallocation does; the first result that is not fixed."""
    for i in range(npages):
        while True:
            r = k.handle_page_fault(mm, addr + i * PAGE_SIZE, X86_PF_USER | X86_PF_WRITE)
            if r != "retry":
                break
        if r != "fixed":
            return r
    return "fixed"


def guest_ecreate(k: Kernel, page: int, npages: int = 8) -> None:
    """The guest's ECREATE on a host page of its vEPC (what runs on the processor)."""
    secs = Secs(size=npages * PAGE_SIZE, baseaddr=GUEST_ELRANGE,
                attributes=int(Attribute.MODE64BIT), ssaframesize=1, xfrm=3)
    assert k.cpu.ecreate_page(page, secs) == 0


def guest_eadd(k: Kernel, page: int, secs: int, index: int) -> None:
    assert k.cpu.eadd_page(page, secs, GUEST_ELRANGE + index * PAGE_SIZE,
                           secinfo_flags(PageType.REG, 3)) == 0
