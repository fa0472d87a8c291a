"""Run a scenario's ``[[vms]]`` on one host: per-VM summaries, a ``vms`` table and a series.

All VMs share the host's EPC (``[platform]``) and its kernel (``[kernel]``); in a scenario
with ``[[enclaves]]`` too, that host is the replay's (sim/runner.py), and the VMs' ECALLs run
between parts of the enclaves' trace, in step with it. ECALLs are
interleaved by the enclaves' weights; an enclave with ``start = 0.5`` runs only in the second
half, which is how a scenario moves from working sets that fit to working sets that do not.

Time is the cost model's: each VM is charged its enclave work, guest faults (AEX, #PF,
handler, ELDU, ERESUME), guest write-backs, and the exits the host causes it (EPT violations
with the host's ELDU, kicks, SGX_CONFLICT exits, trapped ECREATE/EINIT). Host reclaim runs on
host CPUs and is reported, not charged to a guest. ``slowdown`` is a VM's time over the time
of its enclave work alone.

A VM that names a ``cgroup`` has its VMM run in that EPC cgroup (``misc.max`` from its
``epc_limit`` or ``[[cgroups]]``): its vEPC is charged there (docs/cgroups.md), and the
summary gets ``cgroups`` rows (``host = "vms"``, or ``"shared"`` on the replay's host).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from epcsim.arch import PAGE_SIZE
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.instance import Kernel
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
    """Boot every VM on a host of its own, build its enclaves, run the ECALLs, read back.

    With cgroups, ``vm_cgroups`` holds the per-cgroup report (:func:`cgroup_rows`).
    """
    n_lps = sum(vm.vcpus for vm in sc.vms) + 1
    # [run] content = true: guest enclave pages hold bytes, sealed by guest and host EWB.
    host = host_kernel(plat.epc_pages, n_lps, low=sc.kernel.low, high=sc.kernel.high,
                       batch=sc.kernel.batch, policy=sc.kernel.policy,
                       content=sc.run.content, seed=sc.run.seed)
    tree = sc.cgroup_tree("vms")
    cgroups = None
    if tree:
        # Attached before the first VM: every vEPC page is charged from the start.
        cgroups = EpcCgroups(host.mgr, capacity=len(tree) + 4)
        for path, (epc, mem) in sorted(tree.items()):
            cgroups.makedirs(path, max=epc, memory_max=mem)
    run = VmRun(sc, plat, host, lp_base=1, cgroups=cgroups)
    run.step(1.0)
    rows, tables = run.finish()
    if cgroups is not None:
        cgroups.check()
        cg_rows = [{"host": "vms", **r} for r in cgroups.summary()]
        tables["vm_cgroups"] = pa.Table.from_pylist(
            [{**r, "max": -1 if r["max"] == "max" else r["max"]} for r in cg_rows])
    return rows, tables


def cgroup_rows(tables: dict[str, pa.Table]) -> list[dict[str, Any]]:
    """The ``cgroups`` summary rows of a VM run (none when no VM named a cgroup)."""
    t = tables.get("vm_cgroups")
    if t is None:
        return []
    keys = ("host", "path", "max", "peak", "current", "events_max", "reclaimed")
    return [{k: ("max" if k == "max" and r[k] < 0 else r[k]) for k in keys}
            for r in t.to_pylist()]


def extra_lps(sc: Scenario) -> int:
    """Logical processors the scenario's VMs need on a host they share."""
    return sum(vm.vcpus for vm in sc.vms)


