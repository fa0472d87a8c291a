"""The cases of the EPC cgroup series' ``run_epc_cg_selftests.sh`` (see
``epcsim.selftest.cgroup``), each on a fresh 4 MiB-EPC machine."""

from __future__ import annotations

import pytest

from epcsim.selftest import cgroup as C
from epcsim.selftest import run_suite


def _run(fn) -> C.Harness:  # type: ignore[no-untyped-def]
    h = C.Harness()
    fn(h)
    assert h.checks, "a selftest that checks nothing"
    return h


def test_small_limit_fails_one_capacity_enclave() -> None:
    h = _run(C.small_limit)
    assert h.kernel.mgr.counters()["alloc_enomem"] > 0


def test_large_limit_four_concurrent_one_passes() -> None:
    _run(C.large_limit_4)


def test_large_limit_five_concurrent_one_fails() -> None:
    _run(C.large_limit_5)


def test_larger_limit_eight_concurrent_pass() -> None:
    h = _run(C.larger_limit)
    assert h.kernel.mgr.counters()["eldu"] > 0


def test_larger_limit_with_a_random_kill() -> None:
    _run(C.larger_limit_random_kill)


def test_memcg_limit_four_concurrent_fail() -> None:
    _run(C.memcg_limit)


def test_leak_misc_current_back_to_zero() -> None:
    _run(C.leak)


def test_without_memory_max_the_memcg_case_passes() -> None:
    """The memcg case fails because of memory.max, not because of the EPC limit alone."""
    h = C.Harness()
    path = h.cgroup("nomem", 4 * h.capacity // 512)
    fates = h.run_concurrently(path, 1)
    assert fates == [C.PASSED]


@pytest.mark.parametrize("name", ["small_limit", "leak"])
def test_suite_runs_through_run_suite(name: str) -> None:
    (r,) = run_suite("cgroup", names=[name])
    assert r.passed, r.error
    assert r.suite == "cgroup" and r.checks
