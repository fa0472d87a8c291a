"""Scenarios with [[vms]]: validation, reserved VMs that do not fit, the oversubscription
example in every mode, and `epcsim run --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epcsim.cli import main
from epcsim.sim.runner import run_scenario
from epcsim.workload.scenario import ScenarioError, load, validate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "oversubscription.toml"
KEYS = {"name", "mode", "guest_faults", "guest_ewb", "guest_eldu", "host_ewb", "host_eldu",
        "vm_exits", "conflict_exits"}


def _small(mode: str, **virt: object) -> dict:  # type: ignore[type-arg]
    return {"platform": {"epc_size": "1MiB"}, "run": {"requests": 800, "seed": 3},
            "kernel": {"low": 8, "high": 16},
            "virt": {"mode": mode, "reserve": 48, **virt},
            "vms": [{"name": "a", "epc_size": "768KiB", "enclaves": [
                        {"name": "x", "size": "384KiB", "workload": "zipf"}]},
                    {"name": "b", "epc_size": "768KiB", "enclaves": [
                        {"name": "y", "size": "448KiB", "start": 0.5}]}]}


@pytest.mark.parametrize("patch,where", [
    ({"mode": "paged"}, "vms[0].mode"),
    ({"epc_size": "12KiB"}, "vms[0].epc_size"),
    ({"vcpus": 0}, "vms[0].vcpus"),
    ({"colour": 1}, "vms[0].colour"),
])
def test_bad_vm_keys_are_one_line_errors(tmp_path: Path, patch: dict, where: str,  # type: ignore[type-arg]
                                         capsys: pytest.CaptureFixture[str]) -> None:
    vm = {"name": "a", "epc_size": "1MiB", **patch}
    p = tmp_path / "s.toml"
    lines = ['[[vms]]'] + [f'{k} = {json.dumps(v)}' for k, v in vm.items()]
    p.write_text("\n".join(lines) + "\n")
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("epcsim: error: " + where), err


def test_duplicate_vm_names_and_empty_scenarios_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"vms\[1\]\.name"):
        validate({"vms": [{"name": "a", "epc_size": "1MiB"}, {"name": "a", "epc_size": "1MiB"}]})
    with pytest.raises(ScenarioError, match="enclaves, pods or vms"):
        validate({})


def test_reserved_vm_that_does_not_fit_fails_at_start() -> None:
    out = run_scenario(validate(_small("reserved")), Path("."))
    rows = {r["name"]: r for r in out.summary["vms"]}
    assert rows["a"]["status"] == "ran" and rows["a"]["host_ewb"] == 0
    assert rows["a"]["readback_mismatches"] == 0
    assert rows["b"]["status"] == "sigbus"       # 768 KiB + 768 KiB > 1 MiB of host EPC
    assert out.tables["vms"].num_rows == 2


@pytest.mark.parametrize("mode", ["oversubscribed", "balloon"])
def test_small_oversubscription_reads_back_every_page(mode: str) -> None:
    out = run_scenario(validate(_small(mode)), Path("."))
    rows = {r["name"]: r for r in out.summary["vms"]}
    assert {r["status"] for r in rows.values()} == {"ran"}
    for r in rows.values():
        assert r["readback_mismatches"] == 0 and r["pages_checked"] > 0
    if mode == "oversubscribed":
        assert sum(r["host_ewb"] for r in rows.values()) > 0
        assert sum(r["host_eldu"] for r in rows.values()) > 0
    else:
        assert sum(r["host_ewb"] for r in rows.values()) == 0
        assert sum(r["balloon_pages"] for r in rows.values()) > 0
        assert sum(r["guest_ewb"] for r in rows.values()) > 0


def test_example_runs_with_json_per_vm_keys(capsys: pytest.CaptureFixture[str]) -> None:
    sc = load(EXAMPLE)
    total = sum(int(v.epc_size) for v in sc.vms)
    assert total == 2 * int(sc.platform.epc_size)   # vEPC adds up to twice the host's
    assert main(["run", str(EXAMPLE), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in doc["vms"]] == ["a", "b", "c"]
    for v in doc["vms"]:
        assert KEYS <= set(v), KEYS - set(v)
        assert v["mode"] == "oversubscribed" and v["status"] == "ran"
        assert v["readback_mismatches"] == 0
    assert sum(v["host_ewb"] for v in doc["vms"]) > 0


@pytest.mark.parametrize("mode", ["oversubscribed", "balloon"])
def test_example_runs_to_the_end_with_every_byte_intact(mode: str) -> None:
    """The issue's scenario in content mode (a third of its accesses, still both halves:
    working sets that fit, then ones that do not)."""
    sc = load(EXAMPLE)
    sc = sc.model_copy(update={"virt": sc.virt.model_copy(update={"mode": mode}),
                               "run": sc.run.model_copy(update={"content": True,
                                                                "requests": 8000})})
    out = run_scenario(sc, EXAMPLE.parent)
    for v in out.summary["vms"]:
        assert v["status"] == "ran" and v["content"] is True
        assert v["readback_mismatches"] == 0 and v["version_mismatches"] == 0
        assert v["bytes_checked"] == v["pages_checked"] * 4096 > 0
    if mode == "balloon":
        assert all(v["host_ewb"] == 0 for v in out.summary["vms"])
        assert sum(v["balloon_pages"] for v in out.summary["vms"]) > 0
    else:
        assert sum(v["host_ewb"] for v in out.summary["vms"]) > 0
