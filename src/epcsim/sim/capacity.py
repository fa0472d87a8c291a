"""Capacity planning: pods with EPC requests and limits, packed onto nodes, replayed in cgroups.

What operators ask before deploying a limit: what will it cost?
A scenario with ``[cluster]`` and ``[[pods]]`` is answered in three steps:

1. **Pack** the pods onto nodes by their ``epc_request`` (first fit, largest request first,
   as a scheduler tracking a nominal EPC resource does); a pod that fits nowhere is
   *unscheduled*.
2. **Admit**: every pod gets a cgroup ``/kubepods/<name>`` with ``misc.max = epc_limit``
   (and ``memory.max``, if given). A pod whose limit is below the pages it can never give
   back (SECS, VA pages for its footprint, its thread's TCS, SSA and stack) fails at start:
   the kernel would return -ENOMEM to its first allocation past them.
3. **Replay** each node's pods with the kernel model (the replay engine, policy ``sgx``) in
   their cgroups: a limit is enforced by per-cgroup reclaim, the node's EPC by global
   reclaim. A pod whose allocation fails (-ENOMEM: SIGBUS) is stopped and reported.

Per pod: peak EPC usage, limit hits (``misc.events`` max), pages reclaimed from it, its
faults, ELDUs and EAUGs, the paging cost (its stall cycles under the cost model) and its
slowdown (its work plus its stalls, over its work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from epcsim.arch import PAGE_SIZE
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.sim import costs as K
from epcsim.sim.replay import (
    CL_THREAD,
    R_FIRST,
    RC_REQUESTS,
    Replay,
    ReplayConfig,
    engine_args,
)
from epcsim.workload.scenario import EnclaveSpec, Scenario, ScenarioError, requests_for

VA_SLOTS = 512
SAMPLES = 200          # per-cgroup usage samples per node


@dataclass
class Placement:
    nodes: list[list[int]]          # pod indices per node
    unscheduled: list[int]


def pack(requests: list[int], node_epc: int, nodes: int) -> Placement:
    """First fit decreasing by request; ties keep the scenario's order."""
    free = [node_epc] * nodes
    out: list[list[int]] = [[] for _ in range(nodes)]
    left = []
    for i in sorted(range(len(requests)), key=lambda i: (-requests[i], i)):
        for n in range(nodes):
            if requests[i] <= free[n]:
                free[n] -= requests[i]
                out[n].append(i)
                break
        else:
            left.append(i)
    return Placement([sorted(x) for x in out], sorted(left))


