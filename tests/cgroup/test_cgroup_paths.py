"""The v16 rules one by one: hierarchical charge, -ENOMEM with only unreclaimable pages,
direct reclaim from the subtree, the fair descendant walk, the async headroom rule, the
memory cgroup of the backing store, and nothing per page when no cgroup is attached."""

from __future__ import annotations

import pytest

from epcsim.arch import PAGE_SIZE
from epcsim.hw.cpu import Processor
from epcsim.kernel.cgroup import (
    CG_ASYNC,
    CG_NEXT,
    SGX_CG_LOW_LIMIT,
    SGX_CG_MIN_FREE_PAGE,
    CgroupError,
    EpcCgroups,
    sgx_cgroup_next_get,
    sgx_cgroup_should_reclaim,
)
from epcsim.kernel.instance import Kernel
from epcsim.kernel.main import P_WAKE
from epcsim.selftest.loader import LoaderError, setup_test_encl


def machine(pages: int = 256) -> tuple[Kernel, EpcCgroups]:
    k = Kernel(Processor(epc_size=pages * PAGE_SIZE, content=False, n_lps=4))
    return k, EpcCgroups(k.mgr)


def test_no_cgroup_no_bytes_per_page() -> None:
    k = Kernel(Processor(epc_size=256 * PAGE_SIZE, content=False, n_lps=2))
    before = k.mgr.bytes_per_page()
    assert k.mgr.ms.cg.shape == (0,) and k.mgr.ms.cgt.shape[0] == 0
    assert k.mgr.ms.head.shape[0] == 2          # one node's free list and the global LRU
    EpcCgroups(k.mgr)
    assert k.mgr.bytes_per_page() > before      # attached: a u16 per page, and the table


def test_charge_is_hierarchical_and_uncharged_at_release() -> None:
    k, cg = machine()
    cg.mkdir("/pods")
    cg.mkdir("/pods/a")
    cg.enter("/pods/a")
    encl = setup_test_encl(k, 16 * PAGE_SIZE)
    used = k.cpu.npages - k.mgr.sgx_nr_free_pages
    assert cg.current("/pods/a") == cg.current("/pods") == cg.current("/") == used * PAGE_SIZE
    cg.check()
    encl.close()
    assert cg.current("/pods") == 0 and cg.peak("/pods") == used * PAGE_SIZE
    cg.check()


def test_limit_forces_reclaim_from_the_cgroup_only() -> None:
    k, cg = machine(512)
    cg.mkdir("/big")
    cg.mkdir("/small", max=40 * PAGE_SIZE)
    cg.enter("/big")
    big = setup_test_encl(k, 64 * PAGE_SIZE)
    big_pages = cg.current("/big")
    cg.enter("/small")
    setup_test_encl(k, 128 * PAGE_SIZE)
    assert cg.current("/small") <= 40 * PAGE_SIZE
    assert cg.reclaimed("/small") > 0 and cg.reclaimed("/big") == 0
    assert cg.current("/big") == big_pages       # the neighbour lost nothing
    assert cg.events("/small")["max"] > 0
    cg.check()
    big.close()


def test_only_unreclaimable_pages_left_gives_enomem() -> None:
    k, cg = machine()
    cg.mkdir("/tiny", max=2 * PAGE_SIZE)         # the SECS and one VA page, nothing else
    cg.enter("/tiny")
    with pytest.raises(LoaderError, match="errno 12"):
        setup_test_encl(k, 4 * PAGE_SIZE)
    assert cg.current("/tiny") == 0
    cg.check()


def test_lowering_max_evicts_nothing() -> None:
    k, cg = machine()
    cg.mkdir("/a")
    cg.enter("/a")
    setup_test_encl(k, 32 * PAGE_SIZE)
    cur = cg.current("/a")
    cg.write("/a", "misc.max", "sgx_epc 4096")
    assert cg.current("/a") == cur and cg.reclaimed("/a") == 0


def test_next_cg_walks_every_descendant_in_turn() -> None:
    k, cg = machine()
    ids = {p: cg.mkdir(p) for p in ("/a", "/a/x", "/a/y", "/b")}
    ms = k.mgr.ms
    seen = [int(sgx_cgroup_next_get(ms, 0)) for _ in range(10)]
    assert seen[:5] == seen[5:]                  # a cycle over the whole tree
    assert sorted(seen[:5]) == sorted([0, *ids.values()])
    a = ids["/a"]
    sub = [int(sgx_cgroup_next_get(ms, a)) for _ in range(3)]
    assert sorted(sub) == sorted([a, ids["/a/x"], ids["/a/y"]])
    cg.rmdir("/a/y")
    assert all(int(ms.cgt[r, CG_NEXT]) != ids["/a/y"] for r in cg.paths.values())
    sub = [int(sgx_cgroup_next_get(ms, a)) for _ in range(4)]
    assert sorted(sub) == sorted([a, a, ids["/a/x"], ids["/a/x"]])


