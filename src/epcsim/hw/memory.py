"""Ordinary memory and page tables: what the leaves read their operands from.

ENCLS operands (PAGEINFO, SECINFO, source pages, PCMD) live in ordinary DRAM; the OS
writes them there and passes addresses. Accesses from outside an enclave into the PRM get
abort-page semantics: reads return all ones and writes are dropped (Intel SDM vol. 3D).

Page tables are the OS's; the processor only walks them. :class:`AddressSpace` is that
walk: linear page -> (physical address, PTE permissions).
"""

from __future__ import annotations

from collections.abc import Callable

from epcsim.arch import PAGE_SIZE

PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4


class Memory:
    """Sparse physical DRAM outside the EPC, one bytearray per touched page."""

    def __init__(self, in_prm: Callable[[int], bool], base: int = 0x1_0000_0000) -> None:
        self._pages: dict[int, bytearray] = {}
        self._in_prm = in_prm
        self._brk = base

    def alloc(self, size: int, align: int = PAGE_SIZE) -> int:
        """Reserve ``size`` bytes of fresh DRAM aligned to ``align``; return the address."""
        addr = -(-self._brk // align) * align
        self._brk = addr + max(size, 1)
        return addr

    def read(self, addr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            page, off = divmod(addr, PAGE_SIZE)
            n = min(size, PAGE_SIZE - off)
            if self._in_prm(addr):
                out += b"\xff" * n
            else:
                buf = self._pages.get(page)
                out += buf[off:off + n] if buf is not None else bytes(n)
            addr += n
            size -= n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            page, off = divmod(addr, PAGE_SIZE)
            n = min(len(view), PAGE_SIZE - off)
            if not self._in_prm(addr):
                buf = self._pages.get(page)
                if buf is None:
                    buf = self._pages[page] = bytearray(PAGE_SIZE)
                buf[off:off + n] = view[:n]
            addr += n
            view = view[n:]

    def free(self, addr: int, size: int) -> None:
        """Drop whole pages in [addr, addr+size) (like truncating a shmem range)."""
        first = -(-addr // PAGE_SIZE)
        last = (addr + size) // PAGE_SIZE
        for page in range(first, last):
            self._pages.pop(page, None)

    @property
    def resident_bytes(self) -> int:
        return len(self._pages) * PAGE_SIZE


class AddressSpace:
    """One process's page tables, as the OS maintains them."""

    def __init__(self) -> None:
        self._ptes: dict[int, tuple[int, int]] = {}

    def map(self, linaddr: int, phys: int, prot: int) -> None:
        self._ptes[linaddr >> 12] = (phys & ~0xFFF, prot)

    def unmap(self, linaddr: int) -> None:
        self._ptes.pop(linaddr >> 12, None)

    def unmap_range(self, linaddr: int, length: int) -> None:
        """Unmap every page of ``[linaddr, linaddr + length)``.

        A fresh mapping of a large ELRANGE covers far more pages than there are entries, so
        the walk is over whichever of the two is shorter.
        """
        lo, hi = linaddr >> 12, -(-(linaddr + length) // 4096)
        if hi - lo > len(self._ptes):
            for page in [p for p in self._ptes if lo <= p < hi]:
                del self._ptes[page]
        else:
            for page in range(lo, hi):
                self._ptes.pop(page, None)

    def protect(self, linaddr: int, prot: int) -> None:
        pte = self._ptes.get(linaddr >> 12)
        if pte is not None:
            self._ptes[linaddr >> 12] = (pte[0], prot)

    def lookup(self, linaddr: int) -> tuple[int, int] | None:
        """The PTE for ``linaddr``: (physical page address, PROT_* bits), or None."""
        return self._ptes.get(linaddr >> 12)

    def touch(self, linaddr: int, write: bool) -> None:
        """The walker sets the PTE's accessed (and dirty) bits; plain tables keep none."""
