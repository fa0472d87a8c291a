"""A scenario with [[enclaves]] and [[vms]] runs both on one host: one EPC, one kernel.

The replay's enclaves and the VMs' guests compete for the same EPC pages, so each one's
paging depends on the other, and the host kernel's accounting holds for both at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from epcsim.sim.runner import run_scenario
from epcsim.workload.scenario import validate

EPC_PAGES = 512


def _scenario(with_vm: bool) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "platform": {"epc_size": f"{EPC_PAGES * 4}KiB"},
        "kernel": {"low": 8, "high": 16},
        "run": {"requests": 60_000, "seed": 5},
        "enclaves": [{"name": "db", "size": "1MiB", "workload": "zipf", "alpha": 0.8}],
    }
    if with_vm:
        sc["virt"] = {"mode": "oversubscribed", "reserve": 48, "requests": 2400}
        sc["vms"] = [{"name": "g", "epc_size": "1536KiB", "vcpus": 1, "enclaves": [
            {"name": "kv", "size": "1MiB", "workload": "uniform"}]}]
    return sc


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    return {w: run_scenario(validate(_scenario(w == "vm"), "test"), Path("."))
            for w in ("alone", "vm")}


def test_vm_runs_on_the_replay_host(runs: dict[str, Any]) -> None:
    out = runs["vm"]
    s = out.summary
    assert s["host"] == "shared"
    (vm,) = s["vms"]
    assert vm["status"] == "ran"
    assert vm["readback_mismatches"] == 0
    # The enclave (1 MiB) fits a 2 MiB EPC alone; with the guest's 1 MiB beside it, it
    # does not, and the one reclaimer of the host writes pages back.
    alone = runs["alone"].summary
    assert alone["ewb"] == 0
    assert s["requests"] == alone["requests"]
    assert vm["host_ewb"] > 0
    assert s["ewb"] >= vm["host_ewb"]


def test_vm_series_on_the_host_clock(runs: dict[str, Any]) -> None:
    out = runs["vm"]
    series = out.tables["vm_series"].to_pydict()
    t = np.asarray(series["time_s"])
    assert len(t) > 2
    assert np.all(np.diff(t) >= 0)
    assert t[-1] <= out.summary["virtual_time_s"] + 1e-12
    # The VM's pages and the host's free pages are read from the same EPC.
    free = np.asarray(series["host_free"])
    held = np.asarray(series["host_pages"])
    assert np.all(free + held <= EPC_PAGES)
    assert held.max() > 0


def test_free_epc_shows_the_vm(runs: dict[str, Any]) -> None:
    """The replay's free-page series sees the VM's pages: less free EPC than alone."""
    free_vm = np.asarray(runs["vm"].tables["series"].column("free_pages"))
    free_alone = np.asarray(runs["alone"].tables["series"].column("free_pages"))
    assert free_vm.mean() < free_alone.mean()


def test_one_cgroup_tree_for_enclaves_and_vms() -> None:
    """On a shared host the enclaves' and the VMs' cgroups are one hierarchy: the VM's
    vEPC is charged to its cgroup, held to its misc.max by host reclaim of guest pages."""
    sc = _scenario(True)
    sc["enclaves"][0]["cgroup"] = "/apps/db"
    sc["vms"][0]["cgroup"] = "/vms/g"
    sc["vms"][0]["epc_limit"] = "512KiB"
    out = run_scenario(validate(sc, "test"), Path("."))
    s = out.summary
    assert s["host"] == "shared"
    rows = {r["path"]: r for r in s["cgroups"]}
    assert {"/", "/apps", "/apps/db", "/vms", "/vms/g"} <= set(rows)
    g = rows["/vms/g"]
    assert g["max"] == 512 * 1024
    # The exit handler cannot fail, so a page it maps may pass misc.max until the host's
    # turn moves its charge and reclaims (docs/cgroups.md): by at most the exit reserve.
    assert g["current"] <= g["max"]
    assert 0 < g["peak"] <= g["max"] + 48 * 4096
    assert rows["/apps/db"]["peak"] > 0
    assert rows["/"]["current"] >= rows["/apps"]["current"] + rows["/vms"]["current"]
    (vm,) = s["vms"]
    assert vm["status"] == "ran" and vm["readback_mismatches"] == 0
    assert vm["cgroup"] == "/vms/g"