def test_a_successful_charge_queues_no_async_work_and_the_work_keeps_headroom() -> None:
    k, cg = machine(1024)
    big = SGX_CG_LOW_LIMIT + 64
    cg.mkdir("/h", max=big * PAGE_SIZE)
    cg.mkdir("/l", max=64 * PAGE_SIZE)
    ms = k.mgr.ms
    h, lo = cg.cgroup_id("/h"), cg.cgroup_id("/l")
    cg.enter("/h")
    setup_test_encl(k, 400 * PAGE_SIZE)
    # The ioctls may reclaim: every refusal was met by direct reclaim, nothing was queued
    # (v16's queue_work after the charge loop is never reached), so ksgxd leaves /h full.
    assert int(ms.cgt[h, CG_ASYNC]) == 0
    k.mgr.run_ksgxd()
    usage = cg.current("/h") // PAGE_SIZE
    assert usage > big - SGX_CG_MIN_FREE_PAGE and sgx_cgroup_should_reclaim(ms, h)
    assert cg.events("/h")["max"] > 0
    # Queued (as a refused charge on the fault path queues it), the work keeps headroom.
    ms.cgt[h, CG_ASYNC] = 1
    ms.p[P_WAKE] = 1                             # queueing work wakes ksgxd's CPU
    k.mgr.run_ksgxd()
    assert cg.current("/h") // PAGE_SIZE <= big - SGX_CG_MIN_FREE_PAGE
    assert not sgx_cgroup_should_reclaim(ms, h)
    cg.enter("/l")
    setup_test_encl(k, 200 * PAGE_SIZE)
    ms.cgt[lo, CG_ASYNC] = 1
    ms.p[P_WAKE] = 1
    k.mgr.run_ksgxd()
    # Under SGX_CG_LOW_LIMIT no headroom is kept: the cgroup may stay full.
    assert cg.current("/l") > (64 - SGX_CG_MIN_FREE_PAGE) * PAGE_SIZE


def test_memory_max_refuses_backing_and_the_add_fails() -> None:
    k, cg = machine()
    cg.mkdir("/m", max=32 * PAGE_SIZE)
    cg.set_memory_max("/m", 8 * PAGE_SIZE)
    cg.enter("/m")
    with pytest.raises(LoaderError, match="errno 12"):
        setup_test_encl(k, 128 * PAGE_SIZE)
    assert cg.memory_events("/m")["max"] > 0
    assert cg.memory_current("/m") == 0          # the failed enclave's backing is gone
    cg.check()


def test_cgroupfs_errors() -> None:
    k, cg = machine()
    cg.mkdir("/a")
    with pytest.raises(CgroupError, match="EEXIST"):
        cg.mkdir("/a")
    with pytest.raises(CgroupError, match="ENOENT"):
        cg.mkdir("/nope/b")
    with pytest.raises(CgroupError, match="EINVAL"):
        cg.write("/a", "misc.max", "sgx_epc lots")
    with pytest.raises(CgroupError, match="EBUSY"):
        cg.rmdir("/")
    assert cg.read("/", "misc.capacity") == f"sgx_epc {256 * PAGE_SIZE}"
    with pytest.raises(CgroupError, match="EBUSY"):
        EpcCgroups(k.mgr)


def test_oom_killer_option_tears_down_the_biggest_other_enclave() -> None:
    from epcsim.kernel.encl import SGX_ENCL_DEAD

    k, cg = machine()
    cg.mkdir("/o", max=24 * PAGE_SIZE)
    cg.enter("/o")
    built = []
    with pytest.raises(LoaderError, match="errno 12"):
        for i in range(40):                  # each pins a VA page (and its SECS while resident)
            built.append(setup_test_encl(k, PAGE_SIZE, base=(0x20 + i) << 32))
    cg.check()
    cg.set_oom("/o", killer=k.sgx.oom_kill)
    late = setup_test_encl(k, PAGE_SIZE, base=0x80 << 32)   # an enclave is torn down for it
    assert cg.events("/o")["oom_kill"] >= 1
    dead = [b for b in built if k.sgx.ds.e_flags[b.file.e] & SGX_ENCL_DEAD]
    assert dead and not k.sgx.ds.e_flags[late.file.e] & SGX_ENCL_DEAD
    for b in dead:
        assert int(k.sgx.ds.e_secs[b.file.e]) == -1 and int(k.sgx.ds.e_nva[b.file.e]) == 0
    cg.check()
    for b in [*built, late]:
        assert b.close() == 0
    assert cg.current("/o") == 0
    cg.check()
