"""A short run of the soak benchmark: an enclave 4x the EPC, random reads and writes, every
byte verified (the million-access run is `benchmarks/soak.py`, recorded in BENCHMARKS.md)."""

from __future__ import annotations

import runpy
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_short_soak_verifies_every_byte(tmp_path: Path) -> None:
    # 256 EPC pages: ksgxd's watermarks (32 and 64 free pages, the kernel's constants) are
    # a quarter of the EPC, as on a real machine. On 64 pages its high watermark is the
    # whole EPC, each wake-up writes every page back, and each access faulted about 75
    # times (the thread's own pages with it): 70 s for the same check.
    soak = runpy.run_path(str(SOAK))["soak"]
    r = soak(256, 6000, steps=200, seed=7, backing_dir=str(tmp_path))
    assert r["mismatched_reads"] == 0 and r["mismatched_pages"] == 0
    assert r["sealed"] > 3000 and r["opened"] > 3000     # most accesses paged
    assert list(tmp_path.iterdir()) == []
