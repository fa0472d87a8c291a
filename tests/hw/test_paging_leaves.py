"""EPA, EBLOCK, ETRACK, EWB, ELDB/ELDU (Intel SDM vol. 3D).

The epoch model, child counting, VA slots and sealing have files of their own; this one
checks each leaf's success path and every error code and fault it can give.
"""

from __future__ import annotations

import pytest
from hwenv import (
    BASE,
    OFF_CODE,
    OFF_DATA0,
    OFF_DATA1,
    OFF_TCS,
    RW,
    Env,
    unchanged,
)

from epcsim.arch import Encls, PageInfo, PageType, Pcmd, SgxReturn, secinfo_flags
from epcsim.hw.cpu import GeneralProtectionFault, PageFault, SgxConflictExit
from epcsim.hw.encls import CTX_GUEST
from epcsim.hw.epc import SECS_LOCK_EPOCH, SECS_LOCK_TRACKING

ONES = 0xFFFFFFFFFFFFFFFF


def ewb_pi(env: Env, *, linaddr: int = 0, secs: int = 0, srcpge: int | None = None,
           pcmd: int | None = None) -> int:
    src = env.mem_addr() if srcpge is None else srcpge
    pc = env.mem_addr(128, 128) if pcmd is None else pcmd
    return env.pageinfo(linaddr=linaddr, srcpge=src, metadata=pc, secs=secs)


def eldu_pi(env: Env, ev, secs: int, **over: int) -> int:
    fields = dict(linaddr=ev.linaddr, srcpge=ev.srcpge, metadata=ev.pcmd, secs=secs)
    fields.update(over)
    return env.pageinfo(**fields)


@pytest.fixture
def va(env):
    return env.va()


@pytest.fixture
def evicted(env, encl, va):
    """DATA0 evicted into slot 3 of ``va``."""
    return env.evict(encl.phys(OFF_DATA0), va + 8 * 3, secs=encl.secs)


# =============================================================================== EPA

def test_epa_success(env):
    page = env.free_epc()
    assert env.cpu.epa(page) == SgxReturn.SGX_SUCCESS
    e = env.epcm(page)
    assert e["valid"] and e["pt"] == PageType.VA
    assert not (e["r"] or e["w"] or e["x"] or e["blocked"])
    assert env.cpu.encls(Encls.EPA, PageType.VA, env.free_epc()) == 0


def test_epa_slots_start_free(env, encl):
    va = env.va()
    env.evict(encl.phys(OFF_DATA0), va + 8, secs=encl.secs)
    assert env.slot_occupied(va + 8)
    assert env.cpu.eremove(va) == 0
    assert env.cpu.epa(va) == 0   # the same page again: every slot is free
    assert [env.slot_occupied(va + 8 * i) for i in (0, 1, 2, 511)] == [False] * 4


@pytest.mark.parametrize("rbx", [0, 2, 4, 0x103])
def test_epa_gp_rbx_not_pt_va(env, rbx):
    page = env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.encls(Encls.EPA, rbx, page)


def test_epa_gp_misaligned(env):
    page = env.free_epc()
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.epa(page + 0x40)


def test_epa_pf_not_epc(env):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.epa(env.mem_addr())


def test_epa_gp_page_locked(env):
    page = env.free_epc()
    env.cpu.inject_conflict(page)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.epa(page)


@pytest.mark.parametrize("which", ["va", "reg", "secs"])
def test_epa_pf_page_valid(env, encl, which):
    page = {"va": env.va, "reg": lambda: encl.phys(OFF_DATA0), "secs": lambda: encl.secs}[which]()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.epa(page)


# =============================================================================== EBLOCK

@pytest.mark.parametrize("off", [OFF_DATA0, OFF_TCS, OFF_CODE])
def test_eblock_success(env, encl, off):
    page = encl.phys(off)
    assert env.cpu.eblock(page) == SgxReturn.SGX_SUCCESS
    assert env.epcm(page)["blocked"]
    assert env.epcm(page)["valid"]


