"""Run a scenario: the one entry point that ``epcsim run``, the demo and sweeps share.

A run gives a :class:`RunOutput`: the summary (the ``--json`` object) and named tables (each
written as ``<name>.parquet``). Parts of a scenario that need more than the replay engine
(virtual machines, cgroups, pods) add their own summary keys and tables here, so every
caller gets them without knowing which parts ran.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from epcsim.provenance import stamp, stamped_table
from epcsim.sim.metrics import faults_table, held_table, series_table
from epcsim.sim.replay import CL_THREAD, Replay, ReplayConfig, replay_chunks
from epcsim.sim.vmrun import VmRun, extra_lps, run_vms
from epcsim.workload.scenario import Scenario, accesses_for
from epcsim.workload.traces import Chunk

Progress = Callable[[int], None]

# A scenario's VMs run between this many equal parts of its enclaves' trace.
VM_SLICES = 200


@dataclass
class RunOutput:
    """A finished run: ``summary`` is JSON-ready; ``tables`` go to Parquet by name."""

    summary: dict[str, Any]
    tables: dict[str, pa.Table] = field(default_factory=dict)


def run_scenario(sc: Scenario, base_dir: Path, *, progress: Progress | None = None,
                 scenario_name: str = "scenario") -> RunOutput:
    """Run ``sc``; traces named in it are found relative to ``base_dir``.

    The summary carries the epcsim version and the digest of ``sc`` as validated
    (:mod:`epcsim.provenance`). Raises ScenarioError/TraceError for bad input and
    ReplayError/ValueError when the machine cannot run it (both one line for the user).
    """
    out = _run_scenario(sc, base_dir, progress=progress, scenario_name=scenario_name)
    stamp(out.summary, sc.model_dump(mode="json"))
    return out


def _run_scenario(sc: Scenario, base_dir: Path, *, progress: Progress | None = None,
                  scenario_name: str = "scenario") -> RunOutput:
    if sc.pods:
        # Capacity planning: pods in EPC cgroups, packed onto nodes (sim/capacity.py).
        from epcsim.sim.capacity import run_pods

        summary, tables = run_pods(sc, base_dir, scenario_name, progress)
        return RunOutput(summary, tables)
    plat = sc.resolved_platform()
    if not sc.enclaves:
        return _run_vms_only(sc, plat, scenario_name)
    tenants, pages, writes, names = accesses_for(sc, base_dir)
    # Enclaves and VMs share one host when the kernel model runs (policy sgx). The cache
    # policies have no kernel for a VM to run on, and the replay's kernel keeps no page
    # bytes for content mode: then the VMs get a host of their own.
    shared = bool(sc.vms) and sc.kernel.policy == "sgx" and not sc.run.content
    cfg = ReplayConfig(policy=sc.kernel.policy, epc_pages=plat.epc_pages, platform=plat,
                       low=sc.kernel.low, high=sc.kernel.high, batch=sc.kernel.batch,
                       ksgxd=sc.kernel.ksgxd, series_step_s=sc.run.series_step_s, seed=sc.run.seed,
                       fault_log=sc.run.fault_log,
                       kvm=shared, extra_lps=extra_lps(sc) if shared else 0)
    step = 1 << 20
    vm_run: list[VmRun] = []
    make_replay, cg_replay = None, []
    cg_parts = ("enclaves", "vms") if shared else ("enclaves",)
    if any(sc.cgroup_tree(part) for part in cg_parts):
        # Enclaves (and VMs on their host) in EPC cgroups: the same engine over a kernel
        # with the controller attached; chunks of about 1/200 of the run, one
        # cgroup_series sample each.
        from epcsim.sim.capacity import cgroup_replay

        make_replay, cg_replay = cgroup_replay(sc, scenario_name, parts=cg_parts)
        step = max(1, min(step, len(pages) // 200))

    def beside(rp: Replay) -> Callable[[float], None]:
        ghz = plat.ghz
        run = VmRun(sc, plat, rp.kernel, lp_base=len(rp.tenant_ids) + 1,
                    clock=lambda: int(rp.rs.clk[CL_THREAD]) / (ghz * 1e9),
                    cgroups=getattr(rp, "cg", None))
        vm_run.append(run)
        return run.step

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(pages), step):
            t = tenants[i:i + step]
            yield Chunk(pages[i:i + step].astype(np.uint64), t, writes[i:i + step])

    res = replay_chunks(cfg, chunks, progress=progress, beside=beside if shared else None,
                        slices=VM_SLICES, make_replay=make_replay)
    for row in res.per_enclave:
        row["name"] = names[row["tenant"]]
    summary = res.summary
    summary["scenario"] = scenario_name
    summary["per_enclave"] = res.per_enclave
    tables = {
        "enclaves": pa.Table.from_pylist(res.per_enclave) if res.per_enclave
        else pa.table({"tenant": pa.array([], pa.int64())}),
        "series": series_table(res.series, plat.ghz),
        "faults": faults_table(res.faults, plat.ghz),
        "enclave_series": held_table(res, plat.ghz, names),
    }
    if cg_replay:
        from epcsim.sim.capacity import cgroup_report

        summary["cgroups"], cg_tables = cgroup_report(cg_replay[0])
        tables.update(cg_tables)
        for row in res.per_enclave:
            row["cgroup"] = sc.enclaves[row["tenant"]].cgroup or "/"
            row["status"] = ("failed: an allocation got -ENOMEM (SIGBUS)"
                             if row["tenant"] in cg_replay[0].failed else "ok")
    if sc.run.mrc:
        from epcsim.sim.mrc import mrc_table

        tables["mrc"] = mrc_table(tenants, pages, names, plat.epc_pages)
    if sc.run.content:
        from epcsim.sim.content import content_run

        summary["content"], tables["content"] = content_run(
            tenants, pages, names, epc_pages=plat.epc_pages, seed=sc.run.seed,
            backing_dir=sc.run.backing_dir)
    if vm_run:
        summary["host"] = "shared"
        summary["vms"], vm_tables = vm_run[0].finish()
        tables.update(vm_tables)
    elif sc.vms:
        summary["host"] = "separate"
        summary["vms"], vm_tables = run_vms(sc, plat)
        tables.update(vm_tables)
        _add_vm_cgroups(summary, vm_tables)
    return RunOutput(summary, tables)


def _run_vms_only(sc: Scenario, plat: Any, scenario_name: str) -> RunOutput:
    rows, tables = run_vms(sc, plat)
    summary = {"scenario": scenario_name, "platform": plat.name, "epc_pages": plat.epc_pages,
               "vms": rows}
    _add_vm_cgroups(summary, tables)
    return RunOutput(summary, tables)


def _add_vm_cgroups(summary: dict[str, Any], vm_tables: dict[str, pa.Table]) -> None:
    """VMs in EPC cgroups: their rows join ``cgroups`` (``host`` says which host)."""
    from epcsim.sim.vmrun import cgroup_rows

    rows = cgroup_rows(vm_tables)
    if rows:
        summary["cgroups"] = summary.get("cgroups", []) + rows


def with_absolute_traces(sc: Scenario, base_dir: Path) -> Scenario:
    """``sc`` with trace paths made absolute, so its resolved copy runs from anywhere."""
    encl = [e.model_copy(update={"trace": str((base_dir / e.trace).resolve())})
            if e.trace is not None else e for e in sc.enclaves]
    return sc.model_copy(update={"enclaves": encl})


def total_requests(sc: Scenario) -> int:
    """How many steps a progress bar over this run counts."""
    return sc.run.requests


def write_run(out_dir: str | Path, out: RunOutput, sc: Scenario | None = None) -> None:
    """The run's result directory, whole or not at all (:mod:`epcsim.files`): replaces a
    previous result at ``out_dir``; its parent must exist."""
    from epcsim.files import check_out, staged

    with staged(check_out(out_dir), "run") as d:
        write_run_files(d, out, sc)


def write_run_files(out_dir: str | Path, out: RunOutput, sc: Scenario | None = None) -> None:
    """``summary.json``, every table as Parquet and, given ``sc``, the resolved scenario.

    ``scenario.resolved.json`` has every default filled in, so the run can be repeated
    exactly with ``epcsim run``.
    """
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(out.summary, f, indent=2)
    for name, table in out.tables.items():
        pq.write_table(stamped_table(table, out.summary),
                       os.path.join(out_dir, f"{name}.parquet"))
    if sc is not None:
        with open(os.path.join(out_dir, "scenario.resolved.json"), "w") as f:
            json.dump(sc.model_dump(mode="json"), f, indent=2)
