"""A results directory as ``epcsim run --out`` (and the demo and sweeps) write it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class ResultsError(ValueError):
    """A directory that holds no results; one line naming it."""


@dataclass
class Results:
    """``summary.json``, every ``<name>.parquet`` by name, and a sweep table if there is one."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    sweep: pa.Table | None = None


def load_results(path: str | Path) -> Results:
    """Read a run's directory, a sweep's directory, or a run's with a ``sweep/`` beside it."""
    p = Path(path)
    if not p.is_dir():
        raise ResultsError(f"no such results directory ({p})")
    res = Results(p)
    summary = p / "summary.json"
    if summary.exists():
        try:
            res.summary = json.loads(summary.read_text())
        except json.JSONDecodeError as e:
            raise ResultsError(f"summary.json is not valid JSON: {e} ({summary})") from None
    for f in sorted(p.glob("*.parquet")):
        if f.stem == "sweep":
            continue
        res.tables[f.stem] = _read(f)
    for candidate in (p / "sweep.parquet", p / "sweep" / "sweep.parquet"):
        if candidate.exists():
            res.sweep = _read(candidate)
            break
    if not res.summary and not res.tables and res.sweep is None:
        raise ResultsError(f"no summary.json, Parquet tables or sweep.parquet here ({p})")
    return res


def _read(f: Path) -> pa.Table:
    try:
        return pq.read_table(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise ResultsError(f"not a Parquet table: {e} ({f})") from None
