"""Finished points on disk: one JSON file per point, written atomically.

A point's file is named by its place in the grid and a digest of the scenario it ran, so a
resumed sweep reuses exactly the points whose scenario has not changed and never computes a
finished point again, unless another epcsim version made it (its row's ``epcsim_version``):
that point runs again. A file appears whole (written beside, then renamed) or not at all: a
sweep killed at any instant loses only the points still running.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

# Summary keys measured on the host's clock: they differ between two runs of the same point,
# so they stay out of the comparison of tables (kept in the table all the same).
WALL_CLOCK = ("wall_s", "requests_per_s", "compile_s", "setup_s", "replay_s")


def digest(scenario: dict[str, Any]) -> str:
    """A stable name for a scenario's content (the version is not in it: a point made by
    another epcsim is found by its row's ``epcsim_version`` and run again)."""
    text = json.dumps(scenario, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def point_file(points_dir: Path, index: int, scenario: dict[str, Any]) -> Path:
    return points_dir / f"{index:06d}-{digest(scenario)}.json"


def flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars of a run's summary, nested tables as dotted names; lists are left out."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            out[name] = value
    return out


def row_for(index: int, params: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """One table row: the point's index, its parameters (``param.<key>``), its summary."""
    row: dict[str, Any] = {"point": index}
    row.update({f"param.{k}": v for k, v in params.items()})
    row.update(flatten(summary))
    return row


def write_atomic(path: Path, row: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(row, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_row(path: Path) -> dict[str, Any]:
    with open(path) as f:
        row: dict[str, Any] = json.load(f)
    return row


def to_table(rows: list[dict[str, Any]], grid_keys: list[str]) -> pa.Table:
    """Rows in grid order as one table: the point, its parameters in the grid's order, then
    the summary by name; a column's values share one Arrow type."""
    rows = sorted(rows, key=lambda r: r["point"])
    seen = {k for r in rows for k in r}
    names = ["point"] + [f"param.{k}" for k in grid_keys]
    names += sorted(seen - set(names))
    cols = {}
    for name in names:
        values = [r.get(name) for r in rows]
        cols[name] = _column(values)
    return pa.table(cols)


def _column(values: list[Any]) -> pa.Array:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} and float in kinds:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kinds and not kinds <= {int, float, bool, str}:
        return pa.array([json.dumps(v) for v in values], pa.string())
    if len(kinds) > 1:  # mixed parameter values such as 8MiB and 8388608
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.array(values)


def comparable(table: pa.Table) -> list[dict[str, Any]]:
    """The table without its wall-clock columns, as rows (NaN compared as equal)."""
    keep = [c for c in table.column_names if c not in WALL_CLOCK]
    rows = table.select(keep).to_pylist()
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
             for k, v in r.items()} for r in rows]
