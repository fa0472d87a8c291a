"""The programs as a user meets them: `epcsim workloads`, `epcsim trace`, scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from epcsim.cli import main
from epcsim.workload.programs import PROGRAMS, generate
from epcsim.workload.scenario import ScenarioError, validate
from epcsim.workload.traces import open_trace


def test_workloads_json_lists_every_workload_with_its_parameters(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workloads", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    names = {w["name"] for w in items}
    assert names == set(PROGRAMS) | {"scan", "uniform", "zipf", "phases"}
    btree = next(w for w in items if w["name"] == "btree")
    assert {p["name"] for p in btree["params"]} >= {"node", "insert_ratio", "accesses"}
    assert all({"name", "type", "default", "min", "max", "help"} <= set(p)
               for w in items for p in w["params"])


def test_workloads_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert "hashjoin" in out and "[[enclaves]]" in out


@pytest.mark.parametrize("fmt, packed", [(f, z) for f in ("lcs", "csv", "npy", "oracleGeneral")
                                          for z in ("", ".zst", ".gz")])
def test_trace_round_trips(tmp_path: Path, fmt: str, packed: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"t.{fmt}{packed}"
    assert main(["trace", "kvstore", "--size", "1MiB", "--seed", "3", "--param",
                 "accesses=5000", "--param", "threads=2", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == fmt and doc["records"] == 5000 and doc["threads"] == 2
    want = generate("kvstore", 1 << 20, seed=3, accesses=5000, threads=2)
    chunks = list(open_trace(str(out), fmt))
    pages = np.concatenate([c.obj for c in chunks])
    writes = np.concatenate([c.write for c in chunks])
    assert np.array_equal(pages, want.page.astype(np.uint64))
    if fmt == "oracleGeneral":
        assert not writes.any()   # the format has no operation
    else:
        assert np.array_equal(writes, want.write) and doc["writes"] == int(want.write.sum())
    if fmt == "npy" and not packed:
        assert np.array_equal(np.load(out)["thread"], want.thread)
    if packed:
        assert out.read_bytes()[:2] in (b"\x28\xb5", b"\x1f\x8b")   # zstd or gzip magic


def test_trace_format_option_wins_over_the_suffix(tmp_path: Path) -> None:
    out = tmp_path / "t.data"
    assert main(["trace", "zipf", "--size", "1MiB", "--param", "accesses=100", "--param",
                 "alpha=0.5", "--out", str(out), "--format", "oracleGeneral"]) == 0
    assert out.stat().st_size == 24 * 100


@pytest.mark.parametrize("args, message", [
    (["btree", "--param", "insert_ratio=2"], "insert_ratio: must be in [0, 1]"),
    (["btree", "--param", "nodes=2"], "nodes: btree has no parameter 'nodes'"),
    (["btree", "--param", "node"], "--param: KEY=VALUE"),
    (["zipf", "--param", "alpha=-1"], "alpha: must be in"),
    (["nope"], "workload: no workload 'nope'"),
    (["sort", "--size", "1KiB"], "size: must be from"),
    (["sort", "--out", "x.xz"], "--out: .xz traces cannot be written"),
    (["sort", "--out", "x.bin"], "--format: not given"),
])
def test_trace_errors_are_one_line_naming_the_parameter(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    argv = ["trace", *args]
    if "--size" not in argv:
        argv += ["--size", "1MiB"]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "t.lcs")]
    else:
        argv[argv.index("--out") + 1] = str(tmp_path / argv[argv.index("--out") + 1])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("epcsim: error: ") and message in err


BASE = {"platform": {"preset": "client-sgx1", "epc_size": "2MiB"},
        "run": {"requests": 40_000, "seed": 2}}


def test_a_scenario_runs_two_programs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    sc = tmp_path / "s.toml"
    sc.write_text('[platform]\npreset = "client-sgx1"\nepc_size = "2MiB"\n'
                  '[run]\nrequests = 40000\nseed = 2\n'
                  '[[enclaves]]\nname = "index"\nsize = "2MiB"\nworkload = "btree"\n'
                  'params = { insert_ratio = 0.3 }\n'
                  '[[enclaves]]\nname = "join"\nsize = "1MiB"\nworkload = "hashjoin"\n'
                  '[enclaves.params]\nratio = 2\n')
    assert main(["run", str(sc), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in doc["per_enclave"]}
    assert set(rows) == {"index", "join"}
    # together they pass the EPC: pages are written back and loaded again
    assert rows["index"]["pages"] + rows["join"]["pages"] > 512
    assert doc["ewb"] > 0 and doc["eldu"] > 0


def test_scenario_writes_reach_the_replay() -> None:
    from epcsim.workload.scenario import accesses_for

    sc = validate({**BASE, "enclaves": [{"name": "c", "size": "1MiB", "workload": "cipher"},
                                        {"name": "z", "size": "1MiB", "workload": "zipf"}]})
    tenants, _, writes, names = accesses_for(sc, Path("."))
    assert names == ["c", "z"]
    assert writes[tenants == 0].mean() > 0.9 and not writes[tenants == 1].any()


@pytest.mark.parametrize("enclave, where", [
    ({"workload": "btree", "params": {"node": 100}}, "enclaves[0].params.node:"),
    ({"workload": "btree", "params": {"colour": 1}}, "enclaves[0].params.colour:"),
    ({"workload": "kvstore", "size": "16KiB"}, "enclaves[0].size:"),
    ({"workload": "zipf", "params": {"alpha": 1}}, "enclaves[0].params:"),
    ({"workload": "bogus"}, "enclaves[0].workload:"),
    ({"workload": "sort", "params": {"accesses": 5}}, "enclaves[0].params.accesses:"),
])
def test_bad_program_entries_name_the_key(enclave: dict, where: str) -> None:  # type: ignore[type-arg]
    e = {"name": "a", "size": "1MiB", **enclave}
    with pytest.raises(ScenarioError) as err:
        validate({**BASE, "enclaves": [e]}, "s.toml")
    assert str(err.value).startswith(where) and str(err.value).endswith("(s.toml)")


def test_the_programs_example_validates() -> None:
    from epcsim.workload.scenario import load

    sc = load(Path(__file__).resolve().parents[2] / "examples" / "programs.toml")
    assert [(e.workload, e.params) for e in sc.enclaves] == [
        ("btree", {"insert_ratio": 0.2}), ("kvstore", {"value_size": 1024, "alpha": 1.1})]
