"""What EWB seals and what ELDU verifies (Intel SDM vol. 3D).

Every tamper test runs in content mode (AES-GCM over real bytes) and in metadata mode (the
keyed 64-bit MAC over the same record), and ends by reloading the genuine blob, so the
failure is shown to come from the tampering and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hwenv import (
    BASE,
    DATA0,
    OFF_DATA0,
    OFF_DATA1,
    OFF_SSA,
    OFF_TCS,
    Env,
    unchanged,
)

from epcsim.arch import PAGE_SIZE, PageType, Secinfo, Secs, SgxReturn, Tcs

MAC_FAIL = SgxReturn.SGX_MAC_COMPARE_FAIL


@pytest.fixture
def sealed(anyenv):
    env = anyenv
    encl = env.enclave()
    va = env.va()
    ev = env.evict(encl.phys(OFF_DATA0), va + 8 * 42, secs=encl.secs)
    return env, encl, ev


def refused(env: Env, ev, secs: int, **pi_over: int) -> None:
    """ELDU of ``ev`` fails with MAC_COMPARE_FAIL, changes nothing, leaves the target free."""
    fields = dict(linaddr=ev.linaddr, srcpge=ev.srcpge, metadata=ev.pcmd, secs=secs)
    fields.update(pi_over)
    pi = env.pageinfo(**fields)
    target = env.free_epc()
    with unchanged(env):
        assert env.cpu.eldu(pi, target, ev.va_slot) == MAC_FAIL
    assert not env.epcm(target)["valid"]
    assert env.slot_occupied(ev.va_slot)


def genuine_reloads(env: Env, ev, secs: int, expect: bytes | None = DATA0) -> int:
    rc, target = env.eldu(ev, secs)
    assert rc == 0
    if env.content and expect is not None:
        assert env.cpu.st.data[env.cpu.page_index(target)].tobytes() == expect
    return target


# =============================================================================== round trips

def test_reloaded_page_has_its_exact_bytes(cenv):
    encl = cenv.enclave()
    cenv.enter(encl)
    secret = os.urandom(PAGE_SIZE)
    for off in range(0, PAGE_SIZE, 512):
        cenv.cpu.enclave_write(0, encl.lin(OFF_DATA1) + off, secret[off:off + 512])
    cenv.cpu.eexit(0)
    page = encl.phys(OFF_DATA1)
    va = cenv.va()
    ev = cenv.evict(page, va, secs=encl.secs)
    ct = cenv.cpu.mem.read(ev.srcpge, PAGE_SIZE)
    assert ct != secret and secret[:64] not in ct                 # sealed, not copied
    assert not cenv.cpu.st.data[cenv.cpu.page_index(page)].any()  # the frame is wiped
    rc, target = cenv.eldu(ev, encl.secs)
    assert rc == 0
    cenv.map(encl, encl.lin(OFF_DATA1), target)
    cenv.enter(encl)
    got = b"".join(cenv.cpu.enclave_read(0, encl.lin(OFF_DATA1) + off, 512)
                   for off in range(0, PAGE_SIZE, 512))
    assert got == secret


def test_reloaded_tcs_secs_and_va_keep_their_bytes(cenv):
    encl = cenv.enclave()
    st = cenv.cpu.st
    tcs_bytes = st.data[cenv.cpu.page_index(encl.phys(OFF_TCS))].tobytes()
    assert Tcs.unpack(tcs_bytes).ossa == OFF_SSA
    va, va2 = cenv.va(), cenv.va()
    ev_tcs = cenv.evict(encl.phys(OFF_TCS), va + 8, secs=encl.secs)
    rc, t = cenv.eldu(ev_tcs, encl.secs)
    assert rc == 0 and st.data[cenv.cpu.page_index(t)].tobytes() == tcs_bytes

    ev_d = cenv.evict(encl.phys(OFF_DATA0), va + 16, secs=encl.secs)
    rc, ev_va = cenv.ewb(va, va2)
    assert rc == 0
    rc, new_va = cenv.eldu(ev_va, 0)
    assert rc == 0
    genuine_reloads(cenv, replace(ev_d, va_slot=new_va + 16), encl.secs)

    secs_bytes = st.data[cenv.cpu.page_index(encl.secs)].tobytes()
    assert Secs.unpack(secs_bytes).baseaddr == BASE
    for phys in list(encl.built.pages.values()) + [t]:
        cenv.cpu.eremove(phys)
    for page in range(cenv.cpu.npages):                      # the reloaded DATA0 too
        e = cenv.cpu.epcm(cenv.cpu.page_addr(page))
        if e["valid"] and e.get("enclavesecs") == encl.secs:
            cenv.cpu.eremove(cenv.cpu.page_addr(page))
    rc, ev_secs = cenv.ewb(encl.secs, va2 + 8)
    assert rc == 0
    rc, s = cenv.eldu(ev_secs, 0)
    assert rc == 0 and st.data[cenv.cpu.page_index(s)].tobytes() == secs_bytes


# =============================================================================== tampering

def test_eldu_sgx_mac_compare_fail_ciphertext_bit(cenv):
    encl = cenv.enclave()
    ev = cenv.evict(encl.phys(OFF_DATA0), cenv.va(), secs=encl.secs)
    for offset, bit in [(0, 0), (1234, 5), (4095, 7)]:
        cenv.flip_mem(ev.srcpge + offset, bit)
        refused(cenv, ev, encl.secs)
        cenv.flip_mem(ev.srcpge + offset, bit)
    genuine_reloads(cenv, ev, encl.secs)


@pytest.mark.parametrize("byte", [112, 119, 120, 127])
def test_eldu_sgx_mac_compare_fail_pcmd_mac(sealed, byte):
    env, encl, ev = sealed
    env.flip_mem(ev.pcmd + byte, 3)
    refused(env, ev, encl.secs)
    env.flip_mem(ev.pcmd + byte, 3)
    genuine_reloads(env, ev, encl.secs)


@pytest.mark.parametrize("bit", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 63],
                         ids=lambda b: f"bit{b}")
def test_eldu_sgx_mac_compare_fail_pcmd_secinfo(sealed, bit):
    env, encl, ev = sealed
    p = env.read_pcmd(ev)
    env.write_pcmd(ev, replace(p, secinfo=Secinfo(flags=p.secinfo.flags ^ (1 << bit))))
    refused(env, ev, encl.secs)
    env.write_pcmd(ev, p)
    genuine_reloads(env, ev, encl.secs)


def test_eldu_sgx_mac_compare_fail_secs_enclaveid(anyenv):
    """A SECS blob is bound to its enclave's EID: a changed PCMD.ENCLAVEID is refused."""
    env = anyenv
    encl = env.enclave()
    for phys in encl.built.pages.values():
        assert env.cpu.eremove(phys) == 0
    va = env.va()
    rc, ev = env.ewb(encl.secs, va)
    assert rc == 0
    p = env.read_pcmd(ev)
    for eid in (p.enclave_id ^ 1, p.enclave_id + 1000, 0):
        env.write_pcmd(ev, replace(p, enclave_id=eid))
        refused(env, ev, 0)
    env.write_pcmd(ev, p)
    genuine_reloads(env, ev, 0, expect=None)


