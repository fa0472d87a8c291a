"""A sweep point made by another epcsim version is computed again, and the sweep says so."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import epcsim
from epcsim.cli import main
from epcsim.provenance import table_stamp


def test_a_resumed_sweep_recomputes_points_of_another_version(
        sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    monkeypatch.setattr(epcsim, "__version__", "0.0.9")
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    points = sorted((out / "points").glob("*.json"))
    assert len(points) == 8
    assert {json.loads(p.read_text())["epcsim_version"] for p in points} == {"0.0.9"}
    # Half the points were made by an older epcsim still, one by a file of no version.
    for p in points[:3]:
        row = json.loads(p.read_text())
        row["epcsim_version"] = "0.0.8"
        p.write_text(json.dumps(row))
    row = json.loads(points[3].read_text())
    del row["epcsim_version"]
    points[3].write_text(json.dumps(row))

    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["computed"], doc["reused"], doc["recomputed_other_version"]) == (4, 4, 4)
    assert captured.err == ("epcsim: 4 points made by another epcsim version (3 by 0.0.8, "
                            "1 by unknown) computed again with 0.0.9\n")

    # The version changes: every point is computed again, none reused.
    monkeypatch.setattr(epcsim, "__version__", "0.2.0")
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["computed"], doc["reused"], doc["recomputed_other_version"]) == (8, 0, 8)
    assert "(8 by 0.0.9) computed again with 0.2.0" in captured.err
    table = pq.read_table(out / "sweep.parquet")
    assert set(table.column("epcsim_version").to_pylist()) == {"0.2.0"}
    assert table_stamp(table)["epcsim_version"] == "0.2.0"
    assert len(table_stamp(table)["scenario_digest"]) == 16
    # Nothing changes: all reused, nothing said on stderr.
    assert main(["sweep", str(sweep_file), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["recomputed_other_version"] == 0 and captured.err == ""
