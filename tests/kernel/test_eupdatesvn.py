"""EUPDATESVN as upstream runs it (6.17, main.c ``sgx_inc_usage_count``): the first open of
/dev/sgx_enclave or /dev/sgx_vepc on an idle EPC tries the leaf; each outcome."""

from __future__ import annotations

import errno

import pytest

from epcsim.arch import PAGE_SIZE, SgxReturn
from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.kernel.main import RDRAND_RETRY_LOOPS
from epcsim.selftest.loader import setup_test_encl


def kernel(kvm: bool = False) -> Kernel:
    return Kernel(Processor(epc_size=256 * PAGE_SIZE, content=False, n_lps=2), kvm=kvm)


def test_the_first_open_takes_a_pending_microcode_svn() -> None:
    k = kernel()
    k.cpu.load_microcode(3)
    assert k.cpu.cpusvn == 0
    f = k.open_enclave()
    assert k.cpu.cpusvn == 3 and k.mgr.usage_count == 1
    f.close()
    assert k.mgr.usage_count == 0


def test_no_update_is_the_normal_outcome() -> None:
    k = kernel()
    assert k.cpu.eupdatesvn() == SgxReturn.SGX_NO_UPDATE
    f = k.open_enclave()
    assert k.cpu.cpusvn == 0 and k.mgr.usage_count == 1
    f.close()


def test_a_second_user_does_not_try_the_update() -> None:
    k = kernel()
    first = k.open_enclave()
    k.cpu.load_microcode(5)
    second = k.open_enclave()                 # the count is not 0: no EUPDATESVN
    assert k.cpu.cpusvn == 0 and k.mgr.usage_count == 2
    second.close()
    first.close()
    k.open_enclave()                          # idle again: the update is taken now
    assert k.cpu.cpusvn == 5


def test_the_leaf_refuses_while_an_enclave_page_is_valid() -> None:
    k = kernel()
    setup_test_encl(k, 16 * PAGE_SIZE)
    k.cpu.load_microcode(2)
    assert k.cpu.eupdatesvn() == SgxReturn.SGX_EPC_NOT_READY
    assert k.cpu.cpusvn == 0


def test_exhausted_entropy_is_retried_then_fails_the_open_with_eagain() -> None:
    k = kernel()
    k.cpu.load_microcode(2)
    k.cpu.inject_rdseed_failures(RDRAND_RETRY_LOOPS - 1)
    k.open_enclave().close()                  # the last retry found entropy
    assert k.cpu.cpusvn == 2
    k.cpu.load_microcode(4)
    k.cpu.inject_rdseed_failures(RDRAND_RETRY_LOOPS)
    with pytest.raises(OSError) as info:
        k.open_enclave()
    assert info.value.errno == errno.EAGAIN and k.mgr.usage_count == 0
    k.open_enclave()                          # "the open can be safely retried"
    assert k.cpu.cpusvn == 4


def test_an_unexpected_leaf_error_fails_the_open_with_eio(
        monkeypatch: pytest.MonkeyPatch) -> None:
    k = kernel()
    monkeypatch.setattr(k.cpu, "eupdatesvn", lambda: SgxReturn.SGX_EPC_PAGE_CONFLICT)
    with pytest.raises(OSError) as info:
        k.open_enclave()
    assert info.value.errno == errno.EIO and k.mgr.usage_count == 0


def test_opening_the_vepc_counts_as_a_user() -> None:
    k = kernel(kvm=True)
    k.cpu.load_microcode(7)
    f = k.open_vepc()
    assert k.cpu.cpusvn == 7 and k.mgr.usage_count == 1
    f.release()
    assert k.mgr.usage_count == 0


def test_an_update_derives_new_keys() -> None:
    from epcsim.hw.epc import G_MAC_KEY

    k = kernel()
    before = int(k.cpu.st.g[G_MAC_KEY])
    k.cpu.load_microcode(1)
    assert k.cpu.eupdatesvn() == SgxReturn.SGX_SUCCESS
    assert int(k.cpu.st.g[G_MAC_KEY]) != before


def test_a_guest_kernel_skips_the_update_on_the_shared_epc() -> None:
    from epcsim.sim.vm import Vm, host_kernel

    host = host_kernel(128, 3)
    host.cpu.load_microcode(9)
    vm = Vm(host, "g", 96, mode="oversubscribed", reserve=32)
    vm.add_enclave("e", 8)                    # the guest's open: no EUPDATESVN, no -EIO
    assert vm.kernel.mgr.usage_count >= 1
    assert host.cpu.cpusvn == 9               # the host's own first open (the vEPC) took it
