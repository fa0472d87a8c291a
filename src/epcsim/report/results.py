"""A results directory as ``epcsim run --out`` (and the demo and sweeps) write it."""

from __future__ import annotations

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
    """Read a run's directory, a sweep's directory, or a run's with a ``sweep/`` beside it.

    Only a complete result (:mod:`epcsim.files`: ``results.json`` and every file it lists)
    is read; anything else is refused, naming what is missing.
    """
    from epcsim.files import INDEX, MAX_SUMMARY, InputError, missing, parse, read_text

    p = Path(path)
    if not p.is_dir():
        raise ResultsError(f"no such results directory ({p})")
    lacking = missing(p)
    if lacking == [INDEX]:
        raise ResultsError(f"not a complete result: {INDEX} is missing (a command stopped "
                           f"before it finished, or not a directory epcsim wrote) ({p})")
    if lacking:
        shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more"
                                          if len(lacking) > 3 else "")
        raise ResultsError(f"not a complete result: missing {shown} ({p})")
    res = Results(p)
    summary = p / "summary.json"
    if summary.exists():
        try:
            doc = parse(read_text(summary, "summary.json", MAX_SUMMARY), summary,
                        "summary.json", as_json=True)
        except InputError as e:
            raise ResultsError(f"summary.json: {e}") from None
        if not isinstance(doc, dict):
            kind = {list: "a list", str: "a string", bool: "a boolean", int: "a number",
                    float: "a number"}.get(type(doc), "null")
            raise ResultsError(f"summary.json holds {kind}, not an object ({summary})")
        res.summary = doc
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
    from epcsim.files import InputError, check_file

    try:
        check_file(f, "table")
    except InputError as e:
        raise ResultsError(str(e)) from None
    try:
        return pq.read_table(f)
    except (pa.ArrowException, OSError) as e:
        raise ResultsError(f"not a Parquet table: {e} ({f})") from None
