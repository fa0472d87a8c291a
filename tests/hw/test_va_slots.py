"""Version Array pages: 512 slots, occupancy, and eviction trees (Intel SDM vol. 3D)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hwenv import DATA0, DATA1, OFF_CODE, OFF_DATA0, OFF_DATA1, unchanged

from epcsim.arch import PAGE_SIZE, PageType, SgxReturn
from epcsim.hw.baremetal import BareMetal, Segment, tcs_image
from epcsim.hw.cpu import GeneralProtectionFault, PageFault, Processor
from epcsim.hw.epc import EpcSection

N_SLOTS = 512


def test_va_page_has_512_slots():
    """Fill every slot of one VA page, then check occupancy, overflow and reload."""
    cpu = Processor([EpcSection(base=0x8000_0000, size=4 << 20)], seed=3)   # 1024 pages
    bm = BareMetal(cpu)
    base, size = 0x20_0000_0000, 4 << 20
    encl = bm.build([Segment(0, tcs_image(ossa=0x1000), PageType.TCS), Segment(0x1000, b"")],
                    base=base, size=size)
    pages = []
    for i in range(N_SLOTS + 1):
        epc = bm.free_epc_page()
        assert cpu.eaug(bm.pageinfo(linaddr=base + 0x10000 + i * PAGE_SIZE, secs=encl.secs),
                        epc) == 0
        assert cpu.eblock(epc) == 0
        pages.append(epc)
    assert cpu.etrack(encl.secs) == 0
    va = bm.epa()
    blobs = []
    for i in range(N_SLOTS):
        rc, ev = bm.ewb(pages[i], va + 8 * i)
        assert rc == SgxReturn.SGX_SUCCESS, i       # every one of the 512 slots was free
        blobs.append(ev)
    assert all(cpu.edbgrd(va + 8 * i) == (0, 2**64 - 1) for i in range(N_SLOTS))
    # Slot 512 would be the next page, which is not a VA page.
    with pytest.raises(PageFault):
        bm.ewb(pages[N_SLOTS], va + 8 * N_SLOTS)
    for i, ev in enumerate(blobs):
        rc, _ = bm.eldu(ev, encl.secs)
        assert rc == 0, i
    assert all(cpu.edbgrd(va + 8 * i) == (0, 0) for i in range(N_SLOTS))
    assert cpu.secs_info(encl.secs)["chldcnt"] == 2 + N_SLOTS + 1   # TCS, SSA, 513 EAUGs


def test_ewb_sgx_va_slot_occupied_still_evicts(anyenv):
    env = anyenv
    encl = env.enclave()
    va = env.va()
    slot = va + 8 * 100
    a, b = encl.phys(OFF_DATA0), encl.phys(OFF_DATA1)
    assert env.cpu.eblock(a) == 0 and env.cpu.eblock(b) == 0
    assert env.cpu.etrack(encl.secs) == 0
    rc, ev_a = env.ewb(a, slot)
    assert rc == 0
    rc, ev_b = env.ewb(b, slot)
    assert rc == SgxReturn.SGX_VA_SLOT_OCCUPIED
    assert not env.epcm(b)["valid"]
    # The first page's version is gone: its blob can never be reloaded ...
    rc, target = env.eldu(ev_a, encl.secs)
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL and not env.epcm(target)["valid"]
    # ... while the second one reloads, bytes and all.
    rc, target = env.eldu(ev_b, encl.secs)
    assert rc == 0
    if env.content:
        assert env.cpu.st.data[env.cpu.page_index(target)].tobytes() == DATA1


def test_eldu_clears_the_slot(env, encl):
    va = env.va()
    slot = va + 8 * 511
    ev = env.evict(encl.phys(OFF_DATA0), slot, secs=encl.secs)
    assert env.slot_occupied(slot)
    assert env.eldu(ev, encl.secs)[0] == 0
    assert not env.slot_occupied(slot)
    # The slot is free again: the next EWB into it is not "occupied".
    env.evict(encl.phys(OFF_DATA1), slot, secs=encl.secs)


def test_failed_eldu_keeps_the_slot(env, encl):
    va = env.va()
    ev = env.evict(encl.phys(OFF_DATA0), va, secs=encl.secs)
    rc, _ = env.eldu(ev, encl.secs, linaddr=encl.lin(OFF_CODE))
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL
    assert env.slot_occupied(va)
    assert env.eldu(ev, encl.secs)[0] == 0


def test_slots_are_independent(env, encl):
    va = env.va()
    ev0 = env.evict(encl.phys(OFF_DATA0), va + 8, secs=encl.secs)
    ev1 = env.evict(encl.phys(OFF_DATA1), va + 16, secs=encl.secs)
    assert env.eldu(ev1, encl.secs)[0] == 0
    assert env.slot_occupied(va + 8) and not env.slot_occupied(va + 16)
    # A blob names no slot of its own: presented with the other slot's version it fails.
    rc, _ = env.eldu(replace(ev0, va_slot=va + 16), encl.secs)
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL
    assert env.eldu(ev0, encl.secs)[0] == 0


def test_va_eviction_chain_and_reload(anyenv):
    """Children -> VA1 -> VA2 -> VA3 (root); reload root to leaf, then the children."""
    env = anyenv
    encl = env.enclave()
    va1, va2, va3 = env.va(), env.va(), env.va()
    ev_a = env.evict(encl.phys(OFF_DATA0), va1 + 8 * 4, secs=encl.secs)
    ev_b = env.evict(encl.phys(OFF_DATA1), va1 + 8 * 300, secs=encl.secs)
    rc, ev_va1 = env.ewb(va1, va2 + 8 * 7)
    assert rc == 0 and not env.epcm(va1)["valid"]
    rc, ev_va2 = env.ewb(va2, va3 + 8 * 9)
    assert rc == 0

    # Leaves cannot come back while their VA page is out.
    pi = env.pageinfo(linaddr=ev_a.linaddr, srcpge=ev_a.srcpge, metadata=ev_a.pcmd,
                      secs=encl.secs)
    target = env.free_epc()
    with unchanged(env), pytest.raises(PageFault):
        env.cpu.eldu(pi, target, ev_a.va_slot)

    # Root first: VA2 from VA3, then VA1 from VA2, each into a new EPC page.
    rc, new_va2 = env.eldu(ev_va2, 0)
    assert rc == 0 and env.epcm(new_va2)["pt"] == PageType.VA
    assert not env.slot_occupied(va3 + 8 * 9)
    rc, new_va1 = env.eldu(replace(ev_va1, va_slot=new_va2 + 8 * 7), 0)
    assert rc == 0
    assert env.slot_occupied(new_va1 + 8 * 4) and env.slot_occupied(new_va1 + 8 * 300)
    assert not env.slot_occupied(new_va1 + 8 * 5)

    # The children's versions travelled with VA1.
    rc, pa = env.eldu(replace(ev_a, va_slot=new_va1 + 8 * 4), encl.secs)
    assert rc == 0
    rc, pb = env.eldu(replace(ev_b, va_slot=new_va1 + 8 * 300), encl.secs)
    assert rc == 0
    if env.content:
        data = env.cpu.st.data
        assert data[env.cpu.page_index(pa)].tobytes() == DATA0
        assert data[env.cpu.page_index(pb)].tobytes() == DATA1


def test_va_blob_replay_fails(env, encl):
    va1, va2 = env.va(), env.va()
    env.evict(encl.phys(OFF_DATA0), va1, secs=encl.secs)
    rc, ev = env.ewb(va1, va2)
    assert rc == 0
    assert env.eldu(ev, 0)[0] == 0
    rc, target = env.eldu(ev, 0)
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL
    assert not env.epcm(target)["valid"]


def test_va_blob_with_tampered_type_fails(env, encl):
    va1, va2 = env.va(), env.va()
    rc, ev = env.ewb(va1, va2)
    assert rc == 0
    p = env.read_pcmd(ev)
    env.write_pcmd(ev, p.__class__(secinfo=p.secinfo.__class__(flags=(PageType.REG << 8) | 3),
                                   enclave_id=p.enclave_id, mac=p.mac))
    rc, target = env.eldu(ev, encl.secs, linaddr=encl.lin(OFF_DATA0))
    assert rc == SgxReturn.SGX_MAC_COMPARE_FAIL
    assert not env.epcm(target)["valid"]


def test_ewb_gp_slot_not_8_byte_aligned(env, encl):
    va = env.va()
    assert env.cpu.eblock(encl.phys(OFF_DATA0)) == 0
    pi = env.pageinfo(srcpge=env.mem_addr(), metadata=env.mem_addr(128, 128))
    for off in (1, 4, 7, 0xFFC):
        with unchanged(env), pytest.raises(GeneralProtectionFault):
            env.cpu.ewb(pi, encl.phys(OFF_DATA0), va + off)


def test_versions_go_round_after_the_largest(anyenv):
    """A slot keeps 32 bits of the version (docs/fidelity.md): after 2^32 - 1 the next EWB
    gets 1, never 0 (a free slot), and blobs of either side of the turn reload; a VA page
    written back and loaded again in content mode keeps every slot's version."""
    from epcsim.hw.epc import G_NEXT_VERSION, VERSION_MAX
    env = anyenv
    encl = env.enclave()
    va, va2 = env.va(), env.va()
    env.cpu.st.g[G_NEXT_VERSION] = VERSION_MAX
    ev0 = env.evict(encl.phys(OFF_DATA0), va + 8, secs=encl.secs)
    ev1 = env.evict(encl.phys(OFF_DATA1), va + 16, secs=encl.secs)
    slots = env.cpu.st.va_slots[env.cpu.st.row[env.cpu.page_index(va)]]
    assert (int(slots[1]), int(slots[2])) == (VERSION_MAX, 1)
    assert int(env.cpu.st.g[G_NEXT_VERSION]) == 2
    rc, ev_va = env.ewb(va, va2)
    assert rc == 0
    rc, new_va = env.eldu(ev_va, 0)
    assert rc == 0
    assert env.eldu(replace(ev1, va_slot=new_va + 16), encl.secs)[0] == 0
    assert env.eldu(replace(ev0, va_slot=new_va + 8), encl.secs)[0] == 0
