"""Shared helpers for the replay tests: in-process CLI runs and trace files.

Compiling the replay engines is expensive (about a minute for ``sgx``), so every run here
stays in the test process: the CLI through :func:`epcsim.cli.main`, the library through
:func:`epcsim.sim.replay.replay_chunks`.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from epcsim.cli import main
from epcsim.sim import replay as R
from epcsim.workload.traces import open_trace

# Summary fields that measure the host, not the simulation.
TIMING_KEYS = frozenset({"wall_s", "requests_per_s", "compile_s", "setup_s", "replay_s"})

# The keys the replay summary must carry.
SUMMARY_KEYS = ("policy", "epc_pages", "requests", "faults", "miss_ratio", "ewb", "eldu",
                "etrack", "ipi", "virtual_time_s", "slowdown", "wall_s", "requests_per_s")


def run_cli(*args: str) -> tuple[int, str, str]:
    """``epcsim ARGS`` in this process; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def without_compile_line(err: str) -> str:
    """stderr without the line a command prints before it compiles (on a cold cache)."""
    return "".join(line for line in err.splitlines(keepends=True)
                   if not line.startswith("epcsim: compiling "))


def replay_json(path: str | Path, fmt: str, epc_pages: int, policy: str = "sgx",
                *extra: str) -> dict[str, Any]:
    """The ``--json`` summary of ``epcsim replay``; fails on a non-zero status."""
    rc, out, err = run_cli("replay", str(path), "--format", fmt, "--epc-pages",
                           str(epc_pages), "--policy", policy, "--json", *extra)
    assert rc == 0, f"epcsim replay exited with {rc}: {err}"
    assert without_compile_line(err) == "", err
    return json.loads(out)


def factory(path: str | Path, fmt: str, **kw: Any):  # type: ignore[no-untyped-def]
    """A reader factory for :func:`replay_chunks`."""
    return lambda: open_trace(path, fmt, **kw)


@contextlib.contextmanager
def captured_replays() -> Iterator[list[R.Replay]]:
    """Record every :class:`Replay` that ``replay_chunks`` builds (the last one is the run's;
    a first-time warm-up builds a tiny one before it)."""
    made: list[R.Replay] = []
    original = R.Replay

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            made.append(self)

    R.Replay = Recording  # type: ignore[misc]
    try:
        yield made
    finally:
        R.Replay = original  # type: ignore[misc]


# Where a result came from (the command stamps them, the engine does not; a CSV and an lcs
# file of the same requests are two inputs): not part of what the replay computed.
PROVENANCE_KEYS = frozenset({"epcsim_version", "scenario_digest"})


def without_timing(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's simulated results: no host timing, no provenance stamp."""
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS | PROVENANCE_KEYS}


def interleave(parts: list[tuple[np.ndarray, int]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-tenant page traces into one (object ids, tenant ids) trace at random
    positions, each tenant keeping its own order."""
    tenants = np.concatenate([np.full(len(a), t, dtype=np.int64) for a, t in parts])
    rng = np.random.default_rng(seed)
    rng.shuffle(tenants)
    obj = np.empty(len(tenants), dtype=np.uint64)
    for a, t in parts:
        obj[tenants == t] = a
    return obj, tenants
