"""VMs in content mode: guest enclave pages hold bytes that the guest's EWB/ELDU and the
host's EWB/ELDUC seal and open with AES-GCM; they read back exactly what was last written,
and a host-side blob that was tampered with or replayed ends the VM instead of showing the
guest wrong bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from epcsim.arch import PAGE_SIZE, PageType
from epcsim.hw.epc import EPT_EVICTED, X_LIN, X_SECINFO
from epcsim.sim.runner import run_scenario
from epcsim.sim.vm import HEADER_PAGES, GuestEnclave, Vm, VmError, host_kernel
from epcsim.workload.scenario import validate

HOST_PAGES = 160
GUEST_PAGES = 96
ENCLAVE_PAGES = 24


def _vm(mode: str = "oversubscribed") -> tuple[Vm, GuestEnclave]:
    k = host_kernel(HOST_PAGES, 2, low=4, high=8, content=True, seed=5)
    vm = Vm(k, "a", GUEST_PAGES, mode=mode, low=4, high=8, reserve=48)
    return vm, vm.add_enclave("e", ENCLAVE_PAGES)


def _write_all(vm: Vm, enc: GuestEnclave) -> None:
    vm.run(enc, np.arange(enc.npages), np.ones(enc.npages, np.bool_))


def _evicted_reg_entries(vm: Vm) -> list[int]:
    st = vm.host.cpu.st
    return [int(i) for i in np.nonzero(vm.file.ept == EPT_EVICTED)[0] + vm.file.base
            if (int(st.xrec[i, X_SECINFO]) >> 8) & 0xFF == PageType.REG]


def _page_of(vm: Vm, enc: GuestEnclave, entry: int) -> int:
    return (int(vm.host.cpu.st.xrec[entry, X_LIN]) - enc.base) // PAGE_SIZE - HEADER_PAGES


def _host_evict_all(vm: Vm) -> None:
    for _ in range(3):          # the first pass clears the EPT accessed bits
        vm.host.mgr.reclaim_pages(128)


def test_bytes_survive_guest_and_host_eviction() -> None:
    vm, enc = _vm()
    _write_all(vm, enc)
    _write_all(vm, enc)          # a second version, at another offset of every page
    # The guest pages itself out (its reclaimer, its VA pages, its backing store)...
    # The first pass clears every accessed bit; the second writes ten pages back.
    vm.kernel.mgr.reclaim_pages(64)
    vm.kernel.mgr.reclaim_pages(10)
    vm.host_turn()
    # ...then the host evicts what is left behind the guest: SECS, VA pages, REG pages.
    _host_evict_all(vm)
    s = vm.summary()
    assert s["guest_ewb"] > 0 and s["host_ewb"] > 0
    evicted = _evicted_reg_entries(vm)
    assert evicted, "the host evicted no REG page: the test would prove nothing"
    # Confidentiality: what the host holds is not the page.
    cpu = vm.host.cpu
    for i in evicted:
        blob = cpu.xblob[i]
        assert blob.contents is not None
        assert blob.contents != enc.shadow[_page_of(vm, enc, i)].tobytes()
    assert vm.check() == 0
    s = vm.summary()
    assert s["host_eldu"] > 0 and s["guest_eldu"] > 0
    assert s["version_mismatches"] == 0
    assert enc.bytes_checked == enc.npages * PAGE_SIZE
    assert not cpu.xblob or all(int(cpu.st.ept[i]) == EPT_EVICTED for i in cpu.xblob)
    # Pages really changed: every page holds two stamps besides the zero it was EADDed as.
    assert all(np.count_nonzero(enc.shadow[i]) > 64 for i in range(enc.npages))


def test_guest_ewb_into_a_va_page_the_host_evicted() -> None:
    """The guest's reclaimer writes versions into a VA page that the exit handler reloads
    in the middle of the compiled batch; opening its sealed bytes afterwards must not put
    the old slots back (every later guest ELDU would then fail its MAC)."""
    vm, enc = _vm()
    _write_all(vm, enc)
    _host_evict_all(vm)
    st = vm.host.cpu.st
    evicted = np.nonzero(vm.file.ept == EPT_EVICTED)[0] + vm.file.base
    assert any((int(st.xrec[i, X_SECINFO]) >> 8) & 0xFF == PageType.VA for i in evicted)
    vm.kernel.mgr.reclaim_pages(64)         # clears the guest's accessed bits
    vm.kernel.mgr.reclaim_pages(64)         # EWB into the reloaded VA page
    vm.host_turn()
    assert vm.summary()["guest_ewb"] > 0
    assert vm.check() == 0
    assert vm.summary()["guest_eldu"] > 0


def test_check_is_not_vacuous() -> None:
    """A byte changed behind the enclave's back (as a bad reload would) is a mismatch."""
    vm, enc = _vm()
    _write_all(vm, enc)
    enc.shadow[3, 100] ^= 0xFF
    assert vm.check() == 1