def test_eblock_trim_page_success(env, encl):
    page = encl.phys(OFF_DATA1)
    assert env.emodt(page, PageType.TRIM) == 0
    assert env.cpu.eblock(page) == 0
    assert env.epcm(page)["blocked"]


def test_eblock_sgx_blkstate(env, encl):
    page = encl.phys(OFF_DATA0)
    assert env.cpu.eblock(page) == 0
    with unchanged(env):
        assert env.cpu.eblock(page) == SgxReturn.SGX_BLKSTATE


def test_eblock_sgx_pg_invld(env):
    page = env.free_epc()
    with unchanged(env):
        assert env.cpu.eblock(page) == SgxReturn.SGX_PG_INVLD


def test_eblock_sgx_pg_is_secs(env, encl):
    with unchanged(env):
        assert env.cpu.eblock(encl.secs) == SgxReturn.SGX_PG_IS_SECS


def test_eblock_sgx_notblockable(env, va):
    with unchanged(env):
        assert env.cpu.eblock(va) == SgxReturn.SGX_NOTBLOCKABLE


def test_eblock_sgx_epc_page_conflict(env, encl):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    with unchanged(env):
        assert env.cpu.eblock(encl.phys(OFF_DATA0)) == SgxReturn.SGX_EPC_PAGE_CONFLICT


def test_eblock_sgx_entryepoch_locked(env, encl):
    env.cpu.inject_secs_lock(encl.secs, SECS_LOCK_EPOCH)
    with unchanged(env):
        assert env.cpu.eblock(encl.phys(OFF_DATA0)) == SgxReturn.SGX_ENTRYEPOCH_LOCKED
    env.cpu.clear_injections()
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0  # software retries


def test_eblock_gp_misaligned(env, encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.eblock(encl.phys(OFF_DATA0) + 0x200)


def test_eblock_pf_not_epc(env):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eblock(env.mem_addr())


# =============================================================================== ETRACK

def test_etrack_success(env, encl):
    before = env.info(encl)["cbepoch"]
    assert env.cpu.etrack(encl.secs) == SgxReturn.SGX_SUCCESS
    assert env.info(encl)["cbepoch"] == before + 1
    assert env.cpu.etrack(encl.secs) == 0  # nobody inside: the cycle completes at once


def test_etrack_sgx_prev_trk_incmpl(env, encl):
    env.enter(encl)
    assert env.cpu.etrack(encl.secs) == 0
    with unchanged(env):
        assert env.cpu.etrack(encl.secs) == SgxReturn.SGX_PREV_TRK_INCMPL
    env.cpu.aex(0)
    assert env.cpu.etrack(encl.secs) == 0


def test_etrack_gp_misaligned(env, encl):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.etrack(encl.secs + 8)


def test_etrack_pf_not_epc(env):
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.etrack(env.mem_addr())


@pytest.mark.parametrize("which", ["reg", "free", "va"])
def test_etrack_pf_not_a_secs(env, encl, which):
    page = {"reg": lambda: encl.phys(OFF_DATA0), "free": env.free_epc, "va": env.va}[which]()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.etrack(page)


def test_etrack_gp_tracking_resource_busy(env, encl):
    env.cpu.inject_secs_lock(encl.secs, SECS_LOCK_TRACKING)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.etrack(encl.secs)


def test_etrack_gp_secs_page_locked(env, encl):
    env.cpu.inject_conflict(encl.secs)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.etrack(encl.secs)


def test_etrack_guest_conflict_exit(env, encl):
    env.cpu.inject_secs_lock(encl.secs, SECS_LOCK_TRACKING)
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.etrack(encl.secs, ctx=CTX_GUEST)
    assert exc.value.reason == 71
    assert exc.value.qualification.name == "TRACKING_RESOURCE_CONFLICT"


def test_etrack_guest_reference_conflict_exit(env, encl):
    """SECS.TRACKING != 0 in a guest with the extension: VM exit, not PREV_TRK_INCMPL."""
    env.enter(encl)
    assert env.cpu.etrack(encl.secs, ctx=CTX_GUEST) == 0
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.etrack(encl.secs, ctx=CTX_GUEST)
    assert exc.value.qualification.name == "TRACKING_REFERENCE_CONFLICT"


def test_etrack_guest_success(env, encl):
    assert env.cpu.etrack(encl.secs, ctx=CTX_GUEST) == 0


# =============================================================================== EWB

def test_ewb_success(env, encl, va):
    page, slot = encl.phys(OFF_DATA0), va + 8 * 7
    before = env.info(encl)
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl.secs) == 0
    pcmd = env.mem_addr(128, 128)
    pi = ewb_pi(env, pcmd=pcmd)
    assert env.cpu.ewb(pi, page, slot) == SgxReturn.SGX_SUCCESS
    assert not env.epcm(page)["valid"]
    assert env.info(encl)["chldcnt"] == before["chldcnt"] - 1
    assert env.slot_occupied(slot)
    assert not env.slot_occupied(slot + 8)
    p = Pcmd.unpack(env.cpu.mem.read(pcmd, Pcmd.SIZE))
    assert p.secinfo.flags == secinfo_flags(PageType.REG, RW)
    assert p.enclave_id == before["eid"]
    assert not p.reserved_nonzero() and not p.secinfo.reserved_nonzero()
    assert p.mac != bytes(16)
    # EWB writes the page's ENCLAVEADDRESS back into PAGEINFO.LINADDR.
    assert PageInfo.unpack(env.cpu.mem.read(pi, 32)).linaddr == encl.lin(OFF_DATA0)


