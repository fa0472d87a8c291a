"""``ruff check`` finds nothing, with the rules pyproject.toml selects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
         "src", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (
        f"ruff check exited with status {proc.returncode}:\n{proc.stdout}{proc.stderr}")
