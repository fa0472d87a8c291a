"""Run a scenario's ``[[vms]]`` on one host: per-VM summaries, a ``vms`` table and a series.

All VMs share the host's EPC (``[platform]``) and its kernel (``[kernel]``). ECALLs are
interleaved by the enclaves' weights; an enclave with ``start = 0.5`` runs only in the second
half, which is how a scenario moves from working sets that fit to working sets that do not.

Time is the cost model's: each VM is charged its enclave work, guest faults (AEX, #PF,
handler, ELDU, ERESUME), guest write-backs, and the exits the host causes it (EPT violations
with the host's ELDU, kicks, SGX_CONFLICT exits, trapped ECREATE/EINIT). Host reclaim runs on
host CPUs and is reported, not charged to a guest. ``slowdown`` is a VM's time over the time
of its enclave work alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from epcsim.arch import PAGE_SIZE
from epcsim.sim.costs import Platform
from epcsim.sim.vm import Vm, VmError, host_kernel
from epcsim.workload import generators as G
from epcsim.workload.scenario import Scenario


def _stream(kind: str, npages: int, n: int, alpha: float, seed: int) -> np.ndarray:
    if kind == "scan":
        return np.asarray(G.sequential_scan(npages, n, seed=seed), dtype=np.int64)
    if kind == "zipf":
        return np.asarray(G.zipf(npages, n, alpha=alpha, seed=seed), dtype=np.int64)
    return np.asarray(G.uniform(npages, n, seed=seed), dtype=np.int64)


def _cycles(s: dict[str, Any], plat: Platform, ecalls: int) -> tuple[int, int]:
    """(cycles, cycles of the enclave work alone) of one VM."""
    c = plat.costs
    base = s["requests"] * c.request.cycles + ecalls * c.eenter_eexit.cycles
    fault = (c.aex.cycles + c.page_fault.cycles + c.fault_software.cycles
             + c.eresume.cycles)
    total = (base + s["guest_faults"] * fault + s["guest_eldu"] * c.eldu.cycles
             + s["guest_ewb"] * (c.ewb.cycles + c.eblock.cycles)
             + s["ept_violations"] * (c.vm_exit.cycles + c.ept_fault.cycles)
             + s["host_eldu"] * c.eldu.cycles
             + s["kicks"] * (c.kick.cycles + c.aex.cycles + c.eresume.cycles)
             + (s["vm_exits"] - s["ept_violations"] - s["kicks"]) * c.vm_exit.cycles)
    return total, base


def run_vms(sc: Scenario, plat: Platform) -> tuple[list[dict[str, Any]], dict[str, pa.Table]]:
    """Boot every VM, build its enclaves, run the ECALLs, read every page back."""
    v = sc.virt
    n_lps = sum(vm.vcpus for vm in sc.vms) + 1
    # [run] content = true: guest enclave pages hold bytes, sealed by guest and host EWB.
    host = host_kernel(plat.epc_pages, n_lps, low=sc.kernel.low, high=sc.kernel.high,
                       batch=sc.kernel.batch, policy=sc.kernel.policy,
                       content=sc.run.content, seed=sc.run.seed)
    vms: list[Vm] = []
    failed: list[dict[str, Any]] = []
    lp = 1
    for i, spec in enumerate(sc.vms):
        mode = v.mode or spec.mode
        try:
            vm = Vm(host, spec.name, int(spec.epc_size) // PAGE_SIZE, vcpus=spec.vcpus,
                    lp_base=lp, mode=mode, low=v.guest_low, high=v.guest_high,
                    batch=sc.kernel.batch, reserve=v.reserve,
                    vmm_base=0x7F00_0000_0000 + i * (1 << 36))
        except VmError as e:
            failed.append({"name": spec.name, "mode": mode, "status": "sigbus",
                           "error": str(e)})
            continue
        lp += spec.vcpus
        vms.append(vm)
    balloons = [vm for vm in vms if vm.mode == "balloon"]
    low_water = v.reserve // 2 + 2 * v.ecall + sc.kernel.high
    step = 4 * v.ecall + sc.kernel.batch
    # Deflate only well above the inflate point, so one step either way cannot flip it.
    high_water = low_water + 2 * step
    if balloons:
        def balance() -> None:
            free = host.mgr.sgx_nr_free_pages
            if free < low_water:
                _inflate(balloons, plat, step)
            elif free > high_water:
                _deflate(balloons, plat, min(step, free - high_water))
        for vm in vms:
            vm.balancer = balance
    # Enclaves, and who runs when. An enclave is built when it starts, so the first part
    # of a run holds only the enclaves that run in it.
    rng = np.random.default_rng(sc.run.seed)
    slots: list[list[Any]] = []
    for vm, spec in zip(vms, [s for s in sc.vms if s.name in {x.name for x in vms}]):
        for j, es in enumerate(spec.enclaves):
            slots.append([vm, None, es, j])
    total_ecalls = max(1, (v.requests or sc.run.requests) // v.ecall)
    if slots:
        weights = np.array([es.weight for _, _, es, _ in slots])
        starts = np.array([es.start for _, _, es, _ in slots])
        when = np.arange(total_ecalls) / total_ecalls
        choice = np.empty(total_ecalls, dtype=np.int64)
        for t0 in sorted(set(starts.tolist())):
            active = starts <= t0
            p = np.where(active, weights, 0.0)
            nxt = min([s for s in starts if s > t0], default=1.0)
            sel = (when >= t0) & (when < nxt)
            choice[sel] = rng.choice(len(slots), size=int(sel.sum()), p=p / p.sum())
        counts = np.bincount(choice, minlength=len(slots))
        streams = [_stream(es.workload, int(es.size) // PAGE_SIZE, int(counts[k]) * v.ecall,
                           es.alpha, sc.run.seed * 1000 + k)
                   for k, (_, _, es, _) in enumerate(slots)]
        writes = [rng.random(s.size) < es.writes for s, (_, _, es, _) in zip(streams, slots)]
        for slot in slots:
            if slot[2].start == 0:
                slot[1] = slot[0].add_enclave(slot[2].name, int(slot[2].size) // PAGE_SIZE,
                                              vcpu=slot[3])
        pos = np.zeros(len(slots), dtype=np.int64)
        ecalls = {vm.name: 0 for vm in vms}
        series: list[dict[str, Any]] = []
        for t in range(total_ecalls):
            k = int(choice[t])
            vm, enc, es, j = slots[k]
            if enc is None:
                enc = slots[k][1] = vm.add_enclave(es.name, int(es.size) // PAGE_SIZE,
                                                   vcpu=j)
            a, b = int(pos[k]), int(pos[k]) + v.ecall
            vm.run(enc, streams[k][a:b], writes[k][a:b])
            pos[k] = b
            ecalls[vm.name] += 1
            if t % v.series_every == 0 or t == total_ecalls - 1:
                for x in vms:
                    series.append({"ecall": t, "vm": x.name, "mode": x.mode,
                                   "host_pages": x.held(),
                                   "host_evicted": x.evicted_by_host(),
                                   "host_free": host.mgr.sgx_nr_free_pages})
    else:
        ecalls = {vm.name: 0 for vm in vms}
        series = []
    rows: list[dict[str, Any]] = []
    for vm in vms:
        s = vm.summary()
        cyc, base = _cycles(s, plat, ecalls[vm.name])
        s["status"] = "ran"
        s["seconds"] = cyc / (plat.ghz * 1e9)
        s["slowdown"] = cyc / base if base else 1.0
        # Every page of every guest enclave reads back what was last written: its bytes in
        # content mode, its version byte otherwise.
        before = s["bytes_checked"]
        s["readback_mismatches"] = vm.check()
        s["pages_checked"] = sum(e.npages for e in vm.enclaves)
        s["bytes_checked"] = sum(e.bytes_checked for e in vm.enclaves) - before
        rows.append(s)
    host.mgr.check()
    rows += failed
    cols = sorted({key for r in rows for key in r if key != "error"})
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    series_t = (pa.Table.from_pylist(series) if series
                else pa.table({"ecall": pa.array([], pa.int64())}))
    return rows, {"vms": table, "vm_series": series_t}


def _inflate(balloons: list[Vm], plat: Platform, n: int) -> None:
    """The host is short of EPC: the balloon VM holding most over its share gives back."""
    total = sum(vm.epc_pages for vm in balloons)
    budget = plat.epc_pages
    over = sorted(balloons, key=lambda vm: vm.held() - budget * vm.epc_pages / total,
                  reverse=True)
    for vm in over:
        vm._in_turn = True      # the guest's reclaim below is the host's request
        try:
            got = vm.inflate(n)
        finally:
            vm._in_turn = False
        if got:
            return


def _deflate(balloons: list[Vm], plat: Platform, n: int) -> None:
    """The host has EPC to spare: the balloon VM furthest below its share gets pages back."""
    total = sum(vm.epc_pages for vm in balloons)
    budget = plat.epc_pages
    under = sorted((vm for vm in balloons if vm.balloon),
                   key=lambda vm: vm.held() - budget * vm.epc_pages / total)
    for vm in under:
        if vm.deflate(n):
            return


__all__ = ["run_vms"]
