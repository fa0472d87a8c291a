"""The EPT accessed bit: a guest enclave's access sets it on the EPT entry of the page it
touches (the processor's EPT walk), and the host's reclaimer (the KVM owner's ``reclaim``)
tests and clears it, so a page the guest keeps using survives a pass that takes the
others."""

from __future__ import annotations

import numpy as np

from epcsim.hw.epc import EPT_EVICTED, X_A
from epcsim.sim.vm import Vm, host_kernel


def test_guest_access_sets_the_bit_the_host_reclaimer_reads() -> None:
    k = host_kernel(160, 2, low=4, high=8)
    vm = Vm(k, "a", 96, mode="oversubscribed", low=4, high=8, reserve=48)
    e = vm.add_enclave("e", 24)
    vm.run(e, np.arange(24), np.ones(24, np.bool_))
    st = k.cpu.st
    entries = []
    for page in range(24):
        pte = e.mm.lookup(e.data_addr(page))
        assert pte is not None
        entries.append(vm.file.base + vm.cpu.page_index(pte[0]))  # type: ignore[operator]
    st.xrec[:, X_A] = 0
    vm.run(e, np.array([3, 3, 5]), np.zeros(3, np.bool_))
    young = set(np.nonzero(st.xrec[:, X_A])[0].tolist())
    assert entries[3] in young and entries[5] in young
    assert not young & (set(entries) - {entries[3], entries[5]})
    # One pass over everything: the old pages go, the two young ones are spared (and
    # their bits cleared: a second pass would take them).
    k.mgr.reclaim_pages(256)
    evicted = {i for i in entries if int(st.ept[i]) == EPT_EVICTED}
    assert entries[3] not in evicted and entries[5] not in evicted
    assert len(evicted) >= 20
    assert int(st.xrec[entries[3], X_A]) == 0
    k.mgr.reclaim_pages(256)
    assert int(st.ept[entries[3]]) == EPT_EVICTED
    assert vm.check() == 0
