"""ECREATE, EADD, EEXTEND, EINIT, EREMOVE, EDBGRD/EDBGWR and MRENCLAVE (Intel SDM vol. 3D).

Each test is named after the outcome it checks: ``<leaf>_success``, ``<leaf>_gp_*`` /
``<leaf>_pf_*`` for faults, ``<leaf>_sgx_*`` for the architectural error codes. Failing calls
run inside ``unchanged(env)``: a fault or an error code leaves no state behind.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from hwenv import (
    BASE,
    DATA0,
    DATA1,
    FLAGS_REG_RW,
    OFF_CODE,
    OFF_DATA0,
    OFF_DATA1,
    OFF_FREE,
    OFF_SECINFO,
    OFF_SSA,
    OFF_TCS,
    RW,
    SIZE,
    Env,
    assert_same,
    snapshot,
    unchanged,
)

from epcsim.arch import (
    PAGE_SIZE,
    Attribute,
    EinitToken,
    PageType,
    SecinfoFlags,
    Secs,
    SgxReturn,
    SigStruct,
    Tcs,
    secinfo_flags,
)
from epcsim.hw.baremetal import Segment, tcs_image
from epcsim.hw.cpu import GeneralProtectionFault, PageFault, SgxConflictExit
from epcsim.hw.crypto import sign_sigstruct
from epcsim.hw.encls import CTX_GUEST
from epcsim.hw.epc import SECS_LOCK_MEASURE

SECS_FLAGS = secinfo_flags(PageType.SECS)
M64 = int(Attribute.MODE64BIT)


def secs_image(**kw: int | bytes) -> Secs:
    fields = dict(size=SIZE, baseaddr=BASE, ssaframesize=1, attributes=M64, xfrm=3)
    fields.update(kw)
    return Secs(**fields)  # type: ignore[arg-type]


def ecreate_pi(env: Env, raw: bytes | None = None, *, flags: int = SECS_FLAGS,
               linaddr: int = 0, secs: int = 0, srcpge: int | None = None,
               secinfo: int | None = None) -> int:
    src = srcpge if srcpge is not None else env.bm.put(raw if raw is not None
                                                        else secs_image().pack())
    si = secinfo if secinfo is not None else env.secinfo(flags)
    return env.pageinfo(linaddr=linaddr, srcpge=src, metadata=si, secs=secs)


# =============================================================================== ECREATE

def test_ecreate_success(env):
    epc = env.free_epc()
    assert env.cpu.ecreate(ecreate_pi(env), epc) == SgxReturn.SGX_SUCCESS
    e = env.epcm(epc)
    assert e["valid"] and e["pt"] == PageType.SECS
    assert not (e["r"] or e["w"] or e["x"] or e["blocked"] or e["pending"] or e["modified"])
    info = env.cpu.secs_info(epc)
    assert (info["base"], info["size"], info["chldcnt"]) == (BASE, SIZE, 0)
    assert info["attributes"] & Attribute.INIT == 0
    assert info["enclavecontext"] == epc


def test_ecreate_eids_are_unique(env):
    a, b = env.free_epc(), env.free_epc()
    env.cpu.ecreate(ecreate_pi(env), a)
    env.cpu.ecreate(ecreate_pi(env, secs_image(baseaddr=2 * BASE).pack()), b)
    assert env.cpu.secs_info(a)["eid"] != env.cpu.secs_info(b)["eid"]


def test_ecreate_gp_misaligned_pageinfo(env):
    pi, epc = ecreate_pi(env), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi + 8, epc)


def test_ecreate_gp_misaligned_target(env):
    pi, epc = ecreate_pi(env), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc + 0x800)


def test_ecreate_pf_target_not_epc(env):
    pi = ecreate_pi(env)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.ecreate(pi, env.mem_addr())


def test_ecreate_gp_misaligned_srcpge(env):
    src = env.bm.put(bytes(64) + secs_image().pack(), 4096) + 64
    pi, epc = ecreate_pi(env, srcpge=src), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


def test_ecreate_gp_misaligned_secinfo(env):
    si = env.bm.put(bytes(128), 64) + 32
    pi, epc = ecreate_pi(env, secinfo=si), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


@pytest.mark.parametrize("field", ["linaddr", "secs"])
def test_ecreate_gp_pageinfo_field_nonzero(env, field):
    pi, epc = ecreate_pi(env, **{field: 0x1000}), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


@pytest.mark.parametrize("flags", [secinfo_flags(PageType.REG), secinfo_flags(PageType.VA),
                                   SECS_FLAGS | (1 << 6), SECS_FLAGS | (1 << 20)],
                         ids=["pt_reg", "pt_va", "reserved_bit6", "reserved_bit20"])
def test_ecreate_gp_secinfo_invalid(env, flags):
    pi, epc = ecreate_pi(env, flags=flags), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


def test_ecreate_gp_secinfo_reserved_bytes(env):
    si = env.secinfo(SECS_FLAGS, reserved=b"\x01" + bytes(55))
    pi, epc = ecreate_pi(env, secinfo=si), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


def test_ecreate_gp_target_locked(env):
    pi, epc = ecreate_pi(env), env.free_epc()
    env.cpu.inject_conflict(epc)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


def test_ecreate_pf_target_valid(env, encl):
    pi = ecreate_pi(env, secs_image(baseaddr=2 * BASE).pack())
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.ecreate(pi, encl.phys(OFF_DATA0))


def _reserved_secs() -> bytes:
    raw = bytearray(secs_image().pack())
    raw[30] = 1  # reserved@24
    return bytes(raw)


INVALID_SECS = {
    "xfrm_x87_only": secs_image(xfrm=1).pack(),
    "xfrm_unsupported": secs_image(xfrm=7).pack(),
    "miscselect_unsupported": secs_image(miscselect=2).pack(),
    "ssaframesize_zero": secs_image(ssaframesize=0).pack(),
    "size_not_power_of_two": secs_image(size=3 * 8192).pack(),
    "size_below_8k": secs_image(size=4096, baseaddr=BASE).pack(),
    "base_not_size_aligned": secs_image(baseaddr=BASE + 0x10000).pack(),
    "attribute_reserved_bit3": secs_image(attributes=M64 | 0x8).pack(),
    "attribute_init_set": secs_image(attributes=M64 | int(Attribute.INIT)).pack(),
    "attribute_reserved_bit63": secs_image(attributes=M64 | (1 << 63)).pack(),
    "base_not_canonical": secs_image(baseaddr=1 << 47, size=8192).pack(),
    "size_beyond_max_enclave": secs_image(baseaddr=1 << 36, size=1 << 36).pack(),
    "mode32_base_above_4g": secs_image(attributes=0).pack(),
    "configid_without_kss": secs_image(configid=b"\x01" + bytes(63)).pack(),
    "configsvn_without_kss": secs_image(configsvn=1).pack(),
    "reserved_bytes": _reserved_secs(),
}


@pytest.mark.parametrize("name", sorted(INVALID_SECS))
def test_ecreate_gp_invalid_secs(env, name):
    pi, epc = ecreate_pi(env, INVALID_SECS[name]), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi, epc)


VALID_SECS = {
    "mode32_low_base": secs_image(attributes=0, baseaddr=0x4000_0000).pack(),
    "largest_enclave": secs_image(baseaddr=1 << 35, size=1 << 35).pack(),
    "exinfo_miscselect": secs_image(miscselect=1).pack(),
    "kss_configid": secs_image(attributes=M64 | int(Attribute.KSS),
                               configid=b"\x01" + bytes(63), configsvn=2).pack(),
    "debug": secs_image(attributes=M64 | int(Attribute.DEBUG)).pack(),
}


@pytest.mark.parametrize("name", sorted(VALID_SECS))
def test_ecreate_success_boundary_secs(env, name):
    """The positive side of the validation boundaries exercised above."""
    epc = env.free_epc()
    assert env.cpu.ecreate(ecreate_pi(env, VALID_SECS[name]), epc) == 0
    assert env.epcm(epc)["pt"] == PageType.SECS


@pytest.mark.xfail(strict=True, raises=OverflowError,
                   reason="BASEADDR >= 2**63 (canonical upper half) does not fit the compiled "
                          "leaves' signed 64-bit linear addresses")
def test_ecreate_success_canonical_upper_half_base(env):
    epc = env.free_epc()
    pi = ecreate_pi(env, secs_image(baseaddr=0xFFFF_8000_0000_0000).pack())
    assert env.cpu.ecreate(pi, epc) == 0


def test_ecreate_gp_alignment_checked_before_epc(env):
    """PAGEINFO alignment (#GP) is checked before the target is looked up (#PF)."""
    pi = ecreate_pi(env)
    with pytest.raises(GeneralProtectionFault):
        env.cpu.ecreate(pi + 1, env.mem_addr())


# =============================================================================== EADD

def eadd_pi(env: Env, encl, *, off: int = OFF_FREE, flags: int = FLAGS_REG_RW,
            data: bytes = b"", linaddr: int | None = None, secs: int | None = None,
            srcpge: int | None = None, secinfo: int | None = None) -> int:
    src = srcpge if srcpge is not None else env.bm.put(data.ljust(PAGE_SIZE, b"\0"))
    si = secinfo if secinfo is not None else env.secinfo(flags)
    return env.pageinfo(linaddr=encl.lin(off) if linaddr is None else linaddr, srcpge=src,
                        metadata=si, secs=encl.secs if secs is None else secs)


@pytest.fixture
def open_encl(env):
    """An enclave that has not been through EINIT yet."""
    return env.enclave(init=False)


def test_eadd_success(env, open_encl):
    before = env.info(open_encl)["chldcnt"]
    epc = env.free_epc()
    flags = secinfo_flags(PageType.REG, SecinfoFlags.R | SecinfoFlags.X)
    assert env.cpu.eadd(eadd_pi(env, open_encl, flags=flags), epc) == 0
    e = env.epcm(epc)
    assert e["valid"] and e["pt"] == PageType.REG
    assert (e["r"], e["w"], e["x"]) == (True, False, True)
    assert not (e["blocked"] or e["pending"] or e["modified"] or e["pr"])
    assert e["enclaveaddress"] == open_encl.lin(OFF_FREE)
    assert e["enclavesecs"] == open_encl.secs
    assert env.info(open_encl)["chldcnt"] == before + 1


def test_eadd_tcs_rwx_cleared(cenv):
    encl = cenv.enclave(init=False)
    epc = cenv.free_epc()
    tcs = Tcs(flags=1, ossa=OFF_SSA, cssa=3, nssa=2, aep=0x1234, state=5).pack()
    flags = secinfo_flags(PageType.TCS, SecinfoFlags.R | SecinfoFlags.W | SecinfoFlags.X)
    assert cenv.cpu.eadd(eadd_pi(cenv, encl, flags=flags, data=tcs), epc) == 0
    e = cenv.epcm(epc)
    assert e["pt"] == PageType.TCS and not (e["r"] or e["w"] or e["x"])
    # EADD clears DBGOPTIN, CSSA, AEP and STATE of the copied TCS (Intel SDM vol. 3D).
    page = cenv.cpu.page_index(epc)
    t = Tcs.unpack(cenv.cpu.st.data[page].tobytes())
    assert (t.flags & 1, t.cssa, t.aep, t.state) == (0, 0, 0, 0)
    assert (t.ossa, t.nssa) == (OFF_SSA, 2)


def test_eadd_gp_misaligned_pageinfo(env, open_encl):
    pi, epc = eadd_pi(env, open_encl), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi + 16, epc)


