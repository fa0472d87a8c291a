"""One OS instance: the EPC manager, its owners, the enclave driver, processes.

A host kernel runs on a :class:`~epcsim.hw.cpu.Processor`; a guest kernel (the
virtualisation issue) is another instance of the same code on its virtual EPC.
"""

from __future__ import annotations

from epcsim.arch import (
    SGX_NR_HIGH_PAGES,
    SGX_NR_LOW_PAGES,
    SGX_NR_TO_SCAN,
    X86_PF_PROT,
    X86_PF_SGX,
    X86_PF_WRITE,
)
from epcsim.hw.cpu import Processor
from epcsim.hw.memory import PROT_WRITE
from epcsim.kernel.encl import VM_FAULT_NOPAGE, VM_FAULT_RETRY, DriverOwner, SgxDriver
from epcsim.kernel.ioctl import EnclaveFile
from epcsim.kernel.main import EpcManager
from epcsim.kernel.mm import Mm
from epcsim.kernel.owner import Owner
from epcsim.sim.costs import CostModel

# Outcomes of the #PF handler.
FAULT_FIXED = "fixed"      # the access is retried and succeeds
FAULT_RETRY = "retry"      # nothing changed yet (-EBUSY); the access faults again
FAULT_SIGBUS = "sigbus"
FAULT_SIGSEGV = "sigsegv"

KIND_DRIVER = 0
KIND_KVM = 1


class Kernel:
    """A kernel instance: ``kernel.mgr`` (the EPC manager), ``kernel.sgx`` (the driver)."""

    def __init__(self, cpu: Processor, *, low: int = SGX_NR_LOW_PAGES,
                 high: int = SGX_NR_HIGH_PAGES, batch: int = SGX_NR_TO_SCAN,
                 policy: str = "sgx", events: int = 0, backing_dir: str | None = None,
                 kvm: bool = False, ksgxd: str = "clock", costs: CostModel | None = None) -> None:
        """``ksgxd``: ``clock`` (pages ksgxd frees are free when its own clock passes them)
        or ``instant``; ``costs``: the cycles its work takes (the default cost model)."""
        from epcsim.kernel.virt import KvmOwner, VirtEpc

        self.cpu = cpu
        self.driver_owner = DriverOwner(cpu, backing_dir)
        # KVM's owner only where /dev/sgx_vepc exists: an owner table is one set of
        # compiled reclaim and fault paths, and a kernel that runs no VM would compile
        # KVM's operations into them for nothing (a tenth of a first replay's compile).
        self.kvm_owner = KvmOwner(cpu) if kvm else None
        owners: list[Owner] = [self.driver_owner]
        if self.kvm_owner is not None:
            owners.append(self.kvm_owner)
        self.mgr = EpcManager(cpu, owners, low=low, high=high, batch=batch,
                              policy=policy, events=events, ksgxd=ksgxd)
        c = costs if costs is not None else CostModel()
        self.mgr.set_ksgxd_costs(eblock=c.eblock.cycles, etrack=c.etrack.cycles,
                                 ewb=c.ewb.cycles, ipi=c.ipi.cycles)
        self.sgx = SgxDriver(cpu, self.mgr, self.driver_owner, KIND_DRIVER)
        self.vepc = (VirtEpc(cpu, self.mgr, self.kvm_owner, KIND_KVM)
                     if self.kvm_owner is not None else None)
        self.fault_retries = 0

    def open_enclave(self) -> EnclaveFile:
        """``open("/dev/sgx_enclave")``."""
        return EnclaveFile(self.sgx)

    def open_vepc(self):  # type: ignore[no-untyped-def]
        """``open("/dev/sgx_vepc")`` (a kernel built with ``kvm=True``)."""
        if self.vepc is None:
            raise OSError(19, "no /dev/sgx_vepc: the kernel runs no KVM owner")
        return self.vepc.open()

    def new_mm(self, name: str = "mm") -> Mm:
        return Mm(name)

    def handle_page_fault(self, mm: Mm, addr: int, error_code: int, lp: int = 0) -> str:
        """The #PF handler for a user access at ``addr`` by logical processor ``lp``: fix
        it, or say which signal. Pages it allocates come from ``lp``'s node first."""
        self.mgr.current_node = self.cpu.lp_node(lp)
        vma = mm.find_vma(addr)
        if vma is None or error_code & (X86_PF_SGX | X86_PF_PROT):
            # EPCM violations and protection faults on present PTEs are not the kernel's to fix.
            return FAULT_SIGSEGV
        if error_code & X86_PF_WRITE and not vma.prot & PROT_WRITE:
            return FAULT_SIGSEGV
        if vma.file is None:
            mm.map(addr, self.cpu.mem.alloc(4096), vma.prot)
            return FAULT_FIXED
        if isinstance(vma.file, EnclaveFile):
            rc = self.sgx.vma_fault(vma.file.e, addr, vma.prot)
            if rc == VM_FAULT_NOPAGE:
                return FAULT_FIXED
            if rc == VM_FAULT_RETRY:
                # The CPU faults again at once; ksgxd, woken by the failed allocation, ran
                # as the allocation returned (encl.driver_rules) and freed pages.
                self.fault_retries += 1
                return FAULT_RETRY
            return FAULT_SIGBUS
        fault = getattr(vma.file, "fault", None)
        if fault is None:
            return FAULT_SIGBUS
        return fault(mm, vma, addr)  # type: ignore[no-any-return]

    def counters(self) -> dict[str, int]:
        c = self.mgr.counters()
        c["fault_retries"] = self.fault_retries
        c["driver_leaks"] = self.sgx.leaks
        return c
