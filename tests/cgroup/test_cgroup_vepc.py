"""Virtual EPC in EPC cgroups: vEPC pages are charged to the VMM's cgroup when allocated and
uncharged when freed; in reserved (upstream) mode they are never on an LRU, so a cgroup left
with only them gets -ENOMEM, which the VMM sees as SIGBUS (the kernel's virt.c). In
oversubscribed mode they are on the cgroup's LRU and its limit is enforced by reclaiming them
through the KVM owner."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from epcsim.arch import PAGE_SIZE
from epcsim.hw.cpu import Processor
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.instance import Kernel
from epcsim.selftest.loader import setup_test_encl
from epcsim.sim.vm import Vm, VmError, host_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "virt"))
from virtkit import prefault, vepc


def kvm_host(pages: int = 128) -> tuple[Kernel, EpcCgroups]:
    # As a host that runs only VMs is built (sim.vm.host_kernel): ksgxd frees at once.
    k = Kernel(Processor(epc_size=pages * PAGE_SIZE, content=False, n_lps=4), kvm=True,
               ksgxd="instant")
    return k, EpcCgroups(k.mgr)


def test_vepc_is_charged_to_the_vmm_cgroup_and_uncharged_at_release() -> None:
    k, cg = kvm_host()
    cg.mkdir("/vms")
    cg.mkdir("/vms/a")
    with cg.charging("/vms/a"):                    # QEMU runs in /vms/a
        f, mm, addr = vepc(k, 24)
    # The faults come from wherever the caller is: the file charges its VMM's cgroup.
    assert prefault(k, mm, addr, 24) == "fixed"
    assert cg.current("/vms/a") == cg.current("/vms") == 24 * PAGE_SIZE
    assert cg.current("/") == 24 * PAGE_SIZE
    assert k.mgr.lru_pages == 0                    # never on an LRU
    cg.check()
    f.release()
    assert cg.current("/vms/a") == cg.current("/") == 0
    assert cg.peak("/vms/a") == 24 * PAGE_SIZE
    cg.check()


def test_the_hierarchy_sums_vms_and_enclaves() -> None:
    k, cg = kvm_host(256)
    for p in ("/vms", "/vms/a", "/vms/b", "/apps"):
        cg.mkdir(p)
    with cg.charging("/vms/a"):
        fa, mma, addra = vepc(k, 10)
    with cg.charging("/vms/b"):
        fb, mmb, addrb = vepc(k, 14, addr=0x7E00_0000_0000)
    assert prefault(k, mma, addra, 10) == "fixed"
    assert prefault(k, mmb, addrb, 14) == "fixed"
    cg.enter("/apps")
    encl = setup_test_encl(k, 16 * PAGE_SIZE)
    apps = cg.current("/apps")
    assert apps > 16 * PAGE_SIZE                    # its SECS, VA, TCS... too
    assert cg.current("/vms") == cg.current("/vms/a") + cg.current("/vms/b") == 24 * PAGE_SIZE
    used = k.cpu.npages - k.mgr.sgx_nr_free_pages - k.mgr.dirty
    assert cg.current("/") == cg.current("/vms") + apps == used * PAGE_SIZE
    cg.check()
    encl.close()
    fa.release()
    fb.release()
    assert cg.current("/") == 0


def test_fault_past_the_limit_with_only_vepc_left_is_enomem_and_sigbus() -> None:
    k, cg = kvm_host()
    cg.mkdir("/v", max=8 * PAGE_SIZE)
    with cg.charging("/v"):
        f, mm, addr = vepc(k, 12)
    assert prefault(k, mm, addr, 8) == "fixed"
    assert f.populate(8) == -errno.ENOMEM          # the charge is refused, nothing to reclaim
    assert prefault(k, mm, addr + 8 * PAGE_SIZE, 1) == "sigbus"
    assert cg.events("/v")["max"] >= 2
    assert cg.current("/v") == 8 * PAGE_SIZE
    # The host still has free EPC: the limit, not the EPC, refused the page.
    assert k.mgr.sgx_nr_free_pages > 64
    cg.check()
    f.release()
    assert cg.current("/v") == 0


def test_reclaimable_pages_go_first_then_enomem() -> None:
    # An enclave and a VMM share a cgroup: past the limit the enclave's pages are reclaimed
    # for the vEPC (-EBUSY, the async work, a retry) until only unreclaimable pages remain.
    k, cg = kvm_host(512)
    cg.mkdir("/mix", max=96 * PAGE_SIZE)
    cg.enter("/mix")
    encl = setup_test_encl(k, 48 * PAGE_SIZE)
    f, mm, addr = vepc(k, 128)
    cg.enter("/")
    assert k.mgr.lru_pages > 0
    assert prefault(k, mm, addr, 128) == "sigbus"
    assert cg.reclaimed("/mix") > 0                # enclave pages made room for vEPC
    assert k.mgr.lru_pages == 0                    # ... until none was left on its LRU
    held = len(f.populated())
    assert held > 96 - 48 - 8                      # more than the room left at the start
    assert cg.current("/mix") <= 96 * PAGE_SIZE
    cg.check()
    f.release()
    encl.close()
    assert cg.current("/mix") == 0


def test_reserved_vm_over_its_limit_gets_sigbus_at_start() -> None:
    host = host_kernel(256, 3)
    cg = EpcCgroups(host.mgr)
    cg.mkdir("/vms")
    cg.mkdir("/vms/small", max=64 * PAGE_SIZE)
    with pytest.raises(VmError, match=r"SIGBUS at start.*misc.max of /vms/small"):
        Vm(host, "small", 96, mode="reserved", cgroup="/vms/small", cgroups=cg)
    assert cg.current("/vms/small") == 0           # QEMU exited: its vEPC was released
    assert cg.events("/vms/small")["max"] >= 1
    vm = Vm(host, "fits", 64, mode="reserved", cgroup="/vms/small", cgroups=cg, lp_base=1)
    assert cg.current("/vms/small") == 64 * PAGE_SIZE == cg.current("/vms")
    cg.check()
    vm.file.release()
    assert cg.current("/vms") == 0


def test_oversubscribed_vm_is_held_to_its_limit_by_reclaiming_its_pages() -> None:
    host = host_kernel(512, 3)
    cg = EpcCgroups(host.mgr)
    cg.mkdir("/vm", max=96 * PAGE_SIZE)
    vm = Vm(host, "o", 192, mode="oversubscribed", cgroup="/vm", cgroups=cg, reserve=48,
            lp_base=1)
    enc = vm.add_enclave("e", 128)
    import numpy as np

    rng = np.random.default_rng(1)
    for _ in range(60):
        vm.run(enc, rng.integers(0, 128, 8), rng.random(8) < 0.5)
    assert vm.check() == 0                          # every page reads back its last version
    assert cg.reclaimed("/vm") > 0                  # the KVM owner evicted from its LRU
    assert cg.current("/vm") <= 96 * PAGE_SIZE      # held under its limit after each turn
    # The host had room: without the limit nothing would have been evicted.
    assert host.mgr.sgx_nr_free_pages > 96
    assert cg.current("/") - cg.current("/vm") == (
        1 + 48) * PAGE_SIZE                         # KVM's null page and exit reserve
    cg.check()
