"""Bad input to the ``/dev/sgx_enclave`` uapi gets the kernel's errno, never an exception
(the kernel's SGX code). After every failing call the manager's invariants hold, no EPC
page was allocated or leaked, and closing the enclave gives every page back."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
from drvkit import (
    BASE,
    SECINFO_RW,
    SECINFO_RX,
    SECINFO_TCS,
    Built,
    add_arg,
    assert_all_free,
    assert_clean,
    create,
    machine,
    secs_bytes,
    small_enclave,
)

from epcsim.arch import PAGE_SIZE, Attribute, PageType, SgxReturn, secinfo_flags
from epcsim.hw.baremetal import tcs_image
from epcsim.hw.crypto import mrenclave, sign_sigstruct
from epcsim.kernel.encl import SGX_ENCL_CREATED, SGX_ENCL_INITIALIZED, SGX_ENCL_IOCTL
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_PROVISION,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    SGX_IOC_VEPC_REMOVE_ALL,
    SgxEnclaveCreate,
    SgxEnclaveInit,
    SgxEnclaveModifyTypes,
    SgxEnclaveProvision,
    SgxEnclaveRemovePages,
    SgxEnclaveRestrictPermissions,
    SgxProvisionFile,
)
from epcsim.kernel.mm import MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE

EINVAL, EBUSY, EIO, EPERM, EACCES, ENOTTY, ENODEV = (
    errno.EINVAL, errno.EBUSY, errno.EIO, errno.EPERM, errno.EACCES, errno.ENOTTY, errno.ENODEV)
RWX = PROT_READ | PROT_WRITE | PROT_EXEC
SHARED = MAP_SHARED | MAP_FIXED
DATA = 2 * PAGE_SIZE          # small_enclave: TCS 0, code 1, data 2-3, nothing at 4-7
HOLE = 4 * PAGE_SIZE


def failing(k: Kernel, call: Callable[[], int], want: int) -> None:
    """``call`` returns ``-want``, allocates nothing and leaves the manager consistent."""
    before = k.mgr.census()
    rc = call()
    assert rc == -want, f"expected -{errno.errorcode[want]}, got {rc}"
    assert_clean(k)
    assert k.mgr.census() == before


def ioctl(b: Built, cmd: int, arg: object) -> Callable[[], int]:
    return lambda: b.file.ioctl(cmd, arg)


def close_all_free(k: Kernel, *built: Built) -> None:
    for b in built:
        assert b.file.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- ADD_PAGES

@pytest.mark.parametrize("offset,length", [
    (100, PAGE_SIZE),                     # offset not page aligned
    (PAGE_SIZE + 8, PAGE_SIZE),
    (0, 0),                               # length 0
    (0, 100),                             # length not page aligned
    (0, PAGE_SIZE + 1),
    (7 * PAGE_SIZE, 2 * PAGE_SIZE),       # offset + length - 4096 == size
    (8 * PAGE_SIZE, PAGE_SIZE),           # first page beyond ELRANGE
    (0, 9 * PAGE_SIZE),
    (-PAGE_SIZE, PAGE_SIZE),
], ids=["off100", "off4104", "len0", "len100", "len4097", "end+1", "at-size", "too-long",
        "negative"])
def test_add_pages_bad_range(k: Kernel, offset: int, length: int) -> None:
    b = create(k, 8)
    arg = add_arg(0, 9)
    arg.offset, arg.length = offset, length
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, arg), EINVAL)
    assert arg.count == 0
    assert k.sgx.counters(b.e)["resident"] == 0
    # The last page of ELRANGE is in range: the bound is offset + length - 4096 < size.
    assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(7 * PAGE_SIZE)) == 0
    assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0, 7)) == 0
    assert k.sgx.counters(b.e)["resident"] == 8
    close_all_free(k, b)


def test_add_pages_misaligned_source(k: Kernel) -> None:
    b = create(k, 8)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0, src_addr=0x1008)), EINVAL)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0, src_addr=0x1000)) == 0
    close_all_free(k, b)


def test_add_pages_before_create_and_after_init(k: Kernel) -> None:
    f = k.open_enclave()
    bare = Built(k, f, 8 * PAGE_SIZE)
    failing(k, ioctl(bare, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0)), EINVAL)
    b = small_enclave(k)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(HOLE)), EINVAL)
    assert not k.sgx.ds.ep_flags[k.sgx.ep_of(b.e, BASE + HOLE)]
    close_all_free(k, bare, b)


def test_add_pages_twice_at_one_offset(k: Kernel) -> None:
    b = create(k, 8)
    b.add(2 * PAGE_SIZE)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(2 * PAGE_SIZE)), EBUSY)
    # A range that runs into an existing page stops there: count says how far it got.
    arg = add_arg(0, 3)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg) == -EBUSY
    assert arg.count == 2 * PAGE_SIZE
    assert k.sgx.counters(b.e)["resident"] == 3
    assert int(k.sgx.ds.e_child[b.e]) == 3
    assert_clean(k)
    close_all_free(k, b)


@pytest.mark.parametrize("flags,reserved", [
    (secinfo_flags(PageType.VA), bytes(56)),
    (secinfo_flags(PageType.SECS, PROT_READ), bytes(56)),
    (secinfo_flags(PageType.TRIM), bytes(56)),
    (secinfo_flags(PageType.REG, PROT_WRITE), bytes(56)),             # W without R
    (secinfo_flags(PageType.REG, PROT_WRITE | PROT_EXEC), bytes(56)),
    (secinfo_flags(PageType.TCS, PROT_READ), bytes(56)),              # TCS with permissions
    (secinfo_flags(PageType.TCS, PROT_READ | PROT_WRITE), bytes(56)),
    (SECINFO_RW | 0x08, bytes(56)),                                   # PENDING: reserved here
    (SECINFO_RW | 0x40, bytes(56)),
    (SECINFO_RW | 1 << 16, bytes(56)),
    (SECINFO_RW | 1 << 63, bytes(56)),
    (SECINFO_RW, b"\x01" + bytes(55)),                                # reserved bytes
    (SECINFO_RW, bytes(55) + b"\x80"),
], ids=["va", "secs", "trim", "w-only", "wx", "tcs-r", "tcs-rw", "pending", "bit6", "bit16",
        "bit63", "res0", "res55"])
def test_add_pages_bad_secinfo(k: Kernel, flags: int, reserved: bytes) -> None:
    b = create(k, 8)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0, secinfo=flags, reserved=reserved)),
            EINVAL)
    assert k.sgx.counters(b.e)["resident"] == 0
    goods = (SECINFO_RW, SECINFO_RX, secinfo_flags(PageType.REG, PROT_READ),
             secinfo_flags(PageType.REG, RWX), SECINFO_TCS)
    for i, good in enumerate(goods):
        data = tcs_image(ossa=PAGE_SIZE, nssa=1) if good == SECINFO_TCS else None
        arg = add_arg(i * PAGE_SIZE, secinfo=good, data=data)
        assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg) == 0, hex(good)
    assert k.sgx.counters(b.e)["resident"] == len(goods)
    close_all_free(k, b)


def test_add_pages_hardware_refusal_is_eio(k: Kernel) -> None:
    """A TCS the processor refuses (NSSA >= 8 here) makes EADD fault: -EIO, nothing kept."""
    b = create(k, 8)
    bad_tcs = tcs_image(ossa=PAGE_SIZE, nssa=9, oentry=0)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0, secinfo=SECINFO_TCS, data=bad_tcs)),
            EIO)
    assert int(k.sgx.ds.e_page_cnt[b.e]) == 1        # the grow was undone
    assert not k.sgx.ds.ep_flags[k.sgx.ep_of(b.e, BASE)]
    close_all_free(k, b)


# ---------------------------------------------------------------------------- CREATE

def test_create_twice(k: Kernel) -> None:
    b = create(k, 8)
    other = SgxEnclaveCreate(secs_bytes(16 * PAGE_SIZE, BASE + (1 << 30)))
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_CREATE, other), EINVAL)
    assert b.file.base == BASE and b.file.size == 8 * PAGE_SIZE
    close_all_free(k, b)


@pytest.mark.parametrize("size,base", [
    (3 * PAGE_SIZE, BASE),                    # not a power of two
    (12 * PAGE_SIZE, BASE),
    (8 * PAGE_SIZE, BASE + PAGE_SIZE),        # base not naturally aligned
    (8 * PAGE_SIZE, BASE + 4 * PAGE_SIZE),
    (PAGE_SIZE, BASE),                        # smaller than two pages
], ids=["3pages", "12pages", "base+1page", "base+half", "1page"])
def test_create_refused_by_hardware(size: int, base: int) -> None:
    k = machine(64)
    f = k.open_enclave()
    b = Built(k, f, size, base)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs_bytes(size, base))), EIO)
    assert_all_free(k)
    ds = k.sgx.ds
    assert not int(ds.e_flags[f.e]) & SGX_ENCL_CREATED
    assert int(ds.e_page_cnt[f.e]) == 0 and int(ds.e_nva[f.e]) == 0
    # Nothing was set up, so the same file may still create a good enclave.
    assert f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs_bytes(8 * PAGE_SIZE))) == 0
    assert int(ds.e_page_cnt[f.e]) == 1 and int(ds.e_nva[f.e]) == 1
    assert k.mgr.census()["untracked"] == 2          # the SECS and the first VA page
    close_all_free(k, b)


def test_create_refused_then_closed() -> None:
    k = machine(64)
    f = k.open_enclave()
    assert f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs_bytes(3 * PAGE_SIZE))) == -EIO
    assert f.close() == 0
    assert_all_free(k)


# ---------------------------------------------------------------------------- INIT

def test_init_before_create_and_twice(k: Kernel) -> None:
    f = k.open_enclave()
    bare = Built(k, f, 8 * PAGE_SIZE)
    b = small_enclave(k, init=False)
    sig = b.sigstruct()
    failing(k, ioctl(bare, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)), EINVAL)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)) == 0
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)), EINVAL)
    assert int(k.sgx.ds.e_flags[b.e]) & SGX_ENCL_INITIALIZED
    close_all_free(k, bare, b)


def test_init_wrong_measurement_then_right(k: Kernel) -> None:
    b = small_enclave(k, init=False)
    other = list(b.records)
    other[-1] = (other[-1][0], other[-1][1], b"\x01" * PAGE_SIZE)
    wrong = sign_sigstruct(mrenclave(1, b.size, other), attributes=b.attributes, xfrm=3)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(wrong)), EPERM)
    assert k.sgx.einit_result[b.e] == SgxReturn.SGX_INVALID_MEASUREMENT
    assert not int(k.sgx.ds.e_flags[b.e]) & SGX_ENCL_INITIALIZED
    assert b.init() == 0                      # a failed EINIT leaves the enclave usable
    close_all_free(k, b)


@pytest.mark.parametrize("offset", [516, 516 + 200, 516 + 383], ids=["sig0", "sig200", "sig383"])
def test_init_flipped_signature_byte(k: Kernel, offset: int) -> None:
    b = small_enclave(k, init=False)
    sig = bytearray(b.sigstruct())
    sig[offset] ^= 0x01
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(bytes(sig))), EPERM)
    assert k.sgx.einit_result[b.e] == SgxReturn.SGX_INVALID_SIGNATURE
    assert b.init() == 0
    close_all_free(k, b)


def test_init_vendor(k: Kernel) -> None:
    b = small_enclave(k, init=False)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(b.sigstruct(vendor=0x1234))), EINVAL)
    assert b.e not in k.sgx.einit_result              # refused before EINIT ran
    assert b.file.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(b.sigstruct(vendor=0x8086))) == 0
    close_all_free(k, b)


def test_init_reserved_sigstruct_attributes(k: Kernel) -> None:
    """reserved ATTRIBUTES, MISCSELECT or XFRM bits under their mask: -EINVAL."""
    b = small_enclave(k, init=False)
    bad = [b.sigstruct(attributes=b.attributes | 1 << 3),
           b.sigstruct(attributes=b.attributes | 1 << 40),
           b.sigstruct(miscselect=1 << 5),
           sign_xfrm(b, 3 | 1 << 9)]
    for sig in bad:
        failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig)), EINVAL)
    assert b.e not in k.sgx.einit_result
    # Reserved bits outside the signer's mask are not looked at.
    ok = b.sigstruct(attributes=b.attributes | 1 << 40,
                     attributemask=0xFFFFFFFFFFFFFFFF & ~(1 << 40))
    assert b.file.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(ok)) == 0
    close_all_free(k, b)


def sign_xfrm(b: Built, xfrm: int) -> bytes:
    return sign_sigstruct(mrenclave(1, b.size, b.records), attributes=b.attributes, xfrm=xfrm)


def test_provisionkey_needs_provision_ioctl(k: Kernel) -> None:
    attrs = int(Attribute.MODE64BIT | Attribute.PROVISIONKEY)
    b = small_enclave(k, attributes=attrs, init=False)
    sig = SgxEnclaveInit(b.sigstruct())
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, sig), EACCES)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_PROVISION, SgxEnclaveProvision(fd=object())), EINVAL)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_PROVISION, SgxEnclaveProvision(fd=b.file)), EINVAL)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_INIT, sig), EACCES)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_PROVISION, SgxEnclaveProvision(SgxProvisionFile())) == 0
    assert b.file.ioctl(SGX_IOC_ENCLAVE_INIT, sig) == 0
    # The permission is per enclave: another PROVISIONKEY enclave is still refused.
    b2 = small_enclave(k, attributes=attrs, init=False)
    failing(k, ioctl(b2, SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(b2.sigstruct())), EACCES)
    close_all_free(k, b, b2)


# ---------------------------------------------------------------------------- dispatch

@pytest.mark.parametrize("cmd", [0, 0xDEAD, SGX_IOC_VEPC_REMOVE_ALL, 0xC030A408, 0x4008A500,
                                 SGX_IOC_ENCLAVE_ADD_PAGES & ~0xFF | 0x41],
                         ids=["0", "dead", "vepc-remove-all", "nr8", "magic-a5", "nr41"])
def test_unknown_ioctl_is_enotty(k: Kernel, cmd: int) -> None:
    bare = Built(k, k.open_enclave(), 8 * PAGE_SIZE)
    failing(k, ioctl(bare, cmd, None), ENOTTY)
    b = small_enclave(k)
    failing(k, ioctl(b, cmd, object()), ENOTTY)
    close_all_free(k, bare, b)


def test_concurrent_ioctl_is_ebusy(k: Kernel) -> None:
    """another ioctl in progress on the enclave: -EBUSY, and the flag is left alone."""
    b = create(k, 8)
    ds = k.sgx.ds
    ds.e_flags[b.e] |= SGX_ENCL_IOCTL
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0)), EBUSY)
    assert int(ds.e_flags[b.e]) & SGX_ENCL_IOCTL
    ds.e_flags[b.e] &= ~SGX_ENCL_IOCTL
    assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(0)) == 0
    assert not int(ds.e_flags[b.e]) & SGX_ENCL_IOCTL
    close_all_free(k, b)


# ---------------------------------------------------------------------------- SGX2

def _sgx2_args() -> list[tuple[int, object]]:
    return [
        (SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
         SgxEnclaveRestrictPermissions(DATA, PAGE_SIZE, PROT_READ)),
        (SGX_IOC_ENCLAVE_MODIFY_TYPES, SgxEnclaveModifyTypes(DATA, PAGE_SIZE, PageType.TRIM)),
        (SGX_IOC_ENCLAVE_REMOVE_PAGES, SgxEnclaveRemovePages(DATA, PAGE_SIZE)),
    ]


def test_sgx2_ioctls_before_init(k: Kernel) -> None:
    b = small_enclave(k, init=False)
    bare = Built(k, k.open_enclave(), 8 * PAGE_SIZE)
    for cmd, arg in _sgx2_args():
        failing(k, ioctl(b, cmd, arg), EINVAL)
        failing(k, ioctl(bare, cmd, arg), EINVAL)
        assert arg.count == 0  # type: ignore[attr-defined]
    assert b.init() == 0
    # The same arguments pass the readiness check once the enclave is initialised.
    rp, mt, rm = (arg for _, arg in _sgx2_args())
    assert b.file.ioctl(SGX_IOC_ENCLAVE_REMOVE_PAGES, rm) == -EPERM     # a REG page, not TRIM
    assert b.file.ioctl(SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, rp) == 0
    assert rp.count == PAGE_SIZE and rp.result == 0
    assert b.file.ioctl(SGX_IOC_ENCLAVE_MODIFY_TYPES, mt) == 0
    assert mt.count == PAGE_SIZE
    close_all_free(k, b, bare)


@pytest.mark.parametrize("which", ["rp-result", "rp-count", "mt-result", "mt-count", "rm-count"])
def test_sgx2_nonzero_outputs_on_input(k: Kernel, which: str) -> None:
    b = small_enclave(k)
    cmd, arg = {
        "rp-result": (SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
                      SgxEnclaveRestrictPermissions(DATA, PAGE_SIZE, PROT_READ, result=1)),
        "rp-count": (SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
                     SgxEnclaveRestrictPermissions(DATA, PAGE_SIZE, PROT_READ, count=PAGE_SIZE)),
        "mt-result": (SGX_IOC_ENCLAVE_MODIFY_TYPES,
                      SgxEnclaveModifyTypes(DATA, PAGE_SIZE, PageType.TRIM, result=1)),
        "mt-count": (SGX_IOC_ENCLAVE_MODIFY_TYPES,
                     SgxEnclaveModifyTypes(DATA, PAGE_SIZE, PageType.TRIM, count=1)),
        "rm-count": (SGX_IOC_ENCLAVE_REMOVE_PAGES, SgxEnclaveRemovePages(DATA, PAGE_SIZE, 1)),
    }[which]
    failing(k, ioctl(b, cmd, arg), EINVAL)
    epcm = k.cpu.epcm(k.cpu.page_addr(int(k.sgx.ds.ep_epc[k.sgx.ep_of(b.e, BASE + DATA)])))
    assert epcm["r"] and epcm["w"] and epcm["pt"] == PageType.REG and not epcm["modified"]
    close_all_free(k, b)


@pytest.mark.parametrize("perms", [PROT_WRITE, PROT_WRITE | PROT_EXEC, 0x8, 0x10 | PROT_READ,
                                   1 << 63 | PROT_READ],
                         ids=["w", "wx", "bit3", "bit4", "bit63"])
def test_restrict_permissions_bad_permissions(k: Kernel, perms: int) -> None:
    b = small_enclave(k)
    arg = SgxEnclaveRestrictPermissions(DATA, PAGE_SIZE, perms)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, arg), EINVAL)
    assert arg.count == 0 and arg.result == 0
    epc = int(k.sgx.ds.ep_epc[k.sgx.ep_of(b.e, BASE + DATA)])
    epcm = k.cpu.epcm(k.cpu.page_addr(epc))
    assert epcm["r"] and epcm["w"] and not epcm["pr"]
    good = SgxEnclaveRestrictPermissions(DATA, PAGE_SIZE, PROT_READ)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, good) == 0
    assert k.cpu.epcm(k.cpu.page_addr(epc))["pr"]
    close_all_free(k, b)


@pytest.mark.parametrize("offset,page_type", [
    (DATA, PageType.REG), (DATA, PageType.VA), (DATA, PageType.SECS),
    (DATA, 0x100 | PageType.TRIM), (0, PageType.TCS), (PAGE_SIZE, PageType.REG),
], ids=["reg", "va", "secs", "trim+0x100", "tcs-to-tcs", "code-to-reg"])
def test_modify_types_bad_type(k: Kernel, offset: int, page_type: int) -> None:
    b = small_enclave(k)
    arg = SgxEnclaveModifyTypes(offset, PAGE_SIZE, page_type)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_MODIFY_TYPES, arg), EINVAL)
    assert arg.count == 0 and arg.result == 0
    ep = k.sgx.ep_of(b.e, BASE + offset)
    before_type = int(k.sgx.ds.ep_type[ep])
    assert k.cpu.epcm(k.cpu.page_addr(int(k.sgx.ds.ep_epc[ep])))["pt"] == before_type
    # TCS -> TRIM is a permitted transition: the page is otherwise fine.
    ok = SgxEnclaveModifyTypes(offset, PAGE_SIZE, PageType.TRIM)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_MODIFY_TYPES, ok) == 0
    assert int(k.sgx.ds.ep_type[ep]) == PageType.TRIM
    close_all_free(k, b)


def test_sgx2_ioctls_without_sgx2_are_enodev() -> None:
    k = machine(64, sgx2=False)
    b = small_enclave(k, init=False)
    for cmd, arg in _sgx2_args():
        failing(k, ioctl(b, cmd, arg), ENODEV)
    assert b.init() == 0
    for cmd, arg in _sgx2_args():
        failing(k, ioctl(b, cmd, arg), ENODEV)
    # ENODEV comes first: even arguments that are wrong in every other way.
    junk = SgxEnclaveRestrictPermissions(3, 0, 0xFF, result=1, count=1)
    failing(k, ioctl(b, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, junk), ENODEV)
    close_all_free(k, b)


# ---------------------------------------------------------------------------- mmap / mprotect

def test_mmap_private_is_einval(k: Kernel) -> None:
    b = small_enclave(k)
    mm = k.new_mm()
    failing(k, lambda: b.file.mmap(mm, BASE + DATA, PAGE_SIZE, PROT_READ,
                                   MAP_PRIVATE | MAP_FIXED), EINVAL)
    failing(k, lambda: b.file.mmap(mm, BASE + DATA, PAGE_SIZE, PROT_READ,
                                   MAP_PRIVATE | MAP_SHARED | MAP_FIXED), EINVAL)
    assert mm.vmas == []
    assert b.file.mmap(mm, BASE + DATA, PAGE_SIZE, PROT_READ, SHARED) == 0
    close_all_free(k, b)


@pytest.mark.parametrize("offset,npages,prot", [
    (DATA, 1, PROT_READ | PROT_EXEC),         # data is RW
    (DATA, 2, RWX),
    (PAGE_SIZE, 1, PROT_READ | PROT_WRITE),   # code is RX
    (0, 1, PROT_READ | PROT_EXEC),            # a TCS may be mapped RW, never X
    (3 * PAGE_SIZE, 2, RWX),                  # a hole next to a page does not help
    (0, 8, PROT_READ | PROT_WRITE),
], ids=["data-x", "data-rwx", "code-w", "tcs-x", "page+hole", "whole-rw"])
def test_mmap_beyond_max_protections(k: Kernel, offset: int, npages: int, prot: int) -> None:
    b = small_enclave(k)
    mm = k.new_mm()
    failing(k, lambda: b.file.mmap(mm, BASE + offset, npages * PAGE_SIZE, prot, SHARED), EACCES)
    assert mm.vmas == []
    close_all_free(k, b)


def test_mmap_within_max_protections_and_holes(k: Kernel) -> None:
    b = small_enclave(k)
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE, PAGE_SIZE, PROT_READ | PROT_WRITE, SHARED) == 0
    assert b.file.mmap(mm, BASE + PAGE_SIZE, PAGE_SIZE, PROT_READ | PROT_EXEC, SHARED) == 0
    assert b.file.mmap(mm, BASE + DATA, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, SHARED) == 0
    # No pages yet at 4..7: any protection (this is what lets SGX2 pages be added later).
    assert b.file.mmap(mm, BASE + HOLE, 4 * PAGE_SIZE, RWX, SHARED) == 0
    assert len(mm.vmas) == 4
    close_all_free(k, b)


@pytest.mark.parametrize("offset,prot", [
    (DATA, RWX), (DATA, PROT_READ | PROT_EXEC), (PAGE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC),
    (0, PROT_EXEC)], ids=["data-rwx", "data-rx", "code-rwx", "tcs-x"])
def test_mprotect_beyond_max_protections(k: Kernel, offset: int, prot: int) -> None:
    b = small_enclave(k)
    mm = k.new_mm()
    assert b.file.mmap(mm, BASE, 4 * PAGE_SIZE, PROT_READ, SHARED) == 0
    failing(k, lambda: mm.mprotect(BASE + offset, PAGE_SIZE, prot), EACCES)
    assert [(v.start, v.end, v.prot) for v in mm.vmas] == [(BASE, BASE + 4 * PAGE_SIZE,
                                                            PROT_READ)]
    # Within the page's maximum it is allowed, and holes take anything.
    allowed = {DATA: PROT_READ | PROT_WRITE, PAGE_SIZE: PROT_READ | PROT_EXEC,
               0: PROT_READ | PROT_WRITE}[offset]
    assert mm.mprotect(BASE + offset, PAGE_SIZE, allowed) == 0
    assert b.file.mmap(mm, BASE + HOLE, PAGE_SIZE, PROT_READ, SHARED) == 0
    assert mm.mprotect(BASE + HOLE, PAGE_SIZE, RWX) == 0
    close_all_free(k, b)


@pytest.mark.parametrize("start,npages", [
    (BASE - PAGE_SIZE, 1), (BASE - PAGE_SIZE, 2), (BASE + 7 * PAGE_SIZE, 2),
    (BASE + 8 * PAGE_SIZE, 1), (BASE - (1 << 20), 8)],
    ids=["below", "straddle-base", "straddle-end", "above", "far-below"])
def test_mmap_outside_elrange_after_init(k: Kernel, start: int, npages: int) -> None:
    """once initialised, a mapping must stay inside ELRANGE.

    Upstream (v6.0, "x86/sgx: Tighten accessible memory range after enclave initialization")
    returns -EACCES, on every part, not only SGX2 ones.
    """
    b = small_enclave(k, init=False)
    mm = k.new_mm()
    # Before EINIT there is no range check (holes inside ELRANGE impose nothing either).
    assert b.file.mmap(mm, start, npages * PAGE_SIZE, PROT_READ, SHARED) == 0
    mm.munmap(start, npages * PAGE_SIZE)
    assert b.init() == 0
    before = k.mgr.census()
    rc = b.file.mmap(mm, start, npages * PAGE_SIZE, PROT_READ, SHARED)
    assert rc == -EACCES, rc
    assert mm.vmas == []
    assert_clean(k)
    assert k.mgr.census() == before
    assert b.file.mmap(mm, BASE + HOLE, 4 * PAGE_SIZE, PROT_READ, SHARED) == 0
    close_all_free(k, b)


def test_closed_file(k: Kernel) -> None:
    b = small_enclave(k)
    mm = k.new_mm()
    assert b.file.close() == 0
    assert_all_free(k)
    assert b.file.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, add_arg(HOLE)) == -errno.EBADF
    assert b.file.mmap(mm, BASE + DATA, PAGE_SIZE, PROT_READ, SHARED) < 0
    assert b.file.close() == 0
    assert_all_free(k)