def test_eadd_gp_misaligned_target(env, open_encl):
    pi, epc = eadd_pi(env, open_encl), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc + 8)


def test_eadd_pf_target_not_epc(env, open_encl):
    pi = eadd_pi(env, open_encl)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eadd(pi, env.mem_addr())


def test_eadd_gp_misaligned_srcpge(env, open_encl):
    src = env.bm.put(bytes(2 * PAGE_SIZE)) + 512
    pi, epc = eadd_pi(env, open_encl, srcpge=src), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_misaligned_linaddr(env, open_encl):
    pi, epc = eadd_pi(env, open_encl, linaddr=open_encl.lin(OFF_FREE) + 0x10), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_misaligned_secs(env, open_encl):
    pi, epc = eadd_pi(env, open_encl, secs=open_encl.secs + 0x40), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_misaligned_secinfo(env, open_encl):
    si = env.bm.put(bytes(128), 64) + 8
    pi, epc = eadd_pi(env, open_encl, secinfo=si), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_misaligned_secinfo_before_secs_pf(env, open_encl):
    """All operand alignments (#GP) precede the "SECS in EPC" check (#PF), Intel SDM vol. 3D."""
    si = env.bm.put(bytes(128), 64) + 8
    pi, epc = eadd_pi(env, open_encl, secinfo=si, secs=env.mem_addr()), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_pf_secs_not_epc(env, open_encl):
    pi, epc = eadd_pi(env, open_encl, secs=env.mem_addr()), env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eadd(pi, epc)


