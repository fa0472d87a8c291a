"""The 16 tests of tools/testing/selftests/sgx/main.c, under the kernel's names, on the model.

Each follows the steps and expected values of the kernel's `tools/testing/selftests/sgx` (see
``epcsim.selftest.sgx``); the oversubscribed ones build an enclave larger than the whole EPC.
"""

from __future__ import annotations

from epcsim.selftest import sgx


def _run(fn) -> sgx.Harness:  # type: ignore[no-untyped-def]
    h = sgx.Harness()
    fn(h)
    assert h.checks, "a selftest that checks nothing"
    return h


def test_unclobbered_vdso() -> None:
    _run(sgx.unclobbered_vdso)


def test_unclobbered_vdso_oversubscribed() -> None:
    h = _run(sgx.unclobbered_vdso_oversubscribed)
    c = h.kernel.mgr.counters()
    assert c["written"] > 0 and c["eldu"] > 0


def test_unclobbered_vdso_oversubscribed_remove() -> None:
    h = _run(sgx.unclobbered_vdso_oversubscribed_remove)
    assert h.kernel.mgr.counters()["eldu"] > 100


def test_clobbered_vdso() -> None:
    _run(sgx.clobbered_vdso)


def test_clobbered_vdso_and_user_function() -> None:
    _run(sgx.clobbered_vdso_and_user_function)


def test_tcs_entry() -> None:
    _run(sgx.tcs_entry)


def test_pte_permissions() -> None:
    _run(sgx.pte_permissions)


def test_tcs_permissions() -> None:
    _run(sgx.tcs_permissions)


def test_epcm_permissions() -> None:
    _run(sgx.epcm_permissions)


def test_augment() -> None:
    _run(sgx.augment)


def test_augment_via_eaccept() -> None:
    _run(sgx.augment_via_eaccept)


def test_tcs_create() -> None:
    _run(sgx.tcs_create)


def test_remove_added_page_no_eaccept() -> None:
    _run(sgx.remove_added_page_no_eaccept)


def test_remove_added_page_invalid_access() -> None:
    _run(sgx.remove_added_page_invalid_access)


def test_remove_added_page_invalid_access_after_eaccept() -> None:
    _run(sgx.remove_added_page_invalid_access_after_eaccept)


def test_remove_untouched_page() -> None:
    _run(sgx.remove_untouched_page)


def test_every_kernel_selftest_is_here() -> None:
    names = {n[5:] for n in globals()
             if n.startswith("test_") and n != "test_every_kernel_selftest_is_here"}
    assert names == set(sgx.TESTS) and len(names) == 16