def test_ewb_tcs_success(env, encl, va):
    ev = env.evict(encl.phys(OFF_TCS), va, secs=encl.secs)
    assert ev.linaddr == encl.lin(OFF_TCS)
    assert env.read_pcmd(ev).secinfo.flags == secinfo_flags(PageType.TCS)


def test_ewb_va_page_needs_no_block_or_track(env, encl, va):
    env.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
    va2 = env.va()
    rc, ev = env.ewb(va, va2 + 8)
    assert rc == 0
    assert not env.epcm(va)["valid"]
    p = env.read_pcmd(ev)
    assert p.secinfo.flags == secinfo_flags(PageType.VA)
    assert p.enclave_id == 0 and ev.linaddr == 0


def test_ewb_secs_success(env, encl, va):
    eid = env.info(encl)["eid"]
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    rc, ev = env.ewb(encl.secs, va)
    assert rc == 0
    assert not env.epcm(encl.secs)["valid"]
    p = env.read_pcmd(ev)
    assert p.secinfo.flags == secinfo_flags(PageType.SECS)
    assert p.enclave_id == eid


def test_ewb_sgx_page_not_blocked(env, encl, va):
    pi = ewb_pi(env)
    with unchanged(env):
        assert env.cpu.ewb(pi, encl.phys(OFF_DATA0), va) == SgxReturn.SGX_PAGE_NOT_BLOCKED


def test_ewb_sgx_not_tracked(env, encl, va):
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    pi = ewb_pi(env)
    with unchanged(env):
        assert env.cpu.ewb(pi, encl.phys(OFF_DATA0), va) == SgxReturn.SGX_NOT_TRACKED


def test_ewb_sgx_child_present(env, encl, va):
    pi = ewb_pi(env)
    with unchanged(env):
        assert env.cpu.ewb(pi, encl.secs, va) == SgxReturn.SGX_CHILD_PRESENT


def test_ewb_guest_virtchildcnt_child_present(env, encl, va):
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    assert env.cpu.eincvirtchild(encl.secs, encl.secs) == 0
    pi = ewb_pi(env)
    with unchanged(env):
        assert env.cpu.ewb(pi, encl.secs, va, ctx=CTX_GUEST) == SgxReturn.SGX_CHILD_PRESENT
    assert env.cpu.ewb(pi, encl.secs, va) == 0  # the host does not consult VIRTCHILDCNT