def test_eldu_child_enclaveid_is_not_part_of_the_mac(sealed):
    """For REG/TCS/TRIM the MAC header carries the EID of the SECS named in PAGEINFO, not
    PCMD.ENCLAVEID (Intel SDM vol. 3D, SDM ELDU pseudocode): a changed ENCLAVEID gains
    nothing, the page still lands in the enclave PAGEINFO.SECS names, and both modes agree."""
    env, encl, ev = sealed
    p = env.read_pcmd(ev)
    env.write_pcmd(ev, replace(p, enclave_id=p.enclave_id + 7))
    target = genuine_reloads(env, ev, encl.secs)
    assert env.epcm(target)["enclavesecs"] == encl.secs


def test_eldu_sgx_mac_compare_fail_replay_older_version(sealed):
    env, encl, ev_old = sealed
    page = genuine_reloads(env, ev_old, encl.secs)
    ev_new = env.evict(page, ev_old.va_slot, secs=encl.secs)   # same slot, newer version
    refused(env, ev_old, encl.secs)
    genuine_reloads(env, ev_new, encl.secs)


def test_eldu_sgx_mac_compare_fail_replay_same_blob(sealed):
    env, encl, ev = sealed
    genuine_reloads(env, ev, encl.secs)
    pi = env.pageinfo(linaddr=ev.linaddr, srcpge=ev.srcpge, metadata=ev.pcmd, secs=encl.secs)
    target = env.free_epc()
    with unchanged(env):
        assert env.cpu.eldu(pi, target, ev.va_slot) == MAC_FAIL
    assert not env.epcm(target)["valid"]


