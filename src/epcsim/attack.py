"""The malicious OS: attacks on enclaves that SGX's hardware checks must stop.

SGX trusts no software outside the enclave: the OS owns the page tables, the EPC manager, the
backing store and every ENCLS leaf. What it cannot do is read or change an enclave's data, or
feed it stale data (Intel SDM vol. 3D). Each attack here is one thing such an OS does with the
powers it really has: edit the backing file, run leaves with operands of its choosing, rewrite
page tables, read physical memory. It reports what the processor model did and whether
the enclaves' data survived.

A :class:`Lab` is the victim machine: a content-mode processor and kernel with enclaves built
by the selftests' loader, all at the same base address (each in its own process), so that
only the EID tells their pages apart. The lab remembers every value the enclaves wrote; its
:meth:`Lab.verify` reads them all back through the enclaves.

    >>> from epcsim.attack import ATTACKS, Lab
    >>> r = ATTACKS["tamper-contents"](Lab())
    >>> r.outcome, r.detected, r.data_unchanged
    ('SGX_MAC_COMPARE_FAIL', True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from epcsim.arch import PAGE_SIZE, SgxReturn
from epcsim.hw.cpu import ArchFault, Processor
from epcsim.hw.epc import EPCM_VALID
from epcsim.kernel.backing import PCMD_SIZE, Backing
from epcsim.kernel.encl import EP_PRESENT
from epcsim.kernel.instance import Kernel
from epcsim.kernel.mm import Vma
from epcsim.kernel.vdso import EENTER, EEXIT, ERESUME, Operation, SgxEnclaveRun
from epcsim.selftest.loader import (
    ENCL_BUFFER,
    HEAP,
    TestEncl,
    op_get_from_address,
    op_put_to_address,
    setup_test_encl,
)

LAB_BASE = 0x10_0000_0000
X86_PF_SGX = 0x8000


class Blob(NamedTuple):
    """What the backing file holds for one evicted page: sealed contents and PCMD bytes."""

    contents: bytes
    pcmd: bytes


@dataclass
class AttackResult:
    """What the hardware model did when the OS attacked.

    ``outcome`` is the architectural result: an SGX error code name (``SGX_MAC_COMPARE_FAIL``),
    a fault (``#PF``, ``#GP``) or ``abort-page``. ``enclave_saw`` is what the victim thread got
    (``SIGBUS``, ``#PF`` with the SGX bit, or ``nothing``). ``data_unchanged``: afterwards every
    value every enclave of the lab wrote reads back exactly; ``clean``: the kernel's and
    manager's invariants hold and no EPC page leaked.
    """

    name: str
    outcome: str
    detected: bool
    enclave_saw: str = "nothing"
    data_unchanged: bool = False
    clean: bool = False
    steps: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        """The enclave's promises held: detected, data intact, nothing else broken."""
        return self.detected and self.data_unchanged and self.clean


class AccessFailed(Exception):
    """An enclave access did not complete; the thread waits to be resumed."""

    def __init__(self, run: SgxEnclaveRun) -> None:
        self.vector = run.exception_vector
        self.error_code = run.exception_error_code
        self.addr = run.exception_addr
        super().__init__(f"exception vector {self.vector} error code {self.error_code:#x} "
                         f"at {self.addr:#x}")

    @property
    def seen(self) -> str:
        if self.vector == 14 and self.error_code & X86_PF_SGX:
            return "#PF(SGX)"
        return "SIGBUS" if self.vector == 14 else f"vector {self.vector}"


class Lab:
    """A victim machine: ``n`` enclaves with ``heap_pages`` of heap each, values written."""

    def __init__(self, *, epc_pages: int = 256, enclaves: int = 2, heap_pages: int = 4,
                 seed: int = 0, backing_dir: str | None = None, fill: bool = True) -> None:
        self.cpu = Processor(epc_size=epc_pages * PAGE_SIZE, content=True, n_lps=2, seed=seed)
        self.kernel = Kernel(self.cpu, backing_dir=backing_dir)
        self.enclaves: list[TestEncl] = [
            setup_test_encl(self.kernel, heap_pages * PAGE_SIZE, base=LAB_BASE)
            for _ in range(enclaves)]
        self.values: dict[tuple[int, int], int] = {}
        self.pending: dict[int, tuple[int, Operation]] = {}   # enclave -> interrupted access
        if fill:
            for i in range(enclaves):
                for n, addr in enumerate(self.pages(i)):
                    self.write(i, addr + 8 * (i + 1), 0x5EC0_0000_0000 + (i << 16) + n)

    # -------------------------------------------------------------- the enclaves' view
    def pages(self, i: int) -> list[int]:
        """The writable data pages of enclave ``i`` (encl_buffer, then the heap)."""
        encl = self.enclaves[i]
        heap = encl.segments[-1].size // PAGE_SIZE
        return ([encl.base + ENCL_BUFFER, encl.base + ENCL_BUFFER + PAGE_SIZE]
                + [encl.base + HEAP + n * PAGE_SIZE for n in range(heap)])

    def _enter(self, i: int, op: Operation) -> SgxEnclaveRun:
        encl = self.enclaves[i]
        run = SgxEnclaveRun(tcs=encl.tcs[0])
        assert encl.thread.enter(run, EENTER, op) == 0
        return run

    def write(self, i: int, addr: int, value: int) -> None:
        """Enclave ``i`` stores ``value`` at ``addr``; raises AccessFailed if it cannot."""
        op = op_put_to_address(addr, value)
        op.values["put"] = value
        run = self._enter(i, op)
        if run.function != EEXIT:
            self.pending[i] = (addr, op)
            raise AccessFailed(run)
        self.values[(i, addr)] = value

    def read(self, i: int, addr: int) -> int:
        """Enclave ``i`` loads the u64 at ``addr``; AccessFailed leaves the thread pending."""
        op = op_get_from_address(addr)
        run = self._enter(i, op)
        if run.function != EEXIT:
            self.pending[i] = (addr, op)
            raise AccessFailed(run)
        return int(op.values["value"])

    def resume(self, i: int) -> int | None:
        """ERESUME enclave ``i``'s interrupted access (after the OS undid its attack).

        Returns the value a resumed load read (None for a store, which is now recorded).
        """
        addr, op = self.pending.pop(i)
        encl = self.enclaves[i]
        if encl.tcs[0] in encl.thread.pending:
            run = SgxEnclaveRun(tcs=encl.tcs[0])
            assert encl.thread.enter(run, ERESUME) == 0
        else:
            run = self._enter(i, op)            # EENTER itself failed: the TCS did not load
        if run.function != EEXIT:
            self.pending[i] = (addr, op)
            raise AccessFailed(run)
        if "put" in op.values:
            self.values[(i, addr)] = op.values["put"]
            return None
        return op.values.get("value")

    def verify(self) -> bool:
        """Every value every enclave wrote reads back exactly."""
        return all(self.read(i, addr) == v for (i, addr), v in sorted(self.values.items()))

    def clean(self) -> bool:
        """The manager's invariants hold; no EPC page leaked; no thread left inside."""
        k = self.kernel
        try:
            k.mgr.check()
        except AssertionError:
            return False
        return (k.mgr.census()["leaked"] == 0 and k.sgx.leaks == 0
                and not any(self.cpu.inside(lp) for lp in range(self.cpu.n_lps)))

    # -------------------------------------------------------------- the OS's powers
    def e(self, i: int) -> int:
        return self.enclaves[i].file.e

    def ep(self, i: int, addr: int) -> int:
        return self.kernel.sgx.ep_of(self.e(i), addr)

    def epc_of(self, i: int, addr: int) -> int:
        """The EPC page holding ``addr`` of enclave ``i`` (NONE when evicted)."""
        return int(self.kernel.sgx.ds.ep_epc[self.ep(i, addr)])

    def evict_all(self) -> None:
        """Run the reclaimer until every page of every enclave (and the SECSes) is out."""
        mgr = self.kernel.mgr
        for _ in range(4):
            mgr.reclaim_pages(max(mgr.lru_pages, 1))

    def backing(self, i: int) -> Backing:
        return self.kernel.sgx.owner.backing[self.e(i)]

    def index(self, i: int, addr: int) -> int:
        return (addr - self.enclaves[i].base) >> 12

    def blob(self, i: int, addr: int) -> Blob:
        """Read the sealed page and PCMD of ``addr`` from the backing file."""
        b, idx = self.backing(i), self.index(i, addr)
        return Blob(b.read_raw(b.contents_offset(idx), PAGE_SIZE),
                    b.read_raw(b.pcmd_offset(idx), PCMD_SIZE))

    def put_blob(self, i: int, addr: int, blob: Blob) -> None:
        """Write a sealed page and PCMD into the backing file at ``addr``'s place."""
        b, idx = self.backing(i), self.index(i, addr)
        b.write_raw(b.contents_offset(idx), blob.contents)
        b.write_raw(b.pcmd_offset(idx), blob.pcmd)

    def load_secs(self, i: int) -> None:
        assert self.kernel.sgx.load_secs(self.e(i)) == 0

    def secs_epc(self, i: int) -> int:
        return int(self.kernel.sgx.ds.e_secs[self.e(i)])

    def free_va_slot(self, i: int) -> tuple[int, int]:
        """A VA page of enclave ``i`` and a slot the kernel is not using."""
        ds = self.kernel.sgx.ds
        for va in self.kernel.sgx.owner.va_pages(self.e(i)):
            for slot in range(512):
                if not (int(ds.va_bits[va, slot >> 6]) >> (slot & 63)) & 1:
                    return int(ds.va_epc[va]), slot
        raise RuntimeError("no free VA slot")

    def close(self) -> None:
        for i in list(self.pending):
            try:
                self.resume(i)
            except AccessFailed:
                pass
        for encl in self.enclaves:
            encl.close()


def _first_data(lab: Lab, i: int = 0) -> tuple[int, int]:
    """A written address in enclave ``i``'s heap and its value."""
    addr = lab.pages(i)[2] + 8 * (i + 1)
    return addr, lab.values[(i, addr)]


def _ret(rc: int) -> str:
    """An ENCLS result by name; a fault (the driver's -vector) as #PF/#GP."""
    if rc < 0:
        return {-14: "#PF", -13: "#GP", -1: "no copy"}.get(rc, f"vector {-rc}")
    return SgxReturn(rc).name


def _fault(f: ArchFault) -> str:
    return f.name.split("(")[0]


def _finish(lab: Lab, r: AttackResult) -> AttackResult:
    r.data_unchanged = lab.verify()
    r.clean = lab.clean()
    return r


def _fault_in_tampered(lab: Lab, r: AttackResult, i: int, addr: int) -> None:
    """The victim touches ``addr``; record ELDU's result and what the enclave saw."""
    try:
        value = lab.read(i, addr)
        r.steps.append(f"enclave read {value:#x}: the attack went through")
        r.outcome = "SGX_SUCCESS"
        return
    except AccessFailed as f:
        r.enclave_saw = f.seen
    r.outcome = _ret(lab.kernel.sgx.last_eldu)
    r.detected = r.outcome == "SGX_MAC_COMPARE_FAIL"
    r.steps.append(f"ELDU returned {r.outcome}; the fault handler gave {r.enclave_saw}")


def _undo_and_resume(lab: Lab, r: AttackResult, i: int, addr: int, genuine: Blob,
                     want: int) -> bool:
    """Put the genuine blob back; the interrupted read must now return ``want``."""
    lab.put_blob(i, addr, genuine)
    if i not in lab.pending:
        return lab.read(i, addr) == want
    got = lab.resume(i)
    r.steps.append(f"genuine blob restored; the interrupted read resumed and got {got:#x}")
    return got == want


# ------------------------------------------------------------------ the backing store

def _tamper(name: str, edit: Callable[[Blob], Blob]) -> Callable[[Lab], AttackResult]:
    def attack(lab: Lab) -> AttackResult:
        r = AttackResult(name, "", False)
        addr, want = _first_data(lab)
        lab.evict_all()
        genuine = lab.blob(0, addr)
        lab.put_blob(0, addr, edit(genuine))
        r.steps.append("evicted everything; edited the backing file")
        _fault_in_tampered(lab, r, 0, addr)
        ok = _undo_and_resume(lab, r, 0, addr, genuine, want)
        _finish(lab, r)
        r.data_unchanged = r.data_unchanged and ok
        return r
    attack.__doc__ = f"{name}: edit the sealed copy in the backing file; ELDU must refuse it."
    return attack


def _flip(data: bytes, at: int, mask: int = 0x01) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1:]


tamper_contents = _tamper("tamper-contents",
                          lambda b: Blob(_flip(b.contents, 123), b.pcmd))
tamper_pcmd_mac = _tamper("tamper-pcmd-mac",
                          lambda b: Blob(b.contents, _flip(b.pcmd, 112)))
# PCMD.SECINFO.FLAGS bit 2 is X: the OS asks for an executable data page.
tamper_pcmd_secinfo = _tamper("tamper-pcmd-secinfo",
                              lambda b: Blob(b.contents, _flip(b.pcmd, 0, 0x04)))
drop_page = _tamper("drop-page", lambda b: Blob(bytes(PAGE_SIZE), bytes(PCMD_SIZE)))


def replay_old_version(lab: Lab) -> AttackResult:
    """Keep a sealed copy, let the enclave write a new value, write the old copy back."""
    r = AttackResult("replay-old-version", "", False)
    addr, old = _first_data(lab)
    lab.evict_all()
    stale = lab.blob(0, addr)
    new = old ^ 0xFFFF_0000_FFFF
    lab.write(0, addr, new)
    lab.evict_all()
    genuine = lab.blob(0, addr)
    r.steps.append(f"kept the copy holding {old:#x}; the enclave wrote {new:#x}; evicted again")
    lab.put_blob(0, addr, stale)
    _fault_in_tampered(lab, r, 0, addr)
    ok = _undo_and_resume(lab, r, 0, addr, genuine, new)
    _finish(lab, r)
    r.data_unchanged = r.data_unchanged and ok
    return r


def _swap(lab: Lab, r: AttackResult, a: tuple[int, int], b: tuple[int, int]) -> AttackResult:
    (ia, addr_a), (ib, addr_b) = a, b
    want_a, want_b = lab.values[a], lab.values[b]
    lab.evict_all()
    blob_a, blob_b = lab.blob(ia, addr_a), lab.blob(ib, addr_b)
    lab.put_blob(ia, addr_a, blob_b)
    lab.put_blob(ib, addr_b, blob_a)
    r.steps.append("evicted everything; swapped the two pages' contents and PCMDs")
    outcomes = []
    ok = True
    for (i, addr), genuine, want in ((a, blob_a, want_a), (b, blob_b, want_b)):
        _fault_in_tampered(lab, r, i, addr)
        outcomes.append(r.outcome)
        ok = _undo_and_resume(lab, r, i, addr, genuine, want) and ok
    r.outcome = outcomes[0] if len(set(outcomes)) == 1 else "/".join(outcomes)
    r.detected = all(o == "SGX_MAC_COMPARE_FAIL" for o in outcomes)
    _finish(lab, r)
    r.data_unchanged = r.data_unchanged and ok
    return r


def swap_same_enclave(lab: Lab) -> AttackResult:
    """Swap two pages of one enclave in its backing file (LINADDR and version differ)."""
    pages = lab.pages(0)
    a = (0, pages[2] + 8)
    b = (0, pages[3] + 8)
    return _swap(lab, AttackResult("swap-same-enclave", "", False), a, b)


def swap_across_enclaves(lab: Lab) -> AttackResult:
    """Swap the same page of two enclaves at the same base (only EID and version differ)."""
    a = (0, lab.pages(0)[2] + 8)
    b = (1, lab.pages(1)[2] + 16)
    lab.values.setdefault(a, lab.read(0, a[1]))
    lab.values.setdefault(b, lab.read(1, b[1]))
    return _swap(lab, AttackResult("swap-across-enclaves", "", False), a, b)


# ------------------------------------------------------------------ leaves with chosen operands

def reload_elsewhere(lab: Lab) -> AttackResult:
    """ELDU a page's genuine blob, with its own VA slot, at another LINADDR."""
    r = AttackResult("reload-elsewhere", "", False)
    k, cpu, ds = lab.kernel, lab.cpu, lab.kernel.sgx.ds
    addr, _ = _first_data(lab)
    other = lab.pages(0)[3]
    lab.evict_all()
    lab.load_secs(0)
    ep = lab.ep(0, addr)
    b = lab.backing(0)
    sealed = b.load(lab.index(0, addr), other)
    assert sealed is not None
    epc = k.mgr.alloc(0, ep, True)
    va_epc, slot = int(ds.va_epc[int(ds.ep_va[ep])]), int(ds.ep_slot[ep])
    version = int(cpu.st.va_slots[int(cpu.st.row[va_epc]), slot])
    rc = cpu.eldu_page(epc, va_epc, slot, lab.secs_epc(0), sealed)
    r.outcome = _ret(rc)
    r.detected = rc == SgxReturn.SGX_MAC_COMPARE_FAIL
    still_free = not int(cpu.st.flags[epc]) & EPCM_VALID
    kept = int(cpu.st.va_slots[int(cpu.st.row[va_epc]), slot]) == version
    r.steps.append(f"ELDU at {other:#x} of the page from {addr:#x}: {r.outcome}; "
                   f"target page still free: {still_free}; VA slot kept its version: {kept}")
    r.detected = r.detected and still_free and kept
    k.mgr.free(epc)
    return _finish(lab, r)


def _with_children(lab: Lab, r: AttackResult, leaf: Callable[[int], int]) -> AttackResult:
    secs = lab.secs_epc(0)
    before = lab.cpu.secs_info(lab.cpu.page_addr(secs))
    rc = leaf(secs)
    r.outcome = _ret(rc)
    r.detected = rc == SgxReturn.SGX_CHILD_PRESENT
    after_valid = bool(int(lab.cpu.st.flags[secs]) & EPCM_VALID)
    after = lab.cpu.secs_info(lab.cpu.page_addr(secs))
    r.steps.append(f"{r.outcome}; SECS still valid: {after_valid}; "
                   f"CHLDCNT {before['chldcnt']} -> {after['chldcnt']}")
    r.detected = r.detected and after_valid and after == before
    return _finish(lab, r)


def eremove_secs_with_children(lab: Lab) -> AttackResult:
    """EREMOVE the SECS while the enclave has pages in the EPC."""
    r = AttackResult("eremove-secs-with-children", "", False)
    return _with_children(lab, r, lab.cpu.eremove_page)


def ewb_secs_with_children(lab: Lab) -> AttackResult:
    """EWB the SECS (into a free slot of the enclave's VA page) while children are resident."""
    r = AttackResult("ewb-secs-with-children", "", False)
    va, slot = lab.free_va_slot(0)
    st = lab.cpu.st

    def leaf(secs: int) -> int:
        rc, sealed = lab.cpu.ewb_page(secs, va, slot)
        r.steps.append(f"no sealed copy produced: {sealed is None}; "
                       f"VA slot still empty: {int(st.va_slots[int(st.row[va]), slot]) == 0}")
        return int(rc)
    res = _with_children(lab, r, leaf)
    res.detected = res.detected and int(st.va_slots[int(st.row[va]), slot]) == 0
    return res


def eremove_while_inside(lab: Lab) -> AttackResult:
    """EREMOVE a page of an enclave while one of its threads runs inside it."""
    r = AttackResult("eremove-while-inside", "", False)
    cpu = lab.cpu
    encl = lab.enclaves[0]
    addr, _ = _first_data(lab)
    lab.read(0, addr)                       # the page is resident
    cpu.aspace[1] = encl.mm
    _ensure_mapped(lab, 0, encl.tcs[1])     # so is TCS #2, which the second thread enters
    assert cpu.eenter(1, encl.tcs[1]) == 0
    epc = lab.epc_of(0, addr)
    rc = cpu.eremove_page(epc)
    r.outcome = _ret(rc)
    r.detected = (rc == SgxReturn.SGX_ENCLAVE_ACT and bool(int(cpu.st.flags[epc]) & EPCM_VALID))
    r.steps.append(f"thread inside on LP 1; EREMOVE of the page at {addr:#x}: {r.outcome}")
    assert cpu.eexit(1) == 0
    return _finish(lab, r)


def _ensure_mapped(lab: Lab, i: int, addr: int) -> None:
    k = lab.kernel
    for _ in range(8):
        if lab.enclaves[i].mm.lookup(addr) is not None:
            return
        k.handle_page_fault(lab.enclaves[i].mm, addr, 0)


class _ForgedPte:
    """The OS's page-table edit: one linear page of a process points at a chosen EPC page."""

    def __init__(self, real: object, linaddr: int, phys: int) -> None:
        self.real = real
        self.linaddr = linaddr & ~0xFFF
        self.phys = phys

    def may_map(self, start: int, end: int, prot: int) -> int:
        return self.real.may_map(start, end, prot)  # type: ignore[attr-defined,no-any-return]

    def pte(self, mm: object, linaddr: int) -> tuple[int, int] | None:
        if linaddr & ~0xFFF == self.linaddr:
            return self.phys, 0x7
        return self.real.pte(mm, linaddr)  # type: ignore[attr-defined,no-any-return]

    def touch(self, linaddr: int, write: bool) -> None:
        self.real.touch(linaddr, write)  # type: ignore[attr-defined]


def map_foreign_page(lab: Lab) -> AttackResult:
    """Point enclave 1's PTE for an address at enclave 0's EPC page for the same address."""
    r = AttackResult("map-foreign-page", "", False)
    addr, want = _first_data(lab, 1)
    lab.read(0, addr)                       # enclave 0's page at the same address is resident
    victim_epc = lab.epc_of(0, addr)
    mm = lab.enclaves[1].mm
    vma = mm.find_vma(addr)
    assert vma is not None
    forged = Vma(vma.start, vma.end, vma.prot, vma.flags,
                 _ForgedPte(vma.file, addr, lab.cpu.page_addr(victim_epc)))  # type: ignore[arg-type]
    mm.vmas[mm.vmas.index(vma)] = forged
    r.steps.append(f"enclave 1's PTE for {addr:#x} now maps enclave 0's EPC page {victim_epc}")
    try:
        value = lab.read(1, addr)
        r.outcome = "read"
        r.steps.append(f"enclave 1 read {value:#x}")
    except AccessFailed as f:
        r.enclave_saw = f.seen
        r.outcome = "#PF" if f.vector == 14 else f"vector {f.vector}"
        r.detected = f.vector == 14 and bool(f.error_code & X86_PF_SGX)
        r.steps.append(f"the access raised #PF with error code {f.error_code:#x}")
    mm.vmas[mm.vmas.index(forged)] = vma
    if 1 in lab.pending:
        got = lab.resume(1)
        r.steps.append(f"page tables restored; enclave 1 resumed and read {got:#x}")
        if got != want:
            r.data_unchanged = False
            return r
    return _finish(lab, r)


def read_epc_from_outside(lab: Lab) -> AttackResult:
    """Read (and write) an enclave's EPC page by physical address, and with EDBGRD."""
    r = AttackResult("read-epc-from-outside", "", False)
    cpu = lab.cpu
    addr, want = _first_data(lab)
    lab.read(0, addr)
    phys = cpu.page_addr(lab.epc_of(0, addr)) + (addr & 0xFFF)
    seen = cpu.mem.read(phys & ~0xFFF, PAGE_SIZE)
    cpu.mem.write(phys, b"\0" * 8)
    abort = seen == b"\xff" * PAGE_SIZE
    r.steps.append(f"a load of the EPC page from outside read all ones: {abort}; "
                   "a store was dropped")
    try:
        cpu.edbgrd(phys & ~0x7)
        dbg = "read"
    except ArchFault as f:
        dbg = _fault(f)
    r.steps.append(f"EDBGRD of a production enclave: {dbg}")
    r.outcome = "abort-page" if abort else "read"
    r.detected = abort and dbg == "#GP"
    res = _finish(lab, r)
    res.data_unchanged = res.data_unchanged and lab.read(0, addr) == want
    return res


ATTACKS: dict[str, Callable[[Lab], AttackResult]] = {
    "tamper-contents": tamper_contents,
    "tamper-pcmd-mac": tamper_pcmd_mac,
    "tamper-pcmd-secinfo": tamper_pcmd_secinfo,
    "replay-old-version": replay_old_version,
    "swap-same-enclave": swap_same_enclave,
    "swap-across-enclaves": swap_across_enclaves,
    "drop-page": drop_page,
    "reload-elsewhere": reload_elsewhere,
    "eremove-secs-with-children": eremove_secs_with_children,
    "ewb-secs-with-children": ewb_secs_with_children,
    "eremove-while-inside": eremove_while_inside,
    "map-foreign-page": map_foreign_page,
    "read-epc-from-outside": read_epc_from_outside,
}



# ------------------------------------------------------------------ the channel SGX leaves open

class PageFaultTracer:
    """The OS's view of an enclave's execution: the page-fault sequence, and the power to
    make every access to a page of ``watch`` fault.

    While installed, each #PF the kernel handles for enclave ``i`` is recorded as the page's
    offset in ELRANGE (the AEX hides the low 12 bits of the address, so pages are all the OS
    learns). With ``isolate=True`` the OS, after fixing a fault, clears the PTEs of every
    other page of ``watch``: the next access to any of them faults again. Clearing PTEs is an
    ordinary OS power (the reclaimer does it); SGX cannot forbid it (Xu et al., S&P 2015).
    """

    def __init__(self, lab: Lab, i: int, watch: list[int], *, isolate: bool = True) -> None:
        self.lab = lab
        self.i = i
        self.watch = sorted({a & ~0xFFF for a in watch})
        self.isolate = isolate
        self.faults: list[int] = []       # page offsets in ELRANGE, in order
        self._orig: Callable[..., str] | None = None

    def __enter__(self) -> PageFaultTracer:
        kernel = self.lab.kernel
        self._orig = kernel.handle_page_fault
        encl = self.lab.enclaves[self.i]
        base = encl.base

        def traced(mm: object, addr: int, error_code: int) -> str:
            assert self._orig is not None
            outcome = self._orig(mm, addr, error_code)
            if mm is encl.mm:
                self.faults.append((addr & ~0xFFF) - base)
                if self.isolate:
                    self.unmap_all(except_page=addr & ~0xFFF)
            return outcome

        kernel.handle_page_fault = traced  # type: ignore[method-assign]
        if self.isolate:
            self.unmap_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lab.kernel.__dict__.pop("handle_page_fault", None)

    def unmap_all(self, except_page: int = -1) -> None:
        """Clear the PTEs of the watched pages (but ``except_page``)."""
        ds = self.lab.kernel.sgx.ds
        for page in self.watch:
            if page != except_page:
                ep = self.lab.ep(self.i, page)
                ds.ep_flags[ep] &= ~np.uint8(EP_PRESENT)

    def table(self):  # type: ignore[no-untyped-def]
        """The fault sequence as the ``faults`` table of a run: (sequence, tenant, page)."""
        import pyarrow as pa

        return pa.table({"seq": list(range(len(self.faults))),
                         "tenant": [self.i] * len(self.faults),
                         "page": [f >> 12 for f in self.faults]})


__all__ = ["ATTACKS", "AccessFailed", "AttackResult", "Blob", "Lab", "PageFaultTracer"]
