"""ERDINFO, ETRACKC, ELDBC/ELDUC, EINCVIRTCHILD, EDECVIRTCHILD, ESETCONTEXT, EUPDATESVN
(Intel SDM vol. 3D)."""

from __future__ import annotations

import pytest
from hwenv import BASE, OFF_DATA0, OFF_DATA1, OFF_FREE, OFF_TCS, RW, Env, unchanged

from epcsim.arch import Encls, Enclv, PageType, RdInfo, SgxReturn, secinfo_flags
from epcsim.hw.cpu import GeneralProtectionFault, InvalidOpcode, PageFault, SgxConflictExit
from epcsim.hw.encls import CTX_GUEST, RDINFO_BLOCKED, RDINFO_CHILDPRESENT, RDINFO_VIRTCHILDPRESENT
from epcsim.hw.epc import SECS_LOCK_TRACKING


def rdinfo(env: Env, page: int) -> tuple[int, RdInfo]:
    out = env.mem_addr(32, 32)
    rc = env.cpu.erdinfo(out, page)
    return rc, RdInfo.unpack(env.cpu.mem.read(out, 32))


# =============================================================================== ERDINFO

def test_erdinfo_success_reg(env, encl):
    rc, info = rdinfo(env, encl.phys(OFF_DATA0))
    assert rc == SgxReturn.SGX_SUCCESS
    assert info.flags == secinfo_flags(PageType.REG, RW)
    assert info.status == 0
    assert info.enclavecontext == env.info(encl)["enclavecontext"] == encl.secs


