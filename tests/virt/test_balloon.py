"""The balloon both ways: inflating frees host pages behind pages the guest gave up;
deflating gives the guest's manager those pages back as free, and the host backs them again
only when the guest uses them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from epcsim.hw.epc import EPCM_VALID
from epcsim.kernel.main import W_FREE, W_MASK
from epcsim.sim.vm import Vm, host_kernel
from epcsim.sim.vmrun import _deflate, _inflate

HOST_PAGES = 256
GUEST_PAGES = 128


def _vm(k, name: str, lp: int = 0) -> Vm:  # type: ignore[no-untyped-def]
    return Vm(k, name, GUEST_PAGES, lp_base=lp, mode="balloon", low=4, high=8, reserve=32)


def _guest_books(vm: Vm) -> None:
    """The guest manager's places add up and every page it holds free is invalid.

    (``EpcManager.check`` reads the EPCM by page number, which in a guest is not the host
    page; this reads it through the EPT without touching the accessed bits.)
    """
    c = vm.kernel.mgr.census()
    assert c["leaked"] == 0 and sum(c.values()) == vm.epc_pages
    st = vm.host.cpu.st
    free = np.nonzero((vm.kernel.mgr.ms.where & W_MASK) == W_FREE)[0]
    for g in free:
        h = int(vm.file.ept[g])
        assert h < 0 or not int(st.flags[h]) & EPCM_VALID, f"free guest page {g} is VALID"


def test_deflate_gives_the_guest_its_pages_back() -> None:
    k = host_kernel(HOST_PAGES, 2, low=4, high=8)
    vm = _vm(k, "a")
    enc = vm.add_enclave("e", 40)
    vm.run(enc, np.arange(40), np.ones(40, np.bool_))
    vm.inflate(80)
    assert len(vm.balloon) == 80
    # No host page stays behind a ballooned page.
    assert all(int(vm.file.ept[g]) < 0 for g in vm.balloon)
    guest_free = vm.kernel.mgr.sgx_nr_free_pages
    assert vm.deflate(25) == 25
    assert len(vm.balloon) == 55 and vm.summary()["balloon_returned"] == 25
    assert vm.kernel.mgr.sgx_nr_free_pages == guest_free + 25
    _guest_books(vm)
    # The guest uses what it got back; the host backs those pages when it does.
    held = vm.held()
    enc2 = vm.add_enclave("f", guest_free + 25 - 8)
    vm.run(enc2, np.arange(enc2.npages), np.ones(enc2.npages, np.bool_))
    assert vm.held() > held
    assert vm.check() == 0
    assert vm.deflate(100) == 55 and not vm.balloon
    _guest_books(vm)
    k.mgr.check()


def test_deflate_policy_serves_the_vm_furthest_below_its_share() -> None:
    k = host_kernel(HOST_PAGES, 3, low=4, high=8)
    a, b = _vm(k, "a", 0), _vm(k, "b", 1)
    ea, eb = a.add_enclave("e", 60), b.add_enclave("e", 20)
    a.run(ea, np.arange(60), np.ones(60, np.bool_))
    b.run(eb, np.arange(20), np.ones(20, np.bool_))
    plat = SimpleNamespace(epc_pages=HOST_PAGES)
    a.inflate(16)
    b.inflate(16)
    assert a.held() > b.held()
    # Equal shares; b holds less of the host, so b is served first.
    _deflate([a, b], plat, 10)  # type: ignore[arg-type]
    assert len(b.balloon) == 6 and len(a.balloon) == 16
    # A VM with nothing ballooned is never picked.
    b.deflate(6)
    _deflate([a, b], plat, 10)  # type: ignore[arg-type]
    assert len(a.balloon) == 6 and not b.balloon
    # Inflating picks the VM holding most over its share.
    _inflate([a, b], plat, 8)  # type: ignore[arg-type]
    assert len(a.balloon) == 14 or len(b.balloon) == 8
    _guest_books(a)
    _guest_books(b)
    assert a.check() == 0 and b.check() == 0
