"""Processes' address spaces: VMAs, mmap/mprotect, and the page tables the processor walks.

An :class:`Mm` is what ``current->mm`` is to the driver: a list of VMAs and page tables. For a
VMA that maps an enclave, the page table entries live in the driver's arrays (present and
accessed bits per enclave page), so the compiled reclaimer can zap PTEs and test-and-clear
accessed bits without touching Python objects; other mappings use ordinary entries.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from epcsim.arch import PAGE_SIZE
from epcsim.hw.memory import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace

if TYPE_CHECKING:
    from epcsim.kernel.encl import SgxDriver

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
PROT_NONE = 0


class MappedFile(Protocol):
    """A file that can back a VMA: the enclave device, a vEPC instance."""

    def may_map(self, start: int, end: int, prot: int) -> int: ...

    def pte(self, mm: Mm, linaddr: int) -> tuple[int, int] | None: ...

    def touch(self, linaddr: int, write: bool) -> None: ...


@dataclass
class Vma:
    start: int
    end: int
    prot: int
    flags: int
    file: MappedFile | None = None

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr < self.end


class Mm(AddressSpace):
    """One process's address space."""

    def __init__(self, name: str = "mm") -> None:
        super().__init__()
        self.name = name
        self.vmas: list[Vma] = []

    # -------------------------------------------------------------- VMAs
    def find_vma(self, addr: int) -> Vma | None:
        for v in self.vmas:
            if addr in v:
                return v
        return None

    def mmap(self, file: MappedFile | None, addr: int, length: int, prot: int,
             flags: int) -> int:
        """``mmap(addr, length, prot, flags | MAP_FIXED, fd)``: 0 or -errno."""
        if addr % PAGE_SIZE or length <= 0:
            return -errno.EINVAL
        length = -(-length // PAGE_SIZE) * PAGE_SIZE
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
            return -errno.EINVAL
        if file is not None:
            if flags & MAP_PRIVATE or not flags & MAP_SHARED:
                return -errno.EINVAL   # get_unmapped_area / VM_SHARED: shared mappings only
            rc = file.may_map(addr, addr + length, prot)
            if rc:
                return rc
        self.munmap(addr, length)
        self.vmas.append(Vma(addr, addr + length, prot, flags, file))
        self.vmas.sort(key=lambda v: v.start)
        return 0

    def munmap(self, addr: int, length: int) -> None:
        end = addr + length
        keep = []
        for v in self.vmas:
            if v.end <= addr or v.start >= end:
                keep.append(v)
                continue
            if v.start < addr:
                keep.append(Vma(v.start, addr, v.prot, v.flags, v.file))
            if v.end > end:
                keep.append(Vma(end, v.end, v.prot, v.flags, v.file))
        self.vmas = sorted(keep, key=lambda v: v.start)
        self.unmap_range(addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        """Change protections; an enclave VMA re-checks them against its pages."""
        if addr % PAGE_SIZE:
            return -errno.EINVAL
        end = addr + -(-length // PAGE_SIZE) * PAGE_SIZE
        covered = [v for v in self.vmas if v.start < end and v.end > addr]
        if not covered or covered[0].start > addr or covered[-1].end < end:
            return -errno.ENOMEM
        for v in covered:
            if v.file is not None:
                rc = v.file.may_map(max(v.start, addr), min(v.end, end), prot)
                if rc:
                    return rc
        new = []
        for v in self.vmas:
            if v.end <= addr or v.start >= end:
                new.append(v)
                continue
            if v.start < addr:
                new.append(Vma(v.start, addr, v.prot, v.flags, v.file))
            new.append(Vma(max(v.start, addr), min(v.end, end), prot, v.flags, v.file))
            if v.end > end:
                new.append(Vma(end, v.end, v.prot, v.flags, v.file))
        self.vmas = sorted(new, key=lambda v: v.start)
        return 0

    # -------------------------------------------------------------- the walker's view
    def lookup(self, linaddr: int) -> tuple[int, int] | None:
        vma = self.find_vma(linaddr)
        if vma is None:
            return None
        if vma.file is not None:
            pte = vma.file.pte(self, linaddr)
            if pte is None:
                return None
            return pte[0], vma.prot & pte[1]
        pte = super().lookup(linaddr)
        return None if pte is None else (pte[0], vma.prot & pte[1])

    def touch(self, linaddr: int, write: bool) -> None:
        vma = self.find_vma(linaddr)
        if vma is not None and vma.file is not None:
            vma.file.touch(linaddr, write)


def enclave_vmas(mm: Mm, driver: SgxDriver) -> list[Vma]:
    return [v for v in mm.vmas if getattr(v.file, "driver", None) is driver]
