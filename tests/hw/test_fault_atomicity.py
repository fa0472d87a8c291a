"""Faults and error codes leave no state change (Intel SDM vol. 3D).

One busy processor (content mode: the page bytes count too) with two enclaves, a thread
inside, evicted pages, blocked / pending / modified / trimmed pages and a VA page; then a
sample of failing calls, each reaching a different check of a different leaf. Every array
of ``cpu.st`` and all of ordinary memory must be byte-identical afterwards.

The only exception the reference makes, EWB's SGX_VA_SLOT_OCCUPIED, is checked last: it
does change state, and exactly as a successful EWB would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hwenv import (
    ACCEPT_AUG,
    ACCEPT_TRIM,
    BASE,
    FLAGS_REG_RW,
    OFF_CODE,
    OFF_DATA0,
    OFF_DATA1,
    OFF_FREE,
    OFF_SECINFO,
    OFF_TCS,
    Env,
    assert_same,
    snapshot,
)

from epcsim.arch import Attribute, Encls, Enclv, PageType, SgxReturn, secinfo_flags
from epcsim.hw.cpu import ArchFault, SgxConflictExit
from epcsim.hw.crypto import sign_sigstruct
from epcsim.hw.encls import CTX_GUEST
from epcsim.hw.epc import SECS_LOCK_EPOCH, SECS_LOCK_MEASURE, SECS_LOCK_TRACKING


@dataclass
class Busy:
    env: Env
    encl: object
    open: object
    dbg: object
    va: int
    ev: object
    aug: int
    blocked: int
    trim: int
    free: int
    locked: int


def busy_world() -> Busy:
    env = Env(content=True)
    encl = env.enclave()
    open_ = env.enclave(base=2 * BASE, init=False)
    dbg = env.enclave(base=4 * BASE, attributes=int(Attribute.MODE64BIT | Attribute.DEBUG))
    va = env.va()
    ev = env.evict(encl.phys(OFF_CODE), va + 8 * 3, secs=encl.secs)
    env.enter(encl, lp=0)
    aug = env.eaug(encl, OFF_FREE)
    blocked = encl.phys(OFF_DATA0)
    assert env.cpu.eblock(blocked) == 0
    trim = encl.phys(OFF_DATA1)
    assert env.emodt(trim, PageType.TRIM) == 0
    assert env.cpu.etrack(encl.secs) == 0          # LP 0 is now outstanding
    free = env.free_epc()
    locked = env.free_epc()
    env.cpu.inject_conflict(locked)
    env.cpu.inject_secs_lock(dbg.secs, SECS_LOCK_TRACKING | SECS_LOCK_EPOCH)
    env.cpu.inject_secs_lock(open_.secs, SECS_LOCK_MEASURE)
    return Busy(env, encl, open_, dbg, va, ev, aug, blocked, trim, free, locked)


def _cases():
    """name -> f(b) returning a zero-argument call (operands are placed before the snapshot)."""
    def pi(b, **kw):
        return b.env.pageinfo(**kw)

    def ewb_pi(b):
        return pi(b, srcpge=b.env.mem_addr(), metadata=b.env.mem_addr(128, 128))

    def eld_pi(b, **over):
        f = dict(linaddr=b.ev.linaddr, srcpge=b.ev.srcpge, metadata=b.ev.pcmd, secs=b.encl.secs)
        f.update(over)
        return pi(b, **f)

    cases = {
        "ecreate_pf_target_valid": lambda b: (lambda p=pi(b, srcpge=b.env.mem_addr(),
                                                          metadata=b.env.secinfo(0)):
                                              b.env.cpu.ecreate(p, b.encl.secs)),
        "ecreate_gp_bad_secs": lambda b: (lambda p=pi(b, srcpge=b.env.mem_addr(),
                                                      metadata=b.env.secinfo(0)):
                                          b.env.cpu.ecreate(p, b.free)),
        "ecreate_gp_locked": lambda b: (lambda p=pi(b, srcpge=b.env.mem_addr(),
                                                    metadata=b.env.secinfo(0)):
                                        b.env.cpu.ecreate(p, b.locked)),
        "eadd_gp_measure_busy": lambda b: (lambda p=pi(b, linaddr=b.open.lin(OFF_FREE),
                                                       srcpge=b.env.mem_addr(),
                                                       metadata=b.env.secinfo(FLAGS_REG_RW),
                                                       secs=b.open.secs):
                                           b.env.cpu.eadd(p, b.free)),
        "eadd_gp_initialized": lambda b: (lambda p=pi(b, linaddr=b.encl.lin(OFF_FREE + 0x1000),
                                                      srcpge=b.env.mem_addr(),
                                                      metadata=b.env.secinfo(FLAGS_REG_RW),
                                                      secs=b.encl.secs):
                                          b.env.cpu.eadd(p, b.free)),
        "eextend_gp_measure_busy": lambda b: (lambda: b.env.cpu.eextend(
            b.open.secs, b.open.phys(OFF_DATA0))),
        "einit_gp_measure_busy": lambda b: (lambda s=b.env.bm.put(sign_sigstruct(
            b.open.built.mrenclave)), t=b.env.bm.put(bytes(304), 512):
            b.env.cpu.einit(s, b.open.secs, t)),
        "einit_gp_already_initialized": lambda b: (lambda s=b.env.bm.put(sign_sigstruct(
            bytes(32))), t=b.env.bm.put(bytes(304), 512): b.env.cpu.einit(s, b.encl.secs, t)),
        "eremove_sgx_enclave_act": lambda b: (lambda: b.env.cpu.eremove(b.blocked)),
        "eremove_sgx_child_present": lambda b: (lambda: b.env.cpu.eremove(b.encl.secs)),
        "eremove_guest_exit": lambda b: (lambda: b.env.cpu.eremove(b.locked, ctx=CTX_GUEST)),
        "edbgrd_sgx_page_not_debuggable": lambda b: (
            lambda: b.env.cpu.encls(Encls.EDBGRD, 0, b.aug)),
        "edbgwr_gp_not_debug": lambda b: (lambda: b.env.cpu.edbgwr(b.encl.phys(OFF_SECINFO), 1)),
        "epa_pf_valid": lambda b: (lambda: b.env.cpu.epa(b.va)),
        "eblock_sgx_blkstate": lambda b: (lambda: b.env.cpu.eblock(b.blocked)),
        "eblock_sgx_entryepoch_locked": lambda b: (lambda: b.env.cpu.eblock(b.dbg.phys(OFF_DATA0))),
        "eblock_sgx_pg_is_secs": lambda b: (lambda: b.env.cpu.eblock(b.encl.secs)),
        "etrack_sgx_prev_trk_incmpl": lambda b: (lambda: b.env.cpu.etrack(b.encl.secs)),
        "etrack_guest_reference_exit": lambda b: (
            lambda: b.env.cpu.etrack(b.encl.secs, ctx=CTX_GUEST)),
        "etrack_gp_tracking_busy": lambda b: (lambda: b.env.cpu.etrack(b.dbg.secs)),
        "ewb_sgx_not_tracked": lambda b: (lambda p=ewb_pi(b): b.env.cpu.ewb(p, b.blocked, b.va)),
        "ewb_sgx_page_not_blocked": lambda b: (lambda p=ewb_pi(b): b.env.cpu.ewb(
            p, b.encl.phys(OFF_TCS), b.va)),
        "ewb_sgx_child_present": lambda b: (lambda p=ewb_pi(b): b.env.cpu.ewb(
            p, b.encl.secs, b.va)),
        "ewb_pf_slot_not_va": lambda b: (lambda p=ewb_pi(b): b.env.cpu.ewb(
            p, b.blocked, b.aug)),
        "eldu_sgx_mac_compare_fail_linaddr": lambda b: (
            lambda p=eld_pi(b, linaddr=b.encl.lin(OFF_FREE + 0x2000)):
            b.env.cpu.eldu(p, b.free, b.ev.va_slot)),
        "eldb_sgx_mac_compare_fail_other_secs": lambda b: (
            lambda p=eld_pi(b, secs=b.dbg.secs): b.env.cpu.eldb(p, b.free, b.ev.va_slot)),
        "eldu_pf_target_valid": lambda b: (lambda p=eld_pi(b): b.env.cpu.eldu(
            p, b.aug, b.ev.va_slot)),
        "elduc_sgx_epc_page_conflict": lambda b: (lambda p=eld_pi(b): b.env.cpu.elduc(
            p, b.locked, b.ev.va_slot)),
        "eldbc_guest_exit": lambda b: (lambda p=eld_pi(b): b.env.cpu.encls(
            Encls.ELDBC, p, b.locked, b.ev.va_slot, ctx=CTX_GUEST)),
        "eaug_pf_target_valid": lambda b: (lambda p=pi(b, linaddr=b.encl.lin(OFF_FREE + 0x3000),
                                                       secs=b.encl.secs):
                                           b.env.cpu.eaug(p, b.trim)),
        "emodpr_sgx_page_not_modifiable": lambda b: (
            lambda s=b.env.secinfo(secinfo_flags(PageType.REG, 1)): b.env.cpu.emodpr(s, b.aug)),
        "emodt_sgx_page_not_modifiable": lambda b: (
            lambda s=b.env.secinfo(secinfo_flags(PageType.TRIM)): b.env.cpu.emodt(s, b.aug)),
        "emodt_sgx_epc_page_conflict": lambda b: (
            lambda s=b.env.secinfo(secinfo_flags(PageType.TRIM)): b.env.cpu.emodt(s, b.locked)),
        "erdinfo_sgx_pg_invld": lambda b: (lambda o=b.env.mem_addr(32, 32):
                                           b.env.cpu.erdinfo(o, b.free)),
        "etrackc_sgx_track_not_required": lambda b: (lambda: b.env.cpu.etrackc(b.va)),
        "etrackc_sgx_prev_trk_incmpl": lambda b: (lambda: b.env.cpu.etrackc(b.blocked)),
        "edecvirtchild_sgx_invalid_counter": lambda b: (
            lambda: b.env.cpu.edecvirtchild(b.blocked, b.encl.secs)),
        "eincvirtchild_gp_other_enclave": lambda b: (
            lambda: b.env.cpu.enclv(Enclv.EINCVIRTCHILD, b.dbg.phys(OFF_DATA0), b.encl.secs)),
        "esetcontext_pf_not_secs": lambda b: (lambda: b.env.cpu.esetcontext(b.aug, 7)),
        "eupdatesvn_sgx_epc_not_ready": lambda b: (lambda: b.env.cpu.eupdatesvn()),
        "eenter_gp_tcs_busy": lambda b: (lambda: (b.env.cpu.aspace.__setitem__(
            1, b.encl.aspace), b.env.cpu.eenter(1, b.encl.tcs))[1]),
        "eresume_gp_cssa_zero": lambda b: (lambda: (b.env.cpu.aspace.__setitem__(
            2, b.dbg.aspace), b.env.cpu.eresume(2, b.dbg.tcs))[1]),
        "eaccept_sgx_not_tracked": lambda b: (lambda: b.env.cpu.eaccept(
            0, b.encl.lin(OFF_SECINFO), b.encl.lin(OFF_DATA1), flags=ACCEPT_TRIM)),
        "eaccept_sgx_page_attributes_mismatch": lambda b: (lambda: b.env.cpu.eaccept(
            0, b.encl.lin(OFF_SECINFO), b.encl.lin(OFF_FREE),
            flags=ACCEPT_AUG | secinfo_flags(0, 4))),
        "eacceptcopy_sgx_page_attributes_mismatch": lambda b: (lambda: b.env.cpu.eacceptcopy(
            0, b.encl.lin(OFF_SECINFO), b.encl.lin(OFF_SECINFO), b.encl.lin(OFF_SECINFO),
            flags=FLAGS_REG_RW)),
        "enclu_gp_unknown": lambda b: (lambda: b.env.cpu.enclu(0, 0x3F)),
    }
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_failing_call_changes_nothing(name):
    b = busy_world()
    call = CASES[name](b)
    enclu = name.startswith(("eaccept", "enclu"))
    before = snapshot(b.env.cpu)
    try:
        rc = call()
    except (ArchFault, SgxConflictExit):
        rc = None
    assert rc is None or (isinstance(rc, SgxReturn) and rc != SgxReturn.SGX_SUCCESS
                          and rc != SgxReturn.SGX_VA_SLOT_OCCUPIED), rc
    after = snapshot(b.env.cpu)
    if enclu and not b.env.cpu.inside(0):           # an enclave-mode fault taken as AEX
        for field in ("lp_row", "lp_epoch", "lp_tcs", "tcs", "s_refcnt", "s_prev"):
            before[0][field] = after[0][field]
    assert_same(before, after)


def test_va_slot_occupied_changes_exactly_what_a_successful_ewb_does():
    """Two identical worlds: EWB into a free slot vs. into an occupied one."""
    results = []
    for occupied in (False, True):
        env = Env(content=True, seed=5)
        encl = env.enclave()
        va = env.va()
        if occupied:
            env.cpu.st.va_slots[env.cpu.st.row[env.cpu.page_index(va)], 9] = 12345
        assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
        assert env.cpu.etrack(encl.secs) == 0
        rc, _ = env.ewb(encl.phys(OFF_DATA0), va + 8 * 9)
        results.append((rc, snapshot(env.cpu)))
    (rc_free, free), (rc_occ, occ) = results
    assert rc_free == SgxReturn.SGX_SUCCESS
    assert rc_occ == SgxReturn.SGX_VA_SLOT_OCCUPIED
    assert_same(free, occ)
    assert np.array_equal(free[0]["va_slots"], occ[0]["va_slots"])
