"""Guest and host kernel instances share no state but the processor."""

from __future__ import annotations

import numpy as np

from epcsim.hw.vmx import GuestCpu
from epcsim.sim.vm import Vm, host_kernel


def _arrays(obj: object) -> list[np.ndarray]:
    out = []
    for value in getattr(obj, "_asdict", dict)().values():
        if isinstance(value, np.ndarray):
            out.append(value)
    return out


def test_guest_and_host_share_only_the_processor() -> None:
    host = host_kernel(128, 3)
    vm = Vm(host, "g", 96, mode="oversubscribed", reserve=32)
    vm.add_enclave("e", 8)
    guest = vm.kernel
    assert isinstance(guest.cpu, GuestCpu) and guest.cpu.host is host.cpu
    host_side = (_arrays(host.mgr.ms) + _arrays(host.driver_owner.state)
                 + _arrays(host.kvm_owner.state))
    guest_side = _arrays(guest.mgr.ms) + _arrays(guest.driver_owner.state)
    for a in host_side:
        for b in guest_side:
            assert not np.shares_memory(a, b)
    # Each manager's page arrays have its own EPC's size: the guest numbers its pages.
    assert guest.mgr.ms.where.shape[0] == 96
    assert host.mgr.ms.where.shape[0] == 128
    # The processor state is shared: the guest's view aliases the host's EPCM.
    assert guest.cpu.st.epcm is host.cpu.st.epcm
    assert guest.cpu.st.vmcs is not host.cpu.st.vmcs
    assert guest.cpu.npages == 96 and guest.cpu.sections[0].base != host.cpu.sections[0].base
    assert guest.cpu.cpuid_epc_sections()[0][2] & ~0xFFF == 96 * 4096


def test_no_vm_means_no_bytes_per_page() -> None:
    from epcsim.hw.cpu import Processor
    from epcsim.hw.epc import V_LEN

    for pages in (64, 4096):
        st = Processor(epc_size=pages * 4096).st
        extra = sum(getattr(st, f).nbytes for f in ("vmcs", "ept", "xrec", "rsv", "xlog",
                                                     "vcnt"))
        # The host's VMCS and its sections: independent of the EPC's size; every per-page
        # array of virtualisation is empty.
        assert extra == V_LEN * 8