class VmRun:
    """The scenario's VMs on ``host``, run in steps so other work can share the host.

    ``step(f)`` runs the ECALLs up to fraction ``f`` of the run; ``clock``, when given, is
    the host's virtual time in seconds (the series' ``time_s``); otherwise a sample's time is
    that of the VM furthest along (the VMs run side by side on their own vCPUs). With
    ``cgroups`` (attached to ``host`` before anything was allocated) each VM's vEPC is
    charged to the cgroup its entry names.
    """

    def __init__(self, sc: Scenario, plat: Platform, host: Kernel, *, lp_base: int,
                 clock: Callable[[], float] | None = None,
                 cgroups: EpcCgroups | None = None) -> None:
        v = sc.virt
        self.sc, self.plat, self.host, self.clock = sc, plat, host, clock
        vms: list[Vm] = []
        failed: list[dict[str, Any]] = []
        lp = lp_base
        for i, spec in enumerate(sc.vms):
            mode = v.mode or spec.mode
            try:
                vm = Vm(host, spec.name, int(spec.epc_size) // PAGE_SIZE, vcpus=spec.vcpus,
                        lp_base=lp, mode=mode, low=v.guest_low, high=v.guest_high,
                        batch=sc.kernel.batch, reserve=v.reserve,
                        vmm_base=0x7F00_0000_0000 + i * (1 << 36),
                        cgroup=spec.cgroup if cgroups is not None else None, cgroups=cgroups)
            except VmError as e:
                failed.append({"name": spec.name, "mode": mode, "status": "sigbus",
                               "error": str(e), "cgroup": spec.cgroup})
                continue
            lp += spec.vcpus
            vms.append(vm)
        self.vms, self.failed = vms, failed
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
        self.slots = slots
        self.total_ecalls = max(1, (v.requests or sc.run.requests) // v.ecall) if slots else 0
        self.t = 0
        self._host_cycles = 0     # the host's clock at the end of the last step
        self.ecalls = {vm.name: 0 for vm in vms}
        self.series: list[dict[str, Any]] = []
        if not slots:
            return
        weights = np.array([es.weight for _, _, es, _ in slots])
        starts = np.array([es.start for _, _, es, _ in slots])
        when = np.arange(self.total_ecalls) / self.total_ecalls
        choice = np.empty(self.total_ecalls, dtype=np.int64)
        for t0 in sorted(set(starts.tolist())):
            active = starts <= t0
            p = np.where(active, weights, 0.0)
            nxt = min([s for s in starts if s > t0], default=1.0)
            sel = (when >= t0) & (when < nxt)
            choice[sel] = rng.choice(len(slots), size=int(sel.sum()), p=p / p.sum())
        counts = np.bincount(choice, minlength=len(slots))
        self.choice = choice
        self.streams = [_stream(es.workload, int(es.size) // PAGE_SIZE,
                                int(counts[k]) * v.ecall, es.alpha, sc.run.seed * 1000 + k)
                        for k, (_, _, es, _) in enumerate(slots)]
        self.writes = [rng.random(s.size) < es.writes
                       for s, (_, _, es, _) in zip(self.streams, slots)]
        for slot in slots:
            if slot[2].start == 0:
                slot[1] = slot[0].add_enclave(slot[2].name, int(slot[2].size) // PAGE_SIZE,
                                              vcpu=slot[3])
        self.pos = np.zeros(len(slots), dtype=np.int64)

    def step(self, upto: float) -> None:
        """Run the ECALLs that fall before fraction ``upto`` of the run."""
        v = self.sc.virt
        end = self.total_ecalls if upto >= 1.0 else min(self.total_ecalls,
                                                         int(upto * self.total_ecalls))
        # On a shared host the VMs' share of this step runs beside the replay's thread,
        # between the host's clock at the last step and now: their calls into the host's
        # kernel are spread over that time, so that the pages its ksgxd frees meanwhile
        # are free to them as they are to the replay (docs/design.md, "ksgxd's clock").
        first, start = self.t, self._host_cycles
        now = self._host_now()
        while self.t < end:
            t = self.t
            if self.clock is not None and end > first:
                self.host.mgr.now = start + (now - start) * (t + 1 - first) // (end - first)
            k = int(self.choice[t])
            vm, enc, es, j = self.slots[k]
            if enc is None:
                enc = self.slots[k][1] = vm.add_enclave(es.name, int(es.size) // PAGE_SIZE,
                                                        vcpu=j)
            a, b = int(self.pos[k]), int(self.pos[k]) + v.ecall
            vm.run(enc, self.streams[k][a:b], self.writes[k][a:b])
            self.pos[k] = b
            self.ecalls[vm.name] += 1
            if t % v.series_every == 0 or t == self.total_ecalls - 1:
                self._sample(t)
            self.t += 1
        self._host_cycles = now

    def _host_now(self) -> int:
        """The host's virtual time in cycles (0 without a clock)."""
        if self.clock is None:
            return 0
        return int(self.clock() * self.plat.ghz * 1e9)

    def _sample(self, t: int) -> None:
        if self.clock is not None:
            now = self.clock()
        else:
            now = max(self._cycles(vm)[0] for vm in self.vms) / (self.plat.ghz * 1e9)
        for x in self.vms:
            self.series.append({"ecall": t, "time_s": now, "vm": x.name, "mode": x.mode,
                                "host_pages": x.held(),
                                "host_evicted": x.evicted_by_host(),
                                "host_free": self.host.mgr.sgx_nr_free_pages})

    def _cycles(self, vm: Vm) -> tuple[int, int]:
        return _cycles(vm.summary(), self.plat, self.ecalls[vm.name])

    def finish(self) -> tuple[list[dict[str, Any]], dict[str, pa.Table]]:
        """Per-VM rows (every page of every guest enclave read back) and the tables."""
        rows: list[dict[str, Any]] = []
        for vm in self.vms:
            s = vm.summary()
            cyc, base = _cycles(s, self.plat, self.ecalls[vm.name])
            s["status"] = "ran"
            s["seconds"] = cyc / (self.plat.ghz * 1e9)
            s["slowdown"] = cyc / base if base else 1.0
            # Every page of every guest enclave reads back what was last written: its bytes
            # in content mode, its version byte otherwise.
            before = s["bytes_checked"]
            s["readback_mismatches"] = vm.check()
            s["pages_checked"] = sum(e.npages for e in vm.enclaves)
            s["bytes_checked"] = sum(e.bytes_checked for e in vm.enclaves) - before
            s["cgroup"] = vm.cgroup
            rows.append(s)
        self.host.mgr.check()
        rows += self.failed
        cols = sorted({key for r in rows for key in r if key != "error"})
        table = pa.table({c: [r.get(c) for r in rows] for c in cols})
        series_t = (pa.Table.from_pylist(self.series) if self.series
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


__all__ = ["VmRun", "cgroup_rows", "extra_lps", "run_vms"]
