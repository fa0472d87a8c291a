"""What a run found, in a few sentences: the report's first paragraph.

Each sentence is built from ``summary.json`` and the tables alone; every number in it is a
:class:`Number`, which the page shows with its unit and thousands separators and marks with
the summary key it came from (``data-key``), so a test can hold the page's headline to the
summary it was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from epcsim.report.results import Results

MiB = 1 << 20
PAGE = 4096


@dataclass(frozen=True)
class Number:
    """A value as the page shows it, and where it came from (a summary key path)."""

    value: float
    text: str
    key: str = ""


def fmt_count(v: float) -> str:
    return f"{round(v):,}"


def fmt_bytes(v: float) -> str:
    if v >= 10 << 30:
        return f"{v / (1 << 30):,.1f} GiB"
    if v >= MiB:
        return f"{v / MiB:,.1f} MiB"
    return f"{v / 1024:,.0f} KiB"


def fmt_pages(pages: float) -> str:
    return fmt_bytes(pages * PAGE)


def fmt_seconds(v: float) -> str:
    if v >= 1:
        return f"{v:,.2f} s"
    if v >= 1e-3:
        return f"{v * 1e3:,.1f} ms"
    return f"{v * 1e6:,.0f} µs"


def fmt_ratio(v: float) -> str:
    return f"{v * 100:.1f}%"


def fmt_times(v: float) -> str:
    return f"{v:,.2f}×"


def num(value: Any, how: Any, key: str = "") -> Number:
    return Number(float(value), how(float(value)), key)


Sentence = list[Any]   # str and Number parts


def findings(res: Results) -> list[Sentence]:
    """The first paragraph's sentences, most important first; empty when the results hold
    no run summary (a sweep alone gets its own)."""
    s = res.summary
    out: list[Sentence] = []
    if "pods" in s:
        out += _pods(s)
    elif "per_enclave" in s and "slowdown" in s:
        out += _enclaves(s)
    if s.get("vms"):
        out += _vms(s)
    cliff = _cliff(res)
    if cliff:
        out.append(cliff)
    # A pod's cgroup is the pod: its limit hits are told with the pod.
    for row in [] if "pods" in s else s.get("cgroups") or []:
        if row.get("events_max"):
            out.append([f"The limit of cgroup {row['path']} (misc.max ",
                        num(row["max"], fmt_bytes) if isinstance(row["max"], int)
                        else str(row["max"]), ") refused ",
                        num(row["events_max"], fmt_count), " charges."])
    return out


def _enclaves(s: dict[str, Any]) -> list[Sentence]:
    rows = s["per_enclave"]
    out: list[Sentence] = [[
        f"{len(rows)} enclave{'s' if len(rows) != 1 else ''} touching ",
        num(s.get("footprint_pages", 0), fmt_pages, "footprint_pages"), " shared ",
        num(s.get("epc_pages", 0), fmt_pages, "epc_pages"), " of EPC: paging slowed the run ",
        num(s["slowdown"], fmt_times, "slowdown"), " (",
        num(s.get("faults", 0), fmt_count, "faults"), " faults, ",
        num(s.get("miss_ratio", 0), fmt_ratio, "miss_ratio"), " of ",
        num(s.get("requests", 0), fmt_count, "requests"), " accesses)."]]
    total = sum(r.get("faults", 0) for r in rows)
    if total and len(rows) > 1:
        top = max(range(len(rows)), key=lambda i: rows[i].get("faults", 0))
        r = rows[top]
        out.append([f"{r.get('name', r.get('tenant'))} pays most: ",
                     num(r["faults"] / total, fmt_ratio), " of the faults, ",
                     num(r.get("miss_ratio", 0), fmt_ratio, f"per_enclave[{top}].miss_ratio"),
                     " of its ", num(r.get("requests", 0), fmt_count,
                                     f"per_enclave[{top}].requests"), " accesses fault."])
    return out


def _pods(s: dict[str, Any]) -> list[Sentence]:
    pods = s["pods"]
    ok = [p for p in pods if p["status"] == "ok"]
    out: list[Sentence] = []
    if ok:
        i = max(range(len(pods)), key=lambda k: pods[k]["slowdown"]
                if pods[k]["status"] == "ok" else -1)
        p = pods[i]
        out.append([f"{len(pods)} pods on {s.get('nodes_used', '?')} of {s.get('nodes', '?')} "
                    "nodes of ", num(s.get("node_epc", 0), fmt_bytes, "node_epc"),
                    f" EPC: {p['name']} pays the most, a slowdown of ",
                    num(p["slowdown"], fmt_times, f"pods[{i}].slowdown"), " with ",
                    num(p["paging_cost_s"], fmt_seconds, f"pods[{i}].paging_cost_s"),
                    " of paging."])
    hit = [(i, p) for i, p in enumerate(pods) if p.get("limit_hits")]
    for i, p in hit:
        out.append([f"{p['name']} hit its limit of ",
                    num(p["epc_limit"], fmt_bytes, f"pods[{i}].epc_limit"), " ",
                    num(p["limit_hits"], fmt_count, f"pods[{i}].limit_hits"), " times."])
    failed = [p for p in pods if p["status"] != "ok"]
    for p in failed:
        out.append([f"{p['name']} {p['status']}."])
    return out


def _vms(s: dict[str, Any]) -> list[Sentence]:
    out: list[Sentence] = []
    for i, v in enumerate(s["vms"]):
        if "slowdown" in v:
            out.append([f"VM {v.get('name')} ({v.get('mode')}) runs ",
                        num(v["slowdown"], fmt_times, f"vms[{i}].slowdown"),
                        " slower than without paging, with ",
                        num(v.get("host_ewb", 0), fmt_count, f"vms[{i}].host_ewb"),
                        " of its pages written out by the host."])
    return out


def _cliff(res: Results) -> Sentence | None:
    """Where the miss ratio falls fastest as the EPC grows (the LRU curve of everything
    sharing the EPC), against the EPC the run had."""
    mrc = res.tables.get("mrc")
    if mrc is None or mrc.num_rows < 3:
        return None
    owner = np.asarray(mrc.column("owner").to_pylist())
    pages = np.asarray(mrc.column("epc_pages").to_pylist(), dtype=float)[owner == "all"]
    miss = np.asarray(mrc.column("miss_ratio").to_pylist(), dtype=float)[owner == "all"]
    if len(pages) < 3:
        return None
    order = np.argsort(pages)
    pages, miss = pages[order], miss[order]
    drop = -np.diff(miss) / np.maximum(np.diff(pages), 1)
    k = int(np.argmax(drop))
    at = pages[k + 1]
    where = (" (the run had ", num(res.summary["epc_pages"], fmt_pages, "epc_pages"), ")") \
        if "epc_pages" in res.summary else ("",)
    return ["The paging cliff is at about ", num(at, fmt_pages), " of EPC: there the LRU miss "
            "ratio of all enclaves together falls fastest, from ", num(miss[k], fmt_ratio),
            " to ", num(miss[k + 1], fmt_ratio), *where, "."]


def sweep_findings(res: Results) -> list[Sentence]:
    """For a sweep: the point with the worst slowdown and the best."""
    t = res.sweep
    if t is None or "slowdown" not in t.column_names or t.num_rows == 0:
        return []
    rows = [r for r in t.to_pylist() if isinstance(r.get("slowdown"), (int, float))]
    if not rows:
        return []
    worst = max(rows, key=lambda r: r["slowdown"])
    best = min(rows, key=lambda r: r["slowdown"])

    def params(r: dict[str, Any]) -> str:
        return ", ".join(f"{k.removeprefix('param.')} = {v}" for k, v in r.items()
                         if k.startswith("param."))

    return [[f"Over {len(rows)} points the slowdown runs from ",
             num(best["slowdown"], fmt_times), f" ({params(best)}) to ",
             num(worst["slowdown"], fmt_times), f" ({params(worst)})."]]
