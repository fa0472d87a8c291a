"""``content = true`` in a scenario: the run replays its requests with page contents,
sealed to the on-disk backing store and verified on every access."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from epcsim.cli import main

SCENARIO = """[platform]
preset = "client-sgx1"
epc_size = "1MiB"
[run]
requests = 3000
seed = 5
content = true
backing_dir = "{backing}"
[[enclaves]]
name = "db"
size = "2MiB"
workload = "uniform"
[[enclaves]]
name = "log"
size = "512KiB"
workload = "scan"
"""


def test_content_run_verifies_every_request(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    backing = tmp_path / "backing"
    sc = tmp_path / "s.toml"
    sc.write_text(SCENARIO.format(backing=backing))
    out = tmp_path / "out"
    assert main(["run", str(sc), "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    c = doc["content"]
    assert c["requests"] == 3000 and c["mismatches"] == 0 and c["verified"] is True
    assert c["sealed"] > 0 and c["opened"] > 0          # 2.5 MiB of enclaves on a 1 MiB EPC
    assert c["backing_peak_bytes"] > 0
    table = pq.read_table(out / "content.parquet").to_pylist()
    assert [r["name"] for r in table] == ["db", "log"]
    assert sum(r["requests"] for r in table) == 3000
    assert list(backing.iterdir()) == []                # backing files removed at release
    resolved = json.loads((out / "scenario.resolved.json").read_text())
    assert resolved["run"]["content"] is True


def test_content_must_be_a_boolean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "s.toml"
    sc.write_text('[run]\ncontent = "maybe"\n[[enclaves]]\nname = "a"\nsize = "64KiB"\n'
                  'workload = "scan"\n')
    assert main(["run", str(sc)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("epcsim: error: run.content:")
