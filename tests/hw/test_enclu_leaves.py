"""EENTER, ERESUME, EEXIT, AEX, EACCEPT, EMODPE, EACCEPTCOPY (Intel SDM vol. 3D).

In metadata mode the SECINFO operand of EACCEPT & co. is passed as ``flags``; in content
mode the enclave writes it into its SECINFO page first (``Env.eaccept`` does either).
"""

from __future__ import annotations

import pytest
from hwenv import (
    ACCEPT_AUG,
    ACCEPT_TCS,
    ACCEPT_TRIM,
    BASE,
    DATA0,
    OFF_CODE,
    OFF_DATA0,
    OFF_DATA1,
    OFF_FREE,
    OFF_SECINFO,
    OFF_SSA,
    OFF_TCS,
    RW,
    RX,
    accept_pr,
    unchanged,
    unchanged_in_enclave,
)

from epcsim.arch import Enclu, PageType, SecinfoFlags, SgxReturn, Tcs, secinfo_flags
from epcsim.hw.cpu import ArchFault, GeneralProtectionFault, PageFault

R = int(SecinfoFlags.R)
W = int(SecinfoFlags.W)
X = int(SecinfoFlags.X)


# =============================================================================== EENTER

def test_eenter_success(env, encl):
    env.cpu.aspace[0] = encl.aspace
    assert env.cpu.eenter(0, encl.tcs) == SgxReturn.SGX_SUCCESS
    assert env.cpu.inside(0)
    assert env.info(encl)["lps_inside"] == 1


def test_eenter_through_enclu(env, encl):
    env.cpu.aspace[1] = encl.aspace
    assert env.cpu.enclu(1, Enclu.EENTER, encl.tcs) == 0
    assert env.cpu.inside(1)
    assert env.cpu.enclu(1, Enclu.EEXIT) == 0
    assert not env.cpu.inside(1)


def test_eenter_gp_misaligned_tcs(env, encl):
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eenter(0, encl.tcs + 8)


def test_eenter_pf_tcs_not_mapped(env, encl):
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(0, encl.lin(OFF_FREE))
    env.cpu.aspace[1] = None
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(1, encl.tcs)


def test_eenter_gp_already_inside(env, encl):
    env.enter(encl)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eenter(0, encl.tcs)


@pytest.mark.parametrize("off", [OFF_DATA0, OFF_SECINFO])
def test_eenter_pf_not_a_tcs(env, encl, off):
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(0, encl.lin(off))


def test_eenter_pf_tcs_blocked(env, encl):
    assert env.cpu.eblock(encl.phys(OFF_TCS)) == 0
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(0, encl.tcs)


def test_eenter_pf_tcs_linaddr_mismatch(env, encl):
    encl.aspace.map(encl.lin(OFF_FREE), encl.phys(OFF_TCS), 3)
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(0, encl.lin(OFF_FREE))


def test_eenter_pf_tcs_modified(env, encl):
    """A page converted by EMODT is not a usable TCS until the enclave accepts it."""
    assert env.emodt(encl.phys(OFF_DATA1), PageType.TCS) == 0
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(0, encl.lin(OFF_DATA1))


def test_eenter_pf_tcs_of_other_enclave_mapping(env, encl):
    other = env.enclave(base=2 * BASE)
    env.cpu.aspace[0] = encl.aspace
    encl.aspace.map(encl.lin(OFF_FREE), other.phys(OFF_TCS), 3)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eenter(0, encl.lin(OFF_FREE))


def test_eenter_gp_not_initialized(env):
    encl = env.enclave(init=False)
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eenter(0, encl.tcs)


def test_eenter_gp_tcs_busy(env, encl):
    env.enter(encl, lp=0)
    env.cpu.aspace[1] = encl.aspace
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eenter(1, encl.tcs)


def test_eenter_gp_cssa_not_below_nssa(env):
    encl = env.enclave(nssa=1)
    env.enter(encl)
    env.cpu.aex(0)                     # CSSA = 1 = NSSA
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eenter(0, encl.tcs)
    assert env.cpu.eresume(0, encl.tcs) == 0


