"""epcsim from Python: ``epcsim.replay``, ``epcsim.run`` and ``epcsim.load``.

Each returns a :class:`Result`, the same whichever made it: ``summary`` (the object
``--json`` prints), ``tables`` (Arrow tables by name, the Parquet files ``--out`` writes),
``to_pandas(name)`` and ``save(dir)``. Bad input raises the errors the command line turns
into its one line (``ScenarioError``, ``TraceError``; all ``ValueError``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from epcsim.provenance import stamp, stamped_table

Progress = Callable[[int], None]


@dataclass
class Result:
    """A run's results: ``summary`` (JSON-ready), ``tables`` (Arrow tables by name) and,
    for a scenario, ``scenario`` (as validated, every default filled in)."""

    summary: dict[str, Any]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    scenario: dict[str, Any] | None = None

    def to_pandas(self, name: str) -> Any:
        """The table ``name`` as a pandas DataFrame (pandas must be installed)."""
        return self.table(name).to_pandas()

    def table(self, name: str) -> pa.Table:
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; this result has "
                           f"{', '.join(sorted(self.tables)) or 'none'}")
        return self.tables[name]

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``summary.json``, every table as ``<name>.parquet`` (its schema metadata
        carrying the version and digest) and ``scenario.resolved.json``, as ``--out``
        does; returns the directory."""
        from epcsim.files import check_out, staged

        out = check_out(out_dir)
        # Written whole beside ``out`` and renamed into place: never half a result.
        with staged(out, "run" if self.scenario is not None else "replay") as d:
            (d / "summary.json").write_text(json.dumps(self.summary, indent=2))
            for name, table in self.tables.items():
                pq.write_table(stamped_table(table, self.summary), d / f"{name}.parquet")
            if self.scenario is not None:
                (d / "scenario.resolved.json").write_text(json.dumps(self.scenario, indent=2))
        return out

    def __repr__(self) -> str:
        keys = ("scenario", "platform", "requests", "faults", "slowdown")
        shown = ", ".join(f"{k}={self.summary[k]!r}" for k in keys if k in self.summary)
        return f"Result({shown}; tables: {', '.join(self.tables)})"


def replay(trace: str | os.PathLike[str], *, format: str | None = None,  # noqa: A002
           epc_pages: int, policy: str = "sgx", platform: str = "client-sgx1",
           columns: dict[str, int | str] | None = None, ksgxd: str = "clock",
           progress: Progress | None = None, tlb_entries: int | None = None,
           tlb_ways: int | None = None, fault_log: int | None = None) -> Result:
    """Replay a page-access trace (any format, plain or compressed; ``format`` None: what
    its name and bytes say) on an EPC of ``epc_pages`` 4 KiB pages, as ``epcsim replay``.

    ``policy``: ``"sgx"`` (the kernel model) or ``"lru"``, ``"fifo"``, ``"clock"``;
    ``platform``: the cost model's preset; ``ksgxd``: ``"clock"`` (the pages ksgxd frees
    are free when its own clock passes them) or ``"instant"`` (at once, for comparison).
    ``tlb_entries`` and ``tlb_ways`` resize the preset's TLB of each CPU (0 entries: none,
    every access marks its page accessed).
    ``fault_log``: how many faults the ``faults`` table keeps, the first ones (None: one per
    16 EPC pages, at least 65 536 and at most 1 048 576).
    ``progress(n)`` is told of each ``n`` requests.
    """
    from epcsim.sim import costs
    from epcsim.sim.metrics import replay_tables
    from epcsim.sim.replay import ReplayConfig, replay_chunks
    from epcsim.workload.traces import open_trace

    path = os.fspath(trace)
    plat = costs.with_tlb(costs.preset(platform), tlb_entries, tlb_ways)
    fmt = open_trace(path, format, columns=columns).fmt
    if ksgxd not in ("clock", "instant"):
        raise ValueError(f"ksgxd must be 'clock' or 'instant' (got {ksgxd!r})")
    cfg = ReplayConfig(policy=policy, epc_pages=int(epc_pages), platform=plat, ksgxd=ksgxd,
                       fault_log=fault_log)
    res = replay_chunks(cfg, lambda: open_trace(path, fmt, columns=columns),
                        progress=progress)
    inputs = {"trace": os.path.abspath(path), "bytes": os.path.getsize(path), "format": fmt,
              "columns": columns, "epc_pages": int(epc_pages), "policy": policy,
              "platform": platform, "ksgxd": ksgxd, "tlb_entries": plat.tlb_entries,
              "tlb_ways": plat.tlb_ways, "fault_log": fault_log}
    stamp(res.summary, inputs)
    return Result(res.summary, replay_tables(res, plat.ghz))


def run(scenario: str | os.PathLike[str] | dict[str, Any], *,
        base_dir: str | os.PathLike[str] | None = None,
        progress: Progress | None = None) -> Result:
    """Run a scenario, as ``epcsim run``: a path to a TOML (or ``scenario.resolved.json``)
    file, TOML text, or a dict of the same keys.

    Traces the scenario names are found beside its file, or under ``base_dir`` (default:
    the working directory) for text and dicts.
    """
    import tomllib

    from epcsim.sim.runner import run_scenario, with_absolute_traces
    from epcsim.workload.scenario import ScenarioError, load, validate

    name = "scenario"
    if isinstance(scenario, dict):
        sc = validate(scenario)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    elif isinstance(scenario, os.PathLike) or (
            isinstance(scenario, str) and "\n" not in scenario and "=" not in scenario):
        sc = load(scenario)
        name = os.fspath(scenario)
        base = Path(base_dir) if base_dir is not None else Path(scenario).resolve().parent
    elif isinstance(scenario, str):
        try:
            data = tomllib.loads(scenario)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"not valid TOML: {e} (scenario text)") from None
        sc = validate(data, "scenario text")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        raise TypeError(f"a scenario is a path, TOML text or a dict, not "
                        f"{type(scenario).__name__}")
    out = run_scenario(sc, base, progress=progress, scenario_name=name)
    resolved = with_absolute_traces(sc, base).model_dump(mode="json")
    return Result(out.summary, out.tables, resolved)


def load(results_dir: str | os.PathLike[str]) -> Result:
    """A results directory (``--out`` of a run, a replay, a sweep, or ``Result.save``)."""
    from epcsim.report.results import load_results

    res = load_results(results_dir)
    tables = dict(res.tables)
    if res.sweep is not None:
        tables["sweep"] = res.sweep
    scenario = None
    resolved = Path(results_dir) / "scenario.resolved.json"
    if resolved.exists():
        scenario = json.loads(resolved.read_text())
    return Result(res.summary, tables, scenario)


__all__ = ["Result", "load", "replay", "run"]
