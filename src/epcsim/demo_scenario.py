"""``epcsim demo``: the packaged demo scenario, its results and its report.

The walk of one enclave through its leaves stays in :mod:`epcsim.demo` (``--walk``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from epcsim.scenarios import packaged
from epcsim.sim.runner import RunOutput, run_scenario, total_requests, write_run_files
from epcsim.workload.scenario import Scenario, load

DEMO = "demo.toml"
DEMO_SWEEP = "demo-sweep.toml"


def demo_scenario() -> Scenario:
    return load(packaged(DEMO))


def demo_requests() -> int:
    return total_requests(demo_scenario())


def run_demo(progress: Callable[[int], None] | None = None) -> tuple[Scenario, RunOutput]:
    sc = demo_scenario()
    out = run_scenario(sc, packaged(DEMO).parent, progress=progress,
                       scenario_name="epcsim demo")
    return sc, out


def write_demo(out_dir: Path, sc: Scenario, out: RunOutput, *,
               sweep_progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Results, the working-set sweep under ``sweep/``, and the report; the report's files."""
    from epcsim.compiling import cores
    from epcsim.files import check_out, staged, write_index
    from epcsim.report.write import write_report
    from epcsim.sweep.execute import run_sweep
    from epcsim.sweep.spec import load_sweep

    # One result: the run, its sweep and its report appear together or not at all.
    with staged(check_out(out_dir), "demo") as d:
        write_run_files(d, out, sc)
        # Its points are demo runs a few seconds each: one process per core.
        run_sweep(load_sweep(packaged(DEMO_SWEEP)), d / "sweep", workers=cores(),
                  progress=sweep_progress)
        write_index(d, "demo")
        files = write_report(d)
    return [out_dir / f.relative_to(d) for f in files]
