"""EAUG, EMODPR, EMODT: the OS side of SGX2 (Intel SDM vol. 3D).

The enclave side (EACCEPT, EMODPE, EACCEPTCOPY) is in test_enclu_leaves.py.
"""

from __future__ import annotations

import pytest
from hwenv import (
    ACCEPT_TRIM,
    BASE,
    OFF_CODE,
    OFF_DATA0,
    OFF_DATA1,
    OFF_FREE,
    OFF_TCS,
    PAGE_SIZE,
    RW,
    SIZE,
    Env,
    accept_pr,
    unchanged,
)

from epcsim.arch import Encls, PageType, SecinfoFlags, SgxReturn, secinfo_flags
from epcsim.hw.cpu import GeneralProtectionFault, InvalidOpcode, PageFault

R = int(SecinfoFlags.R)
W = int(SecinfoFlags.W)
X = int(SecinfoFlags.X)


def eaug_pi(env: Env, encl, *, off: int = OFF_FREE, linaddr: int | None = None,
            secs: int | None = None, srcpge: int = 0, secinfo: int = 0) -> int:
    return env.pageinfo(linaddr=encl.lin(off) if linaddr is None else linaddr, srcpge=srcpge,
                        metadata=secinfo, secs=encl.secs if secs is None else secs)


# =============================================================================== EAUG

def test_eaug_success(env, encl):
    chld = env.info(encl)["chldcnt"]
    epc = env.free_epc()
    assert env.cpu.eaug(eaug_pi(env, encl), epc) == SgxReturn.SGX_SUCCESS
    e = env.epcm(epc)
    assert e["valid"] and e["pending"] and e["pt"] == PageType.REG
    assert (e["r"], e["w"], e["x"]) == (True, True, False)
    assert not (e["modified"] or e["pr"] or e["blocked"])
    assert e["enclaveaddress"] == encl.lin(OFF_FREE) and e["enclavesecs"] == encl.secs
    assert env.info(encl)["chldcnt"] == chld + 1


def test_eaug_zeroes_the_page(cenv):
    encl = cenv.enclave()
    old = encl.phys(OFF_DATA0)
    assert cenv.cpu.eremove(old) == 0  # the page still holds DATA0's bytes
    assert cenv.cpu.encls(Encls.EAUG, eaug_pi(cenv, encl), old) == 0
    assert not cenv.cpu.st.data[cenv.cpu.page_index(old)].any()


def test_eaug_gp_misaligned_pageinfo(env, encl):
    pi, epc = eaug_pi(env, encl), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi + 8, epc)


def test_eaug_gp_misaligned_target(env, encl):
    pi, epc = eaug_pi(env, encl), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc + 0x100)


def test_eaug_pf_target_not_epc(env, encl):
    pi = eaug_pi(env, encl)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eaug(pi, env.mem_addr())


def test_eaug_gp_srcpge_nonzero(env, encl):
    pi, epc = eaug_pi(env, encl, srcpge=env.mem_addr()), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


def test_eaug_gp_misaligned_linaddr(env, encl):
    pi, epc = eaug_pi(env, encl, linaddr=encl.lin(OFF_FREE) + 8), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


def test_eaug_gp_misaligned_secs(env, encl):
    pi, epc = eaug_pi(env, encl, secs=encl.secs + 0x80), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


def test_eaug_pf_secs_not_epc(env, encl):
    pi, epc = eaug_pi(env, encl, secs=env.mem_addr()), env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eaug(pi, epc)


@pytest.mark.parametrize("flags", [secinfo_flags(PageType.REG, RW),
                                   secinfo_flags(PageType.SS_FIRST, RW)])
def test_eaug_gp_secinfo_nonzero_without_cet(env, encl, flags):
    pi, epc = eaug_pi(env, encl, secinfo=env.secinfo(flags)), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


def test_eaug_gp_target_locked(env, encl):
    pi, epc = eaug_pi(env, encl), env.free_epc()
    env.cpu.inject_conflict(epc)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


def test_eaug_pf_target_valid(env, encl):
    pi = eaug_pi(env, encl)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eaug(pi, encl.phys(OFF_DATA0))


def test_eaug_gp_secs_locked(env, encl):
    pi, epc = eaug_pi(env, encl), env.free_epc()
    env.cpu.inject_conflict(encl.secs)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


@pytest.mark.parametrize("which", ["reg", "free", "va"])
def test_eaug_pf_secs_not_a_secs(env, encl, which):
    secs = {"reg": lambda: encl.phys(OFF_DATA0), "free": env.free_epc, "va": env.va}[which]()
    pi, epc = eaug_pi(env, encl, secs=secs), env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eaug(pi, epc)


def test_eaug_gp_not_initialized(env):
    encl = env.enclave(init=False)
    pi, epc = eaug_pi(env, encl), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


