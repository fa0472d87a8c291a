"""``epcsim run --out``: everything a report needs, and a resolved scenario that repeats it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from epcsim.cli import main


def test_resolved_scenario_repeats_a_traced_run_from_anywhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "study"
    src.mkdir()
    rng = np.random.default_rng(4)
    np.save(src / "app.npy", rng.integers(0, 600, 20000).astype(np.int64))
    (src / "s.toml").write_text(
        '[platform]\nepc_size = "1MiB"\n[kernel]\npolicy = "sgx"\n[run]\nrequests = 30000\n'
        '[[enclaves]]\nname = "app"\ntrace = "app.npy"\nformat = "npy"\n'
        '[[enclaves]]\nname = "gen"\nsize = "1MiB"\nworkload = "uniform"\n')
    out = tmp_path / "out"
    assert main(["run", str(src / "s.toml"), "--json", "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {p.name for p in out.iterdir()} == {
        "summary.json", "enclaves.parquet", "series.parquet", "faults.parquet",
        "enclave_series.parquet", "scenario.resolved.json", "results.json"}
    resolved = json.loads((out / "scenario.resolved.json").read_text())
    assert resolved["enclaves"][0]["trace"] == str((src / "app.npy").resolve())
    assert resolved["kernel"] == {"policy": "sgx", "low": 32, "high": 64, "batch": 16,
                                  "ksgxd": "clock"}
    assert pq.read_table(out / "faults.parquet").num_rows == first["faults"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    os.replace(out / "scenario.resolved.json", elsewhere / "again.json")
    assert main(["run", "again.json", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    same = ("faults", "ewb", "eldu", "eaug", "etrack", "ipi", "virtual_time_s", "per_enclave")
    assert {k: again[k] for k in same} == {k: first[k] for k in same}


def test_bad_json_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"enclaves": [}')
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("epcsim: error: not valid JSON")
    assert err[0].endswith(f"({bad})")
    bad.write_text('{"enclaves": [{"name": "a", "size": "64XB", "workload": "zipf"}]}')
    assert main(["run", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"epcsim: error: enclaves[0].size: not a size: '64XB' ({bad})")