@pytest.mark.parametrize("pt", [PageType.SECS, PageType.VA, PageType.TRIM, 9])
def test_eadd_gp_secinfo_bad_page_type(env, open_encl, pt):
    pi, epc = eadd_pi(env, open_encl, flags=secinfo_flags(pt, RW)), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_secinfo_reserved(env, open_encl):
    pi, epc = eadd_pi(env, open_encl, flags=FLAGS_REG_RW | (1 << 7)), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)
    si = env.secinfo(FLAGS_REG_RW, reserved=bytes(55) + b"\x80")
    pi = eadd_pi(env, open_encl, secinfo=si)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_target_locked(env, open_encl):
    pi, epc = eadd_pi(env, open_encl), env.free_epc()
    env.cpu.inject_conflict(epc)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_pf_target_valid(env, open_encl):
    pi = eadd_pi(env, open_encl)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eadd(pi, open_encl.phys(OFF_DATA0))


def test_eadd_gp_secs_locked(env, open_encl):
    pi, epc = eadd_pi(env, open_encl), env.free_epc()
    env.cpu.inject_conflict(open_encl.secs)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


@pytest.mark.parametrize("which", ["reg_page", "free_page", "va_page"])
def test_eadd_pf_secs_not_a_secs(env, open_encl, which):
    secs = {"reg_page": lambda: open_encl.phys(OFF_DATA0), "free_page": env.free_epc,
            "va_page": env.va}[which]()
    pi, epc = eadd_pi(env, open_encl, secs=secs), env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_tcs_reserved_nonzero(env, open_encl):
    raw = bytearray(tcs_image(ossa=OFF_SSA))
    raw[100] = 1
    pi = eadd_pi(env, open_encl, flags=secinfo_flags(PageType.TCS), data=bytes(raw))
    epc = env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_w_without_r(env, open_encl):
    pi = eadd_pi(env, open_encl, flags=secinfo_flags(PageType.REG, SecinfoFlags.W))
    epc = env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


@pytest.mark.parametrize("linaddr", [BASE - PAGE_SIZE, BASE + SIZE, 0])
def test_eadd_gp_linaddr_outside_elrange(env, open_encl, linaddr):
    pi, epc = eadd_pi(env, open_encl, linaddr=linaddr), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_last_page_of_elrange(env, open_encl):
    epc = env.free_epc()
    assert env.cpu.eadd(eadd_pi(env, open_encl, linaddr=BASE + SIZE - PAGE_SIZE), epc) == 0


def test_eadd_gp_measurement_busy(env, open_encl):
    pi, epc = eadd_pi(env, open_encl), env.free_epc()
    env.cpu.inject_secs_lock(open_encl.secs, SECS_LOCK_MEASURE)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


