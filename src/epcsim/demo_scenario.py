"""``epcsim demo``: the packaged demo scenario, its results and its report.

The walk of one enclave through its leaves stays in :mod:`epcsim.demo` (``--walk``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from epcsim.scenarios import packaged
from epcsim.sim.runner import RunOutput, run_scenario, total_requests, write_run
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
    from epcsim.report.write import write_report
    from epcsim.sweep.execute import run_sweep
    from epcsim.sweep.spec import load_sweep

    write_run(str(out_dir), out, sc)
    run_sweep(load_sweep(packaged(DEMO_SWEEP)), out_dir / "sweep", progress=sweep_progress)
    return write_report(out_dir)
