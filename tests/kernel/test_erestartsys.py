"""signal_pending → -ERESTARTSYS where the kernel checks it: ``sgx_alloc_epc_page``'s reclaim
loop (``main.c``), ``sgx_ioc_enclave_add_pages``'s page loop (``ioctl.c``) and the cgroup
series' ``sgx_cgroup_try_charge``.

The model delivers no signal itself; a caller of the Python API raises one with
``mgr.signal_pending = True`` and clears it when it would have been delivered.
"""

from __future__ import annotations

import pytest
from rig import Rig

from epcsim.arch import PAGE_SIZE, Attribute, PageType, Secinfo, Secs, secinfo_flags
from epcsim.hw.cpu import Processor
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
)
from epcsim.kernel.main import EBUSY, ERESTARTSYS
from epcsim.selftest.loader import LoaderError, setup_test_encl


def test_a_reclaiming_allocation_with_a_signal_pending_stops_with_erestartsys() -> None:
    r = Rig(pages=128)
    r.fill(0, r.mgr.sgx_nr_free_pages)                   # nothing free, all reclaimable
    r.mgr.signal_pending = True
    assert r.mgr.alloc(0, 0, True) == -ERESTARTSYS
    c = r.mgr.counters()
    assert c["alloc_erestartsys"] == 1 and c["direct_reclaims"] == 0
    # The check comes after -EBUSY's: a caller that may not reclaim still gets -EBUSY.
    assert r.mgr.alloc(0, 0, False) == -EBUSY
    # The allocation that stopped still woke ksgxd (the wake-up follows the loop).
    assert r.mgr.ksgxd_awake
    r.mgr.signal_pending = False
    assert r.mgr.alloc(0, 0, True) >= 0
    r.mgr.check()


def test_a_free_page_is_taken_even_with_a_signal_pending() -> None:
    r = Rig(pages=128)
    r.mgr.signal_pending = True
    assert r.mgr.alloc(0, 0, True) >= 0
    assert r.mgr.counters()["alloc_erestartsys"] == 0


def _created(k: Kernel):  # type: ignore[no-untyped-def]
    f = k.open_enclave()
    secs = Secs(size=1 << 20, baseaddr=0x10_0000_0000, ssaframesize=1,
                attributes=Attribute.MODE64BIT, xfrm=3)
    assert f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs.pack())) == 0
    return f


def _add(f, pages: int) -> SgxEnclaveAddPages:  # type: ignore[no-untyped-def]
    arg = SgxEnclaveAddPages(src=bytes(pages * PAGE_SIZE), offset=0, length=pages * PAGE_SIZE,
                             secinfo=Secinfo(flags=secinfo_flags(PageType.REG, 3)).pack(),
                             flags=0)
    arg.rc = f.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg)
    return arg


def test_add_pages_with_a_signal_pending_adds_nothing_and_restarts() -> None:
    k = Kernel(Processor(epc_size=256 * PAGE_SIZE, n_lps=2))
    f = _created(k)
    k.mgr.signal_pending = True
    arg = _add(f, 4)
    assert arg.rc == -ERESTARTSYS and arg.count == 0
    k.mgr.signal_pending = False
    arg = _add(f, 4)                    # the restarted call
    assert arg.rc == 0 and arg.count == 4 * PAGE_SIZE


def test_add_pages_interrupted_after_some_pages_returns_the_short_count() -> None:
    k = Kernel(Processor(epc_size=256 * PAGE_SIZE, n_lps=2))
    f = _created(k)
    driver = k.sgx
    real = driver.add_page
    added = []

    def add_then_signal(*a, **kw):  # type: ignore[no-untyped-def]
        rc = real(*a, **kw)
        added.append(rc)
        if len(added) == 3:
            k.mgr.signal_pending = True          # arrives while the third page is added
        return rc

    driver.add_page = add_then_signal            # type: ignore[method-assign]
    arg = _add(f, 8)
    assert arg.rc == 0 and arg.count == 3 * PAGE_SIZE and added == [0, 0, 0]


def test_a_cgroup_at_its_limit_with_a_signal_pending_restarts() -> None:
    k = Kernel(Processor(epc_size=512 * PAGE_SIZE, n_lps=2))
    cg = EpcCgroups(k.mgr)
    cg.mkdir("/small")
    cg.enter("/small")
    setup_test_encl(k, 16 * PAGE_SIZE)
    cg.write("/small", "misc.max", f"sgx_epc {cg.current('/small')}")    # full now
    assert k.mgr.lru_pages > 0                   # and its pages could be reclaimed
    k.mgr.signal_pending = True
    assert k.mgr.alloc(0, 0, True) == -ERESTARTSYS
    c = k.mgr.counters()
    assert c["alloc_erestartsys"] == 1 and c["written"] == 0
    assert cg.events("/small")["max"] == 1
    k.mgr.signal_pending = False
    page = k.mgr.alloc(0, 0, True)               # restarted: reclaims within the cgroup
    assert page >= 0 and k.mgr.counters()["written"] > 0
    assert k.mgr.free(page) == 0
    cg.check()


def test_the_loader_sees_erestartsys_from_add_pages() -> None:
    k = Kernel(Processor(epc_size=256 * PAGE_SIZE, n_lps=2))
    k.mgr.signal_pending = True
    with pytest.raises(LoaderError, match=f"errno {ERESTARTSYS} after 0 bytes"):
        setup_test_encl(k, 16 * PAGE_SIZE)
