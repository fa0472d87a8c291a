"""Fixtures for the sweep tests; the helpers live in :mod:`sweepkit`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweepkit import write_sweep


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    return write_sweep(tmp_path)
