"""What the terminal shows at 80 columns: units, no header cut short, reasons under tables."""

from __future__ import annotations

import pytest
from rich.console import Console

import epcsim.cli as cli

MiB = 1 << 20

DEMO = {"epc_pages": 23936, "footprint_pages": 32256, "requests": 2_000_000, "faults": 83570,
        "miss_ratio": 0.0417855, "eaug": 27013, "eldu": 56557, "ewb": 115609,
        "etrack": 68217, "ipi": 52739, "ksgxd_wakeups": 2958, "ebusy_waits": 206,
        "virtual_time_s": 0.699843,
        "virtual_time_breakdown_s": {"work": 0.1333, "faults": 0.5665,
                                     "waiting_for_ksgxd": 0.112},
        "slowdown": 5.24883, "sgx_nr_free_pages": 65, "wall_s": 10.07, "enclaves": 2,
        "platform": "client-sgx1",
        "per_enclave": [{"name": "db", "pages": 20480, "requests": 1199997, "faults": 75382,
                         "eaug": 20480, "eldu": 54902, "miss_ratio": 0.06282},
                        {"name": "web", "pages": 11776, "requests": 800003, "faults": 8188,
                         "eaug": 6533, "eldu": 1655, "miss_ratio": 0.01023}],
        "vms": [{"name": "guest", "mode": "oversubscribed",
                 "status": "failed: the VMM got SIGBUS: -ENOMEM from a vEPC fault with "
                           "nothing left to reclaim in its cgroup",
                 "guest_faults": 25601, "guest_ewb": 0, "host_ewb": 52181,
                 "host_eldu": 30001, "vm_exits": 55657, "conflict_exits": 0,
                 "slowdown": 38.69}]}

PODS = [
    {"name": "redis", "node": 0, "status": "ok", "epc_request": 12 * MiB,
     "epc_limit": 12 * MiB, "size": 24 * MiB, "peak": 12394496, "limit_hits": 0,
     "paging_cost_s": 0.0362, "slowdown": 10.66},
    {"name": "tiny-limit", "node": 0,
     "status": "failed: misc.max holds 8 pages, the pod pins 9 unreclaimable pages (-ENOMEM)",
     "epc_request": MiB, "epc_limit": 32768, "size": 8 * MiB, "peak": 0, "limit_hits": 0,
     "paging_cost_s": 0.0, "slowdown": 1.0},
    {"name": "batch", "node": -1, "status": "unscheduled: no node has room for its request",
     "epc_request": 16 * MiB, "epc_limit": "max", "size": 20 * MiB, "peak": 0,
     "limit_hits": 0, "paging_cost_s": 0.0, "slowdown": 1.0},
]
NODES = [{"node": 0, "pods": 2, "epc_request": 13 * MiB, "epc_limit": "max",
          "peak": 12394496, "limit_hits": 0, "paging_cost_s": 0.0362, "slowdown": 10.66,
          "failures": 1}]


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> Console:
    console = Console(width=80, record=True, force_terminal=False)
    monkeypatch.setattr(cli, "console", console)
    return console


def check(text: str) -> list[str]:
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in text            # no header or cell cut to an ellipsis
    return lines


def test_the_demo_at_80_columns(narrow: Console) -> None:
    with narrow.capture() as cap:
        cli._print_demo(DEMO, 98041856)
    text = cap.get()
    lines = check(text)
    assert "83,570" in text and "4.2%" in text and "5.25×" in text and "699.8 ms" in text
    assert "23,936 pages (93.5 MiB)" in text
    # The faults that found nothing free, and how long they waited for ksgxd's pages.
    assert any("ebusy_waits" in line and "206" in line for line in lines)
    assert any("waiting_for_ksgxd" in line and "112.0 ms" in line for line in lines)
    assert "conflict_exits" in text and "guest_faults" in text   # whole headers
    # The VM's reason is a line under its table, its cell says only "failed".
    reason = [line for line in lines if line.startswith("guest: failed: the VMM got SIGBUS")]
    assert len(reason) == 1
    assert not any("SIGBUS" in line and line is not reason[0] for line in lines)


def test_pods_at_80_columns(narrow: Console) -> None:
    with narrow.capture() as cap:
        cli._print_pods(PODS, NODES)
    text = cap.get()
    lines = check(text)
    assert "12394496" not in text and "11.8" in text     # peaks in MiB, not bytes
    assert "request" in text and "MiB" in text
    row = next(line for line in lines if line.lstrip().startswith("tiny-limit "))
    assert "failed" in row and "misc.max" not in row
    assert ("tiny-limit: failed: misc.max holds 8 pages, the pod pins 9 unreclaimable pages "
            "(-ENOMEM)") in " ".join(text.split())
    assert "batch: unscheduled: no node has room for its request" in text
