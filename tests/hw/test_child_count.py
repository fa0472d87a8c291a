"""SECS.CHLDCNT (Intel SDM vol. 3D) and SECS eviction / reload ordering."""

from __future__ import annotations

import pytest
from hwenv import (
    BASE,
    DATA0,
    DATA1,
    OFF_DATA0,
    OFF_DATA1,
    OFF_FREE,
    OFF_TCS,
    Env,
    unchanged,
)

from epcsim.arch import PageType, SgxReturn
from epcsim.hw.cpu import PageFault


def resident_children(env: Env, secs: int) -> int:
    """Count VALID child pages whose EPCM names ``secs``, by walking the whole EPC."""
    n = 0
    for page in range(env.cpu.npages):
        e = env.cpu.epcm(env.cpu.page_addr(page))
        if e["valid"] and e.get("enclavesecs") == secs:
            n += 1
    return n


def check(env: Env, secs: int, expected: int) -> None:
    assert env.cpu.secs_info(secs)["chldcnt"] == expected == resident_children(env, secs)


def test_chldcnt_follows_every_leaf(env):
    encl = env.enclave(init=False)
    n = len(encl.built.pages)
    check(env, encl.secs, n)                               # EADD: +1 each
    env.bm.einit(encl.built)
    env.eaug(encl, OFF_FREE)
    check(env, encl.secs, n + 1)                           # EAUG: +1
    va = env.va()
    check(env, encl.secs, n + 1)                           # EPA: VA pages have no owner
    ev = env.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
    check(env, encl.secs, n)                               # EWB: -1
    rc, _ = env.eldu(ev, encl.secs)
    assert rc == 0
    check(env, encl.secs, n + 1)                           # ELDU: +1
    assert env.emodt(encl.phys(OFF_DATA1), PageType.TRIM) == 0
    check(env, encl.secs, n + 1)                           # EMODT: no change
    assert env.cpu.eremove(encl.phys(OFF_DATA1)) == 0
    check(env, encl.secs, n)                               # EREMOVE: -1
    ev = env.evict(encl.phys(OFF_TCS), va + 8, secs=encl.secs)
    check(env, encl.secs, n - 1)
    rc, _ = env.eldu(ev, encl.secs, blocked=True)          # ELDB: +1 as well
    assert rc == 0
    check(env, encl.secs, n)


def test_failed_leaves_leave_chldcnt(env, encl):
    n = env.info(encl)["chldcnt"]
    va = env.va()
    assert env.ewb(encl.phys(OFF_DATA0), va)[0] == SgxReturn.SGX_PAGE_NOT_BLOCKED
    env.enter(encl)
    assert env.cpu.eremove(encl.phys(OFF_DATA0)) == SgxReturn.SGX_ENCLAVE_ACT
    check(env, encl.secs, n)


def test_chldcnt_is_per_enclave(env, encl):
    other = env.enclave(base=2 * BASE)
    n = env.info(encl)["chldcnt"]
    assert env.cpu.eremove(other.phys(OFF_DATA0)) == 0
    check(env, encl.secs, n)
    check(env, other.secs, n - 1)


def test_eremove_and_ewb_of_secs_with_children(env, encl):
    va = env.va()
    pi = env.pageinfo(srcpge=env.mem_addr(), metadata=env.mem_addr(128, 128))
    with unchanged(env):
        assert env.cpu.eremove(encl.secs) == SgxReturn.SGX_CHILD_PRESENT
        assert env.cpu.ewb(pi, encl.secs, va) == SgxReturn.SGX_CHILD_PRESENT
    # Evicting all but one child is not enough either.
    pages = list(encl.built.pages.values())
    for phys in pages[:-1]:
        assert env.cpu.eblock(phys) == 0
    assert env.cpu.etrack(encl.secs) == 0
    for i, phys in enumerate(pages[:-1]):
        assert env.ewb(phys, va + 8 * (i + 1))[0] == 0
    assert env.cpu.ewb(pi, encl.secs, va) == SgxReturn.SGX_CHILD_PRESENT
    assert env.cpu.eremove(pages[-1]) == 0
    assert env.cpu.ewb(pi, encl.secs, va) == SgxReturn.SGX_SUCCESS


def test_secs_evicted_after_children_then_reloaded(anyenv):
    env = anyenv
    encl = env.enclave()
    eid = env.info(encl)["eid"]
    mr = env.info(encl)["mrenclave"]
    va = env.va()
    evicted = {}
    slot = 0
    for _lin, phys in sorted(encl.built.pages.items()):
        assert env.cpu.eblock(phys) == 0
    assert env.cpu.etrack(encl.secs) == 0
    for lin, phys in sorted(encl.built.pages.items()):
        rc, ev = env.ewb(phys, va + 8 * slot)
        assert rc == 0
        evicted[lin] = ev
        slot += 1
    check(env, encl.secs, 0)
    rc, secs_blob = env.ewb(encl.secs, va + 8 * slot)
    assert rc == 0
    assert not env.epcm(encl.secs)["valid"]

    # A child cannot come back while its SECS is out: PAGEINFO.SECS is not a SECS.
    first = next(iter(evicted.values()))
    pi = env.pageinfo(linaddr=first.linaddr, srcpge=first.srcpge, metadata=first.pcmd,
                      secs=encl.secs)
    target = env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eldu(pi, target, first.va_slot)

    # The SECS first (to another EPC page), then every child.
    rc, new_secs = env.eldu(secs_blob, 0)
    assert rc == 0 and new_secs != encl.secs
    info = env.cpu.secs_info(new_secs)
    assert info["eid"] == eid and info["mrenclave"] == mr and info["chldcnt"] == 0
    for lin, ev in evicted.items():
        rc, page = env.eldu(ev, new_secs)
        assert rc == 0
        env.map(encl, lin, page)
    check(env, new_secs, len(evicted))

    # The reloaded enclave runs, and its pages still hold their bytes.
    env.enter(encl)
    expect = (DATA0[:16], DATA1[:16]) if env.content else (bytes(16), bytes(16))
    assert env.cpu.enclave_read(0, encl.lin(OFF_DATA0), 16) == expect[0]
    assert env.cpu.enclave_read(0, encl.lin(OFF_DATA1), 16) == expect[1]


def test_secs_blob_cannot_reload_twice(env, encl):
    va = env.va()
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    rc, blob = env.ewb(encl.secs, va)
    assert rc == 0
    assert env.eldu(blob, 0)[0] == 0
    rc, target = env.eldu(blob, 0)
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL
    assert not env.epcm(target)["valid"]


def test_secs_blob_of_removed_enclave_cannot_reload(env):
    """Reloading a SECS blob into a slot that a later version overwrote fails."""
    encl = env.enclave()
    va = env.va()
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    rc, blob = env.ewb(encl.secs, va)
    assert rc == 0
    rc, secs2 = env.eldu(blob, 0)
    assert rc == 0
    assert env.cpu.eremove(secs2) == 0
    rc, _target = env.eldu(blob, 0)
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL
