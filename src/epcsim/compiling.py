"""Compiling ahead of time, and saying so when a command is about to compile.

epcsim's rules are compiled by numba the first time a machine needs them and kept in the
user's cache (:mod:`epcsim.jitcache`). A first compile takes tens of seconds; a command
that is about to spend them says so on stderr first, once (:func:`announced`), and
``epcsim compile`` does it ahead, a unit of work per process (:func:`compile_units`).

A *unit* is a small run that calls what a kind of command calls: the demo's machine (the
kernel's fault and reclaim paths, a VM, the miss-ratio curve), the replay engines, the
EPC cgroups, content mode and the selftests. Units that share code compile it twice when
they run side by side; the cache keeps one copy.
"""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from epcsim.jitcache import cache_dir


@dataclass(frozen=True)
class Unit:
    name: str
    what: str          # what is compiled, for the line on stderr and the progress bar
    seconds: int       # about how long a first compile takes on two cores (measured)
    default: bool      # compiled by ``epcsim compile`` without ``--all``


UNITS = {u.name: u for u in (
    Unit("demo", "the kernel's fault and reclaim paths, a VM and the demo's report data",
         40, True),
    Unit("replay", "the replay engines (sgx, and lru/fifo/clock)", 20, True),
    Unit("cgroups", "the EPC cgroup's charge and reclaim paths", 40, False),
    Unit("content", "content mode (sealed pages) and the selftests", 60, False),
    Unit("programs", "the workload programs (B-tree, hash join, graphs, ...)", 20, False),
)}

# What the commands compile on a first run, for the line they print.
COMMAND_UNITS = {"demo": "demo", "replay": "replay", "run": "demo", "selftest": "content",
                 "sweep": "demo", "trace": "programs"}


# ----------------------------------------------------------------------------- timings

def _timings_path() -> str:
    return os.path.join(cache_dir(), "compile-times.json")


