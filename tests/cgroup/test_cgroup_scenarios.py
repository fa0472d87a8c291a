"""Scenarios that place ``[[enclaves]]`` and ``[[vms]]`` in EPC cgroups: validation, the
per-cgroup report of `epcsim run --json`, limits enforced in the replay engine and on vEPC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epcsim.arch import PAGE_SIZE
from epcsim.cli import main
from epcsim.sim.runner import run_scenario
from epcsim.workload.scenario import ScenarioError, validate

KEYS = {"host", "path", "max", "peak", "current", "events_max", "reclaimed"}


def _enclaves(**extra: object) -> dict:  # type: ignore[type-arg]
    return {"platform": {"epc_size": "2MiB"}, "run": {"requests": 20000, "seed": 1},
            "cgroups": [{"path": "/t", "epc_limit": "1536KiB"}],
            "enclaves": [
                {"name": "a", "size": "1MiB", "workload": "uniform", "cgroup": "/t/a",
                 "epc_limit": "512KiB"},
                {"name": "b", "size": "1MiB", "workload": "zipf", "cgroup": "/t/b"},
                {"name": "c", "size": "512KiB", "workload": "uniform"}], **extra}


@pytest.mark.parametrize("patch, message", [
    ({"enclaves": [{"name": "a", "size": "1MiB", "workload": "scan", "epc_limit": "1MiB"}]},
     "enclaves[0].epc_limit: a limit needs a cgroup"),
    ({"enclaves": [{"name": "a", "size": "1MiB", "workload": "scan", "cgroup": "t"}]},
     "enclaves[0].cgroup: a cgroup path is absolute"),
    ({"enclaves": [{"name": "a", "size": "1MiB", "workload": "scan", "cgroup": "/t",
                    "epc_limit": "lots"}]}, "enclaves[0].epc_limit: not a size"),
    ({"enclaves": [{"name": "a", "size": "1MiB", "workload": "scan", "cgroup": "/u",
                    "epc_limit": "1MiB"},
                   {"name": "b", "size": "1MiB", "workload": "scan", "cgroup": "/u",
                    "epc_limit": "2MiB"}]}, "enclaves[1].epc_limit: /u already has"),
    ({"enclaves": [{"name": "a", "size": "1MiB", "workload": "scan", "cgroup": "/",
                    "epc_limit": "1MiB"}]}, "enclaves[0].epc_limit: the root cgroup has no"),
    ({"vms": [{"name": "v", "epc_size": "1MiB", "cgroup": "/v", "memory_limit": "1MiB"}]},
     "vms[0].memory_limit"),
    ({"cgroups": [{"path": "/a"}, {"path": "/a/"}]}, "cgroups[1].path: /a is listed twice"),
    ({"kernel": {"policy": "lru"}}, "enclaves[0].cgroup: EPC cgroups need kernel.policy"),
])
def test_bad_cgroup_keys_name_the_key(patch: dict, message: str) -> None:  # type: ignore[type-arg]
    data = {**_enclaves(), **patch}
    with pytest.raises(ScenarioError) as e:
        validate(data, "x.toml")
    assert str(e.value).startswith(message) and str(e.value).endswith("(x.toml)")
    assert "\n" not in str(e.value)


def test_enclaves_in_cgroups_report_each_cgroup() -> None:
    out = run_scenario(validate(_enclaves()), Path("."), scenario_name="t")
    rows = {r["path"]: r for r in out.summary["cgroups"]}
    assert set(rows) == {"/", "/t", "/t/a", "/t/b"}
    assert all(set(r) == KEYS and r["host"] == "enclaves" for r in rows.values())
    a = rows["/t/a"]
    assert a["max"] == 512 * 1024 and a["peak"] <= a["max"] and a["reclaimed"] > 0
    # Uniform over 1 MiB in 512 KiB: most of a's accesses miss; its neighbour b is bounded
    # by the EPC, not by a's limit.
    per = {r["name"]: r for r in out.summary["per_enclave"]}
    assert per["a"]["miss_ratio"] > 0.3 and per["a"]["cgroup"] == "/t/a"
    assert per["c"]["cgroup"] == "/" and all(r["status"] == "ok" for r in per.values())
    assert rows["/t"]["current"] == rows["/t/a"]["current"] + rows["/t/b"]["current"]
    assert rows["/t"]["peak"] <= 1536 * 1024
    assert rows["/"]["current"] >= rows["/t"]["current"]
    assert out.tables["cgroups"].num_rows == 4
    series = out.tables["cgroup_series"]
    assert {"time_s", "cgroup", "current_pages", "max_pages"} <= set(series.column_names)
    s = series.to_pylist()
    assert max(r["current_pages"] for r in s if r["cgroup"] == "/t/a") <= 128
    # With no limit at all, a has the EPC to itself: the limit is what made it page.
    free = _enclaves()
    free["enclaves"][0].pop("epc_limit")
    rows_free = {r["path"]: r for r in run_scenario(validate(free), Path(".")).summary["cgroups"]}
    assert rows_free["/t/a"]["peak"] > a["max"]


def test_a_limit_below_the_pinned_pages_is_refused_at_start() -> None:
    data = _enclaves()
    data["enclaves"][0]["epc_limit"] = "16KiB"     # below SECS + VA + TCS, SSA, stack
    with pytest.raises(ScenarioError, match=r"enclaves\[0\]\.cgroup: misc.max of /t/a holds 4"):
        run_scenario(validate(data), Path("."))


def test_no_cgroup_named_no_cgroups_key() -> None:
    data = _enclaves()
    data.pop("cgroups")
    for e in data["enclaves"]:
        e.pop("cgroup", None)
        e.pop("epc_limit", None)
    out = run_scenario(validate(data), Path("."))
    assert "cgroups" not in out.summary and "cgroups" not in out.tables


def test_cli_json_has_cgroup_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[platform]\nepc_size = "1MiB"\n[run]\nrequests = 5000\n'
                 '[[enclaves]]\nname = "a"\nsize = "1MiB"\nworkload = "uniform"\n'
                 'cgroup = "/a"\nepc_limit = "256KiB"\n')
    assert main(["run", str(p), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    rows = {r["path"]: r for r in s["cgroups"]}
    assert rows["/a"]["max"] == 256 * 1024 and rows["/a"]["events_max"] >= 0
    assert set(rows["/a"]) == KEYS


def _vms(mode: str) -> dict:  # type: ignore[type-arg]
    return {"platform": {"epc_size": "2MiB"}, "run": {"requests": 400, "seed": 3},
            "kernel": {"low": 8, "high": 16}, "virt": {"reserve": 32},
            "cgroups": [{"path": "/vms", "epc_limit": "1536KiB"}],
            "vms": [{"name": "a", "mode": mode, "epc_size": "512KiB", "cgroup": "/vms/a",
                     "enclaves": [{"name": "x", "size": "256KiB"}]},
                    {"name": "b", "mode": mode, "epc_size": "1MiB", "cgroup": "/vms/b",
                     "epc_limit": "768KiB",
                     "enclaves": [{"name": "y", "size": "896KiB"}]}]}


def test_reserved_vm_over_its_cgroup_limit_gets_sigbus() -> None:
    out = run_scenario(validate(_vms("reserved")), Path("."))
    vms = {r["name"]: r for r in out.summary["vms"]}
    assert vms["a"]["status"] == "ran" and vms["a"]["cgroup"] == "/vms/a"
    # b's 1 MiB of vEPC fits the host's EPC but not its 768 KiB limit.
    assert vms["b"]["status"] == "sigbus"
    rows = {r["path"]: r for r in out.summary["cgroups"]}
    assert all(r["host"] == "vms" for r in rows.values())
    assert rows["/vms/a"]["current"] == 512 * 1024
    assert rows["/vms/b"]["current"] == 0 and rows["/vms/b"]["events_max"] >= 1
    assert rows["/vms"]["current"] == 512 * 1024


def test_oversubscribed_vms_stay_under_their_limits() -> None:
    out = run_scenario(validate(_vms("oversubscribed")), Path("."))
    vms = {r["name"]: r for r in out.summary["vms"]}
    assert all(v["status"] == "ran" and v["readback_mismatches"] == 0 for v in vms.values())
    rows = {r["path"]: r for r in out.summary["cgroups"]}
    assert rows["/vms/b"]["current"] <= 768 * 1024
    assert rows["/vms/b"]["reclaimed"] > 0 and vms["b"]["host_ewb"] > 0
    assert rows["/vms"]["current"] == rows["/vms/a"]["current"] + rows["/vms/b"]["current"]
    assert out.tables["vm_cgroups"].num_rows == len(rows)
    assert rows["/"]["current"] - rows["/vms"]["current"] >= PAGE_SIZE   # KVM's own pages


def test_an_enclave_that_gets_enomem_stops_and_the_others_go_on() -> None:
    # a's EPC limit forces eviction, its memory.max refuses the backing store: once its
    # cgroup can neither reclaim nor charge, its allocation gets -ENOMEM (SIGBUS).
    data = _enclaves()
    data["enclaves"][0]["memory_limit"] = "64KiB"
    out = run_scenario(validate(data), Path("."))
    per = {r["name"]: r for r in out.summary["per_enclave"]}
    assert per["a"]["status"].startswith("failed") and "ENOMEM" in per["a"]["status"]
    assert per["b"]["status"] == per["c"]["status"] == "ok"
    assert per["b"]["requests"] > 0.9 * 20000 / 3     # b ran to the end of its share
    assert per["a"]["requests"] < 20000 / 3
