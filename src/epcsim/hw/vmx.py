"""VMX for SGX: the EPT over EPC pages, a guest's view of the processor, the exit handler's
reserve.

A guest sees EPC sections of its own (what its CPUID reports) and numbers its EPC pages from
0. The processor keeps one ``ept`` array for every guest: entry ``V_EPT_BASE + n`` of a guest
is the host page behind its page ``n`` (or :data:`~epcsim.hw.epc.EPT_NONE` /
:data:`~epcsim.hw.epc.EPT_EVICTED`). A :class:`GuestCpu` is a :class:`~epcsim.hw.cpu.Processor`
whose state shares every array with the host's except its VMCS (``vmcs``: guest mode, its
EPT base), its sections and its logical processors (views of the host's rows for its
vCPUs); the compiled leaves see a value of the same type, so nothing is compiled twice, and
map each EPC operand through the EPT when the VMCS says guest (:func:`epcsim.hw.encls.tx`).

What the host's EPT-violation handler needs while a guest leaf runs lives here too, as
arrays: a reserve of free host pages (``rsv``), the record of each host-evicted guest page
(``xrec``), and a log of the entries the handler filled (``xlog``). Which pages go into the
reserve, and what the host does with the log, is the host kernel's policy
(:mod:`epcsim.kernel.virt`).
"""

from __future__ import annotations

import numpy as np

from epcsim.arch import PAGE_SIZE, PageType, SgxReturn
from epcsim.hw import encls as L
from epcsim.hw.cpu import Processor, SealedPage
from epcsim.hw.epc import (
    EPT_NONE,
    G_NULL_PAGE,
    G_RSV_TOP,
    G_XLOG_N,
    NO_PAGE,
    V_EPT_BASE,
    V_GUEST,
    V_NPAGES,
    V_SEC_FIRST,
    V_VM,
    VC_LEN,
    X_EID,
    X_LEN,
    X_LIN,
    X_SECINFO,
    X_VA,
    X_VER,
    HwState,
    section_words,
)
from epcsim.hw.memory import Memory
from epcsim.jit import compile_for, table

GUEST_EPC_BASE = 0x1_0000_0000   # guest-physical base of a guest's first EPC section