def test_ewb_sgx_va_slot_occupied(env, encl, va):
    a, b = encl.phys(OFF_DATA0), encl.phys(OFF_DATA1)
    chld = env.info(encl)["chldcnt"]
    env.evict(a, va + 16, secs=encl.secs)
    assert env.cpu.eblock(b) == 0
    assert env.cpu.etrack(encl.secs) == 0
    rc, ev_b = env.ewb(b, va + 16)
    assert rc == SgxReturn.SGX_VA_SLOT_OCCUPIED
    assert not env.epcm(b)["valid"]                      # the write-out still happened
    assert env.info(encl)["chldcnt"] == chld - 2
    assert env.slot_occupied(va + 16)
    assert env.eldu(ev_b, encl.secs)[0] == 0             # the new version is the live one


def test_ewb_gp_misaligned_pageinfo(env, encl, va):
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi + 8, encl.phys(OFF_DATA0), va)


def test_ewb_gp_misaligned_target(env, encl, va):
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0) + 0x10, va)


def test_ewb_pf_target_not_epc(env, va):
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.ewb(pi, env.mem_addr(), va)


def test_ewb_gp_misaligned_slot(env, encl, va):
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va + 4)


def test_ewb_pf_slot_not_epc(env, encl):
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), env.mem_addr())


def test_ewb_gp_slot_in_target_page(env, va):
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, va, va + 8)


@pytest.mark.parametrize("field", ["linaddr", "secs"])
def test_ewb_gp_pageinfo_field_nonzero(env, encl, va, field):
    env.cpu.eblock(encl.phys(OFF_DATA0))
    env.cpu.etrack(encl.secs)
    pi = ewb_pi(env, **{field: encl.secs})
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va)


def test_ewb_gp_misaligned_pcmd(env, encl, va):
    pi = ewb_pi(env, pcmd=env.mem_addr(256, 128) + 64)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va)


def test_ewb_gp_misaligned_srcpge(env, encl, va):
    pi = ewb_pi(env, srcpge=env.mem_addr(8192) + 0x800)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va)


def test_ewb_gp_target_locked(env, encl, va):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va)


def test_ewb_gp_va_page_locked(env, encl, va):
    env.cpu.inject_conflict(va)
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va)


def test_ewb_guest_conflict_exit(env, encl, va):
    env.cpu.inject_conflict(encl.phys(OFF_DATA0))
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), va, ctx=CTX_GUEST)
    assert exc.value.qualification.name == "EPC_PAGE_CONFLICT_EXCEPTION"


def test_ewb_pf_target_invalid(env, va):
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.ewb(pi, env.free_epc(), va)


@pytest.mark.parametrize("which", ["reg", "free", "secs"])
def test_ewb_pf_slot_page_not_va(env, encl, which):
    page = {"reg": lambda: encl.phys(OFF_DATA1), "free": env.free_epc,
            "secs": lambda: encl.secs}[which]()
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    assert env.cpu.etrack(encl.secs) == 0
    pi = ewb_pi(env)
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.ewb(pi, encl.phys(OFF_DATA0), page + 8)


# =============================================================================== ELDU / ELDB

def test_eldu_success(env, encl, va, evicted):
    chld = env.info(encl)["chldcnt"]
    target = env.free_epc()
    assert env.cpu.eldu(eldu_pi(env, evicted, encl.secs), target, evicted.va_slot) == 0
    e = env.epcm(target)
    assert e["valid"] and e["pt"] == PageType.REG and (e["r"], e["w"], e["x"]) == (1, 1, 0)
    assert not (e["blocked"] or e["pending"] or e["modified"] or e["pr"])
    assert e["enclaveaddress"] == encl.lin(OFF_DATA0) and e["enclavesecs"] == encl.secs
    assert env.info(encl)["chldcnt"] == chld + 1
    assert not env.slot_occupied(evicted.va_slot)


def test_eldb_success(env, encl, va, evicted):
    target = env.free_epc()
    assert env.cpu.eldb(eldu_pi(env, evicted, encl.secs), target, evicted.va_slot) == 0
    e = env.epcm(target)
    assert e["valid"] and e["blocked"] and e["pt"] == PageType.REG
    # A page reloaded blocked can be written back again without another EBLOCK.
    assert env.cpu.etrack(encl.secs) == 0
    assert env.ewb(target, va + 8)[0] == 0