def test_eenter_two_threads_two_tcs(env, encl):
    env.enter(encl, lp=0)
    assert env.eaug(encl, OFF_FREE)
    assert env.eaccept(encl, 0, encl.lin(OFF_FREE), ACCEPT_AUG) == 0
    # A second TCS through EMODT: REG -> TCS, ETRACK, EACCEPT by the running thread.
    assert env.emodt(encl.phys(OFF_DATA1), PageType.TCS) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.cpu.eexit(0)
    env.enter(encl, lp=0)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA1), ACCEPT_TCS) == 0
    env.cpu.aspace[1] = encl.aspace
    assert env.cpu.eenter(1, encl.lin(OFF_DATA1)) == 0
    assert env.info(encl)["lps_inside"] == 2


# =============================================================================== ERESUME

def test_eresume_success(env, encl):
    env.enter(encl)
    env.cpu.aex(0)
    assert env.cpu.eresume(0, encl.tcs) == SgxReturn.SGX_SUCCESS
    assert env.cpu.inside(0)
    # CSSA went back down: two AEX/ERESUME rounds fit in NSSA = 2 frames.
    env.cpu.aex(0)
    assert env.cpu.eresume(0, encl.tcs) == 0
    assert env.cpu.enclu(0, Enclu.EEXIT) == 0
    assert env.cpu.eenter(0, encl.tcs) == 0


def test_eresume_gp_cssa_zero(env, encl):
    env.cpu.aspace[0] = encl.aspace
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eresume(0, encl.tcs)


def test_eresume_gp_already_inside(env, encl):
    env.enter(encl)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eresume(0, encl.tcs)


def test_eresume_pf_tcs_not_mapped(env, encl):
    env.enter(encl)
    env.cpu.aex(0)
    encl.aspace.unmap(encl.tcs)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eresume(0, encl.tcs)


def test_eresume_pf_tcs_blocked(env, encl):
    env.enter(encl)
    env.cpu.aex(0)
    assert env.cpu.eblock(encl.phys(OFF_TCS)) == 0
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eresume(0, encl.tcs)


def test_eresume_gp_misaligned(env, encl):
    env.enter(encl)
    env.cpu.aex(0)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eresume(0, encl.tcs + 0x40)


# =============================================================================== EEXIT / AEX

def test_eexit_success(env, encl):
    env.enter(encl)
    assert env.cpu.eexit(0) == SgxReturn.SGX_SUCCESS
    assert not env.cpu.inside(0)
    assert env.info(encl)["lps_inside"] == 0
    env.cpu.aspace[1] = encl.aspace
    assert env.cpu.eenter(1, encl.tcs) == 0   # the TCS is free again


def test_eexit_fault_outside_enclave(env, encl):
    with unchanged(env), pytest.raises(ArchFault) as exc:
        env.cpu.eexit(0)
    assert exc.value.vector in (6, 13)


def test_aex_success(env):
    encl = env.enclave(nssa=1)
    env.enter(encl)
    env.cpu.aex(0)
    assert not env.cpu.inside(0)
    assert env.info(encl)["lps_inside"] == 0
    with pytest.raises(GeneralProtectionFault):   # CSSA = NSSA now
        env.cpu.eenter(0, encl.tcs)


def test_aex_gp_outside_enclave(env):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.aex(0)


def test_aex_on_enclave_page_fault(env, encl):
    env.enter(encl)
    with pytest.raises(PageFault) as exc:
        env.cpu.enclave_read(0, encl.lin(OFF_FREE) + 0x123)
    assert exc.value.address == encl.lin(OFF_FREE)   # CR2's low 12 bits are hidden
    assert not env.cpu.inside(0)
    assert env.cpu.eresume(0, encl.tcs) == 0


def test_access_pf_blocked_page(env, encl):
    env.enter(encl)
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    with pytest.raises(PageFault) as exc:
        env.cpu.enclave_read(0, encl.lin(OFF_DATA0))
    assert exc.value.error_code & (1 << 15)           # the SGX bit
    assert not env.cpu.inside(0)


