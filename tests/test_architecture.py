"""The import directions ARCHITECTURE.md promises."""

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


def test_cgroup_imports_no_owner() -> None:
    """The EPC cgroup charges pages of any owner: it knows the manager, not the driver."""
    mods = imports(SRC / "kernel" / "cgroup.py")
    assert not mods & {"epcsim.kernel.encl", "epcsim.kernel.virt", "epcsim.kernel.ioctl",
                       "epcsim.kernel.instance"}, mods
