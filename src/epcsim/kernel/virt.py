"""Virtual EPC (``/dev/sgx_vepc``, the kernel's ``virt.c``) and the KVM owner of EPC pages.

Upstream semantics (the kernel's virt.c): a vEPC file hands raw EPC pages to a VMM,
mapped shared only; a page is allocated on first fault *without reclaim* (-EBUSY: retry,
-ENOMEM: SIGBUS) and is never on the reclaimer's list; release EREMOVEs every page in two
passes and keeps SECS pages whose children live in another instance on a global zombie
list; ``SGX_IOC_VEPC_REMOVE_ALL`` EREMOVEs without freeing, for a guest reboot.

Beyond upstream, an instance may be *oversubscribed* (the design of the kvm-sgx prototype,
with the OVERSUB leaves of Intel SDM vol. 3D): its pages go on the host's reclaim list
and the KVM owner's operations evict them:

* ``reclaim``: the EPT accessed bit (test and clear), so a page the guest uses stays;
* ``block``: ERDINFO; a page free in the guest is dropped, a SECS with resident children is
  refused, a child is EBLOCKed unless the guest had blocked it (SGX_BLKSTATE is kept);
* ``write``: EINCVIRTCHILD on the guest's SECS, ETRACKC, a kick of every vCPU inside the
  enclave (AEX and VM exit), EWB into the slot this page owns in one of the instance's
  host VA pages; the EPT entry then holds the record ELDUC needs.

EPC cgroups (the EPC cgroup series): a vEPC page is charged when it is allocated to the misc
cgroup of the task that faults it, the VMM (the file remembers the cgroup its VMM ran in at
``open``), and uncharged when it is freed. In ``reserved`` (upstream) mode it is never on
an LRU, so a VMM whose cgroup is full of vEPC gets -ENOMEM at the fault: SIGBUS. An
oversubscribed instance's pages go on its cgroup's LRU and the cgroup's reclaim evicts them
through the KVM owner like any other. Pages KVM keeps for itself (the EPT's null page, the
exit reserve) are charged to the root; a reserve page the exit handler maps for a guest
moves to the VM's cgroup (:meth:`VirtEpc.refill`).

The reload is the processor's EPT-violation path (:mod:`epcsim.hw.vmx`): it takes a page
from a reserve the host filled in advance. After every guest operation the host calls
:meth:`VirtEpc.refill`, which puts the reloaded pages back on the reclaim list and tops the
reserve up, reclaiming if it must: that is where the host's reclaim cost lands.
"""

from __future__ import annotations

import errno
import os
from typing import Any, NamedTuple

import numpy as np

from epcsim.arch import SgxReturn
from epcsim.hw import encls as L
from epcsim.hw import vmx
from epcsim.hw.cpu import ArchFault, Processor
from epcsim.hw.epc import (
    EPT_EVICTED,
    EPT_NONE,
    NO_PAGE,
    X_A,
    X_AUX,
    X_BLOCKED,
    X_CTX,
    X_EID,
    X_LIN,
    X_MAC,
    X_SECINFO,
    X_SECS,
    X_SLOT,
    X_VA,
)
from epcsim.hw.memory import PROT_READ, PROT_WRITE
from epcsim.jit import njit, njit_inline, state_class, tables
from epcsim.kernel.main import P_CG, EpcManager, count_etrack, count_ewb, count_ipi
from epcsim.kernel.owner import WRITE_FREED, WRITE_RETRY, Owner, OwnerOps

SGX_IOC_VEPC_REMOVE_ALL = 0x0000A404

# The #PF handler's answers (the same strings the kernel instance uses).
FAULT_FIXED = "fixed"
FAULT_RETRY = "retry"
FAULT_SIGBUS = "sigbus"

# Instance flags.
I_DEAD = 1          # being released: the reclaimer must leave its pages alone
I_OVERSUB = 2       # the host may reclaim its pages

# What ``block`` decided for ``write``.
ACT_WRITE, ACT_DROP, ACT_REFUSE = 0, 1, 2

# Per-instance counters (VState.cnt columns).
VK_EWB, VK_REFUSED, VK_DROPPED, VK_KICKS, VK_FAILED, VK_ETRACKC = range(6)
VK_NAMES = ("host_ewb", "host_refused", "host_dropped", "kicks", "host_write_failed",
            "etrackc")