def test_access_pf_page_of_another_address_or_enclave(env, encl):
    """The EPCM check at TLB fill: a PTE may point only at the page the EPCM records for
    that enclave and that linear address (ENCLAVEADDRESS and the owning SECS)."""
    other = env.enclave()                                # the same base, its own pages
    lin, own = encl.lin(OFF_DATA0), encl.phys(OFF_DATA0)
    env.enter(encl)
    for phys in (encl.phys(OFF_DATA1), other.phys(OFF_DATA0)):
        env.map(encl, lin, phys)
        with pytest.raises(PageFault) as exc:
            env.cpu.enclave_read(0, lin)
        assert exc.value.error_code & (1 << 15)           # the SGX bit
        assert not env.cpu.inside(0)
        assert env.cpu.eresume(0, encl.tcs) == 0
    env.map(encl, lin, own)
    assert env.cpu.enclave_read(0, lin, 8) == (DATA0[:8] if env.content else bytes(8))


# =============================================================================== EACCEPT

def test_eaccept_success_after_eaug(anyenv):
    env = anyenv
    encl = env.enclave()
    env.enter(encl)
    page = env.eaug(encl, OFF_FREE)
    with pytest.raises(PageFault):                      # PENDING pages cannot be used yet
        env.cpu.enclave_read(0, encl.lin(OFF_FREE))
    env.enter(encl)                                     # the #PF took an AEX
    assert env.eaccept(encl, 0, encl.lin(OFF_FREE), ACCEPT_AUG) == SgxReturn.SGX_SUCCESS
    e = env.epcm(page)
    assert not e["pending"] and (e["r"], e["w"], e["x"]) == (True, True, False)
    env.cpu.enclave_write(0, encl.lin(OFF_FREE) + 16, b"hello")
    expect = b"hello" if env.content else bytes(5)
    assert env.cpu.enclave_read(0, encl.lin(OFF_FREE) + 16, 5) == expect


def test_eaccept_success_after_emodpr(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.emodpr(page, R) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.enter(encl)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), accept_pr(R)) == 0
    e = env.epcm(page)
    assert not e["pr"] and (e["r"], e["w"], e["x"]) == (True, False, False)


def test_eaccept_success_after_emodt_trim_then_eremove_while_inside(env, encl):
    page = encl.phys(OFF_DATA1)
    assert env.emodt(page, PageType.TRIM) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.enter(encl)
    assert env.cpu.eremove(page) == SgxReturn.SGX_ENCLAVE_ACT   # not accepted yet
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA1), ACCEPT_TRIM) == 0
    assert not env.epcm(page)["modified"]
    chld = env.info(encl)["chldcnt"]
    assert env.cpu.eremove(page) == 0                           # accepted TRIM: allowed
    assert env.info(encl)["chldcnt"] == chld - 1


def test_eaccept_success_after_emodt_tcs(cenv):
    encl = cenv.enclave()
    cenv.enter(encl)
    lin = encl.lin(OFF_DATA1)
    cenv.cpu.enclave_write(0, lin, Tcs(ossa=OFF_SSA, nssa=2).pack()[:256])
    assert cenv.emodt(encl.phys(OFF_DATA1), PageType.TCS) == 0
    assert cenv.cpu.etrack(encl.secs) == 0
    cenv.cpu.eexit(0)
    cenv.enter(encl)
    assert cenv.eaccept(encl, 0, lin, ACCEPT_TCS) == 0
    assert cenv.epcm(encl.phys(OFF_DATA1))["pt"] == PageType.TCS


@pytest.mark.parametrize("flags", [
    secinfo_flags(PageType.REG, RW | X | SecinfoFlags.PENDING),
    secinfo_flags(PageType.REG, R | SecinfoFlags.PENDING),
    ACCEPT_TCS,
    ACCEPT_TRIM,
    accept_pr(RW),
], ids=["extra_x", "missing_w", "tcs", "trim", "pr_instead_of_pending"])
def test_eaccept_sgx_page_attributes_mismatch(env, encl, flags):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged(env):
        assert env.eaccept(encl, 0, encl.lin(OFF_FREE), flags) == \
            SgxReturn.SGX_PAGE_ATTRIBUTES_MISMATCH


