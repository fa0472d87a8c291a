"""A sweep on a Dask cluster gives the table a single local worker gives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from epcsim.cli import main
from epcsim.sweep.points import comparable

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_local_cluster_with_two_workers_matches_one_local_worker(
        sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Worker processes find epcsim where this test does (installed or from src/).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        assert main(["sweep", str(sweep_file), "--scheduler", address,
                     "--out", str(tmp_path / "dask"), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        with Client(address) as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2
            # Both workers ran points: the sweep really was spread over the cluster.
            ran = client.run(lambda dask_worker: sorted(
                {str(e[0]) for e in dask_worker.state.log
                 if str(e[0]).startswith("epcsim-point-") and "memory" in e}))
            assert all(ran.values()), ran
            assert sum(len(keys) for keys in ran.values()) == 8
    assert (doc["points"], doc["computed"]) == (8, 8)
    assert main(["sweep", str(sweep_file), "--workers", "1", "--out", str(tmp_path / "one"),
                 "--json"]) == 0
    capsys.readouterr()
    on_dask = pq.read_table(tmp_path / "dask" / "sweep.parquet")
    local = pq.read_table(tmp_path / "one" / "sweep.parquet")
    assert len(on_dask) == 8
    assert comparable(on_dask) == comparable(local)
