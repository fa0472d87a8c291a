"""One test per malicious-OS attack: the exact architectural outcome, every enclave's data
unchanged afterwards, the kernel consistent and nothing leaked (docs/threat-model.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from epcsim.attack import ATTACKS, AccessFailed, Lab
from epcsim.hw.epc import EPCM_VALID


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    lab = Lab(backing_dir=str(tmp_path))
    yield lab
    lab.close()
    assert list(tmp_path.iterdir()) == [], "a backing file outlived its enclave"


def _check(lab: Lab, name: str, outcome: str, seen: str) -> None:
    r = ATTACKS[name](lab)
    assert r.outcome == outcome, r.steps
    assert r.enclave_saw == seen, r.steps
    assert r.detected, r.steps
    assert r.data_unchanged, r.steps
    assert r.clean, r.steps
    assert r.held
    assert lab.verify()           # and once more, independently of the attack's own check


@pytest.mark.parametrize("name", ["tamper-contents", "tamper-pcmd-mac", "tamper-pcmd-secinfo",
                                  "drop-page"])
def test_edited_backing_store_fails_eldu_with_mac_compare_fail(lab: Lab, name: str) -> None:
    _check(lab, name, "SGX_MAC_COMPARE_FAIL", "SIGBUS")


def test_replayed_old_version_fails_eldu(lab: Lab) -> None:
    _check(lab, "replay-old-version", "SGX_MAC_COMPARE_FAIL", "SIGBUS")


def test_swapped_pages_of_one_enclave_fail_eldu(lab: Lab) -> None:
    _check(lab, "swap-same-enclave", "SGX_MAC_COMPARE_FAIL", "SIGBUS")


def test_swapped_pages_of_two_enclaves_at_the_same_address_fail_eldu(lab: Lab) -> None:
    assert lab.enclaves[0].base == lab.enclaves[1].base    # only the EID tells them apart
    _check(lab, "swap-across-enclaves", "SGX_MAC_COMPARE_FAIL", "SIGBUS")


def test_reload_at_another_address_fails_and_leaves_the_target_free(lab: Lab) -> None:
    _check(lab, "reload-elsewhere", "SGX_MAC_COMPARE_FAIL", "nothing")


def test_eremove_of_a_secs_with_children_is_refused(lab: Lab) -> None:
    _check(lab, "eremove-secs-with-children", "SGX_CHILD_PRESENT", "nothing")


def test_ewb_of_a_secs_with_children_is_refused(lab: Lab) -> None:
    _check(lab, "ewb-secs-with-children", "SGX_CHILD_PRESENT", "nothing")


def test_eremove_while_a_thread_is_inside_is_refused(lab: Lab) -> None:
    _check(lab, "eremove-while-inside", "SGX_ENCLAVE_ACT", "nothing")


def test_mapping_another_enclaves_page_faults_with_the_sgx_bit(lab: Lab) -> None:
    _check(lab, "map-foreign-page", "#PF", "#PF(SGX)")


def test_reading_epc_from_outside_gives_the_abort_page(lab: Lab) -> None:
    _check(lab, "read-epc-from-outside", "abort-page", "nothing")


def test_every_attack_has_a_test() -> None:
    tested = {"tamper-contents", "tamper-pcmd-mac", "tamper-pcmd-secinfo", "drop-page",
              "replay-old-version", "swap-same-enclave", "swap-across-enclaves",
              "reload-elsewhere", "eremove-secs-with-children", "ewb-secs-with-children",
              "eremove-while-inside", "map-foreign-page", "read-epc-from-outside"}
    assert set(ATTACKS) == tested


def test_a_tampered_page_stays_unreadable_until_the_genuine_copy_returns(lab: Lab) -> None:
    """No retry of the fault path launders an edited blob: each ELDU fails, the EPC page it
    tried is freed again, and the genuine copy still loads afterwards."""
    addr = lab.pages(0)[3] + 8
    want = lab.values[(0, addr)]
    lab.evict_all()
    genuine = lab.blob(0, addr)
    lab.put_blob(0, addr, genuine._replace(contents=bytes(4096)))
    free_before = lab.kernel.mgr.sgx_nr_free_pages
    with pytest.raises(AccessFailed):
        lab.read(0, addr)
    for _ in range(3):
        with pytest.raises(AccessFailed):
            lab.resume(0)
    # Only genuine pages came back (the SECS, the TCS the thread entered by); each failed
    # ELDU's EPC page went back to the free list.
    ds = lab.kernel.sgx.ds
    first = int(ds.e_first[lab.e(0)])
    resident = int((ds.ep_epc[first:first + (lab.enclaves[0].size >> 12)] >= 0).sum())
    assert 1 <= resident <= 3
    assert lab.kernel.mgr.sgx_nr_free_pages == free_before - 1 - resident
    assert int(lab.kernel.sgx.ds.ep_epc[lab.ep(0, addr)]) == -1
    lab.put_blob(0, addr, genuine)
    assert lab.resume(0) == want
    assert int(lab.cpu.st.flags[lab.epc_of(0, addr)]) & EPCM_VALID
    assert lab.verify() and lab.clean()


def test_a_child_pcmd_in_the_secs_place_faults_eldu_and_the_kernel_survives(lab: Lab) -> None:
    """ELDU of the SECS slot holding a TCS's blob: the PCMD names a child type, so the leaf
    wants a SECS operand and faults (#PF); the driver turns the fault into SIGBUS, as the
    kernel's encls_faulted fixup does, instead of crashing."""
    addr = lab.pages(0)[2] + 8
    want = lab.values[(0, addr)]
    lab.evict_all()
    b = lab.backing(0)
    secs, tcs = b.secs_index(), 0
    assert {secs, tcs} <= b.pcmd
    blob_secs = lab.blob(0, lab.enclaves[0].base + secs * 4096)
    blob_tcs = lab.blob(0, lab.enclaves[0].base + tcs * 4096)
    lab.put_blob(0, lab.enclaves[0].base + secs * 4096, blob_tcs)
    with pytest.raises(AccessFailed) as failed:
        lab.read(0, addr)
    assert failed.value.seen == "SIGBUS"
    assert lab.kernel.sgx.last_eldu == -14                  # the #PF vector
    assert int(lab.kernel.sgx.ds.e_secs[lab.e(0)]) == -1   # the SECS is still out
    assert lab.clean()
    lab.put_blob(0, lab.enclaves[0].base + secs * 4096, blob_secs)
    assert lab.resume(0) == want
    assert lab.verify() and lab.clean()