VK_LEN = len(VK_NAMES)

SLOTS = 512
NONE = -1
ROOT_CG = 0          # the root misc cgroup: KVM's own pages are charged there


@state_class
class VState(NamedTuple):
    p_inst: np.ndarray   # i64 per EPT entry: the vEPC instance
    p_act: np.ndarray    # u8 per EPT entry: ACT_* decided by block
    p_gblk: np.ndarray   # u8 per EPT entry: the guest had blocked the page (SGX_BLKSTATE)
    g_va: np.ndarray     # i64 per 512 EPT entries: the host VA page holding their versions
    i_flags: np.ndarray  # i64 per instance
    cnt: np.ndarray      # i64 [instances, VK_LEN]
    out: np.ndarray      # u64 EWB record
    rd: np.ndarray       # u64 ERDINFO output
    sq: np.ndarray       # i64 [n, SQ_REC + W_LEN] content mode: EWBs whose bytes to seal
    sq_n: np.ndarray     # i64 [1] rows queued


# Seal-queue columns (content mode): the host page EWB left the bytes in, its EPT entry,
# then the EWB record.
SQ_PAGE, SQ_ENTRY = 0, 1
SQ_REC = 2


def make_vstate(content: bool = False, npages: int = 0) -> VState:
    # One compiled call writes back at most every host page once; metadata mode gets one
    # unused row.
    return tables(VState(p_inst=np.zeros(0, np.int64), p_act=np.zeros(0, np.uint8),
                  p_gblk=np.zeros(0, np.uint8), g_va=np.zeros(0, np.int64),
                  i_flags=np.zeros(0, np.int64), cnt=np.zeros((0, VK_LEN), np.int64),
                  out=np.zeros(L.W_LEN, np.uint64), rd=np.zeros(3, np.uint64),
                  sq=np.zeros((npages + 64 if content else 1, SQ_REC + L.W_LEN), np.int64),
                  sq_n=np.zeros(1, np.int64)))


# ----------------------------------------------------------------------------- the owner

@njit
def kick_vcpus(vs: VState, ms: Any, st: Any, inst: int, row: int) -> None:
    """IPI the vCPUs inside the enclave: each takes an AEX and a VM exit."""
    count_ipi(ms)
    for lp in range(st.lp.shape[0]):
        if st.lp[lp].lp_row == row:
            L.aex(st, lp)
            vs.cnt[inst, VK_KICKS] += 1


@njit
def kvm_get(vs: VState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return 0 if (vs.i_flags[vs.p_inst[oid]] & I_DEAD) != 0 else 1


@njit_inline
def kvm_put(vs: VState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    return 0


@njit
def kvm_reclaim(vs: VState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """Age by the EPT accessed bit (test and clear)."""
    if arg == 1 and st.xrec[oid, X_A] != 0:
        st.xrec[oid, X_A] = 0
        return 0
    return 1


@njit
def kvm_block(vs: VState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    """Zap (the EPT entry is rewritten by ``write``), ERDINFO, EBLOCK a child."""
    vs.p_gblk[oid] = 0
    rc = L.erdinfo(st, page, vs.rd)
    if rc == L.PG_INVLD:
        vs.p_act[oid] = ACT_DROP
        return 0
    if rc != 0:
        vs.p_act[oid] = ACT_REFUSE
        return rc
    pt = (np.int64(vs.rd[1]) >> 8) & 0xFF
    if pt == L.PT_SECS:
        if (np.int64(vs.rd[0]) & L.RDINFO_CHILDPRESENT) != 0:
            vs.p_act[oid] = ACT_REFUSE
            return 0
    elif L.is_child_type(pt):
        rc = L.eblock(st, page)
        if rc == L.BLKSTATE:
            vs.p_gblk[oid] = 1
        elif rc != 0:
            vs.p_act[oid] = ACT_REFUSE
            return rc
    vs.p_act[oid] = ACT_WRITE
    return 0


@njit
def kvm_write(vs: VState, ms: Any, st: Any, page: int, oid: int, arg: int) -> int:
    inst = vs.p_inst[oid]
    act = vs.p_act[oid]
    if act == ACT_DROP:
        st.ept[oid] = EPT_NONE
        vs.cnt[inst, VK_DROPPED] += 1
        return WRITE_FREED
    if act == ACT_REFUSE:
        vs.cnt[inst, VK_REFUSED] += 1
        return WRITE_RETRY
    pt = np.int64(st.epcm[page].pt)
    row = np.int64(st.epcm[page].row)
    va = vs.g_va[oid >> 9]
    slot = oid & (SLOTS - 1)
    secs = NO_PAGE
    ctx = 0
    if L.is_child_type(pt):
        secs = st.secs[row].s_page
        L.virtchild(st, page, secs, 1)          # EINCVIRTCHILD: the guest's SECS stays
        rc = L.etrackc(st, page, L.CTX_HOST)
        count_etrack(ms)
        vs.cnt[inst, VK_ETRACKC] += 1
        if rc == L.PREV_TRK_INCMPL:
            kick_vcpus(vs, ms, st, inst, row)
            rc = L.etrackc(st, page, L.CTX_HOST)
            count_etrack(ms)
        kick_vcpus(vs, ms, st, inst, row)
    elif pt == L.PT_SECS:
        ctx = np.int64(st.secs[row].s_ctx)
    rc = L.ewb(st, page, va, slot, L.CTX_HOST, vs.out)
    count_ewb(ms)
    # SGX_VA_SLOT_OCCUPIED: the slot still held the version of a page the host dropped
    # without reloading (a guest reboot's REMOVE_ALL); the EWB itself happened.
    if rc != 0 and rc != L.VA_SLOT_OCCUPIED:
        if secs != NO_PAGE:
            L.virtchild(st, page, secs, -1)     # EDECVIRTCHILD: undo
        vs.cnt[inst, VK_FAILED] += 1
        return WRITE_RETRY
    st.xrec[oid, X_VA] = va
    st.xrec[oid, X_SLOT] = slot
    st.xrec[oid, X_SECINFO] = np.int64(vs.out[L.W_SECINFO])
    st.xrec[oid, X_LIN] = np.int64(vs.out[L.W_LINADDR])
    st.xrec[oid, X_EID] = np.int64(vs.out[L.W_PCMD_EID])
    st.xrec[oid, X_MAC] = np.int64(vs.out[L.W_MAC])
    st.xrec[oid, X_AUX] = np.int64(vs.out[L.W_AUX])
    st.xrec[oid, X_SECS] = np.int64(ms.pages[secs].oid) if secs != NO_PAGE else NONE
    st.xrec[oid, X_CTX] = ctx
    st.xrec[oid, X_BLOCKED] = vs.p_gblk[oid]
    st.ept[oid] = EPT_EVICTED
    vs.cnt[inst, VK_EWB] += 1
    if vs.sq.shape[0] > 1:
        # Content mode: the bytes are still in the page; KvmOwner.sync seals them before
        # the page is used again (the manager syncs owners after every compiled call).
        n = vs.sq_n[0]
        vs.sq[n, SQ_PAGE] = page
        vs.sq[n, SQ_ENTRY] = oid
        for k in range(L.W_LEN):
            vs.sq[n, SQ_REC + k] = np.int64(vs.out[k])
        vs.sq_n[0] = n + 1
    return WRITE_FREED


KVM_OPS = OwnerOps(kvm_get, kvm_put, kvm_reclaim, kvm_block, kvm_write)


class KvmOwner(Owner):
    """KVM as an owner of EPC pages: an owner id is an EPT entry."""

    name = "kvm"
    ops = KVM_OPS

    def __init__(self, cpu: Processor) -> None:
        self.cpu = cpu
        # No seal queue until /dev/sgx_vepc exists (VirtEpc): a kernel without VMs holds
        # no guest pages, and the queue would take 80 bytes per EPC page in content mode.
        self.state = make_vstate(False)

    def sync(self) -> None:
        """Content mode: seal the bytes of the guest pages the reclaimer wrote back.

        The sealed page (ciphertext, PCMD) goes to host memory, where the exit handler's
        ELDUC finds it (:func:`epcsim.hw.vmx.complete_exits`).
        """
        vs = self.state
        n = int(vs.sq_n[0])
        if n == 0:
            return
        rows = vs.sq[:n]
        sealed = self.cpu.seal_records(rows[:, SQ_PAGE].tolist(),
                                       rows[:, SQ_REC:].astype(np.uint64))
        for entry, page in zip(rows[:, SQ_ENTRY].tolist(), sealed):
            vmx.put_blob(self.cpu, entry, page)
        vs.sq_n[0] = 0


# ----------------------------------------------------------------------------- /dev/sgx_vepc

class VirtEpc:
    """The host's virtual EPC: open instances, the zombie-SECS list, the exit reserve."""

    def __init__(self, cpu: Processor, mgr: EpcManager, owner: KvmOwner, kind: int) -> None:
        self.cpu = cpu
        self.mgr = mgr
        self.owner = owner
        self.kind = kind
        if cpu.content:
            owner.state = owner.state._replace(sq=make_vstate(True, cpu.npages).sq)
        self.zombie_secs_pages: list[int] = []
        self.files: list[VepcFile] = []
        self.null_page = NO_PAGE
        self.reserve_target = 0
        self.warnings = 0

    @property
    def vs(self) -> VState:
        return self.owner.state

    def open(self) -> VepcFile:
        """``open("/dev/sgx_vepc")``."""
        ret = self.mgr.sgx_inc_usage_count()
        if ret:
            raise OSError(-ret, f"open /dev/sgx_vepc: {os.strerror(-ret)} (EUPDATESVN)")
        f = VepcFile(self, len(self.files))
        self.files.append(f)
        vs = self.vs
        self.owner.state = tables(vs._replace(
            i_flags=np.append(vs.i_flags, 0).astype(np.int64),
            cnt=np.vstack([vs.cnt, np.zeros((1, VK_LEN), np.int64)])))
        return f

    # -------------------------------------------------------------- EPT ranges
    def _add_range(self, f: VepcFile, npages: int) -> None:
        vm, base = vmx.add_ept(self.cpu, npages, align=SLOTS)
        f.vm, f.base, f.npages = vm, base, npages
        vs = self.vs
        n = self.cpu.st.ept.shape[0]
        p_inst = np.full(n, NONE, np.int64)
        p_inst[:vs.p_inst.shape[0]] = vs.p_inst
        p_inst[base:base + npages] = f.index
        g_va = np.full(-(-n // SLOTS), NONE, np.int64)
        g_va[:vs.g_va.shape[0]] = vs.g_va
        self.owner.state = tables(vs._replace(
            p_inst=p_inst, g_va=g_va,
            p_act=np.zeros(n, np.uint8), p_gblk=np.zeros(n, np.uint8)))

    # -------------------------------------------------------------- EREMOVE
    def free_page(self, page: int) -> int:
        """``sgx_vepc_free_page``: EREMOVE (the guest cannot be trusted), then free."""
        rc = self.remove_page(page)
        if rc:
            if rc != SgxReturn.SGX_CHILD_PRESENT:
                self.warnings += 1   # WARN_ONCE
            return rc
        self.mgr.free_written(page)
        return 0

    def remove_page(self, page: int) -> int:
        """``sgx_vepc_remove_page``: EREMOVE; an SGX code, or -EFAULT-like for a fault."""
        try:
            return int(self.cpu.eremove_page(page))
        except ArchFault as fault:
            return -1000 - fault.vector

    # -------------------------------------------------------------- oversubscription
    def enable_exits(self, reserve: int) -> None:
        """Give the processor's EPT-violation path a reserve of ``reserve`` pages."""
        if self.null_page == NO_PAGE:
            with self.mgr.current(ROOT_CG):
                page = self.mgr.alloc(self.kind, 0, True)
            if page < 0:
                raise MemoryError("no host EPC page for the EPT's null page")
            self.null_page = page
            vmx.set_null_page(self.cpu, page)
        if reserve > vmx.reserve_capacity(self.cpu):
            vmx.set_reserve_capacity(self.cpu, reserve)
        self.reserve_target = max(self.reserve_target, reserve)
        self.refill()

    def refill(self) -> int:
        """After a guest operation: track what the exit handler mapped; top the reserve up.

        Returns the pages added to the reserve.
        """
        st = self.cpu.st
        vs = self.vs
        move = self.mgr.move_charge
        for i in vmx.drain_exit_log(self.cpu):
            page = int(st.ept[i])
            inst = int(vs.p_inst[i])
            self.mgr.ms.oid[page] = i
            if move is not None:
                # The page is the VM's now: its VMM's cgroup pays for it, before the page
                # goes on that cgroup's LRU.
                move(page, self.files[inst].cg)
            if int(vs.i_flags[inst]) & I_OVERSUB:
                self.mgr.mark_reclaimable(page)
        added = 0
        with self.mgr.current(ROOT_CG):
            while vmx.reserve_size(self.cpu) < self.reserve_target:
                page = self.mgr.alloc(self.kind, 0, True)
                if page < 0:
                    break
                vmx.push_reserve(self.cpu, page)
                added += 1
        self.mgr.run_ksgxd()
        return added

    def counters(self, f: VepcFile) -> dict[str, int]:
        return {name: int(self.vs.cnt[f.index, i]) for i, name in enumerate(VK_NAMES)}


class VepcFile:
    """One open ``/dev/sgx_vepc``: its page array is a range of the processor's EPT."""

    def __init__(self, virt: VirtEpc, index: int) -> None:
        self.virt = virt
        self.index = index
        self.vm = NONE
        self.base = 0
        self.npages = 0
        self.closed = False
        self.va_pages: list[int] = []
        # The misc cgroup of the VMM that opened the file: the task whose faults allocate
        # its pages (sgx_alloc_epc_page charges ``current``'s cgroup).
        self.cg = int(virt.mgr.ms.p[P_CG])

    @property
    def ept(self) -> np.ndarray:
        """The page array: host page, EPT_NONE or EPT_EVICTED per page offset."""
        return self.virt.cpu.st.ept[self.base:self.base + self.npages]

    @property
    def oversubscribed(self) -> bool:
        return bool(int(self.virt.vs.i_flags[self.index]) & I_OVERSUB)

    # -------------------------------------------------------------- mmap and faults
    def may_map(self, start: int, end: int, prot: int) -> int:
        """``sgx_vepc_mmap``: VM_SHARED was checked by mmap; the first mapping sizes the
        page array (the model keeps one range per instance)."""
        n = (end - start) >> 12
        if self.closed:
            return -errno.EBADF
        if self.npages == 0:
            self.virt._add_range(self, n)
        elif n > self.npages:
            return -errno.EINVAL
        return 0

    def _index(self, mm: Any, addr: int) -> int:
        vma = mm.find_vma(addr)
        return (addr - vma.start) >> 12

    def pte(self, mm: Any, linaddr: int) -> tuple[int, int] | None:
        page = int(self.ept[self._index(mm, linaddr)])
        if page < 0:
            return None
        return self.virt.cpu.page_addr(page), PROT_READ | PROT_WRITE

    def touch(self, linaddr: int, write: bool) -> None:
        pass

    def fault(self, mm: Any, vma: Any, addr: int) -> str:
        """``sgx_vepc_fault``."""
        rc = self.populate((addr - vma.start) >> 12)
        if rc == 0:
            return FAULT_FIXED
        if rc == -errno.EBUSY:
            # FAULT_FLAG_ALLOW_RETRY: the fault is retried; ksgxd runs meanwhile.
            self.virt.mgr.run_ksgxd()
            return FAULT_RETRY
        return FAULT_SIGBUS

    def populate(self, index: int) -> int:
        """``__sgx_vepc_fault``: allocate without reclaim; 0 or -errno."""
        if not 0 <= index < self.npages:
            return -errno.EFAULT
        i = self.base + index
        st = self.virt.cpu.st
        if int(st.ept[i]) >= 0:
            return 0
        with self.virt.mgr.current(self.cg):
            page = self.virt.mgr.alloc(self.virt.kind, i, False)
        if page < 0:
            return page
        st.ept[i] = page
        st.xrec[i, X_A] = 1
        if self.oversubscribed:
            self.virt.mgr.mark_reclaimable(page)
        return 0

    def populated(self) -> list[int]:
        """Host pages in the page array."""
        return [int(p) for p in self.ept if p >= 0]

    # -------------------------------------------------------------- oversubscription
    def set_oversubscribed(self) -> int:
        """Let the host reclaim this instance's pages: its VA pages first (0 or -errno)."""
        virt = self.virt
        if self.npages == 0:
            return -errno.EINVAL
        st = virt.cpu.st
        first, last = self.base // SLOTS, (self.base + self.npages - 1) // SLOTS
        virt.cpu.reserve_va_rows(last - first + 1)
        for g in range(first, last + 1):
            # The VMM's ioctl allocates them: charged to its cgroup, never on an LRU.
            with virt.mgr.current(self.cg):
                page = virt.mgr.alloc(virt.kind, self.base, True)
            if page < 0:
                return page
            virt.cpu.epa_page(page)
            self.va_pages.append(page)
            virt.vs.g_va[g] = page
        virt.vs.i_flags[self.index] |= I_OVERSUB
        st = virt.cpu.st
        for i in range(self.base, self.base + self.npages):
            if int(st.ept[i]) >= 0:
                virt.mgr.mark_reclaimable(int(st.ept[i]))
        return 0

    # -------------------------------------------------------------- ioctl
    def ioctl(self, cmd: int, arg: int = 0) -> int:
        if self.closed:
            return -errno.EBADF
        if cmd != SGX_IOC_VEPC_REMOVE_ALL:
            return -errno.ENOTTY
        if arg != 0:
            return -errno.EINVAL
        return self.remove_all()

    def remove_all(self) -> int:
        """``sgx_vepc_remove_all``: EREMOVE every page, keep them; count SECS failures."""
        failures = 0
        vmx.complete_exits(self.virt.cpu)   # the bytes of pages reloaded so far land first
        st = self.virt.cpu.st
        for i in range(self.base, self.base + self.npages):
            if int(st.ept[i]) == EPT_EVICTED:
                st.ept[i] = EPT_NONE   # the host's copy of a page the guest drops
                vmx.drop_blob(self.virt.cpu, i)
                continue
            page = int(st.ept[i])
            if page < 0:
                continue
            rc = self.virt.remove_page(page)
            if rc == SgxReturn.SGX_CHILD_PRESENT:
                failures += 1
            elif rc:
                return -errno.EBUSY
        return failures

    # -------------------------------------------------------------- release
    def release(self) -> None:
        """``sgx_vepc_release``: two EREMOVE passes, then the zombies of every instance."""
        if self.closed:
            return
        virt = self.virt
        virt.vs.i_flags[self.index] |= I_DEAD
        vmx.complete_exits(virt.cpu)        # the bytes of pages reloaded so far land first
        st = virt.cpu.st
        mgr = virt.mgr
        left = []
        for i in range(self.base, self.base + self.npages):
            page = int(st.ept[i])
            if page == EPT_EVICTED:
                st.ept[i] = EPT_NONE
                vmx.drop_blob(virt.cpu, i)
                continue
            if page < 0:
                continue
            mgr.unmark_reclaimable(page)
            if virt.free_page(page) == 0:
                st.ept[i] = EPT_NONE
            else:
                left.append(i)
        secs_pages = []
        for i in left:
            page = int(st.ept[i])
            if virt.free_page(page):
                secs_pages.append(page)
            st.ept[i] = EPT_NONE
        zombies, virt.zombie_secs_pages = virt.zombie_secs_pages, []
        for page in zombies:
            if virt.free_page(page):
                secs_pages.append(page)
        virt.zombie_secs_pages.extend(secs_pages)
        for page in self.va_pages:
            virt.free_page(page)
        self.va_pages = []
        self.closed = True
        virt.mgr.sgx_dec_usage_count()

    close = release


# ----------------------------------------------------------------------------- KVM's leaves

def sgx_virt_ecreate(cpu: Processor, pageinfo: int, secs: int) -> tuple[int, int]:
    """ECREATE on the guest's behalf: (0, 0), or (-EFAULT, trap number) for KVM to inject.

    ECREATE never returns an SGX error code; everything it refuses faults.
    """
    try:
        cpu.ecreate(pageinfo, secs)
    except ArchFault as fault:
        return -errno.EFAULT, fault.vector
    return 0, 0


def sgx_virt_einit(cpu: Processor, sigstruct: int, token: int, secs: int,
                   lepubkeyhash: bytes) -> tuple[int, int]:
    """EINIT on the guest's behalf with its *virtual* LEPUBKEYHASH in the MSRs.

    Returns (SGX code for the guest's RAX, 0) or (-EFAULT, trap number).
    """
    cpu.lepubkeyhash = lepubkeyhash
    try:
        rc = cpu.einit(sigstruct, secs, token)
    except ArchFault as fault:
        return -errno.EFAULT, fault.vector
    return int(rc), 0


__all__ = [
    "KVM_OPS",
    "SGX_IOC_VEPC_REMOVE_ALL",
    "KvmOwner",
    "VepcFile",
    "VirtEpc",
    "sgx_virt_ecreate",
    "sgx_virt_einit",
]
