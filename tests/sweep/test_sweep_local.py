"""Sweeps on this machine: the table, resuming after a kill, plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sweepkit import write_sweep

from epcsim.cli import main
from epcsim.sweep.points import WALL_CLOCK, comparable

SRC = Path(__file__).resolve().parents[2] / "src"


def _json(capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    return json.loads(capsys.readouterr().out)


def test_one_row_per_point_with_parameters_and_summary(
        sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    doc = _json(capsys)
    assert (doc["points"], doc["computed"], doc["reused"]) == (8, 8, 0)
    table = pq.read_table(out / "sweep.parquet")
    rows = table.to_pylist()
    assert [r["point"] for r in rows] == list(range(8))
    assert table.column_names[:3] == ["point", "param.platform.epc_size",
                                      "param.enclaves.0.alpha"]
    assert [(r["param.platform.epc_size"], r["param.enclaves.0.alpha"]) for r in rows[:3]] == [
        ("1MiB", 0.8), ("1MiB", 1.2), ("2MiB", 0.8)]
    assert all(r["requests"] == 20000 and r["policy"] == "lru" for r in rows)
    # The points really differ: a larger EPC never misses more under LRU (inclusion).
    for alpha in (0.8, 1.2):
        ratios = [r["miss_ratio"] for r in rows if r["param.enclaves.0.alpha"] == alpha]
        assert ratios == sorted(ratios, reverse=True) and ratios[0] > ratios[-1]
    assert rows[0]["epc_pages"] == 256 and rows[-1]["epc_pages"] == 1024
    # A second run reuses everything and writes the same table.
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    assert (_json(capsys)["computed"]) == 0
    assert comparable(pq.read_table(out / "sweep.parquet")) == comparable(table)


def test_default_out_dir_and_two_local_workers_give_the_same_table(
        sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(sweep_file), "--json"]) == 0
    one = pq.read_table(tmp_path / "s.results" / "sweep.parquet")
    assert main(["sweep", str(sweep_file), "--workers", "2", "--out", str(tmp_path / "w2"),
                 "--json"]) == 0
    capsys.readouterr()
    two = pq.read_table(tmp_path / "w2" / "sweep.parquet")
    assert comparable(one) == comparable(two)
    assert set(WALL_CLOCK) <= set(one.column_names)


def _files(points: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in points.glob("*.json")}


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_sweep_resumes_without_recomputing_or_losing_points(
        workers: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Points big enough (2 M requests each) that the process dies between two of them.
    # The whole process group is killed: the sweep and, with --workers 2, its workers.
    sweep = write_sweep(tmp_path, requests=2_000_000)
    out = tmp_path / "killed"
    points = out / "points"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "epcsim", "sweep", str(sweep), "--out",
                             str(out), "--workers", str(workers)], env=env,
                            start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if points.is_dir() and len(_files(points)) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = _files(points)
    assert 2 <= len(before) < 8, before
    assert not (out / "sweep.parquet").exists()

    assert main(["sweep", str(sweep), "--out", str(out), "--json"]) == 0
    doc = _json(capsys)
    assert (doc["computed"], doc["reused"]) == (8 - len(before), len(before))
    after = _files(points)
    assert len(after) == 8
    # Every point finished before the kill is the very file written then: not computed again.
    assert {k: after[k] for k in before} == before

    assert main(["sweep", str(sweep), "--out", str(tmp_path / "whole"), "--json"]) == 0
    assert _json(capsys)["computed"] == 8
    assert comparable(pq.read_table(out / "sweep.parquet")) == comparable(
        pq.read_table(tmp_path / "whole" / "sweep.parquet"))


def test_changed_base_recomputes_only_changed_points(
        sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    text = sweep_file.read_text().replace('"4MiB"]', '"4MiB", "5MiB"]')
    sweep_file.write_text(text)
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    doc = _json(capsys)
    assert (doc["points"], doc["computed"], doc["reused"]) == (10, 2, 8)


def test_plot_a_metric_against_a_parameter(
        sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--plot", "miss_ratio",
                 "--x", "platform.epc_size", "--json"]) == 0
    plots = [Path(p) for p in _json(capsys)["plots"]]
    assert [p.suffix for p in plots] == [".png", ".svg"]
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plots[0].stat().st_size > 5000
    svg = plots[1].read_text()
    assert "enclaves.0.alpha=0.8" in svg and "enclaves.0.alpha=1.2" in svg

    assert main(["sweep", str(sweep_file), "--out", str(out), "--plot", "nope",
                 "--x", "platform.epc_size"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0]
    assert main(["sweep", str(sweep_file), "--out", str(out), "--plot", "miss_ratio",
                 "--x", "kernel.batch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kernel.batch" in err[0]


def test_one_point_of_each_shape_runs_before_the_workers_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent compiles (runs one point of each compile shape) before any worker starts;
    the workers get the rest."""
    from epcsim.sweep import execute
    from epcsim.sweep.spec import load_sweep

    path = write_sweep(tmp_path, requests=2000)
    text = path.read_text()
    path.write_text(text[:text.index("[grid]")] + '[grid]\n"kernel.policy" = ["lru", "fifo"]\n'
                    '"platform.epc_size" = ["1MiB", "2MiB", "4MiB"]\n')
    events: list[tuple[str, int]] = []
    compute = execute.compute_point

    def in_parent(index, params, scenario, base):  # type: ignore[no-untyped-def]
        events.append(("parent", index))
        return compute(index, params, scenario, base)

    def on_workers(workers, todo, base, finished):  # type: ignore[no-untyped-def]
        for index, params, scenario, p in todo:
            events.append(("worker", index))
            finished(p, compute(index, params, scenario, base))

    monkeypatch.setattr(execute, "compute_point", in_parent)
    monkeypatch.setattr(execute, "_on_processes", on_workers)
    spec = load_sweep(str(path))
    outcome = execute.run_sweep(spec, tmp_path / "out", workers=2)
    assert outcome.computed == 6
    parent = [i for who, i in events if who == "parent"]
    assert len(parent) == 2 and events[:2] == [("parent", i) for i in parent]
    policies = {spec.points()[i]["kernel.policy"] for i in parent}
    assert policies == {"lru", "fifo"}
    assert sorted(i for who, i in events if who == "worker") == \
        sorted(set(range(6)) - set(parent))


def test_compile_shape_ignores_sizes_and_seeds() -> None:
    from epcsim.sweep.execute import compile_shape

    a = {"platform": {"epc_size": "1MiB"}, "run": {"seed": 1},
         "enclaves": [{"name": "a", "size": "64KiB"}]}
    b = {"platform": {"epc_size": "8MiB"}, "run": {"seed": 2},
         "enclaves": [{"name": "a", "size": "1MiB"}]}
    assert compile_shape(a) == compile_shape(b)
    assert compile_shape(a) != compile_shape({**a, "kernel": {"policy": "lru"}})
    assert compile_shape(a) != compile_shape({**a, "run": {"content": True}})
    assert compile_shape(a) != compile_shape({**a, "vms": [{"name": "v"}]})