@pytest.mark.parametrize("delta", [0x1000, -0x5000, 0x8000, 0x10_0000])
def test_eldu_sgx_mac_compare_fail_other_linaddr(sealed, delta):
    env, encl, ev = sealed
    refused(env, ev, encl.secs, linaddr=ev.linaddr + delta)
    genuine_reloads(env, ev, encl.secs)


def test_eldu_sgx_mac_compare_fail_other_enclave(sealed):
    env, encl, ev = sealed
    other = env.enclave(base=2 * BASE)
    refused(env, ev, other.secs, linaddr=ev.linaddr - BASE + 2 * BASE)
    refused(env, ev, other.secs)
    genuine_reloads(env, ev, encl.secs)


def test_eldu_sgx_mac_compare_fail_same_layout_other_enclave(anyenv):
    """Two enclaves built identically (same BASEADDR, same pages) differ only in EID."""
    env = anyenv
    a = env.enclave()
    b = env.enclave()          # same ELRANGE and MRENCLAVE, a second ECREATE
    assert env.info(a)["mrenclave"] == env.info(b)["mrenclave"]
    assert env.info(a)["eid"] != env.info(b)["eid"]
    ev = env.evict(a.phys(OFF_DATA0), env.va(), secs=a.secs)
    refused(env, ev, b.secs)
    genuine_reloads(env, ev, a.secs)


def test_eldu_sgx_mac_compare_fail_swapped_ciphertexts(cenv):
    """Two blobs of one enclave: each PCMD only opens its own ciphertext."""
    encl = cenv.enclave()
    va = cenv.va()
    ev0 = cenv.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
    ev1 = cenv.evict(encl.phys(OFF_DATA1), va + 8, secs=encl.secs)
    refused(cenv, ev0, encl.secs, srcpge=ev1.srcpge)
    genuine_reloads(cenv, ev0, encl.secs)


def test_eldu_blocked_state_is_the_loaders_choice(sealed):
    """ELDB vs ELDU is not part of the MAC: either leaf opens the same blob."""
    env, encl, ev = sealed
    rc, target = env.eldu(ev, encl.secs, blocked=True)
    assert rc == 0 and env.epcm(target)["blocked"]


def test_metadata_and_content_agree_on_every_tamper():
    """One scripted tamper list, both modes: identical verdicts."""
    verdicts = {}
    for content in (False, True):
        env = Env(content=content)
        encl = env.enclave()
        other = env.enclave(base=2 * BASE)
        va = env.va()
        out = []
        for case in ["none", "mac", "secinfo_x", "secinfo_pt", "linaddr", "other_secs",
                     "enclaveid", "reserved_bit6"]:
            ev = env.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
            p = env.read_pcmd(ev)
            secs, lin = encl.secs, ev.linaddr
            if case == "mac":
                env.write_pcmd(ev, replace(p, mac=bytes([p.mac[0] ^ 1]) + p.mac[1:]))
            elif case == "secinfo_x":
                env.write_pcmd(ev, replace(p, secinfo=Secinfo(flags=p.secinfo.flags | 4)))
            elif case == "secinfo_pt":
                env.write_pcmd(ev, replace(p, secinfo=Secinfo(
                    flags=(p.secinfo.flags & 0xFF) | (PageType.TRIM << 8))))
            elif case == "linaddr":
                lin += PAGE_SIZE
            elif case == "other_secs":
                secs = other.secs
            elif case == "enclaveid":
                env.write_pcmd(ev, replace(p, enclave_id=p.enclave_id ^ 0x10))
            elif case == "reserved_bit6":
                env.write_pcmd(ev, replace(p, secinfo=Secinfo(flags=p.secinfo.flags | 0x40)))
            rc, target = env.eldu(ev, secs, linaddr=lin)
            out.append((case, int(rc)))
            env.write_pcmd(ev, p)
            if rc != 0:
                rc, target = env.eldu(ev, encl.secs)
                assert rc == 0
            encl.built.pages[encl.lin(OFF_DATA0)] = target
        verdicts[content] = out
    assert verdicts[False] == verdicts[True]
    assert dict(verdicts[True])["none"] == 0 and dict(verdicts[True])["mac"] == MAC_FAIL