def add_ept(cpu: Processor, npages: int, align: int = 512) -> tuple[int, int]:
    """Room in the EPT for a guest of ``npages`` EPC pages: (VM row, first entry).

    Ranges start on multiples of ``align`` entries, so a host VA page serving 512 entries
    never spans two guests.
    """
    st = cpu.st
    base = -(-st.ept.shape[0] // align) * align
    n = base + npages
    ept = np.full(n, EPT_NONE, dtype=np.int64)
    ept[:st.ept.shape[0]] = st.ept
    xrec = np.zeros((n, X_LEN), dtype=np.int64)
    xrec[:st.xrec.shape[0]] = st.xrec
    xrec[st.xrec.shape[0]:, X_VA] = NO_PAGE
    vm = st.vcnt.shape[0]
    vcnt = np.zeros((vm + 1, VC_LEN), dtype=np.int64)
    vcnt[:vm] = st.vcnt
    cpu.st = st._replace(ept=table(ept), xrec=table(xrec), vcnt=table(vcnt))
    return vm, base


def set_reserve_capacity(cpu: Processor, n: int) -> None:
    """Let the exit handler hold up to ``n`` host pages in reserve (keeps those it holds)."""
    st = cpu.st
    top = int(st.g[G_RSV_TOP])
    if n < top:
        raise ValueError("the reserve holds more pages than the new capacity")
    rsv = np.full(n, NO_PAGE, dtype=np.int64)
    rsv[:top] = st.rsv[:top]
    xlog = np.zeros(n, dtype=np.int64)
    n_log = int(st.g[G_XLOG_N])
    xlog[:n_log] = st.xlog[:n_log]
    cpu.st = st._replace(rsv=table(rsv), xlog=table(xlog))


def reserve_size(cpu: Processor) -> int:
    return int(cpu.st.g[G_RSV_TOP])


def reserve_capacity(cpu: Processor) -> int:
    return int(cpu.st.rsv.shape[0])


def push_reserve(cpu: Processor, page: int) -> None:
    """Hand a free, invalid host page to the exit handler."""
    st = cpu.st
    top = int(st.g[G_RSV_TOP])
    if top >= st.rsv.shape[0]:
        raise ValueError("the reserve is full")
    if st.flags[page] & 0x40:
        raise ValueError(f"host page {page} is VALID; the reserve takes free pages only")
    st.rsv[top] = page
    st.g[G_RSV_TOP] = top + 1


def pop_reserve(cpu: Processor) -> int:
    """Take a page back from the reserve (NO_PAGE when empty)."""
    st = cpu.st
    top = int(st.g[G_RSV_TOP])
    if top == 0:
        return NO_PAGE
    st.g[G_RSV_TOP] = top - 1
    return int(st.rsv[top - 1])


def drain_exit_log(cpu: Processor) -> np.ndarray:
    """The EPT entries the exit handler mapped since the last call, oldest first."""
    complete_exits(cpu)
    st = cpu.st
    n = int(st.g[G_XLOG_N])
    out = st.xlog[:n].copy()
    st.g[G_XLOG_N] = 0
    cpu.xdone = 0
    return out


# ----------------------------------------------------------------------------- content mode
#
# The exit handler runs inside a compiled leaf, where AES-GCM cannot: its ELDUC checks the
# record's metadata MAC (version from the VA slot, EID, LINADDR, SECINFO) and makes the page
# valid there. The bytes are the second half of the same VM exit, done in Python before
# anything can observe them: every guest path that reads or writes EPC bytes, seals a page or
# loads one names its page through ``GuestCpu.host_page``, which completes the exits logged
# so far, and so does the host before it touches the exit log. A blob that does not open
# (MAC mismatch) is ELDUC's SGX_MAC_COMPARE_FAIL: the page is left invalid and zeroed, and
# the VMM cannot resolve the violation.


class ExitHandlerError(RuntimeError):
    """The host could not reload a guest page it had evicted (its vEPC is dead).

    KVM cannot show the guest a fault for a page the guest believes resident, so a failed
    ELDUC in the EPT-violation handler ends the VM (the kvm-sgx prototype marks the vEPC
    ``dead``); the guest never sees the page's bytes.
    """

    def __init__(self, entry: int, rc: int) -> None:
        self.entry = entry
        self.rc = rc
        super().__init__(f"ELDUC of host-evicted guest page (EPT entry {entry}) failed: "
                         f"SGX error {rc}")



def put_blob(cpu: Processor, entry: int, sealed: SealedPage) -> None:
    """The host keeps what EWB of the guest page behind ``entry`` produced (content mode)."""
    cpu.xblob[entry] = sealed


def drop_blob(cpu: Processor, entry: int) -> None:
    """The host discards an evicted guest page (the guest's vEPC is removed or reset)."""
    cpu.xblob.pop(entry, None)
    cpu.st.xrec[entry, X_VER] = 0


def complete_exits(cpu: Processor) -> None:
    """Put the bytes of every page the exit handler reloaded since the last call in place."""
    if not cpu.content:
        return
    st = cpu.st
    n = int(st.g[G_XLOG_N])
    while cpu.xdone < n:
        i = int(st.xlog[cpu.xdone])
        cpu.xdone += 1
        version = int(st.xrec[i, X_VER])
        if version == 0:
            continue      # a page mapped fresh from the reserve: nothing was sealed
        st.xrec[i, X_VER] = 0
        h = int(st.ept[i])
        secinfo = int(st.xrec[i, X_SECINFO])
        pt = (secinfo >> 8) & 0xFF
        # The MAC header ELDUC was given: the EID of the SECS the child was loaded into
        # (its row survives eviction), a SECS's PCMD.ENCLAVEID, LINADDR and SECINFO from
        # the record; the bytes and the tag from the host's memory.
        if L.is_child_type(pt):
            eid = int(st.s_eid[int(st.row[h])])
        else:
            eid = int(st.xrec[i, X_EID])
        sealed = cpu.xblob.pop(i, None)
        plaintext = None
        if sealed is not None and sealed.contents is not None:
            plaintext = cpu.key.open(version, eid, int(st.xrec[i, X_LIN]), secinfo,
                                     sealed.contents, sealed.mac)
        if plaintext is None:
            _unload(st, h, pt)
            raise ExitHandlerError(i, int(SgxReturn.SGX_MAC_COMPARE_FAIL))
        if pt != PageType.VA:
            st.data[h] = np.frombuffer(plaintext, dtype=np.uint8)
        # A VA page's slots are the version table row the compiled ELDUC already made live
        # again (the row outlives the eviction, as in metadata mode), and leaves that ran
        # after the reload may have used it since: the tag is checked, the row is kept.


def _unload(st: HwState, h: int, pt: int) -> None:
    """Undo the compiled half of a reload whose bytes did not verify."""
    row = int(st.row[h])
    if L.is_child_type(pt):
        st.s_chld[row] -= 1
    elif pt == PageType.SECS:
        st.s_page[row] = NO_PAGE
    st.flags[h] = 0
    st.data[h] = 0


def set_null_page(cpu: Processor, page: int) -> None:
    """A host page that stays invalid: what unpopulated guest pages read as."""
    cpu.st.g[G_NULL_PAGE] = page + 1


class GuestCpu(Processor):
    """The processor as a guest sees it: its own EPC sections and vCPUs, the host's EPCM.

    Every leaf runs in guest context and maps EPC operands through the EPT; the host's
    Python-side records (measurements, staged EADD bytes, sealed state) are shared, keyed by
    what the hardware keys them by.
    """

    # The EPC is the host's: KVM does not enumerate EUPDATESVN to a guest, whose kernel
    # then skips the update (``sgx_update_svn`` returns 0 without the feature).
    eupdatesvn_supported = False

    def __init__(self, host: Processor, vm: int, ept_base: int, npages: int,
                 lp_base: int, n_vcpus: int, *, nodes: int = 1) -> None:
        from epcsim.hw.cpu import split_epc

        if lp_base < 0 or lp_base + n_vcpus > host.n_lps:
            raise ValueError("the vCPUs must be logical processors of the host")
        self.host = host
        self.vm = vm
        self.ept_base = ept_base
        self.sections = split_epc(npages * PAGE_SIZE, nodes, base=GUEST_EPC_BASE)
        self.content = host.content
        self.sgx2 = host.sgx2
        self.oversub = host.oversub
        self.max_enclave_log2 = host.max_enclave_log2
        self.key = host.key
        self.mem = Memory(self.in_prm)
        self.aspace = [None] * n_vcpus
        self.lepubkeyhash = bytes(32)    # the guest's virtual IA32_SGXLEPUBKEYHASHn
        self.pending_unmasked_events = 0
        self._measure = host._measure
        self._mrenclave = host._mrenclave
        self._mrsigner = host._mrsigner
        self._staged = host._staged
        self._aux = host._aux
        self._ewb_out = table(np.zeros(L.W_LEN, dtype=np.uint64))
        self._rd_out = table(np.zeros(3, dtype=np.uint64))
        self.vmcs = table(section_words(self.sections))
        self.vmcs[V_GUEST] = 1
        self.vmcs[V_EPT_BASE] = ept_base
        self.vmcs[V_NPAGES] = npages
        self.vmcs[V_VM] = vm
        self._lps = slice(lp_base, lp_base + n_vcpus)
        self._npages = npages
        self._sec_bounds = [(s.base, s.base + s.size, int(self.vmcs[V_SEC_FIRST + i]))
                            for i, s in enumerate(self.sections)]
        self._host_st: HwState | None = None
        self._view: HwState | None = None
        self.trapped = 0   # ECREATE/EINIT exits (KVM runs them on the guest's behalf)
        # The leaves call the EPT walk deferred: a guest's processor is what needs it.
        compile_for(L.ept_walk, (self.st, 0, False))

    # The view is rebuilt whenever the host's tuple changes (a table grew).
    @property  # type: ignore[override]
    def st(self) -> HwState:
        h = self.host.st
        if h is not self._host_st:
            # Guests keep no TLB: a guest's access walks every time, and its kernel's PTE
            # zaps force no vCPU out of its enclave.
            self._view = h._replace(vmcs=self.vmcs, lp=h.lp[self._lps],
                                    tlb=h.tlb[self._lps, :0], tlb_way=h.tlb_way[self._lps, :0])
            self._host_st = h
        assert self._view is not None
        return self._view

    @st.setter
    def st(self, value: HwState) -> None:
        h = self.host.st
        if value is self._view and h is self._host_st:
            # Unchanged (a table that did not need to grow): the host keeps its tuple, and
            # this view stays valid (the driver reserves rows before every compiled call).
            return
        self.host.st = value._replace(vmcs=h.vmcs, lp=h.lp, tlb=h.tlb, tlb_way=h.tlb_way)

    @property
    def npages(self) -> int:
        return self._npages

    def host_page(self, page: int) -> int:
        h = int(L.tx(self.st, page))
        # Every byte access to a guest page names it here first: the bytes of pages the
        # exit handler reloaded are put in place before anyone reads or seals them.
        complete_exits(self.host)
        return h

    def guest_page_of(self, host_page: int) -> int | None:
        """The guest page the EPT maps to ``host_page`` (None when none does)."""
        ept = self.host.st.ept[self.ept_base:self.ept_base + self._npages]
        hit = np.nonzero(ept == host_page)[0]
        return int(hit[0]) if hit.size else None

    def epcm(self, addr: int) -> dict[str, int | bool]:
        page = self.page_index(addr)
        if page is None:
            raise ValueError(f"{addr:#x} is not an EPC address")
        st = self.st
        h = self.host_page(page)
        out = self.host.epcm(self.host.page_addr(h))
        if "enclavesecs" in out:
            g = self.guest_page_of(int(st.s_page[st.row[h]]))
            out["enclavesecs"] = self.page_addr(g) if g is not None else 0
        return out

    def eacceptcopy(self, lp: int, secinfo: int, dest: int, src: int,
                    flags: int | None = None) -> int:
        # The compiled leaf copies bytes: let the exit handler reload both pages and their
        # bytes land before it runs (a fault is left for the leaf itself to raise).
        for addr in (src, dest):
            pte = self.aspace[lp].lookup(addr) if self.aspace[lp] is not None else None
            page = self.page_index(pte[0]) if pte is not None else None
            if page is not None:
                self.host_page(page)
        return super().eacceptcopy(lp, secinfo, dest, src, flags)

    def ecreate_page(self, *args, **kw) -> int:  # type: ignore[no-untyped-def, override]
        self.trapped += 1
        return super().ecreate_page(*args, **kw)

    def einit_page(self, *args, **kw) -> int:  # type: ignore[no-untyped-def, override]
        self.trapped += 1
        return super().einit_page(*args, **kw)


__all__ = [
    "GUEST_EPC_BASE",
    "ExitHandlerError",
    "GuestCpu",
    "add_ept",
    "complete_exits",
    "drain_exit_log",
    "drop_blob",
    "pop_reserve",
    "push_reserve",
    "put_blob",
    "reserve_capacity",
    "reserve_size",
    "set_null_page",
    "set_reserve_capacity",
]
