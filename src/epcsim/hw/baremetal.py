"""A minimal privileged program that drives the leaves through memory structures.

It is not an OS: no allocator policy, no reclaim, no faults handled. It places PAGEINFO,
SECINFO, source pages and PCMDs in ordinary memory and issues the leaves with addresses,
the way ring-0 code does. Tests and the demo use it to build real, measured, signed and
initialised enclaves and to walk pages through eviction and reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from epcsim.arch import (
    PAGE_SIZE,
    Attribute,
    PageInfo,
    PageType,
    Pcmd,
    Secinfo,
    SecinfoFlags,
    Secs,
    Tcs,
    secinfo_flags,
)
from epcsim.hw.cpu import Processor
from epcsim.hw.crypto import mrenclave, mrsigner, sign_sigstruct


@dataclass
class Segment:
    """Pages to EADD: ``data`` is padded to whole pages; ``measure`` adds EEXTENDs."""

    offset: int
    data: bytes
    page_type: PageType = PageType.REG
    perms: int = SecinfoFlags.R | SecinfoFlags.W
    measure: bool = True

    @property
    def npages(self) -> int:
        return max(1, -(-len(self.data) // PAGE_SIZE))


@dataclass
class BuiltEnclave:
    """Where an enclave built by :class:`BareMetal` lives."""

    base: int
    size: int
    secs: int                                  # physical address of the SECS page
    pages: dict[int, int] = field(default_factory=dict)  # linaddr -> EPC physical address
    mrenclave: bytes = b""


@dataclass
class Evicted:
    """Untrusted memory holding one evicted page: contents, PCMD, VA slot address."""

    linaddr: int
    srcpge: int
    pcmd: int
    va_slot: int


def tcs_image(ossa: int, nssa: int = 1, oentry: int = 0) -> bytes:
    """A TCS as the selftests' loader writes it."""
    return Tcs(ossa=ossa, nssa=nssa, oentry=oentry, fslimit=0xFFFFFFFF,
               gslimit=0xFFFFFFFF).pack()


class BareMetal:
    """Issue ENCLS leaves on a :class:`Processor` with operands in its memory."""

    def __init__(self, cpu: Processor) -> None:
        self.cpu = cpu
        self.mem = cpu.mem
        self._next_page = 0

    # -------------------------------------------------------------- memory plumbing
    def put(self, data: bytes, align: int = PAGE_SIZE) -> int:
        addr = self.mem.alloc(len(data), align)
        self.mem.write(addr, data)
        return addr

    def pageinfo(self, linaddr: int = 0, srcpge: int = 0, metadata: int = 0,
                 secs: int = 0) -> int:
        return self.put(PageInfo(linaddr=linaddr, srcpge=srcpge, metadata=metadata,
                                 secs=secs).pack(), PageInfo.ALIGN)

    def secinfo(self, flags: int) -> int:
        return self.put(Secinfo(flags=flags).pack(), Secinfo.ALIGN)

    def free_epc_page(self) -> int:
        """The lowest-numbered EPC page that is not VALID (a bump allocator, no reuse order)."""
        st = self.cpu.st
        for page in range(self._next_page, self.cpu.npages):
            if not st.flags[page] & 0x40:
                self._next_page = page + 1
                return self.cpu.page_addr(page)
        for page in range(self.cpu.npages):
            if not st.flags[page] & 0x40:
                self._next_page = page + 1
                return self.cpu.page_addr(page)
        raise RuntimeError("EPC full")

    # -------------------------------------------------------------- building
    def ecreate(self, base: int, size: int, *, ssaframesize: int = 1,
                attributes: int = Attribute.MODE64BIT, xfrm: int = 3,
                miscselect: int = 0) -> int:
        secs = Secs(size=size, baseaddr=base, ssaframesize=ssaframesize,
                    attributes=attributes, xfrm=xfrm, miscselect=miscselect)
        epc = self.free_epc_page()
        src = self.put(secs.pack())
        pi = self.pageinfo(srcpge=src, metadata=self.secinfo(secinfo_flags(PageType.SECS)))
        self.cpu.ecreate(pi, epc)
        return epc

    def eadd(self, secs: int, linaddr: int, data: bytes, flags: int, measure: bool) -> int:
        epc = self.free_epc_page()
        src = self.put(data.ljust(PAGE_SIZE, b"\0")[:PAGE_SIZE])
        pi = self.pageinfo(linaddr=linaddr, srcpge=src, metadata=self.secinfo(flags), secs=secs)
        self.cpu.eadd(pi, epc)
        if measure:
            for off in range(0, PAGE_SIZE, 256):
                self.cpu.eextend(secs, epc + off)
        return epc

    def build(self, segments: list[Segment], *, base: int = 0x10_0000_0000, size: int = 0,
              attributes: int = Attribute.MODE64BIT, init: bool = True) -> BuiltEnclave:
        """ECREATE, EADD/EEXTEND each segment, sign the measurement and EINIT."""
        span = max(s.offset + s.npages * PAGE_SIZE for s in segments)
        if not size:
            size = 8192
            while size < span:
                size <<= 1
        secs = self.ecreate(base, size, attributes=attributes)
        encl = BuiltEnclave(base=base, size=size, secs=secs)
        records = []
        for seg in segments:
            perms = 0 if seg.page_type == PageType.TCS else seg.perms
            flags = secinfo_flags(seg.page_type, perms)
            for i in range(seg.npages):
                chunk = seg.data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE].ljust(PAGE_SIZE, b"\0")
                off = seg.offset + i * PAGE_SIZE
                encl.pages[base + off] = self.eadd(secs, base + off, chunk, flags, seg.measure)
                records.append((off, flags, chunk if seg.measure else None))
        encl.mrenclave = mrenclave(1, size, records)
        if init:
            self.einit(encl, attributes=attributes)
        return encl

    def einit(self, encl: BuiltEnclave, *, attributes: int = Attribute.MODE64BIT,
              sigstruct: bytes | None = None) -> int:
        sig = sigstruct if sigstruct is not None else sign_sigstruct(
            encl.mrenclave, attributes=attributes)
        # Flexible launch control: the kernel programs the enclave's own signer first.
        self.cpu.lepubkeyhash = mrsigner(sig[128:512])
        sig_addr = self.put(sig)
        token = self.put(bytes(304), 512)
        return self.cpu.einit(sig_addr, encl.secs, token)

    # -------------------------------------------------------------- paging
    def epa(self) -> int:
        epc = self.free_epc_page()
        self.cpu.epa(epc)
        return epc

    def ewb(self, epc: int, va_slot: int) -> tuple[int, Evicted]:
        src = self.mem.alloc(PAGE_SIZE)
        pcmd = self.mem.alloc(Pcmd.SIZE, Pcmd.ALIGN)
        pi = self.pageinfo(srcpge=src, metadata=pcmd)
        rc = self.cpu.ewb(pi, epc, va_slot)
        linaddr = PageInfo.unpack(self.mem.read(pi, PageInfo.SIZE)).linaddr
        return rc, Evicted(linaddr=linaddr, srcpge=src, pcmd=pcmd, va_slot=va_slot)

    def eldu(self, ev: Evicted, secs: int, epc: int | None = None, *,
             blocked: bool = False) -> tuple[int, int]:
        """Reload an evicted page; returns (RAX, EPC address it went to)."""
        target = epc if epc is not None else self.free_epc_page()
        pi = self.pageinfo(linaddr=ev.linaddr, srcpge=ev.srcpge, metadata=ev.pcmd, secs=secs)
        leaf = self.cpu.eldb if blocked else self.cpu.eldu
        return leaf(pi, target, ev.va_slot), target
