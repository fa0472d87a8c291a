"""Results of a run on disk: the summary as JSON, metrics and series as Parquet.

Files written by :func:`write_results`:

``summary.json``           the ``--json`` object
``enclaves.parquet``       one row per enclave: requests, faults, EAUG, ELDU, miss ratio
``series.parquet``         fixed virtual-time steps: time (s), free pages, faults/s, EWB/s
``faults.parquet``         the OS-visible page-fault sequence: time (s), tenant, page,
                           in order (what a malicious OS observes)
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


def faults_table(faults: np.ndarray, ghz: float) -> pa.Table:
    return pa.table({"time_s": faults[:, 0] / (ghz * 1e9), "tenant": faults[:, 1],
                     "page": faults[:, 2]})


def write_results(out_dir: str, res: Any, ghz: float | None = None) -> None:
    """Write a run's results into ``out_dir`` (created if needed)."""
    os.makedirs(out_dir, exist_ok=True)
    from epcsim.sim.costs import preset

    ghz = ghz or preset(res.summary.get("platform", "client-sgx1")).ghz
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(res.summary, f, indent=2)
    pq.write_table(pa.Table.from_pylist(res.per_enclave) if res.per_enclave else
                   pa.table({"tenant": pa.array([], pa.int64())}),
                   os.path.join(out_dir, "enclaves.parquet"))
    pq.write_table(series_table(res.series, ghz), os.path.join(out_dir, "series.parquet"))
    pq.write_table(faults_table(res.faults, ghz), os.path.join(out_dir, "faults.parquet"))