def unreclaimable_pages(footprint_pages: int) -> int:
    """Pages a replay enclave never gives back: SECS, VA pages, TCS + SSA + stack."""
    return 1 + -(-(footprint_pages + R_FIRST) // VA_SLOTS) + R_FIRST


class CgroupReplay(Replay):
    """A replay with each tenant's enclave opened inside an EPC cgroup.

    ``paths[t]`` is tenant ``t``'s cgroup; ``tree`` maps paths to (misc.max, memory.max) in
    bytes (None: "max"); missing ancestors are created without limits. The controller is
    attached to the replay's own kernel before its first enclave, so the compiled engine
    allocates and reclaims through the cgroup charge path (the same code as the kernel's).
    """

    def __init__(self, cfg: ReplayConfig, footprint: np.ndarray, tenant_ids: list[int],
                 paths: list[str], tree: dict[str, tuple[int | None, int | None]]) -> None:
        self._paths, self._tree = paths, tree
        self.cg: EpcCgroups | None = None
        self.failed: set[int] = set()
        self.series_rows: list[dict[str, Any]] = []   # cgroup_series, one sample per feed
        super().__init__(cfg, footprint, tenant_ids)

    def _build_enclave(self, lp: int, t: int, base: int, size: int, pages: int) -> None:
        if self.cg is None:
            # Before the first enclave: nothing is allocated yet, nothing is charged to nobody.
            self.cg = EpcCgroups(self.mgr, capacity=len(self._tree) + len(self._paths) + 4)
            for p, (lim, mem) in sorted(self._tree.items()):
                self.cg.makedirs(p, max=lim, memory_max=mem)
            for p in self._paths:
                self.cg.makedirs(p)
        with self.cg.charging(self._paths[t]):
            super()._build_enclave(lp, t, base, size, pages)

    def feed(self, tenants: np.ndarray, pages: np.ndarray, writes: np.ndarray,
             entries: np.ndarray | None = None) -> None:
        """Like :meth:`Replay.feed`, but a tenant that gets SIGBUS stops; the rest go on."""
        self.feed_tolerant(tenants, pages, writes, self.failed, entries)
        assert self.cg is not None
        t_s = int(self.rs.clk[CL_THREAD]) / (self.cfg.platform.ghz * 1e9)
        self.series_rows += self.cg.series_rows(t_s)

    def feed_tolerant(self, tenants: np.ndarray, pages: np.ndarray,
                      writes: np.ndarray, failed: set[int],
                      entries: np.ndarray | None = None) -> None:
        """Like ``feed``, but a tenant whose access fails is stopped and the rest go on."""
        tenants, pages, writes = engine_args(tenants, pages, writes)
        if entries is None:
            entries = self.entries(tenants, pages)
        if failed:
            keep = ~np.isin(tenants, list(failed))
            tenants, pages, writes = tenants[keep], pages[keep], writes[keep]
            entries = entries[keep]
        start = 0
        while start < len(tenants):
            bad = self.run_engine(tenants, pages, writes, start, entries)
            if bad == -1:
                return
            t = int(tenants[bad])
            failed.add(t)
            mask = tenants[bad + 1:] != t
            tenants = np.concatenate([tenants[:bad + 1], tenants[bad + 1:][mask]])
            pages = np.concatenate([pages[:bad + 1], pages[bad + 1:][mask]])
            writes = np.concatenate([writes[:bad + 1], writes[bad + 1:][mask]])
            entries = np.concatenate([entries[:bad + 1], entries[bad + 1:][mask]])
            start = bad + 1


def run_pods(sc: Scenario, base_dir: Any, scenario_name: str,
             progress: Any = None) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """Pack, admit and replay the pods of ``sc``: (summary, tables)."""
    assert sc.cluster is not None
    plat = sc.resolved_platform()
    node_epc = int(sc.cluster.node_epc)
    pods = sc.pods
    place = pack([int(p.epc_request) for p in pods], node_epc, sc.cluster.nodes)
    cost = plat.costs.vector()
    per_pod: dict[int, dict[str, Any]] = {}
    cg_rows: list[dict[str, Any]] = []
    series_rows: list[dict[str, Any]] = []
    for i in place.unscheduled:
        per_pod[i] = _pod_row(pods[i], -1, "unscheduled: no node has room for its request")
    node_pages = node_epc // PAGE_SIZE
    cfg = ReplayConfig(policy="sgx", epc_pages=node_pages, platform=plat, low=sc.kernel.low,
                       high=sc.kernel.high, batch=sc.kernel.batch,
                       ksgxd=sc.kernel.ksgxd, series_step_s=sc.run.series_step_s, seed=sc.run.seed,
                       fault_log=sc.run.fault_log)
    total_requests = 0
    for n, members in enumerate(place.nodes):
        admitted = []
        for i in members:
            pages = max(1, int(pods[i].size) // PAGE_SIZE)  # type: ignore[arg-type]
            lim = pods[i].epc_limit
            need = unreclaimable_pages(pages)
            if lim is not None and int(lim) // PAGE_SIZE <= need:
                per_pod[i] = _pod_row(pods[i], n, f"failed: misc.max holds {int(lim) // PAGE_SIZE}"
                                      f" pages, the pod pins {need} unreclaimable pages (-ENOMEM)")
            else:
                admitted.append(i)
        if not admitted:
            continue
        enc = [EnclaveSpec(**pods[i].model_dump(include=set(EnclaveSpec.model_fields)))
               for i in admitted]
        share = sum(pods[i].weight for i in admitted) / sum(p.weight for p in pods)
        sub = sc.model_copy(update={"enclaves": enc, "pods": [], "cluster": None,
                                    "run": sc.run.model_copy(update={
                                        "requests": max(1, int(sc.run.requests * share)),
                                        "seed": sc.run.seed + n})})
        tenants, pages_, _ = requests_for(sub, base_dir)
        footprint = np.array([max(1, int(e.size) // PAGE_SIZE) for e in enc],  # type: ignore[arg-type]
                             dtype=np.int64)
        paths = [f"/kubepods/{pods[i].name}" for i in admitted]
        tree = {p: (pods[i].epc_limit, pods[i].memory_limit)
                for p, i in zip(paths, admitted)}
        rp = CgroupReplay(cfg, footprint, list(range(len(admitted))), paths,
                          tree)  # type: ignore[arg-type]
        assert rp.cg is not None
        failed: set[int] = set()
        step = max(1, len(tenants) // SAMPLES)
        ghz = plat.ghz
        for k, s in enumerate(range(0, len(tenants), step)):
            rp.feed_tolerant(tenants[s:s + step], pages_[s:s + step],
                             np.zeros(min(step, len(tenants) - s), np.bool_), failed)
            t_s = int(rp.rs.clk[CL_THREAD]) / (ghz * 1e9)
            for row in rp.cg.summary():
                if row["path"].startswith("/kubepods/"):
                    # t_s/path/current (bytes) as examples/plot_cgroups.py reads them;
                    # time_s/cgroup/current_pages/max_pages as the report draws cgroups.
                    lim = row["max"]
                    series_rows.append({"node": n, "sample": k, "t_s": t_s,
                                        "path": row["path"], "current": row["current"],
                                        "time_s": t_s, "cgroup": row["path"],
                                        "current_pages": row["current"] // PAGE_SIZE,
                                        "max_pages": lim // PAGE_SIZE
                                        if isinstance(lim, int) else float("nan")})
            if progress is not None:
                progress(min(step, len(tenants) - s))
        total_requests += int(rp.rs.cnt[RC_REQUESTS])
        for row in rp.cg.summary():
            cg_rows.append({"node": n, **row})
        for t, i in enumerate(admitted):
            r, f, a, d = (int(x) for x in rp.rs.e_cnt[t])
            path = paths[t]
            work = r * int(cost[K.K_REQUEST])
            stall = (f * int(cost[K.K_AEX] + cost[K.K_PF] + cost[K.K_FAULT_SW]
                              + cost[K.K_ERESUME])
                     + d * int(cost[K.K_ELDU])
                     + a * int(cost[K.K_EAUG] + cost[K.K_EACCEPT] + cost[K.K_AEX]
                               + cost[K.K_PF] + cost[K.K_ERESUME]))
            reclaimed = rp.cg.reclaimed(path)
            paging = d * int(cost[K.K_ELDU]) + reclaimed * int(cost[K.K_EWB] + cost[K.K_EBLOCK])
            status = "failed: an allocation got -ENOMEM (SIGBUS)" if t in failed else "ok"
            per_pod[i] = {**_pod_row(pods[i], n, status), "requests": r, "faults": f,
                          "eaug": a, "eldu": d, "peak": rp.cg.peak(path),
                          "limit_hits": rp.cg.events(path)["max"], "reclaimed": reclaimed,
                          "paging_cost_s": paging / (ghz * 1e9),
                          "slowdown": (work + stall) / work if work else 1.0}
    rows = [per_pod[i] for i in range(len(pods))]
    node_rows = per_node(rows, series_rows, sc.cluster.nodes)
    summary: dict[str, Any] = {
        "scenario": scenario_name, "mode": "capacity", "platform": plat.name,
        "node_epc": node_epc, "nodes": sc.cluster.nodes,
        "nodes_used": sum(1 for m in place.nodes if m),
        "requests": total_requests,
        "pods": rows,
        "per_node": node_rows,
        "failures": sum(1 for r in rows if r["status"] != "ok"),
        "cgroups": [{k: r[k] for k in ("node", "path", "max", "peak", "current",
                                        "events_max", "reclaimed")} for r in cg_rows],
    }
    tables = {
        "pods": pa.Table.from_pylist([_numeric(r, "epc_limit") for r in rows]),
        "nodes": pa.Table.from_pylist([_numeric(r, "epc_limit") for r in node_rows]),
        "cgroups": pa.Table.from_pylist([_numeric(r, "max") for r in cg_rows]) if cg_rows
        else pa.table({"path": pa.array([], pa.string())}),
        "cgroup_series": pa.Table.from_pylist(series_rows) if series_rows
        else pa.table({"t_s": pa.array([], pa.float64())}),
    }
    return summary, tables


def per_node(pods: list[dict[str, Any]], series: list[dict[str, Any]],
             nodes: int) -> list[dict[str, Any]]:
    """One row per node: its pods, the EPC they request and are limited to (``max`` when a
    pod has no limit), the peak of their summed usage (bytes, over the samples), limit hits,
    paging cost, the worst slowdown and the failures."""
    out = []
    for n in range(nodes):
        on = [p for p in pods if p["node"] == n]
        # By sample, not by time: a node whose pods all failed stops its clock.
        by_time: dict[int, int] = {}
        for row in series:
            if row["node"] == n:
                by_time[row["sample"]] = by_time.get(row["sample"], 0) + int(row["current"])
        limits = [p["epc_limit"] for p in on]
        out.append({"node": n, "pods": len(on),
                    "epc_request": sum(p["epc_request"] for p in on),
                    "epc_limit": "max" if "max" in limits else sum(limits),
                    "peak": max(by_time.values(), default=0),
                    "limit_hits": sum(p["limit_hits"] for p in on),
                    "paging_cost_s": sum(p["paging_cost_s"] for p in on),
                    "slowdown": max((p["slowdown"] for p in on), default=1.0),
                    "failures": sum(1 for p in on if p["status"] != "ok")})
    return out


def _pod_row(pod: Any, node: int, status: str) -> dict[str, Any]:
    return {"name": pod.name, "node": node, "status": status,
            "epc_request": int(pod.epc_request),
            "epc_limit": "max" if pod.epc_limit is None else int(pod.epc_limit),
            "size": int(pod.size), "requests": 0, "faults": 0, "eaug": 0, "eldu": 0,
            "peak": 0, "limit_hits": 0, "reclaimed": 0, "paging_cost_s": 0.0, "slowdown": 1.0}


def _numeric(row: dict[str, Any], key: str) -> dict[str, Any]:
    """A Parquet column has one type: "max" (no limit) is written as -1."""
    return {**row, key: -1 if row[key] == "max" else row[key]}


def cgroup_report(rp: CgroupReplay) -> tuple[list[dict[str, Any]], dict[str, pa.Table]]:
    """The ``cgroups`` summary rows and the ``cgroups`` / ``cgroup_series`` tables of a
    replay of ``[[enclaves]]`` in cgroups."""
    series = rp.series_rows
    assert rp.cg is not None
    full = [{"host": "enclaves", **r} for r in rp.cg.summary()]
    rows = [{k: r[k] for k in ("host", "path", "max", "peak", "current", "events_max",
                               "reclaimed")} for r in full]
    return rows, {"cgroups": pa.Table.from_pylist([_numeric(r, "max") for r in full]),
                  "cgroup_series": pa.Table.from_pylist(series) if series
                  else pa.table({"time_s": pa.array([], pa.float64())})}


def cgroup_replay(sc: Scenario, where: str = "scenario",
                  parts: tuple[str, ...] = ("enclaves",)) -> tuple[Any, list[CgroupReplay]]:
    """A ``make_replay`` for :func:`~epcsim.sim.replay.replay_chunks` that opens each
    enclave of ``sc`` in its cgroup (``/`` when it names none), and a list that receives
    the replay it builds.

    Before building, every limited cgroup must hold the pages its enclaves can never give
    back (SECS, VA pages, TCS, SSA, stack), else the kernel would return -ENOMEM at start:
    ScenarioError naming the first enclave of that cgroup.

    ``parts`` are the scenario's parts whose cgroups the replay's host holds: ``("enclaves",
    "vms")`` when the VMs share it.
    """
    tree: dict[str, tuple[int | None, int | None]] = {}
    for part in parts:
        tree.update(sc.cgroup_tree(part))
    built: list[CgroupReplay] = []

    def make(cfg: ReplayConfig, footprint: np.ndarray, tenant_ids: list[int]) -> CgroupReplay:
        paths = [sc.enclaves[t].cgroup or "/" for t in range(len(sc.enclaves))]
        for path, (lim, _) in sorted(tree.items()):
            if lim is None:
                continue
            inside = [t for t in tenant_ids
                      if paths[t] == path or paths[t].startswith(path.rstrip("/") + "/")]
            need = sum(unreclaimable_pages(int(footprint[t])) for t in inside)
            if inside and int(lim) // PAGE_SIZE <= need:
                raise ScenarioError(
                    f"enclaves[{inside[0]}].cgroup: misc.max of {path} holds "
                    f"{int(lim) // PAGE_SIZE} pages, its enclaves pin {need} unreclaimable "
                    f"pages (-ENOMEM at start) ({where})")
        rp = CgroupReplay(cfg, footprint, tenant_ids, paths, tree)
        built.append(rp)
        return rp

    return make, built
