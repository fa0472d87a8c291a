"""``epcsim.replay``, ``epcsim.run``, ``epcsim.load``: what a notebook user calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import epcsim
from epcsim.cli import main
from epcsim.sweep.points import WALL_CLOCK
from epcsim.workload import write_trace
from epcsim.workload.scenario import ScenarioError
from epcsim.workload.traces import TraceError

SRC = Path(__file__).resolve().parents[1] / "src"

TOML = """
[platform]
epc_size = "4MiB"
[run]
requests = 20000
seed = 2
[[enclaves]]
name = "a"
size = "6MiB"
workload = "zipf"
"""
DICT = {"platform": {"epc_size": "4MiB"}, "run": {"requests": 20000, "seed": 2},
        "enclaves": [{"name": "a", "size": "6MiB", "workload": "zipf"}]}


def steady(summary: dict) -> dict:
    """A summary without what the host's clock measures (or the scenario's name)."""
    return {k: v for k, v in summary.items()
            if k not in WALL_CLOCK and k not in ("scenario", "state_bytes",
                                                 "state_bytes_per_page")}


def test_a_fresh_interpreter_finds_the_api_at_the_top_without_loading_it() -> None:
    code = ("import sys, epcsim; heavy = [m for m in ('numba', 'pyarrow', 'epcsim.api') "
            "if m in sys.modules]; print(heavy); "
            "print(sorted(n for n in epcsim.__all__)); "
            "print(callable(epcsim.run), callable(epcsim.replay), callable(epcsim.load), "
            "epcsim.Result.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(SRC)}).stdout
    lines = out.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "['Result', '__version__', 'load', 'replay', 'run']"
    assert lines[2] == "True True True Result"


def test_run_takes_a_path_text_or_a_dict_and_gives_one_result(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(TOML)
    by_path, by_text, by_dict = epcsim.run(f), epcsim.run(TOML), epcsim.run(DICT)
    assert steady(by_path.summary) == steady(by_text.summary) == steady(by_dict.summary)
    assert by_path.summary["scenario"] == str(f)
    assert by_path.summary["requests"] == 20000
    assert by_path.summary["scenario_digest"] == by_dict.summary["scenario_digest"]
    assert set(by_dict.tables) >= {"enclaves", "series", "faults", "enclave_series"}
    assert by_dict.scenario is not None and by_dict.scenario["run"]["requests"] == 20000


def test_run_summary_has_the_keys_of_json(tmp_path: Path, capsys) -> None:
    f = tmp_path / "s.toml"
    f.write_text(TOML)
    assert main(["run", str(f), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = epcsim.run(f).summary
    assert set(api) == set(cli)
    assert steady(api) == steady(cli)


def test_replay_matches_the_command_and_saves_what_out_writes(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "t.lcs.gz"
    rng = np.random.default_rng(0)
    write_trace(trace, "lcs", rng.integers(0, 900, 30_000), tenant=rng.integers(0, 2, 30_000))
    r = epcsim.replay(trace, epc_pages=256, policy="sgx")
    assert main(["replay", str(trace), "--epc-pages", "256", "--json",
                 "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert set(r.summary) == set(cli) and steady(r.summary) == steady(cli)
    assert r.scenario is None and r.summary["enclaves"] == 2
    saved = r.save(tmp_path / "api")
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        p.name for p in (tmp_path / "cli").iterdir())
    loaded = epcsim.load(saved)
    assert loaded.summary == r.summary
    assert loaded.tables["faults"].equals(r.tables["faults"].replace_schema_metadata(
        loaded.tables["faults"].schema.metadata))
    df = loaded.to_pandas("enclaves")
    assert list(df["tenant"]) == [0, 1]


def test_to_pandas_of_an_unknown_table_names_the_ones_there() -> None:
    r = epcsim.Result({"a": 1}, {"series": pq.read_table(_tiny())})
    with pytest.raises(KeyError, match="no table 'sries'; this result has series"):
        r.to_pandas("sries")


def _tiny() -> Path:
    import tempfile

    import pyarrow as pa

    d = Path(tempfile.mkdtemp())
    pq.write_table(pa.table({"x": [1, 2]}), d / "t.parquet")
    return d / "t.parquet"


def test_bad_input_raises_the_errors_the_command_prints(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"^enclaves\[0\]\.size: .*not a size"):
        epcsim.run({"enclaves": [{"name": "a", "size": "6XB", "workload": "zipf"}]})
    with pytest.raises(ScenarioError, match=r"not valid TOML"):
        epcsim.run("[[enclaves]\nname=")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        epcsim.run(tmp_path / "missing.toml")
    with pytest.raises(TraceError, match="no such file"):
        epcsim.replay(tmp_path / "none.csv", epc_pages=64)
    with pytest.raises(TypeError, match="a path, TOML text or a dict"):
        epcsim.run(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no such results directory"):
        epcsim.load(tmp_path / "nothing")
