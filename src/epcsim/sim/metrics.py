"""Results of a run on disk: the summary as JSON, metrics and series as Parquet.

Files written by :func:`write_results`:

``summary.json``           the ``--json`` object
``enclaves.parquet``       one row per enclave: requests, faults, EAUG, ELDU, miss ratio
``series.parquet``         fixed virtual-time steps: time (s), free pages, faults/s, EWB/s
``faults.parquet``         the OS-visible page-fault sequence: time (s), tenant, page,
                           in order (what a malicious OS observes)
``enclave_series.parquet`` at the series' times: EPC pages each enclave holds (its resident
                           pages and its SECS; one row per sample and enclave, the first
                           64 enclaves of a trace)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def series_table(series: np.ndarray, ghz: float) -> pa.Table:
    t = series[:, 0] / (ghz * 1e9)
    dt = np.diff(t, prepend=0.0)
    dt[dt == 0] = np.nan
    faults = np.diff(series[:, 2], prepend=0)
    ewb = np.diff(series[:, 3], prepend=0)
    return pa.table({"time_s": t, "free_pages": series[:, 1], "faults": series[:, 2],
                     "ewb": series[:, 3], "faults_per_s": faults / dt, "ewb_per_s": ewb / dt})


def held_table(res: Any, ghz: float, names: list[str] | None = None) -> pa.Table:
    """Per-enclave usage over time, long form: ``time_s``, ``tenant``, ``name``, ``pages``."""
    held, tenants = res.held, res.held_tenants
    n, k = held.shape
    t = np.repeat(res.series[:n, 0] / (ghz * 1e9), k)
    ten = np.tile(tenants, n)
    label = [names[int(x)] if names is not None else str(int(x)) for x in tenants]
    # The names by index into the k labels: no Python string per row (there may be 2^24).
    rows = pa.array(np.tile(np.arange(k, dtype=np.int64), n))
    return pa.table({"time_s": t, "tenant": ten,
                     "name": pa.array(label, pa.string()).take(rows),
                     "pages": held.reshape(-1).astype(np.int64)})


def faults_table(faults: np.ndarray, ghz: float) -> pa.Table:
    return pa.table({"time_s": faults[:, 0] / (ghz * 1e9), "tenant": faults[:, 1],
                     "page": faults[:, 2]})


def replay_tables(res: Any, ghz: float) -> dict[str, pa.Table]:
    """A replay's tables by name (each written as ``<name>.parquet``)."""
    return {
        "enclaves": pa.Table.from_pylist(res.per_enclave) if res.per_enclave else
        pa.table({"tenant": pa.array([], pa.int64())}),
        "series": series_table(res.series, ghz),
        "faults": faults_table(res.faults, ghz),
        "enclave_series": held_table(res, ghz),
    }


def write_results(out_dir: str, res: Any, ghz: float | None = None) -> None:
    """Write a run's results as the directory ``out_dir``, whole or not at all (a previous
    result there is replaced; its parent must exist)."""
    from epcsim.files import check_out, staged

    with staged(check_out(out_dir), "replay") as d:
        _write_results(str(d), res, ghz)


def _write_results(out_dir: str, res: Any, ghz: float | None) -> None:
    """The files of a run's result; the Parquet files carry the summary's version and
    digest when it has them (:mod:`epcsim.provenance`)."""
    from epcsim.provenance import stamped_table
    from epcsim.sim.costs import preset

    os.makedirs(out_dir, exist_ok=True)
    ghz = ghz or preset(res.summary.get("platform", "client-sgx1")).ghz
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(res.summary, f, indent=2)
    for name, table in replay_tables(res, ghz).items():
        pq.write_table(stamped_table(table, res.summary),
                       os.path.join(out_dir, f"{name}.parquet"))
