"""Capacity planning: packing by request, admission against pinned pages, a replay per
node in cgroups, and the per-pod and per-cgroup report of ``epcsim run``."""

from __future__ import annotations

from pathlib import Path

import pytest

from epcsim.sim.capacity import pack, unreclaimable_pages
from epcsim.sim.runner import run_scenario
from epcsim.workload.scenario import ScenarioError, validate

MiB = 1 << 20


def test_first_fit_decreasing() -> None:
    p = pack([4 * MiB, 10 * MiB, 6 * MiB, 9 * MiB], 16 * MiB, 2)
    assert p.nodes == [[1, 2], [0, 3]] and p.unscheduled == []
    p = pack([10 * MiB, 10 * MiB, 10 * MiB], 16 * MiB, 2)
    assert p.unscheduled == [2]


def test_unreclaimable_pages_of_a_replay_enclave() -> None:
    # SECS + one VA page per 512 pages (the 3 pinned pages included) + TCS, SSA, stack.
    assert unreclaimable_pages(509) == 1 + 1 + 3
    assert unreclaimable_pages(510) == 1 + 2 + 3


def _scenario(**pod_overrides: object) -> dict:  # type: ignore[type-arg]
    pod = {"name": "p", "epc_request": "1MiB", "size": "2MiB", "workload": "uniform"}
    pod.update(pod_overrides)
    return {"cluster": {"node_epc": "2MiB", "nodes": 1}, "run": {"requests": 20000},
            "pods": [pod]}


@pytest.mark.parametrize("change, message", [
    ({"epc_request": "4MiB"}, "pods[0].epc_request: larger than a node's EPC"),
    ({"epc_limit": "lots"}, "pods[0].epc_limit"),
    ({"workload": None}, "pods[0]: give either a workload or a trace"),
])
def test_bad_pods_name_the_key(change: dict, message: str) -> None:  # type: ignore[type-arg]
    data = _scenario(**change)
    data["pods"][0] = {k: v for k, v in data["pods"][0].items() if v is not None}
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(data, "x.toml")


def test_pods_need_a_cluster() -> None:
    data = _scenario()
    del data["cluster"]
    with pytest.raises(ScenarioError, match="cluster"):
        validate(data, "x.toml")


def test_a_run_reports_pods_and_cgroups() -> None:
    data = {"cluster": {"node_epc": "1MiB", "nodes": 2}, "run": {"requests": 30000, "seed": 3},
            "pods": [
                {"name": "limited", "epc_request": "512KiB", "epc_limit": "256KiB",
                 "size": "1MiB", "workload": "uniform"},
                {"name": "free", "epc_request": "512KiB", "size": "256KiB",
                 "workload": "uniform"},
                {"name": "pinned", "epc_request": "8KiB", "epc_limit": "8KiB",
                 "size": "64KiB", "workload": "uniform"},
            ]}
    out = run_scenario(validate(data, "t.toml"), Path("."), scenario_name="t")
    s = out.summary
    pods = {p["name"]: p for p in s["pods"]}
    assert pods["pinned"]["status"].startswith("failed") and pods["pinned"]["requests"] == 0
    lim = pods["limited"]
    assert lim["status"] == "ok" and lim["peak"] <= 256 * 1024
    # Its limit made the cgroup reclaim from its own LRU (async work running ahead of the
    # charges, so misc.events max may stay 0) and the evicted pages came back with ELDU.
    assert lim["reclaimed"] > 0 and lim["eldu"] > 0 and lim["slowdown"] > 1.0
    assert pods["free"]["limit_hits"] == 0
    cgs = {(c["node"], c["path"]): c for c in s["cgroups"]}
    assert all(set(c) >= {"path", "max", "peak", "current", "events_max", "reclaimed"}
               for c in s["cgroups"])
    node = lim["node"]
    assert cgs[(node, "/kubepods/limited")]["max"] == 256 * 1024
    assert cgs[(node, "/kubepods/limited")]["reclaimed"] > 0
    assert set(out.tables) >= {"pods", "cgroups", "cgroup_series"}
    series = out.tables["cgroup_series"].to_pylist()
    assert max(r["current"] for r in series if r["path"] == "/kubepods/limited") <= 256 * 1024


def test_pod_requests_reach_the_engine_that_warm_up_compiled() -> None:
    """Tenant ids of another integer type (the pod runner's int64) are converted before the
    engine: a second set of argument types would compile the whole engine once more."""
    import numba
    import numpy as np

    from epcsim.jit import table
    from epcsim.sim.capacity import CgroupReplay
    from epcsim.sim.replay import RC_REQUESTS, ReplayConfig

    rp = CgroupReplay(ReplayConfig(policy="sgx", epc_pages=256), np.array([64, 64]), [0, 1],
                      ["/a", "/b"], {"/a": (None, None), "/b": (None, None)})
    failed: set[int] = set()
    rp.feed_tolerant(np.array([0, 1, 0, 1], np.int64), np.array([1, 2, 3, 4], np.int64),
                     np.zeros(4, np.bool_), failed)
    assert failed == set() and int(rp.rs.cnt[RC_REQUESTS]) == 4
    tenants = numba.typeof(table(np.zeros(1, np.uint32)))
    assert {sig[4] for sig in rp.engine.signatures} == {tenants}