def test_eadd_gp_after_einit(env, encl):
    pi, epc = eadd_pi(env, encl), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eadd(pi, epc)


# =============================================================================== EEXTEND

def test_eextend_success_changes_measurement(env, open_encl):
    chunk = open_encl.phys(OFF_DATA0) + 0x300
    m = env.cpu._measure[env.cpu.st.row[env.cpu.page_index(open_encl.secs)]]
    before = m.update_counter
    assert env.cpu.eextend(open_encl.secs, chunk) == 0
    assert m.update_counter == before + 5  # one header block and four data blocks


def test_eextend_gp_misaligned_secs(env, open_encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(open_encl.secs + 8, open_encl.phys(OFF_DATA0))


def test_eextend_pf_secs_not_epc(env, open_encl):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eextend(env.mem_addr(), open_encl.phys(OFF_DATA0))


def test_eextend_gp_misaligned_chunk(env, open_encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(open_encl.secs, open_encl.phys(OFF_DATA0) + 0x80)


def test_eextend_pf_chunk_not_epc(env, open_encl):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eextend(open_encl.secs, env.mem_addr())


def test_eextend_gp_chunk_locked(env, open_encl):
    env.cpu.inject_conflict(open_encl.phys(OFF_DATA0))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(open_encl.secs, open_encl.phys(OFF_DATA0) + 0x100)


@pytest.mark.parametrize("which", ["free_page", "secs_page", "va_page"])
def test_eextend_pf_chunk_not_reg_or_tcs(env, open_encl, which):
    page = {"free_page": env.free_epc, "secs_page": lambda: open_encl.secs,
            "va_page": env.va}[which]()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eextend(open_encl.secs, page + 0x100)


def test_eextend_tcs_chunk_success(env, open_encl):
    assert env.cpu.eextend(open_encl.secs, open_encl.phys(OFF_TCS)) == 0


def test_eextend_gp_wrong_secs(env, open_encl):
    other = env.enclave(base=2 * BASE, init=False)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(other.secs, open_encl.phys(OFF_DATA0))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(open_encl.phys(OFF_DATA1), open_encl.phys(OFF_DATA0))


def test_eextend_gp_measurement_busy(env, open_encl):
    env.cpu.inject_secs_lock(open_encl.secs, SECS_LOCK_MEASURE)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(open_encl.secs, open_encl.phys(OFF_DATA0))


def test_eextend_gp_after_einit(env, encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eextend(encl.secs, encl.phys(OFF_DATA0))


# =============================================================================== EINIT

def einit_args(env: Env, encl, sig: bytes | None = None, *, token: bytes | None = None,
               lehash: bytes | None = None) -> tuple[int, int, int]:
    """Place SIGSTRUCT and EINITTOKEN in memory and program the launch MSRs; EINIT's
    register operands."""
    sig = sig if sig is not None else sign_sigstruct(encl.built.mrenclave,
                                                     attributes=encl.attributes)
    env.cpu.lepubkeyhash = (lehash if lehash is not None
                            else hashlib.sha256(sig[128:512]).digest())
    sig_addr = env.bm.put(sig)
    tok = env.bm.put(token if token is not None else bytes(EinitToken.SIZE), 512)
    return sig_addr, encl.secs, tok


def einit(env: Env, encl, sig: bytes | None = None, **kw) -> int:
    return env.cpu.einit(*einit_args(env, encl, sig, **kw))


def test_einit_success(env, open_encl):
    sig = sign_sigstruct(open_encl.built.mrenclave)
    assert einit(env, open_encl, sig) == SgxReturn.SGX_SUCCESS
    info = env.info(open_encl)
    assert info["attributes"] & Attribute.INIT
    assert info["mrenclave"] == open_encl.built.mrenclave
    assert info["mrsigner"] == hashlib.sha256(sig[128:512]).digest()


def test_einit_gp_misaligned_sigstruct(env, open_encl):
    sig = env.bm.put(bytes(0x100) + sign_sigstruct(open_encl.built.mrenclave)) + 0x100
    tok = env.bm.put(bytes(304), 512)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.einit(sig, open_encl.secs, tok)


def test_einit_gp_misaligned_token(env, open_encl):
    sig = env.bm.put(sign_sigstruct(open_encl.built.mrenclave))
    tok = env.bm.put(bytes(1024), 512) + 256
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.einit(sig, open_encl.secs, tok)


def test_einit_pf_secs_not_epc(env, open_encl):
    sig = env.bm.put(sign_sigstruct(open_encl.built.mrenclave))
    tok = env.bm.put(bytes(304), 512)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.einit(sig, env.mem_addr(), tok)


# Regions of SIGSTRUCT whose corruption is a malformed structure, not a bad signature:
# HEADER, VENDOR, HEADER2, reserved@44, EXPONENT, reserved@908, reserved@992, reserved@1028.
SIG_STRUCT_REGIONS = [(0, 16), (16, 20), (24, 40), (44, 128), (512, 516), (908, 912),
                      (992, 1008), (1028, 1040)]


def expected_for_flip(offset: int) -> SgxReturn:
    if any(lo <= offset < hi for lo, hi in SIG_STRUCT_REGIONS):
        return SgxReturn.SGX_INVALID_SIG_STRUCT
    return SgxReturn.SGX_INVALID_SIGNATURE


def test_einit_one_flipped_byte_anywhere(env, open_encl):
    """Every single-byte corruption of a good SIGSTRUCT is refused, with the right code."""
    good = sign_sigstruct(open_encl.built.mrenclave)
    sig_addr, secs, tok = einit_args(env, open_encl, good)
    before = snapshot(env.cpu)
    wrong = {}
    for off in range(SigStruct.SIZE):
        bad = bytearray(good)
        bad[off] ^= 0x01
        env.cpu.mem.write(sig_addr, bytes(bad))
        rc = env.cpu.einit(sig_addr, secs, tok)
        if rc != expected_for_flip(off):
            wrong[off] = rc
    env.cpu.mem.write(sig_addr, good)
    assert not wrong, wrong
    assert_same(before, snapshot(env.cpu))
    assert env.cpu.einit(sig_addr, secs, tok) == 0


@pytest.mark.parametrize("offset", [0, 17, 30, 60, 513, 909, 1000, 1030])
def test_einit_sgx_invalid_sig_struct(env, open_encl, offset):
    bad = bytearray(sign_sigstruct(open_encl.built.mrenclave))
    bad[offset] ^= 0xFF
    args = einit_args(env, open_encl, bytes(bad))
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_SIG_STRUCT


@pytest.mark.parametrize("offset", [20, 40, 200, 600, 900, 930, 960, 1024, 1100, 1600])
def test_einit_sgx_invalid_signature(env, open_encl, offset):
    bad = bytearray(sign_sigstruct(open_encl.built.mrenclave))
    bad[offset] ^= 0x01
    args = einit_args(env, open_encl, bytes(bad))
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_SIGNATURE


def test_einit_vendor_8086_accepted(env, open_encl):
    sig = sign_sigstruct(open_encl.built.mrenclave, vendor=0x8086)
    assert einit(env, open_encl, sig) == 0


def test_einit_sgx_unmasked_event(env, open_encl):
    env.cpu.pending_unmasked_events = 1
    args = einit_args(env, open_encl)
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_UNMASKED_EVENT
    assert env.info(open_encl)["attributes"] & Attribute.INIT == 0
    assert einit(env, open_encl) == SgxReturn.SGX_SUCCESS  # software retries


def test_einit_malformed_sigstruct_reported_before_unmasked_event(env, open_encl):
    env.cpu.pending_unmasked_events = 1
    bad = bytearray(sign_sigstruct(open_encl.built.mrenclave))
    bad[0] ^= 1
    assert einit(env, open_encl, bytes(bad)) == SgxReturn.SGX_INVALID_SIG_STRUCT
    assert env.cpu.pending_unmasked_events == 1


def test_einit_unmasked_event_reported_before_bad_signature(env, open_encl):
    env.cpu.pending_unmasked_events = 1
    bad = bytearray(sign_sigstruct(open_encl.built.mrenclave))
    bad[960] ^= 1
    assert einit(env, open_encl, bytes(bad)) == SgxReturn.SGX_UNMASKED_EVENT


def test_einit_sgx_invalid_measurement(env, open_encl):
    wrong = bytes(x ^ 0x5A for x in open_encl.built.mrenclave)
    args = einit_args(env, open_encl, sign_sigstruct(wrong))
    with unchanged(env):
        assert env.cpu.einit(*args) == \
            SgxReturn.SGX_INVALID_MEASUREMENT


def test_einit_sgx_invalid_measurement_extra_page(env, open_encl):
    """EADD after the SIGSTRUCT was computed changes MRENCLAVE."""
    env.cpu.eadd(eadd_pi(env, open_encl), env.free_epc())
    assert einit(env, open_encl) == SgxReturn.SGX_INVALID_MEASUREMENT


@pytest.mark.parametrize("kw", [
    dict(attributes=M64 | int(Attribute.DEBUG)),
    dict(xfrm=7),
    dict(miscselect=1),
], ids=["attributes", "xfrm", "miscselect"])
def test_einit_sgx_invalid_attribute(env, open_encl, kw):
    sig = sign_sigstruct(open_encl.built.mrenclave, **kw)
    args = einit_args(env, open_encl, sig)
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_ATTRIBUTE


def test_einit_attribute_mask_ignores_unmasked_bits(env, open_encl):
    sig = sign_sigstruct(open_encl.built.mrenclave, attributes=M64 | int(Attribute.DEBUG),
                         attributemask=~int(Attribute.DEBUG) & (2**64 - 1))
    assert einit(env, open_encl, sig) == 0


def test_einit_sgx_invalid_attribute_einittokenkey(env):
    attrs = M64 | int(Attribute.EINITTOKENKEY)
    encl = env.enclave(attributes=attrs, init=False)
    sig = sign_sigstruct(encl.built.mrenclave, attributes=attrs)
    args = einit_args(env, encl, sig, lehash=bytes(32))
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_ATTRIBUTE
    assert einit(env, encl, sig) == 0  # signer matches IA32_SGXLEPUBKEYHASH


def test_einit_sgx_invalid_einittoken_signer_not_programmed(env, open_encl):
    args = einit_args(env, open_encl, lehash=b"\x11" * 32)
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_EINITTOKEN


def test_einit_sgx_invalid_einittoken_valid_token(env, open_encl):
    token = EinitToken(valid=1, attributes=M64, xfrm=3,
                       mrenclave=open_encl.built.mrenclave).pack()
    args = einit_args(env, open_encl, token=token)
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_EINITTOKEN


def test_einit_sgx_invalid_sig_struct_isvfamilyid_without_kss(env, open_encl):
    sig = sign_sigstruct(open_encl.built.mrenclave, isvfamilyid=b"\x01" * 16)
    args = einit_args(env, open_encl, sig)
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_SIG_STRUCT


def test_einit_sgx_invalid_sig_struct_isvfamilyid_before_init_check(env, encl):
    """Step 3 of Intel SDM vol. 3D: ISVFAMILYID is refused before an already-initialised SECS
    would #GP."""
    sig = sign_sigstruct(encl.built.mrenclave, isvfamilyid=b"\x01" * 16)
    args = einit_args(env, encl, sig)
    with unchanged(env):
        assert env.cpu.einit(*args) == SgxReturn.SGX_INVALID_SIG_STRUCT


def test_einit_isvfamilyid_with_kss(env):
    attrs = M64 | int(Attribute.KSS)
    encl = env.enclave(attributes=attrs, init=False)
    sig = sign_sigstruct(encl.built.mrenclave, attributes=attrs, isvfamilyid=b"\x01" * 16)
    assert einit(env, encl, sig) == 0


def test_einit_gp_already_initialized(env, encl):
    args = einit_args(env, encl, lehash=env.cpu.lepubkeyhash)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.einit(*args)


def test_einit_gp_secs_locked(env, open_encl):
    env.cpu.inject_conflict(open_encl.secs)
    args = einit_args(env, open_encl, lehash=env.cpu.lepubkeyhash)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.einit(*args)


def test_einit_gp_measurement_busy(env, open_encl):
    env.cpu.inject_secs_lock(open_encl.secs, SECS_LOCK_MEASURE)
    args = einit_args(env, open_encl, lehash=env.cpu.lepubkeyhash)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.einit(*args)


@pytest.mark.parametrize("which", ["reg_page", "free_page"])
def test_einit_pf_secs_not_a_secs(env, open_encl, which):
    page = open_encl.phys(OFF_DATA0) if which == "reg_page" else env.free_epc()
    sig = env.bm.put(sign_sigstruct(open_encl.built.mrenclave))
    tok = env.bm.put(bytes(304), 512)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.einit(sig, page, tok)


# =============================================================================== EREMOVE

def test_eremove_success(env, encl):
    before = env.info(encl)["chldcnt"]
    page = encl.phys(OFF_DATA0)
    assert env.cpu.eremove(page) == SgxReturn.SGX_SUCCESS
    assert not env.epcm(page)["valid"]
    assert env.info(encl)["chldcnt"] == before - 1


def test_eremove_free_page_is_a_noop(env):
    page = env.free_epc()
    with unchanged(env):
        assert env.cpu.eremove(page) == SgxReturn.SGX_SUCCESS


def test_eremove_blocked_page(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.cpu.eblock(page) == 0
    assert env.cpu.eremove(page) == 0
    assert not env.epcm(page)["valid"]


def test_eremove_va_page_with_versions(env, encl):
    va = env.va()
    env.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
    assert env.cpu.eremove(va) == 0
    assert not env.epcm(va)["valid"]


def test_eremove_sgx_child_present(env, encl):
    with unchanged(env):
        assert env.cpu.eremove(encl.secs) == SgxReturn.SGX_CHILD_PRESENT
    for phys in list(encl.built.pages.values())[:-1]:
        assert env.cpu.eremove(phys) == 0
    with unchanged(env):
        assert env.cpu.eremove(encl.secs) == SgxReturn.SGX_CHILD_PRESENT
    assert env.cpu.eremove(list(encl.built.pages.values())[-1]) == 0
    assert env.cpu.eremove(encl.secs) == SgxReturn.SGX_SUCCESS
    assert not env.epcm(encl.secs)["valid"]
    with pytest.raises(ValueError):
        env.cpu.secs_info(encl.secs)


def test_eremove_sgx_enclave_act(env, encl):
    env.enter(encl)
    with unchanged(env):
        assert env.cpu.eremove(encl.phys(OFF_DATA0)) == SgxReturn.SGX_ENCLAVE_ACT
        assert env.cpu.eremove(encl.phys(OFF_TCS)) == SgxReturn.SGX_ENCLAVE_ACT
    assert env.cpu.eexit(0) == 0
    assert env.cpu.eremove(encl.phys(OFF_DATA0)) == 0


def test_eremove_other_enclave_not_blocked_by_thread(env, encl):
    other = env.enclave(base=2 * BASE)
    env.enter(encl)
    assert env.cpu.eremove(other.phys(OFF_DATA0)) == 0


def test_eremove_guest_virtchildcnt_child_present(env, encl):
    assert env.cpu.eincvirtchild(encl.phys(OFF_DATA0), encl.secs) == 0
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    with unchanged(env):
        assert env.cpu.eremove(encl.secs, ctx=CTX_GUEST) == SgxReturn.SGX_CHILD_PRESENT
    # Outside a guest VIRTCHILDCNT is not consulted.
    assert env.cpu.eremove(encl.secs) == SgxReturn.SGX_SUCCESS


def test_eremove_gp_misaligned(env, encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eremove(encl.phys(OFF_DATA0) + 0x10)


def test_eremove_pf_not_epc(env):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eremove(env.mem_addr())


def test_eremove_gp_page_locked(env, encl):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eremove(encl.phys(OFF_DATA0))


def test_eremove_guest_conflict_exit(env, encl):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.eremove(encl.phys(OFF_DATA0), ctx=CTX_GUEST)
    assert exc.value.reason == 71
    assert exc.value.qualification.name == "EPC_PAGE_CONFLICT_EXCEPTION"


# =============================================================================== EDBGRD / EDBGWR

DEBUG = M64 | int(Attribute.DEBUG)


@pytest.fixture
def dbg(cenv):
    return cenv.enclave(attributes=DEBUG)


def test_edbgrd_success(cenv, dbg):
    rc, value = cenv.cpu.edbgrd(dbg.phys(OFF_DATA0) + 0x18)
    assert rc == 0
    assert value == int.from_bytes(DATA0[0x18:0x20], "little")
    assert cenv.cpu.encls(0x04, 0, dbg.phys(OFF_DATA0) + 0x18) == 0


def test_edbgwr_success(cenv, dbg):
    addr = dbg.phys(OFF_DATA1) + 0x40
    assert cenv.cpu.edbgwr(addr, 0x1122334455667788) == 0
    assert cenv.cpu.edbgrd(addr) == (0, 0x1122334455667788)
    cenv.enter(dbg)
    assert cenv.cpu.enclave_read(0, dbg.lin(OFF_DATA1) + 0x40, 8) == \
        (0x1122334455667788).to_bytes(8, "little")


def test_edbgrd_tcs_field(cenv, dbg):
    assert cenv.cpu.edbgrd(dbg.phys(OFF_TCS) + 16) == (0, OFF_SSA)  # TCS.OSSA


def test_edbgrd_va_slot_reports_occupancy_only(cenv, dbg):
    va = cenv.va()
    assert cenv.cpu.edbgrd(va + 8 * 5) == (0, 0)
    cenv.evict(dbg.phys(OFF_DATA0), va + 8 * 5, secs=dbg.secs)
    assert cenv.cpu.edbgrd(va + 8 * 5) == (0, 0xFFFFFFFFFFFFFFFF)
    assert cenv.cpu.edbgrd(va + 8 * 6) == (0, 0)


def test_edbgrd_gp_misaligned(cenv, dbg):
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgrd(dbg.phys(OFF_DATA0) + 4)


def test_edbgwr_gp_misaligned(cenv, dbg):
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgwr(dbg.phys(OFF_DATA0) + 2, 1)


def test_edbgrd_pf_not_epc(cenv):
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgrd(cenv.mem_addr())


def test_edbgwr_pf_not_epc(cenv):
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgwr(cenv.mem_addr(), 5)


def test_edbgrd_gp_page_locked(cenv, dbg):
    cenv.cpu.inject_conflict(dbg.phys(OFF_DATA0))
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgrd(dbg.phys(OFF_DATA0))
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgwr(dbg.phys(OFF_DATA0), 1)


def test_edbgrd_pf_invalid_page(cenv, dbg):
    page = cenv.free_epc()
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgrd(page)
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgwr(page, 1)


def test_edbgrd_pf_secs_page(cenv, dbg):
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgrd(dbg.secs)
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgwr(dbg.secs, 1)


def test_edbgwr_pf_va_page(cenv, dbg):
    va = cenv.va()
    with unchanged(cenv), pytest.raises(PageFault):
        cenv.cpu.edbgwr(va, 1)


def test_edbgrd_sgx_page_not_debuggable(cenv, dbg):
    page = cenv.eaug(dbg, OFF_FREE)  # PENDING
    with unchanged(cenv):
        assert cenv.cpu.edbgrd(page)[0] == SgxReturn.SGX_PAGE_NOT_DEBUGGABLE
        assert cenv.cpu.encls(0x04, 0, page) == SgxReturn.SGX_PAGE_NOT_DEBUGGABLE


def test_edbgwr_sgx_page_not_debuggable(cenv, dbg):
    assert cenv.emodt(dbg.phys(OFF_DATA1), PageType.TCS) == 0  # MODIFIED
    with unchanged(cenv):
        assert cenv.cpu.edbgwr(dbg.phys(OFF_DATA1), 7) == SgxReturn.SGX_PAGE_NOT_DEBUGGABLE


def test_edbgrd_gp_tcs_offset_beyond_fields(cenv, dbg):
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgrd(dbg.phys(OFF_TCS) + 0x100)
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgwr(dbg.phys(OFF_TCS) + 72, 0)


def test_edbgrd_gp_not_debug_enclave(cenv):
    encl = cenv.enclave()
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgrd(encl.phys(OFF_DATA0))
    with unchanged(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.edbgwr(encl.phys(OFF_DATA0), 0)


# =============================================================================== MRENCLAVE

def reference_mrenclave(ssaframesize: int, size: int, records: list[tuple]) -> bytes:
    """MRENCLAVE from the record format of Intel SDM vol. 3D alone.

    ``records`` is the call sequence: ("EADD", offset, secinfo_flags) or
    ("EEXTEND", offset_of_256_byte_chunk, chunk_bytes).
    """
    blocks = [b"ECREATE\0" + struct.pack("<IQ", ssaframesize, size) + bytes(44)]
    for rec in records:
        if rec[0] == "EADD":
            _, off, flags = rec
            if (flags >> 8) & 0xFF == 1:
                flags &= ~0x7
            blocks.append(b"EADD\0\0\0\0" + struct.pack("<Q", off) + struct.pack("<Q", flags)
                          + bytes(40))
        else:
            _, off, chunk = rec
            blocks.append(b"EEXTEND\0" + struct.pack("<Q", off) + bytes(48))
            blocks += [chunk[i:i + 64] for i in range(0, 256, 64)]
    assert all(len(b) == 64 for b in blocks)
    return hashlib.sha256(b"".join(blocks)).digest()


def test_mrenclave_matches_independent_computation(env):
    """Drive ECREATE/EADD/EEXTEND by hand (TCS with RWX in SECINFO, a partly measured page,
    an unmeasured page, out-of-order EEXTEND) and compare with the SDM's record format."""
    base, size = 0x7000_0000_0000, 0x10000
    secs = env.free_epc()
    src = env.bm.put(Secs(size=size, baseaddr=base, ssaframesize=2, attributes=M64,
                          xfrm=3).pack())
    assert env.cpu.ecreate(env.pageinfo(srcpge=src,
                                        metadata=env.secinfo(secinfo_flags(PageType.SECS))),
                           secs) == 0
    records: list[tuple] = []

    def eadd(off: int, flags: int, data: bytes) -> int:
        epc = env.free_epc()
        pi = env.pageinfo(linaddr=base + off, srcpge=env.bm.put(data.ljust(PAGE_SIZE, b"\0")),
                          metadata=env.secinfo(flags), secs=secs)
        assert env.cpu.eadd(pi, epc) == 0
        records.append(("EADD", off, flags))
        return epc

    def eextend(epc: int, off: int, data: bytes, chunk: int) -> None:
        assert env.cpu.eextend(secs, epc + chunk) == 0
        records.append(("EEXTEND", off + chunk, data.ljust(PAGE_SIZE, b"\0")[chunk:chunk + 256]))

    tcs = tcs_image(ossa=0x1000, nssa=2)
    t = eadd(0, secinfo_flags(PageType.TCS, SecinfoFlags.R | SecinfoFlags.W), tcs)
    for c in range(0, PAGE_SIZE, 256):
        eextend(t, 0, tcs, c)
    eadd(0x1000, secinfo_flags(PageType.REG, RW), b"")          # SSA, not measured
    eadd(0x2000, secinfo_flags(PageType.REG, RW), b"")
    code = bytes(range(256)) * 16
    c = eadd(0x3000, secinfo_flags(PageType.REG, SecinfoFlags.R | SecinfoFlags.X), code)
    for chunk in (0x300, 0x000, 0xF00):                           # partial, out of order
        eextend(c, 0x3000, code, chunk)
    expected = reference_mrenclave(2, size, records)
    sig = sign_sigstruct(expected)
    env.cpu.lepubkeyhash = hashlib.sha256(sig[128:512]).digest()
    rc = env.cpu.einit(env.bm.put(sig), secs, env.bm.put(bytes(304), 512))
    assert rc == SgxReturn.SGX_SUCCESS
    assert env.cpu.secs_info(secs)["mrenclave"] == expected


def test_mrenclave_of_built_enclave(anyenv):
    """The standard test enclave, both in content and metadata mode."""
    encl = anyenv.enclave()
    records: list[tuple] = []
    layout = [(OFF_TCS, secinfo_flags(PageType.TCS), tcs_image(ossa=OFF_SSA, nssa=2))]
    layout += [(OFF_SSA + i * PAGE_SIZE, secinfo_flags(PageType.REG, RW), b"") for i in range(2)]
    layout += [(OFF_SECINFO, secinfo_flags(PageType.REG, RW), b""),
               (OFF_DATA0, secinfo_flags(PageType.REG, RW), DATA0),
               (OFF_DATA1, secinfo_flags(PageType.REG, RW), DATA1),
               (OFF_CODE, secinfo_flags(PageType.REG, SecinfoFlags.R | SecinfoFlags.X),
                b"\x90" * 64 + b"\xc3")]
    for off, flags, data in layout:
        records.append(("EADD", off, flags))
        page = data.ljust(PAGE_SIZE, b"\0")
        for c in range(0, PAGE_SIZE, 256):
            records.append(("EEXTEND", off + c, page[c:c + 256]))
    assert anyenv.info(encl)["mrenclave"] == reference_mrenclave(1, SIZE, records)


def test_mrenclave_depends_on_measured_bytes_only():
    segs = [Segment(OFF_TCS, tcs_image(ossa=OFF_SSA), PageType.TCS), Segment(OFF_SSA, b"x"),
            Segment(OFF_DATA0, b"unmeasured-1", measure=False)]
    a = Env().bm.build(segs, base=BASE, size=SIZE, init=False).mrenclave
    segs[2] = Segment(OFF_DATA0, b"unmeasured-2", measure=False)
    b = Env().bm.build(segs, base=BASE, size=SIZE, init=False).mrenclave
    segs[1] = Segment(OFF_SSA, b"y")
    c = Env().bm.build(segs, base=BASE, size=SIZE, init=False).mrenclave
    assert a == b
    assert a != c
