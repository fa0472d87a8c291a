"""The report's first paragraph: what a run found, from its summary and tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from epcsim.report.finding import Number, findings, sweep_findings
from epcsim.report.results import Results

MiB = 1 << 20


def text(sentences: list) -> str:  # type: ignore[type-arg]
    return " ".join("".join(p.text if isinstance(p, Number) else p for p in s)
                    for s in sentences)


def test_pods_say_who_pays_which_limit_was_hit_and_what_failed() -> None:
    pods = [
        {"name": "redis", "node": 0, "status": "ok", "epc_limit": 12 * MiB, "limit_hits": 0,
         "paging_cost_s": 0.036, "slowdown": 10.66},
        {"name": "memcached", "node": 1, "status": "ok", "epc_limit": 8 * MiB,
         "limit_hits": 5, "paging_cost_s": 0.349, "slowdown": 50.84},
        {"name": "tiny", "node": 0, "status": "failed: misc.max holds 8 pages (-ENOMEM)",
         "epc_limit": 32768, "limit_hits": 0, "paging_cost_s": 0.0, "slowdown": 1.0},
    ]
    res = Results(Path("."), {"pods": pods, "nodes": 2, "nodes_used": 2,
                              "node_epc": 32 * MiB,
                              "cgroups": [{"path": "/kubepods/memcached", "max": 8 * MiB,
                                           "events_max": 5}]})
    found = findings(res)
    said = text(found)
    assert ("3 pods on 2 of 2 nodes of 32.0 MiB EPC: memcached pays the most, a slowdown "
            "of 50.84× with 349.0 ms of paging.") in said
    assert "memcached hit its limit of 8.0 MiB 5 times." in said
    assert "tiny failed: misc.max holds 8 pages (-ENOMEM)." in said
    assert "refused" not in said   # the pod's cgroup is not told twice
    keys = {p.key for s in found for p in s if isinstance(p, Number) and p.key}
    assert {"pods[1].slowdown", "pods[1].limit_hits", "node_epc"} <= keys


def test_the_cliff_is_where_the_curve_falls_fastest() -> None:
    mrc = pa.table({"owner": ["all"] * 5 + ["a alone"] * 2,
                    "epc_pages": [256, 512, 768, 1024, 1280, 256, 512],
                    "miss_ratio": [0.9, 0.85, 0.3, 0.25, 0.2, 0.5, 0.1]})
    res = Results(Path("."), {"epc_pages": 1024}, {"mrc": mrc})
    said = text(findings(res))
    assert ("The paging cliff is at about 3.0 MiB of EPC: there the LRU miss ratio of all "
            "enclaves together falls fastest, from 85.0% to 30.0% (the run had 4.0 MiB).") \
        == said


def test_a_sweep_gives_its_best_and_worst_point() -> None:
    sweep = pa.table({"point": [0, 1, 2], "param.platform.epc_size": ["1MiB", "2MiB", "4MiB"],
                      "slowdown": [30.5, 8.25, 1.5]})
    said = text(sweep_findings(Results(Path("."), {}, {}, sweep)))
    assert said == ("Over 3 points the slowdown runs from 1.50× (platform.epc_size = 4MiB) "
                    "to 30.50× (platform.epc_size = 1MiB).")