@pytest.mark.parametrize("what", ["contents", "mac"])
def test_tampered_host_blob_ends_the_vm(what: str) -> None:
    vm, enc = _vm()
    _write_all(vm, enc)
    _host_evict_all(vm)
    cpu = vm.host.cpu
    i = _evicted_reg_entries(vm)[0]
    blob = cpu.xblob[i]
    if what == "contents":
        bad = bytearray(blob.contents)  # type: ignore[arg-type]
        bad[17] ^= 1
        cpu.xblob[i] = blob._replace(contents=bytes(bad))
    else:
        cpu.xblob[i] = blob._replace(mac=bytes(16))
    page = _page_of(vm, enc, i)
    with pytest.raises(VmError, match=r"vEPC dead.*SGX error 9"):
        vm.run(enc, np.array([page]), np.zeros(1, np.bool_))
    # The guest never saw bytes: no comparison ran, the page is invalid and zeroed.
    assert enc.mismatches == 0 and enc.bytes_checked == 0
    h = int(cpu.st.ept[i])
    assert h >= 0 and int(cpu.st.flags[h]) == 0 and not cpu.st.data[h].any()


def test_replayed_host_blob_ends_the_vm() -> None:
    """An older sealing of the same page (valid tag, old version) does not open."""
    vm, enc = _vm()
    _write_all(vm, enc)
    _host_evict_all(vm)
    cpu = vm.host.cpu
    i = _evicted_reg_entries(vm)[0]
    page = _page_of(vm, enc, i)
    old = cpu.xblob[i]
    vm.run(enc, np.array([page]), np.ones(1, np.bool_))     # reload, write a new version
    _host_evict_all(vm)
    assert int(cpu.st.ept[i]) == EPT_EVICTED and cpu.xblob[i] != old
    cpu.xblob[i] = old
    with pytest.raises(VmError, match="vEPC dead"):
        vm.run(enc, np.array([page]), np.zeros(1, np.bool_))
    assert enc.mismatches == 0


def test_balloon_guest_pages_itself_with_bytes() -> None:
    vm, enc = _vm("balloon")
    _write_all(vm, enc)
    # Leave the guest 16 pages for a 28-page enclave: it must page itself.
    assert vm.inflate(GUEST_PAGES, keep=16) > 0
    for _ in range(3):
        vm.run(enc, np.arange(enc.npages), np.arange(enc.npages) % 2 == 0)
    s = vm.summary()
    assert s["guest_ewb"] > 0 and s["host_ewb"] == 0
    assert vm.check() == 0 and s["version_mismatches"] == 0


def _scenario(mode: str) -> dict:  # type: ignore[type-arg]
    return {"platform": {"epc_size": "1MiB"},
            "run": {"requests": 1200, "seed": 3, "content": True},
            "kernel": {"low": 8, "high": 16},
            "virt": {"mode": mode, "reserve": 48},
            "vms": [{"name": "a", "epc_size": "1MiB", "enclaves": [
                        {"name": "x", "size": "384KiB", "workload": "zipf"}]},
                    {"name": "b", "epc_size": "1MiB", "enclaves": [
                        {"name": "y", "size": "448KiB", "start": 0.5}]}]}


@pytest.mark.parametrize("mode", ["oversubscribed", "balloon"])
def test_scenario_content_mode_reads_back_every_byte(mode: str) -> None:
    out = run_scenario(validate(_scenario(mode)), Path("."))
    for r in out.summary["vms"]:
        assert r["status"] == "ran" and r["content"] is True
        assert r["readback_mismatches"] == 0 and r["version_mismatches"] == 0
        assert r["bytes_checked"] == r["pages_checked"] * PAGE_SIZE > 0
    rows = {r["name"]: r for r in out.summary["vms"]}
    if mode == "oversubscribed":
        assert sum(r["host_ewb"] for r in rows.values()) > 0
    else:
        assert sum(r["guest_ewb"] for r in rows.values()) > 0


@pytest.mark.parametrize("content", [False, True])
def test_guest_reboot_after_host_eviction(content: bool) -> None:
    """REMOVE_ALL drops the pages the host had evicted, without reloading them, so their
    host VA slots still hold versions; the rebuilt guest's pages are evicted into the same
    slots (SGX_VA_SLOT_OCCUPIED, an EWB that happened) and must come back intact."""
    k = host_kernel(HOST_PAGES, 2, low=4, high=8, content=content, seed=5)
    vm = Vm(k, "a", GUEST_PAGES, mode="oversubscribed", low=4, high=8, reserve=48)
    enc = vm.add_enclave("e", ENCLAVE_PAGES)
    _write_all(vm, enc)
    _host_evict_all(vm)
    dropped = set(np.nonzero(vm.file.ept == EPT_EVICTED)[0].tolist())
    assert len(dropped) > ENCLAVE_PAGES // 2
    assert vm.reboot() == 0
    assert vm.evicted_by_host() == 0 and not k.cpu.xblob
    enc = vm.add_enclave("e", ENCLAVE_PAGES)
    _write_all(vm, enc)
    before = vm.summary()["host_ewb"]
    _host_evict_all(vm)
    assert vm.summary()["host_ewb"] - before > ENCLAVE_PAGES // 2
    again = set(np.nonzero(vm.file.ept == EPT_EVICTED)[0].tolist())
    assert again & dropped, "no slot was reused: the test would prove nothing"
    assert vm.check() == 0
    assert vm.summary()["version_mismatches"] == 0
    k.mgr.check()