@pytest.mark.parametrize("linaddr", [BASE - PAGE_SIZE, BASE + SIZE, 0x1000])
def test_eaug_gp_linaddr_outside_elrange(env, encl, linaddr):
    pi, epc = eaug_pi(env, encl, linaddr=linaddr), env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eaug(pi, epc)


def test_eaug_ud_without_sgx2():
    env = Env(sgx2=False)
    encl = env.enclave()
    pi, epc = eaug_pi(env, encl), env.free_epc()
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.eaug(pi, epc)


# =============================================================================== EMODPR

def test_emodpr_success(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.emodpr(page, R) == SgxReturn.SGX_SUCCESS
    e = env.epcm(page)
    assert e["pr"] and (e["r"], e["w"], e["x"]) == (True, False, False)
    assert not (e["pending"] or e["modified"])


def test_emodpr_cannot_add_permissions(env, encl):
    page = encl.phys(OFF_DATA0)  # RW
    si = env.secinfo(secinfo_flags(PageType.REG, R | W | X))
    assert env.cpu.encls(Encls.EMODPR, si, page) == 0
    e = env.epcm(page)
    assert (e["r"], e["w"], e["x"]) == (True, True, False)


def test_emodpr_sgx_page_not_modifiable_pending(env, encl):
    page = env.eaug(encl, OFF_FREE)
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env):
        assert env.cpu.emodpr(si, page) == SgxReturn.SGX_PAGE_NOT_MODIFIABLE


def test_emodpr_sgx_page_not_modifiable_modified(env, encl):
    page = encl.phys(OFF_DATA1)
    assert env.emodt(page, PageType.TRIM) == 0
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env):
        assert env.cpu.emodpr(si, page) == SgxReturn.SGX_PAGE_NOT_MODIFIABLE


def test_emodpr_trim_probe(env, encl):
    """Linux's probe: an unaccepted TRIM page gives NOT_MODIFIABLE, an accepted one #PF."""
    page = encl.phys(OFF_DATA1)
    assert env.emodt(page, PageType.TRIM) == 0
    assert env.emodpr(page, R) == SgxReturn.SGX_PAGE_NOT_MODIFIABLE
    assert env.cpu.etrack(encl.secs) == 0
    env.enter(encl)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA1), ACCEPT_TRIM) == 0
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.emodpr(si, page)


def test_emodpr_sgx_epc_page_conflict(env, encl):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env):
        assert env.cpu.emodpr(si, encl.phys(OFF_DATA0)) == SgxReturn.SGX_EPC_PAGE_CONFLICT


@pytest.mark.parametrize("flags", [secinfo_flags(PageType.REG, R) | (1 << 6),
                                   secinfo_flags(PageType.REG, R) | (1 << 32),
                                   secinfo_flags(PageType.REG, W)],
                         ids=["reserved_bit6", "reserved_bit32", "w_without_r"])
def test_emodpr_gp_secinfo(env, encl, flags):
    si = env.secinfo(flags)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpr(si, encl.phys(OFF_DATA0))


def test_emodpr_gp_secinfo_reserved_bytes(env, encl):
    si = env.secinfo(secinfo_flags(PageType.REG, R), reserved=b"\x01" + bytes(55))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpr(si, encl.phys(OFF_DATA0))


def test_emodpr_gp_misaligned_secinfo(env, encl):
    si = env.bm.put(bytes(128), 64) + 16
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpr(si, encl.phys(OFF_DATA0))


def test_emodpr_gp_misaligned_target(env, encl):
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpr(si, encl.phys(OFF_DATA0) + 0x10)


def test_emodpr_pf_not_epc(env, encl):
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.emodpr(si, env.mem_addr())


@pytest.mark.parametrize("which", ["free", "tcs", "secs", "va"])
def test_emodpr_pf_page(env, encl, which):
    page = {"free": env.free_epc, "tcs": lambda: encl.phys(OFF_TCS),
            "secs": lambda: encl.secs, "va": env.va}[which]()
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.emodpr(si, page)


def test_emodpr_gp_not_initialized(env):
    encl = env.enclave(init=False)
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodpr(si, encl.phys(OFF_DATA0))


def test_emodpr_ud_without_sgx2():
    env = Env(sgx2=False)
    encl = env.enclave()
    si = env.secinfo(secinfo_flags(PageType.REG, R))
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.emodpr(si, encl.phys(OFF_DATA0))


# =============================================================================== EMODT

@pytest.mark.parametrize("off,new", [(OFF_DATA0, PageType.TRIM), (OFF_DATA0, PageType.TCS),
                                     (OFF_TCS, PageType.TRIM), (OFF_CODE, PageType.TRIM)])
