"""Bad sweep files exit 2 with one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from epcsim.cli import main

BASE = """
[base]
run = { requests = 1000 }
[[base.enclaves]]
name = "a"
size = "1MiB"
workload = "zipf"
"""


@pytest.mark.parametrize(("body", "expected"), [
    ('[grid]\n"kernel.bach" = [8, 16]\n', "unknown key: kernel.bach (FILE:grid.kernel.bach)"),
    ('[grid]\n"enclaves.3.size" = ["1MiB"]\n', "(FILE:grid.enclaves.3.size)"),
    ('[grid]\n"kernel.policy.x" = [1]\n', "unknown key: kernel.policy.x (FILE:grid."),
    ("[grid]\n", "empty grid: give at least one dotted key with a list of values (FILE:grid)"),
    ('[grid]\n"kernel.batch" = []\n', "empty list of values (FILE:grid.kernel.batch)"),
    ('[grid]\n"kernel.batch" = 16\n',
     "wrong type: a list of values, not int (FILE:grid.kernel.batch)"),
    ('[grid]\n"kernel.batch" = ["many"]\n',
     "wrong value 'many': kernel.batch: Input should be a valid integer"),
    ('[grid]\n"platform.epc_size" = ["4XB"]\n', "(FILE:grid.platform.epc_size)"),
    ('[grid]\n"kernel.batch" = [8]\n[extra]\na = 1\n', "unknown key (use [sweep]"),
    ('[sweep]\nworkers = 2\n[grid]\n"kernel.batch" = [8]\n', "unknown key (FILE:sweep.workers)"),
])
def test_bad_sweep_file_exits_2_naming_the_key(tmp_path: Path, body: str, expected: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + body)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("epcsim: error: ")
    assert expected.replace("FILE", str(path)) in err[0]
    assert not (tmp_path / "o").exists()


def test_missing_base_and_missing_file(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nobase.toml"
    path.write_text('[grid]\n"kernel.batch" = [8]\n')
    assert main(["sweep", str(path)]) == 2
    assert f"({path}:base)" in capsys.readouterr().err
    path.write_text('[sweep]\nbase = "gone.toml"\n[grid]\n"kernel.batch" = [8]\n')
    assert main(["sweep", str(path)]) == 2
    assert f"({path}:sweep.base)" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "no such sweep file" in capsys.readouterr().err


def test_base_scenario_by_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sc.toml").write_text(BASE.replace("base.", "").replace("[base]\n", ""))
    path = tmp_path / "bypath.toml"
    path.write_text('[sweep]\nbase = "sc.toml"\n[grid]\n"kernel.policy" = ["lru", "fifo"]\n')
    assert main(["sweep", str(path), "--json"]) == 0
    assert '"computed": 2' in capsys.readouterr().out


def test_dask_scheduler_that_is_not_there(sweep_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(sweep_file), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err[0]
