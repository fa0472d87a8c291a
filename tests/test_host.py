"""``epcsim host`` and ``platform = "host"``: this machine's SGX, read as the kernel shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import epcsim
from epcsim import host as H
from epcsim.cli import main
from epcsim.workload.scenario import ScenarioError, validate

MiB = 1 << 20


def sgx_machine(root: Path, nodes: tuple[int, ...] = (64 * MiB, 32 * MiB),
                lc: bool = True) -> Path:
    (root / "proc" / "self").mkdir(parents=True)
    flags = "fpu vme sgx" + (" sgx_lc" if lc else "") + " avx2"
    (root / "proc" / "cpuinfo").write_text(
        f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    (root / "proc" / "self" / "cgroup").write_text("0::/pods/a\n")
    for n, size in enumerate(nodes):
        d = root / "sys" / "devices" / "system" / "node" / f"node{n}" / "x86"
        d.mkdir(parents=True)
        (d / "sgx_total_bytes").write_text(f"{size}\n")
    (root / "dev").mkdir()
    (root / "dev" / "sgx_enclave").write_text("")
    (root / "dev" / "sgx_provision").write_text("")
    cg = root / "sys" / "fs" / "cgroup"
    (cg / "pods" / "a").mkdir(parents=True)
    (cg / "misc.capacity").write_text(f"sgx_epc {sum(nodes)}\n")
    (cg / "pods" / "a" / "misc.current").write_text("sgx_epc 4096\n")
    (cg / "pods" / "a" / "misc.max").write_text("sgx_epc max\n")
    return root


def test_an_sgx_machine_as_the_kernel_shows_it(tmp_path: Path) -> None:
    info = H.read_host(sgx_machine(tmp_path))
    assert info["sgx"] and info["sgx_lc"]
    assert info["devices"] == {"sgx_enclave": True, "sgx_provision": True, "sgx_vepc": False}
    assert info["epc_per_node"] == [{"node": 0, "sgx_total_bytes": 64 * MiB},
                                    {"node": 1, "sgx_total_bytes": 32 * MiB}]
    assert info["epc_bytes"] == 96 * MiB
    assert info["misc_sgx_epc"] == {"capacity": 96 * MiB, "current": 4096, "max": "max",
                                    "cgroup": "/pods/a"}
    assert "epc_sections" not in info   # no /dev/cpu/0/cpuid to read here
    plat = H.host_platform(tmp_path)
    assert (plat.name, plat.epc_bytes, plat.nodes) == ("host", 96 * MiB, 2)
    assert "96.0 MiB of EPC on 2 NUMA nodes, priced as client-sgx1" in plat.source


def test_a_machine_without_sgx(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu vme avx2\n")
    info = H.read_host(tmp_path)
    assert info["sgx"] is False and "epc_bytes" not in info and "misc_sgx_epc" not in info
    assert H.one_line(info) == ("this machine has no SGX: its CPU flags (/proc/cpuinfo) "
                                "show no sgx")
    with pytest.raises(ValueError, match="this machine has no SGX"):
        H.host_platform(tmp_path)
    assert H.one_line(H.read_host(tmp_path / "nothing")).startswith("no SGX found")


def test_sgx_without_an_epc_size_is_said(tmp_path: Path) -> None:
    root = sgx_machine(tmp_path, nodes=())
    with pytest.raises(ValueError, match="shows no EPC size"):
        H.host_platform(root)


def test_epcsim_host_here(capsys) -> None:
    """On this machine, whatever it has: exit 0; without SGX, one line."""
    info = H.read_host()
    assert main(["host"]) == 0
    out = capsys.readouterr().out
    if info["sgx"]:
        assert "SGX on this machine" in out
    else:
        assert out == H.one_line(info) + "\n"
    assert main(["host", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == info


def test_epcsim_host_table_on_an_sgx_machine(tmp_path: Path, capsys, monkeypatch) -> None:
    root = sgx_machine(tmp_path)
    real = H.read_host
    monkeypatch.setattr(H, "read_host", lambda r="/": real(root))
    assert main(["host"]) == 0
    out = capsys.readouterr().out
    assert "sgx sgx_lc (/proc/cpuinfo)" in out
    assert "EPC on node 1" in out and "32.0 MiB" in out and "96.0 MiB" in out
    assert "/dev/sgx_enclave, /dev/sgx_provision" in out


def test_a_scenario_on_the_host_platform(tmp_path: Path, monkeypatch) -> None:
    root = sgx_machine(tmp_path, nodes=(4 * MiB,))
    real = H.read_host
    monkeypatch.setattr(H, "read_host", lambda r="/": real(root))
    data = {"platform": "host", "run": {"requests": 5000},
            "enclaves": [{"name": "a", "size": "6MiB", "workload": "uniform"}]}
    sc = validate(data)
    assert sc.platform.preset == "host"
    r = epcsim.run(data)
    assert r.summary["platform"] == "host" and r.summary["epc_pages"] == 1024


def test_the_host_platform_on_a_machine_without_sgx(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("flags\t\t: fpu\n")
    real = H.read_host
    monkeypatch.setattr(H, "read_host", lambda r="/": real(tmp_path))
    with pytest.raises(ScenarioError, match=r"^platform\.preset: this machine has no SGX"):
        validate({"platform": "host",
                  "enclaves": [{"name": "a", "size": "1MiB", "workload": "zipf"}]})
