"""Scenarios: validation that names the key, and `epcsim run` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epcsim.cli import main
from epcsim.workload.scenario import ScenarioError, load, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = {"platform": {"preset": "client-sgx1", "epc_size": "1MiB"}, "run": {"requests": 5000},
        "enclaves": [{"name": "a", "size": "2MiB", "workload": "zipf", "alpha": 0.9}]}


def _with(**changes: object) -> dict:  # type: ignore[type-arg]
    d = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = d
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value
    return d


@pytest.mark.parametrize("changes, where", [
    ({"platform__preset": "nope"}, "platform.preset"),
    ({"platform__epc_size": "12XB"}, "platform.epc_size"),
    ({"enclaves__0__size": "64XB"}, "enclaves[0].size"),
    ({"enclaves__0__workload": "random"}, "enclaves[0].workload"),
    ({"enclaves__0__alpha": -1}, "enclaves[0].alpha"),
    ({"kernel": {"policy": "lfu"}}, "kernel.policy"),
    ({"run__requests": 0}, "run.requests"),
    ({"enclaves__0__colour": "red"}, "enclaves[0].colour"),
    ({"enclaves": []}, "enclaves"),
    ({"platform__tlb_entries": 100}, "platform"),
    ({"platform__tlb_ways": 0}, "platform.tlb_ways"),
])
def test_bad_scenarios_name_the_key(changes: dict, where: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ScenarioError) as e:
        validate(_with(**changes), "s.toml")
    assert str(e.value).startswith(where + ":") and str(e.value).endswith("(s.toml)")


def test_workload_or_trace_but_not_both() -> None:
    d = _with(enclaves__0__trace="t.oracleGeneral", enclaves__0__format="oracleGeneral")
    with pytest.raises(ScenarioError, match=r"enclaves\[0\]: give either"):
        validate(d)


def test_resolved_platform_applies_overrides() -> None:
    sc = validate(_with(platform__costs={"ewb": 12345}))
    p = sc.resolved_platform()
    assert p.epc_pages == 256 and p.costs.ewb.cycles == 12345
    assert p.costs.ewb.source == "scenario" and p.costs.eldu.cycles == 9000


def test_resolved_platform_sizes_the_tlb() -> None:
    assert validate(_with()).resolved_platform().tlb_entries == 1536
    p = validate(_with(platform__tlb_entries=0)).resolved_platform()
    assert p.tlb_entries == 0
    p = validate(_with(platform__tlb_entries=64, platform__tlb_ways=4)).resolved_platform()
    assert (p.tlb_entries, p.tlb_ways, p.tlb_source) == (64, 4, "scenario")


def test_run_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[platform]\npreset = "client-sgx1"\nepc_size = "1MiB"\n'
                        '[kernel]\npolicy = "lru"\n[run]\nrequests = 20000\nseed = 3\n'
                        '[[enclaves]]\nname = "hot"\nsize = "2MiB"\nworkload = "zipf"\n'
                        'weight = 3\n[[enclaves]]\nname = "scan"\nsize = "512KiB"\n'
                        'workload = "scan"\n')
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    per = {row["name"]: row for row in doc["per_enclave"]}
    assert set(per) == {"hot", "scan"}
    assert per["hot"]["requests"] + per["scan"]["requests"] == doc["requests"] == 20000
    assert per["hot"]["requests"] > 2 * per["scan"]["requests"]
    assert doc["faults"] >= per["scan"]["pages"] + 1
    resolved = json.loads((out / "scenario.resolved.json").read_text())
    assert resolved["kernel"]["low"] == 32 and resolved["enclaves"][1]["weight"] == 1.0
    assert (out / "series.parquet").exists() and (out / "faults.parquet").exists()


def test_example_scenario_validates() -> None:
    sc = load(EXAMPLES / "two_enclaves.toml")
    assert [e.name for e in sc.enclaves] == ["db", "log"]


def test_bad_scenario_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[[enclaves]]\nname = \"a\"\nsize = \"64XB\"\nworkload = \"zipf\"\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"epcsim: error: enclaves[0].size: not a size: '64XB' ({bad})"]
