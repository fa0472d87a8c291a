"""The uapi of ``/dev/sgx_enclave``: ioctls with the kernel's checks, errno values and
``count``/``result`` outputs (the kernel's SGX code), and the file's mmap/mprotect rules.

Each ioctl takes and returns the same fields as the kernel's structs. A call returns 0 or
``-errno`` like the syscall's ``-1``/``errno`` pair; output fields are written into the
argument object.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from epcsim.arch import (
    PAGE_SIZE,
    SGX_SECINFO_RESERVED_MASK,
    Attribute,
    PageType,
    Secinfo,
    Tcs,
)
from epcsim.hw import encls as L
from epcsim.kernel.encl import (
    EP_BEING_RECLAIMED,
    EP_EXISTS,
    EP_PRESENT,
    EP_YOUNG,
    NONE,
    SGX_ENCL_CREATED,
    SGX_ENCL_DEAD,
    SGX_ENCL_INITIALIZED,
    SGX_ENCL_IOCTL,
    SgxDriver,
)
from epcsim.kernel.main import ERESTARTSYS
from epcsim.kernel.mm import PROT_EXEC, PROT_READ, PROT_WRITE, Mm

SGX_MAGIC = 0xA4
SGX_PAGE_MEASURE = 0x01

# ioctl numbers (_IOC(dir, 0xA4, nr, size)).
SGX_IOC_ENCLAVE_CREATE = 0x4008A400
SGX_IOC_ENCLAVE_ADD_PAGES = 0xC030A401
SGX_IOC_ENCLAVE_INIT = 0x4008A402
SGX_IOC_ENCLAVE_PROVISION = 0x4008A403
SGX_IOC_VEPC_REMOVE_ALL = 0x0000A404
SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS = 0xC028A405
SGX_IOC_ENCLAVE_MODIFY_TYPES = 0xC028A406
SGX_IOC_ENCLAVE_REMOVE_PAGES = 0xC018A407

EINVAL, EBUSY, EFAULT, EACCES, EPERM, EAGAIN, ENODEV, ENOTTY, EIO = (
    errno.EINVAL, errno.EBUSY, errno.EFAULT, errno.EACCES, errno.EPERM, errno.EAGAIN,
    errno.ENODEV, errno.ENOTTY, errno.EIO)


@dataclass
class SgxEnclaveCreate:
    src: bytes                       # the 4096-byte SECS the user prepared


@dataclass
class SgxEnclaveAddPages:
    src: bytes                       # source bytes (length bytes; the model passes contents)
    offset: int
    length: int
    secinfo: bytes                   # 64-byte SECINFO
    flags: int = 0
    count: int = 0                   # out
    src_addr: int = 0                # the user pointer (checked for page alignment)


@dataclass
class SgxEnclaveInit:
    sigstruct: bytes


@dataclass
class SgxEnclaveProvision:
    fd: object


@dataclass
class SgxEnclaveRestrictPermissions:
    offset: int
    length: int
    permissions: int
    result: int = 0
    count: int = 0


@dataclass
class SgxEnclaveModifyTypes:
    offset: int
    length: int
    page_type: int
    result: int = 0
    count: int = 0


@dataclass
class SgxEnclaveRemovePages:
    offset: int
    length: int
    count: int = 0


class SgxProvisionFile:
    """An open ``/dev/sgx_provision``: proof that the caller may use PROVISIONKEY."""


class EnclaveFile:
    """One open ``/dev/sgx_enclave``: one enclave."""

    def __init__(self, driver: SgxDriver) -> None:
        self.driver = driver
        self.e = driver.open()
        self.closed = False
        self.mms: list[Mm] = []

    # -------------------------------------------------------------- helpers
    @property
    def ds(self):  # type: ignore[no-untyped-def]
        return self.driver.ds

    def _flags(self) -> int:
        return int(self.ds.e_flags[self.e])

    def validate_offset_length(self, offset: int, length: int) -> int:
        """``sgx_validate_offset_length``."""
        size = int(self.ds.e_size[self.e])
        if offset % PAGE_SIZE or not length or length % PAGE_SIZE:
            return -EINVAL
        if offset < 0 or offset + length < offset or offset + length - PAGE_SIZE >= size:
            return -EINVAL
        return 0

    @property
    def base(self) -> int:
        return int(self.ds.e_base[self.e])

    @property
    def size(self) -> int:
        return int(self.ds.e_size[self.e])

    # -------------------------------------------------------------- ioctl dispatch
    def ioctl(self, cmd: int, arg: object) -> int:
        """``sgx_ioctl``: one ioctl at a time per enclave (-EBUSY otherwise)."""
        if self.closed:
            return -errno.EBADF
        handlers = {
            SGX_IOC_ENCLAVE_CREATE: self.create,
            SGX_IOC_ENCLAVE_ADD_PAGES: self.add_pages,
            SGX_IOC_ENCLAVE_INIT: self.init,
            SGX_IOC_ENCLAVE_PROVISION: self.provision,
            SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS: self.restrict_permissions,
            SGX_IOC_ENCLAVE_MODIFY_TYPES: self.modify_types,
            SGX_IOC_ENCLAVE_REMOVE_PAGES: self.remove_pages,
        }
        handler = handlers.get(cmd)
        if handler is None:
            return -ENOTTY
        if self._flags() & SGX_ENCL_IOCTL:
            return -EBUSY
        self.ds.e_flags[self.e] |= SGX_ENCL_IOCTL
        try:
            return handler(arg)  # type: ignore[operator]
        finally:
            self.ds.e_flags[self.e] &= ~SGX_ENCL_IOCTL
            # ksgxd runs on its own CPU; a sequential model gives it its turn as the ioctl
            # returns (docs/design.md, "When ksgxd runs").
            self.driver.mgr.run_ksgxd()

    # -------------------------------------------------------------- SGX1
    def create(self, arg: SgxEnclaveCreate) -> int:
        if not isinstance(arg, SgxEnclaveCreate) or len(arg.src) != PAGE_SIZE:
            return -EFAULT
        return self.driver.create(self.e, arg.src)

    def add_pages(self, arg: SgxEnclaveAddPages) -> int:
        flags = self._flags()
        if not flags & SGX_ENCL_CREATED or flags & SGX_ENCL_INITIALIZED:
            return -EINVAL
        if arg.src_addr % PAGE_SIZE:
            return -EINVAL
        rc = self.validate_offset_length(arg.offset, arg.length)
        if rc:
            return rc
        if len(arg.secinfo) != Secinfo.SIZE:
            return -EFAULT
        si = Secinfo.unpack(arg.secinfo)
        if not _secinfo_valid(si):
            return -EINVAL
        if len(arg.src) < arg.length:
            return -EFAULT
        arg.count = 0
        for c in range(0, arg.length, PAGE_SIZE):
            if self.driver.mgr.signal_pending:
                return -ERESTARTSYS if c == 0 else 0
            rc = self.driver.add_page(self.e, arg.offset + c, arg.src[c:c + PAGE_SIZE], si.flags,
                                      bool(arg.flags & SGX_PAGE_MEASURE))
            if rc:
                return rc
            arg.count = c + PAGE_SIZE
        return 0

    def init(self, arg: SgxEnclaveInit) -> int:
        if not isinstance(arg, SgxEnclaveInit) or len(arg.sigstruct) != 1808:
            return -EFAULT
        return self.driver.init(self.e, arg.sigstruct)

    def provision(self, arg: SgxEnclaveProvision) -> int:
        if not isinstance(arg.fd, SgxProvisionFile):
            return -EINVAL
        self.driver.attributes_mask[self.e] |= int(Attribute.PROVISIONKEY)
        return 0

    # -------------------------------------------------------------- SGX2
    def _sgx2_ready(self) -> int:
        if not self.driver.sgx2:
            return -ENODEV
        if not self._flags() & SGX_ENCL_INITIALIZED:
            return -EINVAL
        return 0

    def _load(self, ep: int) -> int:
        """``sgx_encl_load_page`` for an ioctl: -EAGAIN when busy, -EFAULT otherwise."""
        if not self.ds.ep_flags[ep] & EP_EXISTS:
            return -EFAULT
        epc = self.driver.load_page(self.e, ep)
        if epc == -EBUSY:
            return -EAGAIN
        if epc < 0:
            return -EFAULT
        return epc

    def _load_at(self, offset: int) -> tuple[int, int]:
        """The SGX2 ioctls' per-page start: keep a few pages free, then load the page.

        Returns (enclave page, EPC page or -errno).
        """
        self.driver.mgr.reclaim_direct()
        ep = self.driver.ep_of(self.e, self.base + offset)
        return ep, self._load(ep)

    def restrict_permissions(self, arg: SgxEnclaveRestrictPermissions) -> int:
        rc = self._sgx2_ready() or self.validate_offset_length(arg.offset, arg.length)
        if rc:
            return rc
        perms = arg.permissions
        if perms & ~0x7 or (perms & PROT_WRITE and not perms & PROT_READ):
            return -EINVAL
        if arg.result or arg.count:
            return -EINVAL
        cpu = self.driver.cpu
        for c in range(0, arg.length, PAGE_SIZE):
            ep, epc = self._load_at(arg.offset + c)
            if epc < 0:
                return epc
            if self.ds.ep_type[ep] != PageType.REG:
                return -EINVAL
            code = L.emodpr(cpu.st, perms, epc)
            if code & L.FAULT:
                return -EFAULT
            if code:
                arg.result = code
                return -EFAULT
            if self.driver.etrack(self.e):
                return -EFAULT
            arg.count = c + PAGE_SIZE
        return 0

    def modify_types(self, arg: SgxEnclaveModifyTypes) -> int:
        rc = self._sgx2_ready() or self.validate_offset_length(arg.offset, arg.length)
        if rc:
            return rc
        if arg.page_type & ~0xFF or arg.result or arg.count:
            return -EINVAL
        new = arg.page_type
        if new not in (PageType.TCS, PageType.TRIM):
            return -EINVAL
        cpu, ds = self.driver.cpu, self.ds
        for c in range(0, arg.length, PAGE_SIZE):
            ep, epc = self._load_at(arg.offset + c)
            if epc < 0:
                return epc
            old = int(ds.ep_type[ep])
            if not ((old == PageType.REG and new in (PageType.TCS, PageType.TRIM))
                    or (old == PageType.TCS and new == PageType.TRIM)):
                return -EINVAL
            prot = int(ds.ep_prot[ep])
            if new == PageType.TCS:
                if (prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE):
                    return -EPERM
                ds.ep_prot[ep] = PROT_READ | PROT_WRITE
                # Untracked while the PTEs are zapped: the reclaimer must not take it now.
                if self.driver.mgr.unmark_reclaimable(epc) != 0:
                    ds.ep_prot[ep] = prot
                    return -EAGAIN
                ds.ep_flags[ep] &= ~np.uint8(EP_PRESENT | EP_YOUNG)
                self.driver.mgr.mark_reclaimable(epc)
            try:
                code = cpu.emodt_page(new, epc)
            except Exception:
                ds.ep_prot[ep] = prot
                return -EFAULT
            if code:
                ds.ep_prot[ep] = prot
                arg.result = int(code)
                return -EFAULT
            if self.driver.etrack(self.e):
                return -EFAULT
            ds.ep_type[ep] = new
            arg.count = c + PAGE_SIZE
        return 0

    def remove_pages(self, arg: SgxEnclaveRemovePages) -> int:
        rc = self._sgx2_ready() or self.validate_offset_length(arg.offset, arg.length)
        if rc:
            return rc
        if arg.count:
            return -EINVAL
        cpu, ds = self.driver.cpu, self.ds
        for c in range(0, arg.length, PAGE_SIZE):
            ep, epc = self._load_at(arg.offset + c)
            if epc < 0:
                return epc
            if ds.ep_type[ep] != PageType.TRIM:
                return -EPERM
            # The hardware as an oracle: EMODPR of an accepted TRIM page faults (#PF), of one
            # the enclave has not accepted returns SGX_PAGE_NOT_MODIFIABLE.
            code = L.emodpr(cpu.st, 0x7, epc)
            if not (code & L.FAULT and code & 0xFF == L.PF):
                return -EPERM
            if ds.ep_flags[ep] & EP_BEING_RECLAIMED:
                return -EBUSY
            if self.driver.remove_page(self.e, ep):
                return -EBUSY
            self.driver.shrink(self.e, NONE)
            arg.count = c + PAGE_SIZE
        return 0

    # -------------------------------------------------------------- mapping
    def may_map(self, start: int, end: int, prot: int) -> int:
        """``sgx_encl_may_map``: existing pages bound the protections; holes do not."""
        if self.closed or self._flags() & SGX_ENCL_DEAD:
            return -EINVAL
        flags = self._flags()
        if not flags & SGX_ENCL_CREATED:
            return -EINVAL
        want = prot & (PROT_READ | PROT_WRITE | PROT_EXEC)
        # "Disallow mapping outside enclave's address range" (v6.0, every part).
        if flags & SGX_ENCL_INITIALIZED and (start < self.base or end > self.base + self.size):
            return -EACCES
        ds = self.ds
        lo, hi = max(start, self.base), min(end, self.base + self.size)
        if hi <= lo:
            return 0
        first = self.driver.ep_of(self.e, lo)
        last = first + -(-(hi - lo) // PAGE_SIZE)
        exists = (ds.ep_flags[first:last] & EP_EXISTS) != 0
        # In the records' own bytes: a copy in 64 bits of an enclave of 128 GiB was 268 MB.
        w = np.uint8(want)
        denied = (ds.ep_prot[first:last] & w) != w
        return -EACCES if bool(np.any(exists & denied)) else 0

    def mmap(self, mm: Mm, addr: int, length: int, prot: int, flags: int) -> int:
        rc = mm.mmap(self, addr, length, prot, flags)
        if rc == 0 and mm not in self.mms:
            self.mms.append(mm)
        return rc

    def pte(self, mm: Mm, linaddr: int) -> tuple[int, int] | None:
        if not self.driver.in_elrange(self.e, linaddr):
            return None
        ds = self.ds
        ep = self.driver.ep_of(self.e, linaddr)
        epc = int(ds.ep_epc[ep])
        if epc == NONE or not ds.ep_flags[ep] & EP_PRESENT:
            return None
        return self.driver.cpu.page_addr(epc), PROT_READ | PROT_WRITE | PROT_EXEC

    def touch(self, linaddr: int, write: bool) -> None:
        if self.driver.in_elrange(self.e, linaddr):
            self.ds.ep_flags[self.driver.ep_of(self.e, linaddr)] |= np.uint8(EP_YOUNG)

    # -------------------------------------------------------------- close
    def close(self) -> int:
        """Drop the file's reference: the enclave is released. Returns pages leaked."""
        if self.closed:
            return 0
        self.closed = True
        for mm in self.mms:
            mm.vmas = [v for v in mm.vmas if v.file is not self]
        return self.driver.release(self.e)


def _secinfo_valid(si: Secinfo) -> bool:
    """``sgx_validate_secinfo``."""
    pt = (si.flags >> 8) & 0xFF
    perms = si.flags & 0x7
    if pt not in (PageType.REG, PageType.TCS):
        return False
    if perms & PROT_WRITE and not perms & PROT_READ:
        return False
    if pt == PageType.TCS and perms:
        return False
    if si.flags & (SGX_SECINFO_RESERVED_MASK | 0x38) or si.reserved_nonzero():
        return False
    return True


__all__ = [
    "SGX_PAGE_MEASURE",
    "EnclaveFile",
    "SgxEnclaveAddPages",
    "SgxEnclaveCreate",
    "SgxEnclaveInit",
    "SgxEnclaveModifyTypes",
    "SgxEnclaveProvision",
    "SgxEnclaveRemovePages",
    "SgxEnclaveRestrictPermissions",
    "SgxProvisionFile",
    "Tcs",
]
