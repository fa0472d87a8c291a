"""The import directions docs/architecture.md describes."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "epcsim"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_hw_imports_nothing_of_kernel_sim_or_workload() -> None:
    for f in (SRC / "hw").glob("*.py"):
        bad = {m for m in imports(f)
               if m.startswith(("epcsim.kernel", "epcsim.sim", "epcsim.workload"))}
        assert not bad, f"{f.name} imports {bad}"


def test_manager_imports_no_owner() -> None:
    mods = imports(SRC / "kernel" / "main.py") | imports(SRC / "kernel" / "owner.py")
    owners = {"epcsim.kernel.encl", "epcsim.kernel.virt", "epcsim.kernel.cgroup",
              "epcsim.kernel.ioctl", "epcsim.kernel.instance"}
    assert not mods & owners, mods & owners


def test_report_and_sweep_read_results_not_live_state() -> None:
    # report/ draws from files alone; sweep/ runs points through sim.runner (run_scenario)
    # and never reaches the processor, the kernel or the engine's state.
    for f in (SRC / "report").glob("*.py"):
        bad = {m for m in imports(f)
               if m.startswith(("epcsim.hw", "epcsim.kernel", "epcsim.sim", "epcsim.workload",
                                "epcsim.sweep"))}
        assert not bad, f"report/{f.name} imports {bad}"
    allowed = {"epcsim.sim.runner", "epcsim.sim.replay", "epcsim.workload.scenario",
               "epcsim.workload.traces"}
    for f in (SRC / "sweep").glob("*.py"):
        bad = {m for m in imports(f) if m.startswith(("epcsim.hw", "epcsim.kernel"))
               or (m.startswith(("epcsim.sim", "epcsim.workload")) and m not in allowed)}
        assert not bad, f"sweep/{f.name} imports {bad}"


def test_backing_store_knows_no_owner() -> None:
    """The backing store serves any owner (driver, virtual EPC): it imports none of them."""
    mods = imports(SRC / "kernel" / "backing.py")
    owners = {"epcsim.kernel.encl", "epcsim.kernel.virt", "epcsim.kernel.ioctl",
              "epcsim.kernel.instance", "epcsim.kernel.main"}
    assert not mods & owners, mods & owners


def test_cgroup_imports_no_owner() -> None:
    """The EPC cgroup charges pages of any owner: it knows the manager, not the driver."""
    mods = imports(SRC / "kernel" / "cgroup.py")
    assert not mods & {"epcsim.kernel.encl", "epcsim.kernel.virt", "epcsim.kernel.ioctl",
                       "epcsim.kernel.instance"}, mods


def test_virt_and_driver_owners_do_not_import_each_other() -> None:
    assert "epcsim.kernel.encl" not in imports(SRC / "kernel" / "virt.py")
    assert "epcsim.kernel.ioctl" not in imports(SRC / "kernel" / "virt.py")
    assert "epcsim.kernel.virt" not in imports(SRC / "kernel" / "encl.py")
    assert "epcsim.kernel.virt" not in imports(SRC / "kernel" / "ioctl.py")


def test_guest_kernel_code_knows_nothing_of_virtualization() -> None:
    # A guest runs the same manager and driver; only the processor view differs.
    for name in ("main.py", "owner.py", "encl.py", "ioctl.py", "mm.py", "vdso.py"):
        mods = imports(SRC / "kernel" / name)
        assert not {m for m in mods if m in ("epcsim.hw.vmx", "epcsim.kernel.virt",
                                             "epcsim.sim.vm")}, name
