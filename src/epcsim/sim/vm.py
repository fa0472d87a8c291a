"""Virtual machines: vCPUs, a virtual EPC, and a guest kernel that does not know it is one.

A :class:`Vm` is what QEMU and KVM make of ``-object memory-backend-epc``: a vEPC file opened
on the host and mapped into the VMM's address space, the EPC sections the guest's CPUID
reports, and a guest :class:`~epcsim.kernel.instance.Kernel` (the same manager, driver and
reclaimer as the host's) running on a :class:`~epcsim.hw.vmx.GuestCpu`. Guest enclaves are
built through the guest's ``/dev/sgx_enclave`` and run by guest threads on the VM's vCPUs.

Three modes decide who may take EPC back from a VM:

``reserved``        upstream: every vEPC page is allocated when the VM starts (QEMU
                    preallocates; -ENOMEM is SIGBUS) and never reclaimed.
``oversubscribed``  pages are allocated on first use and the host reclaims them through the
                    KVM owner; the guest never notices (EPT violations reload them).
``balloon``         pages are allocated on first use and never reclaimed by the host; when
                    the host runs short it asks a guest to give pages back, and the guest's
                    own reclaimer frees them (a balloon driver allocating from its manager).

In content mode (a host processor built with ``content=True``) guest enclave pages hold
real bytes: every write puts 64 bytes unique to (VM, enclave, page, version) into the page
and a shadow copy, and every read compares the whole page with the shadow, so a page sealed
and opened by the guest's EWB/ELDU and the host's EWB/ELDUC reads back exactly what was last
written. Metadata mode keeps no page bytes, so each written guest enclave page carries a
one-byte version in the EPCM byte that EWB binds into its MAC and ELDU restores (the TCS
byte, unused by REG pages): it survives every guest and host eviction or is lost with the
page, and :meth:`Vm.check` compares it with the last write.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE, Attribute, PageType, Secinfo, Secs, secinfo_flags
from epcsim.hw.baremetal import tcs_image
from epcsim.hw.cpu import Processor
from epcsim.hw.crypto import mrenclave, sign_sigstruct
from epcsim.hw.epc import EPT_EVICTED, VC_CONFLICT, VC_ELDU, VC_EPT
from epcsim.hw.vmx import ExitHandlerError, GuestCpu, complete_exits
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.instance import KIND_DRIVER, Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_PAGE_MEASURE,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
)
from epcsim.kernel.main import P_BATCH, P_HIGH, P_LOW
from epcsim.kernel.mm import MAP_SHARED, PROT_READ, PROT_WRITE, Mm
from epcsim.kernel.vdso import EENTER, EnclaveThread, Operation, SgxEnclaveRun
from epcsim.kernel.virt import SGX_IOC_VEPC_REMOVE_ALL, VepcFile

MODES = ("reserved", "oversubscribed", "balloon")
VMM_BASE = 0x7F00_0000_0000
ENCLAVE_BASE = 0x10_0000_0000
HEADER_PAGES = 2     # TCS, SSA


class VmError(ValueError):
    """A VM that cannot start or run (one line for the user)."""


class GuestOs:
    """What a guest thread calls into: the guest kernel, then the host's turn.

    After every guest exception the guest kernel handles, the host refills the reserve its
    EPT-violation path used (a sequential model gives the host its turn here).
    """

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.cpu = vm.cpu

    def handle_page_fault(self, mm: Mm, addr: int, error_code: int) -> str:
        out = self.vm.kernel.handle_page_fault(mm, addr, error_code)
        self.vm.host_turn()
        return out


@dataclass
class GuestEnclave:
    """An enclave inside a guest, run by one guest thread on one vCPU."""

    name: str
    npages: int          # data pages
    file: Any
    mm: Mm
    thread: EnclaveThread
    base: int = ENCLAVE_BASE
    version: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    accesses: int = 0
    mismatches: int = 0
    # Content mode: what every data page should hold ([npages, 4096] bytes; empty otherwise).
    shadow: np.ndarray = field(default_factory=lambda: np.zeros((0, PAGE_SIZE), np.uint8))
    bytes_checked: int = 0

    def data_addr(self, i: int) -> int:
        return self.base + (HEADER_PAGES + i) * PAGE_SIZE


class Vm:
    """One VM on a host kernel built with ``kvm=True``."""

    def __init__(self, host: Kernel, name: str, epc_pages: int, *, vcpus: int = 1,
                 lp_base: int = 0, mode: str = "oversubscribed", low: int = 8,
                 high: int = 16, batch: int = 16, reserve: int = 128,
                 vmm_base: int = VMM_BASE, cgroup: str | None = None,
                 cgroups: EpcCgroups | None = None) -> None:
        if mode not in MODES:
            raise VmError(f"vm {name!r}: unknown mode {mode!r}; choose one of "
                          f"{', '.join(MODES)}")
        if host.vepc is None:
            raise VmError("the host kernel runs no KVM owner")
        self.host = host
        self.name = name
        self.mode = mode
        self.epc_pages = epc_pages
        self.vcpus = vcpus
        self.qemu = host.new_mm(f"qemu-{name}")
        # The VMM runs in ``cgroup``: the vEPC it faults in is charged there.
        self.cgroup = cgroup
        self.cgroups = cgroups
        if cgroup is not None:
            if cgroups is None:
                raise VmError(f"vm {name!r}: a cgroup needs the host's EPC cgroups")
            with cgroups.charging(cgroup):
                self.file: VepcFile = host.open_vepc()
        else:
            self.file = host.open_vepc()
        self.vmm_base = vmm_base
        rc = self.qemu.mmap(self.file, vmm_base, epc_pages * PAGE_SIZE,
                            PROT_READ | PROT_WRITE, MAP_SHARED)
        if rc:
            raise VmError(f"vm {name!r}: mmap of the vEPC failed ({rc})")
        if mode == "reserved":
            self._preallocate()
        else:
            host.vepc.enable_exits(reserve)
            if mode == "oversubscribed" and self.file.set_oversubscribed():
                raise VmError(f"vm {name!r}: no host EPC for the vEPC's VA pages")
        self.cpu = GuestCpu(host.cpu, self.file.vm, self.file.base, epc_pages, lp_base,
                            vcpus)
        # Guest time is computed after the run from counters (sim/vmrun.py): no clock
        # reaches the guest's manager, so its ksgxd frees at once (docs/fidelity.md).
        self.kernel = Kernel(self.cpu, low=low, high=high, batch=batch, ksgxd="instant")
        self.os = GuestOs(self)
        self.content = bool(host.cpu.content)
        self.enclaves: list[GuestEnclave] = []
        self.balloon: list[int] = []
        self.deflated = 0    # balloon pages given back to the guest
        self.requests = 0
        self.balancer: Any = None    # the host's balloon policy, called on its turns
        self._in_turn = False
        self.host_turn()

    # -------------------------------------------------------------- host side
    def _preallocate(self) -> None:
        for i in range(self.epc_pages):
            addr = self.vmm_base + i * PAGE_SIZE
            # QEMU touches the page until it is mapped; -EBUSY retries while reclaim
            # (ksgxd, a cgroup's async work) frees something. A sequential model with
            # nothing left to free must stop somewhere: a bound on retries is SIGBUS.
            for _ in range(1000):
                r = self.host.handle_page_fault(self.qemu, addr, 0x6)
                if r != "retry":
                    break
            if r != "fixed":
                why = "do not fit in the host's free EPC"
                if self.cgroups is not None and self.cgroup is not None:
                    full = self.cgroups.at_limit(self.cgroup)
                    if full is not None:
                        why = (f"are refused by misc.max of {full} (-ENOMEM: only "
                               f"unreclaimable pages left in the cgroup)")
                self.file.release()
                raise VmError(f"vm {self.name!r}: SIGBUS at start: {self.epc_pages} pages of "
                              f"vEPC {why}")

    def host_turn(self) -> None:
        if self._in_turn:
            return
        self._in_turn = True
        try:
            if self.balancer is not None:
                self.balancer()
            if self.mode != "reserved":
                self.host.vepc.refill()  # type: ignore[union-attr]
        finally:
            self._in_turn = False

    def held(self) -> int:
        """Host EPC pages behind this VM's EPC now."""
        return int((self.file.ept >= 0).sum())

    def evicted_by_host(self) -> int:
        return int((self.file.ept == EPT_EVICTED).sum())

    def inflate(self, n: int, keep: int = 32) -> int:
        """Balloon: the guest gives up ``n`` of its pages; returns how many host pages that
        freed.

        The guest's balloon driver allocates from its own manager (with reclaim, so the
        guest evicts its own pages as it sees fit); the host then frees the host pages
        behind what it got.
        """
        freed = 0
        taken = 0
        complete_exits(self.host.cpu)   # reloaded pages hold their bytes before any is freed
        st = self.host.cpu.st
        # The balloon takes guest pages, backed or not: an unbacked page taken is one the
        # guest can no longer make the host back.
        while taken < n and self.epc_pages - len(self.balloon) > keep:
            taken += 1
            g = self.kernel.mgr.alloc(KIND_DRIVER, 0, True)
            if g < 0:
                break
            self.balloon.append(g)
            i = self.file.base + g
            h = int(st.ept[i])
            if h >= 0:
                self.host.mgr.free(h)
                st.ept[i] = -1
                freed += 1
        self.host_turn()
        return freed

    def deflate(self, n: int) -> int:
        """Balloon: give up to ``n`` ballooned pages back to the guest; returns how many.

        The balloon driver frees them into the guest's manager. No host page backs them
        (inflating freed those); the host backs each again when the guest first uses it,
        from the exit handler's reserve, as it does any page not yet populated.
        """
        given = 0
        while given < n and self.balloon:
            self.kernel.mgr.free_written(self.balloon.pop())
            given += 1
        self.deflated += given
        return given

    def reboot(self) -> int:
        """A guest reboot: QEMU EREMOVEs every vEPC page and the guest boots a new kernel.

        ``SGX_IOC_VEPC_REMOVE_ALL`` runs twice, as userspace does (a SECS whose children
        came later in the first pass goes in the second); returns the second pass's count
        of SECS still with children, which is a bug when not 0. The old guest's enclaves
        are gone; the host keeps backing the pages it had populated.
        """
        first = self.file.ioctl(SGX_IOC_VEPC_REMOVE_ALL)
        if first < 0:
            raise VmError(f"vm {self.name!r}: SGX_IOC_VEPC_REMOVE_ALL failed ({first})")
        second = self.file.ioctl(SGX_IOC_VEPC_REMOVE_ALL) if first else 0
        k = self.kernel
        self.kernel = Kernel(self.cpu, low=int(k.mgr.ms.p[P_LOW]),
                             high=int(k.mgr.ms.p[P_HIGH]), batch=int(k.mgr.ms.p[P_BATCH]),
                             ksgxd="instant")
        self.enclaves = []
        self.balloon = []
        self.host_turn()
        return second

    # -------------------------------------------------------------- guest enclaves
    def add_enclave(self, name: str, npages: int, vcpu: int = 0) -> GuestEnclave:
        """Build an enclave of ``npages`` data pages through the guest's uapi."""
        k = self.kernel
        size = 1 << max(13, (npages + HEADER_PAGES - 1).bit_length() + 12)
        base = ENCLAVE_BASE + len(self.enclaves) * (1 << 34)
        f = k.open_enclave()
        secs = Secs(size=size, baseaddr=base, ssaframesize=1,
                    attributes=int(Attribute.MODE64BIT), xfrm=3)
        self._ok(f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs.pack())), name, "CREATE")
        records: list[tuple[int, int, bytes | None]] = []
        tcs = tcs_image(ossa=PAGE_SIZE, nssa=1)
        si_tcs = secinfo_flags(PageType.TCS)
        si_rw = secinfo_flags(PageType.REG, 3)
        self._add(f, 0, tcs, si_tcs, True, name)
        records.append((0, si_tcs, tcs))
        for off in range(PAGE_SIZE, (npages + HEADER_PAGES) * PAGE_SIZE, PAGE_SIZE):
            self._add(f, off, bytes(PAGE_SIZE), si_rw, False, name)
            records.append((off, si_rw, None))
            self.host_turn()
        sig = sign_sigstruct(mrenclave(1, size, records), xfrm=3,
                             attributes=int(Attribute.MODE64BIT))
        self._ok(f.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)), name, "INIT")
        mm = k.new_mm(f"{self.name}-{name}")
        self._ok(f.mmap(mm, base, size, PROT_READ | PROT_WRITE, MAP_SHARED), name, "mmap")
        thread = EnclaveThread(self.os, mm, vcpu % self.vcpus)  # type: ignore[arg-type]
        enc = GuestEnclave(name, npages, f, mm, thread, base,
                           np.zeros(npages, np.int64))
        if self.content:
            enc.shadow = np.zeros((npages, PAGE_SIZE), np.uint8)   # EADD put zero pages
        self.enclaves.append(enc)
        self.host_turn()
        return enc

    def _add(self, f: Any, off: int, data: bytes, secinfo: int, measure: bool,
             name: str) -> None:
        arg = SgxEnclaveAddPages(src=data, offset=off, length=PAGE_SIZE,
                                 secinfo=Secinfo(flags=secinfo).pack(),
                                 flags=SGX_PAGE_MEASURE if measure else 0)
        self._ok(f.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg), name, f"ADD_PAGES at {off:#x}")

    def _ok(self, rc: int, name: str, what: str) -> None:
        if rc:
            raise VmError(f"vm {self.name!r}, enclave {name!r}: {what} failed ({rc})")

    # -------------------------------------------------------------- running
    def _stamp_page(self, enc: GuestEnclave, addr: int) -> int:
        pte = enc.mm.lookup(addr)
        assert pte is not None
        g = self.cpu.page_index(pte[0])
        assert g is not None
        return self.cpu.host_page(g)

    def _stamp(self, enc: GuestEnclave, i: int) -> tuple[int, bytes]:
        """Content mode: where and what the write of version ``enc.version[i]`` puts."""
        v = int(enc.version[i])
        data = hashlib.blake2b(f"{self.name}/{enc.name}/{i}/{v}".encode(),
                               digest_size=64).digest()
        return (v * 64) % PAGE_SIZE, data

    def run(self, enc: GuestEnclave, pages: np.ndarray, writes: np.ndarray) -> None:
        """One ECALL: the enclave reads or writes each page of ``pages`` in turn."""
        st_of = self.host.cpu

        def access_bytes(i: int, w: bool):  # type: ignore[no-untyped-def]
            addr = enc.data_addr(i)

            def step(ctx):  # type: ignore[no-untyped-def]
                if w:
                    enc.version[i] += 1
                    off, data = self._stamp(enc, i)
                    ctx.write(addr + off, data)
                    enc.shadow[i, off:off + len(data)] = np.frombuffer(data, np.uint8)
                else:
                    got = ctx.read(addr, PAGE_SIZE)
                    enc.bytes_checked += PAGE_SIZE
                    if got != enc.shadow[i].tobytes():
                        enc.mismatches += 1
            return step

        def access(i: int, w: bool):  # type: ignore[no-untyped-def]
            addr = enc.data_addr(i)

            def step(ctx):  # type: ignore[no-untyped-def]
                if w:
                    ctx.write(addr, b"\x01")
                    enc.version[i] += 1
                    st_of.st.tcs[self._stamp_page(enc, addr)] = enc.version[i] & 0xFF
                else:
                    ctx.read(addr, 8)
                    if int(st_of.st.tcs[self._stamp_page(enc, addr)]) != enc.version[i] & 0xFF:
                        enc.mismatches += 1
            return step

        make = access_bytes if self.content else access
        op = Operation("ecall", [make(int(p), bool(w)) for p, w in zip(pages, writes)])
        run = SgxEnclaveRun(tcs=enc.base)
        try:
            rc = enc.thread.enter(run, EENTER, op)
        except ExitHandlerError as e:
            raise VmError(f"vm {self.name!r}: vEPC dead: {e}") from e
        if rc or run.exception_vector:
            raise VmError(f"vm {self.name!r}, enclave {enc.name!r}: exception "
                          f"{run.exception_vector} at {run.exception_addr:#x}")
        enc.accesses += len(pages)
        self.requests += len(pages)
        self.host_turn()

    def check(self) -> int:
        """Read every page of every guest enclave once; return the version mismatches."""
        before = sum(e.mismatches for e in self.enclaves)
        for enc in self.enclaves:
            for start in range(0, enc.npages, 16):
                idx = np.arange(start, min(start + 16, enc.npages))
                self.run(enc, idx, np.zeros(idx.size, np.bool_))
        return sum(e.mismatches for e in self.enclaves) - before

    # -------------------------------------------------------------- results
    def summary(self) -> dict[str, Any]:
        gk = self.kernel
        mc = gk.mgr.counters()
        vc = self.host.cpu.st.vcnt[self.file.vm]
        kc = self.host.vepc.counters(self.file)  # type: ignore[union-attr]
        faults = sum(gk.sgx.counters(e.file.e)["faults"] for e in self.enclaves)
        return {
            "name": self.name, "mode": self.mode, "epc_pages": self.epc_pages,
            "vcpus": self.vcpus, "requests": self.requests,
            "guest_faults": faults, "guest_ewb": mc["ewb"], "guest_eldu": mc["eldu"],
            "host_ewb": kc["host_ewb"], "host_eldu": int(vc[VC_ELDU]),
            "vm_exits": int(vc[VC_EPT]) + int(vc[VC_CONFLICT]) + self.cpu.trapped
            + kc["kicks"],
            "ept_violations": int(vc[VC_EPT]), "kicks": kc["kicks"],
            "conflict_exits": int(vc[VC_CONFLICT]),
            "host_pages_held": self.held(), "balloon_pages": len(self.balloon),
            "balloon_returned": self.deflated, "content": self.content,
            "version_mismatches": sum(e.mismatches for e in self.enclaves),
            "bytes_checked": sum(e.bytes_checked for e in self.enclaves),
        }


def host_kernel(epc_pages: int, n_lps: int, *, content: bool = False, seed: int = 0,
                **kw: Any) -> Kernel:
    """A host whose kernel runs the KVM owner; ``content`` gives every EPC page real bytes
    (see the module docstring). Its ksgxd frees at once unless ``ksgxd="clock"``: a host
    that runs only VMs gets its time from counters after the run, no clock reaches it."""
    cpu = Processor(epc_size=epc_pages * PAGE_SIZE, n_lps=n_lps, content=content, seed=seed)
    kw.setdefault("ksgxd", "instant")
    return Kernel(cpu, kvm=True, **kw)


__all__ = ["MODES", "GuestEnclave", "GuestOs", "Vm", "VmError", "host_kernel"]
