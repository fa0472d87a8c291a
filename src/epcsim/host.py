"""What this machine has for SGX, read the way the kernel shows it (``epcsim host``).

* ``/proc/cpuinfo``: the ``sgx`` and ``sgx_lc`` flags (SGX, and flexible launch control)
  the kernel sets when it enables them;
* ``/dev/sgx_enclave``, ``/dev/sgx_provision``, ``/dev/sgx_vepc``: the driver's files (the
  last only with KVM's virtual EPC);
* the EPC per NUMA node: ``/sys/devices/system/node/node<N>/x86/sgx_total_bytes`` (Linux 6.0
  and later); the sections themselves, base and size, from CPUID leaf 0x12 through
  ``/dev/cpu/<n>/cpuid`` when it can be read (the ``cpuid`` module, and root);
* the misc cgroup controller's ``sgx_epc`` resource: ``misc.capacity`` at the root of the
  cgroup v2 hierarchy, ``misc.current`` and ``misc.max`` of this process's cgroup.

Everything is read under ``root`` (``/`` on a real machine), so the tests can give a tree of
their own; what is not there is left out, never guessed.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

MiB = 1 << 20
DEVICES = ("sgx_enclave", "sgx_provision", "sgx_vepc")


def read_host(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """A JSON-ready description of this machine's SGX (``sgx`` False when it has none)."""
    r = Path(root)
    flags = _cpu_flags(r)
    out: dict[str, Any] = {
        "sgx": "sgx" in (flags or ()),
        "sgx_lc": "sgx_lc" in (flags or ()),
        "cpu_flags_source": "/proc/cpuinfo" if flags is not None else None,
        "devices": {d: (r / "dev" / d).exists() for d in DEVICES},
    }
    nodes = _node_epc(r)
    if nodes:
        out["epc_per_node"] = nodes
        out["epc_bytes"] = sum(n["sgx_total_bytes"] for n in nodes)
    sections = _cpuid_sections(r)
    if sections:
        out["epc_sections"] = sections
        out.setdefault("epc_bytes", sum(s["size"] for s in sections))
    misc = _misc(r)
    if misc:
        out["misc_sgx_epc"] = misc
    return out


def has_sgx(info: dict[str, Any]) -> bool:
    return bool(info.get("sgx"))


def _cpu_flags(r: Path) -> set[str] | None:
    try:
        text = (r / "proc" / "cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def _node_epc(r: Path) -> list[dict[str, Any]]:
    base = r / "sys" / "devices" / "system" / "node"
    out = []
    for d in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        f = d / "x86" / "sgx_total_bytes"
        try:
            n = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
        out.append({"node": int(d.name[4:]), "sgx_total_bytes": n})
    return out


def _cpuid_sections(r: Path) -> list[dict[str, Any]]:
    """EPC sections from CPUID leaf 0x12, sub-leaves 2 and up (the kernel's
    ``sgx_page_cache_init``): type 1 is a section, its base and size split over two
    registers each; type 0 ends the list."""
    dev = r / "dev" / "cpu" / "0" / "cpuid"
    try:
        fd = os.open(dev, os.O_RDONLY)
    except OSError:
        return []
    out = []
    try:
        for sub in range(2, 2 + 8):
            try:
                raw = os.pread(fd, 16, (sub << 32) | 0x12)
            except OSError:
                break
            if len(raw) != 16:
                break
            eax, ebx, ecx, edx = struct.unpack("<4I", raw)
            if eax & 0xF != 1:
                break
            base = (eax & 0xFFFFF000) | ((ebx & 0xFFFFF) << 32)
            size = (ecx & 0xFFFFF000) | ((edx & 0xFFFFF) << 32)
            out.append({"section": sub - 2, "base": base, "size": size})
    finally:
        os.close(fd)
    return out


def _misc(r: Path) -> dict[str, Any]:
    cg = r / "sys" / "fs" / "cgroup"
    out: dict[str, Any] = {}
    cap = _misc_value(cg / "misc.capacity")
    if cap is not None:
        out["capacity"] = cap
    own = _own_cgroup(r)
    if own is not None:
        here = cg / own.lstrip("/")
        for key in ("current", "max", "peak"):
            v = _misc_value(here / f"misc.{key}")
            if v is None and own in ("", "/"):
                v = _misc_value(cg / f"misc.{key}")
            if v is not None:
                out[key] = v
        if out:
            out["cgroup"] = own or "/"
    return out


def _misc_value(f: Path) -> int | str | None:
    try:
        text = f.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "sgx_epc":
            value = value.strip()
            return int(value) if value.isdigit() else value
    return None


def _own_cgroup(r: Path) -> str | None:
    try:
        text = (r / "proc" / "self" / "cgroup").read_text()
    except OSError:
        return None
    m = re.search(r"^0::(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def one_line(info: dict[str, Any]) -> str:
    """The line for a machine without SGX."""
    if info.get("cpu_flags_source") is None:
        return "no SGX found: /proc/cpuinfo cannot be read here"
    return "this machine has no SGX: its CPU flags (/proc/cpuinfo) show no sgx"


def host_platform(root: str | os.PathLike[str] = "/") -> Any:
    """A platform (:class:`epcsim.sim.costs.Platform`) with this machine's EPC and NUMA nodes
    with EPC, priced as the preset of its class (client-sgx1 up to 256 MiB of EPC, else
    xeon-icx); ValueError when the machine shows no SGX or no EPC size."""
    from dataclasses import replace

    from epcsim.sim import costs

    info = read_host(root)
    if not info["sgx"]:
        raise ValueError(one_line(info))
    size = info.get("epc_bytes")
    if not size:
        raise ValueError("this machine has SGX but shows no EPC size (neither "
                         "/sys/devices/system/node/node*/x86/sgx_total_bytes nor a readable "
                         "/dev/cpu/0/cpuid)")
    nodes = max(1, len([n for n in info.get("epc_per_node", []) if n["sgx_total_bytes"]]))
    base = costs.preset("client-sgx1" if size <= 256 * MiB else "xeon-icx")
    return replace(base, name="host", epc_bytes=int(size) // 4096 * 4096, nodes=min(nodes, 8),
                   source=f"this machine: {size / MiB:,.1f} MiB of EPC on {nodes} NUMA "
                          f"node{'s' if nodes > 1 else ''}, priced as {base.name}")
