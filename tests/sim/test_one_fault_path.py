"""One fault path: the driver's Python API and the replay engine run the same compiled rule.

The same seeded accesses of one SGX2 enclave under reclaim (500 pages on an EPC of 256:
first touches, reuse, scans, writes) go once through ``epcsim replay --policy sgx`` and once
through ``Kernel.handle_page_fault`` / ``SgxDriver.vma_fault``, page by page from Python, on
the machine the replay builds. Both must see the same faults, in the same order, and do the
same EAUGs, ELDUs, EWBs, ETRACKs and ksgxd wakeups.

Both sides run with the platform's TLB (the Python side's accesses go through
``encls.enclave_access`` as the engine's do, and mark a page accessed only when they walk),
and both again without one (``--tlb-entries 0``: every access walks). The Python side moves
its thread's clock (``mgr.now``) as the engine moves its thread's, so that the pages ksgxd
writes back are free at the same moments, and it waits for them alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from epcsim.arch import X86_PF_USER, X86_PF_WRITE
from epcsim.cli import main
from epcsim.hw import encls as L
from epcsim.kernel.encl import EP_PRESENT, EP_YOUNG, NONE
from epcsim.sim import costs as K
from epcsim.sim.replay import R_FIRST, R_STACK, R_TCS, T_ENCL, T_LP, Replay, ReplayConfig

PAGES = 500
EPC = 256


def _accesses(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """First touches in order, then hot reuse, scans and random pages; a third writes."""
    rng = np.random.default_rng(seed)
    parts = [np.arange(PAGES)]
    for _ in range(6):
        parts.append(rng.integers(0, 60, 400))                       # a hot set
        start = int(rng.integers(0, PAGES - 150))
        parts.append(np.arange(start, start + 150))                  # a scan
        parts.append(rng.integers(0, PAGES, 200))                    # anywhere
    obj = np.concatenate(parts).astype(np.int64)
    return obj, rng.random(obj.shape[0]) < 0.3


def _through_the_replay(tmp_path: Path, obj: np.ndarray, write: np.ndarray,
                        capsys: pytest.CaptureFixture[str],
                        tlb: int | None) -> tuple[dict, list[int]]:  # type: ignore[type-arg]
    trace = np.zeros(obj.shape[0], np.dtype([("obj", np.uint64), ("write", np.bool_)]))
    trace["obj"], trace["write"] = obj, write
    np.save(tmp_path / "t.npy", trace)
    out = tmp_path / "out"
    more = [] if tlb is None else ["--tlb-entries", str(tlb)]
    assert main(["replay", str(tmp_path / "t.npy"), "--format", "npy", "--epc-pages", str(EPC),
                 "--policy", "sgx", "--json", "--out", str(out), *more]) == 0
    summary = json.loads(capsys.readouterr().out)
    faults = pq.read_table(out / "faults.parquet").column("page").to_pylist()
    return summary, faults


def _through_the_kernel(obj: np.ndarray, write: np.ndarray,
                        tlb: int | None) -> tuple[dict, list[int]]:  # type: ignore[type-arg]
    """The enclave's thread, as the engine runs it, with the kernel's fault handler called
    from Python for every #PF; its clock moves as the engine moves its thread's (the cost
    model's cycles per access, per walk and per stall)."""
    plat = K.with_tlb(K.PRESETS["client-sgx1"], tlb)
    rp = Replay(ReplayConfig(policy="sgx", epc_pages=EPC, platform=plat),
                np.array([PAGES], np.int64), [0])
    k, cpu = rp.kernel, rp.cpu
    c = plat.costs
    walk = c.page_walk.cycles if plat.tlb_entries else 0
    now = 0
    ds = k.sgx.ds
    e, lp = int(rp.rs.t[0, T_ENCL]), int(rp.rs.t[0, T_LP])
    base, first = int(ds.e_base[e]), int(ds.e_first[e])
    tcs = int(ds.ep_epc[first + R_TCS])
    stack = int(rp.rs.e_stack[0])
    mm = cpu.aspace[lp]
    faults: list[int] = []
    for p, w in zip(obj.tolist(), write.tolist()):
        ep = first + R_FIRST + p
        lin = base + ((R_FIRST + p) << 12)
        now += c.request.cycles
        if int(cpu.st.lp_row[lp]) == NONE:
            assert L.eresume(cpu.st, lp, tcs, base) == 0       # the AEP after an IPI
            now += c.aex.cycles + c.eresume.cycles
        epc = int(ds.ep_epc[ep])
        code = L.enclave_access(cpu.st, lp, epc, lin, w, False) \
            if epc >= 0 and ds.ep_flags[ep] & EP_PRESENT else 1
        if code <= 0:
            if code == L.WALKED:   # a TLB hit sets no accessed bit
                ds.ep_flags[ep] |= np.uint8(EP_YOUNG)
                now += walk
            k.mgr.touch(epc)
            continue
        added = False
        while True:
            assert L.aex(cpu.st, lp) == 0
            faults.append(p)
            now += c.aex.cycles + c.page_fault.cycles + c.fault_software.cycles
            before = k.sgx.counters(e)
            k.mgr.now = now
            outcome = k.handle_page_fault(mm, lin, X86_PF_USER | (X86_PF_WRITE if w else 0))
            now = k.mgr.now                     # it waited for ksgxd's pages
            after = k.sgx.counters(e)
            loads = (after["eldu"] - before["eldu"]) + (after["secs_eldu"] - before["secs_eldu"])
            augs = after["eaug"] - before["eaug"]
            added = added or augs > 0
            now += loads * c.eldu.cycles + augs * c.eaug.cycles
            assert L.eresume(cpu.st, lp, tcs, base) == 0
            now += c.eresume.cycles
            if outcome == "fixed":
                break
            assert outcome == "retry", outcome
        epc = int(ds.ep_epc[ep])
        if added:
            # The new page is PENDING: the enclave's handler accepts it.
            assert L.aex(cpu.st, lp) == 0 and L.eresume(cpu.st, lp, tcs, base) == 0
            assert L.eaccept(cpu.st, lp, stack, base + (R_STACK << 12),
                             (L.PT_REG << 8) | 0x3 | 0x8, epc, lin) == 0
            now += c.aex.cycles + c.page_fault.cycles + c.eresume.cycles + c.eaccept.cycles
        # The fault's AEX flushed the TLB: the access walks.
        assert L.enclave_access(cpu.st, lp, epc, lin, w, False) == L.WALKED
        ds.ep_flags[ep] |= np.uint8(EP_YOUNG)
        now += walk
    m = k.mgr.counters()
    mine = k.sgx.counters(e)
    assert mine["faults"] == len(faults)
    return {"faults": len(faults), "eaug": mine["eaug"], "eldu": mine["eldu"],
            "ewb": m["ewb"], "etrack": m["etrack"], "ksgxd_wakeups": m["ksgxd_wakeups"],
            "tlb_shootdowns": m["tlb_shootdowns"], "ebusy_waits": k.fault_retries,
            "waited_cycles": m["wait_cycles"]}, faults


@pytest.mark.parametrize("tlb", [None, 0], ids=["platform-tlb", "no-tlb"])
def test_the_python_api_and_the_replay_fault_alike(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tlb: int | None) -> None:
    obj, write = _accesses(11)
    summary, replay_faults = _through_the_replay(tmp_path, obj, write, capsys, tlb)
    api, api_faults = _through_the_kernel(obj, write, tlb)
    keys = ("faults", "eaug", "eldu", "ewb", "etrack", "ksgxd_wakeups", "tlb_shootdowns",
            "ebusy_waits")
    waited = round(summary["virtual_time_breakdown_s"]["waiting_for_ksgxd"] * 3e9)
    assert {k: summary[k] for k in keys} | {"waited_cycles": waited} == api
    assert replay_faults == api_faults
    # Not a vacuous comparison: the run paged, and ksgxd worked.
    assert api["eaug"] == PAGES and api["eldu"] > 500 and api["ewb"] > 500
    assert api["etrack"] > 0 and api["ksgxd_wakeups"] > 10