def test_eaccept_sgx_page_attributes_mismatch_address(env, encl):
    env.enter(encl)
    page = env.eaug(encl, OFF_FREE)
    encl.aspace.map(encl.lin(OFF_FREE + 0x1000), page, 3)   # an alias at the wrong address
    with unchanged(env):
        assert env.eaccept(encl, 0, encl.lin(OFF_FREE + 0x1000), ACCEPT_AUG) == \
            SgxReturn.SGX_PAGE_ATTRIBUTES_MISMATCH


def test_eaccept_sgx_page_attributes_mismatch_already_accepted(env, encl):
    env.enter(encl)
    with unchanged(env):
        assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), ACCEPT_AUG) == \
            SgxReturn.SGX_PAGE_ATTRIBUTES_MISMATCH


def test_eaccept_sgx_not_tracked(env, encl):
    env.enter(encl)
    assert env.emodpr(encl.phys(OFF_DATA0), R) == 0
    with unchanged(env):
        assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), accept_pr(R)) == \
            SgxReturn.SGX_NOT_TRACKED
    # ETRACK alone is not enough while the accepting thread entered before it ...
    assert env.cpu.etrack(encl.secs) == 0
    with unchanged(env):
        assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), accept_pr(R)) == \
            SgxReturn.SGX_NOT_TRACKED
    # ... it must leave and come back.
    env.cpu.eexit(0)
    env.enter(encl)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), accept_pr(R)) == 0


def test_eaccept_sgx_not_tracked_emodt(env, encl):
    assert env.emodt(encl.phys(OFF_DATA1), PageType.TRIM) == 0
    env.enter(encl)
    with unchanged(env):
        assert env.eaccept(encl, 0, encl.lin(OFF_DATA1), ACCEPT_TRIM) == \
            SgxReturn.SGX_NOT_TRACKED


def test_eaccept_eaug_needs_no_tracking(env, encl):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    assert env.eaccept(encl, 0, encl.lin(OFF_FREE), ACCEPT_AUG) == 0


def test_eaccept_gp_not_inside(env, encl):
    env.eaug(encl, OFF_FREE)
    env.cpu.aspace[0] = encl.aspace
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaccept(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE), flags=ACCEPT_AUG)


def test_eaccept_gp_misaligned_secinfo(env, encl):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaccept(0, encl.lin(OFF_SECINFO) + 8, encl.lin(OFF_FREE), flags=ACCEPT_AUG)


def test_eaccept_gp_secinfo_outside_elrange(env, encl):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    outside = BASE - 0x1000
    encl.aspace.map(outside, env.mem_addr(), 3)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaccept(0, outside, encl.lin(OFF_FREE), flags=ACCEPT_AUG)


@pytest.mark.parametrize("which", ["unmapped", "pending", "tcs", "code_not_readable"])
def test_eaccept_pf_secinfo_page(env, encl, which):
    env.enter(encl)
    target = encl.lin(OFF_FREE)
    env.eaug(encl, OFF_FREE)
    if which == "unmapped":
        secinfo = encl.lin(OFF_FREE + 0x3000)
    elif which == "pending":
        env.eaug(encl, OFF_FREE + 0x1000)
        secinfo = encl.lin(OFF_FREE + 0x1000)
    elif which == "tcs":
        secinfo = encl.tcs
    else:
        assert env.emodpr(encl.phys(OFF_CODE), X) == 0
        assert env.cpu.etrack(encl.secs) == 0
        env.cpu.eexit(0)
        env.enter(encl)
        assert env.eaccept(encl, 0, encl.lin(OFF_CODE), accept_pr(X)) == 0
        secinfo = encl.lin(OFF_CODE)
    with unchanged_in_enclave(env), pytest.raises(PageFault):
        env.cpu.eaccept(0, secinfo, target, flags=ACCEPT_AUG)


