"""``epcsim convert``: a trace from one format (and compression) to another.

The reader streams the input as every trace reader does; the writer needs the whole trace
before it writes a record (oracleGeneral and lcs store each request's next access), so the
requests are held in memory as they are read: 13 bytes a request (id, tenant, write flag).
The output appears whole or not at all (written beside, then renamed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import numpy as np

from epcsim.workload.traces import (
    FORMATS,
    TraceError,
    compressed_as,
    format_by_name,
    open_trace,
    write_trace,
)

Progress = Callable[[str, int, "int | None"], None]


class ConvertError(ValueError):
    """A conversion that cannot be done; one line naming the file."""


def convert_trace(source: str | os.PathLike[str], target: str | os.PathLike[str],
                  from_fmt: str | None = None, to_fmt: str | None = None, *,
                  columns: dict[str, int | str] | None = None,
                  progress: Progress | None = None) -> dict[str, object]:
    """Convert ``source`` into ``target``; returns what was done (formats, requests)."""
    source, target = os.fspath(source), os.fspath(target)
    to_fmt = to_fmt or format_by_name(target)
    if to_fmt is None:
        raise ConvertError(f"the output's name says no format (end it in .oracleGeneral, "
                           f".lcs, .csv or .npy, then .zst or .gz) or give --to ({target})")
    if to_fmt not in FORMATS:
        raise ConvertError(f"unknown format {to_fmt!r} (known: {', '.join(FORMATS)}) "
                           f"({target})")
    with contextlib.suppress(OSError):
        if os.path.samefile(source, target):
            raise ConvertError(f"the output is the input ({target})")
    try:
        reader = open_trace(source, from_fmt, columns=columns)
        total = reader.count()
        objs, tenants, writes = [], [], []
        done = 0
        for ch in reader:
            objs.append(ch.obj)
            tenants.append(ch.tenant.copy())
            writes.append(ch.write.copy())
            done += ch.obj.shape[0]
            if progress:
                progress("read", done, total)
    except TraceError as e:
        raise ConvertError(str(e)) from None
    obj = np.concatenate(objs)
    tenant = np.concatenate(tenants)
    write = np.concatenate(writes)
    if progress:
        progress("write", 0, None)
    tmp = f"{target}.{os.getpid()}.tmp{_suffix(target)}"
    try:
        write_trace(tmp, to_fmt, obj, tenant=tenant, write=write)
        os.replace(tmp, target)
    except ValueError as e:
        raise ConvertError(f"{e} ({target})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if progress:
        progress("write", done, done)
    return {"input": source, "from": reader.fmt, "output": target, "to": to_fmt,
            "compression": compressed_as(target) or "none", "requests": done,
            "tenants": int(np.unique(tenant).size), "writes": int(write.sum())}


def _suffix(target: str) -> str:
    """The compression suffix the temporary file keeps, so it is written as the target."""
    kind = compressed_as(target)
    return {"zstd": ".zst", "gzip": ".gz"}.get(kind or "", "")