def test_emodt_success(env, encl, off, new):
    page = encl.phys(off)
    assert env.emodt(page, new) == SgxReturn.SGX_SUCCESS
    e = env.epcm(page)
    assert e["pt"] == new and e["modified"] and e["valid"]
    assert not (e["r"] or e["w"] or e["x"] or e["pr"] or e["pending"])
    assert e["enclaveaddress"] == encl.lin(off)


def test_emodt_clears_pr(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.emodpr(page, R) == 0
    assert env.emodt(page, PageType.TRIM) == 0
    assert not env.epcm(page)["pr"]


def test_emodt_preserves_content(cenv):
    encl = cenv.enclave()
    page = encl.phys(OFF_DATA0)
    before = cenv.cpu.st.data[cenv.cpu.page_index(page)].copy()
    assert cenv.emodt(page, PageType.TRIM) == 0
    assert (cenv.cpu.st.data[cenv.cpu.page_index(page)] == before).all()


@pytest.mark.parametrize("pt", [PageType.REG, PageType.SECS, PageType.VA, PageType.SS_FIRST])
def test_emodt_gp_secinfo_type(env, encl, pt):
    si = env.secinfo(secinfo_flags(pt))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodt(si, encl.phys(OFF_DATA0))


def test_emodt_gp_secinfo_reserved(env, encl):
    si = env.secinfo(secinfo_flags(PageType.TRIM) | (1 << 40))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodt(si, encl.phys(OFF_DATA0))
    si = env.secinfo(secinfo_flags(PageType.TRIM), reserved=bytes(10) + b"\x02" + bytes(45))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodt(si, encl.phys(OFF_DATA0))


def test_emodt_sgx_epc_page_conflict(env, encl):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    si = env.secinfo(secinfo_flags(PageType.TRIM))
    with unchanged(env):
        assert env.cpu.emodt(si, encl.phys(OFF_DATA0)) == SgxReturn.SGX_EPC_PAGE_CONFLICT


def test_emodt_pf_not_epc(env, encl):
    si = env.secinfo(secinfo_flags(PageType.TRIM))
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.emodt(si, env.mem_addr())


@pytest.mark.parametrize("which,new", [("free", PageType.TRIM), ("secs", PageType.TRIM),
                                       ("va", PageType.TRIM), ("tcs", PageType.TCS)])
def test_emodt_pf_page(env, encl, which, new):
    page = {"free": env.free_epc, "tcs": lambda: encl.phys(OFF_TCS),
            "secs": lambda: encl.secs, "va": env.va}[which]()
    si = env.secinfo(secinfo_flags(new))
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.emodt(si, page)


def test_emodt_pf_accepted_trim_to_tcs(env, encl):
    page = encl.phys(OFF_DATA1)
    assert env.emodt(page, PageType.TRIM) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.enter(encl)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA1), ACCEPT_TRIM) == 0
    for new in (PageType.TCS, PageType.TRIM):
        si = env.secinfo(secinfo_flags(new))
        with unchanged(env), pytest.raises(PageFault):
            env.cpu.emodt(si, page)


def test_emodt_sgx_page_not_modifiable_pending(env, encl):
    page = env.eaug(encl, OFF_FREE)
    si = env.secinfo(secinfo_flags(PageType.TRIM))
    with unchanged(env):
        assert env.cpu.emodt(si, page) == SgxReturn.SGX_PAGE_NOT_MODIFIABLE


def test_emodt_sgx_page_not_modifiable_modified(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.emodt(page, PageType.TCS) == 0   # MODIFIED until EACCEPT
    si = env.secinfo(secinfo_flags(PageType.TRIM))
    with unchanged(env):
        assert env.cpu.emodt(si, page) == SgxReturn.SGX_PAGE_NOT_MODIFIABLE


def test_emodt_gp_not_initialized(env):
    encl = env.enclave(init=False)
    si = env.secinfo(secinfo_flags(PageType.TRIM))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.emodt(si, encl.phys(OFF_DATA0))


def test_emodt_ud_without_sgx2():
    env = Env(sgx2=False)
    encl = env.enclave()
    si = env.secinfo(secinfo_flags(PageType.TRIM))
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.emodt(si, encl.phys(OFF_DATA0))


def test_emodpr_then_accept_restricts(env, encl):
    """The full restrict-permissions flow: EMODPR, ETRACK, re-enter, EACCEPT."""
    page = encl.phys(OFF_DATA0)
    assert env.emodpr(page, R) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.enter(encl)
    assert env.eaccept(encl, 0, encl.lin(OFF_DATA0), accept_pr(R)) == 0
    e = env.epcm(page)
    assert not e["pr"] and (e["r"], e["w"]) == (True, False)
    assert env.cpu.enclave_read(0, encl.lin(OFF_DATA0), 8) == bytes(8)  # metadata mode
    with pytest.raises(PageFault):
        env.cpu.enclave_write(0, encl.lin(OFF_DATA0), b"x")
