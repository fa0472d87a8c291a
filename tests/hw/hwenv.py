"""Helpers for the processor-model tests (imported by conftest.py and the test modules).

``Env`` wraps one :class:`Processor` and a :class:`BareMetal` driver; ``Env.enclave`` builds
a small, measured, signed and initialised enclave with a fixed layout (offsets from BASE):

=======  ===========================================
0x0000   TCS (NSSA from the ``nssa`` argument)
0x1000   SSA frames (``nssa`` pages, at most 3, REG RW)
0x4000   SECINFO scratch page (REG RW), for EACCEPT & co.
0x5000   data page 0 (REG RW), DATA0 bytes
0x6000   data page 1 (REG RW), DATA1 bytes
0x7000   code page (REG RX)
=======  ===========================================

ELRANGE is SIZE bytes, so offsets 0x8000 and up are free for EAUG.

``unchanged(env)`` is a context manager asserting that every array of ``cpu.st`` and every
byte of ordinary memory is the same after the block as before it (Intel SDM vol. 3D).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from epcsim.arch import (
    PAGE_SIZE,
    Attribute,
    PageType,
    Pcmd,
    Secinfo,
    SecinfoFlags,
    secinfo_flags,
)
from epcsim.hw.baremetal import BareMetal, BuiltEnclave, Evicted, Segment, tcs_image
from epcsim.hw.cpu import Processor
from epcsim.hw.memory import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace

BASE = 0x10_0000_0000
SIZE = 0x20000
EPC_SIZE = 1 << 20          # 256 EPC pages
EPC_BASE = 0x8000_0000      # Processor's default first section

OFF_TCS = 0x0000
OFF_SSA = 0x1000
OFF_SECINFO = 0x4000
OFF_DATA0 = 0x5000
OFF_DATA1 = 0x6000
OFF_CODE = 0x7000
OFF_FREE = 0x8000           # first offset not EADDed

DATA0 = bytes((i * 7 + 3) & 0xFF for i in range(PAGE_SIZE))
DATA1 = bytes((i * 13 + 101) & 0xFF for i in range(PAGE_SIZE))
CODE = b"\x90" * 64 + b"\xc3"

RW = SecinfoFlags.R | SecinfoFlags.W
RX = SecinfoFlags.R | SecinfoFlags.X
FLAGS_REG_RW = secinfo_flags(PageType.REG, RW)
ACCEPT_AUG = secinfo_flags(PageType.REG, RW | SecinfoFlags.PENDING)          # 0x20B
ACCEPT_TCS = secinfo_flags(PageType.TCS, SecinfoFlags.MODIFIED)              # 0x110
ACCEPT_TRIM = secinfo_flags(PageType.TRIM, SecinfoFlags.MODIFIED)            # 0x410


def accept_pr(perms: int) -> int:
    """SECINFO.FLAGS accepting an EMODPR restriction to ``perms``."""
    return secinfo_flags(PageType.REG, perms | SecinfoFlags.PR)


@dataclass
class Enclave:
    built: BuiltEnclave
    aspace: AddressSpace
    nssa: int
    attributes: int
    extra: dict[int, int] = field(default_factory=dict)

    @property
    def secs(self) -> int:
        return self.built.secs

    @property
    def base(self) -> int:
        return self.built.base

    def lin(self, off: int) -> int:
        return self.built.base + off

    def phys(self, off: int) -> int:
        return self.built.pages[self.built.base + off]

    @property
    def tcs(self) -> int:
        return self.lin(OFF_TCS)


class Env:
    """One processor, its bare-metal driver, and helpers to build and page enclaves."""

    def __init__(self, *, content: bool = False, n_lps: int = 4, seed: int = 11,
                 **kw: object) -> None:
        self.cpu = Processor(epc_size=EPC_SIZE, content=content, n_lps=n_lps, seed=seed,
                             **kw)  # type: ignore[arg-type]
        self.bm = BareMetal(self.cpu)
        self.content = content

    # ------------------------------------------------------------------ enclaves
    def enclave(self, *, base: int = BASE, attributes: int = int(Attribute.MODE64BIT),
                nssa: int = 2, init: bool = True) -> Enclave:
        segs = [Segment(OFF_TCS, tcs_image(ossa=OFF_SSA, nssa=nssa), PageType.TCS)]
        for i in range(nssa):
            segs.append(Segment(OFF_SSA + i * PAGE_SIZE, b""))
        segs += [Segment(OFF_SECINFO, b""), Segment(OFF_DATA0, DATA0), Segment(OFF_DATA1, DATA1),
                 Segment(OFF_CODE, CODE, perms=RX)]
        built = self.bm.build(segs, base=base, size=SIZE, attributes=attributes, init=init)
        aspace = AddressSpace()
        for lin, phys in built.pages.items():
            aspace.map(lin, phys, PROT_READ | PROT_WRITE | PROT_EXEC)
        return Enclave(built, aspace, nssa, attributes)

    def enter(self, encl: Enclave, lp: int = 0) -> None:
        self.cpu.aspace[lp] = encl.aspace
        assert self.cpu.eenter(lp, encl.tcs) == 0
        assert self.cpu.inside(lp)

    def map(self, encl: Enclave, lin: int, phys: int) -> None:
        encl.aspace.map(lin, phys, PROT_READ | PROT_WRITE | PROT_EXEC)
        encl.built.pages[lin] = phys

    # ------------------------------------------------------------------ structures
    def pageinfo(self, **kw: int) -> int:
        return self.bm.pageinfo(**kw)

    def secinfo(self, flags: int, reserved: bytes | None = None) -> int:
        if reserved is None:
            return self.bm.secinfo(flags)
        return self.bm.put(Secinfo(flags=flags, reserved=reserved).pack(), Secinfo.ALIGN)

    def free_epc(self) -> int:
        return self.bm.free_epc_page()

    def va(self) -> int:
        return self.bm.epa()

    def mem_addr(self, size: int = PAGE_SIZE, align: int = PAGE_SIZE) -> int:
        return self.cpu.mem.alloc(size, align)

    # ------------------------------------------------------------------ paging
    def evict(self, phys: int, slot: int, *, secs: int | None = None) -> Evicted:
        """EBLOCK + ETRACK + EWB of a child page (no thread inside), asserting success."""
        assert self.cpu.eblock(phys) == 0
        if secs is not None:
            assert self.cpu.etrack(secs) == 0
        rc, ev = self.bm.ewb(phys, slot)
        assert rc == 0, rc
        return ev

    def ewb(self, phys: int, slot: int) -> tuple[int, Evicted]:
        return self.bm.ewb(phys, slot)

    def eldu(self, ev: Evicted, secs: int, target: int | None = None, *,
             linaddr: int | None = None, blocked: bool = False) -> tuple[int, int]:
        if linaddr is not None:
            ev = Evicted(linaddr=linaddr, srcpge=ev.srcpge, pcmd=ev.pcmd, va_slot=ev.va_slot)
        return self.bm.eldu(ev, secs, target, blocked=blocked)

    def read_pcmd(self, ev: Evicted) -> Pcmd:
        return Pcmd.unpack(self.cpu.mem.read(ev.pcmd, Pcmd.SIZE))

    def write_pcmd(self, ev: Evicted, pcmd: Pcmd) -> None:
        self.cpu.mem.write(ev.pcmd, pcmd.pack())

    def flip_mem(self, addr: int, bit: int = 0) -> None:
        b = self.cpu.mem.read(addr, 1)[0] ^ (1 << bit)
        self.cpu.mem.write(addr, bytes([b]))

    def slot_occupied(self, slot_addr: int) -> bool:
        """Read a VA slot through EDBGRD: all-ones when occupied, zero when free."""
        rc, value = self.cpu.edbgrd(slot_addr)
        assert rc == 0
        assert value in (0, 0xFFFFFFFFFFFFFFFF)
        return value != 0

    # ------------------------------------------------------------------ EACCEPT & co.
    def _secinfo_operand(self, encl: Enclave, lp: int, flags: int) -> tuple[int, int | None]:
        lin = encl.lin(OFF_SECINFO)
        if self.content:
            self.cpu.enclave_write(lp, lin, Secinfo(flags=flags).pack())
            return lin, None
        return lin, flags

    def eaccept(self, encl: Enclave, lp: int, target_lin: int, flags: int) -> int:
        lin, f = self._secinfo_operand(encl, lp, flags)
        return self.cpu.eaccept(lp, lin, target_lin, flags=f)

    def emodpe(self, encl: Enclave, lp: int, target_lin: int, flags: int) -> int:
        lin, f = self._secinfo_operand(encl, lp, flags)
        return self.cpu.emodpe(lp, lin, target_lin, flags=f)

    def eacceptcopy(self, encl: Enclave, lp: int, dest_lin: int, src_lin: int,
                    flags: int) -> int:
        lin, f = self._secinfo_operand(encl, lp, flags)
        return self.cpu.eacceptcopy(lp, lin, dest_lin, src_lin, flags=f)

    def eaug(self, encl: Enclave, off: int) -> int:
        """EAUG a page at ``off`` and map it; returns its EPC address."""
        epc = self.free_epc()
        pi = self.pageinfo(linaddr=encl.lin(off), secs=encl.secs)
        assert self.cpu.eaug(pi, epc) == 0
        self.map(encl, encl.lin(off), epc)
        return epc

    def emodpr(self, phys: int, perms: int) -> int:
        return self.cpu.emodpr(self.secinfo(secinfo_flags(PageType.REG, perms)), phys)

    def emodt(self, phys: int, pt: int) -> int:
        return self.cpu.emodt(self.secinfo(secinfo_flags(pt)), phys)

    # ------------------------------------------------------------------ inspection
    def epcm(self, phys: int) -> dict[str, int | bool]:
        return self.cpu.epcm(phys)

    def info(self, encl: Enclave) -> dict[str, int | bytes]:
        return self.cpu.secs_info(encl.secs)


def snapshot(cpu: Processor) -> tuple[dict[str, np.ndarray], dict[int, bytes]]:
    arrays = {name: np.array(getattr(cpu.st, name), copy=True) for name in cpu.st._fields}
    memory = {page: bytes(buf) for page, buf in cpu.mem._pages.items()}
    return arrays, memory


def assert_same(before: tuple[dict[str, np.ndarray], dict[int, bytes]],
                after: tuple[dict[str, np.ndarray], dict[int, bytes]]) -> None:
    a_arr, a_mem = before
    b_arr, b_mem = after
    changed = [name for name in a_arr
               if a_arr[name].shape != b_arr[name].shape
               or not np.array_equal(a_arr[name], b_arr[name])]
    assert not changed, f"processor arrays changed: {changed}"
    # Pages that were only read may have been created empty; compare contents.
    keys = set(a_mem) | set(b_mem)
    diff = [k for k in keys if a_mem.get(k, bytes(PAGE_SIZE)) != b_mem.get(k, bytes(PAGE_SIZE))]
    assert not diff, f"memory pages changed: {[hex(k << 12) for k in diff]}"


@contextlib.contextmanager
def unchanged(env: Env):
    """Assert the block leaves every array of ``cpu.st`` and all memory as it found them."""
    before = snapshot(env.cpu)
    yield
    assert_same(before, snapshot(env.cpu))


# What an AEX changes: the LP's enclave state, its TCS's CSSA/busy bits, the epoch counters.
_AEX_FIELDS = ("lp_row", "lp_epoch", "lp_tcs", "tcs", "s_refcnt", "s_prev")


@contextlib.contextmanager
def unchanged_in_enclave(env: Env, lp: int = 0):
    """Like :func:`unchanged` for an ENCLU leaf run inside an enclave on ``lp``.

    An exception raised in enclave mode may be delivered through an AEX (Intel SDM vol. 3D),
    so the only difference allowed is that ``lp`` left the enclave that way: one fewer
    thread inside, the LP outside. Everything else must be as it was.
    """
    cpu = env.cpu
    was_inside = cpu.inside(lp)
    before_inside = int(cpu.st.s_refcnt.sum() + cpu.st.s_prev.sum())
    before = snapshot(cpu)
    yield
    after = snapshot(cpu)
    if was_inside and not cpu.inside(lp):
        assert int(cpu.st.s_refcnt.sum() + cpu.st.s_prev.sum()) == before_inside - 1
        for name in _AEX_FIELDS:
            before[0][name] = after[0][name]
    assert_same(before, after)