@pytest.mark.parametrize("flags", [
    secinfo_flags(PageType.REG, RW),                                  # neither PR nor PENDING
    secinfo_flags(PageType.REG, RW | SecinfoFlags.PENDING | SecinfoFlags.MODIFIED),
    secinfo_flags(PageType.TRIM),                                     # TRIM without MODIFIED
    secinfo_flags(PageType.TCS, SecinfoFlags.MODIFIED | SecinfoFlags.PENDING),
    secinfo_flags(PageType.VA, SecinfoFlags.MODIFIED),
    secinfo_flags(PageType.SECS, SecinfoFlags.PENDING),
], ids=["reg_plain", "reg_modified", "trim_plain", "tcs_pending", "va", "secs"])
def test_eaccept_gp_illegal_request(env, encl, flags):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaccept(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE), flags=flags)


@pytest.mark.parametrize("bit", [6, 7, 16, 63])
def test_eaccept_gp_secinfo_reserved(env, encl, bit):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaccept(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE),
                        flags=ACCEPT_AUG | (1 << bit))


def test_eaccept_gp_secinfo_reserved_bytes_content(cenv):
    encl = cenv.enclave()
    cenv.enter(encl)
    cenv.eaug(encl, OFF_FREE)
    cenv.cpu.enclave_write(0, encl.lin(OFF_SECINFO), ACCEPT_AUG.to_bytes(8, "little") +
                           b"\x01" + bytes(55))
    with unchanged_in_enclave(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.eaccept(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE))


def test_eaccept_gp_misaligned_target(env, encl):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaccept(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE) + 0x10, flags=ACCEPT_AUG)


@pytest.mark.parametrize("which", ["unmapped", "free_page", "blocked", "other_enclave",
                                   "va_page", "secs_page"])
def test_eaccept_pf_target(env, encl, which):
    env.enter(encl)
    lin = encl.lin(OFF_FREE)
    if which == "free_page":
        encl.aspace.map(lin, env.free_epc(), 3)
    elif which == "blocked":
        page = env.eaug(encl, OFF_FREE)
        assert env.cpu.eblock(page) == 0
    elif which == "other_enclave":
        other = env.enclave(base=2 * BASE)
        encl.aspace.map(lin, other.phys(OFF_DATA0), 3)
    elif which == "va_page":
        encl.aspace.map(lin, env.va(), 3)
    elif which == "secs_page":
        encl.aspace.map(lin, encl.secs, 3)
    with unchanged_in_enclave(env), pytest.raises(PageFault):
        env.cpu.eaccept(0, encl.lin(OFF_SECINFO), lin, flags=ACCEPT_AUG)


def test_eaccept_gp_tcs_nssa_zero(cenv):
    encl = cenv.enclave()
    cenv.enter(encl)
    lin = encl.lin(OFF_DATA1)
    cenv.cpu.enclave_write(0, lin, Tcs(ossa=OFF_SSA, nssa=0).pack()[:256])
    assert cenv.emodt(encl.phys(OFF_DATA1), PageType.TCS) == 0
    assert cenv.cpu.etrack(encl.secs) == 0
    cenv.cpu.eexit(0)
    cenv.enter(encl)
    cenv.cpu.enclave_write(0, encl.lin(OFF_SECINFO), ACCEPT_TCS.to_bytes(8, "little"))
    with unchanged_in_enclave(cenv), pytest.raises(GeneralProtectionFault):
        cenv.cpu.eaccept(0, encl.lin(OFF_SECINFO), lin)


# =============================================================================== EMODPE

def test_emodpe_success(env, encl):
    env.enter(encl)
    page = encl.phys(OFF_DATA0)
    assert env.emodpe(encl, 0, encl.lin(OFF_DATA0), secinfo_flags(PageType.REG, X)) == \
        SgxReturn.SGX_SUCCESS
    e = env.epcm(page)
    assert (e["r"], e["w"], e["x"]) == (True, True, True)
    assert not (e["pr"] or e["pending"] or e["modified"])