def test_eldu_tcs_success(env, encl, va):
    ev = env.evict(encl.phys(OFF_TCS), va, secs=encl.secs)
    rc, target = env.eldu(ev, encl.secs)
    assert rc == 0
    assert env.epcm(target)["pt"] == PageType.TCS
    encl.aspace.map(encl.tcs, target, 7)
    env.enter(encl)  # the reloaded TCS is usable


def test_eldu_sgx_mac_compare_fail_replay(env, encl, va, evicted):
    assert env.eldu(evicted, encl.secs)[0] == 0
    target = env.free_epc()
    pi = eldu_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert env.cpu.eldu(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL
    assert not env.epcm(target)["valid"]


def test_eldu_sgx_mac_compare_fail_wrong_slot(env, encl, va, evicted):
    target = env.free_epc()
    pi = eldu_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert env.cpu.eldu(pi, target, evicted.va_slot + 8) == SgxReturn.SGX_MAC_COMPARE_FAIL


def test_eldu_sgx_mac_compare_fail_linaddr(env, encl, va, evicted):
    target = env.free_epc()
    pi = eldu_pi(env, evicted, encl.secs, linaddr=encl.lin(OFF_DATA1))
    with unchanged(env):
        assert env.cpu.eldu(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL


def test_eldu_sgx_mac_compare_fail_other_enclave(env, encl, va, evicted):
    other = env.enclave(base=2 * BASE)
    target = env.free_epc()
    pi = eldu_pi(env, evicted, other.secs)
    with unchanged(env):
        assert env.cpu.eldu(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL


def test_eldu_sgx_mac_compare_fail_secinfo(env, encl, va, evicted):
    p = env.read_pcmd(evicted)
    env.write_pcmd(evicted, Pcmd(secinfo=type(p.secinfo)(flags=p.secinfo.flags | 0x4),
                                 enclave_id=p.enclave_id, mac=p.mac))
    target = env.free_epc()
    pi = eldu_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert env.cpu.eldu(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL


def test_eldb_sgx_mac_compare_fail(env, encl, va, evicted):
    env.flip_mem(evicted.pcmd + 112)
    target = env.free_epc()
    pi = eldu_pi(env, evicted, encl.secs)
    with unchanged(env):
        assert env.cpu.eldb(pi, target, evicted.va_slot) == SgxReturn.SGX_MAC_COMPARE_FAIL


def _eldu_fault(env: Env, exc: type, pi: int, target: int, slot: int, leaf=None) -> None:
    leaf = leaf or env.cpu.eldu
    with unchanged(env), pytest.raises(exc):
        leaf(pi, target, slot)


@pytest.mark.parametrize("leaf", ["eldu", "eldb"])
def test_eldu_gp_misaligned_pageinfo(env, encl, evicted, leaf):
    pi = eldu_pi(env, evicted, encl.secs)
    _eldu_fault(env, GeneralProtectionFault, pi + 16, env.free_epc(), evicted.va_slot,
                getattr(env.cpu, leaf))


def test_eldu_gp_misaligned_target(env, encl, evicted):
    pi = eldu_pi(env, evicted, encl.secs)
    _eldu_fault(env, GeneralProtectionFault, pi, env.free_epc() + 8, evicted.va_slot)


def test_eldu_pf_target_not_epc(env, encl, evicted):
    pi = eldu_pi(env, evicted, encl.secs)
    _eldu_fault(env, PageFault, pi, env.mem_addr(), evicted.va_slot)


def test_eldu_gp_misaligned_slot(env, encl, evicted):
    pi = eldu_pi(env, evicted, encl.secs)
    _eldu_fault(env, GeneralProtectionFault, pi, env.free_epc(), evicted.va_slot + 1)


def test_eldu_pf_slot_not_epc(env, encl, evicted):
    pi = eldu_pi(env, evicted, encl.secs)
    _eldu_fault(env, PageFault, pi, env.free_epc(), env.mem_addr())


def test_eldu_gp_misaligned_pcmd(env, encl, evicted):
    pcmd = env.mem_addr(256, 128) + 32
    env.cpu.mem.write(pcmd, env.cpu.mem.read(evicted.pcmd, 128))
    pi = eldu_pi(env, evicted, encl.secs, metadata=pcmd)
    _eldu_fault(env, GeneralProtectionFault, pi, env.free_epc(), evicted.va_slot)


def test_eldu_gp_misaligned_srcpge(env, encl, evicted):
    pi = eldu_pi(env, evicted, encl.secs, srcpge=evicted.srcpge + 0x100)
    _eldu_fault(env, GeneralProtectionFault, pi, env.free_epc(), evicted.va_slot)


def test_eldu_gp_target_locked(env, encl, evicted):
    target = env.free_epc()
    env.cpu.inject_conflict(target)
    _eldu_fault(env, GeneralProtectionFault, eldu_pi(env, evicted, encl.secs), target,
                evicted.va_slot)


def test_eldu_gp_va_locked(env, encl, va, evicted):
    env.cpu.inject_conflict(va)
    _eldu_fault(env, GeneralProtectionFault, eldu_pi(env, evicted, encl.secs), env.free_epc(),
                evicted.va_slot)


def test_eldu_guest_conflict_exit(env, encl, evicted):
    target = env.free_epc()
    env.cpu.inject_conflict(target)
    pi = eldu_pi(env, evicted, encl.secs)
    with unchanged(env), pytest.raises(SgxConflictExit) as exc:
        env.cpu.encls(Encls.ELDU, pi, target, evicted.va_slot, ctx=CTX_GUEST)
    assert exc.value.qualification.name == "EPC_PAGE_CONFLICT_EXCEPTION"


def test_eldu_pf_target_valid(env, encl, evicted):
    _eldu_fault(env, PageFault, eldu_pi(env, evicted, encl.secs), encl.phys(OFF_DATA1),
                evicted.va_slot)


@pytest.mark.parametrize("which", ["reg", "free"])
def test_eldu_pf_slot_page_not_va(env, encl, evicted, which):
    page = encl.phys(OFF_DATA1) if which == "reg" else env.free_epc()
    _eldu_fault(env, PageFault, eldu_pi(env, evicted, encl.secs), env.free_epc(), page + 24)


def test_eldu_gp_misaligned_secs(env, encl, evicted):
    pi = eldu_pi(env, evicted, encl.secs + 0x20)
    _eldu_fault(env, GeneralProtectionFault, pi, env.free_epc(), evicted.va_slot)


def test_eldu_pf_secs_not_epc(env, encl, evicted):
    pi = eldu_pi(env, evicted, env.mem_addr())
    _eldu_fault(env, PageFault, pi, env.free_epc(), evicted.va_slot)


def test_eldu_gp_secs_locked(env, encl, evicted):
    env.cpu.inject_conflict(encl.secs)
    _eldu_fault(env, GeneralProtectionFault, eldu_pi(env, evicted, encl.secs), env.free_epc(),
                evicted.va_slot)


@pytest.mark.parametrize("which", ["reg", "free", "va"])
def test_eldu_pf_secs_not_a_secs(env, encl, evicted, which):
    page = {"reg": lambda: encl.phys(OFF_DATA1), "free": env.free_epc, "va": env.va}[which]()
    _eldu_fault(env, PageFault, eldu_pi(env, evicted, page), env.free_epc(), evicted.va_slot)


def test_eldu_target_checks_precede_secs_checks(env, encl, evicted):
    """Target VALID (#PF) is checked before the PAGEINFO.SECS operand (Intel SDM vol. 3D)."""
    pi = eldu_pi(env, evicted, encl.secs + 0x20)   # misaligned SECS would be #GP
    _eldu_fault(env, PageFault, pi, encl.phys(OFF_DATA1), evicted.va_slot)


def test_eldu_va_page_ignores_secs_operand(env, encl, va, evicted):
    va2 = env.va()
    rc, ev = env.ewb(va, va2)
    assert rc == 0
    pi = env.pageinfo(linaddr=0, srcpge=ev.srcpge, metadata=ev.pcmd, secs=0xDEAD_BEE0)
    target = env.free_epc()
    assert env.cpu.eldu(pi, target, va2) == 0
    assert env.epcm(target)["pt"] == PageType.VA
