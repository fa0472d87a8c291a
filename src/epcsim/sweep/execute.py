"""Run a sweep's points: in this process, on local worker processes, or on a Dask cluster.

Each point runs ``epcsim run``'s own entry point (``sim.runner.run_scenario``) and comes
back as one row; the parent keeps every finished row as a file (``points``) the moment it
arrives, then gathers all rows into ``sweep.parquet``. Whatever computes a point, the row
is the same: a run is deterministic, so ``--workers 1``, ``--workers N`` and
``--scheduler`` give one table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from epcsim.files import write_index
from epcsim.provenance import DIGEST_KEY, VERSION_KEY, digest, version
from epcsim.sweep import points as P
from epcsim.sweep.spec import SweepSpec

TABLE = "sweep.parquet"


@dataclass
class SweepOutcome:
    """What a sweep did: rows computed now, rows found finished, and the gathered table.

    ``outdated`` of the computed rows had been finished by another epcsim version
    (``versions``: which, and how many each) and were computed again.
    """

    computed: int
    reused: int
    table_path: Path
    outdated: int = 0
    versions: dict[str, int] | None = None


def compute_point(index: int, params: dict[str, Any], scenario: dict[str, Any],
                  base_dir: str) -> dict[str, Any]:
    """Run one point and return its row (importable by worker processes and Dask workers).

    A point the machine cannot run (e.g. every page pinned) is a row with ``error`` set,
    so one bad corner of a grid does not lose the others.
    """
    from epcsim.sim.replay import ReplayError
    from epcsim.sim.runner import run_scenario
    from epcsim.workload.scenario import validate
    from epcsim.workload.traces import TraceError

    sc = validate(scenario, f"point {index}")
    try:
        out = run_scenario(sc, Path(base_dir), scenario_name=f"point {index}")
    except (ReplayError, TraceError, ValueError) as e:
        return {**P.row_for(index, params, {}), "error": str(e),
                VERSION_KEY: version()}
    return P.row_for(index, params, out.summary)


def compile_shape(scenario: dict[str, Any]) -> tuple[Any, ...]:
    """What decides which compiled engines a point needs: the policy, content mode, the
    presence of cgroups, VMs (and their modes) and pods. Sizes, seeds and counts do not."""
    run = scenario.get("run", {}) or {}
    vms = scenario.get("vms", []) or []
    virt = scenario.get("virt", {}) or {}
    return ((scenario.get("kernel", {}) or {}).get("policy", "sgx"),
            bool(run.get("content", False)), bool(run.get("mrc", False)),
            bool(scenario.get("cgroups")) or any(e.get("cgroup") for e in
                                                 scenario.get("enclaves", []) or []),
            tuple(sorted({str(virt.get("mode") or v.get("mode", "reserved")) for v in vms})),
            bool(scenario.get("pods")) or scenario.get("cluster") is not None)


def run_sweep(spec: SweepSpec, out_dir: Path, *, workers: int = 1,
              scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> SweepOutcome:
    """Compute every point not yet on disk under ``out_dir``, then write ``sweep.parquet``.

    ``progress(done, total)`` is called as points finish (finished ones count at once).
    """
    from epcsim.files import INDEX

    check_sweep_out(out_dir)
    # Until this sweep's table and index are written, the directory is no complete result.
    (out_dir / INDEX).unlink(missing_ok=True)
    points_dir = out_dir / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "sweep.resolved.json", "w") as f:
        f.write(spec.to_json())
    todo = []
    files = []
    # A point's file is named by its scenario, not by the epcsim that ran it: a point made
    # by another version is run again, so one table never mixes two models' results.
    now = version()
    others: dict[str, int] = {}
    for index, params in enumerate(spec.points()):
        scenario = spec.scenario_for(params)
        path = P.point_file(points_dir, index, scenario)
        files.append(path)
        if path.exists():
            made_by = P.read_row(path).get(VERSION_KEY) or "unknown"
            if made_by == now:
                continue
            others[made_by] = others.get(made_by, 0) + 1
        todo.append((index, params, scenario, path))
    total = len(files)
    done = total - len(todo)
    if progress:
        progress(done, total)

    def finished(path: Path, row: dict[str, Any]) -> None:
        nonlocal done
        P.write_atomic(path, row)
        done += 1
        if progress:
            progress(done, total)

    base = str(spec.base_dir)
    computed = len(todo)
    if not scheduler and workers > 1:
        # Compile once, here, before any worker starts: one point of each shape runs in
        # this process and fills the cache the workers load from (N workers compiling the
        # same engines at once would each take the whole compile time, on shared cores).
        # Not before a Dask cluster's workers: they run elsewhere, on caches of their own.
        first = {}
        for item in todo:
            first.setdefault(compile_shape(item[2]), item)
        for index, params, scenario, path in first.values():
            finished(path, compute_point(index, params, scenario, base))
        ran = {id(item) for item in first.values()}
        todo = [item for item in todo if id(item) not in ran]
    if scheduler:
        _on_dask(scheduler, todo, base, finished)
    elif workers <= 1:
        for index, params, scenario, path in todo:
            finished(path, compute_point(index, params, scenario, base))
    else:
        _on_processes(workers, todo, base, finished)

    rows = [P.read_row(p) for p in files]
    table_path = out_dir / TABLE
    tmp = out_dir / f".{TABLE}.{os.getpid()}.tmp"
    table = P.to_table(rows, list(spec.grid))
    meta = dict(table.schema.metadata or {})
    meta.update({VERSION_KEY.encode(): now.encode(),
                 DIGEST_KEY.encode(): digest(json.loads(spec.to_json())).encode()})
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    os.replace(tmp, table_path)
    _prune(out_dir, set(files) | {spec.path.resolve()})
    write_index(out_dir, "sweep")
    return SweepOutcome(computed, total - computed, table_path, sum(others.values()), others)


# What a sweep directory holds; anything else at its top is an older sweep's plot or report.
SWEEP_FILES = ("points", TABLE, "sweep.resolved.json")


def check_sweep_out(out_dir: Path) -> None:
    """A sweep goes to a new directory (under an existing one), an empty one, or a sweep's
    own, which it resumes; never into a directory of other files."""
    from epcsim.files import INDEX, InputError, check_parent

    check_parent(out_dir, "--out")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise InputError(f"--out: exists and is not a directory ({out_dir})")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (
            (out_dir / "points").is_dir() or (out_dir / "sweep.resolved.json").is_file()
            or (out_dir / INDEX).is_file()):
        raise InputError(f"--out: {out_dir} holds files that are not an epcsim sweep; give a "
                         "new or empty directory")


def _prune(out_dir: Path, keep: set[Path]) -> None:
    """Leave only this sweep's points, table and resolved sweep: a reused directory holds
    the latest sweep's files alone (points of an older grid would never be read again)."""
    import shutil

    for f in (out_dir / "points").iterdir():
        if f not in keep:
            f.unlink(missing_ok=True)
    for f in out_dir.iterdir():
        if f.name not in SWEEP_FILES and f.resolve() not in keep:
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)


def _on_processes(workers: int, todo: list[Any], base: str,
                  finished: Callable[[Path, dict[str, Any]], None]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a fresh interpreter per worker shares no locks or threads with the
    # parent (the progress bar runs a thread), and numba loads its disk cache there.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(compute_point, i, params, sc, base): path
                   for i, params, sc, path in todo}
        for fut in as_completed(futures):
            finished(futures[fut], fut.result())


def _on_dask(address: str, todo: list[Any], base: str,
             finished: Callable[[Path, dict[str, Any]], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SweepRunError("--scheduler needs Dask: pip install 'epcsim[dask]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise SweepRunError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        futures = {}
        for i, params, sc, path in todo:
            futures[client.submit(compute_point, i, params, sc, base,
                                  key=f"epcsim-point-{path.stem}")] = path
        for fut in as_completed(list(futures)):
            finished(futures[fut], fut.result())
    finally:
        client.close()


class SweepRunError(RuntimeError):
    """The sweep could not run (no Dask, no scheduler); one line for the user."""