def _timings() -> dict[str, float]:
    try:
        with open(_timings_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


def _record(name: str, seconds: float) -> None:
    """Keep how long ``name`` took to compile here, for the next estimate."""
    times = _timings()
    times[name] = round(seconds, 1)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        tmp = f"{_timings_path()}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(times, f)
        os.replace(tmp, _timings_path())
    except OSError:
        pass


def estimate(unit: str) -> float:
    """About how many seconds a first compile of ``unit`` takes: as it took here last
    time, else as measured on two cores."""
    return _timings().get(unit, float(UNITS[unit].seconds))


# ----------------------------------------------------------------------------- the line

@contextmanager
def announced(unit: str, stream: Any = None, side: str = "") -> Iterator[None]:
    """Within: print one line on stderr when the first compile starts (none if everything
    is in the cache), and keep how long the compiles took. The first compile also starts
    the side process (:func:`start_side`; ``side`` is its argument, a replay's policy).

    The line goes to stderr, so ``--json`` output on stdout stays one object.
    """
    from numba.core import event

    out = stream if stream is not None else sys.stderr
    said = False
    proc: Any = None

    class Listener(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: Any) -> None:
            nonlocal said, proc
            if not said:
                said = True
                u = UNITS[unit]
                print(f"epcsim: compiling {u.what} for this machine, about "
                      f"{_rounded(estimate(unit))} (once: kept in {cache_dir()})",
                      file=out, flush=True)
                proc = start_side(unit, side)

        def on_end(self, ev: Any) -> None:
            pass

    t0 = time.perf_counter()
    try:
        with event.install_listener("numba:compile", Listener()):
            yield
    finally:
        stop_side(proc)
    if said:
        # The whole block's time: a first compile also loads and links what it finds.
        _record(unit, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- the side

# A first compile runs a second process beside the command (on two cores or more), the
# side, which compiles into the same cache what the command will need late; the cache's
# locks (epcsim.jitcache) make each rule compile once: the command loads what the side
# saved, or waits for the rule the side is compiling.
#
# For a replay and the demo the side compiles the fault path's leaves and then the replay
# engine (``replay.compile_ahead``; the demo's, of a host shared with a VM) while the
# command boots its kernel and compiles the boot and reclaim paths. On two cores the first
# replay's compile took 32-33 s alone and 21-22 s with it, and a cold demo 79-87 s alone
# and 55-67 s with it (alternated runs, BENCHMARKS.md "Compile time: a side process"). On
# by default; EPCSIM_SIDE_COMPILE=0 turns it off.
#
# The other units' side compiles the reclaim path (ksgxd, the reclaim batch, the owners'
# operations) while the command compiles the fault path. It gained nothing measurable for
# a replay (the fault path reaches the reclaim path early and then waits for it), so for
# them it runs only with EPCSIM_SIDE_COMPILE=1, as an option to try splits with.
SIDES = {"replay": (False,), "demo": (True, False), "content": (False,), "cgroups": (False,)}
ON_BY_DEFAULT = ("replay", "demo")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


def start_side(unit: str, arg: str = "") -> Any:
    """The side process of ``unit``'s first compile, or None. ``arg``: the replay's
    policy."""
    import subprocess

    from numba.core import config

    wanted = os.environ.get("EPCSIM_SIDE_COMPILE", "1" if unit in ON_BY_DEFAULT else "0")
    if wanted != "1" or unit not in SIDES or cores() < 2 or config.DISABLE_JIT:
        return None
    env = dict(os.environ, EPCSIM_SIDE_COMPILE="0")
    code = f"from epcsim.compiling import side_work; side_work({unit!r}, {arg!r})"
    try:
        return subprocess.Popen([sys.executable, "-c", code], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return None


def side_work(unit: str, arg: str = "") -> None:
    """The side's work for ``unit``."""
    if unit == "replay":
        from epcsim.sim.replay import POLICIES, compile_ahead

        compile_ahead(arg if arg in POLICIES else "sgx")
    elif unit == "demo":
        from epcsim.sim.replay import compile_ahead

        compile_ahead("sgx", kvm=True)   # the demo's host is shared with a VM
    else:
        compile_reclaim_path(unit)


def stop_side(side: Any) -> None:
    """The command is done: what it needed is compiled. The side's unfinished work is not
    needed now (what it saved stays in the cache; a lock it held is stale once it ends)."""
    if side is None or side.poll() is not None:
        return
    side.terminate()
    try:
        side.wait(timeout=5)
    except Exception:
        side.kill()


def compile_reclaim_path(unit: str) -> None:
    """The side's work: the reclaim path of each kernel ``unit`` runs (KVM owner or not)."""
    from epcsim.hw.cpu import Processor
    from epcsim.kernel.instance import Kernel

    for kvm in SIDES[unit]:
        Kernel(Processor(epc_size=64 * 4096, n_lps=2), kvm=kvm).mgr.run_ksgxd()


def _rounded(seconds: float) -> str:
    if seconds < 90:
        return f"{max(5, round(seconds / 5.0) * 5)} s"
    return f"{seconds / 60:.0f} min"


# ----------------------------------------------------------------------------- the units

def _scenario(text: str) -> Any:
    from epcsim.workload.scenario import validate

    return validate(tomllib.loads(text), "compile unit")


def _run(text: str) -> None:
    from pathlib import Path

    from epcsim.sim.runner import run_scenario

    run_scenario(_scenario(text), Path("."))


def _unit_demo() -> None:
    """The demo's scenario, a few thousand requests of it."""
    from pathlib import Path

    from epcsim.scenarios import packaged
    from epcsim.sim.runner import run_scenario
    from epcsim.workload.scenario import validate

    with open(packaged("demo.toml"), "rb") as f:
        data = tomllib.load(f)
    data["run"]["requests"] = 4000
    data["virt"]["requests"] = 200
    run_scenario(validate(data, "compile unit"), Path("."))


def _unit_replay() -> None:
    from epcsim.sim.replay import ReplayConfig, warm_up

    warm_up(ReplayConfig(policy="sgx"))
    warm_up(ReplayConfig(policy="lru"))


_CGROUPS = """
[platform]
preset = "client-sgx1"
[cluster]
node_epc = "2MiB"
nodes = 1
[run]
requests = 3000
[[pods]]
name = "a"
epc_request = "512KiB"
epc_limit = "512KiB"
size = "1MiB"
workload = "uniform"
"""


def _unit_cgroups() -> None:
    _run(_CGROUPS)
    from epcsim.selftest import run_suite

    run_suite("cgroup", epc_size=1 << 20, names=["small_limit"])


def _unit_content() -> None:
    from epcsim.selftest import run_suite, suites

    for suite in suites():
        run_suite(suite, epc_size=1 << 20, names=list(suites()[suite])[:3])


def _unit_programs() -> None:
    from epcsim.workload.programs import PROGRAMS, generate

    for name in PROGRAMS:
        generate(name, 1 << 20, accesses=1000)


_RUNNERS: dict[str, Callable[[], None]] = {
    "demo": _unit_demo, "replay": _unit_replay, "cgroups": _unit_cgroups,
    "content": _unit_content, "programs": _unit_programs,
}


def run_unit(name: str) -> float:
    """Compile ``name`` in this process; the seconds it took."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as quiet, announced(name, stream=quiet):
        _RUNNERS[name]()
    return time.perf_counter() - t0


def compile_units(names: list[str], workers: int,
                  done: Callable[[str, float], None] | None = None) -> dict[str, float]:
    """Compile the units ``names``, ``workers`` at a time, each in a process of its own
    (spawned: numba compiles under one lock per process). ``done(name, seconds)`` is told
    as each finishes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out: dict[str, float] = {}
    if workers <= 1 or len(names) <= 1:
        for n in names:
            out[n] = run_unit(n)
            if done:
                done(n, out[n])
        return out
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(names)), mp_context=ctx) as pool:
        futures = {pool.submit(run_unit, n): n for n in names}
        for fut in as_completed(futures):
            n = futures[fut]
            out[n] = fut.result()
            if done:
                done(n, out[n])
    return out
