"""The processor: EPC, EPCM and the leaves, behind register-level and page-level calls.

Two ways in:

* **Register level** (``encls``/``enclu``/``enclv`` and one method per leaf taking
  addresses): operands are physical addresses of EPC pages and of structures in ordinary
  memory (:class:`~epcsim.hw.memory.Memory`), exactly what RBX/RCX/RDX carry. Operand checks
  run here in architectural order, then the compiled EPCM checks of :mod:`epcsim.hw.encls`.
* **Page level** (``*_page`` methods): page numbers instead of addresses, and evicted pages
  as :class:`SealedPage` values instead of PAGEINFO/PCMD in memory. The kernel model uses
  these; they run the same compiled rules.

Faults are raised as :class:`ArchFault` subclasses carrying the vector; architectural error
codes are returned as :class:`~epcsim.arch.SgxReturn` values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from epcsim.arch import (
    EXIT_REASON_SGX_CONFLICT,
    PAGE_SIZE,
    SGX_ATTR_ALLOWED_MASK,
    SGX_MISC_EXINFO,
    SGX_SECINFO_RESERVED_MASK,
    SGX_SSA_GPRS_SIZE,
    SGX_SSA_MISC_EXINFO_SIZE,
    X86_PF_PROT,
    X86_PF_SGX,
    X86_PF_USER,
    X86_PF_WRITE,
    X86_TRAP_GP,
    X86_TRAP_PF,
    X86_TRAP_UD,
    Attribute,
    EinitToken,
    Encls,
    Enclu,
    Enclv,
    PageInfo,
    PageType,
    Pcmd,
    RdInfo,
    Secinfo,
    Secs,
    SgxConflictQualification,
    SgxReturn,
    SigStruct,
    Tcs,
)
from epcsim.hw import encls as L
from epcsim.hw.crypto import SEALED_SIZE, Measurement, PagingKey, mrsigner, verify_sigstruct
from epcsim.hw.epc import (
    EPCM_BLOCKED,
    EPCM_MODIFIED,
    EPCM_PENDING,
    EPCM_PR,
    EPCM_R,
    EPCM_VALID,
    EPCM_W,
    EPCM_X,
    G_CPUSVN,
    G_LOCKED,
    G_NLOCKED,
    G_RDSEED_FAILS,
    G_UCODE_SVN,
    MAX_LOCKED,
    NO_PAGE,
    EpcSection,
    HwState,
    grow_secs_table,
    grow_va_table,
    make_state,
)
from epcsim.hw.memory import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace, Memory
from epcsim.jit import table

DEFAULT_EPC_BASE = 0x8000_0000
_ZERO_PAGE = bytes(PAGE_SIZE)   # what a metadata-mode page holds when EADD staged none
XSAVE_LEGACY_SIZE = 576  # legacy region 512 + XSAVE header 64, for XFRM = 3


class ArchFault(Exception):
    """An exception raised by a leaf or an enclave access: nothing changed."""

    vector: int = 0
    name: str = ""

    def __init__(self, leaf: str, address: int = 0, error_code: int = 0, why: str = "") -> None:
        self.leaf = leaf
        self.address = address
        self.error_code = error_code
        self.why = why
        detail = f" ({why})" if why else ""
        super().__init__(f"{self.name} in {leaf} at {address:#x}{detail}")


class GeneralProtectionFault(ArchFault):
    vector = X86_TRAP_GP
    name = "#GP(0)"


class PageFault(ArchFault):
    vector = X86_TRAP_PF
    name = "#PF"


class InvalidOpcode(ArchFault):
    vector = X86_TRAP_UD
    name = "#UD"


class SgxConflictExit(Exception):
    """VM exit SGX_CONFLICT (reason 71): a guest leaf collided with a host-held resource."""

    reason = EXIT_REASON_SGX_CONFLICT

    def __init__(self, leaf: str, qualification: int, address: int) -> None:
        self.leaf = leaf
        self.qualification = SgxConflictQualification(qualification)
        self.address = address
        super().__init__(f"SGX_CONFLICT exit ({self.qualification.name}) in {leaf} "
                         f"at {address:#x}")


class SealedPage(NamedTuple):
    """What EWB hands to software: the PCMD fields and the (encrypted) contents."""

    secinfo: int          # PCMD.SECINFO.FLAGS
    enclave_id: int       # PCMD.ENCLAVEID
    mac: bytes            # PCMD.MAC (16 bytes)
    linaddr: int          # ENCLAVEADDRESS (PAGEINFO.LINADDR written back by EWB)
    contents: bytes | None  # 4 KiB ciphertext in content mode, None in metadata mode

    def pcmd(self) -> Pcmd:
        return Pcmd(secinfo=Secinfo(flags=self.secinfo), enclave_id=self.enclave_id,
                    mac=self.mac)


def _aligned(addr: int, align: int) -> bool:
    return addr % align == 0


def _lin(addr: int) -> int:
    """A 64-bit linear-address register as the signed int64 the compiled leaves take."""
    addr &= 0xFFFFFFFFFFFFFFFF
    return addr - (1 << 64) if addr >> 63 else addr


class Processor:
    """One SGX-capable package: EPC sections, the EPCM, logical processors and the leaves.

    ``content=True`` keeps 4 KiB of bytes per EPC page and seals evicted pages with
    AES-GCM; otherwise the same checks run on metadata with a keyed 32-bit MAC.

    ``tlb_entries`` > 0 gives each logical processor a TLB of that many entries in sets of
    ``tlb_ways`` (:mod:`epcsim.hw.tlb`): an access it serves runs no EPCM check and sets no
    accessed bit. 0, the default, walks on every access.
    """

    # Defaults for the guest views, which do not run this constructor; set on first use.
    _plaintext: np.ndarray | None = None   # the page ELDU opened, before the leaf commits it

    def __init__(self, sections: list[EpcSection] | None = None, *, epc_size: int = 0,
                 nodes: int = 1, n_lps: int = 4, content: bool = False, seed: int = 0,
                 sgx2: bool = True, oversub: bool = True, max_enclave_log2: int = 36,
                 tlb_entries: int = 0, tlb_ways: int = 4) -> None:
        if sections is None:
            sections = split_epc(epc_size or (128 << 20), nodes)
        if not 32 <= max_enclave_log2 <= 44:
            raise ValueError("max_enclave_log2 must be within 32..44")
        self.sections = list(sections)
        self.content = content
        self.sgx2 = sgx2
        self.oversub = oversub
        self.max_enclave_log2 = max_enclave_log2
        mac_key = int.from_bytes(hashlib.sha256(b"epcsim-mac" + seed.to_bytes(8, "little"))
                                 .digest()[:8], "little")
        self.st: HwState = make_state(self.sections, n_lps=n_lps, content=content,
                                      mac_key=mac_key, max_enclave_log2=max_enclave_log2,
                                      oversub=oversub, sgx2=sgx2, tlb_entries=tlb_entries,
                                      tlb_ways=tlb_ways)
        self.key = PagingKey(seed)
        self.mem = Memory(self.in_prm)
        self.aspace: list[AddressSpace | None] = [None] * n_lps
        self.lepubkeyhash = bytes(32)     # IA32_SGXLEPUBKEYHASH0..3
        self.pending_unmasked_events = 0  # EINITs that will see an interrupt window
        self._measure: dict[int, Measurement] = {}
        self._mrenclave: dict[int, bytes] = {}
        self._mrsigner: dict[int, bytes] = {}
        self._staged: dict[int, bytes] = {}   # metadata mode: EADDed bytes until EINIT
        self._aux: dict[int, int] = {}        # per-version state sealed with a page
        # Content mode with VMs: what the host's EWB of a guest page produced, per EPT entry
        # (host memory: the host may edit it), and how far the exit log has been completed.
        self.xblob: dict[int, SealedPage] = {}
        self.xdone = 0
        self._ewb_out = table(np.zeros(L.W_LEN, dtype=np.uint64))
        self._rd_out = table(np.zeros(3, dtype=np.uint64))
        self._sec_bounds = [(s.base, s.base + s.size, int(self.st.sec_first[i]))
                            for i, s in enumerate(self.sections)]

    # ------------------------------------------------------------------ addressing
    @property
    def npages(self) -> int:
        return int(self.st.flags.shape[0])

    def lp_node(self, lp: int) -> int:
        """The NUMA node of logical processor ``lp``: the LPs are split evenly over the
        EPC's nodes in order, as sockets number their CPUs."""
        nnodes = max(s.node for s in self.sections) + 1
        return lp * nnodes // self.n_lps

    @property
    def n_lps(self) -> int:
        return int(self.st.lp_row.shape[0])

    @property
    def tlb_entries(self) -> int:
        """Entries of each logical processor's TLB (0: none modelled)."""
        return int(self.st.tlb.shape[1])

    def in_prm(self, addr: int) -> bool:
        return self.page_index(addr) is not None

    def page_index(self, addr: int) -> int | None:
        """EPC page number of a physical address, or None outside the EPC."""
        for base, end, first in self._sec_bounds:
            if base <= addr < end:
                return first + ((addr - base) >> 12)
        return None

    def page_addr(self, page: int) -> int:
        """Physical address of EPC page number ``page``."""
        for base, end, first in self._sec_bounds:
            n = (end - base) >> 12
            if first <= page < first + n:
                return base + ((page - first) << 12)
        raise IndexError(f"EPC page {page} does not exist")

    def host_page(self, page: int) -> int:
        """The EPCM index of EPC page ``page`` (a guest's view maps it through the EPT)."""
        return page

    def page_node(self, page: int) -> int:
        for i, (base, end, first) in enumerate(self._sec_bounds):
            if first <= page < first + ((end - base) >> 12):
                return self.sections[i].node
        raise IndexError(f"EPC page {page} does not exist")

    # ------------------------------------------------------------------ fault plumbing
    def _epc(self, leaf: str, addr: int, align: int = PAGE_SIZE) -> int:
        """An operand that must be an EPC address: #GP if misaligned, #PF if not EPC."""
        if not _aligned(addr, align):
            raise GeneralProtectionFault(leaf, addr, why="misaligned")
        page = self.page_index(addr)
        if page is None:
            raise PageFault(leaf, addr, why="not an EPC page")
        return page

    @staticmethod
    def _gp_unless(cond: bool, leaf: str, addr: int, why: str) -> None:
        if not cond:
            raise GeneralProtectionFault(leaf, addr, why=why)

    def _result(self, code: int, leaf: str, addrs: dict[int, int]) -> SgxReturn:
        """Turn a compiled leaf's code into a return value or an exception."""
        if code & L.FAULT:
            vector = code & 0xFF
            addr = addrs.get((code >> 8) & 0xF, 0)
            if vector == L.PF:
                raise PageFault(leaf, addr, error_code=X86_PF_SGX)
            if vector == L.UD:
                raise InvalidOpcode(leaf, addr)
            raise GeneralProtectionFault(leaf, addr)
        if code & L.VMEXIT:
            raise SgxConflictExit(leaf, code & 0xFF, addrs.get(L.OP_RCX, 0))
        return SgxReturn(code)

    def _need(self, feature: bool, leaf: str) -> None:
        if not feature:
            raise InvalidOpcode(leaf, why="leaf not supported by this part")

    # ------------------------------------------------------------------ injection
    def inject_conflict(self, addr: int) -> None:
        """Mark an EPC page as in use by another leaf, to reach the conflict paths."""
        page = self.page_index(addr)
        if page is None:
            raise ValueError(f"{addr:#x} is not an EPC address")
        n = int(self.st.g[G_NLOCKED])
        if n >= MAX_LOCKED:
            raise ValueError("too many injected conflicts")
        self.st.g[G_LOCKED + n] = page
        self.st.g[G_NLOCKED] = n + 1

    def inject_secs_lock(self, secs_addr: int, bits: int) -> None:
        """Hold SECS-level resources (epcsim.hw.epc.SECS_LOCK_*) as another leaf would."""
        page = self.page_index(secs_addr)
        if page is None or not L.is_valid_secs(self.st, page):
            raise ValueError(f"{secs_addr:#x} is not a resident SECS")
        self.st.s_lock[self.st.row[page]] |= np.uint8(bits)

    def clear_injections(self) -> None:
        self.st.g[G_NLOCKED] = 0
        self.st.s_lock[:] &= np.uint8(L.SECS_TRACK_BY_HOST)

    # ------------------------------------------------------------------ inspection
    def epcm(self, addr: int) -> dict[str, int | bool]:
        """The EPCM entry of an EPC page, decoded (for tests and debugging)."""
        page = self.page_index(addr)
        if page is None:
            raise ValueError(f"{addr:#x} is not an EPC address")
        page = self.host_page(page)
        st = self.st
        f = int(st.flags[page])
        entry: dict[str, int | bool] = {
            "valid": bool(f & EPCM_VALID), "blocked": bool(f & EPCM_BLOCKED),
            "pending": bool(f & EPCM_PENDING), "modified": bool(f & EPCM_MODIFIED),
            "pr": bool(f & EPCM_PR), "r": bool(f & EPCM_R), "w": bool(f & EPCM_W),
            "x": bool(f & EPCM_X), "pt": int(st.pt[page]),
        }
        if f & EPCM_VALID and L.is_child_type(int(st.pt[page])):
            row = int(st.row[page])
            entry["enclavesecs"] = self.page_addr(int(st.s_page[row]))
            entry["enclaveaddress"] = L.page_linaddr(st, page)
        return entry

    def _row_of_secs(self, secs_addr: int) -> int:
        page = self.page_index(secs_addr)
        if page is not None:
            page = self.host_page(page)
        if page is None or not L.is_valid_secs(self.st, page):
            raise ValueError(f"{secs_addr:#x} is not a resident SECS")
        return int(self.st.row[page])

    def secs_info(self, secs_addr: int) -> dict[str, int | bytes]:
        """Hidden and visible SECS fields of a resident SECS."""
        row = self._row_of_secs(secs_addr)
        st = self.st
        return {
            "eid": int(st.s_eid[row]), "base": int(st.s_base[row]), "size": int(st.s_size[row]),
            "attributes": int(st.s_attr[row]), "chldcnt": int(st.s_chld[row]),
            "virtchildcnt": int(st.s_vchld[row]), "enclavecontext": int(st.s_ctx[row]),
            "cbepoch": int(st.s_cbepoch[row]), "lps_inside": L.lps_inside(st, row),
            "mrenclave": self._mrenclave.get(row, b""), "mrsigner": self._mrsigner.get(row, b""),
        }

    # ------------------------------------------------------------------ dispatch
    def encls(self, leaf: int, rbx: int = 0, rcx: int = 0, rdx: int = 0,
              ctx: int = L.CTX_HOST) -> int:
        """Execute ENCLS[leaf] with the given registers; return RAX (and RBX for EDBGRD)."""
        try:
            name = Encls(leaf)
        except ValueError:
            raise GeneralProtectionFault(f"ENCLS[{leaf:#x}]", why="unknown leaf") from None
        E = Encls
        if name is E.ECREATE:
            return self.ecreate(rbx, rcx)
        if name is E.EADD:
            return self.eadd(rbx, rcx)
        if name is E.EINIT:
            return self.einit(rbx, rcx, rdx)
        if name is E.EREMOVE:
            return self.eremove(rcx, ctx)
        if name is E.EDBGRD:
            return self.edbgrd(rcx)[0]
        if name is E.EDBGWR:
            return self.edbgwr(rcx, rbx)
        if name is E.EEXTEND:
            return self.eextend(rbx, rcx)
        if name in (E.ELDB, E.ELDU, E.ELDBC, E.ELDUC):
            return self._eld(name, rbx, rcx, rdx, ctx)
        if name is E.EBLOCK:
            return self.eblock(rcx)
        if name is E.EPA:
            return self.epa(rcx, rbx)
        if name is E.EWB:
            return self.ewb(rbx, rcx, rdx, ctx)
        if name is E.ETRACK:
            return self.etrack(rcx, ctx)
        if name is E.EAUG:
            return self.eaug(rbx, rcx)
        if name is E.EMODPR:
            return self.emodpr(rbx, rcx)
        if name is E.EMODT:
            return self.emodt(rbx, rcx)
        if name is E.ERDINFO:
            return self.erdinfo(rbx, rcx)
        if name is E.ETRACKC:
            return self.etrackc(rcx, ctx)
        return self.eupdatesvn()

    def enclv(self, leaf: int, rbx: int = 0, rcx: int = 0) -> int:
        try:
            name = Enclv(leaf)
        except ValueError:
            raise GeneralProtectionFault(f"ENCLV[{leaf:#x}]", why="unknown leaf") from None
        if name is Enclv.EINCVIRTCHILD:
            return self.eincvirtchild(rbx, rcx)
        if name is Enclv.EDECVIRTCHILD:
            return self.edecvirtchild(rbx, rcx)
        return self.esetcontext(rcx, rbx)

    def enclu(self, lp: int, leaf: int, rbx: int = 0, rcx: int = 0, rdx: int = 0) -> int:
        try:
            name = Enclu(leaf)
        except ValueError:
            raise GeneralProtectionFault(f"ENCLU[{leaf:#x}]", why="unknown leaf") from None
        if name is Enclu.EENTER:
            return self.eenter(lp, rbx)
        if name is Enclu.ERESUME:
            return self.eresume(lp, rbx)
        if name is Enclu.EEXIT:
            return self.eexit(lp)
        if name is Enclu.EACCEPT:
            return self.eaccept(lp, rbx, rcx)
        if name is Enclu.EMODPE:
            return self.emodpe(lp, rbx, rcx)
        if name is Enclu.EACCEPTCOPY:
            return self.eacceptcopy(lp, rbx, rcx, rdx)
        raise GeneralProtectionFault(name.name, why="leaf not modelled")

    # ------------------------------------------------------------------ ENCLS: build
    def _read_pageinfo(self, leaf: str, addr: int) -> PageInfo:
        return PageInfo.unpack(self.mem.read(addr, PageInfo.SIZE))

    def _read_secinfo(self, leaf: str, addr: int) -> Secinfo:
        self._gp_unless(_aligned(addr, Secinfo.ALIGN), leaf, addr, "SECINFO misaligned")
        return Secinfo.unpack(self.mem.read(addr, Secinfo.SIZE))

    @staticmethod
    def _secinfo_reserved_ok(si: Secinfo) -> bool:
        return (si.flags & SGX_SECINFO_RESERVED_MASK) == 0 and not si.reserved_nonzero()

    def _secs_valid(self, secs: Secs, raw_reserved: bool) -> bool:
        """ECREATE's validation of the copied SECS (Intel SDM vol. 3D)."""
        if raw_reserved:
            return False
        if secs.xfrm & 0x3 != 0x3 or secs.xfrm & ~0x3:
            return False  # the model supports legacy XFRM only
        if secs.miscselect & ~SGX_MISC_EXINFO:
            return False
        misc = SGX_SSA_MISC_EXINFO_SIZE if secs.miscselect & SGX_MISC_EXINFO else 0
        if secs.ssaframesize == 0 or (secs.ssaframesize * PAGE_SIZE
                                      < XSAVE_LEGACY_SIZE + SGX_SSA_GPRS_SIZE + misc):
            return False
        size, base = secs.size, secs.baseaddr
        if secs.attributes & Attribute.MODE64BIT:
            if not (base < 1 << 47 or base >= 0xFFFF8000_00000000):
                return False
            if size >= 1 << self.max_enclave_log2:
                return False
        else:
            if base >= 1 << 32 or size >= 1 << 32:
                return False
        if size < 8192 or size & (size - 1) or base % size:
            return False
        if secs.attributes & ~int(SGX_ATTR_ALLOWED_MASK):
            return False
        if not secs.attributes & Attribute.KSS and (any(secs.configid) or secs.configsvn):
            return False
        return secs.mrenclave == bytes(32) and secs.mrsigner == bytes(32)

    def ecreate(self, pageinfo: int, epc: int) -> int:
        leaf = "ECREATE"
        self._gp_unless(_aligned(pageinfo, PageInfo.ALIGN), leaf, pageinfo, "PAGEINFO misaligned")
        target = self._epc(leaf, epc)
        pi = self._read_pageinfo(leaf, pageinfo)
        self._gp_unless(_aligned(pi.srcpge, PAGE_SIZE), leaf, pi.srcpge, "SRCPGE misaligned")
        si = self._read_secinfo(leaf, pi.metadata)
        self._gp_unless(pi.linaddr == 0 and pi.secs == 0, leaf, pageinfo,
                        "LINADDR and SECS must be 0")
        self._gp_unless(self._secinfo_reserved_ok(si) and (si.flags >> 8) & 0xFF == PageType.SECS,
                        leaf, pi.metadata, "SECINFO must name PT_SECS")
        raw = self.mem.read(pi.srcpge, PAGE_SIZE)
        secs = Secs.unpack(raw)
        ok = self._secs_valid(secs, secs.reserved_nonzero())
        return self.ecreate_page(target, secs, raw, ok=ok, context=epc)

    def secs_acceptable(self, secs: Secs) -> bool:
        """Whether ECREATE would accept this SECS image (its #GP checks)."""
        return self._secs_valid(secs, secs.reserved_nonzero())

    def ecreate_page(self, target: int, secs: Secs, raw: bytes | None = None, *,
                     ok: bool = True, context: int = 0) -> int:
        """ECREATE on page ``target`` with an already-validated SECS image."""
        # A refused SECS never reaches the table; its fields may not fit the compiled int64s.
        fields = ((secs.baseaddr, secs.size, secs.ssaframesize, secs.miscselect,
                   secs.attributes, secs.xfrm) if ok else (0, 0, 0, 0, 0, 0))
        while True:
            code = L.ecreate(self.st, target, *fields, ok, context)
            if code != L.NEED_ROW:
                break
            self.st = grow_secs_table(self.st)
        rc = self._result(code, "ECREATE", {L.OP_RCX: self.page_addr(target)})
        target = self.host_page(target)
        row = int(self.st.row[target])
        m = Measurement()
        m.ecreate(secs.ssaframesize, secs.size)
        self._measure[row] = m
        self._mrenclave.pop(row, None)
        self._mrsigner.pop(row, None)
        if self.content:
            self.st.data[target] = np.frombuffer(raw if raw is not None else secs.pack(),
                                                 dtype=np.uint8)
        return rc

    def eadd(self, pageinfo: int, epc: int) -> int:
        leaf = "EADD"
        self._gp_unless(_aligned(pageinfo, PageInfo.ALIGN), leaf, pageinfo, "PAGEINFO misaligned")
        target = self._epc(leaf, epc)
        pi = self._read_pageinfo(leaf, pageinfo)
        self._gp_unless(_aligned(pi.srcpge, PAGE_SIZE) and _aligned(pi.linaddr, PAGE_SIZE),
                        leaf, pi.srcpge, "SRCPGE or LINADDR misaligned")
        si = self._read_secinfo(leaf, pi.metadata)
        secs = self._epc(leaf, pi.secs)
        pt = (si.flags >> 8) & 0xFF
        self._gp_unless(self._secinfo_reserved_ok(si) and pt in (PageType.REG, PageType.TCS),
                        leaf, pi.metadata, "SECINFO must name PT_REG or PT_TCS")
        data = self.mem.read(pi.srcpge, PAGE_SIZE)
        return self.eadd_page(target, secs, pi.linaddr, si.flags, data)

    def eadd_page(self, target: int, secs: int, linaddr: int, secinfo: int,
                  data: bytes | None = None) -> int:
        """EADD ``data`` (zeros when None) at ``linaddr`` into the enclave of page ``secs``."""
        pt = (secinfo >> 8) & 0xFF
        tcs_aux, tcs_ok = 0, True
        if pt == PageType.TCS:
            tcs = Tcs.unpack(data if data is not None else bytes(PAGE_SIZE))
            tcs_ok = not tcs.reserved_nonzero() and tcs.nssa < 8
            tcs_aux = (tcs.nssa & 0x7) << 4
        code = L.eadd(self.st, target, secs, linaddr, secinfo, tcs_aux, tcs_ok)
        rc = self._result(code, "EADD", {L.OP_RCX: self.page_addr(target),
                                         L.OP_SECS: self.page_addr(secs)})
        target, secs = self.host_page(target), self.host_page(secs)
        row = int(self.st.row[secs])
        measured = secinfo & ~0x7 if pt == PageType.TCS else secinfo
        self._measure[row].eadd(linaddr - int(self.st.s_base[row]), measured)
        if data is not None and pt == PageType.TCS:
            # EADD clears DBGOPTIN, CSSA, AEP and STATE of a TCS before it is used.
            t = Tcs.unpack(data)
            data = Tcs(state=0, flags=t.flags & ~1, ossa=t.ossa, cssa=0, nssa=t.nssa,
                       oentry=t.oentry, aep=0, ofsbase=t.ofsbase, ogsbase=t.ogsbase,
                       fslimit=t.fslimit, gslimit=t.gslimit).pack()
        if self.content:
            self.st.data[target] = (np.frombuffer(data, dtype=np.uint8) if data is not None
                                    else 0)
        elif data is not None and bytes(data) != bytes(len(data)):
            # Not any(data): a Python loop over 4096 ints for each zero page added.
            self._staged[target] = data
        return rc

    def eextend(self, secs: int, addr: int) -> int:
        leaf = "EEXTEND"
        secs_page = self._epc(leaf, secs)
        page = self._epc(leaf, addr, align=256)
        return self.eextend_page(secs_page, page, addr & 0xFFF)

    def eextend_page(self, secs: int, page: int, offset: int) -> int:
        # By handle, and the operands' addresses only for a fault: a page is 16 EEXTENDs,
        # and unboxing the state tuple at each call was a fifth of building an enclave.
        code = L.eextend(self.st, secs, page)
        rc = SgxReturn.SGX_SUCCESS if code == L.SUCCESS else self._result(
            code, "EEXTEND", {L.OP_RCX: self.page_addr(page) + offset,
                              L.OP_SECS: self.page_addr(secs)})
        page = self.host_page(page)
        row = int(self.st.row[page])
        if self.content:
            chunk = self.st.data[page, offset:offset + 256].tobytes()
        else:
            chunk = self._staged.get(page, _ZERO_PAGE)[offset:offset + 256]
        self._measure[row].eextend(int(self.st.lin[page]) * PAGE_SIZE + offset, chunk)
        return rc

    def einit(self, sigstruct: int, secs: int, token: int) -> int:
        leaf = "EINIT"
        self._gp_unless(_aligned(sigstruct, PAGE_SIZE), leaf, sigstruct, "SIGSTRUCT misaligned")
        self._gp_unless(_aligned(token, EinitToken.ALIGN), leaf, token, "EINITTOKEN misaligned")
        secs_page = self._epc(leaf, secs)
        raw_sig = self.mem.read(sigstruct, SigStruct.SIZE)
        raw_token = self.mem.read(token, EinitToken.SIZE)
        return self.einit_page(secs_page, raw_sig, raw_token)

    def einit_page(self, secs: int, raw_sig: bytes, raw_token: bytes | None = None) -> int:
        """EINIT of the enclave whose SECS is page ``secs`` (Intel SDM vol. 3D, in order)."""
        leaf = "EINIT"
        sig = SigStruct.unpack(raw_sig)
        tok = EinitToken.unpack(raw_token if raw_token is not None else bytes(EinitToken.SIZE))
        verdict = verify_sigstruct(raw_sig)
        if verdict == SgxReturn.SGX_INVALID_SIG_STRUCT:
            return SgxReturn.SGX_INVALID_SIG_STRUCT
        if self.pending_unmasked_events > 0:
            self.pending_unmasked_events -= 1
            return SgxReturn.SGX_UNMASKED_EVENT
        if verdict != SgxReturn.SGX_SUCCESS:
            return SgxReturn(verdict)
        secs_arg, secs = secs, self.host_page(secs)
        if not L.page_locked(self.st, secs) and L.is_valid_secs(self.st, secs):
            # ISVFAMILYID comes before the measurement/INIT resource (Intel SDM vol. 3D)
            if (any(sig.isvfamilyid)
                    and not int(self.st.s_attr[self.st.row[secs]]) & Attribute.KSS):
                return SgxReturn.SGX_INVALID_SIG_STRUCT
        self._result(L.einit_secs_check(self.st, secs_arg), leaf,
                     {L.OP_SECS: self.page_addr(secs_arg)})
        row = int(self.st.row[secs])
        attr = int(self.st.s_attr[row])
        mr = self._measure[row].finalize()
        if mr != sig.enclavehash:
            return SgxReturn.SGX_INVALID_MEASUREMENT
        signer = mrsigner(sig.modulus)
        if attr & Attribute.EINITTOKENKEY and signer != self.lepubkeyhash:
            return SgxReturn.SGX_INVALID_ATTRIBUTE
        xfrm = int(self.st.s_xfrm[row])
        misc = int(self.st.s_misc[row])
        if ((attr & sig.attributemask) != (sig.attributes & sig.attributemask)
                or (xfrm & sig.xfrmmask) != (sig.xfrm & sig.xfrmmask)
                or (misc & sig.miscmask) != (sig.miscselect & sig.miscmask)):
            return SgxReturn.SGX_INVALID_ATTRIBUTE
        if tok.valid & 1 == 0:
            if signer != self.lepubkeyhash:
                return SgxReturn.SGX_INVALID_EINITTOKEN
        else:
            # A launch token needs the launch key, which only a launch enclave can derive;
            # the model has none, so any VALID token fails its CMAC.
            return SgxReturn.SGX_INVALID_EINITTOKEN
        self.st.s_attr[row] = attr | Attribute.INIT
        self._mrenclave[row] = mr
        self._mrsigner[row] = signer
        for page in [p for p in self._staged if int(self.st.row[p]) == row]:
            del self._staged[page]
        return SgxReturn.SGX_SUCCESS

    # ------------------------------------------------------------------ ENCLS: teardown
    def eremove(self, epc: int, ctx: int = L.CTX_HOST) -> int:
        return self.eremove_page(self._epc("EREMOVE", epc), ctx)

    def eremove_page(self, page: int, ctx: int = L.CTX_HOST) -> int:
        hp = self.host_page(page)
        was_secs = L.is_valid_secs(self.st, hp)
        row = int(self.st.row[hp])
        code = L.eremove(self.st, page, ctx)
        rc = self._result(code, "EREMOVE", {L.OP_RCX: self.page_addr(page)})
        if rc == SgxReturn.SGX_SUCCESS:
            self._staged.pop(hp, None)
            if was_secs:
                self._measure.pop(row, None)
                self._mrenclave.pop(row, None)
                self._mrsigner.pop(row, None)
        return rc

    def edbgrd(self, addr: int) -> tuple[int, int]:
        """EDBGRD: (RAX, the 8 bytes read) of a debug enclave's page."""
        page = self._epc("EDBGRD", addr, align=8)
        code = L.edbg_check(self.st, page, False, addr & 0xFFF)
        rc = self._result(code, "EDBGRD", {L.OP_RCX: addr})
        if rc != SgxReturn.SGX_SUCCESS:
            return rc, 0
        page = self.host_page(page)
        off = addr & 0xFFF
        if self.st.pt[page] == PageType.VA:
            slot = int(self.st.va_slots[self.st.row[page], off >> 3])
            return rc, 0xFFFFFFFFFFFFFFFF if slot else 0
        if not self.content:
            return rc, 0
        return rc, int.from_bytes(self.st.data[page, off:off + 8].tobytes(), "little")

    def edbgwr(self, addr: int, value: int) -> int:
        page = self._epc("EDBGWR", addr, align=8)
        code = L.edbg_check(self.st, page, True, addr & 0xFFF)
        rc = self._result(code, "EDBGWR", {L.OP_RCX: addr})
        if rc == SgxReturn.SGX_SUCCESS and self.content:
            off = addr & 0xFFF
            page = self.host_page(page)
            self.st.data[page, off:off + 8] = np.frombuffer(
                (value & L.MASK64).to_bytes(8, "little"), dtype=np.uint8)
        return rc

    # ------------------------------------------------------------------ ENCLS: paging
    def epa(self, epc: int, rbx: int = PageType.VA) -> int:
        leaf = "EPA"
        self._gp_unless(rbx == PageType.VA, leaf, epc, "RBX must be PT_VA")
        return self.epa_page(self._epc(leaf, epc))

    def reserve_va_rows(self, n: int) -> None:
        """Make room for ``n`` more VA pages at once (the model's version table)."""
        self.st = grow_va_table(self.st, n)

    def epa_page(self, page: int) -> int:
        while True:
            code = L.epa(self.st, page)
            if code != L.NEED_ROW:
                break
            self.st = grow_va_table(self.st)
        return self._result(code, "EPA", {L.OP_RCX: self.page_addr(page)})

    def eblock(self, epc: int) -> int:
        return self.eblock_page(self._epc("EBLOCK", epc))

    def eblock_page(self, page: int) -> int:
        return self._result(L.eblock(self.st, page), "EBLOCK", {})

    def etrack(self, secs: int, ctx: int = L.CTX_HOST) -> int:
        return self.etrack_page(self._epc("ETRACK", secs), ctx)

    def etrack_page(self, secs: int, ctx: int = L.CTX_HOST) -> int:
        return self._result(L.etrack(self.st, secs, ctx), "ETRACK",
                            {L.OP_RCX: self.page_addr(secs)})

    def _slot_operand(self, leaf: str, va_slot: int) -> tuple[int, int]:
        va = self._epc(leaf, va_slot, align=8)
        return va, (va_slot & 0xFFF) >> 3

    def ewb(self, pageinfo: int, epc: int, va_slot: int, ctx: int = L.CTX_HOST) -> int:
        leaf = "EWB"
        self._gp_unless(_aligned(pageinfo, PageInfo.ALIGN), leaf, pageinfo, "PAGEINFO misaligned")
        target = self._epc(leaf, epc)
        va, slot = self._slot_operand(leaf, va_slot)
        self._gp_unless(va != target, leaf, va_slot, "target and VA slot in the same page")
        pi = self._read_pageinfo(leaf, pageinfo)
        self._gp_unless(pi.linaddr == 0 and pi.secs == 0, leaf, pageinfo,
                        "LINADDR and SECS must be 0")
        self._gp_unless(_aligned(pi.metadata, Pcmd.ALIGN) and _aligned(pi.srcpge, PAGE_SIZE),
                        leaf, pi.metadata, "PCMD or SRCPGE misaligned")
        rc, sealed = self.ewb_page(target, va, slot, ctx)
        if sealed is not None:
            if sealed.contents is not None:
                self.mem.write(pi.srcpge, sealed.contents)
            self.mem.write(pi.metadata, sealed.pcmd().pack())
            self.mem.write(pageinfo, PageInfo(linaddr=sealed.linaddr, srcpge=pi.srcpge,
                                              metadata=pi.metadata, secs=0).pack())
        return rc

    def ewb_page(self, target: int, va: int, slot: int,
                 ctx: int = L.CTX_HOST) -> tuple[SgxReturn, SealedPage | None]:
        """EWB page ``target`` into ``slot`` of VA page ``va``."""
        out = self._ewb_out
        code = L.ewb(self.st, target, va, slot, ctx, out)
        rc = self._result(code, "EWB", {L.OP_RCX: self.page_addr(target),
                                        L.OP_RDX: self.page_addr(va) + slot * 8})
        if rc not in (SgxReturn.SGX_SUCCESS, SgxReturn.SGX_VA_SLOT_OCCUPIED):
            return rc, None
        aux = int(out[L.W_AUX])
        if aux:
            self._aux[int(out[L.W_VERSION])] = aux
        return rc, self.seal_record(target, out)

    def seal_record(self, target: int, out: np.ndarray) -> SealedPage:
        """What software receives for the EWB of ``target`` whose record is ``out``.

        In content mode the page's bytes (still in the now-invalid EPC page: compiled EWB
        leaves them for this step) are sealed with AES-GCM and wiped.
        """
        if self.content:
            return self.seal_records([target], out.reshape(1, -1))[0]
        mac = int(out[L.W_MAC]).to_bytes(8, "little") + bytes(8)
        return SealedPage(int(out[L.W_SECINFO]), int(out[L.W_PCMD_EID]), mac,
                          int(out[L.W_LINADDR]), None)

    def seal_records(self, targets: list[int], records: np.ndarray) -> list[SealedPage]:
        """Content mode: :meth:`seal_record` of several pages in one :meth:`seal_batch`."""
        sealed = np.empty((len(targets), SEALED_SIZE), dtype=np.uint8)
        self.seal_batch(targets, records, sealed)
        out = []
        for rec, row in zip(records.tolist(), sealed):
            blob = row.tobytes()
            out.append(SealedPage(rec[L.W_SECINFO], rec[L.W_PCMD_EID], blob[PAGE_SIZE:],
                                  rec[L.W_LINADDR], blob[:PAGE_SIZE]))
        return out

    def seal_batch(self, targets: list[int], records: np.ndarray, sealed: np.ndarray) -> None:
        """Content mode: :meth:`seal_record` of pages ``targets`` (EWB records ``records``,
        one row each), the ciphertext and MAC of page ``i`` into row ``i`` of ``sealed``
        (uint8, :data:`SEALED_SIZE` wide), then wipe the pages.

        A batch is what the reclaimer wrote back in one go; sealing it in one call keeps the
        per-page work to the cipher and the MAC header.
        """
        st = self.st
        data = memoryview(st.data.reshape(-1))
        out = memoryview(sealed.reshape(-1))
        seal = self.key.seal_into
        hosts = []
        for i, (target, rec) in enumerate(zip(targets, records.tolist())):
            target = self.host_page(target)
            hosts.append(target)
            secinfo = rec[L.W_SECINFO]
            if (secinfo >> 8) & 0xFF == PageType.VA:
                plaintext = st.va_slots[rec[L.W_ROW]].astype(np.uint64).tobytes()
            else:
                plaintext = data[target * PAGE_SIZE:(target + 1) * PAGE_SIZE]
            seal(rec[L.W_VERSION], self._aad_eid(rec[L.W_EID], secinfo, rec[L.W_PCMD_EID]),
                 rec[L.W_LINADDR], secinfo, plaintext, out[i * SEALED_SIZE:(i + 1) * SEALED_SIZE])
        st.data[hosts] = 0

    @staticmethod
    def _aad_eid(eid: int, secinfo: int, pcmd_eid: int) -> int:
        # A SECS carries its own EID inside its sealed contents; binding PCMD.ENCLAVEID in
        # the MAC header is how the model keeps that binding without the hidden bytes.
        return pcmd_eid if (secinfo >> 8) & 0xFF == PageType.SECS else eid

    def eldb(self, pageinfo: int, epc: int, va_slot: int) -> int:
        return self._eld(Encls.ELDB, pageinfo, epc, va_slot, L.CTX_HOST)

    def eldu(self, pageinfo: int, epc: int, va_slot: int) -> int:
        return self._eld(Encls.ELDU, pageinfo, epc, va_slot, L.CTX_HOST)

    def eldbc(self, pageinfo: int, epc: int, va_slot: int) -> int:
        return self._eld(Encls.ELDBC, pageinfo, epc, va_slot, L.CTX_HOST)

    def elduc(self, pageinfo: int, epc: int, va_slot: int) -> int:
        return self._eld(Encls.ELDUC, pageinfo, epc, va_slot, L.CTX_HOST)

    def _eld(self, which: Encls, pageinfo: int, epc: int, va_slot: int, ctx: int) -> int:
        leaf = which.name
        if which in (Encls.ELDBC, Encls.ELDUC):
            self._need(self.oversub, leaf)
        self._gp_unless(_aligned(pageinfo, PageInfo.ALIGN), leaf, pageinfo, "PAGEINFO misaligned")
        target = self._epc(leaf, epc)
        va, slot = self._slot_operand(leaf, va_slot)
        pi = self._read_pageinfo(leaf, pageinfo)
        self._gp_unless(_aligned(pi.metadata, Pcmd.ALIGN) and _aligned(pi.srcpge, PAGE_SIZE),
                        leaf, pi.metadata, "PCMD or SRCPGE misaligned")
        pcmd = Pcmd.unpack(self.mem.read(pi.metadata, Pcmd.SIZE))
        secs = NO_PAGE
        if L.is_child_type((pcmd.secinfo.flags >> 8) & 0xFF):
            # Checked after the target and the VA slot (Intel SDM vol. 3D), by the leaf.
            if not _aligned(pi.secs, PAGE_SIZE):
                secs = L.SECS_MISALIGNED
            else:
                secs = self.page_index(pi.secs)
                secs = NO_PAGE if secs is None else secs
        contents = self.mem.read(pi.srcpge, PAGE_SIZE) if self.content else None
        sealed = SealedPage(pcmd.secinfo.flags, pcmd.enclave_id, pcmd.mac, pi.linaddr, contents)
        return self.eldu_page(target, va, slot, secs, sealed,
                              blocked=which in (Encls.ELDB, Encls.ELDBC),
                              conflict_codes=which in (Encls.ELDBC, Encls.ELDUC), ctx=ctx,
                              context=epc, leaf=leaf, secs_addr=pi.secs)

    def eldu_page(self, target: int, va: int, slot: int, secs: int, sealed: SealedPage, *,
                  blocked: bool = False, conflict_codes: bool = False, ctx: int = L.CTX_HOST,
                  context: int = 0, leaf: str = "ELDU", secs_addr: int = 0,
                  aux: int | None = None) -> int:
        """ELDU/ELDB a sealed page into page ``target``; ``secs`` is its enclave's SECS page.

        ``aux`` is the state sealed with the page when the caller kept it (the kernel's
        compiled reclaimer does); by default the processor's own record is used.
        """
        blob: bytes | None = None
        if (self.content and sealed.contents is not None and len(sealed.contents) == PAGE_SIZE
                and len(sealed.mac) == 16):
            blob = bytes(sealed.contents) + bytes(sealed.mac)
        return self.eldu_sealed(target, va, slot, secs, sealed.secinfo, sealed.enclave_id,
                                sealed.linaddr, sealed.mac, blob, blocked=blocked,
                                conflict_codes=conflict_codes, ctx=ctx, context=context,
                                leaf=leaf, secs_addr=secs_addr, aux=aux)

    def eldu_sealed(self, target: int, va: int, slot: int, secs: int, secinfo: int,
                    pcmd_eid: int, linaddr: int, mac: bytes, blob: bytes | memoryview | None,
                    *, blocked: bool = False, conflict_codes: bool = False,
                    ctx: int = L.CTX_HOST, context: int = 0, leaf: str = "ELDU",
                    secs_addr: int = 0, aux: int | None = None) -> int:
        """:meth:`eldu_page` from the PCMD's fields and, in content mode, ``blob``: the
        ciphertext then the MAC (:data:`SEALED_SIZE` bytes, or None when there is none);
        ``mac`` is the PCMD's MAC, which metadata mode checks."""
        pt = (secinfo >> 8) & 0xFF
        version, eid = L.eldu_keys(self.st, va, slot, secs, pt)
        version, eid = int(version), int(eid)
        if aux is None:
            aux = self._aux.get(version, 0)
        secinfo16 = secinfo & 0xFFFF
        plaintext = self._plaintext
        if plaintext is None:
            plaintext = self._plaintext = table(np.zeros(PAGE_SIZE, dtype=np.uint8))
        if self.content:
            verdict = 0
            if version and blob is not None and self.key.open_into(
                    version, self._aad_eid(eid, secinfo16, pcmd_eid), linaddr, secinfo16, blob,
                    plaintext):
                verdict = 1
            mac64 = 0  # the AES-GCM tag decided; the 32-bit MAC is metadata mode's
        else:
            mac64 = int.from_bytes(mac[:8], "little") if len(mac) == 16 else -1
            verdict = -1 if mac[8:] == bytes(8) else 0
        if (secinfo >> 16 or secinfo & 0xC0 or not 0 <= linaddr < 1 << 63
                or not 0 <= pcmd_eid < 1 << 63 or not 0 <= mac64 < 1 << 63):
            # values no EWB produces: the MAC cannot match (and compiled code stays int64)
            verdict, linaddr, pcmd_eid, mac64 = 0, 0, 0, 0
        code = L.eldu_content(self.st, target, va, slot, secs, linaddr, secinfo16, pcmd_eid,
                              mac64, aux, blocked, conflict_codes, ctx,
                              context & ((1 << 63) - 1), verdict, plaintext)
        if code == L.SUCCESS:
            self._aux.pop(version, None)
            return SgxReturn.SGX_SUCCESS
        return self._result(code, leaf, {L.OP_RCX: self.page_addr(target),
                                         L.OP_RDX: self.page_addr(va) + slot * 8,
                                         L.OP_SECS: self.page_addr(secs) if secs >= 0
                                         else secs_addr})

    # ------------------------------------------------------------------ ENCLS: SGX2
    def eaug(self, pageinfo: int, epc: int) -> int:
        leaf = "EAUG"
        self._need(self.sgx2, leaf)
        self._gp_unless(_aligned(pageinfo, PageInfo.ALIGN), leaf, pageinfo, "PAGEINFO misaligned")
        target = self._epc(leaf, epc)
        pi = self._read_pageinfo(leaf, pageinfo)
        self._gp_unless(_aligned(pi.linaddr, PAGE_SIZE), leaf, pi.linaddr, "LINADDR misaligned")
        self._gp_unless(pi.srcpge == 0, leaf, pageinfo, "SRCPGE must be 0")
        secs = self._epc(leaf, pi.secs)
        if pi.metadata:
            self._read_secinfo(leaf, pi.metadata)
            # A non-zero SECINFO may only ask for a CET shadow-stack page; the modelled part
            # has no CET, so it always faults.
            raise GeneralProtectionFault(leaf, pi.metadata, why="SECINFO must be 0 without CET")
        return self.eaug_page(target, secs, pi.linaddr)

    def eaug_page(self, target: int, secs: int, linaddr: int, pt: int = PageType.REG) -> int:
        self._need(self.sgx2, "EAUG")
        return self._result(L.eaug(self.st, target, secs, linaddr, pt), "EAUG",
                            {L.OP_RCX: self.page_addr(target), L.OP_SECS: self.page_addr(secs)})

    def emodpr(self, secinfo: int, epc: int) -> int:
        leaf = "EMODPR"
        self._need(self.sgx2, leaf)
        si = self._read_secinfo(leaf, secinfo)
        perms = si.flags & 0x7
        self._gp_unless(self._secinfo_reserved_ok(si) and not (perms & 2 and not perms & 1),
                        leaf, secinfo, "SECINFO reserved bits or W without R")
        return self.emodpr_page(perms, self._epc(leaf, epc))

    def emodpr_page(self, perms: int, page: int) -> int:
        self._need(self.sgx2, "EMODPR")
        return self._result(L.emodpr(self.st, perms, page), "EMODPR",
                            {L.OP_RCX: self.page_addr(page)})

    def emodt(self, secinfo: int, epc: int) -> int:
        leaf = "EMODT"
        self._need(self.sgx2, leaf)
        si = self._read_secinfo(leaf, secinfo)
        pt = (si.flags >> 8) & 0xFF
        self._gp_unless(self._secinfo_reserved_ok(si) and pt in (PageType.TCS, PageType.TRIM),
                        leaf, secinfo, "SECINFO must name PT_TCS or PT_TRIM")
        return self.emodt_page(pt, self._epc(leaf, epc))

    def emodt_page(self, pt: int, page: int) -> int:
        self._need(self.sgx2, "EMODT")
        nssa = 1
        if self.content and pt == PageType.TCS:
            nssa = Tcs.unpack(self.st.data[self.host_page(page)].tobytes()).nssa
        return self._result(L.emodt(self.st, pt, page, nssa), "EMODT",
                            {L.OP_RCX: self.page_addr(page)})

    # ------------------------------------------------------------------ OVERSUB, ENCLV
    def erdinfo(self, rdinfo: int, epc: int) -> int:
        leaf = "ERDINFO"
        self._need(self.oversub, leaf)
        self._gp_unless(_aligned(rdinfo, RdInfo.ALIGN) and _aligned(epc, PAGE_SIZE), leaf, epc,
                        "misaligned")
        page = self.page_index(epc)
        if page is None:
            return SgxReturn.SGX_PG_NONEPC
        rc, info = self.erdinfo_page(page)
        if info is not None:
            self.mem.write(rdinfo, info.pack())
        return rc

    def erdinfo_page(self, page: int) -> tuple[SgxReturn, RdInfo | None]:
        self._need(self.oversub, "ERDINFO")
        rc = self._result(L.erdinfo(self.st, page, self._rd_out), "ERDINFO", {})
        if rc != SgxReturn.SGX_SUCCESS:
            return rc, None
        o = self._rd_out
        return rc, RdInfo(status=int(o[0]), flags=int(o[1]), enclavecontext=int(o[2]))

    def etrackc(self, epc: int, ctx: int = L.CTX_HOST) -> int:
        self._need(self.oversub, "ETRACKC")
        return self.etrackc_page(self._epc("ETRACKC", epc), ctx)

    def etrackc_page(self, page: int, ctx: int = L.CTX_HOST) -> int:
        self._need(self.oversub, "ETRACKC")
        return self._result(L.etrackc(self.st, page, ctx), "ETRACKC",
                            {L.OP_RCX: self.page_addr(page)})

    def _virtchild(self, leaf: str, page_addr: int, secs_addr: int, delta: int) -> int:
        self._need(self.oversub, leaf)
        page = self._epc(leaf, page_addr)
        secs = self._epc(leaf, secs_addr)
        return self._result(L.virtchild(self.st, page, secs, delta), leaf,
                            {L.OP_RBX: page_addr, L.OP_RCX: secs_addr})

    def eincvirtchild(self, page: int, secs: int) -> int:
        return self._virtchild("EINCVIRTCHILD", page, secs, 1)

    def edecvirtchild(self, page: int, secs: int) -> int:
        return self._virtchild("EDECVIRTCHILD", page, secs, -1)

    def esetcontext(self, secs: int, context: int) -> int:
        leaf = "ESETCONTEXT"
        self._need(self.oversub, leaf)
        page = self._epc(leaf, secs)
        context &= L.MASK64
        if context >> 63:  # the compiled leaf takes an int64; store the same 64 bits
            context -= 1 << 64
        return self._result(L.esetcontext(self.st, page, context), leaf, {L.OP_RCX: secs})

    def eupdatesvn(self) -> int:
        return self._result(L.eupdatesvn(self.st), "EUPDATESVN", {})

    # EUPDATESVN is enumerated by CPUID.(EAX=12H,ECX=0):EAX[10]; every modelled part has it.
    eupdatesvn_supported = True

    @property
    def cpusvn(self) -> int:
        """The SVN the SGX keys derive from."""
        return int(self.st.g[G_CPUSVN])

    def load_microcode(self, svn: int) -> None:
        """A run-time microcode update of security version ``svn``: EUPDATESVN takes it up
        the next time it runs on an empty EPC."""
        if not 0 <= svn < 1 << 16:
            raise ValueError(f"a microcode SVN is 16 bits: {svn}")
        self.st.g[G_UCODE_SVN] = svn

    def inject_rdseed_failures(self, n: int) -> None:
        """The next ``n`` EUPDATESVNs find the entropy source exhausted."""
        self.st.g[G_RDSEED_FAILS] = max(0, n)

    # ------------------------------------------------------------------ ENCLU
    def _translate(self, lp: int, linaddr: int) -> int:
        """EPC page behind an enclave linear address via the LP's page tables, or NO_PAGE."""
        aspace = self.aspace[lp]
        pte = aspace.lookup(linaddr) if aspace is not None else None
        if pte is None:
            return NO_PAGE
        page = self.page_index(pte[0])
        return NO_PAGE if page is None else page

    def _translate_present(self, lp: int, leaf: str, linaddr: int, write: bool = False) -> int:
        """Like :meth:`_translate`, but a missing PTE raises the walker's not-present #PF."""
        aspace = self.aspace[lp]
        pte = aspace.lookup(linaddr) if aspace is not None else None
        if pte is None:
            raise PageFault(leaf, linaddr & ~0xFFF,
                            error_code=X86_PF_USER | (X86_PF_WRITE if write else 0),
                            why="not present")
        page = self.page_index(pte[0])
        return NO_PAGE if page is None else page

    @contextmanager
    def _enclave_mode(self, lp: int) -> Iterator[None]:
        """An EPCM fault of an ENCLU leaf is a #PF with the SGX bit, from user mode.

        The leaf itself changes nothing; delivering the exception (the AEX) is the caller's,
        as for any instruction that faults inside an enclave.
        """
        try:
            yield
        except PageFault as f:
            if f.error_code == X86_PF_SGX:
                f.error_code = X86_PF_SGX | X86_PF_USER | X86_PF_PROT
            raise

    def _lp(self, lp: int, leaf: str) -> None:
        if not 0 <= lp < self.n_lps:
            raise ValueError(f"{leaf}: no logical processor {lp}")

    def eenter(self, lp: int, tcs: int) -> int:
        return self._enter(lp, tcs, "EENTER", L.eenter)

    def eresume(self, lp: int, tcs: int) -> int:
        return self._enter(lp, tcs, "ERESUME", L.eresume)

    def _enter(self, lp: int, tcs: int, leaf: str, fn) -> int:  # type: ignore[no-untyped-def]
        self._lp(lp, leaf)
        self._gp_unless(_aligned(tcs, PAGE_SIZE), leaf, tcs, "TCS misaligned")
        page = self._translate(lp, tcs)
        if page == NO_PAGE:
            raise PageFault(leaf, tcs, error_code=X86_PF_USER, why="TCS not mapped")
        # RBX is a linear address: its page walk sets the TCS PTE's accessed bit (SDM vol. 3A
        # 4.8) before the leaf's own checks, so the reclaimer's age test sees a TCS in use as
        # young. Not through the TLB model: AEX and EEXIT flush it, and only the enclave's
        # loads and stores go through it.
        self.aspace[lp].touch(tcs, False)
        return self._result(fn(self.st, lp, page, _lin(tcs)), leaf, {L.OP_RBX: tcs})

    def eexit(self, lp: int) -> int:
        self._lp(lp, "EEXIT")
        return self._result(L.eexit(self.st, lp), "EEXIT", {})

    def aex(self, lp: int) -> None:
        """An interrupt, exception or VM exit while ``lp`` runs inside an enclave."""
        self._lp(lp, "AEX")
        self._result(L.aex(self.st, lp), "AEX", {})

    def inside(self, lp: int) -> bool:
        return int(self.st.lp_row[lp]) != NO_PAGE

    def _enclu_secinfo(self, lp: int, leaf: str, addr: int,
                       flags: int | None) -> tuple[int, int]:
        """Read a SECINFO operand from enclave memory: (EPC page, FLAGS)."""
        self._gp_unless(_aligned(addr, Secinfo.ALIGN), leaf, addr, "SECINFO misaligned")
        row = int(self.st.lp_row[lp])
        if row != NO_PAGE:
            self._gp_unless(L.in_elrange(self.st, row, _lin(addr)), leaf, addr,
                            "SECINFO outside ELRANGE")
        page = self._translate_present(lp, leaf, addr)
        if flags is None:
            if not self.content:
                raise ValueError(f"{leaf}: metadata mode needs the SECINFO flags passed in")
            if page == NO_PAGE:
                raise PageFault(leaf, addr, error_code=X86_PF_USER | X86_PF_SGX)
            si = Secinfo.unpack(
                self.st.data[self.host_page(page), addr & 0xFFF:(addr & 0xFFF) + 64].tobytes())
            self._gp_unless(self._secinfo_reserved_ok(si), leaf, addr, "SECINFO reserved bits")
            flags = si.flags
        else:
            self._gp_unless((flags & SGX_SECINFO_RESERVED_MASK) == 0, leaf, addr,
                            "SECINFO reserved bits")
        return page, flags

    def eaccept(self, lp: int, secinfo: int, target: int, flags: int | None = None) -> int:
        """EACCEPT(RBX=secinfo address, RCX=target address); ``flags`` stands in for the
        SECINFO bytes in metadata mode."""
        return self._secinfo_leaf(lp, "EACCEPT", L.eaccept, secinfo, target, flags)

    def emodpe(self, lp: int, secinfo: int, target: int, flags: int | None = None) -> int:
        """EMODPE(RBX=secinfo address, RCX=target address)."""
        return self._secinfo_leaf(lp, "EMODPE", L.emodpe, secinfo, target, flags)

    def _secinfo_leaf(self, lp: int, leaf: str, fn, secinfo: int, target: int,  # type: ignore[no-untyped-def]
                      flags: int | None) -> int:
        """The ENCLU leaves that take a SECINFO in enclave memory and a target page."""
        self._need(self.sgx2, leaf)
        self._lp(lp, leaf)
        self._gp_unless(_aligned(target, PAGE_SIZE), leaf, target, "target misaligned")
        if not self.inside(lp):
            raise GeneralProtectionFault(leaf, target, why="not in enclave mode")
        with self._enclave_mode(lp):
            si_page, flags = self._enclu_secinfo(lp, leaf, secinfo, flags)
            page = self._translate_present(lp, leaf, target)
            return self._result(fn(self.st, lp, si_page, _lin(secinfo), flags, page,
                                   _lin(target)),
                                leaf, {L.OP_RBX: secinfo, L.OP_RCX: target})

    def eacceptcopy(self, lp: int, secinfo: int, dest: int, src: int,
                    flags: int | None = None) -> int:
        leaf = "EACCEPTCOPY"
        self._need(self.sgx2, leaf)
        self._lp(lp, leaf)
        self._gp_unless(_aligned(dest, PAGE_SIZE) and _aligned(src, PAGE_SIZE), leaf, dest,
                        "misaligned")
        if not self.inside(lp):
            raise GeneralProtectionFault(leaf, dest, why="not in enclave mode")
        with self._enclave_mode(lp):
            _, flags = self._enclu_secinfo(lp, leaf, secinfo, flags)
            code = L.eacceptcopy(self.st, lp, flags, self._translate_present(lp, leaf, dest, True),
                                 _lin(dest), self._translate_present(lp, leaf, src), _lin(src))
            return self._result(code, leaf, {L.OP_RBX: secinfo, L.OP_RCX: dest, L.OP_RDX: src})

    # ------------------------------------------------------------------ enclave accesses
    def _access(self, lp: int, linaddr: int, size: int, write: bool) -> int:
        """Translate and check one access of the enclave running on ``lp``.

        Returns the EPC page (or NO_PAGE for memory outside ELRANGE). A failing check
        delivers #PF: the LP takes an AEX first, as the hardware does, and the fault carries
        the page-aligned address (AEX hides CR2's low 12 bits).
        """
        self._lp(lp, "access")
        if (linaddr & 0xFFF) + size > PAGE_SIZE:
            raise ValueError("an access may not cross a page boundary")
        if not self.inside(lp):
            raise ValueError(f"logical processor {lp} is not inside an enclave")
        aspace = self.aspace[lp]
        pte = aspace.lookup(linaddr) if aspace is not None else None
        err = X86_PF_USER | (X86_PF_WRITE if write else 0)
        leaf = "write" if write else "read"
        if pte is None:
            self.aex(lp)
            raise PageFault(leaf, linaddr & ~0xFFF, error_code=err, why="not present")
        phys, prot = pte
        if not prot & PROT_READ or (write and not prot & PROT_WRITE):
            self.aex(lp)
            raise PageFault(leaf, linaddr & ~0xFFF, error_code=err | X86_PF_PROT,
                            why="PTE permissions")
        row = int(self.st.lp_row[lp])
        page = self.page_index(phys)
        if not L.in_elrange(self.st, row, _lin(linaddr)):
            if page is not None:  # enclave code sees the EPC of others as abort pages too
                return NO_PAGE
            return NO_PAGE
        # The page table is read on every access (the Python API's paths that change a PTE
        # do not all shoot down TLBs); the EPCM checks and the accessed bit go through the TLB.
        code = L.enclave_access(self.st, lp, NO_PAGE if page is None else page, _lin(linaddr),
                                write, False)
        if code > 0:
            self.aex(lp)
            raise PageFault(leaf, linaddr & ~0xFFF, error_code=code, why="EPCM")
        if code == L.WALKED:
            aspace.touch(linaddr, write)
        return page if page is not None else NO_PAGE

    def enclave_read(self, lp: int, linaddr: int, size: int = 8) -> bytes:
        """A load by the enclave running on ``lp`` (zeros for EPC in metadata mode)."""
        page = self._access(lp, linaddr, size, False)
        if page == NO_PAGE:
            pte = self.aspace[lp].lookup(linaddr)  # type: ignore[union-attr]
            return self.mem.read(pte[0] | (linaddr & 0xFFF), size)  # type: ignore[index]
        if not self.content:
            return bytes(size)
        off = linaddr & 0xFFF
        return self.st.data[self.host_page(page), off:off + size].tobytes()

    def enclave_write(self, lp: int, linaddr: int, data: bytes) -> None:
        page = self._access(lp, linaddr, len(data), True)
        if page == NO_PAGE:
            pte = self.aspace[lp].lookup(linaddr)  # type: ignore[union-attr]
            self.mem.write(pte[0] | (linaddr & 0xFFF), data)  # type: ignore[index]
            return
        if self.content:
            off = linaddr & 0xFFF
            self.st.data[self.host_page(page), off:off + len(data)] = np.frombuffer(
                data, dtype=np.uint8)

    # ------------------------------------------------------------------ CPUID
    def cpuid_epc_sections(self) -> list[tuple[int, int, int, int]]:
        """CPUID.(EAX=12H, ECX=2+n) for each section, as (EAX, EBX, ECX, EDX)."""
        regs = []
        for s in self.sections:
            eax = 1 | (s.base & 0xFFFFF000)
            ebx = (s.base >> 32) & 0xFFFFF
            ecx = s.protection | (s.size & 0xFFFFF000)
            edx = (s.size >> 32) & 0xFFFFF
            regs.append((eax, ebx, ecx, edx))
        return regs


def split_epc(size: int, nodes: int = 1, base: int = DEFAULT_EPC_BASE) -> list[EpcSection]:
    """``size`` bytes of EPC as one section per NUMA node, laid out back to back."""
    if nodes < 1 or nodes > 8:
        raise ValueError("between 1 and 8 NUMA nodes")
    pages = size // PAGE_SIZE
    if pages < nodes:
        raise ValueError(f"an EPC of {size} bytes cannot span {nodes} nodes")
    sections = []
    addr = base
    for n in range(nodes):
        np_ = pages // nodes + (1 if n < pages % nodes else 0)
        sections.append(EpcSection(base=addr, size=np_ * PAGE_SIZE, node=n))
        addr += np_ * PAGE_SIZE
        addr = -(-addr // (1 << 30)) * (1 << 30) if nodes > 1 else addr
    return sections


__all__ = [
    "PROT_EXEC",
    "PROT_READ",
    "PROT_WRITE",
    "AddressSpace",
    "ArchFault",
    "GeneralProtectionFault",
    "InvalidOpcode",
    "PageFault",
    "Processor",
    "SealedPage",
    "SgxConflictExit",
    "split_epc",
]