def test_emodpe_through_enclu(cenv):
    encl = cenv.enclave()
    cenv.enter(encl)
    cenv.cpu.enclave_write(0, encl.lin(OFF_SECINFO),
                           secinfo_flags(PageType.REG, W).to_bytes(8, "little"))
    assert cenv.cpu.enclu(0, Enclu.EMODPE, encl.lin(OFF_SECINFO), encl.lin(OFF_CODE)) == 0
    assert cenv.epcm(encl.phys(OFF_CODE))["w"]


def test_emodpe_gp_w_without_r(env, encl):
    env.enter(encl)
    assert env.emodpr(encl.phys(OFF_DATA0), 0) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.cpu.eexit(0)
    env.enter(encl)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), accept_pr(0)) == 0
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.emodpe(encl, 0, encl.lin(OFF_DATA0), secinfo_flags(PageType.REG, W))
    assert env.emodpe(encl, 0, encl.lin(OFF_DATA0), secinfo_flags(PageType.REG, RW)) == 0


@pytest.mark.parametrize("which", ["pending", "tcs", "modified", "blocked", "unmapped"])
def test_emodpe_pf_target(env, encl, which):
    env.enter(encl)
    lin = encl.lin(OFF_DATA0)
    if which == "pending":
        env.eaug(encl, OFF_FREE)
        lin = encl.lin(OFF_FREE)
    elif which == "tcs":
        lin = encl.tcs
    elif which == "modified":
        assert env.emodt(encl.phys(OFF_DATA0), PageType.TRIM) == 0
    elif which == "blocked":
        assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    elif which == "unmapped":
        lin = encl.lin(OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(PageFault):
        env.emodpe(encl, 0, lin, secinfo_flags(PageType.REG, X))


def test_emodpe_gp_not_inside(env, encl):
    env.cpu.aspace[0] = encl.aspace
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpe(0, encl.lin(OFF_SECINFO), encl.lin(OFF_DATA0),
                       flags=secinfo_flags(PageType.REG, X))


def test_emodpe_gp_secinfo_reserved(env, encl):
    env.enter(encl)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpe(0, encl.lin(OFF_SECINFO), encl.lin(OFF_DATA0),
                       flags=secinfo_flags(PageType.REG, X) | (1 << 20))


def test_emodpe_pf_secinfo_page(env, encl):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(PageFault):
        env.cpu.emodpe(0, encl.lin(OFF_FREE), encl.lin(OFF_DATA0),
                       flags=secinfo_flags(PageType.REG, X))


def test_emodpe_gp_misaligned_target(env, encl):
    env.enter(encl)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpe(0, encl.lin(OFF_SECINFO), encl.lin(OFF_DATA0) + 4,
                       flags=secinfo_flags(PageType.REG, X))


# =============================================================================== EACCEPTCOPY

def test_eacceptcopy_success(cenv):
    encl = cenv.enclave()
    cenv.enter(encl)
    dest = cenv.eaug(encl, OFF_FREE)
    flags = secinfo_flags(PageType.REG, RX)
    assert cenv.eacceptcopy(encl, 0, encl.lin(OFF_FREE), encl.lin(OFF_DATA0), flags) == \
        SgxReturn.SGX_SUCCESS
    e = cenv.epcm(dest)
    assert not e["pending"] and (e["r"], e["w"], e["x"]) == (True, False, True)
    assert cenv.cpu.enclave_read(0, encl.lin(OFF_FREE) + 100, 64) == DATA0[100:164]


def test_eacceptcopy_success_metadata(env, encl):
    env.enter(encl)
    dest = env.eaug(encl, OFF_FREE)
    assert env.eacceptcopy(encl, 0, encl.lin(OFF_FREE), encl.lin(OFF_DATA0),
                           secinfo_flags(PageType.REG, RW)) == 0
    assert not env.epcm(dest)["pending"]


@pytest.mark.parametrize("which", ["already_accepted", "alias_address", "restricted"])
def test_eacceptcopy_sgx_page_attributes_mismatch(env, encl, which):
    env.enter(encl)
    dest = encl.lin(OFF_FREE)
    page = env.eaug(encl, OFF_FREE)
    if which == "already_accepted":
        assert env.eaccept(encl, 0, dest, ACCEPT_AUG) == 0
    elif which == "alias_address":
        dest = encl.lin(OFF_FREE + 0x1000)
        encl.aspace.map(dest, page, 3)
    else:
        dest = encl.lin(OFF_DATA1)   # a normal, non-pending page
    with unchanged(env):
        assert env.eacceptcopy(encl, 0, dest, encl.lin(OFF_DATA0),
                               secinfo_flags(PageType.REG, RW)) == \
            SgxReturn.SGX_PAGE_ATTRIBUTES_MISMATCH


@pytest.mark.parametrize("flags", [secinfo_flags(PageType.TCS, RW),
                                   secinfo_flags(PageType.REG, W),
                                   secinfo_flags(PageType.TRIM)],
                         ids=["tcs", "w_without_r", "trim"])
def test_eacceptcopy_gp_secinfo(env, encl, flags):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.eacceptcopy(encl, 0, encl.lin(OFF_FREE), encl.lin(OFF_DATA0), flags)


@pytest.mark.parametrize("which", ["unmapped", "pending", "tcs", "blocked"])
def test_eacceptcopy_pf_source(env, encl, which):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    src = encl.lin(OFF_DATA0)
    if which == "unmapped":
        src = encl.lin(OFF_FREE + 0x5000)
    elif which == "pending":
        env.eaug(encl, OFF_FREE + 0x1000)
        src = encl.lin(OFF_FREE + 0x1000)
    elif which == "tcs":
        src = encl.tcs
    else:
        assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    with unchanged_in_enclave(env), pytest.raises(PageFault):
        env.eacceptcopy(encl, 0, encl.lin(OFF_FREE), src, secinfo_flags(PageType.REG, RW))


def test_eacceptcopy_pf_destination_not_mapped(env, encl):
    env.enter(encl)
    with unchanged_in_enclave(env), pytest.raises(PageFault):
        env.eacceptcopy(encl, 0, encl.lin(OFF_FREE), encl.lin(OFF_DATA0),
                        secinfo_flags(PageType.REG, RW))


@pytest.mark.parametrize("which", ["free_page", "other_enclave", "va_page", "secs_page"])
def test_eacceptcopy_sgx_page_attributes_mismatch_destination(env, encl, which):
    """"Destination must be VALID, ..., same enclave (else SGX_PAGE_ATTRIBUTES_MISMATCH)"."""
    env.enter(encl)
    dest = encl.lin(OFF_FREE)
    if which == "free_page":
        page = env.free_epc()
    elif which == "other_enclave":
        other = env.enclave(base=2 * BASE)
        page = env.eaug(other, OFF_FREE)        # pending RW REG: only the owner differs
    elif which == "va_page":
        page = env.va()
    else:
        page = encl.secs
    encl.aspace.map(dest, page, 3)
    with unchanged(env):
        assert env.eacceptcopy(encl, 0, dest, encl.lin(OFF_DATA0),
                               secinfo_flags(PageType.REG, RW)) == \
            SgxReturn.SGX_PAGE_ATTRIBUTES_MISMATCH


def test_eacceptcopy_gp_not_inside(env, encl):
    env.eaug(encl, OFF_FREE)
    env.cpu.aspace[0] = encl.aspace
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eacceptcopy(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE), encl.lin(OFF_DATA0),
                            flags=secinfo_flags(PageType.REG, RW))


def test_eacceptcopy_gp_misaligned(env, encl):
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eacceptcopy(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE) + 8,
                            encl.lin(OFF_DATA0), flags=secinfo_flags(PageType.REG, RW))
    with unchanged_in_enclave(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eacceptcopy(0, encl.lin(OFF_SECINFO), encl.lin(OFF_FREE),
                            encl.lin(OFF_DATA0) + 8, flags=secinfo_flags(PageType.REG, RW))


def test_enclu_unknown_leaf_gp(env):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.enclu(0, 0x55)
