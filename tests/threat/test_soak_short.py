"""A short run of the soak benchmark: an enclave 4x the EPC, random reads and writes, every
byte verified (the million-access run is `benchmarks/soak.py`, recorded in BENCHMARKS.md)."""

from __future__ import annotations

import runpy
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_short_soak_verifies_every_byte(tmp_path: Path) -> None:
    soak = runpy.run_path(str(SOAK))["soak"]
    r = soak(64, 6000, steps=200, seed=7, backing_dir=str(tmp_path))
    assert r["mismatched_reads"] == 0 and r["mismatched_pages"] == 0
    assert r["sealed"] > 1000 and r["opened"] > 1000     # most accesses paged
    assert list(tmp_path.iterdir()) == []
