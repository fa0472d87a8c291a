"""Random guest and host operations on shared EPC pages: the host may evict any guest page
at any time; no guest ever sees a fault or a lost page because of it.

Two oversubscribed VMs and one balloon VM share a host; half the examples run in content
mode, where every guest read compares a whole page with what was last written."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as S
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from epcsim.hw.epc import EPCM_VALID, EPT_EVICTED, X_VA
from epcsim.kernel.instance import KIND_KVM
from epcsim.kernel.main import P_WAKE
from epcsim.sim.vm import GuestEnclave, Vm, host_kernel

HOST_PAGES = 160
GUEST_PAGES = 96
ENCLAVE_PAGES = 24


class SharedEpc(RuleBasedStateMachine):
    @initialize(seed=S.integers(0, 1 << 16), content=S.booleans())
    def boot(self, seed: int, content: bool) -> None:
        self.rng = np.random.default_rng(seed)
        self.host = host_kernel(HOST_PAGES, 4, low=4, high=8, content=content, seed=seed)
        self.vms = [Vm(self.host, f"vm{i}", GUEST_PAGES, vcpus=1, lp_base=i,
                       mode="oversubscribed" if i < 2 else "balloon", low=4, high=8,
                       reserve=48) for i in range(3)]
        for vm in self.vms:
            vm.add_enclave("e0", ENCLAVE_PAGES)
            vm.add_enclave("e1", ENCLAVE_PAGES // 2)
        self.rebuilt = 0

    # ------------------------------------------------------------------ guest operations
    @rule(vm=S.integers(0, 2), enc=S.integers(0, 1), n=S.integers(1, 12),
          wfrac=S.floats(0, 1))
    def guest_ecall(self, vm: int, enc: int, n: int, wfrac: float) -> None:
        v = self.vms[vm]
        e = v.enclaves[enc]
        pages = self.rng.integers(0, e.npages, n)
        v.run(e, pages, self.rng.random(n) < wfrac)

    @rule(vm=S.integers(0, 2))
    def guest_reclaim(self, vm: int) -> None:
        v = self.vms[vm]
        v.kernel.mgr.reclaim_pages()
        v.host_turn()

    @rule(vm=S.integers(0, 2))
    def guest_ksgxd_to_high(self, vm: int) -> None:
        v = self.vms[vm]
        v.kernel.mgr.ms.p[P_WAKE] = 1   # wake ksgxd as a failed allocation would
        v.kernel.mgr.run_ksgxd()
        v.host_turn()

    @rule(vm=S.integers(0, 2), enc=S.integers(0, 1))
    def guest_destroys_and_rebuilds_an_enclave(self, vm: int, enc: int) -> None:
        """The guest EREMOVEs every page of an enclave, pages the host evicted included
        (each is an EPT violation first), then builds it again."""
        v = self.vms[vm]
        old = v.enclaves[enc]
        assert old.file.close() == 0, "a guest EREMOVE failed: the host left a page behind"
        v.host_turn()
        v.enclaves.remove(old)
        new = v.add_enclave(old.name, old.npages)
        v.enclaves.remove(new)
        v.enclaves.insert(enc, new)
        self.rebuilt += 1

    @rule(vm=S.integers(0, 1))
    def guest_reboots(self, vm: int) -> None:
        """QEMU's REMOVE_ALL on a guest whose pages the host may have evicted (those it
        drops), then a new guest kernel builds its enclaves again."""
        v = self.vms[vm]
        assert v.reboot() == 0, "REMOVE_ALL left a SECS with children twice"
        v.add_enclave("e0", ENCLAVE_PAGES)
        v.add_enclave("e1", ENCLAVE_PAGES // 2)

    @rule(n=S.integers(1, 48), keep=S.integers(8, 64))
    def balloon_inflate(self, n: int, keep: int) -> None:
        self.vms[2].inflate(n, keep=keep)

    @rule(n=S.integers(1, 48))
    def balloon_deflate(self, n: int) -> None:
        self.vms[2].deflate(n)
        self.vms[2].host_turn()

    # ------------------------------------------------------------------ host operations
    @rule(n=S.integers(1, 48))
    def host_reclaim(self, n: int) -> None:
        self.host.mgr.reclaim_pages(n)

    @rule()
    def host_reclaim_twice_no_aging(self) -> None:
        # Two passes: the first clears the EPT accessed bits, the second evicts.
        self.host.mgr.reclaim_pages(64)
        self.host.mgr.reclaim_pages(64)

    @rule(vm=S.integers(0, 1), enc=S.integers(0, 1), page=S.integers(0, ENCLAVE_PAGES - 1))
    def host_evicts_a_page_the_guest_uses(self, vm: int, enc: int, page: int) -> None:
        """The guest touches a page; the host then reclaims until that very page is out
        (its accessed bit only delays it by one pass)."""
        v = self.vms[vm]
        e = v.enclaves[enc]
        page %= e.npages
        v.run(e, np.array([page]), np.ones(1, np.bool_))
        i = self._entry_of(v, e, page)
        for _ in range(4):
            if int(self.host.cpu.st.ept[i]) == EPT_EVICTED:
                break
            self.host.mgr.reclaim_pages(HOST_PAGES)
        assert int(self.host.cpu.st.ept[i]) == EPT_EVICTED
        v.run(e, np.array([page]), np.zeros(1, np.bool_))   # and reads it back at once

    @staticmethod
    def _entry_of(v: Vm, e: GuestEnclave, page: int) -> int:
        pte = e.mm.lookup(e.data_addr(page))
        assert pte is not None
        g = v.cpu.page_index(pte[0])
        assert g is not None
        return v.file.base + g

    # ------------------------------------------------------------------ invariants
    @invariant()
    def host_books_balance(self) -> None:
        if not hasattr(self, "host"):
            return
        k = self.host
        k.mgr.check()
        assert k.mgr.census()["leaked"] == 0
        st = k.cpu.st
        mapped = st.ept[st.ept >= 0]
        assert np.unique(mapped).size == mapped.size, "two guest pages on one host page"
        for i in np.nonzero(st.ept >= 0)[0]:
            h = int(st.ept[i])
            assert int(k.mgr.ms.kind[h]) == KIND_KVM and int(k.mgr.ms.oid[h]) == i
        for i in np.nonzero(st.ept == EPT_EVICTED)[0]:
            va = int(st.xrec[i, X_VA])
            assert int(st.flags[va]) & EPCM_VALID, "the record's VA page is gone"

    @invariant()
    def guests_never_see_the_host(self) -> None:
        for v in getattr(self, "vms", []):
            assert sum(e.mismatches for e in v.enclaves) == 0
            assert v.kernel.mgr.census()["leaked"] == 0
            assert v.kernel.sgx.leaks == 0

    def teardown(self) -> None:
        for v in getattr(self, "vms", []):
            assert v.check() == 0, "a guest page did not read back its last version"


SharedEpc.TestCase.settings = settings(max_examples=50, stateful_step_count=80, deadline=None,
                                       suppress_health_check=list(HealthCheck))
test_shared_epc = SharedEpc.TestCase


def test_host_reclaim_really_evicts_guest_pages() -> None:
    """Not vacuous: with everything old, host reclaim writes back guest pages of every
    kind, and the guests then run and read back every page."""
    k = host_kernel(HOST_PAGES, 3, low=4, high=8)
    vm = Vm(k, "a", GUEST_PAGES, mode="oversubscribed", low=4, high=8, reserve=48)
    e = vm.add_enclave("e", ENCLAVE_PAGES)
    vm.run(e, np.arange(ENCLAVE_PAGES), np.ones(ENCLAVE_PAGES, np.bool_))
    for _ in range(3):
        k.mgr.reclaim_pages(128)
    s = vm.summary()
    assert s["host_ewb"] > ENCLAVE_PAGES // 2
    types = {int(vm.host.cpu.st.xrec[i, 2]) >> 8
             for i in np.nonzero(k.cpu.st.ept == EPT_EVICTED)[0]}
    assert {0, 2, 3} <= types        # SECS, REG and VA pages of the guest were evicted
    assert vm.check() == 0
    s = vm.summary()
    assert s["host_eldu"] > 0 and s["vm_exits"] >= s["host_eldu"]
    assert s["version_mismatches"] == 0
