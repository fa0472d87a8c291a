"""Every workload by name: the programs (``programs.py``) and the distributions
(``generators.py``), their parameters, and their traces written to a file.

``epcsim workloads`` lists :func:`catalog`; ``epcsim trace`` calls :func:`make_trace` and
:func:`write_trace`. A distribution's trace has reads only and one thread; a program's has
its stores as writes and its threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from epcsim.workload import generators as G
from epcsim.workload.programs import (
    COMMON,
    PROGRAMS,
    Param,
    ProgramError,
    check_params,
)
from epcsim.workload.traces import FORMATS, _sink, write_lcs, write_oracle_general

__all__ = ["DISTRIBUTIONS", "catalog", "format_for", "make_trace", "write_trace"]

_ACCESSES = COMMON[0]

DISTRIBUTIONS: dict[str, tuple[str, tuple[Param, ...]]] = {
    "scan": ("pages 0, 1, ..., n-1 over and over", (_ACCESSES,)),
    "uniform": ("each access a uniform draw over the pages", (_ACCESSES,)),
    "zipf": ("bounded Zipf over the pages, the hot pages scattered",
             (_ACCESSES, Param("alpha", float, 1.0, 1e-9, 100.0, "Zipf exponent"))),
    "phases": ("phases, each uniform over its own window of pages",
               (_ACCESSES, Param("phases", int, 4, 1, 1 << 20, "number of phases"),
                Param("working_set", int, 0, 0, 1 << 42, "bytes of each window "
                      "(0: a quarter of the size)"))),
}

# file suffixes that name a format (``--format`` wins over them)
SUFFIXES = {".oraclegeneral": "oracleGeneral", ".og": "oracleGeneral", ".lcs": "lcs",
            ".csv": "csv", ".npy": "npy"}


def catalog() -> list[dict[str, Any]]:
    """Each workload: name, kind (program or distribution), summary and parameters."""
    out = [{"kind": "program", **p.as_dict()} for p in PROGRAMS.values()]
    for name, (summary, params) in DISTRIBUTIONS.items():
        out.append({"name": name, "kind": "distribution", "summary": summary,
                    "serves": True, "params": [q.as_dict() for q in params]})
    return out


def format_for(path: str, fmt: str | None) -> str:
    """The trace format: ``fmt`` if given, else the one the file's suffix names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ProgramError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".zst", ".zstd", ".gz"):
        # compressed as the name says (the trace writers): the format is the name's before
        suffix = Path(path).with_suffix("").suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if suffix in (".xz", ".bz2"):
        raise ProgramError(f"--out: {suffix} traces cannot be written; compress with .zst "
                           f"or .gz")
    raise ProgramError(f"--format: not given, and the suffix of {path!r} names no format "
                       f"(.oracleGeneral, .lcs, .csv, .npy)")


def make_trace(name: str, size: Any, seed: int, params: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(page, write, thread, info) of workload ``name``; ProgramError names a bad
    parameter."""
    from epcsim.workload.programs import generate

    if name in PROGRAMS:
        tr = generate(name, size, seed=seed, **params)
        info = {k: v for k, v in tr.info.items() if not isinstance(v, np.ndarray)}
        info.update(footprint_pages=tr.footprint_pages, complete=tr.complete,
                    regions=[{"name": r[0], "first_page": r[1], "pages": r[2]}
                             for r in tr.regions])
        return tr.page, tr.write, tr.thread, info
    if name not in DISTRIBUTIONS:
        raise ProgramError(f"workload: no workload {name!r} (one of "
                           f"{', '.join(list(PROGRAMS) + list(DISTRIBUTIONS))})")
    # the size check and parsing are the programs' (one rule for every workload)
    _, nbytes, _ = check_params("sort", size, {})
    known = {q.name: q for q in DISTRIBUTIONS[name][1]}
    p: dict[str, Any] = {}
    for key, value in params.items():
        if key not in known:
            raise ProgramError(f"{key}: {name} has no parameter {key!r} (it takes "
                               f"{', '.join(known)})")
        p[key] = known[key].parse(value)
    for q in known.values():
        p.setdefault(q.name, q.default)
    pages = nbytes // 4096
    n = p["accesses"]
    if name == "scan":
        page = G.sequential_scan(pages, n, seed=seed)
    elif name == "uniform":
        page = G.uniform(pages, n, seed=seed)
    elif name == "zipf":
        page = G.zipf(pages, n, alpha=p["alpha"], seed=seed)
    else:
        ws = p["working_set"] // 4096 if p["working_set"] else max(1, pages // 4)
        if not 1 <= ws <= pages:
            raise ProgramError(f"working_set: from one page to the size, got "
                               f"{p['working_set']} bytes")
        try:
            page = G.working_set_phases(pages, n, phases=p["phases"], working_set=ws,
                                        seed=seed)
        except ValueError as e:
            raise ProgramError(f"phases: {e}") from None
    page = page.astype(np.int64)
    return page, np.zeros(n, np.bool_), np.zeros(n, np.int32), {"footprint_pages": pages}


def write_trace(path: str, fmt: str, page: np.ndarray, write: np.ndarray,
                thread: np.ndarray) -> None:
    """Write a trace in ``fmt`` through the trace writers. oracleGeneral keeps the pages
    only; lcs (version 2) the pages and writes; csv and npy the threads as well (a
    ``thread`` column or field, which the readers pass over)."""
    if fmt == "oracleGeneral":
        write_oracle_general(path, page)
    elif fmt == "lcs":
        write_lcs(path, page, version=2, write=write)
    elif fmt == "npy":
        rec = np.zeros(len(page), dtype=[("obj", "<u8"), ("write", "?"), ("thread", "<u4")])
        rec["obj"], rec["write"], rec["thread"] = page, write, thread
        with _sink(path) as f:         # to a file object: np.save adds no suffix
            np.save(f, rec)
    elif fmt == "csv":
        ops = np.where(write, "write", "read")
        with _sink(path) as f:
            f.write(b"obj,op,thread\n")
            step = 1 << 16
            for lo in range(0, len(page), step):
                rows = zip(page[lo:lo + step].tolist(), ops[lo:lo + step].tolist(),
                           thread[lo:lo + step].tolist(), strict=True)
                f.write("".join(f"{a},{b},{c}\n" for a, b, c in rows).encode())
    else:
        raise ProgramError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")