def test_erdinfo_reports_state_bits(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.emodpr(page, 1) == 0
    assert env.cpu.eblock(page) == 0
    rc, info = rdinfo(env, page)
    assert rc == 0
    assert info.flags == secinfo_flags(PageType.REG, 1) | 0x20 | RDINFO_BLOCKED
    aug = env.eaug(encl, OFF_FREE)
    assert rdinfo(env, aug)[1].flags == secinfo_flags(PageType.REG, RW) | 0x8
    assert env.emodt(encl.phys(OFF_DATA1), PageType.TRIM) == 0
    assert rdinfo(env, encl.phys(OFF_DATA1))[1].flags == secinfo_flags(PageType.TRIM) | 0x10


def test_erdinfo_success_secs(env, encl):
    rc, info = rdinfo(env, encl.secs)
    assert rc == 0
    assert info.flags >> 8 == PageType.SECS
    assert info.status == RDINFO_CHILDPRESENT
    assert env.cpu.eincvirtchild(encl.phys(OFF_DATA0), encl.secs) == 0
    assert rdinfo(env, encl.secs)[1].status == RDINFO_CHILDPRESENT | RDINFO_VIRTCHILDPRESENT
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    assert rdinfo(env, encl.secs)[1].status == RDINFO_VIRTCHILDPRESENT


def test_erdinfo_success_va(env):
    rc, info = rdinfo(env, env.va())
    assert rc == 0 and info.flags == secinfo_flags(PageType.VA)


def test_erdinfo_sgx_pg_nonepc(env):
    out = env.mem_addr(32, 32)
    with unchanged(env):
        assert env.cpu.erdinfo(out, env.mem_addr()) == SgxReturn.SGX_PG_NONEPC
        assert env.cpu.encls(Encls.ERDINFO, out, 0) == SgxReturn.SGX_PG_NONEPC


def test_erdinfo_sgx_pg_invld(env):
    out, page = env.mem_addr(32, 32), env.free_epc()
    with unchanged(env):
        assert env.cpu.erdinfo(out, page) == SgxReturn.SGX_PG_INVLD


def test_erdinfo_sgx_epc_page_conflict(env, encl):
    out = env.mem_addr(32, 32)
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    with unchanged(env):
        assert env.cpu.erdinfo(out, encl.phys(OFF_DATA0)) == SgxReturn.SGX_EPC_PAGE_CONFLICT


def test_erdinfo_gp_misaligned(env, encl):
    out = env.mem_addr(64, 32)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.erdinfo(out + 8, encl.phys(OFF_DATA0))
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.erdinfo(out, encl.phys(OFF_DATA0) + 8)


def test_erdinfo_ud_without_oversub():
    env = Env(oversub=False)
    encl = env.enclave()
    out = env.mem_addr(32, 32)
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.erdinfo(out, encl.phys(OFF_DATA0))


# =============================================================================== ETRACKC

@pytest.mark.parametrize("which", ["child", "tcs", "secs"])
def test_etrackc_success(env, encl, which):
    page = {"child": encl.phys(OFF_DATA0), "tcs": encl.phys(OFF_TCS), "secs": encl.secs}[which]
    before = env.info(encl)["cbepoch"]
    assert env.cpu.etrackc(page) == SgxReturn.SGX_SUCCESS
    assert env.info(encl)["cbepoch"] == before + 1


def test_etrackc_completes_eviction(env, encl):
    va = env.va()
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    assert env.cpu.etrackc(encl.phys(OFF_DATA1)) == 0
    assert env.ewb(encl.phys(OFF_DATA0), va)[0] == 0


def test_etrackc_sgx_track_not_required(env):
    va = env.va()
    with unchanged(env):
        assert env.cpu.etrackc(va) == SgxReturn.SGX_TRACK_NOT_REQUIRED


def test_etrackc_sgx_pg_invld(env):
    page = env.free_epc()
    with unchanged(env):
        assert env.cpu.etrackc(page) == SgxReturn.SGX_PG_INVLD


def test_etrackc_sgx_epc_page_conflict(env, encl):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    with unchanged(env):
        assert env.cpu.etrackc(encl.phys(OFF_DATA0)) == SgxReturn.SGX_EPC_PAGE_CONFLICT


def test_etrackc_sgx_epc_page_conflict_tracking_busy(env, encl):
    env.cpu.inject_secs_lock(encl.secs, SECS_LOCK_TRACKING)
    with unchanged(env):
        assert env.cpu.etrackc(encl.phys(OFF_DATA0)) == SgxReturn.SGX_EPC_PAGE_CONFLICT


def test_etrackc_sgx_prev_trk_incmpl(env, encl):
    env.enter(encl)
    assert env.cpu.etrackc(encl.secs) == 0
    with unchanged(env):
        assert env.cpu.etrackc(encl.phys(OFF_DATA0)) == SgxReturn.SGX_PREV_TRK_INCMPL
    env.cpu.aex(0)
    assert env.cpu.etrackc(encl.phys(OFF_DATA0)) == 0


def test_etrackc_guest_conflict_exit(env, encl):
    env.cpu.inject_secs_lock(encl.secs, SECS_LOCK_TRACKING)
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.etrackc(encl.phys(OFF_DATA0), ctx=CTX_GUEST)
    assert exc.value.qualification.name == "TRACKING_RESOURCE_CONFLICT"


def test_etrackc_guest_reference_conflict_exit(env, encl):
    env.enter(encl)
    assert env.cpu.etrackc(encl.secs) == 0           # host starts a cycle
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.encls(Encls.ETRACKC, 0, encl.phys(OFF_DATA0), ctx=CTX_GUEST)
    assert exc.value.qualification.name == "TRACKING_REFERENCE_CONFLICT"
    with unchanged(env), pytest.raises(SgxConflictExit):
        env.cpu.etrack(encl.secs, ctx=CTX_GUEST)     # and the guest's own ETRACK too


def test_etrackc_gp_misaligned(env, encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.etrackc(encl.phys(OFF_DATA0) + 0x800)


def test_etrackc_pf_not_epc(env):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.etrackc(env.mem_addr())


def test_etrackc_ud_without_oversub():
    env = Env(oversub=False)
    encl = env.enclave()
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.etrackc(encl.secs)


# =============================================================================== ELDBC / ELDUC

@pytest.fixture
def evicted(env, encl):
    va = env.va()
    return env.evict(encl.phys(OFF_DATA0), va + 8 * 9, secs=encl.secs)


def eld_pi(env, ev, secs):
    return env.pageinfo(linaddr=ev.linaddr, srcpge=ev.srcpge, metadata=ev.pcmd, secs=secs)


@pytest.mark.parametrize("leaf,blocked", [("elduc", False), ("eldbc", True)])
def test_elduc_success(env, encl, evicted, leaf, blocked):
    target = env.free_epc()
    rc = getattr(env.cpu, leaf)(eld_pi(env, evicted, encl.secs), target, evicted.va_slot)
    assert rc == SgxReturn.SGX_SUCCESS
    e = env.epcm(target)
    assert e["valid"] and e["blocked"] == blocked
    assert e["enclaveaddress"] == encl.lin(OFF_DATA0)


@pytest.mark.parametrize("leaf", ["elduc", "eldbc"])
@pytest.mark.parametrize("locked", ["target", "va", "secs"])
def test_elduc_sgx_epc_page_conflict(env, encl, evicted, leaf, locked):
    target = env.free_epc()
    env.cpu.inject_conflict({"target": target, "va": evicted.va_slot & ~0xFFF,
                             "secs": encl.secs}[locked])
    pi = eld_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert getattr(env.cpu, leaf)(pi, target, evicted.va_slot) == \
            SgxReturn.SGX_EPC_PAGE_CONFLICT


@pytest.mark.parametrize("leaf", [Encls.ELDUC, Encls.ELDBC])
def test_elduc_guest_conflict_exit(env, encl, evicted, leaf):
    target = env.free_epc()
    env.cpu.inject_conflict(target)
    pi = eld_pi(env, evicted, encl.secs)
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.encls(leaf, pi, target, evicted.va_slot, ctx=CTX_GUEST)
    assert exc.value.qualification.name == "EPC_PAGE_CONFLICT_ERROR"


def test_elduc_guest_va_conflict_is_an_error_code(env, encl, evicted):
    env.cpu.inject_conflict(evicted.va_slot & ~0xFFF)
    target = env.free_epc()
    pi = eld_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert env.cpu.encls(Encls.ELDUC, pi, target, evicted.va_slot, ctx=CTX_GUEST) == \
            SgxReturn.SGX_EPC_PAGE_CONFLICT


def test_elduc_sgx_mac_compare_fail(env, encl, evicted):
    assert env.cpu.elduc(eld_pi(env, evicted, encl.secs), env.free_epc(), evicted.va_slot) == 0
    target = env.free_epc()
    pi = eld_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert env.cpu.elduc(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL
        assert env.cpu.eldbc(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL


def test_elduc_pf_target_valid(env, encl, evicted):
    pi = eld_pi(env, evicted, encl.secs)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.elduc(pi, encl.phys(OFF_DATA1), evicted.va_slot)


def test_elduc_gp_misaligned_pageinfo(env, encl, evicted):
    pi = eld_pi(env, evicted, encl.secs)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eldbc(pi + 4, env.free_epc(), evicted.va_slot)


def test_elduc_ud_without_oversub():
    env = Env(oversub=False)
    encl = env.enclave()
    va = env.va()
    ev = env.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
    target, pi = env.free_epc(), eld_pi(env, ev, encl.secs)
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.elduc(pi, target, va)
    assert env.cpu.eldu(pi, target, va) == 0


# =============================================================================== E*VIRTCHILD

@pytest.mark.parametrize("which", ["reg", "tcs", "secs_itself"])
def test_eincvirtchild_success(env, encl, which):
    page = {"reg": encl.phys(OFF_DATA0), "tcs": encl.phys(OFF_TCS),
            "secs_itself": encl.secs}[which]
    assert env.cpu.eincvirtchild(page, encl.secs) == SgxReturn.SGX_SUCCESS
    assert env.info(encl)["virtchildcnt"] == 1
    assert env.cpu.enclv(Enclv.EINCVIRTCHILD, page, encl.secs) == 0
    assert env.info(encl)["virtchildcnt"] == 2


def test_edecvirtchild_success(env, encl):
    page = encl.phys(OFF_DATA0)
    for _ in range(3):
        assert env.cpu.eincvirtchild(page, encl.secs) == 0
    assert env.cpu.edecvirtchild(page, encl.secs) == SgxReturn.SGX_SUCCESS
    assert env.cpu.enclv(Enclv.EDECVIRTCHILD, encl.secs, encl.secs) == 0
    assert env.info(encl)["virtchildcnt"] == 1


def test_edecvirtchild_sgx_invalid_counter(env, encl):
    with unchanged(env):
        assert env.cpu.edecvirtchild(encl.phys(OFF_DATA0), encl.secs) == \
            SgxReturn.SGX_INVALID_COUNTER
    assert env.info(encl)["virtchildcnt"] == 0


def test_eincvirtchild_sgx_invalid_counter(env, encl):
    row = env.cpu.st.row[env.cpu.page_index(encl.secs)]
    env.cpu.st.s_vchld[row] = 0xFFFFFFFF    # saturate the 32-bit counter
    with unchanged(env):
        assert env.cpu.eincvirtchild(encl.phys(OFF_DATA0), encl.secs) == \
            SgxReturn.SGX_INVALID_COUNTER
    assert env.info(encl)["virtchildcnt"] == 0xFFFFFFFF
    assert env.cpu.edecvirtchild(encl.phys(OFF_DATA0), encl.secs) == 0


@pytest.mark.parametrize("leaf", ["eincvirtchild", "edecvirtchild"])
@pytest.mark.parametrize("locked", ["page", "secs"])
def test_virtchild_sgx_epc_page_conflict(env, encl, leaf, locked):
    page = encl.phys(OFF_DATA0)
    assert env.cpu.eincvirtchild(page, encl.secs) == 0
    env.cpu.inject_conflict(page if locked == "page" else encl.secs)
    with unchanged(env):
        assert getattr(env.cpu, leaf)(page, encl.secs) == SgxReturn.SGX_EPC_PAGE_CONFLICT


@pytest.mark.parametrize("leaf", ["eincvirtchild", "edecvirtchild"])
def test_virtchild_gp_misaligned(env, encl, leaf):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        getattr(env.cpu, leaf)(encl.phys(OFF_DATA0) + 8, encl.secs)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        getattr(env.cpu, leaf)(encl.phys(OFF_DATA0), encl.secs + 8)


@pytest.mark.parametrize("leaf", ["eincvirtchild", "edecvirtchild"])
def test_virtchild_pf_not_epc(env, encl, leaf):
    with unchanged(env), pytest.raises(PageFault):
        getattr(env.cpu, leaf)(env.mem_addr(), encl.secs)
    with unchanged(env), pytest.raises(PageFault):
        getattr(env.cpu, leaf)(encl.phys(OFF_DATA0), env.mem_addr())


@pytest.mark.parametrize("leaf", ["eincvirtchild", "edecvirtchild"])
@pytest.mark.parametrize("which", ["free", "va"])
def test_virtchild_pf_page(env, encl, leaf, which):
    page = env.free_epc() if which == "free" else env.va()
    with unchanged(env), pytest.raises(PageFault):
        getattr(env.cpu, leaf)(page, encl.secs)


@pytest.mark.parametrize("leaf", ["eincvirtchild", "edecvirtchild"])
@pytest.mark.parametrize("which", ["reg", "free"])
def test_virtchild_pf_secs_not_a_secs(env, encl, leaf, which):
    secs = encl.phys(OFF_DATA1) if which == "reg" else env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        getattr(env.cpu, leaf)(encl.phys(OFF_DATA0), secs)


@pytest.mark.parametrize("leaf", ["eincvirtchild", "edecvirtchild"])
def test_virtchild_gp_page_of_other_enclave(env, encl, leaf):
    other = env.enclave(base=2 * BASE)
    assert env.cpu.eincvirtchild(other.phys(OFF_DATA0), other.secs) == 0
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        getattr(env.cpu, leaf)(other.phys(OFF_DATA0), encl.secs)


def test_virtchild_ud_without_oversub():
    env = Env(oversub=False)
    encl = env.enclave()
    with unchanged(env), pytest.raises(InvalidOpcode):
        env.cpu.eincvirtchild(encl.phys(OFF_DATA0), encl.secs)


# =============================================================================== ESETCONTEXT

def test_esetcontext_success(env, encl):
    assert env.cpu.esetcontext(encl.secs, 0x1234_5000) == SgxReturn.SGX_SUCCESS
    assert env.info(encl)["enclavecontext"] == 0x1234_5000
    assert env.cpu.enclv(Enclv.ESETCONTEXT, 0xABC000, encl.secs) == 0
    assert env.info(encl)["enclavecontext"] == 0xABC000
    assert rdinfo(env, encl.phys(OFF_DATA0))[1].enclavecontext == 0xABC000


def test_esetcontext_restores_context_after_secs_reload(env, encl):
    va = env.va()
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    guest_ctx = env.info(encl)["enclavecontext"]
    rc, ev = env.ewb(encl.secs, va)
    assert rc == 0
    rc, new_secs = env.eldu(ev, 0)
    assert rc == 0
    assert env.cpu.secs_info(new_secs)["enclavecontext"] == new_secs   # reload's own address
    assert env.cpu.esetcontext(new_secs, guest_ctx) == 0
    assert env.cpu.secs_info(new_secs)["enclavecontext"] == guest_ctx


def test_esetcontext_sgx_epc_page_conflict(env, encl):
    env.cpu.inject_conflict(encl.secs)
    with unchanged(env):
        assert env.cpu.esetcontext(encl.secs, 5) == SgxReturn.SGX_EPC_PAGE_CONFLICT


@pytest.mark.parametrize("which", ["reg", "free", "va"])
def test_esetcontext_pf_not_a_secs(env, encl, which):
    page = {"reg": lambda: encl.phys(OFF_DATA0), "free": env.free_epc, "va": env.va}[which]()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.esetcontext(page, 5)


def test_esetcontext_pf_not_epc(env):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.esetcontext(env.mem_addr(), 5)


def test_esetcontext_gp_misaligned(env, encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.esetcontext(encl.secs + 16, 5)


def test_enclv_unknown_leaf_gp(env):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.enclv(9)


# =============================================================================== EUPDATESVN

def test_eupdatesvn_sgx_epc_not_ready(env, encl):
    with unchanged(env):
        assert env.cpu.eupdatesvn() == SgxReturn.SGX_EPC_NOT_READY
    assert env.cpu.encls(Encls.EUPDATESVN) == SgxReturn.SGX_EPC_NOT_READY


def test_eupdatesvn_sgx_no_update(env):
    with unchanged(env):
        assert env.cpu.eupdatesvn() == SgxReturn.SGX_NO_UPDATE


def test_eupdatesvn_after_teardown(env, encl):
    va = env.va()
    for phys in list(encl.built.pages.values()) + [encl.secs, va]:
        assert env.cpu.eremove(phys) == 0
    assert env.cpu.eupdatesvn() == SgxReturn.SGX_NO_UPDATE
