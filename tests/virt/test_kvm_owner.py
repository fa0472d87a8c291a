"""The KVM owner's leaf sequence and the exit paths a guest never sees (Intel SDM vol. 3D)."""

from __future__ import annotations

import numpy as np

from epcsim.arch import PageType, SgxReturn
from epcsim.hw import encls as L
from epcsim.hw.epc import EPT_EVICTED, VC_CONFLICT, X_BLOCKED, X_SECINFO
from epcsim.sim.vm import Vm, host_kernel


def _vm(host_pages: int = 128, guest_pages: int = 96, enclave_pages: int = 8):  # type: ignore[no-untyped-def]
    k = host_kernel(host_pages, 3)
    vm = Vm(k, "g", guest_pages, mode="oversubscribed", reserve=32)
    e = vm.add_enclave("e", enclave_pages)
    return k, vm, e


def _guest_page(vm: Vm, e, i: int) -> int:  # type: ignore[no-untyped-def]
    ds = vm.kernel.sgx.ds
    return int(ds.ep_epc[int(ds.e_first[e.file.e]) + 2 + i])


def _evict_all(k) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        k.mgr.reclaim_pages(256)


def test_secs_with_resident_children_is_refused_then_follows_them() -> None:
    k, vm, e = _vm()
    secs_g = int(vm.kernel.sgx.ds.e_secs[e.file.e])
    i_secs = vm.file.base + secs_g
    # Age everything once, then pin the children by touching them: only old pages go.
    k.mgr.reclaim_pages(256)
    vm.run(e, np.arange(e.npages), np.zeros(e.npages, np.bool_))
    k.mgr.reclaim_pages(256)
    assert int(k.cpu.st.ept[i_secs]) >= 0
    assert vm.host.vepc.counters(vm.file)["host_refused"] >= 1
    _evict_all(k)           # children out first, then the SECS (VIRTCHILDCNT holds it)
    assert int(k.cpu.st.ept[i_secs]) == EPT_EVICTED
    assert int(k.cpu.st.xrec[i_secs, X_SECINFO]) >> 8 == PageType.SECS
    assert vm.check() == 0


def test_guest_blocked_page_comes_back_blocked() -> None:
    k, vm, e = _vm()
    g = _guest_page(vm, e, 0)
    assert vm.cpu.eblock_page(g) == 0          # the guest's reclaimer is mid-way
    _evict_all(k)
    i = vm.file.base + g
    assert int(k.cpu.st.ept[i]) == EPT_EVICTED and int(k.cpu.st.xrec[i, X_BLOCKED]) == 1
    # The guest's next leaf on it: ELDBC, so EBLOCK still says SGX_BLKSTATE.
    assert vm.cpu.eblock_page(g) == SgxReturn.SGX_BLKSTATE
    assert vm.cpu.epcm(vm.cpu.page_addr(g))["blocked"]
    vm.host_turn()


def test_virtchild_count_keeps_the_guest_from_evicting_its_secs() -> None:
    k, vm, e = _vm()
    g = _guest_page(vm, e, 0)
    _evict_all(k)
    st = vm.cpu.st
    secs_g = int(vm.kernel.sgx.ds.e_secs[e.file.e])
    h_secs = vm.cpu.host_page(secs_g)          # EPT violation: the SECS comes back
    row = int(st.row[h_secs])
    assert int(st.s_vchld[row]) > 0
    assert int(st.s_chld[row]) == 0
    # The guest EWBs its SECS: refused while the host holds children (guest context).
    va = vm.cpu.host_page(int(vm.kernel.sgx.ds.va_epc[0]))
    assert va >= 0
    rc = L.ewb(vm.cpu.st, secs_g, int(vm.kernel.sgx.ds.va_epc[0]), 511, L.CTX_HOST,
               np.zeros(L.W_LEN, np.uint64))
    assert rc == L.CHILD_PRESENT
    before = int(st.s_vchld[row])
    vm.cpu.host_page(g)                        # reloading a child: EDECVIRTCHILD
    assert int(st.s_vchld[row]) == before - 1
    vm.host_turn()
    assert vm.check() == 0


def test_host_tracking_conflict_is_hidden_from_the_guest() -> None:
    k, vm, e = _vm()
    cpu = vm.cpu
    cpu.aspace[0] = e.mm
    assert vm.kernel.handle_page_fault(e.mm, e.base, 0x4) == "fixed"   # map the TCS
    assert cpu.eenter(0, e.base) == 0                   # a vCPU runs inside the enclave
    g = _guest_page(vm, e, 0)
    secs_g = int(vm.kernel.sgx.ds.e_secs[e.file.e])
    # The host starts a tracking cycle on the guest's enclave and has not kicked yet.
    assert L.etrackc(k.cpu.st, cpu.host_page(g), L.CTX_HOST) == 0
    # The guest's ETRACK collides: SGX_CONFLICT exit, the host kicks, the guest succeeds.
    assert L.etrack(cpu.st, secs_g, L.CTX_HOST) == 0
    assert int(k.cpu.st.vcnt[vm.file.vm, VC_CONFLICT]) == 1
    assert not cpu.inside(0)                            # kicked: AEX, then VM exit
    # A conflict that is the guest's own is reflected as bare metal reports it.
    assert cpu.eresume(0, e.base) == 0
    assert L.etrack(cpu.st, secs_g, L.CTX_HOST) == 0
    assert L.etrack(cpu.st, secs_g, L.CTX_HOST) == L.PREV_TRK_INCMPL
    assert int(k.cpu.st.vcnt[vm.file.vm, VC_CONFLICT]) == 2
    cpu.eexit(0)
